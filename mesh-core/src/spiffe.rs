//! SPIFFE IDs of services, agents, mesh gateways, servers and the signing CA (see
//! docs/consul-compatibility.md, 'SPIFFE IDs' and 'Which IDs a CA may sign').

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::{Datacenter, NameError, Namespace, NodeName, Partition, ServiceName};
use crate::trust_domain::{TrustDomain, TrustDomainError};

/// The longest SPIFFE ID accepted (the SPIFFE spec's limit for a URI SAN).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// Why a string is not a SPIFFE ID that mesh knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The URI does not use the `spiffe` scheme.
    #[error("SPIFFE ID must have 'spiffe' scheme: {0:?}")]
    Scheme(String),
    /// The URI is longer than [`MAX_SPIFFE_ID_LEN`].
    #[error("SPIFFE ID longer than {MAX_SPIFFE_ID_LEN} bytes")]
    TooLong,
    /// The host is not a valid trust domain.
    #[error("SPIFFE ID has an invalid trust domain")]
    TrustDomain(#[source] TrustDomainError),
    /// The path matches none of the known shapes.
    #[error("SPIFFE ID is not in the expected format: {0}")]
    Format(String),
    /// A path segment is not a valid name of its kind.
    #[error("SPIFFE ID has an invalid {field}")]
    Name {
        /// Which segment (`datacenter`, `service`, ...).
        field: &'static str,
        /// The name error.
        #[source]
        source: NameError,
    },
}

/// A service identity: `spiffe://<td>[/ap/<partition>]/ns/<ns>/dc/<dc>/svc/<service>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceId {
    trust_domain: TrustDomain,
    partition: Partition,
    namespace: Namespace,
    datacenter: Datacenter,
    service: ServiceName,
}

impl ServiceId {
    /// A service in the default partition and namespace.
    pub fn new(trust_domain: TrustDomain, datacenter: Datacenter, service: ServiceName) -> Self {
        Self {
            trust_domain,
            partition: Partition::default(),
            namespace: Namespace::default(),
            datacenter,
            service,
        }
    }

    /// The same identity in another partition and namespace.
    pub fn with_tenancy(mut self, partition: Partition, namespace: Namespace) -> Self {
        self.partition = partition;
        self.namespace = namespace;
        self
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
    /// The admin partition.
    pub fn partition(&self) -> &Partition {
        &self.partition
    }
    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }
    /// The datacenter the identity was issued for.
    pub fn datacenter(&self) -> &Datacenter {
        &self.datacenter
    }
    /// The service name.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }
}

/// A client agent identity: `spiffe://<td>/agent/client/dc/<dc>/id/<node>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId {
    trust_domain: TrustDomain,
    partition: Partition,
    datacenter: Datacenter,
    agent: NodeName,
}

impl AgentId {
    /// An agent in the default partition.
    pub fn new(trust_domain: TrustDomain, datacenter: Datacenter, agent: NodeName) -> Self {
        Self {
            trust_domain,
            partition: Partition::default(),
            datacenter,
            agent,
        }
    }
    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
    /// The partition (parsed, never rendered, as in Consul CE).
    pub fn partition(&self) -> &Partition {
        &self.partition
    }
    /// The datacenter.
    pub fn datacenter(&self) -> &Datacenter {
        &self.datacenter
    }
    /// The agent's node name.
    pub fn agent(&self) -> &NodeName {
        &self.agent
    }
}

/// A mesh gateway identity: `spiffe://<td>/gateway/mesh/dc/<dc>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MeshGatewayId {
    trust_domain: TrustDomain,
    partition: Partition,
    datacenter: Datacenter,
}

impl MeshGatewayId {
    /// The mesh gateways of one datacenter, default partition.
    pub fn new(trust_domain: TrustDomain, datacenter: Datacenter) -> Self {
        Self {
            trust_domain,
            partition: Partition::default(),
            datacenter,
        }
    }
    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
    /// The partition (parsed, never rendered, as in Consul CE).
    pub fn partition(&self) -> &Partition {
        &self.partition
    }
    /// The datacenter.
    pub fn datacenter(&self) -> &Datacenter {
        &self.datacenter
    }
}

/// A server identity: `spiffe://<td>/agent/server/dc/<dc>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId {
    trust_domain: TrustDomain,
    datacenter: Datacenter,
}

impl ServerId {
    /// The servers of one datacenter.
    pub fn new(trust_domain: TrustDomain, datacenter: Datacenter) -> Self {
        Self {
            trust_domain,
            datacenter,
        }
    }
    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
    /// The datacenter.
    pub fn datacenter(&self) -> &Datacenter {
        &self.datacenter
    }
}

