//! Upstreams of a sidecar proxy: `connect.sidecar_service.proxy.upstreams[]`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::{Map, Value};

use super::serde_util::{display_opt, empty_as_none, empty_string_as_none, is_zero};
use crate::mesh_gateway::MeshGatewayConfig;
use crate::names::{Datacenter, Namespace, Partition, ServiceName, Subset};
use crate::sni::Sni;
use crate::trust_domain::TrustDomain;

/// The address an upstream listener binds when `LocalBindAddress` is unset.
pub const DEFAULT_LOCAL_BIND_ADDRESS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// What an upstream names: a service (the default) or a prepared query.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DestinationType {
    /// `service` (also what `""` means).
    #[default]
    Service,
    /// `prepared_query`.
    PreparedQuery,
}

/// An unknown `DestinationType`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown upstream destination type: {0:?}")]
pub struct DestinationTypeError(pub String);

impl DestinationType {
    /// The type as Consul writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::PreparedQuery => "prepared_query",
        }
    }
}

impl FromStr for DestinationType {
    type Err = DestinationTypeError;
    fn from_str(s: &str) -> Result<Self, DestinationTypeError> {
        match s {
            "" | "service" => Ok(Self::Service),
            "prepared_query" => Ok(Self::PreparedQuery),
            _ => Err(DestinationTypeError(s.to_owned())),
        }
    }
}

impl fmt::Display for DestinationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DestinationType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DestinationType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<String>::deserialize(d)?
            .unwrap_or_default()
            .parse()
            .map_err(de::Error::custom)
    }
}

/// File mode of an upstream's Unix socket, written in octal (`"0700"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketMode(u32);

/// A socket mode that is not 1 to 4 octal digits up to `07777`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid local bind socket mode {0:?}: expected octal digits such as \"0700\"")]
pub struct SocketModeError(pub String);

impl SocketMode {
    /// The mode bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl FromStr for SocketMode {
    type Err = SocketModeError;
    fn from_str(s: &str) -> Result<Self, SocketModeError> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        if digits.is_empty() || digits.len() > 5 {
            return Err(SocketModeError(s.to_owned()));
        }
        match u32::from_str_radix(digits, 8) {
            Ok(m) if m <= 0o7777 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(Self(m)),
            _ => Err(SocketModeError(s.to_owned())),
        }
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// An upstream of a sidecar proxy.
///
/// Names are validated as they are parsed (so `"*"` or upper-case names are refused as
/// malformed); the rules that relate fields are checked by [`Upstream::validate`].
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Service or prepared query.
    #[serde(rename = "DestinationType", alias = "destination_type", default)]
    pub destination_type: DestinationType,
    /// The destination's namespace (unset = `default`).
    #[serde(
        rename = "DestinationNamespace",
        alias = "destination_namespace",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub destination_namespace: Option<Namespace>,
    /// The destination's partition (unset = `default`).
    #[serde(
        rename = "DestinationPartition",
        alias = "destination_partition",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub destination_partition: Option<Partition>,
    /// A cluster peer. Parsed so the rules can be checked; mesh has no peering and refuses it.
    #[serde(
        rename = "DestinationPeer",
        alias = "destination_peer",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub destination_peer: Option<String>,
    /// The service or prepared query; required.
    #[serde(
        rename = "DestinationName",
        alias = "destination_name",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub destination_name: Option<ServiceName>,
    /// The destination's datacenter (unset = the proxy's own).
    #[serde(
        rename = "Datacenter",
        alias = "datacenter",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub datacenter: Option<Datacenter>,
    /// The listener's address (unset = [`DEFAULT_LOCAL_BIND_ADDRESS`]).
    #[serde(
        rename = "LocalBindAddress",
        alias = "local_bind_address",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_bind_address: Option<IpAddr>,
    /// The listener's port (`0` = unset).
    #[serde(
        rename = "LocalBindPort",
        alias = "local_bind_port",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub local_bind_port: u16,
    /// A Unix socket path to listen on instead of a port.
    #[serde(
        rename = "LocalBindSocketPath",
        alias = "local_bind_socket_path",
        default,
        deserialize_with = "empty_string_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_bind_socket_path: Option<String>,
    /// The socket's file mode.
    #[serde(
        rename = "LocalBindSocketMode",
        alias = "local_bind_socket_mode",
        default,
        deserialize_with = "empty_as_none",
        serialize_with = "display_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_bind_socket_mode: Option<SocketMode>,
    /// Opaque proxy configuration (`protocol`, `connect_timeout_ms`, ...).
    #[serde(
        rename = "Config",
        alias = "config",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    pub config: Map<String, Value>,
    /// The upstream's own mesh-gateway mode (layer 6 of docs/consul-compatibility.md,
    /// 'Mesh-gateway mode resolution'): it wins over every other layer when set.
    #[serde(
        rename = "MeshGateway",
        alias = "mesh_gateway",
        default,
        skip_serializing_if = "MeshGatewayConfig::is_default"
    )]
    pub mesh_gateway: MeshGatewayConfig,
}

