//! A mesh gateway fed from the catalog: it routes by SNI to this datacenter's sidecars and to
//! the other datacenters' gateways, and follows the catalog as it changes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_core::{Datacenter as DatacenterName, Index, ServiceName};
use mesh_sni::{
    Gateway, GatewayConfig, GatewayStats, ListenerKind, Pool, RouteTable, ShutdownReport,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{Datacenter, Error, Secret};

/// How long a route watcher's blocking query is held before it is renewed.
const ROUTE_WAIT: Duration = Duration::from_secs(60);

/// One running mesh gateway instance: an SNI gateway (mesh-sni) registered in its
/// datacenter's catalog, whose route table is rebuilt whenever the catalog or the federation
/// table changes. Several instances of one datacenter share its traffic round-robin.
#[derive(Debug)]
pub struct MeshGateway {
    dc: Datacenter,
    token: Secret,
    id: String,
    gateway: Gateway,
    lan: SocketAddr,
    wan: SocketAddr,
    watcher: JoinHandle<()>,
}

impl MeshGateway {
    /// Binds a LAN and a WAN listener, registers the instance `id` of service `name` with the
    /// bound addresses (needs `service:write` on `name`), installs the routes of the current
    /// catalog and starts following it.
    pub async fn start(
        dc: &Datacenter,
        token: &Secret,
        name: &ServiceName,
        id: &str,
        lan_bind: SocketAddr,
        wan_bind: SocketAddr,
        config: GatewayConfig,
    ) -> Result<Self, Error> {
        let lan_listener = TcpListener::bind(lan_bind).await?;
        let wan_listener = TcpListener::bind(wan_bind).await?;
        let lan = lan_listener.local_addr()?;
        let wan = wan_listener.local_addr()?;
        dc.catalog()
            .register_mesh_gateway(token, name, id, lan, wan)
            .await?;
        let table = routes(dc).await?;
        let gateway = Gateway::new(config, table).map_err(Error::invalid)?;
        gateway
            .serve(ListenerKind::Lan, lan_listener)
            .map_err(Error::invalid)?;
        gateway
            .serve(ListenerKind::Wan, wan_listener)
            .map_err(Error::invalid)?;
        let watcher = tokio::spawn(follow(dc.clone(), gateway.clone()));
        tracing::info!(datacenter = %dc.name(), gateway = id, %lan, %wan, "mesh gateway started");
        Ok(Self {
            dc: dc.clone(),
            token: token.clone(),
            id: id.to_owned(),
            gateway,
            lan,
            wan,
            watcher,
        })
    }

    /// The LAN address (where this datacenter's sidecars reach it).
    pub fn lan_addr(&self) -> SocketAddr {
        self.lan
    }

    /// The WAN address (where other datacenters' gateways reach it).
    pub fn wan_addr(&self) -> SocketAddr {
        self.wan
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The counters of the underlying SNI gateway.
    pub fn stats(&self) -> GatewayStats {
        self.gateway.stats()
    }

    /// The SNI gateway itself (its route table, its counters).
    pub fn sni_gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Deregisters the instance (so sidecars and other gateways stop choosing it), stops
    /// accepting, and drains live connections for at most `drain`.
    pub async fn shutdown(self, drain: Duration) -> ShutdownReport {
        if let Err(e) = self.dc.catalog().deregister(&self.token, &self.id).await {
            tracing::warn!(gateway = %self.id, error = %e, "deregistering gateway failed");
        }
        self.watcher.abort();
        self.gateway.shutdown(drain).await
    }

    /// Stops at once without deregistering: what a crashed gateway looks like to the rest.
    pub async fn kill(self) {
        self.watcher.abort();
        self.gateway.shutdown(Duration::ZERO).await;
    }
}

/// Rebuilds the table whenever the catalog or the federation table moves.
async fn follow(dc: Datacenter, gateway: Gateway) {
    let mut seen = Index::ZERO;
    loop {
        match dc.catalog().wait_routing_change(seen, ROUTE_WAIT).await {
            Ok(idx) if idx > seen => {
                seen = idx;
                match routes(&dc).await {
                    Ok(t) => gateway.set_routes(t),
                    Err(e) => {
                        tracing::warn!(error = %e, "route table rebuild failed; keeping the old one")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "watching the catalog failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The route table of a datacenter's gateways: every local service with sidecars to its
/// sidecars' LAN addresses (a Connect-native service to its own), every other datacenter to its gateways' WAN addresses.
pub async fn routes(dc: &Datacenter) -> Result<RouteTable, Error> {
    let td = dc.trust_domain().ok_or(Error::ConnectDisabled)?;
    let mut services: BTreeMap<ServiceName, Vec<SocketAddr>> = BTreeMap::new();
    for e in dc.catalog().entries().await? {
        // A sidecar's address for the service it fronts; a Connect-native service's own.
        if let Some((dest, addr)) = e.mesh_endpoint() {
            services.entry(dest.clone()).or_default().push(addr);
        }
    }
    let mut remotes: BTreeMap<DatacenterName, Vec<SocketAddr>> = BTreeMap::new();
    for g in dc.catalog().federation().await? {
        if &g.datacenter != dc.name() {
            remotes.entry(g.datacenter).or_default().push(g.wan);
        }
    }
    let mut b = RouteTable::builder(dc.name().clone(), td);
    for (svc, addrs) in services {
        b = b.service(svc, Pool::new(addrs));
    }
    for (remote, addrs) in remotes {
        b = b.datacenter(remote, Pool::new(addrs));
    }
    b.build().map_err(Error::invalid)
}