/// Any SPIFFE ID mesh issues or accepts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SpiffeId {
    /// A service.
    Service(ServiceId),
    /// A client agent.
    Agent(AgentId),
    /// The mesh gateways of a datacenter.
    MeshGateway(MeshGatewayId),
    /// The servers of a datacenter.
    Server(ServerId),
    /// The signing CA: `spiffe://<td>` with no path. Its trust domain always holds a dot.
    Signing(TrustDomain),
}

impl SpiffeId {
    /// The signing ID of a trust domain; `None` when the domain has no dot (Consul only reads
    /// a path-less URI as a signing ID when its host has a dot after the first character).
    pub fn signing(td: TrustDomain) -> Option<Self> {
        td.domain().is_some().then_some(Self::Signing(td))
    }

    /// The trust domain (host) of the ID.
    pub fn trust_domain(&self) -> &TrustDomain {
        match self {
            Self::Service(id) => &id.trust_domain,
            Self::Agent(id) => &id.trust_domain,
            Self::MeshGateway(id) => &id.trust_domain,
            Self::Server(id) => &id.trust_domain,
            Self::Signing(td) => td,
        }
    }

    /// The datacenter named by the ID, if it names one.
    pub fn datacenter(&self) -> Option<&Datacenter> {
        match self {
            Self::Service(id) => Some(&id.datacenter),
            Self::Agent(id) => Some(&id.datacenter),
            Self::MeshGateway(id) => Some(&id.datacenter),
            Self::Server(id) => Some(&id.datacenter),
            Self::Signing(_) => None,
        }
    }

    /// The service identity, if this is one.
    pub fn as_service(&self) -> Option<&ServiceId> {
        match self {
            Self::Service(id) => Some(id),
            _ => None,
        }
    }

    /// Whether a CA whose signing ID is `self` may sign `other` (Consul's `CanSign`):
    /// a signing ID only itself; service, mesh-gateway and server IDs of the same trust domain;
    /// never agents (their host is rewritten at signing time instead) and never from a non-signing
    /// ID.
    pub fn can_sign(&self, other: &SpiffeId) -> bool {
        let Self::Signing(td) = self else {
            return false;
        };
        match other {
            Self::Signing(o) => o == td,
            Self::Service(_) | Self::MeshGateway(_) | Self::Server(_) => other.trust_domain() == td,
            Self::Agent(_) => false,
        }
    }

    /// Parses a SPIFFE ID with Consul's rules (see docs/consul-compatibility.md, 'SPIFFE IDs').
    /// Percent-escapes in path segments are decoded before the segment is validated as a name;
    /// a query or fragment is refused.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("spiffe") => rest,
            _ => return Err(SpiffeIdError::Scheme(s.to_owned())),
        };
        let format_err = || SpiffeIdError::Format(s.to_owned());
        if rest.contains(['?', '#']) {
            return Err(format_err());
        }
        let (host, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if host.is_empty() || host.starts_with('.') {
            return Err(format_err());
        }
        let td = TrustDomain::new(host).map_err(SpiffeIdError::TrustDomain)?;
        if path.is_empty() {
            return Self::signing(td).ok_or_else(format_err);
        }
        let segs: Vec<&str> = path[1..].split('/').collect();
        let (partition, segs) = match segs.as_slice() {
            ["ap", p, rest @ ..] => (Some(decode_name::<Partition>("admin partition", p)?), rest),
            _ => (None, segs.as_slice()),
        };
        let partition_or_default = || partition.clone().unwrap_or_default();
        match segs {
            ["ns", ns, "dc", dc, "svc", svc] => Ok(Self::Service(ServiceId {
                trust_domain: td,
                partition: partition_or_default(),
                namespace: decode_name("namespace", ns)?,
                datacenter: decode_name("datacenter", dc)?,
                service: decode_name("service", svc)?,
            })),
            ["agent", "client", "dc", dc, "id", node] => Ok(Self::Agent(AgentId {
                trust_domain: td,
                partition: partition_or_default(),
                datacenter: decode_name("datacenter", dc)?,
                agent: decode_name("node", node)?,
            })),
            ["gateway", "mesh", "dc", dc] => Ok(Self::MeshGateway(MeshGatewayId {
                trust_domain: td,
                partition: partition_or_default(),
                datacenter: decode_name("datacenter", dc)?,
            })),
            ["agent", "server", "dc", dc] if partition.is_none() => Ok(Self::Server(ServerId {
                trust_domain: td,
                datacenter: decode_name("datacenter", dc)?,
            })),
            _ => Err(format_err()),
        }
    }
}

