//! The catalog model: service registrations in Consul's JSON (see docs/consul-compatibility.md,
//! 'Sidecar registration defaults' and 'Mesh-gateway registration').
//!
//! A [`ServiceDefinition`] is what an agent registers: a typical service (optionally with a
//! `connect.sidecar_service`), a connect proxy, or a mesh gateway. Parsing accepts Consul's
//! PascalCase (HTTP API) and snake_case (agent configuration files) field names, the
//! `{"service": {...}}` wrapper of configuration files and the bare object; unknown fields are
//! refused so that a typo (`upstream` for `upstreams`) is an error rather than a silently
//! missing upstream. Serialisation writes the bare PascalCase object.
//!
//! Parsing refuses malformed values (an upper-case service name, a `*` destination, an address
//! that is neither an IP nor a host name); [`ServiceDefinition::validate`] then checks the rules
//! that relate fields, with Consul's messages. [`sidecar`] turns a `sidecar_service` stanza into
//! the proxy's own registration; [`gateway`] builds and reads mesh-gateway registrations.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::{Map, Value};

mod address;
mod check;
mod gateway;
mod meta;
pub(crate) mod serde_util;
mod sidecar;
mod upstream;

pub use address::{
    AddressError, Host, HostPort, MAX_HOST_NAME_LEN, TAGGED_LAN, TAGGED_LAN_IPV4, TAGGED_LAN_IPV6,
    TAGGED_WAN, TAGGED_WAN_IPV4, TAGGED_WAN_IPV6, TaggedAddress,
};
pub use check::{CheckDefinition, CheckError, DurationError, GoDuration};
pub use gateway::{
    DEFAULT_MESH_GATEWAY_NAME, DEFAULT_MESH_GATEWAY_PORT, MeshGatewayRegistration,
    WAN_FEDERATION_META,
};
pub use meta::{
    MAX_META_KEY_LEN, MAX_META_PAIRS, MAX_META_VALUE_LEN, MetaError, RESERVED_META_PREFIX,
    validate_meta,
};
pub use sidecar::{
    DEFAULT_SIDECAR_MAX_PORT, DEFAULT_SIDECAR_MIN_PORT, SIDECAR_SUFFIX, Sidecar, SidecarError,
    SidecarPortError, SidecarPortRange, sidecar_default_checks, sidecar_from_service,
};
pub use upstream::{
    DEFAULT_LOCAL_BIND_ADDRESS, DestinationType, DestinationTypeError, SocketMode, SocketModeError,
    Upstream, UpstreamError, UpstreamKey, UpstreamListener,
};

use crate::mesh_gateway::MeshGatewayConfig;
use crate::names::ServiceName;
use serde_util::{empty_as_none, empty_string_as_none, is_false, is_zero};

/// The longest service instance ID accepted, in bytes.
pub const MAX_SERVICE_ID_LEN: usize = 256;

/// The kind of a registered service.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    /// An ordinary service (`""`).
    #[default]
    Typical,
    /// A sidecar or standalone connect proxy (`connect-proxy`).
    ConnectProxy,
    /// A mesh gateway (`mesh-gateway`).
    MeshGateway,
}

/// A service kind mesh does not implement (`terminating-gateway`, `ingress-gateway`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "service kind {0:?} is not supported; expected \"\", \"connect-proxy\" or \"mesh-gateway\""
)]
pub struct ServiceKindError(pub String);

impl ServiceKind {
    /// The kind as Consul writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Typical => "",
            Self::ConnectProxy => "connect-proxy",
            Self::MeshGateway => "mesh-gateway",
        }
    }

    fn is_typical(&self) -> bool {
        *self == Self::Typical
    }
}

