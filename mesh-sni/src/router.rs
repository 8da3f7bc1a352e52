//! The route table of a mesh gateway: from the SNI of a ClientHello to a pool of endpoints
//! (see docs/consul-compatibility.md, 'Mesh-gateway routing').
//!
//! A table belongs to one gateway, which lives in one datacenter and partition of one trust
//! domain. [`RouteTable::route`] decides, in this order:
//!
//! 1. **Exact names.** A host name registered with [`RouteTableBuilder::exact`] goes to its pool,
//!    whatever it looks like. This is how a gateway reaches its own datacenter's servers
//!    (`<node>.server.<dc>.<domain>`, Consul's `mesh_gateway_local_server` chains), and how a
//!    standalone gateway routes arbitrary names.
//! 2. **Mesh names**, classified by [`Sni::parse`]:
//!    * a service SNI (`[<subset>.]<svc>.<ns>.<dc>.internal.<td>` and its partition form) of the
//!      gateway's own datacenter and partition goes to that service's instance pool;
//!    * a service SNI, a datacenter SNI (`<dc>.internal.<td>`) or a server name
//!      (`[<node>.]server.<dc>.<domain>`) of another datacenter (or partition) goes to that
//!      datacenter's gateway pool, whose endpoints are the WAN addresses of its gateways;
//!    * any other name under the trust domain whose rightmost labels form a datacenter SNI of
//!      another datacenter is forwarded there too: Consul matches `*.<dc>.internal.<td>`, so the
//!      remote gateway, not this one, judges the labels in front.
//! 3. Everything else is refused with a [`RouteError`] that says why.
//!
//! The table is immutable; a gateway swaps a whole new table in atomically (see
//! [`crate::gateway::Gateway::set_routes`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;

use mesh_core::{
    DEFAULT_DNS_DOMAIN, MAX_SNI_LEN, SNI_INTERNAL as INTERNAL, SNI_INTERNAL_V1 as INTERNAL_V1,
    SNI_QUERY as QUERY,
};
use mesh_core::{
    Datacenter, MAX_NAME_LEN, Namespace, Partition, ServiceName, Sni, SniError, Subset, TrustDomain,
};

use crate::pool::Pool;

/// What kind of target a route leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum RouteKind {
    /// A service (or subset) of the gateway's own datacenter: the pool holds its instances.
    LocalService,
    /// Another datacenter or partition: the pool holds its gateways' WAN addresses.
    RemoteGateway,
    /// A name registered with [`RouteTableBuilder::exact`].
    Exact,
}

impl RouteKind {
    /// A short lower-case name for logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LocalService => "local",
            Self::RemoteGateway => "remote",
            Self::Exact => "exact",
        }
    }
}

/// Where one connection goes: the answer of [`RouteTable::route`].
#[derive(Clone)]
pub struct Route {
    kind: RouteKind,
    label: Arc<str>,
    pool: Arc<Pool>,
}

impl Route {
    /// The kind of target.
    pub fn kind(&self) -> RouteKind {
        self.kind
    }

    /// The name of the target, as Consul names the matching cluster: the canonical service SNI
    /// for a local service, `<dc>.internal.<td>` (or `server.<dc>.<domain>` for server names)
    /// for another datacenter, the registered name for an exact route. Stats are kept per label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The shared label (cheap to clone).
    pub fn label_arc(&self) -> &Arc<str> {
        &self.label
    }

    /// The endpoints to connect to.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("kind", &self.kind)
            .field("label", &self.label)
            .field("endpoints", &self.pool.len())
            .finish()
    }
}

