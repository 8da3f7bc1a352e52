//! The listener loop: HTTP/1.1 over TCP or TLS, with the header time-out (hyper's
//! `header_read_timeout`), a cap on open connections and a graceful stop.

use std::future::Future;
use std::sync::Arc;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{ApiState, router};

/// Serves plain HTTP (`tls` None) or HTTPS on `listener` until `shutdown` resolves.
///
/// Each connection must send a request's headers within `header_timeout` (the connection is
/// closed otherwise) and its body within `body_timeout` (408); at most `max_connections`
/// are served at once, later ones wait in the listen queue. TLS handshakes must finish
/// within `header_timeout`. On shutdown the listener stops accepting, open connections
/// finish the request in progress within `shutdown_grace`, and whatever is left is cut.
/// Returns an error only when accepting fails for good.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cfg = state.config().clone();
    let app = router(state);
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    let mut failures = 0u32;
    loop {
        while conns.try_join_next().is_some() {}
        let slot = tokio::select! {
            () = &mut shutdown => break,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => {
                    failures = 0;
                    x
                }
                Err(e) if is_transient(&e) => {
                    // Out of descriptors or a connection reset before accept: back off a
                    // little and keep serving.
                    tracing::warn!(error = %e, "HTTP API accept failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    if failures > 100 {
                        return Err(e);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        let stop = stop_rx.clone();
        let header_timeout = cfg.header_timeout;
        conns.spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            match acceptor {
                None => connection(stream, app, header_timeout, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => connection(tls, app, header_timeout, stop).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "HTTPS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(cfg.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(open = conns.len(), "HTTP API connections cut at shutdown");
        conns.shutdown().await;
    }
    Ok(())
}

pub(super) fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::Interrupted | K::WouldBlock
    ) || e.raw_os_error().is_some_and(|c| c == 23 || c == 24)
}

/// Serves one connection until it closes or the server stops.
pub(super) async fn connection<IO>(
    io: IO,
    app: axum::Router,
    header_timeout: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let stopped = async move {
        // The guard `wait_for` returns is dropped here, not held across the select.
        let _ = stop.wait_for(|s| *s).await.map(|_| ());
    };
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "HTTP API connection ended with an error");
            }
        }
        () = stopped => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The HTTP API as the server port's second protocol (ALPN `http/1.1`), for requests other
/// datacenters' servers forward (`?dc=`). The replication listener hands it only connections
/// that presented a server certificate of the mesh; tokens are checked as on the HTTP port.
pub fn server_port_http(
    state: ApiState,
    stop: watch::Receiver<bool>,
) -> Arc<dyn mesh::replication_engine::SideProtocol> {
    let header_timeout = state.config().header_timeout;
    Arc::new(ServerPortHttp {
        app: router(state),
        header_timeout,
        stop,
    })
}

struct ServerPortHttp {
    app: axum::Router,
    header_timeout: std::time::Duration,
    stop: watch::Receiver<bool>,
}

impl mesh::replication_engine::SideProtocol for ServerPortHttp {
    fn serve(
        &self,
        stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        _peer: std::net::SocketAddr,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(connection(
            stream,
            self.app.clone(),
            self.header_timeout,
            self.stop.clone(),
        ))
    }
}