impl FromStr for ServiceKind {
    type Err = ServiceKindError;
    fn from_str(s: &str) -> Result<Self, ServiceKindError> {
        match s {
            "" | "typical" => Ok(Self::Typical),
            "connect-proxy" => Ok(Self::ConnectProxy),
            "mesh-gateway" => Ok(Self::MeshGateway),
            _ => Err(ServiceKindError(s.to_owned())),
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ServiceKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ServiceKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<String>::deserialize(d)?
            .unwrap_or_default()
            .parse()
            .map_err(de::Error::custom)
    }
}

/// The ID of one service instance on an agent (`web1`, `web1-sidecar-proxy`). Consul allows
/// most strings; mesh asks for 1 to [`MAX_SERVICE_ID_LEN`] printable ASCII characters without
/// spaces or `/`, so an ID can always be put in a URL path segment or a log line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceInstanceId(String);

/// Why a string is not a service instance ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid service ID {0:?}: expected 1 to {MAX_SERVICE_ID_LEN} printable ASCII characters without spaces or '/'"
)]
pub struct ServiceInstanceIdError(pub String);

impl ServiceInstanceId {
    /// Validates an ID.
    pub fn new(s: impl Into<String>) -> Result<Self, ServiceInstanceIdError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= MAX_SERVICE_ID_LEN
            && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
        if ok {
            Ok(Self(s))
        } else {
            Err(ServiceInstanceIdError(s))
        }
    }

    /// The ID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ServiceInstanceId {
    type Err = ServiceInstanceIdError;
    fn from_str(s: &str) -> Result<Self, ServiceInstanceIdError> {
        Self::new(s)
    }
}

impl From<ServiceName> for ServiceInstanceId {
    fn from(n: ServiceName) -> Self {
        // A valid service name is a valid instance ID: at most 63 bytes of [a-z0-9_-].
        Self(n.as_str().to_owned())
    }
}

impl fmt::Display for ServiceInstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ServiceInstanceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ServiceInstanceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// An ACL token secret: the one secret type of mesh's public API (re-exported as
/// `mesh::Secret`), also carried by a registration. It serialises as the plain string (a
/// registration must round-trip) but never shows in `Debug` output. The empty secret is the
/// anonymous token.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TokenSecret(String);

impl TokenSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself; call only where it is needed (an ACL lookup).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

impl From<&str> for TokenSecret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for TokenSecret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&String> for TokenSecret {
    fn from(s: &String) -> Self {
        Self::new(s.as_str())
    }
}

impl FromStr for TokenSecret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl Serialize for TokenSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TokenSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

/// Load-balancing weights of an instance by health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// Weight while passing (at least 1).
    #[serde(rename = "Passing", alias = "passing")]
    pub passing: u32,
    /// Weight while warning.
    #[serde(rename = "Warning", alias = "warning")]
    pub warning: u32,
}

/// Where an instance runs.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locality {
    /// The region.
    #[serde(
        rename = "Region",
        alias = "region",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub region: String,
    /// The zone.
    #[serde(
        rename = "Zone",
        alias = "zone",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub zone: String,
}

/// The `Proxy` block of a connect proxy or mesh gateway (`connect.sidecar_service.proxy` too).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The service the proxy fronts.
    #[serde(
        rename = "DestinationServiceName",
        alias = "destination_service_name",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub destination_service_name: Option<ServiceName>,
    /// The instance the proxy fronts.
    #[serde(
        rename = "DestinationServiceID",
        alias = "destination_service_id",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub destination_service_id: Option<ServiceInstanceId>,
    /// The address of the local application.
    #[serde(
        rename = "LocalServiceAddress",
        alias = "local_service_address",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_service_address: Option<Host>,
    /// The port of the local application (`0` = unset).
    #[serde(
        rename = "LocalServicePort",
        alias = "local_service_port",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub local_service_port: u16,
    /// The Unix socket of the local application.
    #[serde(
        rename = "LocalServiceSocketPath",
        alias = "local_service_socket_path",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_service_socket_path: Option<String>,
    /// Opaque proxy configuration (`protocol`, `envoy_gateway_bind_addresses`, ...).
    #[serde(
        rename = "Config",
        alias = "config",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    pub config: Map<String, Value>,
    /// The upstreams.
    #[serde(
        rename = "Upstreams",
        alias = "upstreams",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub upstreams: Vec<Upstream>,
    /// The proxy-wide mesh-gateway mode (layer 4 of docs/consul-compatibility.md,
    /// 'Mesh-gateway mode resolution').
    #[serde(
        rename = "MeshGateway",
        alias = "mesh_gateway",
        default,
        skip_serializing_if = "MeshGatewayConfig::is_default"
    )]
    pub mesh_gateway: MeshGatewayConfig,
}