/// Why a connection was given no route. Every variant is a refusal of what the client asked
/// for, not a fault of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The ClientHello carried no server name (or an empty one).
    #[error("the ClientHello names no server")]
    NoSni,
    /// The name is under this mesh's trust domain or server domain, but names nothing this
    /// gateway routes: a malformed label, an unknown shape, a prepared query, or a datacenter
    /// SNI of the gateway's own datacenter.
    #[error("SNI {sni:?} names nothing this gateway routes")]
    UnknownSni {
        /// The name as the client sent it.
        sni: String,
        /// Why the parser did not accept it, when it did not.
        #[source]
        source: Option<Box<SniError>>,
    },
    /// The name is neither an exact route nor under this mesh's trust domain or server domain.
    #[error("SNI {sni:?} is outside this mesh's trust domain")]
    ForeignTrustDomain {
        /// The name as the client sent it.
        sni: String,
    },
    /// A service of this datacenter for which the table has no pool.
    #[error("no pool for service {sni}")]
    NoServicePool {
        /// The parsed service SNI.
        sni: Box<Sni>,
    },
    /// Another datacenter (or partition) for which the table has no gateway pool.
    #[error("no gateway pool for datacenter {datacenter} (partition {partition})")]
    NoDatacenterPool {
        /// The datacenter named.
        datacenter: Datacenter,
        /// The partition named.
        partition: Partition,
    },
    /// A server name of this datacenter that is not registered as an exact route.
    #[error("no route for local server name {sni}")]
    NoServerRoute {
        /// The parsed server name.
        sni: Box<Sni>,
    },
}

/// Why a [`RouteTableBuilder`] refused to build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteConfigError {
    /// An exact route's name is not a host name (labels of `a-z0-9-_`, 1 to 63 bytes each, at
    /// most 253 bytes in all).
    #[error("exact route name {0:?} is not a host name")]
    InvalidExactName(String),
    /// The same exact name was registered twice.
    #[error("exact route {0:?} is registered twice")]
    DuplicateExact(String),
    /// The same local service (namespace, name, subset) was registered twice.
    #[error("local service {0} is registered twice")]
    DuplicateService(String),
    /// The same remote datacenter and partition was registered twice.
    #[error("gateway pool for datacenter {datacenter} (partition {partition}) is registered twice")]
    DuplicateDatacenter {
        /// The datacenter.
        datacenter: Datacenter,
        /// The partition.
        partition: Partition,
    },
    /// A gateway pool was registered for the gateway's own datacenter and partition, which
    /// would send traffic back to itself.
    #[error("datacenter {datacenter} (partition {partition}) is this gateway's own")]
    RemoteIsLocal {
        /// The datacenter.
        datacenter: Datacenter,
        /// The partition.
        partition: Partition,
    },
}

/// A service of the gateway's own datacenter, as routes key it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ServiceKey {
    namespace: Namespace,
    service: ServiceName,
    subset: Option<Subset>,
}

#[derive(Clone)]
struct Target {
    label: Arc<str>,
    pool: Arc<Pool>,
}

#[derive(Clone)]
struct RemoteTarget {
    pool: Arc<Pool>,
    /// `<dc>.internal.<td>` (or the partition form).
    gateway_label: Arc<str>,
    /// `server.<dc>.<domain>`.
    server_label: Arc<str>,
}

/// An immutable SNI route table; build one with [`RouteTable::builder`].
#[derive(Clone)]
pub struct RouteTable {
    datacenter: Datacenter,
    partition: Partition,
    trust_domain: TrustDomain,
    dns_domain: TrustDomain,
    exact: HashMap<Box<str>, Target>,
    services: HashMap<ServiceKey, Target>,
    remotes: HashMap<(Datacenter, Partition), RemoteTarget>,
}

/// Builds a [`RouteTable`]; errors are collected and reported by [`RouteTableBuilder::build`].
pub struct RouteTableBuilder {
    table: RouteTable,
    error: Option<RouteConfigError>,
}

impl RouteTable {
    /// Starts a table for a gateway in `datacenter` of the mesh with `trust_domain`, in the
    /// default partition, with server names under the DNS domain `consul`.
    pub fn builder(datacenter: Datacenter, trust_domain: TrustDomain) -> RouteTableBuilder {
        // Invariant: "consul" is a valid domain, a constant of mesh-core.
        let dns_domain = TrustDomain::new(DEFAULT_DNS_DOMAIN)
            .unwrap_or_else(|_| unreachable!("the default DNS domain is valid"));
        RouteTableBuilder {
            table: Self {
                datacenter,
                partition: Partition::default(),
                trust_domain,
                dns_domain,
                exact: HashMap::new(),
                services: HashMap::new(),
                remotes: HashMap::new(),
            },
            error: None,
        }
    }

    /// The gateway's own datacenter.
    pub fn datacenter(&self) -> &Datacenter {
        &self.datacenter
    }

