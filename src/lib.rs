//! mesh: an embeddable service mesh for Rust.
//!
//! This package ties the engine crates together into what a user runs: a [`Datacenter`]
//! (the control plane: state, ACLs, intentions, config entries, catalog, CA and replication
//! from the primary, one handle per concern: [`Datacenter::acl`], [`Datacenter::catalog`],
//! [`Datacenter::intentions`], [`Datacenter::config_entries`], [`Datacenter::connect_ca`]),
//! and the data plane built on it: mesh gateways fed from the catalog,
//! sidecars, and in-app Connect.
//!
//! What it does not do: consensus between several servers of one datacenter (one store per
//! datacenter), DNS, health checking of services by probing, L7 routing.
//!
//! ```
//! use mesh::intentions::acl::DefaultPolicy;
//! use mesh::intentions::intention::Action;
//! use mesh::core::ServiceName;
//! use mesh::{Datacenter, DatacenterConfig, IntentionTarget, Secret};
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
//!     let socat: ServiceName = "socat".parse()?;
//!     let management = Secret::new("a-management-secret");
//!     // Default deny means deny until an intention allows the pair.
//!     assert!(!dc.intentions().authorize(&web, &socat).authorized);
//!     let from: IntentionTarget = "web".parse()?;
//!     dc.intentions()
//!         .create(&management, &from, &(&socat).into(), Action::Allow)
//!         .await?;
//!     assert!(dc.intentions().authorize(&web, &socat).authorized);
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
pub use datacenter::{
    Acl, Authorization, Catalog, ConfigEntries, ConnectCa, Datacenter, IntentionTarget, Intentions,
    PolicySpec, Registered, RoleSpec, Secret, TokenSpec,
};
pub use error::Error;
pub use gateway::MeshGateway;
pub use sidecar::{Sidecar, SidecarOptions};

pub use mesh_ca as ca;
pub use mesh_core as core;
pub use mesh_intentions as intentions;
pub use mesh_replication as replication_engine;
pub use mesh_sni as sni;

/// The rustls that mesh's TLS configs and certificates are made with (so an application need
/// not pin a matching version by hand).
pub use rustls;
/// The tokio-rustls that mesh's acceptors and connectors are made with.
pub use tokio_rustls;
