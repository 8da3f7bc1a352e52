//! The vocabulary every mesh crate shares: names, trust domains, SPIFFE IDs, SNI names, the
//! catalog model (service and mesh-gateway registrations in Consul's JSON), config entries and
//! the resolution of a mesh-gateway mode, and the [`Index`] of a datacenter's state.
//!
//! Every type here is valid by construction: a [`ServiceName`], [`TrustDomain`], [`SpiffeId`] or
//! [`Sni`] only exists once its parser accepted it, and its `Display` form parses back to the
//! same value.
//!
//! This crate does no I/O, no cryptography and no networking; it holds no state. Certificates
//! live in `mesh-ca`, routing in `mesh-sni`, policy in `mesh-intentions` (including the
//! `service-intentions` config entry, which [`ConfigEntry`] deliberately does not model).
//! Where Consul is lax, mesh is stricter: upper-case names, unknown mesh-gateway modes, unknown
//! registration fields and cluster peering are refused.
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
//! let dns = TrustDomain::new(mesh_core::DEFAULT_DNS_DOMAIN)?;
//! let parsed = Sni::parse(&sni.to_string(), &td, &dns)?;
//! assert_eq!(parsed.target_datacenter().as_str(), "primary");
//!
//! let id: SpiffeId = "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/secondary/svc/web".parse()?;
//! assert_eq!(id.as_service().unwrap().service().as_str(), "web");
//!
//! // The guide's web.json: web in "secondary" calls socat in "primary" on 127.0.0.1:8181.
//! let web = mesh_core::ServiceDefinition::from_json(r#"{"service": {"name": "web",
//!     "port": 8080, "connect": {"sidecar_service": {"proxy": {"upstreams": [{
//!     "destination_name": "socat", "datacenter": "primary", "local_bind_port": 8181}]}}}}}"#)?;
//! web.validate()?;
//! let sidecar = mesh_core::sidecar_from_service(&web, None)?.expect("has a sidecar");
//! let upstream = &sidecar.service().proxy.as_ref().expect("proxy").upstreams[0];
//! let secondary: mesh_core::Datacenter = "secondary".parse()?;
//! assert_eq!(upstream.sni(None, &secondary, &td)?, sni);
//! let path = mesh_core::upstream_path(
//!     &secondary,
//!     upstream.target_datacenter(&secondary),
//!     mesh_core::MeshGatewayMode::Local,
//! );
//! assert_eq!(path.gateway_datacenter(), Some(&secondary));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
// Unit tests unwrap on purpose: a failing unwrap is a failing test.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod catalog;
mod config_entry;
mod index;
mod mesh_gateway;
mod names;
mod sni;
mod spiffe;
mod trust_domain;

// One path per item: every name of the mesh at the root.
pub use catalog::{
    AddressError, CheckDefinition, CheckError, DEFAULT_LOCAL_BIND_ADDRESS,
    DEFAULT_MESH_GATEWAY_NAME, DEFAULT_MESH_GATEWAY_PORT, DEFAULT_SIDECAR_MAX_PORT,
    DEFAULT_SIDECAR_MIN_PORT, DestinationType, DestinationTypeError, DurationError, GoDuration,
    Host, HostPort, Locality, MAX_HOST_NAME_LEN, MAX_META_KEY_LEN, MAX_META_PAIRS,
    MAX_META_VALUE_LEN, MAX_SERVICE_ID_LEN, MeshGatewayRegistration, MetaError, NodeAddresses,
    ProxyConfig, RESERVED_META_PREFIX, RegistrationError, SIDECAR_SUFFIX, ServiceConnect,
    ServiceDefinition, ServiceInstanceId, ServiceInstanceIdError, ServiceKind, ServiceKindError,
    Sidecar, SidecarError, SidecarPortError, SidecarPortRange, SocketMode, SocketModeError,
    TAGGED_LAN, TAGGED_LAN_IPV4, TAGGED_LAN_IPV6, TAGGED_WAN, TAGGED_WAN_IPV4, TAGGED_WAN_IPV6,
    TaggedAddress, TokenSecret, Upstream, UpstreamError, UpstreamKey, UpstreamListener,
    WAN_FEDERATION_META, Weights, sidecar_default_checks, sidecar_from_service, validate_meta,
    validate_upstreams,
};
pub use config_entry::{
    ConfigEntry, ConfigEntryError, ConfigEntryKind, FailoverPolicy, GlobalName,
    PROXY_DEFAULTS_NAME, ProxyDefaults, ResolvedMeshGateway, ServiceDefaults, UpstreamConfig,
    UpstreamConfiguration, UpstreamLimits, resolve_mesh_gateway, upstream_mode_layers,
};
pub use index::Index;
pub use mesh_gateway::{
    MeshGatewayConfig, MeshGatewayMode, MeshGatewayModeError, UpstreamModeLayers, UpstreamPath,
    chain_target_mode, merge_proxy_mode, merge_upstream_mode, upstream_path,
};
pub use names::{
    DEFAULT as DEFAULT_TENANCY, Datacenter, MAX_NAME_LEN, NameError, NameErrorReason, Namespace,
    NodeName, Partition, ServiceName, Subset,
};
pub use sni::{
    DEFAULT_DNS_DOMAIN, INTERNAL as SNI_INTERNAL, INTERNAL_V1 as SNI_INTERNAL_V1, MAX_SNI_LEN,
    QUERY as SNI_QUERY, Sni, SniError, trust_domain_for_target,
};
pub use spiffe::{
    AgentId, MAX_SPIFFE_ID_LEN, MeshGatewayId, ServerId, ServiceId, SpiffeId, SpiffeIdError,
};
pub use trust_domain::{
    ClusterId, ClusterIdError, MAX_DOMAIN_LEN, SIGNING_DOMAIN, TrustDomain, TrustDomainError,
};

/// An error and its causes as one line, `outer: inner: root`, as logs and command lines print
/// them. A cause whose text the line already ends with (an error that displays its source) is
/// not repeated.
///
/// ```
/// let e = std::io::Error::other("disk full");
/// assert_eq!(mesh_core::error_chain(&e), "disk full");
/// ```
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.ends_with(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}
