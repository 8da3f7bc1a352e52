//! In-app Connect: an application's own mTLS identity, an acceptor that checks intentions on
//! every new connection, and dialers for its upstreams, with no sidecar hop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use mesh_ca::tls::{ConnectAuthorizer, ExpectedServer, HandshakeError, TlsIdentity};
use mesh_ca::{IssuedLeaf, LeafManager, LeafManagerOptions, LeafSigner, Refusal, SignError};
use mesh_core::catalog::{ServiceKind, Upstream};
use mesh_core::mesh_gateway::{MeshGatewayMode, UpstreamPath, upstream_path};
use mesh_core::{ConfigEntry, Datacenter as DatacenterName, ServiceId, ServiceName, Sni, SpiffeId};
use mesh_sni::Pool;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::datacenter::authorize_with;
use crate::{Datacenter, Error, Secret};

/// Time allowed for a TLS handshake, either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one TCP connect before the next endpoint is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time an endpoint is skipped after its connect failed.
const HOLD_OFF: Duration = Duration::from_secs(5);

/// A service's identity in the mesh: its leaf (renewed underneath), the roots (following
/// rotations), and the intention check of its inbound connections.
pub struct Service {
    dc: Datacenter,
    name: ServiceName,
    id: SpiffeId,
    identity: TlsIdentity,
    acceptor: TlsAcceptor,
    gate: Arc<IntentionGate>,
    _leaves: LeafManager,
    _follow: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("id", &self.id.to_string())
            .finish_non_exhaustive()
    }
}

/// Signs this service's CSRs through its datacenter with its token.
struct DcSigner {
    dc: Datacenter,
    token: Secret,
}

#[async_trait::async_trait]
impl LeafSigner for DcSigner {
    async fn sign(&self, csr_pem: &str) -> Result<IssuedLeaf, SignError> {
        self.dc.sign_leaf_typed(&self.token, csr_pem).await
    }
}

/// The inbound check: the caller's SPIFFE ID against the intentions of our service, on
/// every handshake (so a new or deleted intention changes the next connection).
struct IntentionGate {
    dc: Datacenter,
    target: ServiceName,
}

impl ConnectAuthorizer for IntentionGate {
    fn authorize(&self, peer: &SpiffeId) -> Result<(), Refusal> {
        let a = authorize_with(
            &self.dc.intentions().shared(),
            self.dc.intentions().default(),
            self.dc.trust_domain().as_ref(),
            peer,
            &self.target,
        );
        if a.authorized {
            Ok(())
        } else {
            tracing::info!(client = %peer, target = %self.target, reason = %a.reason, "connection refused by intentions");
            Err(Refusal::new(a.reason))
        }
    }
}

impl Service {
    /// Obtains a leaf for `name` in `dc` (needs `service:write` on it through `token`) and
    /// starts keeping it fresh. Returns once the first leaf is issued.
    pub async fn new(dc: &Datacenter, token: &Secret, name: ServiceName) -> Result<Self, Error> {
        let td = dc.trust_domain().ok_or(Error::ConnectDisabled)?;
        let id = SpiffeId::from(ServiceId::new(td, dc.name().clone(), name.clone()));
        let roots = dc.connect_ca().subscribe_roots()?;
        let signer = Arc::new(DcSigner {
            dc: dc.clone(),
            token: token.clone(),
        });
        // One first signing up front, so a refusal is reported to the caller with its reason.
        let probe = mesh_ca::new_leaf_request(&id, &[]).map_err(Error::invalid)?;
        signer.sign(&probe.csr_pem).await?;
        let leaves = LeafManager::spawn(
            id.clone(),
            signer,
            roots.clone(),
            LeafManagerOptions::default(),
        );
        let first = leaves
            .ready()
            .await
            .ok_or_else(|| Error::Config("leaf manager stopped".into()))?;
        let identity = TlsIdentity::with_leaf(&first, dc.connect_ca().roots()?.as_ref())?;
        let follow = identity.follow(leaves.subscribe(), roots);
        let gate = Arc::new(IntentionGate {
            dc: dc.clone(),
            target: name.clone(),
        });
        // mesh-ca's server config never resumes sessions, so the gate sees every handshake.
        let acceptor = TlsAcceptor::from(Arc::new(identity.server_config(gate.clone())?));
        Ok(Self {
            dc: dc.clone(),
            name,
            id,
            identity,
            acceptor,
            gate,
            _leaves: leaves,
            _follow: follow,
        })
    }

    /// The service's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }

    /// The service's name.
    pub fn name(&self) -> &ServiceName {
        &self.name
    }

    /// A TLS acceptor that requires a client certificate of the mesh and refuses, inside the
    /// handshake, callers the intentions do not allow.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Accepts one inbound connection; returns the stream and the caller's verified identity.
    /// The intentions are checked inside the handshake and once more after it.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<(tokio_rustls::server::TlsStream<TcpStream>, SpiffeId), HandshakeError> {
        let (tls, peer) = mesh_ca::tls::accept(&self.acceptor, tcp, HANDSHAKE_TIMEOUT).await?;
        if let Err(refusal) = self.gate.authorize(&peer) {
            return Err(HandshakeError::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                refusal.reason().to_owned(),
            )));
        }
        Ok((tls, peer))
    }

    /// A dialer for one upstream, routed per its resolved mesh-gateway mode.
    pub fn dialer(&self, upstream: &Upstream) -> Result<Dialer, Error> {
        let target = upstream
            .destination_name
            .clone()
            .ok_or_else(|| Error::invalid_msg("upstream has no destination name"))?;
        let target_dc = upstream
            .datacenter
            .clone()
            .unwrap_or_else(|| self.dc.name().clone());
        let td = self.dc.trust_domain().ok_or(Error::ConnectDisabled)?;
        let sni = Sni::service(target.clone(), target_dc.clone(), td.clone()).to_string();
        let server_name = ServerName::try_from(sni.clone()).map_err(Error::invalid)?;
        let expected = ExpectedServer::id(SpiffeId::from(ServiceId::new(
            td,
            target_dc.clone(),
            target.clone(),
        )));
        let connector = TlsConnector::from(Arc::new(self.identity.client_config(expected)?));
        Ok(Dialer {
            dc: self.dc.clone(),
            service: self.name.clone(),
            target,
            target_dc,
            upstream_mode: upstream.mesh_gateway.mode,
            sni,
            server_name,
            connector,
            pool: ArcSwap::from_pointee(Pool::new([])),
        })
    }
}

