//! Config entries `proxy-defaults` and `service-defaults` in Consul's JSON, and the
//! mesh-gateway mode they give each upstream (see docs/consul-compatibility.md,
//! 'proxy-defaults and service-defaults' and 'Mesh-gateway mode resolution').
//!
//! Field names are PascalCase on output; snake_case is accepted on input. Values Consul checks
//! in `Validate` (protocol, mTLS mode, balance, failover mode) are checked while parsing, with
//! Consul's messages; rules that relate fields are checked by [`ConfigEntry::validate`].
//! Unlike Consul, an unknown `MeshGateway.Mode` is refused, and fields mesh does not
//! implement (`TransparentProxy`, `Destination`, `Expose`, `EnvoyExtensions`, ...) are refused as
//! unknown rather than stored and ignored (docs/consul-compatibility.md, 'Unknown mesh-gateway
//! modes are refused' and 'Unknown fields are refused').
//!
//! ```
//! use mesh_core::ConfigEntry;
//! use mesh_core::MeshGatewayMode;
//!
//! // The guide's proxy-defaults.json, with its bare-string MeshGateway.
//! let e = ConfigEntry::from_json(r#"{"Kind": "proxy-defaults", "Name": "global", "MeshGateway": "local"}"#)?;
//! assert_eq!(e.kind().as_str(), "proxy-defaults");
//! assert_eq!(e.name(), "global");
//! assert_eq!(e.mesh_gateway_mode(), MeshGatewayMode::Local);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::{Map, Value};

use crate::catalog::serde_util::{empty_as_none, empty_string_as_none, is_zero};
use crate::catalog::{MetaError, validate_meta};
use crate::mesh_gateway::{MeshGatewayConfig, MeshGatewayMode, UpstreamModeLayers};
use crate::names::{Namespace, Partition, ServiceName};

/// The only name a proxy-defaults entry may have.
pub const PROXY_DEFAULTS_NAME: &str = "global";

/// The kinds of config entry mesh implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ConfigEntryKind {
    /// `proxy-defaults`.
    ProxyDefaults,
    /// `service-defaults`.
    ServiceDefaults,
}

impl ConfigEntryKind {
    /// The kind as Consul writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProxyDefaults => "proxy-defaults",
            Self::ServiceDefaults => "service-defaults",
        }
    }
}

impl FromStr for ConfigEntryKind {
    type Err = ConfigEntryError;
    fn from_str(s: &str) -> Result<Self, ConfigEntryError> {
        match s {
            "proxy-defaults" => Ok(Self::ProxyDefaults),
            "service-defaults" => Ok(Self::ServiceDefaults),
            _ => Err(ConfigEntryError::UnsupportedKind(s.to_owned())),
        }
    }
}

impl fmt::Display for ConfigEntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A config entry that cannot be parsed or breaks a rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigEntryError {
    /// Not JSON, an unknown field, or a malformed value (carries Consul's message for the
    /// values Consul validates, e.g. `invalid value for protocol: blah`).
    #[error("malformed config entry")]
    Json(#[source] serde_json::Error),
    /// No `Kind`.
    #[error("config entry Kind is required")]
    MissingKind,
    /// A kind mesh does not implement here (`service-intentions` lives in mesh-intentions).
    #[error("config entry kind {0:?} is not supported")]
    UnsupportedKind(String),
    /// `UpstreamConfig.Defaults` names an upstream.
    #[error("error in upstream defaults: Name must be empty")]
    UpstreamDefaultsName,
    /// An `UpstreamConfig.Overrides` item without a name.
    #[error("error in upstream override {index}: Name is required")]
    UpstreamOverrideName {
        /// Index in `Overrides`.
        index: usize,
    },
    /// Two overrides for the same upstream.
    #[error("error in upstream override {index}: duplicate override for {name}")]
    DuplicateUpstreamOverride {
        /// Index of the second one in `Overrides`.
        index: usize,
        /// The upstream.
        name: ServiceName,
    },
    /// Metadata breaks a limit.
    #[error("invalid config entry metadata")]
    Meta(#[source] MetaError),
}

/// The name of a proxy-defaults entry: always `global` (`""` is normalised to it; anything else
/// is refused with `invalid name ("<n>"), only "global" is supported`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GlobalName;

impl Serialize for GlobalName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(PROXY_DEFAULTS_NAME)
    }
}