/// The `Connect` block of a registration.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConnect {
    /// The application speaks mesh mTLS itself.
    #[serde(
        rename = "Native",
        alias = "native",
        default,
        skip_serializing_if = "is_false"
    )]
    pub native: bool,
    /// A sidecar to register with the service (see [`sidecar_from_service`]).
    #[serde(
        rename = "SidecarService",
        alias = "sidecar_service",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sidecar_service: Option<Box<ServiceDefinition>>,
}

/// A service registration.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDefinition {
    /// The kind.
    #[serde(
        rename = "Kind",
        alias = "kind",
        default,
        skip_serializing_if = "ServiceKind::is_typical"
    )]
    pub kind: ServiceKind,
    /// The instance ID (unset = the name).
    #[serde(
        rename = "ID",
        alias = "id",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<ServiceInstanceId>,
    /// The service name; required by [`ServiceDefinition::validate`], optional inside a
    /// `sidecar_service` stanza.
    #[serde(
        rename = "Name",
        alias = "name",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<ServiceName>,
    /// Tags.
    #[serde(
        rename = "Tags",
        alias = "tags",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    /// The address (unset = the node's).
    #[serde(
        rename = "Address",
        alias = "address",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<Host>,
    /// Tagged addresses (`lan`, `wan`, ...).
    #[serde(
        rename = "TaggedAddresses",
        alias = "tagged_addresses",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tagged_addresses: BTreeMap<String, TaggedAddress>,
    /// Metadata.
    #[serde(
        rename = "Meta",
        alias = "meta",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub meta: BTreeMap<String, String>,
    /// The port (`0` = unset).
    #[serde(
        rename = "Port",
        alias = "port",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub port: u16,
    /// A Unix socket instead of a port.
    #[serde(
        rename = "SocketPath",
        alias = "socket_path",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub socket_path: Option<String>,
    /// Let the catalog's tags override the agent's.
    #[serde(
        rename = "EnableTagOverride",
        alias = "enable_tag_override",
        default,
        skip_serializing_if = "is_false"
    )]
    pub enable_tag_override: bool,
    /// Load-balancing weights.
    #[serde(
        rename = "Weights",
        alias = "weights",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub weights: Option<Weights>,
    /// Locality.
    #[serde(
        rename = "Locality",
        alias = "locality",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub locality: Option<Locality>,
    /// One check.
    #[serde(
        rename = "Check",
        alias = "check",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub check: Option<CheckDefinition>,
    /// More checks.
    #[serde(
        rename = "Checks",
        alias = "checks",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub checks: Vec<CheckDefinition>,
    /// The ACL token used to register (a secret: redacted in `Debug`).
    #[serde(
        rename = "Token",
        alias = "token",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<TokenSecret>,
    /// Proxy configuration, for `connect-proxy` and `mesh-gateway` kinds.
    #[serde(
        rename = "Proxy",
        alias = "proxy",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub proxy: Option<ProxyConfig>,
    /// Connect configuration.
    #[serde(
        rename = "Connect",
        alias = "connect",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub connect: Option<ServiceConnect>,
}

