//! mesh: an embeddable service mesh for Rust.
//!
//! This package ties the engine crates together into what a user runs: a [`Datacenter`]
//! (the control plane: state, ACLs, intentions, config entries, catalog, CA and replication
//! from the primary, one handle per concern: [`Datacenter::acl`], [`Datacenter::catalog`],
//! [`Datacenter::intentions`], [`Datacenter::config_entries`], [`Datacenter::connect_ca`]),
//! and the data plane: mesh gateways, sidecars and in-app Connect, built on the narrow
//! [`dataplane::ControlPlane`] interface that a [`Datacenter`] in the same process and an
//! [`dataplane::AgentControlPlane`] (an HTTP client of a `mesh agent`) both implement.
//!
//! Cargo features: `server` (default) builds the control plane ([`Datacenter`] and what it
//! needs: the store, replication, the CA's signing side); `client` (default) builds the HTTP
//! client of an agent ([`client`], [`dataplane::AgentControlPlane`]). An application that
//! connects through an agent needs only `client`. `etcd` keeps a datacenter's state on an
//! etcd cluster shared by several servers, one leading and the others standing by
//! (`Storage::Etcd`; it compiles gRPC code and needs `protoc`).
//!
//! Errors: every call returns [`Error`], whose `Display` names the operation and what went
//! wrong (`intention create web -> api: ACL not found`); match on [`Error::kind`]
//! ([`ErrorKind`], with [`InvalidInput`] carrying the validator's own typed error), and print
//! the whole chain of causes with [`core::error_chain`].
//!
//! What it does not do: consensus of its own (several servers of a datacenter share state
//! only through etcd, and only the leader serves), DNS, health checking of services by
//! probing, L7 routing.
//!
//! ```
//! use mesh::core::{ServiceName, SpiffeId};
//! use mesh::{Datacenter, DatacenterConfig, Secret};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     // ACLs are on with default deny unless the configuration says otherwise.
//!     let mut config = DatacenterConfig::new("primary".parse()?, "primary".parse()?);
//!     config.acl.tokens.initial_management = Some("a-management-secret".into());
//!     let dc = Datacenter::start_primary(config).await?;
//!
//!     let td = dc.trust_domain().expect("Connect is on: the CA bootstrapped");
//!     let web: SpiffeId = format!("spiffe://{td}/ns/default/dc/primary/svc/web").parse()?;
//!     let socat: ServiceName = "socat".parse()?;
//!     let management = Secret::new("a-management-secret");
//!     // Default deny means deny until an intention allows the pair.
//!     assert!(!dc.intentions().authorize(&web, &socat).authorized);
//!     dc.intentions()
//!         .allow(&management, &"web".parse()?, &(&socat).into())
//!         .await?;
//!     assert!(dc.intentions().authorize(&web, &socat).authorized);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "server")]
pub mod acl;
mod authorization;
#[cfg(feature = "server")]
mod authz;
pub mod catalog;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
mod config;
pub mod connect;
pub mod core;
#[cfg(feature = "server")]
mod datacenter;
pub mod dataplane;
mod error;
mod gateway;
#[cfg(feature = "server")]
mod ids;
#[cfg(feature = "server")]
mod replication;
mod sidecar;
#[cfg(feature = "server")]
pub mod tables;

pub use authorization::Authorization;
#[cfg(feature = "etcd")]
pub use config::EtcdStorage;
#[cfg(feature = "server")]
pub use config::{
    AclConfig, AclTokens, ConnectConfig, DatacenterConfig, StateKey, StateKeyError, Storage,
};
#[cfg(feature = "server")]
pub use datacenter::{
    Acl, Catalog, ConfigEntries, ConnectCa, Datacenter, IntentionTarget, Intentions, PolicySpec,
    Registered, RoleSpec, TokenSpec,
};
pub use error::{Error, ErrorKind, InvalidInput, Operation};
pub use gateway::{MeshGateway, MeshGatewayOptions};
/// An ACL token secret, the one secret type of the API: `Debug` never shows it, and
/// [`Secret::expose_secret`] is the one way to read it. The empty secret is the anonymous
/// token. Call sites write `&"a-secret".into()` or keep a `Secret` around.
pub use mesh_core::TokenSecret as Secret;
pub use sidecar::{
    DEFAULT_MAX_CONNECTIONS as DEFAULT_SIDECAR_MAX_CONNECTIONS, Sidecar, SidecarOptions,
};

pub use mesh_ca as ca;
pub use mesh_intentions as intentions;
#[cfg(feature = "server")]
pub use mesh_replication as replication_engine;
pub use mesh_sni as sni;

/// The rustls that mesh's TLS configs and certificates are made with (so an application need
/// not pin a matching version by hand).
pub use rustls;
/// The tokio-rustls that mesh's acceptors and connectors are made with.
pub use tokio_rustls;