/// Dials one upstream with mTLS and its service SNI, through the local gateways, the remote
/// datacenter's gateways or straight to the instances, round-robin with failover.
pub struct Dialer {
    dc: Datacenter,
    service: ServiceName,
    target: ServiceName,
    target_dc: DatacenterName,
    upstream_mode: MeshGatewayMode,
    sni: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    pool: ArcSwap<Pool>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("service", &self.service)
            .field("target", &self.target)
            .field("target_dc", &self.target_dc)
            .field("sni", &self.sni)
            .finish_non_exhaustive()
    }
}

impl Dialer {
    /// The SNI sent on every connection.
    pub fn sni(&self) -> &str {
        &self.sni
    }

    /// The effective mesh-gateway mode: the upstream's own, else the config entries'
    /// (`service-defaults` of the calling service over `proxy-defaults`), when central config
    /// is on.
    pub async fn mode(&self) -> Result<MeshGatewayMode, Error> {
        if !self.dc.config().enable_central_service_config {
            return Ok(self.upstream_mode);
        }
        let pd = match self
            .dc
            .config_entries()
            .get(mesh_core::ConfigEntryKind::ProxyDefaults, "global")
            .await?
        {
            Some(ConfigEntry::ProxyDefaults(p)) => Some(p),
            _ => None,
        };
        let sd = match self
            .dc
            .config_entries()
            .get(
                mesh_core::ConfigEntryKind::ServiceDefaults,
                self.service.as_str(),
            )
            .await?
        {
            Some(ConfigEntry::ServiceDefaults(s)) => Some(s),
            _ => None,
        };
        Ok(mesh_core::config_entry::upstream_mode_layers(
            pd.as_ref(),
            sd.as_ref(),
            MeshGatewayMode::Default,
            Some(&self.target),
            self.upstream_mode,
        )
        .effective())
    }

    /// Where connections go now: the resolved path and its endpoints.
    pub async fn endpoints(&self) -> Result<(UpstreamPath, Vec<SocketAddr>), Error> {
        let path = upstream_path(self.dc.name(), &self.target_dc, self.mode().await?);
        let addrs = match &path {
            UpstreamPath::Direct { datacenter } if datacenter == self.dc.name() => {
                self.dc.catalog().sidecar_addresses(&self.target).await?
            }
            UpstreamPath::Direct { datacenter } => {
                self.dc
                    .catalog()
                    .remote_endpoints(datacenter, &self.target)
                    .await?
            }
            UpstreamPath::LocalGateways { .. } => self.gateways(self.dc.name(), false).await?,
            UpstreamPath::RemoteGateways { datacenter } => self.gateways(datacenter, true).await?,
        };
        Ok((path, addrs))
    }

    async fn gateways(&self, dc: &DatacenterName, wan: bool) -> Result<Vec<SocketAddr>, Error> {
        if dc == self.dc.name() && !wan {
            // Local gateways from the local catalog (their LAN addresses).
            return Ok(self
                .dc
                .catalog()
                .entries()
                .await?
                .into_iter()
                .filter(|e| !e.down && e.service.kind == ServiceKind::MeshGateway)
                .filter_map(|e| e.lan)
                .collect());
        }
        Ok(self
            .dc
            .catalog()
            .federation()
            .await?
            .into_iter()
            .filter(|g| &g.datacenter == dc)
            .map(|g| if wan { g.wan } else { g.lan })
            .collect())
    }

    /// Opens one mTLS connection to the upstream. Endpoints are tried round-robin; one whose
    /// connect fails is held off and the next is tried.
    pub async fn dial(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
        let (path, addrs) = self.endpoints().await?;
        let pool = self.pool_for(&addrs);
        let mut last = None;
        for addr in pool.candidates() {
            let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    pool.hold_off(addr, HOLD_OFF);
                    tracing::debug!(%addr, error = %e, "upstream endpoint refused; trying the next");
                    last = Some(e);
                    continue;
                }
                Err(_) => {
                    pool.hold_off(addr, HOLD_OFF);
                    last = Some(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    ));
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (tls, server) = mesh_ca::tls::connect(
                &self.connector,
                self.server_name.clone(),
                tcp,
                HANDSHAKE_TIMEOUT,
            )
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
            tracing::debug!(upstream = %self.target, via = ?path, %addr, %server, "upstream connected");
            return Ok(tls);
        }
        Err(Error::Io(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!("no endpoint for {} ({path:?})", self.target),
            )
        })))
    }

    /// The pool of `addrs`, kept across dials (so round-robin and hold-offs persist) until the
    /// endpoint set changes.
    fn pool_for(&self, addrs: &[SocketAddr]) -> Arc<Pool> {
        let cur = self.pool.load_full();
        if cur.addrs().eq(addrs.iter().copied()) {
            return cur;
        }
        let fresh = Arc::new(Pool::new(addrs.iter().copied()));
        self.pool.store(fresh.clone());
        fresh
    }
}