/// A registration that cannot be parsed or breaks a rule. Malformed JSON is [`Json`]; every
/// other variant is one broken rule, with Consul's message where Consul has the rule.
///
/// [`Json`]: RegistrationError::Json
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// Not JSON, an unknown field, or a malformed value (name, address, mode, ...).
    #[error("malformed service registration")]
    Json(#[source] serde_json::Error),
    /// The JSON document is not an object.
    #[error("a service registration must be a JSON object")]
    NotAnObject,
    /// No service name.
    #[error("Missing service name")]
    MissingName,
    /// Metadata breaks a limit.
    #[error("invalid service metadata")]
    Meta(#[source] MetaError),
    /// A check breaks a rule.
    #[error("invalid check {index}")]
    Check {
        /// Index of the check (`Check` first, then `Checks`).
        index: usize,
        /// The broken rule.
        #[source]
        source: CheckError,
    },
    /// Weights with a passing weight of zero.
    #[error("Passing must be greater than 0")]
    WeightsPassing,
    /// A connect proxy without a destination service.
    #[error("Proxy.DestinationServiceName must be non-empty for Connect proxy services")]
    ProxyDestinationMissing,
    /// A connect proxy marked connect-native.
    #[error("A Proxy cannot also be Connect Native, only typical services")]
    ProxyNative,
    /// A `Proxy` block on a typical service.
    #[error("Proxy configuration is only valid for connect-proxy and mesh-gateway services")]
    ProxyOnTypical,
    /// A connect-native service with neither port nor socket.
    #[error("Port or SocketPath must be set for a Connect native service.")]
    NativeWithoutPort,
    /// An upstream breaks a rule.
    #[error("invalid upstream {index}")]
    Upstream {
        /// Index in `Upstreams`.
        index: usize,
        /// The broken rule.
        #[source]
        source: UpstreamError,
    },
    /// An upstream in a non-default partition targets another datacenter.
    #[error("upstreams cannot target another datacenter in non default partition")]
    UpstreamCrossDatacenterPartition {
        /// Index in `Upstreams`.
        index: usize,
    },
    /// Two upstreams name the same destination.
    #[error("upstreams cannot contain duplicates of {0}")]
    DuplicateUpstream(Box<UpstreamKey>),
    /// Two upstreams listen on the same address or socket.
    #[error(
        "upstreams cannot contain duplicates by local bind address and port or unix path; \"{0}\" is specified twice"
    )]
    DuplicateListener(UpstreamListener),
    /// A registration offered as a mesh gateway has another kind.
    #[error("expected a mesh-gateway registration, got kind {0:?}")]
    NotAMeshGateway(ServiceKind),
    /// A mesh gateway with port 0.
    #[error("Port must be non-zero for a mesh-gateway")]
    GatewayPortZero,
    /// A mesh gateway with a sidecar.
    #[error("A mesh-gateway cannot have a sidecar service defined")]
    GatewaySidecar,
    /// A mesh gateway with a proxy field that only sidecars have.
    #[error("The Proxy.{0} configuration is invalid for a mesh-gateway")]
    GatewayProxyField(&'static str),
    /// A `sidecar_service` with its own ID.
    #[error("A SidecarService cannot specify an ID as this is managed by the agent")]
    SidecarId,
    /// A `sidecar_service` with its own `sidecar_service`.
    #[error("A SidecarService cannot have a nested SidecarService")]
    NestedSidecar,
    /// The `sidecar_service` stanza breaks a rule.
    #[error("invalid sidecar_service")]
    Sidecar(#[source] Box<RegistrationError>),
}

/// A node's addresses, the fall-back when a service has none of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddresses {
    /// The node's (LAN) address.
    pub address: Host,
    /// The node's `wan` tagged address, if any.
    pub wan: Option<Host>,
}

impl ServiceDefinition {
    /// A Connect-native service: `name` at `addr`, speaking mesh mTLS itself (what
    /// `{"name": .., "address": .., "port": .., "connect": {"native": true}}` registers).
    pub fn connect_native(name: ServiceName, addr: std::net::SocketAddr) -> Self {
        Self {
            name: Some(name),
            address: Some(Host::Ip(addr.ip())),
            port: addr.port(),
            connect: Some(ServiceConnect {
                native: true,
                ..ServiceConnect::default()
            }),
            ..Self::default()
        }
    }

