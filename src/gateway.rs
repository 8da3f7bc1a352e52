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
use crate::{Error, ErrorKind, Secret};

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

/// What a [`MeshGateway`] is and where it listens: the instance `id` of gateway service
/// `name`, its LAN listener (this datacenter's sidecars reach it there) and its WAN listener
/// (the other datacenters' gateways do). Port 0 picks a free port; the catalog gets the bound
/// addresses.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MeshGatewayOptions {
    /// The gateway service's name (`mesh-gateway` in Consul's examples).
    pub name: ServiceName,
    /// This instance's id.
    pub id: String,
    /// Where the LAN listener binds.
    pub lan_bind: SocketAddr,
    /// Where the WAN listener binds.
    pub wan_bind: SocketAddr,
    /// The SNI gateway's limits and time-outs.
    pub config: GatewayConfig,
}

impl MeshGatewayOptions {
    /// Instance `id` of `name`, listening on `lan_bind` and `wan_bind`, with default limits.
    pub fn new(
        name: ServiceName,
        id: impl Into<String>,
        lan_bind: SocketAddr,
        wan_bind: SocketAddr,
    ) -> Self {
        Self {
            name,
            id: id.into(),
            lan_bind,
            wan_bind,
            config: GatewayConfig::default(),
        }
    }

    /// With these limits and time-outs.
    pub fn config(mut self, config: GatewayConfig) -> Self {
        self.config = config;
        self
    }
}

impl MeshGateway {
    /// Binds a LAN and a WAN listener, registers the instance with the bound addresses (needs
    /// `service:write` on the gateway's name), installs the routes of the current routing view
    /// and starts following it. `cp` is a [`Datacenter`](crate::Datacenter) in this process or
    /// an [`AgentControlPlane`](crate::dataplane::AgentControlPlane).
    ///
    /// ```
    /// use mesh::{Datacenter, DatacenterConfig, MeshGateway, MeshGatewayOptions, Secret};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let mut config = DatacenterConfig::new("dc1".parse()?, "dc1".parse()?);
    /// config.acl.tokens.initial_management = Some("a-management-secret".into());
    /// let dc = Datacenter::start_primary(config).await?;
    /// let token = Secret::new("a-management-secret");
    /// let local = "127.0.0.1:0".parse()?;
    /// let opts = MeshGatewayOptions::new("mesh-gateway".parse()?, "gateway-1", local, local);
    /// let gateway = MeshGateway::start(&dc, &token, opts).await?;
    /// assert_ne!(gateway.lan_addr().port(), 0);
    /// // Deregister, then let open connections finish (at most 5 s).
    /// gateway.shutdown(std::time::Duration::from_secs(5)).await;
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(
        cp: &impl AsControlPlane,
        token: &Secret,
        opts: MeshGatewayOptions,
    ) -> Result<Self, Error> {
        let MeshGatewayOptions {
            name,
            id,
            lan_bind,
            wan_bind,
            config,
        } = opts;
        let (name, id) = (&name, id.as_str());
        let cp = cp.control_plane();
        let td = {
            let roots = cp.roots().await?;
            let td = roots.borrow().trust_domain();
            td.ok_or(ErrorKind::ConnectDisabled)?
        };
        let lan_listener = TcpListener::bind(lan_bind).await?;
        let wan_listener = TcpListener::bind(wan_bind).await?;
        let lan = lan_listener.local_addr()?;
        let wan = wan_listener.local_addr()?;
        cp.register_gateway(token, name, id, lan, wan).await?;
        let routing = cp.routing(token).await?;
        let table = routing.borrow().route_table(td.clone())?;
        let gateway = Gateway::new(config, table).map_err(Error::invalid)?;
        gateway.serve(ListenerKind::Lan, lan_listener)?;
        gateway.serve(ListenerKind::Wan, wan_listener)?;
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
