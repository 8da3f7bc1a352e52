//! A sidecar proxy run inside the application's process: the public mTLS listener of a
//! service and one local listener per upstream, as its registration describes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::catalog::UpstreamListener;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::connect::{CONNECT_TIMEOUT, Dialer, Service};
use crate::dataplane::AsControlPlane;
use crate::{Error, Secret};

/// Where a sidecar listens; `None` takes the addresses of the registration.
#[derive(Debug, Clone, Default)]
pub struct SidecarOptions {
    /// Bind the public listener here instead of the registered address (port 0 picks one;
    /// the catalog is updated with the bound address).
    pub public_bind: Option<SocketAddr>,
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

/// The connections a sidecar relays: counted, and cut together.
#[derive(Debug, Clone, Default)]
struct Live {
    count: Arc<std::sync::atomic::AtomicUsize>,
    idle: Arc<tokio::sync::Notify>,
    cut: stop::Cut,
}

/// One relayed connection: counted while it lives.
struct LiveGuard(Live);

impl Live {
    fn enter(&self) -> LiveGuard {
        self.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        LiveGuard(self.clone())
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
            Err(Error::NotFound(_)) => {
                return Err(Error::NotFound(format!("sidecar {sidecar_id:?}")));
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
        let live = Live::default();
        let mut tasks = vec![tokio::spawn(serve_public(
            public_listener,
            service.clone(),
            local_app,
            live.clone(),
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
            tasks.push(tokio::spawn(serve_upstream(listener, dialer, live.clone())));
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
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("binding {what} on {addr}: {e}"),
        ))
    })
}

async fn serve_public(
    listener: TcpListener,
    service: Arc<Service>,
    local_app: SocketAddr,
    live: Live,
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
        let service = service.clone();
        let guard = live.enter();
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
            relay(tls, app, &guard.0.cut).await;
        });
    }
}

async fn serve_upstream(listener: TcpListener, dialer: Arc<Dialer>, live: Live) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "upstream listener accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let dialer = dialer.clone();
        let guard = live.enter();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match dialer.dial().await {
                Ok(tls) => relay(tcp, tls, &guard.0.cut).await,
                Err(e) => {
                    tracing::info!(upstream = dialer.sni(), error = %e, "upstream dial failed")
                }
            }
        });
    }
}

/// Copies both ways until both directions end (half-close is passed on) or `cut` fires.
async fn relay<A, B>(mut a: A, mut b: B, cut: &stop::Cut)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, 64 * 1024, 64 * 1024) => {
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
