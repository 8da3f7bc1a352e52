//! In-app Connect: an application's own mTLS identity, an acceptor that checks intentions on
//! every new connection, and dialers for its upstreams, with no sidecar hop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use mesh_ca::tls::{ConnectAuthorizer, ExpectedServer, HandshakeError, TlsIdentity};
use mesh_ca::{IssuedLeaf, LeafManager, LeafManagerOptions, LeafSigner, Refusal, SignError};
use mesh_core::Upstream;
use mesh_core::{Datacenter as DatacenterName, ServiceId, ServiceName, Sni, SpiffeId};
use mesh_core::{MeshGatewayMode, UpstreamPath, upstream_path};
use mesh_sni::Pool;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::dataplane::{AsControlPlane, ControlPlane, IntentionSource};
use crate::{Error, ErrorKind, Secret};

/// Time allowed for a TLS handshake, either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one TCP connect before the next endpoint is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time an endpoint is skipped after its connect failed.
const HOLD_OFF: Duration = Duration::from_secs(5);

/// A service's identity in the mesh: its leaf (renewed underneath), the roots (following
/// rotations), and the intention check of its inbound connections.
///
/// Dropping it stops the renewal; connections already made keep their certificates.
pub struct Service {
    cp: Arc<dyn ControlPlane>,
    token: Secret,
    name: ServiceName,
    id: SpiffeId,
    identity: TlsIdentity,
    acceptor: TlsAcceptor,
    gate: Arc<IntentionGate>,
    leaves: LeafManager,
    follow: tokio::task::JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.follow.abort();
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("id", &self.id.to_string())
            .finish_non_exhaustive()
    }
}

/// Signs this service's CSRs through its control plane with its token.
struct CpSigner {
    cp: Arc<dyn ControlPlane>,
    token: Secret,
    service: ServiceName,
}

#[async_trait::async_trait]
impl LeafSigner for CpSigner {
    async fn sign(&self, csr_pem: &str) -> Result<IssuedLeaf, SignError> {
        self.cp.sign_leaf(&self.token, &self.service, csr_pem).await
    }
}

/// The inbound check: the caller's SPIFFE ID against the intentions of our service, on
/// every handshake (so a new or deleted intention changes the next connection).
struct IntentionGate {
    source: Arc<dyn IntentionSource>,
    target: ServiceName,
}

impl ConnectAuthorizer for IntentionGate {
    fn authorize(&self, peer: &SpiffeId) -> Result<(), Refusal> {
        let a = self.source.authorize(peer);
        if a.authorized {
            Ok(())
        } else {
            tracing::info!(client = %peer, target = %self.target, reason = %a.reason, "connection refused by intentions");
            Err(Refusal::new(a.reason))
        }
    }
}

impl Service {
    /// Obtains a leaf for `name` from the control plane `cp` (a
    /// [`Datacenter`](crate::Datacenter) in this process, or an
    /// [`AgentControlPlane`](crate::dataplane::AgentControlPlane)); `token` needs
    /// `service:write` on `name`. Starts keeping the leaf fresh and the intentions of `name`
    /// current, and returns once the first leaf is issued.
    ///
    /// ```
    /// use mesh::connect::Service;
    /// use mesh::core::Upstream;
    /// use mesh::{Datacenter, DatacenterConfig, Secret};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let mut config = DatacenterConfig::new("dc1".parse()?, "dc1".parse()?);
    /// config.acl.tokens.initial_management = Some("a-management-secret".into());
    /// let dc = Datacenter::start_primary(config).await?;
    /// let token = Secret::new("a-management-secret");
    /// // ACLs default to deny: web may call api once an intention allows it.
    /// dc.intentions().allow(&token, &"web".parse()?, &"api".parse()?).await?;
    ///
    /// // api terminates mTLS itself: it registers where it listens, as Connect-native.
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let port = listener.local_addr()?.port();
    /// let registration = format!(
    ///     r#"{{"name": "api", "address": "127.0.0.1", "port": {port}, "connect": {{"native": true}}}}"#
    /// );
    /// dc.catalog().register_json(&token, &registration).await?;
    /// let api = Service::new(&dc, &token, "api".parse()?).await?;
    /// tokio::spawn(async move {
    ///     let (tcp, _) = listener.accept().await?;
    ///     // The handshake verified the caller's SPIFFE ID and the intentions allow it.
    ///     let (mut tls, _caller) = api.accept(tcp).await?;
    ///     let mut word = [0u8; 5];
    ///     tls.read_exact(&mut word).await?;
    ///     tls.write_all(&word).await?;
    ///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    /// });
    ///
    /// // web dials api through the mesh: mTLS, api's identity verified.
    /// let web = Service::new(&dc, &token, "web".parse()?).await?;
    /// let upstream: Upstream =
    ///     serde_json::from_str(r#"{"destination_name": "api", "local_bind_port": 9191}"#)?;
    /// let mut tls = web.dialer(&upstream)?.dial().await?;
    /// tls.write_all(b"hello").await?;
    /// let mut echo = [0u8; 5];
    /// tls.read_exact(&mut echo).await?;
    /// assert_eq!(&echo, b"hello");
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn new(
        cp: &impl AsControlPlane,
        token: &Secret,
        name: ServiceName,
    ) -> Result<Self, Error> {
        Self::with_leaf_options(cp, token, name, LeafManagerOptions::default()).await
    }

