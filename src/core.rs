//! Names, identities and formats shared by every part of mesh: service, datacenter and node
//! names, SPIFFE IDs, SNI names, trust domains, catalog registrations, upstreams and config
//! entries (the `mesh-core` engine crate). The ACL token secret is [`crate::Secret`]. Two
//! names differ from the engine crate's, so that they cannot be taken for mesh's own types:
//! a datacenter's name is `DatacenterName` (beside [`crate::Datacenter`], the control plane),
//! and a sidecar's registration is `SidecarRegistration` (beside [`crate::Sidecar`], the proxy).

pub use mesh_core::{
    AddressError, AgentId, CheckDefinition, CheckError, ClusterId, ClusterIdError, ConfigEntry,
    ConfigEntryError, ConfigEntryKind, DEFAULT_DNS_DOMAIN, DEFAULT_LOCAL_BIND_ADDRESS,
    DEFAULT_MESH_GATEWAY_NAME, DEFAULT_MESH_GATEWAY_PORT, DEFAULT_SIDECAR_MAX_PORT,
    DEFAULT_SIDECAR_MIN_PORT, DEFAULT_TENANCY, Datacenter as DatacenterName, DestinationType,
    DestinationTypeError, DurationError, FailoverPolicy, GlobalName, GoDuration, Host, HostPort,
    Index, Locality, MAX_DOMAIN_LEN, MAX_HOST_NAME_LEN, MAX_META_KEY_LEN, MAX_META_PAIRS,
    MAX_META_VALUE_LEN, MAX_NAME_LEN, MAX_SERVICE_ID_LEN, MAX_SNI_LEN, MAX_SPIFFE_ID_LEN,
    MeshGatewayConfig, MeshGatewayId, MeshGatewayMode, MeshGatewayModeError,
    MeshGatewayRegistration, MetaError, NameError, NameErrorReason, Namespace, NodeAddresses,
    NodeName, PROXY_DEFAULTS_NAME, Partition, ProxyConfig, ProxyDefaults, RESERVED_META_PREFIX,
    RegistrationError, ResolvedMeshGateway, SIDECAR_SUFFIX, SIGNING_DOMAIN, SNI_INTERNAL,
    SNI_INTERNAL_V1, SNI_QUERY, ServerId, ServiceConnect, ServiceDefaults, ServiceDefinition,
    ServiceId, ServiceInstanceId, ServiceInstanceIdError, ServiceKind, ServiceKindError,
    ServiceName, Sidecar as SidecarRegistration, SidecarError, SidecarPortError, SidecarPortRange,
    Sni, SniError, SocketMode, SocketModeError, SpiffeId, SpiffeIdError, Subset, TAGGED_LAN,
    TAGGED_LAN_IPV4, TAGGED_LAN_IPV6, TAGGED_WAN, TAGGED_WAN_IPV4, TAGGED_WAN_IPV6, TaggedAddress,
    TrustDomain, TrustDomainError, Upstream, UpstreamConfig, UpstreamConfiguration, UpstreamError,
    UpstreamKey, UpstreamLimits, UpstreamListener, UpstreamModeLayers, UpstreamPath,
    WAN_FEDERATION_META, Weights, chain_target_mode, error_chain, merge_proxy_mode,
    merge_upstream_mode, resolve_mesh_gateway, sidecar_default_checks, sidecar_from_service,
    trust_domain_for_target, upstream_mode_layers, upstream_path, validate_meta,
    validate_upstreams,
};