    /// The gateway's own partition.
    pub fn partition(&self) -> &Partition {
        &self.partition
    }

    /// The mesh's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// How many routes the table holds (exact, local service and remote datacenter).
    pub fn len(&self) -> usize {
        self.exact.len() + self.services.len() + self.remotes.len()
    }

    /// Whether the table holds no route at all (it then refuses everything).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides where a connection whose ClientHello named `sni` goes (see the module docs for
    /// the order). `None` or an empty name is refused as [`RouteError::NoSni`].
    pub fn route(&self, sni: Option<&str>) -> Result<Route, RouteError> {
        let host = match sni {
            Some(h) if !h.is_empty() => h,
            _ => return Err(RouteError::NoSni),
        };
        let lower: Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        if let Some(t) = self.exact.get(lower.as_ref()) {
            return Ok(Route {
                kind: RouteKind::Exact,
                label: t.label.clone(),
                pool: t.pool.clone(),
            });
        }
        match Sni::parse(&lower, &self.trust_domain, &self.dns_domain) {
            Ok(parsed) => self.route_parsed(host, parsed),
            Err(SniError::ForeignDomain(_)) => Err(RouteError::ForeignTrustDomain {
                sni: host.to_owned(),
            }),
            Err(e) => match self.route_by_datacenter_suffix(&lower) {
                Some(r) => r,
                None if self.is_other_mesh_name(&lower) => Err(RouteError::ForeignTrustDomain {
                    sni: host.to_owned(),
                }),
                None => Err(RouteError::UnknownSni {
                    sni: host.to_owned(),
                    source: Some(Box::new(e)),
                }),
            },
        }
    }

    fn route_parsed(&self, host: &str, sni: Sni) -> Result<Route, RouteError> {
        match sni {
            Sni::Service {
                ref subset,
                ref service,
                ref namespace,
                ref partition,
                ref datacenter,
                ..
            } => {
                if self.is_own(datacenter, partition) {
                    let key = ServiceKey {
                        namespace: namespace.clone(),
                        service: service.clone(),
                        subset: subset.clone(),
                    };
                    match self.services.get(&key) {
                        Some(t) => Ok(Route {
                            kind: RouteKind::LocalService,
                            label: t.label.clone(),
                            pool: t.pool.clone(),
                        }),
                        None => Err(RouteError::NoServicePool { sni: Box::new(sni) }),
                    }
                } else {
                    self.remote(datacenter, partition, false)
                }
            }
            Sni::Datacenter {
                ref partition,
                ref datacenter,
                ..
            } => {
                if self.is_own(datacenter, partition) {
                    Err(RouteError::UnknownSni {
                        sni: host.to_owned(),
                        source: None,
                    })
                } else {
                    self.remote(datacenter, partition, false)
                }
            }
            Sni::Server { ref datacenter, .. } => {
                if *datacenter == self.datacenter {
                    Err(RouteError::NoServerRoute { sni: Box::new(sni) })
                } else {
                    self.remote(datacenter, &Partition::default(), true)
                }
            }
            // Prepared-query names are resolved by the sidecar; gateways never route them
            // (Consul has no filter chain for them either).
            _ => Err(RouteError::UnknownSni {
                sni: host.to_owned(),
                source: None,
            }),
        }
    }

    /// Consul's `*.<dc>.internal.<td>` chains: any labels in front of a datacenter SNI of
    /// another datacenter. Returns `None` when no suffix of `host` is such an SNI.
    fn route_by_datacenter_suffix(&self, host: &str) -> Option<Result<Route, RouteError>> {
        let mut rest = host;
        while let Some((_, suffix)) = rest.split_once('.') {
            if let Ok(Sni::Datacenter {
                partition,
                datacenter,
                ..
            }) = Sni::parse(suffix, &self.trust_domain, &self.dns_domain)
            {
                if self.is_own(&datacenter, &partition) {
                    return None;
                }
                return Some(self.remote(&datacenter, &partition, false));
            }
            rest = suffix;
        }
        None
    }