impl<'de> Deserialize<'de> for GlobalName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        if s.is_empty() || s == PROXY_DEFAULTS_NAME {
            Ok(GlobalName)
        } else {
            Err(de::Error::custom(format_args!(
                "invalid name ({s:?}), only \"{PROXY_DEFAULTS_NAME}\" is supported"
            )))
        }
    }
}

macro_rules! string_enum {
    (
        $(#[$meta:meta])* $name:ident, $err:literal,
        { $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// The value as Consul writes it.
            pub fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $text, )+ }
            }

            /// Whether this is the unset value.
            pub fn is_default(&self) -> bool {
                *self == Self::default()
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $( $text => Ok(Self::$variant), )+
                    _ => Err(format!($err, s)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Option::<String>::deserialize(d)?
                    .unwrap_or_default()
                    .parse()
                    .map_err(de::Error::custom)
            }
        }
    };
}

string_enum!(
    /// The L4/L7 protocol of a service. Parsing lower-cases first, as Consul's Normalize does.
    Protocol, "invalid value for protocol: {}", {
        /// Unset (`tcp` in effect).
        #[default]
        Default = "",
        /// `tcp`.
        Tcp = "tcp",
        /// `http`.
        Http = "http",
        /// `http2`.
        Http2 = "http2",
        /// `grpc`.
        Grpc = "grpc",
    }
);

string_enum!(
    /// How a proxy handles traffic.
    ProxyMode, "invalid proxy mode: {:?}; expected \"\", \"direct\" or \"transparent\"", {
        /// Unset.
        #[default]
        Default = "",
        /// Explicit upstreams only (what mesh sidecars do).
        Direct = "direct",
        /// Transparent proxying (not implemented by mesh sidecars).
        Transparent = "transparent",
    }
);

string_enum!(
    /// Whether a sidecar also accepts plaintext.
    MutualTlsMode,
    "Invalid MutualTLSMode {:?}. Must be one of \"\", \"strict\", or \"permissive\".", {
        /// Unset (strict).
        #[default]
        Default = "",
        /// mTLS only.
        Strict = "strict",
        /// mTLS or plaintext.
        Permissive = "permissive",
    }
);

string_enum!(
    /// How inbound connections are balanced over worker threads.
    BalanceConnections, "invalid value for balance_inbound_connections: {}", {
        /// Unset.
        #[default]
        Default = "",
        /// `exact_balance`.
        ExactBalance = "exact_balance",
    }
);

string_enum!(
    /// The failover policy mode.
    FailoverMode,
    "Failover-policy mode must be one of '', 'sequential', or 'order-by-locality' (got {:?})", {
        /// Unset.
        #[default]
        Default = "",
        /// `sequential`.
        Sequential = "sequential",
        /// `order-by-locality`.
        OrderByLocality = "order-by-locality",
    }
);

/// Deserialises a protocol after lower-casing it.
fn protocol_lower<'de, D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
    Option::<String>::deserialize(d)?
        .unwrap_or_default()
        .to_ascii_lowercase()
        .parse()
        .map_err(de::Error::custom)
}

/// Deserialises a service-defaults name: a service, never the wildcard.
fn service_defaults_name<'de, D: Deserializer<'de>>(d: D) -> Result<ServiceName, D::Error> {
    let s = String::deserialize(d)?;
    if s == "*" {
        return Err(de::Error::custom(
            "service-defaults name must be the name of a service, and not a wildcard",
        ));
    }
    s.parse().map_err(de::Error::custom)
}

/// `FailoverPolicy`: how failover targets are ordered.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverPolicy {
    /// The mode.
    #[serde(
        rename = "Mode",
        alias = "mode",
        default,
        skip_serializing_if = "FailoverMode::is_default"
    )]
    pub mode: FailoverMode,
    /// Regions, in order.
    #[serde(
        rename = "Regions",
        alias = "regions",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub regions: Vec<String>,
}

