//! Versioned datacenter state, blocking queries, replication from the primary, write forwarding and transports. (being written).