    /// Whether `host` is a mesh name of another trust domain. Trust domains usually end in the
    /// server DNS domain (`<cluster-id>.consul`), so such a name is not refused as foreign by
    /// the parser; it is when it parses as a mesh name under the trust domain that follows its
    /// `internal`, `internal-v1` or `query` label.
    fn is_other_mesh_name(&self, host: &str) -> bool {
        let mut rest = host;
        while let Some((label, tail)) = rest.split_once('.') {
            if [INTERNAL, INTERNAL_V1, QUERY].contains(&label)
                && let Ok(td) = TrustDomain::new(tail)
                && td != self.trust_domain
                && Sni::parse(host, &td, &self.dns_domain).is_ok()
            {
                return true;
            }
            rest = tail;
        }
        false
    }

    fn is_own(&self, dc: &Datacenter, partition: &Partition) -> bool {
        *dc == self.datacenter && *partition == self.partition
    }

    fn remote(&self, dc: &Datacenter, part: &Partition, server: bool) -> Result<Route, RouteError> {
        match self.remotes.get(&(dc.clone(), part.clone())) {
            Some(r) => Ok(Route {
                kind: RouteKind::RemoteGateway,
                label: if server {
                    r.server_label.clone()
                } else {
                    r.gateway_label.clone()
                },
                pool: r.pool.clone(),
            }),
            None => Err(RouteError::NoDatacenterPool {
                datacenter: dc.clone(),
                partition: part.clone(),
            }),
        }
    }
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut labels: Vec<&str> = self
            .exact
            .values()
            .chain(self.services.values())
            .map(|t| &*t.label)
            .chain(self.remotes.values().map(|r| &*r.gateway_label))
            .collect();
        labels.sort_unstable();
        f.debug_struct("RouteTable")
            .field("datacenter", &self.datacenter)
            .field("partition", &self.partition)
            .field("trust_domain", &self.trust_domain)
            .field("routes", &labels)
            .finish()
    }
}

impl RouteTableBuilder {
    /// Sets the gateway's own partition (default: `default`).
    pub fn partition(mut self, partition: Partition) -> Self {
        self.table.partition = partition;
        self
    }

    /// Sets the DNS domain of server names (default: `consul`).
    pub fn dns_domain(mut self, domain: TrustDomain) -> Self {
        self.table.dns_domain = domain;
        self
    }

    /// Routes a service of this datacenter (default namespace, no subset) to `pool`.
    pub fn service(self, service: ServiceName, pool: impl Into<Arc<Pool>>) -> Self {
        self.local_service(Namespace::default(), service, None, pool)
    }

    /// Routes one subset of a service of this datacenter (default namespace) to `pool`. A
    /// subset SNI whose subset has no pool is refused; it never falls back to the whole service.
    pub fn service_subset(
        self,
        service: ServiceName,
        subset: Subset,
        pool: impl Into<Arc<Pool>>,
    ) -> Self {
        self.local_service(Namespace::default(), service, Some(subset), pool)
    }

    /// Routes a service (or one subset of it) of this datacenter in `namespace` to `pool`.
    pub fn local_service(
        mut self,
        namespace: Namespace,
        service: ServiceName,
        subset: Option<Subset>,
        pool: impl Into<Arc<Pool>>,
    ) -> Self {
        let label = Sni::Service {
            subset: subset.clone(),
            service: service.clone(),
            namespace: namespace.clone(),
            partition: self.table.partition.clone(),
            datacenter: self.table.datacenter.clone(),
            trust_domain: self.table.trust_domain.clone(),
        }
        .to_string();
        let key = ServiceKey {
            namespace,
            service,
            subset,
        };
        match self.table.services.entry(key) {
            Entry::Occupied(_) => self.fail(RouteConfigError::DuplicateService(label)),
            Entry::Vacant(v) => {
                v.insert(Target {
                    label: label.into(),
                    pool: pool.into(),
                });
                self
            }
        }
    }

    /// Routes another datacenter (default partition) to the pool of its gateways' WAN
    /// addresses: its service SNIs, its datacenter SNI and its server names.
    pub fn datacenter(self, datacenter: Datacenter, pool: impl Into<Arc<Pool>>) -> Self {
        self.remote_gateways(datacenter, Partition::default(), pool)
    }

