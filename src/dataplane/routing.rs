//! The routing view: where mTLS connections of the mesh go, as one value.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use mesh_core::{Datacenter as DatacenterName, ServiceName, Sni, TrustDomain};
use mesh_core::{MeshGatewayMode, UpstreamPath};
use mesh_core::{ProxyDefaults, ServiceDefaults, upstream_mode_layers};
use mesh_sni::{Pool, RouteTable};
use serde::{Deserialize, Serialize};

use mesh_intentions::acl::DefaultPolicy;
use mesh_intentions::intention::IntentionDefault;

use crate::Error;
use crate::catalog::FederationGateway;

/// Where connections go, as a datacenter sees it at one index: its own mesh endpoints (the
/// sidecars of each service, or the service's own address when it is Connect-native), its
/// gateways, every datacenter's gateways, and the mesh-gateway modes its config entries set.
///
/// A gateway builds its route table from it ([`Routing::route_table`]); a dialer resolves
/// an upstream's path and endpoints ([`Routing::mode`], [`Routing::endpoints`]). It is also
/// what an agent serves at `GET /v1/internal/mesh/routing`, so its serialised form is part
/// of the HTTP API (field names in Consul's casing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct Routing {
    /// The datacenter this view is of.
    pub datacenter: DatacenterName,
    /// The index it was built at (the highest of the tables it reads).
    pub index: u64,
    /// Whether config entries take part in mode resolution (`enable_central_service_config`).
    pub central_config: bool,
    /// The ACL default policy (`None` when ACLs are off): the intention decision when no
    /// intention matches derives from it.
    #[serde(default, with = "acl_default")]
    pub acl_default_policy: Option<DefaultPolicy>,
    /// The `proxy-defaults` entry named `global`, if any.
    #[serde(default)]
    pub proxy_defaults: Option<ProxyDefaults>,
    /// Every `service-defaults` entry, by service name.
    #[serde(default)]
    pub service_defaults: BTreeMap<String, ServiceDefaults>,
    /// Each local service's mesh endpoints (its sidecars', or its own when Connect-native).
    #[serde(default)]
    pub endpoints: BTreeMap<ServiceName, Vec<SocketAddr>>,
    /// The LAN addresses of this datacenter's mesh gateways.
    #[serde(default)]
    pub local_gateways: Vec<SocketAddr>,
    /// The gateways of every datacenter, as the federation table knows them.
    #[serde(default)]
    pub gateways: Vec<FederationGateway>,
    /// Where this datacenter's servers accept the other datacenters' servers (their server
    /// port): a gateway routes the server SNI `server.<this dc>.consul` there, so that
    /// datacenters can federate through the gateways alone.
    #[serde(default)]
    pub servers: Vec<SocketAddr>,
}

impl Routing {
    /// An empty view of `datacenter`.
    pub fn new(datacenter: DatacenterName) -> Self {
        Self {
            datacenter,
            index: 0,
            central_config: false,
            acl_default_policy: None,
            proxy_defaults: None,
            service_defaults: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            local_gateways: Vec::new(),
            gateways: Vec::new(),
            servers: Vec::new(),
        }
    }

    /// The effective mesh-gateway mode of `caller`'s upstream `target`: the upstream's own
    /// mode, else (with central config on) the caller's `service-defaults`, else
    /// `proxy-defaults`.
    pub fn mode(
        &self,
        caller: &ServiceName,
        target: &ServiceName,
        upstream_mode: MeshGatewayMode,
    ) -> MeshGatewayMode {
        if !self.central_config {
            return upstream_mode;
        }
        upstream_mode_layers(
            self.proxy_defaults.as_ref(),
            self.service_defaults.get(caller.as_str()),
            MeshGatewayMode::Default,
            Some(target),
            upstream_mode,
        )
        .effective()
    }

    /// The decision when no intention matches.
    pub fn intention_default(&self) -> IntentionDefault {
        IntentionDefault::new(self.acl_default_policy, None)
    }

    /// The endpoints of a path to `target`. `None` for a direct path to another datacenter,
    /// which this view does not hold (see [`ControlPlane::remote_endpoints`](super::ControlPlane::remote_endpoints)).
    pub fn endpoints(&self, path: &UpstreamPath, target: &ServiceName) -> Option<Vec<SocketAddr>> {
        match path {
            UpstreamPath::Direct { datacenter } if *datacenter == self.datacenter => {
                Some(self.endpoints.get(target).cloned().unwrap_or_default())
            }
            UpstreamPath::Direct { .. } => None,
            UpstreamPath::LocalGateways { .. } => Some(self.local_gateways.clone()),
            UpstreamPath::RemoteGateways { datacenter } => Some(
                self.gateways
                    .iter()
                    .filter(|g| &g.datacenter == datacenter)
                    .map(|g| g.wan)
                    .collect(),
            ),
        }
    }

