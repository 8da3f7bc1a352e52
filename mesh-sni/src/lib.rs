//! SNI gateway (being written).
