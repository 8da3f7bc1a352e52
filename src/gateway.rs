//! A mesh gateway fed from the catalog: it routes by SNI to this datacenter's sidecars and to
//! the other datacenters' gateways, and follows the catalog as it changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::{ServiceName, TrustDomain};
use mesh_sni::{Gateway, GatewayConfig, GatewayStats, ListenerKind, ShutdownReport};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dataplane::{AsControlPlane, ControlPlane, Routing};
use crate::{Error, Secret};

/// One running mesh gateway instance: an SNI gateway (mesh-sni) registered in its
/// datacenter's catalog, whose route table is rebuilt whenever the routing view (catalog,
/// federation table, config entries) changes. Several instances of one datacenter share its
/// traffic round-robin.
///
/// Dropping it stops it at once (listeners closed, connections cut) and leaves its
/// registration, like a crash; [`MeshGateway::shutdown`] deregisters and drains first.
#[derive(Debug)]
pub struct MeshGateway {
    cp: Arc<dyn ControlPlane>,
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
    /// routing view and starts following it. `cp` is a [`Datacenter`](crate::Datacenter) in
    /// this process or an [`AgentControlPlane`](crate::dataplane::AgentControlPlane).
    pub async fn start(
        cp: &impl AsControlPlane,
        token: &Secret,
        name: &ServiceName,
        id: &str,
        lan_bind: SocketAddr,
        wan_bind: SocketAddr,
        config: GatewayConfig,
    ) -> Result<Self, Error> {
        let cp = cp.control_plane();
        let td = {
            let roots = cp.roots().await?;
            let td = roots.borrow().trust_domain();
            td.ok_or(Error::ConnectDisabled)?
        };
        let lan_listener = TcpListener::bind(lan_bind).await?;
        let wan_listener = TcpListener::bind(wan_bind).await?;
        let lan = lan_listener.local_addr()?;
        let wan = wan_listener.local_addr()?;
        cp.register_gateway(token, name, id, lan, wan).await?;
        let routing = cp.routing(token).await?;
        let table = routing.borrow().route_table(td.clone())?;
        let gateway = Gateway::new(config, table).map_err(Error::invalid)?;
        gateway
            .serve(ListenerKind::Lan, lan_listener)
            .map_err(Error::invalid)?;
        gateway
            .serve(ListenerKind::Wan, wan_listener)
            .map_err(Error::invalid)?;
        let watcher = tokio::spawn(follow(routing, td, gateway.clone()));
        tracing::info!(datacenter = %cp.datacenter(), gateway = id, %lan, %wan, "mesh gateway started");
        Ok(Self {
            cp,
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
        if let Err(e) = self.cp.deregister(&self.token, &self.id).await {
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

impl Drop for MeshGateway {
    fn drop(&mut self) {
        self.watcher.abort();
        self.gateway.stop_now();
    }
}

/// Rebuilds the table whenever the routing view moves.
async fn follow(mut routing: watch::Receiver<Arc<Routing>>, td: TrustDomain, gateway: Gateway) {
    while routing.changed().await.is_ok() {
        let view = routing.borrow_and_update().clone();
        match view.route_table(td.clone()) {
            Ok(t) => gateway.set_routes(t),
            Err(e) => {
                tracing::warn!(error = %e, "route table rebuild failed; keeping the old one")
            }
        }
    }
}