    /// The route table of this datacenter's gateways: every local service to its mesh
    /// endpoints, every other datacenter to its gateways' WAN addresses.
    pub fn route_table(&self, trust_domain: TrustDomain) -> Result<RouteTable, Error> {
        let mut remotes: BTreeMap<&DatacenterName, Vec<SocketAddr>> = BTreeMap::new();
        for g in &self.gateways {
            if g.datacenter != self.datacenter {
                remotes.entry(&g.datacenter).or_default().push(g.wan);
            }
        }
        let mut b = RouteTable::builder(self.datacenter.clone(), trust_domain);
        for (svc, addrs) in &self.endpoints {
            b = b.service(svc.clone(), Pool::new(addrs.iter().copied()));
        }
        for (remote, addrs) in remotes {
            b = b.datacenter(remote.clone(), Pool::new(addrs));
        }
        if !self.servers.is_empty() {
            let domain = TrustDomain::new(mesh_core::DEFAULT_DNS_DOMAIN).map_err(Error::invalid)?;
            let name = Sni::server(None, self.datacenter.clone(), domain).to_string();
            b = b.exact(&name, Pool::new(self.servers.iter().copied()));
        }
        b.build().map_err(Error::invalid)
    }
}

/// `"allow"`, `"deny"` or `null`.
mod acl_default {
    use mesh_intentions::acl::DefaultPolicy;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        v: &Option<DefaultPolicy>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(DefaultPolicy::Allow) => s.serialize_str("allow"),
            Some(DefaultPolicy::Deny) => s.serialize_str("deny"),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DefaultPolicy>, D::Error> {
        match Option::<String>::deserialize(d)?.as_deref() {
            None => Ok(None),
            Some("allow") => Ok(Some(DefaultPolicy::Allow)),
            Some("deny") => Ok(Some(DefaultPolicy::Deny)),
            Some(other) => Err(serde::de::Error::custom(format!(
                "ACL default policy {other:?} is neither allow nor deny"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServiceName {
        s.parse().expect("valid name")
    }

    #[test]
    fn paths_resolve_to_their_endpoints() {
        let mut r = Routing::new("dc1".parse().expect("dc"));
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let g: SocketAddr = "127.0.0.2:2".parse().expect("addr");
        let w: SocketAddr = "127.0.0.3:3".parse().expect("addr");
        r.endpoints.insert(name("db"), vec![a]);
        r.local_gateways.push(g);
        r.acl_default_policy = Some(DefaultPolicy::Deny);
        r.gateways.push(FederationGateway {
            datacenter: "dc2".parse().expect("dc"),
            service: name("mesh-gateway"),
            id: "gw".into(),
            wan: w,
            lan: g,
        });
        let dc1 = "dc1".parse().expect("dc");
        let dc2: DatacenterName = "dc2".parse().expect("dc");
        assert_eq!(
            r.endpoints(&UpstreamPath::Direct { datacenter: dc1 }, &name("db")),
            Some(vec![a])
        );
        assert_eq!(
            r.endpoints(
                &UpstreamPath::Direct {
                    datacenter: dc2.clone()
                },
                &name("db")
            ),
            None
        );
        assert_eq!(
            r.endpoints(
                &UpstreamPath::RemoteGateways { datacenter: dc2 },
                &name("db")
            ),
            Some(vec![w])
        );
        // Without central config the upstream's own mode stands.
        assert_eq!(
            r.mode(&name("web"), &name("db"), MeshGatewayMode::Local),
            MeshGatewayMode::Local
        );
        let json = serde_json::to_string(&r).expect("serialise");
        let back: Routing = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, r);
    }

    #[test]
    fn a_gateway_routes_its_own_servers_by_their_sni_and_others_to_their_gateways() {
        let mut r = Routing::new("dc1".parse().expect("dc"));
        let td = TrustDomain::new("11111111-2222-3333-4444-555555555555.consul").expect("td");
        // Without servers, the own server SNI has no route.
        let table = r.route_table(td.clone()).expect("table");
        assert!(table.route(Some("server.dc1.consul")).is_err());
        let server: SocketAddr = "127.0.0.1:8300".parse().expect("addr");
        let w: SocketAddr = "127.0.0.3:3".parse().expect("addr");
        r.servers.push(server);
        r.gateways.push(FederationGateway {
            datacenter: "dc2".parse().expect("dc"),
            service: name("mesh-gateway"),
            id: "gw".into(),
            wan: w,
            lan: w,
        });
        let table = r.route_table(td).expect("table");
        let own = table.route(Some("server.dc1.consul")).expect("own servers");
        assert_eq!(own.label(), "server.dc1.consul");
        assert_eq!(own.pool().addrs().collect::<Vec<_>>(), vec![server]);
        let other = table
            .route(Some("server.dc2.consul"))
            .expect("dc2's gateways");
        assert_eq!(other.label(), "server.dc2.consul");
        assert_eq!(other.pool().addrs().collect::<Vec<_>>(), vec![w]);
        assert!(table.route(Some("server.dc3.consul")).is_err());
    }
}