    /// Parses a registration from JSON: the bare object, or the configuration-file form
    /// `{"service": {...}}`. Parsing does not run [`ServiceDefinition::validate`].
    pub fn from_json(s: &str) -> Result<Self, RegistrationError> {
        let mut v: Value = serde_json::from_str(s).map_err(RegistrationError::Json)?;
        let Value::Object(map) = &mut v else {
            return Err(RegistrationError::NotAnObject);
        };
        if map.len() == 1 {
            let key = ["service", "Service"]
                .into_iter()
                .find(|k| map.get(*k).is_some_and(Value::is_object));
            if let Some(inner) = key.and_then(|k| map.remove(k)) {
                v = inner;
            }
        }
        Self::deserialize(v).map_err(RegistrationError::Json)
    }

    /// The bare PascalCase JSON form. The token, if any, is included: this is the stored form.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every map has string keys and every value
        // serialises to a JSON value.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The instance ID: `ID`, or the name when `ID` is unset.
    pub fn instance_id(&self) -> Option<ServiceInstanceId> {
        self.id
            .clone()
            .or_else(|| self.name.clone().map(ServiceInstanceId::from))
    }

    /// `Check` and `Checks` together, `Check` first.
    pub fn all_checks(&self) -> impl Iterator<Item = &CheckDefinition> {
        self.check.iter().chain(self.checks.iter())
    }

    /// The sidecar stanza, if any.
    pub fn sidecar_service(&self) -> Option<&ServiceDefinition> {
        self.connect.as_ref()?.sidecar_service.as_deref()
    }

    /// The address peers should use (Consul's `BestAddress`). For `wan`: the service's `wan`
    /// tagged address (and its port if non-zero), else the service address, else the node's WAN
    /// address, else the node address. Otherwise: the service address, else the node address.
    /// The port is the service port unless the `wan` tagged address sets one (it may be 0 for a
    /// service without a port).
    pub fn best_address(&self, wan: bool, node: &NodeAddresses) -> HostPort {
        let tagged = wan.then(|| self.tagged_addresses.get(TAGGED_WAN)).flatten();
        let port = match tagged {
            Some(t) if t.port != 0 => t.port,
            _ => self.port,
        };
        let host = tagged
            .and_then(|t| t.address.clone())
            .or_else(|| self.address.clone())
            .or_else(|| if wan { node.wan.clone() } else { None })
            .unwrap_or_else(|| node.address.clone());
        HostPort::new(host, port)
    }

    /// Checks the registration as an agent would before accepting it, returning the first
    /// broken rule: a name; metadata limits; checks; per kind, the proxy and gateway rules and
    /// the upstreams; and the `sidecar_service` stanza (which may leave name and port unset).
    pub fn validate(&self) -> Result<(), RegistrationError> {
        if self.name.is_none() {
            return Err(RegistrationError::MissingName);
        }
        self.validate_common()?;
        if let Some(sidecar) = self.sidecar_service() {
            if sidecar.id.is_some() {
                return Err(RegistrationError::SidecarId);
            }
            if sidecar.sidecar_service().is_some() {
                return Err(RegistrationError::NestedSidecar);
            }
            sidecar
                .validate_sidecar_stanza()
                .map_err(|e| RegistrationError::Sidecar(Box::new(e)))?;
        }
        Ok(())
    }

    /// The rules of a `sidecar_service` stanza: what `validate` checks, except that name,
    /// destination and port are filled in later by [`sidecar_from_service`].
    fn validate_sidecar_stanza(&self) -> Result<(), RegistrationError> {
        if !matches!(self.kind, ServiceKind::Typical | ServiceKind::ConnectProxy) {
            return Err(RegistrationError::GatewaySidecar);
        }
        validate_meta(&self.meta, false).map_err(RegistrationError::Meta)?;
        self.validate_checks()?;
        if let Some(p) = &self.proxy {
            validate_upstreams(&p.upstreams)?;
        }
        Ok(())
    }