/// An upstream that breaks one of Consul's rules (`Upstream.Validate`) or one of mesh's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No `DestinationName`.
    #[error("upstream destination name cannot be empty")]
    EmptyDestinationName,
    /// Both `DestinationPeer` and `Datacenter`.
    #[error("upstream cannot specify both destination peer and datacenter")]
    PeerAndDatacenter,
    /// Neither a port nor a socket path.
    #[error("upstream local bind port or local socket path must be defined and nonzero")]
    NoListener,
    /// Both a port and a socket path.
    #[error("only one of upstream local bind port or local socket path can be defined and nonzero")]
    BothListeners,
    /// A peer destination: mesh has no cluster peering.
    #[error("upstream destination peer {0:?}: cluster peering is not supported")]
    PeeringUnsupported(String),
}

/// The identity of an upstream's destination, for duplicate detection: type, name, partition,
/// namespace, peer and datacenter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpstreamKey {
    /// Service or prepared query.
    pub destination_type: DestinationType,
    /// The destination name.
    pub name: Option<ServiceName>,
    /// The partition (defaulted).
    pub partition: Partition,
    /// The namespace (defaulted).
    pub namespace: Namespace,
    /// The peer.
    pub peer: Option<String>,
    /// The datacenter, `None` for the local one.
    pub datacenter: Option<Datacenter>,
}

impl fmt::Display for UpstreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.destination_type)?;
        if let Some(n) = &self.name {
            write!(f, "{n}")?;
        }
        write!(
            f,
            " (partition {}, namespace {}",
            self.partition, self.namespace
        )?;
        if let Some(p) = &self.peer {
            write!(f, ", peer {p}")?;
        }
        if let Some(dc) = &self.datacenter {
            write!(f, ", datacenter {dc}")?;
        }
        f.write_str(")")
    }
}

/// Where an upstream listener listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamListener {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(String),
}

impl fmt::Display for UpstreamListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(sa) => fmt::Display::fmt(sa, f),
            Self::Unix(p) => f.write_str(p),
        }
    }
}

impl Upstream {
    /// An upstream for service `name` listening on `127.0.0.1:<port>`.
    pub fn service(name: ServiceName, local_bind_port: u16) -> Self {
        Self {
            destination_name: Some(name),
            local_bind_port,
            ..Self::default()
        }
    }

    /// Checks Consul's rules, in Consul's order, then mesh's refusal of peers.
    pub fn validate(&self) -> Result<(), UpstreamError> {
        if self.destination_name.is_none() {
            return Err(UpstreamError::EmptyDestinationName);
        }
        if self.destination_peer.is_some() && self.datacenter.is_some() {
            return Err(UpstreamError::PeerAndDatacenter);
        }
        match (self.local_bind_port, &self.local_bind_socket_path) {
            (0, None) => return Err(UpstreamError::NoListener),
            (p, Some(_)) if p != 0 => return Err(UpstreamError::BothListeners),
            _ => {}
        }
        if let Some(peer) = &self.destination_peer {
            return Err(UpstreamError::PeeringUnsupported(peer.clone()));
        }
        Ok(())
    }

    /// The datacenter the upstream targets: its own `Datacenter`, else `local_dc`.
    pub fn target_datacenter<'a>(&'a self, local_dc: &'a Datacenter) -> &'a Datacenter {
        self.datacenter.as_ref().unwrap_or(local_dc)
    }

    /// The listener's bind address, defaulted.
    pub fn local_bind_address(&self) -> IpAddr {
        self.local_bind_address
            .unwrap_or(DEFAULT_LOCAL_BIND_ADDRESS)
    }

