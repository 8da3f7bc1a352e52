//! The vocabulary every mesh crate shares: names, trust domains, SPIFFE IDs, SNI names, the
//! catalog model (service and mesh-gateway registrations in Consul's JSON), config entries and
//! the resolution of a mesh-gateway mode, and the [`Index`] of a datacenter's state.
//!
//! Every type here is valid by construction: a [`ServiceName`], [`TrustDomain`], [`SpiffeId`] or
//! [`Sni`] only exists once its parser accepted it, and its `Display` form parses back to the
//! same value.
//!
//! This crate does no I/O, no cryptography and no networking; it holds no state. Certificates
//! live in `mesh-ca`, routing in `mesh-sni`, policy in `mesh-intentions`.
//!
//! ```
//! use mesh_core::{Sni, SpiffeId, TrustDomain};
//!
//! let td: TrustDomain = "11111111-2222-3333-4444-555555555555.consul".parse()?;
//! let sni = Sni::service("socat".parse()?, "primary".parse()?, td.clone());
//! assert_eq!(
//!     sni.to_string(),
//!     "socat.default.primary.internal.11111111-2222-3333-4444-555555555555.consul"
//! );
//!
//! let dns = TrustDomain::new(mesh_core::sni::DEFAULT_DNS_DOMAIN)?;
//! let parsed = Sni::parse(&sni.to_string(), &td, &dns)?;
//! assert_eq!(parsed.target_datacenter().as_str(), "primary");
//!
//! let id: SpiffeId = "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/secondary/svc/web".parse()?;
//! assert_eq!(id.as_service().unwrap().service().as_str(), "web");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod index;
pub mod names;
pub mod sni;
pub mod spiffe;
pub mod trust_domain;

pub use index::Index;
pub use names::{
    Datacenter, MAX_NAME_LEN, NameError, NameErrorReason, Namespace, NodeName, Partition,
    ServiceName, Subset,
};
pub use sni::{Sni, SniError};
pub use spiffe::{AgentId, MeshGatewayId, ServerId, ServiceId, SpiffeId, SpiffeIdError};
pub use trust_domain::{ClusterId, ClusterIdError, TrustDomain, TrustDomainError};
