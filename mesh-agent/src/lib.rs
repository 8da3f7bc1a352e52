//! The mesh agent: what an operator runs, as Consul's agent is run.
//!
//! - [`config`]: Consul-style agent configuration (HCL or JSON files, a config dir), read into
//!   typed settings and turned into a [`mesh::DatacenterConfig`].
//! - [`http`]: the Consul-compatible HTTP API a datacenter serves (the subset real Consul
//!   clients use: ACL, agent, catalog, health, Connect CA and intentions, config entries,
//!   status, metrics).
//! - the client of that API the CLI uses is the library's ([`mesh::client`]).
//! - [`cli`]: the `mesh` command line (`mesh agent`, `mesh acl ...`, `mesh intention ...`).
//! - [`agent`]: a running server: its datacenter, its listeners, its service files.
//!
//! What it is not: a library for applications (they link `mesh`), a Consul client agent
//! (every `mesh agent` is a server of its datacenter), DNS, or gossip.

#![forbid(unsafe_code)]

pub mod agent;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;

pub use mesh::core::error_chain;