/// Percent-decodes one path segment and validates it as a name of type `T`.
fn decode_name<T>(field: &'static str, seg: &str) -> Result<T, SpiffeIdError>
where
    T: FromStr<Err = NameError>,
{
    let decoded = percent_decode(seg).ok_or_else(|| SpiffeIdError::Name {
        field,
        source: NameError {
            kind: field,
            value: seg.to_owned(),
            reason: crate::names::NameErrorReason::BadChar,
        },
    })?;
    decoded
        .parse()
        .map_err(|source| SpiffeIdError::Name { field, source })
}

/// Decodes `%XX` escapes; `None` on a malformed escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}", self.trust_domain())?;
        match self {
            Self::Service(id) => {
                if !id.partition.is_default() {
                    write!(f, "/ap/{}", id.partition)?;
                }
                write!(
                    f,
                    "/ns/{}/dc/{}/svc/{}",
                    id.namespace, id.datacenter, id.service
                )
            }
            Self::Agent(id) => write!(f, "/agent/client/dc/{}/id/{}", id.datacenter, id.agent),
            Self::MeshGateway(id) => write!(f, "/gateway/mesh/dc/{}", id.datacenter),
            Self::Server(id) => write!(f, "/agent/server/dc/{}", id.datacenter),
            Self::Signing(_) => Ok(()),
        }
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, SpiffeIdError> {
        Self::parse(s)
    }
}

impl From<ServiceId> for SpiffeId {
    fn from(id: ServiceId) -> Self {
        Self::Service(id)
    }
}

impl From<AgentId> for SpiffeId {
    fn from(id: AgentId) -> Self {
        Self::Agent(id)
    }
}

impl From<MeshGatewayId> for SpiffeId {
    fn from(id: MeshGatewayId) -> Self {
        Self::MeshGateway(id)
    }
}

impl From<ServerId> for SpiffeId {
    fn from(id: ServerId) -> Self {
        Self::Server(id)
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&SpiffeId::Service(self.clone()), f)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("11111111-2222-3333-4444-555555555555.consul").unwrap()
    }

    #[test]
    fn service_round_trip() {
        let id = ServiceId::new(td(), "dc1".parse().unwrap(), "web".parse().unwrap());
        let s = SpiffeId::from(id.clone()).to_string();
        assert_eq!(
            s,
            "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web"
        );
        assert_eq!(SpiffeId::parse(&s).unwrap(), SpiffeId::Service(id));
    }

    #[test]
    fn partition_rendered_for_services_only() {
        let id = ServiceId::new(td(), "dc1".parse().unwrap(), "web".parse().unwrap())
            .with_tenancy("p1".parse().unwrap(), Namespace::default());
        let s = SpiffeId::from(id).to_string();
        assert!(s.contains("/ap/p1/ns/default/"), "{s}");
        let gw = SpiffeId::parse(&format!("spiffe://{}/ap/p1/gateway/mesh/dc/dc1", td())).unwrap();
        assert_eq!(
            gw.to_string(),
            format!("spiffe://{}/gateway/mesh/dc/dc1", td())
        );
    }

    #[test]
    fn percent_escapes_are_decoded_then_validated() {
        let s = "spiffe://1234.consul/ns/default/dc/dc%31/svc/web";
        let id = SpiffeId::parse(s).unwrap();
        assert_eq!(id.datacenter().unwrap().as_str(), "dc1");
        let bad = "spiffe://1234.consul/ns/default/dc/dc1/svc/we%2Fb";
        assert!(matches!(
            SpiffeId::parse(bad),
            Err(SpiffeIdError::Name {
                field: "service",
                ..
            })
        ));
        assert!(SpiffeId::parse("spiffe://1234.consul/ns/default/dc/dc1/svc/%zz").is_err());
    }

    #[test]
    fn refuses_query_fragment_and_server_partition() {
        for bad in [
            "spiffe://1234.consul/ns/default/dc/dc1/svc/web?x=1",
            "spiffe://1234.consul/ns/default/dc/dc1/svc/web#f",
            "spiffe://1234.consul/ap/x/agent/server/dc/dc1",
            "spiffe://1234.consul/agent/node1",
            "spiffe://1234.consul//ns/default/dc/dc1/svc/web",
            "spiffe:///ns/default/dc/dc1/svc/web",
            "spiffe",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad}");
        }
        let long = format!("spiffe://a.consul/{}", "a".repeat(MAX_SPIFFE_ID_LEN));
        assert_eq!(SpiffeId::parse(&long), Err(SpiffeIdError::TooLong));
    }

    #[test]
    fn can_sign_rules() {
        let signing = SpiffeId::signing(td()).unwrap();
        let dc: Datacenter = "dc1".parse().unwrap();
        let svc = SpiffeId::from(ServiceId::new(td(), dc.clone(), "web".parse().unwrap()));
        assert!(signing.can_sign(&svc));
        assert!(!svc.can_sign(&signing));
        let agent = SpiffeId::from(AgentId::new(td(), dc, "n1".parse().unwrap()));
        assert!(!signing.can_sign(&agent));
        assert!(SpiffeId::signing(TrustDomain::new("nodot").unwrap()).is_none());
    }
}