    /// Routes a datacenter and partition other than the gateway's own to the pool of its
    /// gateways.
    pub fn remote_gateways(
        mut self,
        datacenter: Datacenter,
        partition: Partition,
        pool: impl Into<Arc<Pool>>,
    ) -> Self {
        if datacenter == self.table.datacenter && partition == self.table.partition {
            return self.fail(RouteConfigError::RemoteIsLocal {
                datacenter,
                partition,
            });
        }
        let gateway_label = Sni::Datacenter {
            partition: partition.clone(),
            datacenter: datacenter.clone(),
            trust_domain: self.table.trust_domain.clone(),
        }
        .to_string();
        let server_label =
            Sni::server(None, datacenter.clone(), self.table.dns_domain.clone()).to_string();
        match self
            .table
            .remotes
            .entry((datacenter.clone(), partition.clone()))
        {
            Entry::Occupied(_) => self.fail(RouteConfigError::DuplicateDatacenter {
                datacenter,
                partition,
            }),
            Entry::Vacant(v) => {
                v.insert(RemoteTarget {
                    pool: pool.into(),
                    gateway_label: gateway_label.into(),
                    server_label: server_label.into(),
                });
                self
            }
        }
    }

    /// Routes the host name `name` (compared case-insensitively) to `pool`, ahead of every
    /// other rule.
    pub fn exact(mut self, name: &str, pool: impl Into<Arc<Pool>>) -> Self {
        let lower = name.to_ascii_lowercase();
        if !is_host_name(&lower) {
            return self.fail(RouteConfigError::InvalidExactName(name.to_owned()));
        }
        match self.table.exact.entry(lower.clone().into_boxed_str()) {
            Entry::Occupied(_) => self.fail(RouteConfigError::DuplicateExact(lower)),
            Entry::Vacant(v) => {
                v.insert(Target {
                    label: lower.into(),
                    pool: pool.into(),
                });
                self
            }
        }
    }

    /// The table, or the first configuration error met.
    pub fn build(self) -> Result<RouteTable, RouteConfigError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.table),
        }
    }

    fn fail(mut self, e: RouteConfigError) -> Self {
        self.error.get_or_insert(e);
        self
    }
}

