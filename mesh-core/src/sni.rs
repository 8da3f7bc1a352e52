//! Consul-style SNI names (see docs/consul-compatibility.md, 'SNI names'): build them, and parse
//! one back into what it names, so a router can ask "which datacenter and service is this?"
//! without string hacks.

use std::fmt;

use crate::names::{Datacenter, NameError, Namespace, NodeName, Partition, ServiceName, Subset};
use crate::trust_domain::TrustDomain;

/// The longest host name accepted as an SNI (RFC 6066 §3 allows 2^16-1 bytes, DNS 253).
pub const MAX_SNI_LEN: usize = 253;

/// The label marking a service or datacenter SNI in the default partition.
pub const INTERNAL: &str = "internal";
/// The label marking a service or datacenter SNI in a non-default partition.
pub const INTERNAL_V1: &str = "internal-v1";
/// The label marking a prepared-query SNI.
pub const QUERY: &str = "query";
/// The default DNS domain used by server SNI names (`server.<dc>.consul`).
pub const DEFAULT_DNS_DOMAIN: &str = "consul";

/// Why a host name is not an SNI of this mesh.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SniError {
    /// Empty or longer than [`MAX_SNI_LEN`].
    #[error("SNI must be 1 to {MAX_SNI_LEN} bytes")]
    Length,
    /// The name ends neither in this mesh's trust domain nor in the server DNS domain.
    #[error("SNI {0:?} is not in this mesh's trust domain or server domain")]
    ForeignDomain(String),
    /// The labels before the trust domain match no known shape.
    #[error("SNI {0:?} matches no known shape")]
    Shape(String),
    /// A label is not a valid name.
    #[error("SNI has an invalid {field}")]
    Name {
        /// Which label.
        field: &'static str,
        /// The name error.
        #[source]
        source: NameError,
    },
}

/// A parsed (or built) SNI name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Sni {
    /// A service, or one subset of it, in a datacenter:
    /// `[<subset>.]<svc>.<ns>.<dc>.internal.<td>` or
    /// `[<subset>.]<svc>.<ns>.<part>.<dc>.internal-v1.<td>`.
    Service {
        /// The subset, if any.
        subset: Option<Subset>,
        /// The service.
        service: ServiceName,
        /// Its namespace.
        namespace: Namespace,
        /// Its partition.
        partition: Partition,
        /// The datacenter it lives in.
        datacenter: Datacenter,
        /// The mesh's trust domain.
        trust_domain: TrustDomain,
    },
    /// A datacenter's gateways: `<dc>.internal.<td>` or `<part>.<dc>.internal-v1.<td>`.
    Datacenter {
        /// The partition.
        partition: Partition,
        /// The datacenter.
        datacenter: Datacenter,
        /// The mesh's trust domain.
        trust_domain: TrustDomain,
    },
    /// A prepared query: `<name>.default.<dc>.query.<td>`.
    Query {
        /// The query name.
        name: ServiceName,
        /// The datacenter.
        datacenter: Datacenter,
        /// The mesh's trust domain.
        trust_domain: TrustDomain,
    },
    /// The servers of a datacenter (WAN federation): `[<node>.]server.<dc>.<domain>`.
    Server {
        /// One server node, or `None` for any server of the datacenter.
        node: Option<NodeName>,
        /// The datacenter.
        datacenter: Datacenter,
        /// The DNS domain (not the trust domain), `consul` by default.
        domain: TrustDomain,
    },
}

impl Sni {
    /// The SNI of a service (no subset) in the default partition and namespace.
    pub fn service(
        service: ServiceName,
        datacenter: Datacenter,
        trust_domain: TrustDomain,
    ) -> Self {
        Self::Service {
            subset: None,
            service,
            namespace: Namespace::default(),
            partition: Partition::default(),
            datacenter,
            trust_domain,
        }
    }

    /// The SNI of a datacenter's gateways in the default partition (`<dc>.internal.<td>`).
    pub fn datacenter(datacenter: Datacenter, trust_domain: TrustDomain) -> Self {
        Self::Datacenter {
            partition: Partition::default(),
            datacenter,
            trust_domain,
        }
    }

    /// The SNI of a datacenter's servers, `[<node>.]server.<dc>.<domain>`.
    pub fn server(node: Option<NodeName>, datacenter: Datacenter, domain: TrustDomain) -> Self {
        Self::Server {
            node,
            datacenter,
            domain,
        }
    }

