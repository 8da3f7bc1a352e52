//! A sidecar proxy run inside the application's process: the public mTLS listener of a
//! service and one local listener per upstream, as its registration describes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::UpstreamListener;
use mesh_sni::{RelayCounters, RelayLimits};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::connect::{CONNECT_TIMEOUT, Dialer, Service};
use crate::dataplane::AsControlPlane;
use crate::{Error, ErrorKind, Secret};

/// The most connections a sidecar holds at once by default, over all its listeners (each
/// holds two sockets: the accepted one and the one it dials).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How a sidecar runs: where it listens (by default the addresses of its registration) and
/// how many connections it holds at once.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SidecarOptions {
    /// Bind the public listener here instead of the registered address (port 0 picks one;
    /// the catalog is updated with the bound address).
    pub public_bind: Option<SocketAddr>,
    /// The most connections held at once, accepted on any listener and not yet closed
    /// (handshakes included). One over it is closed as soon as it is accepted, counted
    /// ([`Sidecar::refused_connections`]) and logged (at most once a second).
    pub max_connections: usize,
    /// The relay of each connection: buffers that grow up to this size per direction, and the
    /// idle time-out; the gateway's defaults ([`mesh_sni::DEFAULT_RELAY_BUFFER_SIZE`],
    /// [`mesh_sni::DEFAULT_IDLE_TIMEOUT`]).
    pub relay: RelayLimits,
}

impl Default for SidecarOptions {
    fn default() -> Self {
        Self {
            public_bind: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            relay: RelayLimits::new(
                mesh_sni::DEFAULT_RELAY_BUFFER_SIZE,
                mesh_sni::DEFAULT_IDLE_TIMEOUT,
            ),
        }
    }
}

impl SidecarOptions {
    /// With the public listener bound at `addr`.
    pub fn public_bind(mut self, addr: SocketAddr) -> Self {
        self.public_bind = Some(addr);
        self
    }

    /// With at most `n` connections held at once (at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }
}

/// A running sidecar. Dropping it stops its listeners and cuts its connections at once;
/// [`Sidecar::shutdown`] lets live connections finish first.
#[derive(Debug)]
pub struct Sidecar {
    service: Arc<Service>,
    public: SocketAddr,
    upstreams: Vec<(String, SocketAddr)>,
    tasks: Vec<JoinHandle<()>>,
    live: Live,
}

/// The connections a sidecar relays: counted against its cap, and cut together.
#[derive(Debug, Clone, Default)]
struct Live {
    count: Arc<std::sync::atomic::AtomicUsize>,
    limit: usize,
    refused: Arc<std::sync::atomic::AtomicU64>,
    /// When a refusal was last logged (milliseconds of tokio's clock since `epoch`).
    last_log: Arc<std::sync::atomic::AtomicU64>,
    epoch: Option<tokio::time::Instant>,
    idle: Arc<tokio::sync::Notify>,
    cut: stop::Cut,
}

/// One relayed connection: counted while it lives.
struct LiveGuard(Live);

impl Live {
    fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            epoch: Some(tokio::time::Instant::now()),
            ..Self::default()
        }
    }

    /// Counts one more connection, or refuses it when the cap is reached.
    fn try_enter(&self, listener: &'static str) -> Option<LiveGuard> {
        use std::sync::atomic::Ordering;
        let admitted = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            return Some(LiveGuard(self.clone()));
        }
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.epoch.map_or(0, |e| {
            u64::try_from(e.elapsed().as_millis()).unwrap_or(u64::MAX)
        });
        let last = self.last_log.load(Ordering::Relaxed);
        if (refused == 1 || now.saturating_sub(last) >= 1000)
            && self
                .last_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                listener,
                limit = self.limit,
                refused_total = refused,
                "sidecar at its connection cap: closing new connections"
            );
        }
        None
    }

    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// A one-way "stop now" signal every relay watches.
mod stop {
    use tokio::sync::watch;