impl fmt::Debug for RouteTableBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTableBuilder")
            .field("table", &self.table)
            .field("error", &self.error)
            .finish()
    }
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SNI_LEN
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_NAME_LEN
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    const TD: &str = "11111111-2222-3333-4444-555555555555.consul";

    fn pool(port: u16) -> Pool {
        Pool::new([SocketAddr::from(([127, 0, 0, 1], port))])
    }

    fn table() -> RouteTable {
        RouteTable::builder("dc1".parse().unwrap(), TD.parse().unwrap())
            .service("web".parse().unwrap(), pool(1))
            .service_subset("web".parse().unwrap(), "v2".parse().unwrap(), pool(2))
            .datacenter("dc2".parse().unwrap(), pool(3))
            .remote_gateways("dc1".parse().unwrap(), "p1".parse().unwrap(), pool(4))
            .exact("db.example.com", pool(5))
            .build()
            .unwrap()
    }

    fn port(r: &Route) -> u16 {
        r.pool().pick().unwrap().port()
    }

    #[test]
    fn local_service_and_subset() {
        let t = table();
        let r = t
            .route(Some(&format!("web.default.dc1.internal.{TD}")))
            .unwrap();
        assert_eq!((r.kind(), port(&r)), (RouteKind::LocalService, 1));
        assert_eq!(r.label(), format!("web.default.dc1.internal.{TD}"));
        let r = t
            .route(Some(&format!("V2.Web.default.DC1.internal.{TD}")))
            .unwrap();
        assert_eq!(port(&r), 2);
        assert!(matches!(
            t.route(Some(&format!("v3.web.default.dc1.internal.{TD}"))),
            Err(RouteError::NoServicePool { .. })
        ));
        assert!(matches!(
            t.route(Some(&format!("api.default.dc1.internal.{TD}"))),
            Err(RouteError::NoServicePool { .. })
        ));
    }

    #[test]
    fn remote_datacenter_and_partition() {
        let t = table();
        for sni in [
            format!("api.default.dc2.internal.{TD}"),
            format!("dc2.internal.{TD}"),
            format!("x.y.z.dc2.internal.{TD}"),
            "server.dc2.consul".to_owned(),
            "node7.server.dc2.consul".to_owned(),
        ] {
            let r = t.route(Some(&sni)).unwrap();
            assert_eq!((r.kind(), port(&r)), (RouteKind::RemoteGateway, 3), "{sni}");
        }
        let r = t.route(Some("server.dc2.consul")).unwrap();
        assert_eq!(r.label(), "server.dc2.consul");
        let r = t
            .route(Some(&format!("web.default.p1.dc1.internal-v1.{TD}")))
            .unwrap();
        assert_eq!((r.kind(), port(&r)), (RouteKind::RemoteGateway, 4));
        assert_eq!(r.label(), format!("p1.dc1.internal-v1.{TD}"));
        assert_eq!(
            t.route(Some(&format!("dc3.internal.{TD}"))).unwrap_err(),
            RouteError::NoDatacenterPool {
                datacenter: "dc3".parse().unwrap(),
                partition: Partition::default()
            }
        );
    }

    #[test]
    fn exact_wins_and_ignores_case() {
        let t = table();
        let r = t.route(Some("DB.example.COM")).unwrap();
        assert_eq!(
            (r.kind(), port(&r), r.label()),
            (RouteKind::Exact, 5, "db.example.com")
        );
    }

    #[test]
    fn refusals_are_typed() {
        let t = table();
        assert_eq!(t.route(None).unwrap_err(), RouteError::NoSni);
        assert_eq!(t.route(Some("")).unwrap_err(), RouteError::NoSni);
        assert!(matches!(
            t.route(Some("example.org")),
            Err(RouteError::ForeignTrustDomain { .. })
        ));
        assert!(matches!(
            t.route(Some(
                "web.default.dc2.internal.22222222-2222-3333-4444-555555555555.consul"
            )),
            Err(RouteError::ForeignTrustDomain { .. })
        ));
        for own in [
            format!("dc1.internal.{TD}"),
            format!("q.default.dc2.query.{TD}"),
            format!("we_b!.default.dc1.internal.{TD}"),
        ] {
            assert!(
                matches!(t.route(Some(&own)), Err(RouteError::UnknownSni { .. })),
                "{own}"
            );
        }
        let e = t
            .route(Some(&format!("we_b!.default.dc1.internal.{TD}")))
            .unwrap_err();
        assert!(std::error::Error::source(&e).is_some(), "parser error kept");
        // Any labels in front of another datacenter's SNI are that datacenter's business.
        assert!(matches!(
            t.route(Some(&format!("a.b.c.d.e.f.internal.{TD}"))),
            Err(RouteError::NoDatacenterPool { .. })
        ));
        assert!(matches!(
            t.route(Some("node1.server.dc1.consul")),
            Err(RouteError::NoServerRoute { .. })
        ));
    }

    #[test]
    fn builder_refuses_misconfiguration() {
        let b = || RouteTable::builder("dc1".parse().unwrap(), TD.parse().unwrap());
        assert!(matches!(
            b().datacenter("dc1".parse().unwrap(), pool(1)).build(),
            Err(RouteConfigError::RemoteIsLocal { .. })
        ));
        assert!(matches!(
            b().datacenter("dc2".parse().unwrap(), pool(1))
                .datacenter("dc2".parse().unwrap(), pool(2))
                .build(),
            Err(RouteConfigError::DuplicateDatacenter { .. })
        ));
        assert!(matches!(
            b().service("web".parse().unwrap(), pool(1))
                .service("web".parse().unwrap(), pool(2))
                .build(),
            Err(RouteConfigError::DuplicateService(_))
        ));
        assert!(matches!(
            b().exact("a.example", pool(1))
                .exact("A.example", pool(2))
                .build(),
            Err(RouteConfigError::DuplicateExact(_))
        ));
        for bad in [
            "",
            "a..b",
            "a b",
            "*.example",
            &"x".repeat(64),
            &"a.".repeat(127),
        ] {
            assert!(
                matches!(
                    b().exact(bad, pool(1)).build(),
                    Err(RouteConfigError::InvalidExactName(_))
                ),
                "{bad:?}"
            );
        }
        let empty = b().build().unwrap();
        assert!(empty.is_empty());
        assert_eq!(table().len(), 5);
    }
}