    /// The SNI of a datacenter's gateways in `partition` (Consul's `GatewaySNI`):
    /// `<dc>.internal.<td>` in the default partition, else `<part>.<dc>.internal-v1.<td>`.
    pub fn gateway(
        partition: Partition,
        datacenter: Datacenter,
        trust_domain: TrustDomain,
    ) -> Self {
        Self::Datacenter {
            partition,
            datacenter,
            trust_domain,
        }
    }

    /// The SNI of a prepared query, `<name>.default.<dc>.query.<td>`.
    pub fn query(name: ServiceName, datacenter: Datacenter, trust_domain: TrustDomain) -> Self {
        Self::Query {
            name,
            datacenter,
            trust_domain,
        }
    }

    /// A server SNI the way Consul's `ServerSNI` builds it from configuration strings: one
    /// trailing `.` of `dns_domain` is dropped, and a `node_name` of `""` or `*` means any
    /// server of the datacenter.
    pub fn server_for(
        datacenter: Datacenter,
        node_name: &str,
        dns_domain: &str,
    ) -> Result<Self, SniError> {
        let domain = dns_domain.strip_suffix('.').unwrap_or(dns_domain);
        let domain =
            TrustDomain::new(domain).map_err(|_| SniError::Shape(dns_domain.to_owned()))?;
        let node = match node_name {
            "" | "*" => None,
            n => Some(name("node", n)?),
        };
        Ok(Self::server(node, datacenter, domain))
    }

    /// The mesh trust domain the SNI ends in; `None` for server SNIs, which end in the DNS
    /// domain instead.
    pub fn trust_domain(&self) -> Option<&TrustDomain> {
        match self {
            Self::Service { trust_domain, .. }
            | Self::Datacenter { trust_domain, .. }
            | Self::Query { trust_domain, .. } => Some(trust_domain),
            Self::Server { .. } => None,
        }
    }

    /// The datacenter this SNI routes to.
    pub fn target_datacenter(&self) -> &Datacenter {
        match self {
            Self::Service { datacenter, .. }
            | Self::Datacenter { datacenter, .. }
            | Self::Query { datacenter, .. }
            | Self::Server { datacenter, .. } => datacenter,
        }
    }

    /// The service this SNI names, if it names one.
    pub fn target_service(&self) -> Option<&ServiceName> {
        match self {
            Self::Service { service, .. } => Some(service),
            _ => None,
        }
    }

    /// Parses `host` as an SNI of the mesh with trust domain `td`, with server names under the
    /// DNS domain `dns_domain`. Matching is case-insensitive, as DNS is; names come out lower case.
    pub fn parse(host: &str, td: &TrustDomain, dns_domain: &TrustDomain) -> Result<Self, SniError> {
        if host.is_empty() || host.len() > MAX_SNI_LEN {
            return Err(SniError::Length);
        }
        let lower = host.to_ascii_lowercase();
        let shape = || SniError::Shape(host.to_owned());
        let mut shape_in_td = false;
        if let Some(prefix) = strip_domain(&lower, td.as_str()) {
            let labels: Vec<&str> = prefix.split('.').collect();
            let td = td.clone();
            let parsed = match labels.as_slice() {
                [dc, INTERNAL] => Ok(Self::Datacenter {
                    partition: Partition::default(),
                    datacenter: name("datacenter", dc)?,
                    trust_domain: td,
                }),
                [part, dc, INTERNAL_V1] => Ok(Self::Datacenter {
                    partition: name("partition", part)?,
                    datacenter: name("datacenter", dc)?,
                    trust_domain: td,
                }),
                [svc, ns, dc, INTERNAL] => service_sni(None, svc, ns, None, dc, td),
                [sub, svc, ns, dc, INTERNAL] => service_sni(Some(sub), svc, ns, None, dc, td),
                [svc, ns, part, dc, INTERNAL_V1] => service_sni(None, svc, ns, Some(part), dc, td),
                [sub, svc, ns, part, dc, INTERNAL_V1] => {
                    service_sni(Some(sub), svc, ns, Some(part), dc, td)
                }
                [q, "default", dc, QUERY] => Ok(Self::Query {
                    name: name("query name", q)?,
                    datacenter: name("datacenter", dc)?,
                    trust_domain: td,
                }),
                _ => Err(shape()),
            };
            // A server SNI may also end in the trust domain (when a datacenter is named like
            // the trust domain's first label); only a shape mismatch falls through to it.
            match parsed {
                Err(SniError::Shape(_)) => shape_in_td = true,
                other => return other,
            }
        }
        if let Some(prefix) = strip_domain(&lower, dns_domain.as_str()) {
            let labels: Vec<&str> = prefix.split('.').collect();
            let (node, dc) = match labels.as_slice() {
                ["server", dc] => (None, dc),
                [node, "server", dc] => (Some(name("node", node)?), dc),
                _ => return Err(shape()),
            };
            return Ok(Self::Server {
                node,
                datacenter: name("datacenter", dc)?,
                domain: dns_domain.clone(),
            });
        }
        if shape_in_td {
            return Err(shape());
        }
        Err(SniError::ForeignDomain(host.to_owned()))
    }
}