    #[derive(Debug, Clone)]
    pub(super) struct Cut {
        tx: std::sync::Arc<watch::Sender<bool>>,
    }

    impl Default for Cut {
        fn default() -> Self {
            Self {
                tx: std::sync::Arc::new(watch::channel(false).0),
            }
        }
    }

    impl Cut {
        pub(super) fn fire(&self) {
            self.tx.send_replace(true);
        }

        pub(super) async fn fired(&self) {
            let mut rx = self.tx.subscribe();
            let _ = rx.wait_for(|cut| *cut).await;
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.live.cut.fire();
    }
}

impl Sidecar {
    /// Starts the sidecar of the registered service instance `service_id` (registered with
    /// [`Catalog::register_json`](crate::Catalog::register_json) and a `connect.sidecar_service` stanza), from the control
    /// plane `cp` (a [`Datacenter`](crate::Datacenter) in this process or an
    /// [`AgentControlPlane`](crate::dataplane::AgentControlPlane)). `token` needs
    /// `service:write` on the service (for its leaf certificate).
    ///
    /// ```
    /// use mesh::{Datacenter, DatacenterConfig, Secret, Sidecar, SidecarOptions};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let mut config = DatacenterConfig::new("dc1".parse()?, "dc1".parse()?);
    /// config.acl.tokens.initial_management = Some("a-management-secret".into());
    /// let dc = Datacenter::start_primary(config).await?;
    /// let token = Secret::new("a-management-secret");
    /// let web = r#"{"service": {"name": "web", "port": 8080, "connect": {"sidecar_service": {}}}}"#;
    /// dc.catalog().register_json(&token, web).await?;
    /// // The public listener on a free port (the catalog learns it); one listener per upstream
    /// // (none here).
    /// let opts = SidecarOptions::default().public_bind("127.0.0.1:0".parse()?);
    /// let sidecar = Sidecar::start(&dc, &token, "web", opts).await?;
    /// assert_ne!(sidecar.public_addr().port(), 0);
    /// assert!(sidecar.upstreams().is_empty());
    /// // Stop accepting; give live connections up to 5 s to finish.
    /// sidecar.shutdown(std::time::Duration::from_secs(5)).await;
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(
        cp: &impl AsControlPlane,
        token: &Secret,
        service_id: &str,
        opts: SidecarOptions,
    ) -> Result<Self, Error> {
        let cp = cp.control_plane();
        let sidecar_id = format!("{service_id}-sidecar-proxy");
        let entry = match cp.instance(token, &sidecar_id).await {
            Ok(e) => e,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound(_)) => {
                return Err(ErrorKind::NotFound(format!("sidecar {sidecar_id:?}")).into());
            }
            Err(e) => return Err(e),
        };
        let proxy = entry
            .service
            .proxy
            .clone()
            .ok_or_else(|| Error::invalid_msg("sidecar registration has no proxy stanza"))?;
        let name = proxy
            .destination_service_name
            .clone()
            .ok_or_else(|| Error::invalid_msg("sidecar has no destination service"))?;
        let local_ip = proxy
            .local_service_address
            .as_ref()
            .and_then(|h| h.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let local_port = proxy.local_service_port;
        if local_port == 0 {
            return Err(Error::invalid_msg("sidecar has no local service port"));
        }
        let local_app = SocketAddr::new(local_ip, local_port);

        let service = Arc::new(Service::new(&cp, token, name.clone()).await?);
        let bind = opts
            .public_bind
            .or(entry.lan)
            .ok_or_else(|| Error::invalid_msg("sidecar has no address"))?;
        let public_listener = bind_listener(bind, "the public listener").await?;
        let public = public_listener.local_addr()?;
        if Some(public) != entry.lan {
            cp.set_instance_address(token, &sidecar_id, public).await?;
        }
        let live = Live::new(opts.max_connections);
        let mut tasks = vec![tokio::spawn(serve_public(
            public_listener,
            service.clone(),
            local_app,
            live.clone(),
            opts.relay,
        ))];

        let mut upstreams = Vec::new();
        for up in &proxy.upstreams {
            let UpstreamListener::Tcp(addr) = up.listener() else {
                return Err(Error::invalid_msg(
                    "unix-socket upstream listeners are not supported",
                ));
            };
            let listener = bind_listener(addr, "an upstream listener").await?;
            let bound = listener.local_addr()?;
            let dialer = Arc::new(service.dialer(up)?);
            upstreams.push((dialer.sni().to_owned(), bound));
            tasks.push(tokio::spawn(serve_upstream(
                listener,
                dialer,
                live.clone(),
                opts.relay,
            )));
        }
        tracing::info!(service = %name, %public, upstreams = upstreams.len(), "sidecar started");
        Ok(Self {
            service,
            public,
            upstreams,
            tasks,
            live,
        })
    }