/// A `proxy-defaults` entry (name always `global`).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyDefaults {
    /// The name (`global`).
    #[serde(rename = "Name", alias = "name", default)]
    pub name: GlobalName,
    /// Opaque proxy configuration; `protocol` inside it is read by [`ProxyDefaults::protocol`].
    #[serde(
        rename = "Config",
        alias = "config",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    pub config: Map<String, Value>,
    /// The proxy mode.
    #[serde(
        rename = "Mode",
        alias = "mode",
        default,
        skip_serializing_if = "ProxyMode::is_default"
    )]
    pub mode: ProxyMode,
    /// The mTLS mode.
    #[serde(
        rename = "MutualTLSMode",
        alias = "mutual_tls_mode",
        default,
        skip_serializing_if = "MutualTlsMode::is_default"
    )]
    pub mutual_tls_mode: MutualTlsMode,
    /// The mesh-gateway mode of every proxy (layer 1 of docs/consul-compatibility.md,
    /// 'Mesh-gateway mode resolution').
    #[serde(
        rename = "MeshGateway",
        alias = "mesh_gateway",
        default,
        skip_serializing_if = "MeshGatewayConfig::is_default"
    )]
    pub mesh_gateway: MeshGatewayConfig,
    /// The failover policy.
    #[serde(
        rename = "FailoverPolicy",
        alias = "failover_policy",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub failover_policy: Option<FailoverPolicy>,
    /// Metadata.
    #[serde(
        rename = "Meta",
        alias = "meta",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub meta: BTreeMap<String, String>,
}

impl ProxyDefaults {
    /// The `protocol` key of `Config`, lower-cased; unset when absent or not a string.
    pub fn protocol(&self) -> Result<Protocol, String> {
        match self.config.get("protocol").and_then(Value::as_str) {
            Some(p) => p.to_ascii_lowercase().parse(),
            None => Ok(Protocol::Default),
        }
    }
}

/// Limits of one upstream's connection pool.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamLimits {
    /// Most connections.
    #[serde(
        rename = "MaxConnections",
        alias = "max_connections",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_connections: Option<u32>,
    /// Most pending requests.
    #[serde(
        rename = "MaxPendingRequests",
        alias = "max_pending_requests",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_pending_requests: Option<u32>,
    /// Most concurrent requests.
    #[serde(
        rename = "MaxConcurrentRequests",
        alias = "max_concurrent_requests",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_concurrent_requests: Option<u32>,
}

/// One item of `UpstreamConfig`: the defaults for every upstream, or an override for one.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The upstream (overrides only).
    #[serde(
        rename = "Name",
        alias = "name",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<ServiceName>,
    /// The upstream's namespace.
    #[serde(
        rename = "Namespace",
        alias = "namespace",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub namespace: Option<Namespace>,
    /// The upstream's partition.
    #[serde(
        rename = "Partition",
        alias = "partition",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub partition: Option<Partition>,
    /// The upstream's peer (kept for completeness; mesh has no peering).
    #[serde(
        rename = "Peer",
        alias = "peer",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub peer: Option<String>,
    /// The protocol.
    #[serde(
        rename = "Protocol",
        alias = "protocol",
        default,
        deserialize_with = "protocol_lower",
        skip_serializing_if = "Protocol::is_default"
    )]
    pub protocol: Protocol,
    /// Connect time-out in milliseconds (`0` = unset).
    #[serde(
        rename = "ConnectTimeoutMs",
        alias = "connect_timeout_ms",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub connect_timeout_ms: u32,
    /// Connection-pool limits.
    #[serde(
        rename = "Limits",
        alias = "limits",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub limits: Option<UpstreamLimits>,
    /// Passive health checking (opaque).
    #[serde(
        rename = "PassiveHealthCheck",
        alias = "passive_health_check",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub passive_health_check: Option<Map<String, Value>>,
    /// The mesh-gateway mode (layers 3 and 5 of docs/consul-compatibility.md,
    /// 'Mesh-gateway mode resolution').
    #[serde(
        rename = "MeshGateway",
        alias = "mesh_gateway",
        default,
        skip_serializing_if = "MeshGatewayConfig::is_default"
    )]
    pub mesh_gateway: MeshGatewayConfig,
    /// How outbound connections are balanced.
    #[serde(
        rename = "BalanceOutboundConnections",
        alias = "balance_outbound_connections",
        default,
        skip_serializing_if = "BalanceConnections::is_default"
    )]
    pub balance_outbound_connections: BalanceConnections,
}

