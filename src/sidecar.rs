//! A sidecar proxy run inside the application's process: the public mTLS listener of a
//! service and one local listener per upstream, as its registration describes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::catalog::UpstreamListener;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::catalog::CatalogEntry;
use crate::connect::{CONNECT_TIMEOUT, Dialer, Service};
use crate::{Datacenter, Error, Secret};

/// Where a sidecar listens; `None` takes the addresses of the registration.
#[derive(Debug, Clone, Default)]
pub struct SidecarOptions {
    /// Bind the public listener here instead of the registered address (port 0 picks one;
    /// the catalog is updated with the bound address).
    pub public_bind: Option<SocketAddr>,
}

/// A running sidecar.
#[derive(Debug)]
pub struct Sidecar {
    service: Arc<Service>,
    public: SocketAddr,
    upstreams: Vec<(String, SocketAddr)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Sidecar {
    /// Starts the sidecar of the registered service instance `service_id` (registered with
    /// [`Catalog::register_json`](crate::Catalog::register_json) and a `connect.sidecar_service` stanza). `token` needs
    /// `service:write` on the service (for its leaf certificate).
    pub async fn start(
        dc: &Datacenter,
        token: &Secret,
        service_id: &str,
        opts: SidecarOptions,
    ) -> Result<Self, Error> {
        let catalog = dc.catalog().entries().await?;
        let sidecar_id = format!("{service_id}-sidecar-proxy");
        let find = |id: &str| -> Option<&CatalogEntry> {
            catalog.iter().find(|e| {
                e.service.id.as_ref().map(|i| i.as_str()) == Some(id)
                    || (e.service.id.is_none() && e.name().map(|n| n.as_str()) == Some(id))
            })
        };
        let entry = find(&sidecar_id)
            .ok_or_else(|| Error::NotFound(format!("sidecar {sidecar_id:?}")))?
            .clone();
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

        let service = Arc::new(Service::new(dc, token, name.clone()).await?);
        let bind = opts
            .public_bind
            .or(entry.lan)
            .ok_or_else(|| Error::invalid_msg("sidecar has no address"))?;
        let public_listener = TcpListener::bind(bind).await?;
        let public = public_listener.local_addr()?;
        if Some(public) != entry.lan {
            dc.catalog()
                .set_instance_address(token, &sidecar_id, public)
                .await?;
        }
        let mut tasks = vec![tokio::spawn(serve_public(
            public_listener,
            service.clone(),
            local_app,
        ))];

        let mut upstreams = Vec::new();
        for up in &proxy.upstreams {
            let UpstreamListener::Tcp(addr) = up.listener() else {
                return Err(Error::invalid_msg(
                    "unix-socket upstream listeners are not supported",
                ));
            };
            let listener = TcpListener::bind(addr).await?;
            let bound = listener.local_addr()?;
            let dialer = Arc::new(service.dialer(up)?);
            upstreams.push((dialer.sni().to_owned(), bound));
            tasks.push(tokio::spawn(serve_upstream(listener, dialer)));
        }
        tracing::info!(service = %name, %public, upstreams = upstreams.len(), "sidecar started");
        Ok(Self {
            service,
            public,
            upstreams,
            tasks,
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
}

async fn serve_public(listener: TcpListener, service: Arc<Service>, local_app: SocketAddr) {
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
            relay(tls, app).await;
        });
    }
}

async fn serve_upstream(listener: TcpListener, dialer: Arc<Dialer>) {
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
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match dialer.dial().await {
                Ok(tls) => relay(tcp, tls).await,
                Err(e) => {
                    tracing::info!(upstream = dialer.sni(), error = %e, "upstream dial failed")
                }
            }
        });
    }
}

/// Copies both ways until both directions end; half-close is passed on.
async fn relay<A, B>(mut a: A, mut b: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(e) =
        tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, 64 * 1024, 64 * 1024).await
    {
        tracing::debug!(error = %e, "relay ended with an error");
    }
}