    /// The public mTLS address.
    pub fn public_addr(&self) -> SocketAddr {
        self.public
    }

    /// Each upstream's SNI and local listener address.
    pub fn upstreams(&self) -> &[(String, SocketAddr)] {
        &self.upstreams
    }

    /// The service identity the sidecar holds.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// How many connections the sidecar relays now.
    pub fn live_connections(&self) -> usize {
        self.live.count()
    }

    /// How many connections were closed on accept because the sidecar was at its cap.
    pub fn refused_connections(&self) -> u64 {
        self.live.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops accepting, lets live connections finish for at most `drain`, then cuts what is
    /// left. Returns how many were cut. The registration stays (it belongs to the service
    /// definition the sidecar was started from).
    pub async fn shutdown(mut self, drain: Duration) -> usize {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let live = self.live.clone();
        let _ = tokio::time::timeout(drain, async {
            loop {
                let idle = live.idle.notified();
                if live.count() == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await;
        let left = live.count();
        live.cut.fire();
        left
    }
}

/// Binds `addr`; an error names what was being bound, and where.
async fn bind_listener(addr: SocketAddr, what: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|e| {
        ErrorKind::Io(std::io::Error::new(
            e.kind(),
            format!("binding {what} on {addr}: {e}"),
        ))
        .into()
    })
}

async fn serve_public(
    listener: TcpListener,
    service: Arc<Service>,
    local_app: SocketAddr,
    live: Live,
    limits: RelayLimits,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "public listener accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(guard) = live.try_enter("public") else {
            drop(tcp);
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let (tls, client) = match service.accept(tcp).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::info!(%peer, error = %e, "inbound connection refused");
                    return;
                }
            };
            let app =
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(local_app)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::warn!(%local_app, error = %e, "local application unreachable");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%local_app, "local application connect timed out");
                        return;
                    }
                };
            tracing::debug!(%client, "inbound connection accepted");
            relay(tls, app, limits, &guard.0.cut).await;
        });
    }
}

async fn serve_upstream(
    listener: TcpListener,
    dialer: Arc<Dialer>,
    live: Live,
    limits: RelayLimits,
) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "upstream listener accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(guard) = live.try_enter("upstream") else {
            drop(tcp);
            continue;
        };
        let dialer = dialer.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match dialer.dial().await {
                Ok(tls) => relay(tcp, tls, limits, &guard.0.cut).await,
                Err(e) => {
                    tracing::info!(upstream = dialer.sni(), error = %e, "upstream dial failed")
                }
            }
        });
    }
}

/// Copies both ways until both directions end (half-close is passed on) or `cut` fires.
async fn relay<A, B>(mut a: A, mut b: B, limits: RelayLimits, cut: &stop::Cut)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        r = mesh_sni::relay(&mut a, &mut b, limits, RelayCounters::default()) => {
            // The far side refused inside TLS (an intention, most often): say so.
            if let Err(e) = r {
                match mesh_ca::tls::classify_io(&e) {
                    Some(refusal) => tracing::info!(%refusal, "connection refused by the other side"),
                    None => tracing::debug!(error = %e, "relay ended with an error"),
                }
            }
        }
        () = cut.fired() => {}
    }
}
