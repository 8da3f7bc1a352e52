//! mesh: an embeddable service mesh for Rust.
//!
//! This package ties the engine crates together into what a user runs: a [`Datacenter`]
//! (the control plane: state, ACLs, intentions, config entries, catalog, CA and replication
//! from the primary), and the data plane built on it: mesh gateways fed from the catalog,
//! sidecars, and in-app Connect.
//!
//! What it does not do: consensus between several servers of one datacenter (one store per
//! datacenter), DNS, health checking of services by probing, L7 routing.
//!
//! ```
//! use mesh::intentions::acl::DefaultPolicy;
//! use mesh::intentions::intention::Action;
//! use mesh::{Datacenter, DatacenterConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     let mut config = DatacenterConfig::new("primary".parse()?, "primary".parse()?);
//!     config.acl.enabled = true;
//!     config.acl.default_policy = DefaultPolicy::Deny;
//!     config.acl.tokens.initial_management = Some("a-management-secret".into());
//!     let dc = Datacenter::start_primary(config).await?;
//!
//!     let td = dc.trust_domain().expect("Connect is on: the CA bootstrapped");
//!     let web = format!("spiffe://{td}/ns/default/dc/primary/svc/web").parse()?;
//!     let socat = "socat".parse()?;
//!     // Default deny means deny until an intention allows the pair.
//!     assert!(!dc.authorize(&web, &socat).authorized);
//!     dc.intention_create("a-management-secret", "web", "socat", Action::Allow).await?;
//!     assert!(dc.authorize(&web, &socat).authorized);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod acl;
mod authz;
pub mod catalog;
pub mod config;
pub mod connect;
pub mod datacenter;
mod error;
pub mod gateway;
mod ids;
mod replication;
pub mod sidecar;
pub mod tables;

pub use config::{AclConfig, AclTokens, ConnectConfig, DatacenterConfig, Storage};
pub use datacenter::{Authorization, Datacenter, Registered, TokenSpec};
pub use error::Error;
pub use gateway::MeshGateway;
pub use sidecar::{Sidecar, SidecarOptions};

pub use mesh_ca as ca;
pub use mesh_core as core;
pub use mesh_intentions as intentions;
pub use mesh_replication as replication_engine;
pub use mesh_sni as sni;