    /// [`Service::new`] with the leaf manager's options (how soon a new leaf follows a root
    /// rotation, retry windows, extra DNS names).
    pub async fn with_leaf_options(
        cp: &impl AsControlPlane,
        token: &Secret,
        name: ServiceName,
        leaf_options: LeafManagerOptions,
    ) -> Result<Self, Error> {
        let cp = cp.control_plane();
        let roots = cp.roots().await?;
        let td = roots
            .borrow()
            .trust_domain()
            .ok_or(ErrorKind::ConnectDisabled)?;
        let id = SpiffeId::from(ServiceId::new(td, cp.datacenter().clone(), name.clone()));
        let signer = Arc::new(CpSigner {
            cp: cp.clone(),
            token: token.clone(),
            service: name.clone(),
        });
        // One first signing up front, so a refusal is reported to the caller with its reason.
        let probe = mesh_ca::new_leaf_request(&id, &[]).map_err(Error::invalid)?;
        signer.sign(&probe.csr_pem).await?;
        let leaves = LeafManager::spawn(id.clone(), signer, roots.clone(), leaf_options);
        let first = leaves
            .ready()
            .await
            .ok_or_else(|| ErrorKind::Config("leaf manager stopped".into()))?;
        let current_roots = roots.borrow().clone();
        let identity = TlsIdentity::with_leaf(&first, &current_roots)?;
        let follow = identity.follow(leaves.subscribe(), roots);
        let gate = Arc::new(IntentionGate {
            source: cp.intentions(token, &name).await?,
            target: name.clone(),
        });
        // mesh-ca's server config never resumes sessions, so the gate sees every handshake.
        let acceptor = TlsAcceptor::from(Arc::new(identity.server_config(gate.clone())?));
        Ok(Self {
            cp,
            token: token.clone(),
            name,
            id,
            identity,
            acceptor,
            gate,
            leaves,
            follow,
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

    /// The leaf certificate presented now.
    pub fn leaf(&self) -> Option<Arc<mesh_ca::LeafCert>> {
        self.leaves.current()
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
            .unwrap_or_else(|| self.cp.datacenter().clone());
        let td = self
            .id
            .as_service()
            .map(|s| s.trust_domain().clone())
            .ok_or(ErrorKind::ConnectDisabled)?;
        let sni = Sni::service(target.clone(), target_dc.clone(), td.clone()).to_string();
        let server_name = ServerName::try_from(sni.clone()).map_err(Error::invalid)?;
        let expected = ExpectedServer::id(SpiffeId::from(ServiceId::new(
            td,
            target_dc.clone(),
            target.clone(),
        )));
        let connector = TlsConnector::from(Arc::new(self.identity.client_config(expected)?));
        Ok(Dialer {
            cp: self.cp.clone(),
            token: self.token.clone(),
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
    cp: Arc<dyn ControlPlane>,
    token: Secret,
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
        let routing = self.cp.current_routing(&self.token).await?;
        Ok(routing.mode(&self.service, &self.target, self.upstream_mode))
    }

    /// Where connections go now: the resolved path and its endpoints.
    pub async fn endpoints(&self) -> Result<(UpstreamPath, Vec<SocketAddr>), Error> {
        let routing = self.cp.current_routing(&self.token).await?;
        let mode = routing.mode(&self.service, &self.target, self.upstream_mode);
        let path = upstream_path(self.cp.datacenter(), &self.target_dc, mode);
        let addrs = match routing.endpoints(&path, &self.target) {
            Some(addrs) => addrs,
            None => {
                self.cp
                    .remote_endpoints(&self.token, &self.target_dc, &self.target)
                    .await?
            }
        };
        Ok((path, addrs))
    }

    /// Opens one mTLS connection to the upstream. Endpoints are tried round-robin; one whose
    /// connect fails is held off and the next is tried. When every endpoint is held off, all
    /// are tried anyway.
    pub async fn dial(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
        let (path, addrs) = self.endpoints().await?;
        let pool = self.pool_for(&addrs);
        let mut last = None;
        let mut candidates: Vec<SocketAddr> = pool.candidates().collect();
        if candidates.is_empty() {
            // Every endpoint is held off after a failure: try them all anyway (panic mode)
            // rather than refuse what may work again by now.
            candidates = pool.held_off().collect();
        }
        for addr in candidates {
            let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                // Out of descriptors, buffers or ports here: no endpoint's fault.
                Ok(Err(e)) if mesh_sni::local_exhaustion(&e) => return Err(e.into()),
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
            .map_err(|e| ErrorKind::Io(std::io::Error::other(e)))?;
            tracing::debug!(upstream = %self.target, via = ?path, %addr, %server, "upstream connected");
            return Ok(tls);
        }
        Err(Error::from(ErrorKind::Io(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!("no endpoint for {} ({path:?})", self.target),
            )
        }))))
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
