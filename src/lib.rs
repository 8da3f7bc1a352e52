//! mesh: an embeddable service mesh for Rust.
//!
//! This facade re-exports the engine crates; later it assembles them into datacenters,
//! gateways and sidecars.

#![forbid(unsafe_code)]

pub use mesh_core as core;
pub use mesh_sni as sni;