    fn validate_checks(&self) -> Result<(), RegistrationError> {
        for (index, c) in self.all_checks().enumerate() {
            c.validate()
                .map_err(|source| RegistrationError::Check { index, source })?;
        }
        Ok(())
    }

    fn validate_common(&self) -> Result<(), RegistrationError> {
        let gateway = self.kind == ServiceKind::MeshGateway;
        validate_meta(&self.meta, gateway).map_err(RegistrationError::Meta)?;
        self.validate_checks()?;
        if self.weights.is_some_and(|w| w.passing == 0) {
            return Err(RegistrationError::WeightsPassing);
        }
        let native = self.connect.as_ref().is_some_and(|c| c.native);
        let empty = ProxyConfig::default();
        let proxy = self.proxy.as_ref().unwrap_or(&empty);
        match self.kind {
            ServiceKind::Typical => {
                if self.proxy.is_some() {
                    return Err(RegistrationError::ProxyOnTypical);
                }
                if native && self.port == 0 && self.socket_path.is_none() {
                    return Err(RegistrationError::NativeWithoutPort);
                }
            }
            ServiceKind::ConnectProxy => {
                if proxy.destination_service_name.is_none() {
                    return Err(RegistrationError::ProxyDestinationMissing);
                }
                if native {
                    return Err(RegistrationError::ProxyNative);
                }
                validate_upstreams(&proxy.upstreams)?;
            }
            ServiceKind::MeshGateway => {
                if self.port == 0 {
                    return Err(RegistrationError::GatewayPortZero);
                }
                if self.sidecar_service().is_some() {
                    return Err(RegistrationError::GatewaySidecar);
                }
                let field = [
                    (
                        proxy.destination_service_name.is_some(),
                        "DestinationServiceName",
                    ),
                    (
                        proxy.destination_service_id.is_some(),
                        "DestinationServiceID",
                    ),
                    (proxy.local_service_address.is_some(), "LocalServiceAddress"),
                    (proxy.local_service_port != 0, "LocalServicePort"),
                    (
                        proxy.local_service_socket_path.is_some(),
                        "LocalServiceSocketPath",
                    ),
                    (!proxy.upstreams.is_empty(), "Upstreams"),
                ]
                .into_iter()
                .find_map(|(set, name)| set.then_some(name));
                if let Some(field) = field {
                    return Err(RegistrationError::GatewayProxyField(field));
                }
            }
        }
        Ok(())
    }
}

/// The upstream rules of a proxy (`ValidateForAgent`): per upstream, cross-datacenter targets
/// only from the default partition, then [`Upstream::validate`]; then no two upstreams with
/// the same destination key or the same listener.
pub fn validate_upstreams(upstreams: &[Upstream]) -> Result<(), RegistrationError> {
    let mut keys = BTreeSet::new();
    let mut listeners = HashSet::with_capacity(upstreams.len());
    for (index, u) in upstreams.iter().enumerate() {
        let partition_default = u
            .destination_partition
            .as_ref()
            .is_none_or(|p| p.is_default());
        if u.destination_peer.is_none() && u.datacenter.is_some() && !partition_default {
            return Err(RegistrationError::UpstreamCrossDatacenterPartition { index });
        }
        u.validate()
            .map_err(|source| RegistrationError::Upstream { index, source })?;
        let key = u.key();
        if keys.contains(&key) {
            return Err(RegistrationError::DuplicateUpstream(Box::new(key)));
        }
        keys.insert(key);
        let listener = u.listener();
        if listeners.contains(&listener) {
            return Err(RegistrationError::DuplicateListener(listener));
        }
        listeners.insert(listener);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