/// The trust domain of a discovery-chain target's service SNI (Consul's
/// `TrustDomainForTarget`): the SNI is split at its first 4 (default partition) or 5 (other
/// partitions) dots, one more with a subset, and the rest is the trust domain. `None` when the
/// SNI has too few labels, lacks the `internal`/`internal-v1` marker where the shape puts it, or
/// the rest is not a valid trust domain. External targets have no mesh trust domain; do not ask.
pub fn trust_domain_for_target(
    sni: &str,
    partition: &Partition,
    has_subset: bool,
) -> Option<TrustDomain> {
    let (pieces, marker) = if partition.is_default() {
        (5, INTERNAL)
    } else {
        (6, INTERNAL_V1)
    };
    let pieces = pieces + usize::from(has_subset);
    let parts: Vec<&str> = sni.splitn(pieces, '.').collect();
    if parts.len() != pieces || parts[pieces - 2] != marker {
        return None;
    }
    TrustDomain::new(parts[pieces - 1]).ok()
}

/// `host` without `.<domain>` at its end, if it ends so and something non-empty precedes it.
fn strip_domain<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let prefix = host.strip_suffix(domain)?.strip_suffix('.')?;
    (!prefix.is_empty()).then_some(prefix)
}

fn name<T: std::str::FromStr<Err = NameError>>(
    field: &'static str,
    label: &str,
) -> Result<T, SniError> {
    label
        .parse()
        .map_err(|source| SniError::Name { field, source })
}

fn service_sni(
    subset: Option<&&str>,
    svc: &str,
    ns: &str,
    part: Option<&&str>,
    dc: &str,
    trust_domain: TrustDomain,
) -> Result<Sni, SniError> {
    Ok(Sni::Service {
        subset: subset.map(|s| name("subset", s)).transpose()?,
        service: name("service", svc)?,
        namespace: name("namespace", ns)?,
        partition: match part {
            Some(p) => name("partition", p)?,
            None => Partition::default(),
        },
        datacenter: name("datacenter", dc)?,
        trust_domain,
    })
}

