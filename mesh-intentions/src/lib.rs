//! Consul ACL rules (JSON and HCL), tokens, the authorizer, and intentions with a default derived from the ACL default policy. (being written).
