//! Addresses in registrations: an IP address or a DNS host name, with or without a port.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::serde_util::{empty_as_none, is_zero};

/// The tagged-address key of the LAN address.
pub const TAGGED_LAN: &str = "lan";
/// The tagged-address key of the WAN address.
pub const TAGGED_WAN: &str = "wan";
/// The tagged-address key of the LAN IPv4 address.
pub const TAGGED_LAN_IPV4: &str = "lan_ipv4";
/// The tagged-address key of the LAN IPv6 address.
pub const TAGGED_LAN_IPV6: &str = "lan_ipv6";
/// The tagged-address key of the WAN IPv4 address.
pub const TAGGED_WAN_IPV4: &str = "wan_ipv4";
/// The tagged-address key of the WAN IPv6 address.
pub const TAGGED_WAN_IPV6: &str = "wan_ipv6";

/// The longest host name accepted (RFC 1035 §3.1, without the final dot).
pub const MAX_HOST_NAME_LEN: usize = 253;

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Neither an IP address nor a valid DNS host name.
    #[error("invalid address {0:?}: expected an IP address or a DNS host name")]
    Host(String),
    /// A `host:port` string whose port is missing, zero or not a number.
    #[error("invalid address {0:?}: bad port")]
    Port(String),
}

/// Where a service or gateway listens: an IP address or, where Consul allows it (gateways behind
/// load balancers), a DNS host name. Host names keep the case they were written in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS host name.
    Name(String),
}

impl Host {
    /// Parses an IP address or a host name (labels of `A-Z a-z 0-9 - _`, 1 to 63 bytes each,
    /// at most [`MAX_HOST_NAME_LEN`] in all).
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if s.is_empty() || s.len() > MAX_HOST_NAME_LEN || !s.split('.').all(label_ok) {
            return Err(AddressError::Host(s.to_owned()));
        }
        Ok(Self::Name(s.to_owned()))
    }

    /// The IP address, if this is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Ip(ip) => Some(*ip),
            Self::Name(_) => None,
        }
    }

    /// The loopback address `127.0.0.1`.
    pub fn localhost() -> Self {
        Self::Ip(IpAddr::from([127, 0, 0, 1]))
    }
}

impl FromStr for Host {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::parse(s)
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Self {
        Self::Ip(ip)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => fmt::Display::fmt(ip, f),
            Self::Name(n) => f.write_str(n),
        }
    }
}

impl Serialize for Host {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Host {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(de::Error::custom)
    }
}

/// A host and a port, rendered `host:port` (`[v6]:port` for IPv6).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    /// The host.
    pub host: Host,
    /// The port (non-zero).
    pub port: u16,
}

impl HostPort {
    /// A host and port.
    pub fn new(host: Host, port: u16) -> Self {
        Self { host, port }
    }

    /// The socket address, when the host is an IP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host.ip().map(|ip| SocketAddr::new(ip, self.port))
    }

    /// Parses `host`, `host:port`, `ip`, `ip:port` or `[v6]:port`; a missing port becomes
    /// `default_port`, a zero port is refused.
    pub fn parse_with_default(s: &str, default_port: u16) -> Result<Self, AddressError> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            if sa.port() == 0 {
                return Err(AddressError::Port(s.to_owned()));
            }
            return Ok(Self::new(Host::Ip(sa.ip()), sa.port()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::new(Host::Ip(ip), default_port));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => {
                let port: u16 = p.parse().map_err(|_| AddressError::Port(s.to_owned()))?;
                (h, port)
            }
            None => (s, default_port),
        };
        if port == 0 {
            return Err(AddressError::Port(s.to_owned()));
        }
        Ok(Self::new(Host::parse(host)?, port))
    }
}

impl From<SocketAddr> for HostPort {
    fn from(sa: SocketAddr) -> Self {
        Self::new(Host::Ip(sa.ip()), sa.port())
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]:{}", self.port),
            h => write!(f, "{h}:{}", self.port),
        }
    }
}

/// One entry of `TaggedAddresses`: `{"Address": ..., "Port": ...}`; either part may be unset.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaggedAddress {
    /// The address, unset when empty.
    #[serde(
        rename = "Address",
        alias = "address",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<Host>,
    /// The port, `0` when unset.
    #[serde(
        rename = "Port",
        alias = "port",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub port: u16,
}

impl TaggedAddress {
    /// An address with a port.
    pub fn new(address: Host, port: u16) -> Self {
        Self {
            address: Some(address),
            port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parses_ips_and_names() {
        assert_eq!(
            Host::parse("10.0.0.1").unwrap().ip(),
            Some([10, 0, 0, 1].into())
        );
        assert!(Host::parse("::1").unwrap().ip().is_some());
        assert_eq!(
            Host::parse("gw-1.Example.com").unwrap(),
            Host::Name("gw-1.Example.com".into())
        );
        for bad in [
            "",
            "a..b",
            "-a.b",
            "a b",
            "a:80",
            "a.",
            "é.com",
            &"a".repeat(64),
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_port_forms() {
        let p = |s| HostPort::parse_with_default(s, 8443);
        assert_eq!(p("10.0.0.1").unwrap().to_string(), "10.0.0.1:8443");
        assert_eq!(p("10.0.0.1:443").unwrap().port, 443);
        assert_eq!(p("[::1]:443").unwrap().to_string(), "[::1]:443");
        assert_eq!(p("::1").unwrap().to_string(), "[::1]:8443");
        assert_eq!(
            p("gw.example.com").unwrap().to_string(),
            "gw.example.com:8443"
        );
        assert_eq!(p("gw.example.com:9").unwrap().port, 9);
        assert!(p("gw.example.com:0").is_err());
        assert!(p("10.0.0.1:0").is_err());
        assert!(p("gw:x").is_err());
        assert!(p("").is_err());
        assert_eq!(
            p("10.0.0.1:443").unwrap().socket_addr(),
            Some("10.0.0.1:443".parse().unwrap())
        );
        assert_eq!(p("gw.example.com").unwrap().socket_addr(), None);
    }

    #[test]
    fn tagged_address_serde() {
        let t: TaggedAddress =
            serde_json::from_str(r#"{"address":"1.2.3.4","port":8443}"#).unwrap();
        assert_eq!(t, TaggedAddress::new(Host::parse("1.2.3.4").unwrap(), 8443));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"Address":"1.2.3.4","Port":8443}"#
        );
        let empty: TaggedAddress = serde_json::from_str(r#"{"Address":""}"#).unwrap();
        assert_eq!(empty, TaggedAddress::default());
        assert!(serde_json::from_str::<TaggedAddress>(r#"{"Address":"a b"}"#).is_err());
    }
}