/// `UpstreamConfig` of a service-defaults entry.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfiguration {
    /// Per-upstream overrides.
    #[serde(
        rename = "Overrides",
        alias = "overrides",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub overrides: Vec<UpstreamConfig>,
    /// Defaults for every upstream.
    #[serde(
        rename = "Defaults",
        alias = "defaults",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub defaults: Option<UpstreamConfig>,
}

impl UpstreamConfiguration {
    /// The override for `upstream`, if any.
    pub fn override_for(&self, upstream: &ServiceName) -> Option<&UpstreamConfig> {
        self.overrides
            .iter()
            .find(|o| o.name.as_ref() == Some(upstream))
    }
}

/// A `service-defaults` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDefaults {
    /// The service (never `*`).
    #[serde(
        rename = "Name",
        alias = "name",
        deserialize_with = "service_defaults_name"
    )]
    pub name: ServiceName,
    /// The protocol.
    #[serde(
        rename = "Protocol",
        alias = "protocol",
        default,
        deserialize_with = "protocol_lower",
        skip_serializing_if = "Protocol::is_default"
    )]
    pub protocol: Protocol,
    /// The proxy mode.
    #[serde(
        rename = "Mode",
        alias = "mode",
        default,
        skip_serializing_if = "ProxyMode::is_default"
    )]
    pub mode: ProxyMode,
    /// The mTLS mode.
    #[serde(
        rename = "MutualTLSMode",
        alias = "mutual_tls_mode",
        default,
        skip_serializing_if = "MutualTlsMode::is_default"
    )]
    pub mutual_tls_mode: MutualTlsMode,
    /// The mesh-gateway mode: layer 2 of docs/consul-compatibility.md, 'Mesh-gateway mode
    /// resolution', for the service's own upstreams, and the starting point of the target's
    /// mode (stage C) when the service is a target.
    #[serde(
        rename = "MeshGateway",
        alias = "mesh_gateway",
        default,
        skip_serializing_if = "MeshGatewayConfig::is_default"
    )]
    pub mesh_gateway: MeshGatewayConfig,
    /// An SNI for a service outside the mesh; such targets never use gateways.
    #[serde(
        rename = "ExternalSNI",
        alias = "external_sni",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_sni: Option<String>,
    /// Configuration of the service's upstreams.
    #[serde(
        rename = "UpstreamConfig",
        alias = "upstream_config",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub upstream_config: Option<UpstreamConfiguration>,
    /// Most inbound connections (`0` = unlimited).
    #[serde(
        rename = "MaxInboundConnections",
        alias = "max_inbound_connections",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub max_inbound_connections: u32,
    /// Time-out connecting to the local application, ms (`0` = default).
    #[serde(
        rename = "LocalConnectTimeoutMs",
        alias = "local_connect_timeout_ms",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub local_connect_timeout_ms: u32,
    /// Time-out of a request to the local application, ms (`0` = default).
    #[serde(
        rename = "LocalRequestTimeoutMs",
        alias = "local_request_timeout_ms",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub local_request_timeout_ms: u32,
    /// How inbound connections are balanced.
    #[serde(
        rename = "BalanceInboundConnections",
        alias = "balance_inbound_connections",
        default,
        skip_serializing_if = "BalanceConnections::is_default"
    )]
    pub balance_inbound_connections: BalanceConnections,
    /// Metadata.
    #[serde(
        rename = "Meta",
        alias = "meta",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub meta: BTreeMap<String, String>,
}

impl ServiceDefaults {
    /// An entry for `name` with nothing else set.
    pub fn new(name: ServiceName) -> Self {
        Self {
            name,
            protocol: Protocol::Default,
            mode: ProxyMode::Default,
            mutual_tls_mode: MutualTlsMode::Default,
            mesh_gateway: MeshGatewayConfig::default(),
            external_sni: None,
            upstream_config: None,
            max_inbound_connections: 0,
            local_connect_timeout_ms: 0,
            local_request_timeout_ms: 0,
            balance_inbound_connections: BalanceConnections::Default,
            meta: BTreeMap::new(),
        }
    }
}