    /// Where the listener listens: the socket path if set, else `<bind address>:<port>`.
    pub fn listener(&self) -> UpstreamListener {
        match &self.local_bind_socket_path {
            Some(p) => UpstreamListener::Unix(p.clone()),
            None => UpstreamListener::Tcp(SocketAddr::new(
                self.local_bind_address(),
                self.local_bind_port,
            )),
        }
    }

    /// The key used to detect duplicate upstreams.
    pub fn key(&self) -> UpstreamKey {
        UpstreamKey {
            destination_type: self.destination_type,
            name: self.destination_name.clone(),
            partition: self.destination_partition.clone().unwrap_or_default(),
            namespace: self.destination_namespace.clone().unwrap_or_default(),
            peer: self.destination_peer.clone(),
            datacenter: self.datacenter.clone(),
        }
    }

    /// The SNI the proxy sends for this upstream (Consul's `UpstreamSNI`): the upstream's
    /// datacenter or else `local_dc`; a prepared query gets a query SNI, a service the service
    /// SNI (with `subset`, namespace and partition). Fails without a destination name.
    pub fn sni(
        &self,
        subset: Option<&Subset>,
        local_dc: &Datacenter,
        trust_domain: &TrustDomain,
    ) -> Result<Sni, UpstreamError> {
        let name = self
            .destination_name
            .clone()
            .ok_or(UpstreamError::EmptyDestinationName)?;
        let datacenter = self.target_datacenter(local_dc).clone();
        Ok(match self.destination_type {
            DestinationType::PreparedQuery => Sni::Query {
                name,
                datacenter,
                trust_domain: trust_domain.clone(),
            },
            DestinationType::Service => Sni::Service {
                subset: subset.cloned(),
                service: name,
                namespace: self.destination_namespace.clone().unwrap_or_default(),
                partition: self.destination_partition.clone().unwrap_or_default(),
                datacenter,
                trust_domain: trust_domain.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(json: &str) -> Upstream {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn both_cases_parse_the_same() {
        let snake = up(
            r#"{"destination_name":"socat","datacenter":"primary","local_bind_port":8181,
            "mesh_gateway":{"mode":"local"},"local_bind_address":"127.0.0.2"}"#,
        );
        let pascal = up(
            r#"{"DestinationName":"socat","Datacenter":"primary","LocalBindPort":8181,
            "MeshGateway":{"Mode":"local"},"LocalBindAddress":"127.0.0.2"}"#,
        );
        assert_eq!(snake, pascal);
        assert_eq!(snake.listener().to_string(), "127.0.0.2:8181");
        let again: Upstream =
            serde_json::from_str(&serde_json::to_string(&snake).unwrap()).unwrap();
        assert_eq!(again, snake);
    }

    #[test]
    fn refuses_malformed_fields() {
        for bad in [
            r#"{"destination_type":"bogus"}"#,
            r#"{"destination_name":"*"}"#,
            r#"{"destination_name":"DB"}"#,
            r#"{"local_bind_address":"localhost"}"#,
            r#"{"local_bind_port":70000}"#,
            r#"{"local_bind_socket_mode":"0800"}"#,
            r#"{"unknown_field":1}"#,
        ] {
            assert!(serde_json::from_str::<Upstream>(bad).is_err(), "{bad}");
        }
        let err = serde_json::from_str::<Upstream>(r#"{"destination_type":"bogus"}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown upstream destination type: \"bogus\"")
        );
    }

    #[test]
    fn socket_mode() {
        assert_eq!("0700".parse::<SocketMode>().unwrap().bits(), 0o700);
        assert_eq!("700".parse::<SocketMode>().unwrap().to_string(), "0700");
        for bad in ["", "8", "0x1", "-1", "77777", "07777777"] {
            assert!(bad.parse::<SocketMode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn peers_are_refused() {
        let u = up(r#"{"destination_name":"db","destination_peer":"p","local_bind_port":1}"#);
        assert_eq!(
            u.validate(),
            Err(UpstreamError::PeeringUnsupported("p".into()))
        );
    }

    #[test]
    fn unix_listener_and_key() {
        let u = up(r#"{"destination_name":"db","local_bind_socket_path":"/tmp/s"}"#);
        assert_eq!(u.validate(), Ok(()));
        assert_eq!(u.listener(), UpstreamListener::Unix("/tmp/s".into()));
        assert_eq!(
            u.key().to_string(),
            "service:db (partition default, namespace default)"
        );
    }
}
