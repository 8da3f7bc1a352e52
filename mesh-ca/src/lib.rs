//! Connect CA: root bootstrap, secondary intermediates, leaf signing, rotation, and rustls configs that verify peers by SPIFFE ID. (being written).