impl fmt::Display for Sni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service {
                subset,
                service,
                namespace,
                partition,
                datacenter,
                trust_domain,
            } => {
                if let Some(s) = subset {
                    write!(f, "{s}.")?;
                }
                if partition.is_default() {
                    write!(
                        f,
                        "{service}.{namespace}.{datacenter}.{INTERNAL}.{trust_domain}"
                    )
                } else {
                    write!(
                        f,
                        "{service}.{namespace}.{partition}.{datacenter}.{INTERNAL_V1}.{trust_domain}"
                    )
                }
            }
            Self::Datacenter {
                partition,
                datacenter,
                trust_domain,
            } => {
                if partition.is_default() {
                    write!(f, "{datacenter}.{INTERNAL}.{trust_domain}")
                } else {
                    write!(f, "{partition}.{datacenter}.{INTERNAL_V1}.{trust_domain}")
                }
            }
            Self::Query {
                name,
                datacenter,
                trust_domain,
            } => write!(f, "{name}.default.{datacenter}.{QUERY}.{trust_domain}"),
            Self::Server {
                node,
                datacenter,
                domain,
            } => {
                if let Some(n) = node {
                    write!(f, "{n}.")?;
                }
                write!(f, "server.{datacenter}.{domain}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("11111111-2222-3333-4444-555555555555.consul").unwrap()
    }
    fn dns() -> TrustDomain {
        TrustDomain::new(DEFAULT_DNS_DOMAIN).unwrap()
    }

    #[test]
    fn every_shape_round_trips() {
        let t = td();
        for s in [
            format!("web.default.dc1.internal.{t}"),
            format!("v2.web.default.dc1.internal.{t}"),
            format!("web.default.p1.dc1.internal-v1.{t}"),
            format!("v2.web.default.p1.dc1.internal-v1.{t}"),
            format!("dc2.internal.{t}"),
            format!("p1.dc2.internal-v1.{t}"),
            format!("q.default.dc1.query.{t}"),
            "server.dc2.consul".to_owned(),
            "node1.server.dc1.consul".to_owned(),
        ] {
            let sni = Sni::parse(&s, &t, &dns()).unwrap();
            assert_eq!(sni.to_string(), s);
        }
    }

    #[test]
    fn parse_answers_datacenter_and_service() {
        let sni = Sni::parse(
            &format!("SOCAT.default.Primary.internal.{}", td()),
            &td(),
            &dns(),
        )
        .unwrap();
        assert_eq!(sni.target_datacenter().as_str(), "primary");
        assert_eq!(sni.target_service().unwrap().as_str(), "socat");
    }

    #[test]
    fn server_sni_ending_in_the_trust_domain_still_parses() {
        let t = TrustDomain::new("abcd.consul").unwrap();
        let sni = Sni::parse("server.abcd.consul", &t, &dns()).unwrap();
        assert_eq!(sni, Sni::server(None, "abcd".parse().unwrap(), dns()));
        assert_eq!(sni.trust_domain(), None);
    }

    #[test]
    fn server_for_follows_consul() {
        let dc: Datacenter = "dc1".parse().unwrap();
        assert_eq!(
            Sni::server_for(dc.clone(), "*", "consul.")
                .unwrap()
                .to_string(),
            "server.dc1.consul"
        );
        assert_eq!(
            Sni::server_for(dc.clone(), "node1", "consul")
                .unwrap()
                .to_string(),
            "node1.server.dc1.consul"
        );
        assert!(Sni::server_for(dc.clone(), "Bad Node", "consul").is_err());
        assert!(Sni::server_for(dc, "", "").is_err());
    }

    #[test]
    fn trust_domain_for_target_shapes() {
        let t = td();
        let def = Partition::default();
        let p1: Partition = "p1".parse().unwrap();
        let get = |s: &str, p: &Partition, sub| trust_domain_for_target(s, p, sub);
        assert_eq!(
            get(&format!("api.default.dc1.internal.{t}"), &def, false),
            Some(t.clone())
        );
        assert_eq!(
            get(&format!("v2.api.default.dc1.internal.{t}"), &def, true),
            Some(t.clone())
        );
        assert_eq!(
            get(&format!("api.default.p1.dc1.internal-v1.{t}"), &p1, false),
            Some(t.clone())
        );
        assert_eq!(
            get(&format!("v2.api.default.p1.dc1.internal-v1.{t}"), &p1, true),
            Some(t.clone())
        );
        assert_eq!(
            get(&format!("v2.api.default.dc1.internal.{t}"), &def, false),
            None
        );
        assert_eq!(get("api.default.dc1", &def, false), None);
        assert_eq!(get("api.default.dc1.internal.", &def, false), None);
    }

    #[test]
    fn refuses_foreign_and_malformed() {
        let t = td();
        assert!(matches!(
            Sni::parse("web.default.dc1.internal.other.example", &t, &dns()),
            Err(SniError::ForeignDomain(_))
        ));
        for bad in [
            format!("internal.{t}"),
            format!(".internal.{t}"),
            format!("a.b.c.d.e.f.internal.{t}"),
            format!("web.default.dc1.external.{t}"),
            format!("q.other.dc1.query.{t}"),
            format!("{t}"),
            "x.server.dc1.extra.consul".to_owned(),
        ] {
            assert!(Sni::parse(&bad, &t, &dns()).is_err(), "{bad}");
        }
        assert!(matches!(
            Sni::parse(&format!("we_b!.default.dc1.internal.{t}"), &t, &dns()),
            Err(SniError::Name {
                field: "service",
                ..
            })
        ));
        assert_eq!(Sni::parse("", &t, &dns()), Err(SniError::Length));
    }
}