/// A config entry of one of the kinds mesh implements here.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigEntry {
    /// `proxy-defaults`.
    ProxyDefaults(ProxyDefaults),
    /// `service-defaults`.
    ServiceDefaults(ServiceDefaults),
}

impl ConfigEntry {
    /// The kind.
    pub fn kind(&self) -> ConfigEntryKind {
        match self {
            Self::ProxyDefaults(_) => ConfigEntryKind::ProxyDefaults,
            Self::ServiceDefaults(_) => ConfigEntryKind::ServiceDefaults,
        }
    }

    /// The name (`global` for proxy-defaults).
    pub fn name(&self) -> &str {
        match self {
            Self::ProxyDefaults(_) => PROXY_DEFAULTS_NAME,
            Self::ServiceDefaults(s) => s.name.as_str(),
        }
    }

    /// The entry's own `MeshGateway` mode.
    pub fn mesh_gateway_mode(&self) -> MeshGatewayMode {
        match self {
            Self::ProxyDefaults(p) => p.mesh_gateway.mode,
            Self::ServiceDefaults(s) => s.mesh_gateway.mode,
        }
    }

    /// Parses an entry (`Kind` or `kind` selects the type). Does not run
    /// [`ConfigEntry::validate`].
    pub fn from_json(s: &str) -> Result<Self, ConfigEntryError> {
        let v: Value = serde_json::from_str(s).map_err(ConfigEntryError::Json)?;
        Self::from_value(v)
    }

    /// Parses and validates an entry: what a write does (normalise, then validate).
    pub fn from_json_validated(s: &str) -> Result<Self, ConfigEntryError> {
        let e = Self::from_json(s)?;
        e.validate()?;
        Ok(e)
    }

    fn from_value(v: Value) -> Result<Self, ConfigEntryError> {
        let Value::Object(mut map) = v else {
            return Err(ConfigEntryError::MissingKind);
        };
        let kind = match (map.remove("Kind"), map.remove("kind")) {
            (Some(Value::String(k)), None) | (None, Some(Value::String(k))) => k,
            _ => return Err(ConfigEntryError::MissingKind),
        };
        let body = Value::Object(map);
        match kind.parse::<ConfigEntryKind>()? {
            ConfigEntryKind::ProxyDefaults => ProxyDefaults::deserialize(body)
                .map(Self::ProxyDefaults)
                .map_err(ConfigEntryError::Json),
            ConfigEntryKind::ServiceDefaults => ServiceDefaults::deserialize(body)
                .map(Self::ServiceDefaults)
                .map_err(ConfigEntryError::Json),
        }
    }

    /// The JSON form, PascalCase, with `Kind`.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: maps have string keys, values are JSON values.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the rules that relate fields: metadata limits; for service-defaults, upstream
    /// defaults without a name and overrides with one, at most one override per upstream.
    pub fn validate(&self) -> Result<(), ConfigEntryError> {
        match self {
            Self::ProxyDefaults(p) => {
                validate_meta(&p.meta, true).map_err(ConfigEntryError::Meta)?;
            }
            Self::ServiceDefaults(s) => {
                validate_meta(&s.meta, true).map_err(ConfigEntryError::Meta)?;
                if let Some(uc) = &s.upstream_config {
                    if uc.defaults.as_ref().is_some_and(|d| d.name.is_some()) {
                        return Err(ConfigEntryError::UpstreamDefaultsName);
                    }
                    let mut seen = std::collections::BTreeSet::new();
                    for (index, o) in uc.overrides.iter().enumerate() {
                        let name = o
                            .name
                            .as_ref()
                            .ok_or(ConfigEntryError::UpstreamOverrideName { index })?;
                        if !seen.insert(name) {
                            return Err(ConfigEntryError::DuplicateUpstreamOverride {
                                index,
                                name: name.clone(),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Serialize for ConfigEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Tagged<'a, T> {
            #[serde(rename = "Kind")]
            kind: &'static str,
            #[serde(flatten)]
            body: &'a T,
        }
        let kind = self.kind().as_str();
        match self {
            Self::ProxyDefaults(body) => Tagged { kind, body }.serialize(s),
            Self::ServiceDefaults(body) => Tagged { kind, body }.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ConfigEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Self::from_value(v).map_err(|e| match e {
            ConfigEntryError::Json(j) => de::Error::custom(j),
            other => de::Error::custom(other),
        })
    }
}

/// The mesh-gateway modes the server resolves for a proxy (stage A, layers 1-5 of
/// docs/consul-compatibility.md, 'Mesh-gateway mode resolution'; Consul's
/// `ComputeResolvedServiceConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedMeshGateway {
    /// The proxy-wide mode (proxy-defaults, then service-defaults).
    pub top_level: MeshGatewayMode,
    /// The mode of upstreams without an override (the `*` entry).
    pub wildcard: MeshGatewayMode,
    /// The mode of each requested upstream.
    pub upstreams: BTreeMap<ServiceName, MeshGatewayMode>,
}

/// The mesh-gateway mode layers (docs/consul-compatibility.md, 'Mesh-gateway mode resolution')
/// for one upstream of a proxy whose destination service has `service_defaults`,
/// under `proxy_defaults`, with the registration's proxy-wide mode `proxy_mode` and the mode
/// written on the upstream itself `upstream_mode`. `upstream` is `None` for the wildcard
/// upstream, which no override applies to.
pub fn upstream_mode_layers(
    proxy_defaults: Option<&ProxyDefaults>,
    service_defaults: Option<&ServiceDefaults>,
    proxy_mode: MeshGatewayMode,
    upstream: Option<&ServiceName>,
    upstream_mode: MeshGatewayMode,
) -> UpstreamModeLayers {
    let uc = service_defaults.and_then(|s| s.upstream_config.as_ref());
    UpstreamModeLayers {
        proxy_defaults: proxy_defaults
            .map(|p| p.mesh_gateway.mode)
            .unwrap_or_default(),
        service_defaults: service_defaults
            .map(|s| s.mesh_gateway.mode)
            .unwrap_or_default(),
        upstream_defaults: uc
            .and_then(|u| u.defaults.as_ref())
            .map(|d| d.mesh_gateway.mode)
            .unwrap_or_default(),
        proxy_registration: proxy_mode,
        upstream_override: uc
            .zip(upstream)
            .and_then(|(u, name)| u.override_for(name))
            .map(|o| o.mesh_gateway.mode)
            .unwrap_or_default(),
        upstream_registration: upstream_mode,
    }
}

/// Stage A: the modes the server resolves for a proxy with destination-service defaults
/// `service_defaults`, registration mode `proxy_mode` and the named `upstreams`.
pub fn resolve_mesh_gateway(
    proxy_defaults: Option<&ProxyDefaults>,
    service_defaults: Option<&ServiceDefaults>,
    proxy_mode: MeshGatewayMode,
    upstreams: &[ServiceName],
) -> ResolvedMeshGateway {
    let layers = |u: Option<&ServiceName>| {
        upstream_mode_layers(
            proxy_defaults,
            service_defaults,
            proxy_mode,
            u,
            MeshGatewayMode::Default,
        )
    };
    let base = layers(None);
    ResolvedMeshGateway {
        top_level: base.top_level(),
        wildcard: base.wildcard(),
        upstreams: upstreams
            .iter()
            .map(|u| (u.clone(), layers(Some(u)).resolved()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_proxy_defaults_loads() {
        let e = ConfigEntry::from_json_validated(
            "{\n\"Kind\": \"proxy-defaults\",\n\"Name\": \"global\",\n\"MeshGateway\": \"local\"\n}",
        )
        .unwrap();
        assert_eq!(e.kind(), ConfigEntryKind::ProxyDefaults);
        assert_eq!(e.mesh_gateway_mode(), MeshGatewayMode::Local);
        assert_eq!(
            e.to_json(),
            r#"{"Kind":"proxy-defaults","Name":"global","MeshGateway":{"Mode":"local"}}"#
        );
    }

    #[test]
    fn round_trip_both_kinds() {
        for json in [
            r#"{"kind":"proxy-defaults","config":{"protocol":"HTTP"},"mesh_gateway":{"mode":"remote"},
                "failover_policy":{"mode":"sequential"},"meta":{"a":"b"},"mutual_tls_mode":"strict"}"#,
            r#"{"Kind":"service-defaults","Name":"web","Protocol":"HTTP2","ExternalSNI":"x.example",
                "UpstreamConfig":{"Defaults":{"ConnectTimeoutMs":5,"MeshGateway":{"Mode":"none"},
                "Limits":{"MaxConnections":3}},"Overrides":[{"Name":"db","MeshGateway":"local",
                "PassiveHealthCheck":{"Interval":"1s"}}]},"BalanceInboundConnections":"exact_balance"}"#,
        ] {
            let e = ConfigEntry::from_json_validated(json).unwrap();
            let back = ConfigEntry::from_json(&e.to_json()).unwrap();
            assert_eq!(back, e);
            let via_serde: ConfigEntry = serde_json::from_str(&e.to_json()).unwrap();
            assert_eq!(via_serde, e);
        }
        let ConfigEntry::ProxyDefaults(p) =
            ConfigEntry::from_json(r#"{"Kind":"proxy-defaults","Config":{"protocol":"HTTP"}}"#)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(p.protocol(), Ok(Protocol::Http));
    }

    #[test]
    fn refusals() {
        let err = |j: &str| ConfigEntry::from_json_validated(j).unwrap_err().to_string();
        assert!(matches!(
            ConfigEntry::from_json(r#"{"Name":"x"}"#),
            Err(ConfigEntryError::MissingKind)
        ));
        assert!(matches!(
            ConfigEntry::from_json(r#"{"Kind":"service-intentions","Name":"x"}"#),
            Err(ConfigEntryError::UnsupportedKind(k)) if k == "service-intentions"
        ));
        let e = ConfigEntry::from_json(r#"{"Kind":"proxy-defaults","Name":"foo"}"#).unwrap_err();
        let ConfigEntryError::Json(j) = e else {
            panic!("{e:?}")
        };
        assert!(
            j.to_string()
                .contains(r#"invalid name ("foo"), only "global" is supported"#)
        );
        assert_eq!(
            err(r#"{"Kind":"service-defaults","Name":"web","UpstreamConfig":{"Overrides":[{}]}}"#),
            "error in upstream override 0: Name is required"
        );
        assert!(err(
            r#"{"Kind":"service-defaults","Name":"web","UpstreamConfig":{"Overrides":[{"Name":"a"},{"Name":"a"}]}}"#
        )
        .contains("duplicate override"));
        assert!(
            ConfigEntry::from_json(
                r#"{"Kind":"service-defaults","Name":"web","TransparentProxy":{}}"#
            )
            .is_err()
        );
        assert!(ConfigEntry::from_json("[]").is_err());
        assert!(ConfigEntry::from_json(r#"{"Kind":"service-defaults"}"#).is_err());
    }

    #[test]
    fn resolution_uses_overrides_by_name() {
        let sd: ServiceDefaults = serde_json::from_str(
            r#"{"Name":"web","MeshGateway":"none","UpstreamConfig":{"Defaults":{"MeshGateway":"local"},
                "Overrides":[{"Name":"db","MeshGateway":"remote"}]}}"#,
        )
        .unwrap();
        let pd = ProxyDefaults {
            mesh_gateway: MeshGatewayMode::Local.into(),
            ..ProxyDefaults::default()
        };
        let db: ServiceName = "db".parse().unwrap();
        let cache: ServiceName = "cache".parse().unwrap();
        let r = resolve_mesh_gateway(
            Some(&pd),
            Some(&sd),
            MeshGatewayMode::Default,
            &[db.clone(), cache.clone()],
        );
        assert_eq!(r.top_level, MeshGatewayMode::None);
        assert_eq!(r.wildcard, MeshGatewayMode::Local);
        assert_eq!(r.upstreams[&db], MeshGatewayMode::Remote);
        assert_eq!(r.upstreams[&cache], MeshGatewayMode::Local);
        let l = upstream_mode_layers(
            Some(&pd),
            Some(&sd),
            MeshGatewayMode::Default,
            Some(&db),
            MeshGatewayMode::None,
        );
        assert_eq!(l.effective(), MeshGatewayMode::None);
    }
}
