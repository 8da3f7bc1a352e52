//! The primary's side: answers blocking list queries and forwarded writes, in process or over
//! framed streams (plain TCP or mTLS).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::Index;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

use crate::auth::{Authorizer, DeniedKind, Op};
use crate::frame::{self, FrameError, Request, Response};
use crate::message::EnrollRequest;
use crate::store::{Store, StoreError};
use crate::table::{Scope, TableName, TableRegistry};
use crate::transport::{ApplyRequest, CompleteListing, ListRequest, RemoteError, RemoteErrorKind};

/// The longest a blocking query may be held by default (Consul's limit is 10 minutes).
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);

/// Signs the certificate a server of another datacenter asks for with an [`EnrollRequest`].
/// The server has already checked the token ([`Op::Enroll`]); the enroller checks the CSR
/// (which identity it may name) and answers with the PEM chain, leaf first.
#[async_trait::async_trait]
pub trait Enroller: Send + Sync + 'static {
    /// Signs `csr_pem` or says why not.
    async fn enroll(&self, csr_pem: &str) -> Result<String, RemoteError>;
}

/// A second protocol on the server port, chosen by ALPN in the TLS handshake (see
/// [`ReplicationServer::spawn_tls_with`]). Only connections that presented a client
/// certificate the TLS configuration accepted reach it.
pub trait SideProtocol: Send + Sync + 'static {
    /// Serves one connection until it ends.
    fn serve(
        &self,
        stream: tokio_rustls::server::TlsStream<TcpStream>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// A second protocol of a listener: its ALPN name and its server.
type Side = (Vec<u8>, Arc<dyn SideProtocol>);

/// What one connection may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Everything (plain TCP by the operator's choice, in process, or a client certificate).
    Full,
    /// A TLS connection without a client certificate: enrollment only.
    EnrollOnly,
}

/// The primary's request handler. Shared (`Arc`) by every connection and in-process transport.
pub struct ReplicationServer {
    registry: TableRegistry,
    store: Arc<dyn Store>,
    authorizer: Arc<dyn Authorizer>,
    max_wait: Duration,
    enroller: Option<Arc<dyn Enroller>>,
}

impl std::fmt::Debug for ReplicationServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationServer")
            .field("registry", &self.registry)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

/// Settings of the framed server side. Start from [`ServeConfig::default`] and change fields.
///
/// Before its token is checked, a connection holds for its request at most one
/// [`frame::READ_CHUNK`] more than the bytes it has sent of it (so at most `max_frame` plus
/// that), for at most `frame_timeout`; between requests, at most a chunk for the read and one
/// for the answer. A listener serves at most `max_connections` connections.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// Largest frame read or written; a request announcing more is refused on its header.
    pub max_frame: usize,
    /// A connection with no request for this long is closed (the wait for the first byte of
    /// each request).
    pub idle_timeout: Duration,
    /// Once the first byte of a request has arrived, the rest of it (header and payload) must
    /// arrive within this, or the connection is cut ([`FrameError::TooSlow`]).
    pub frame_timeout: Duration,
    /// Time allowed to write one answer.
    pub write_timeout: Duration,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Target size of one listing chunk, in bytes.
    pub chunk_bytes: usize,
    /// Most connections one listener ([`ReplicationServer::spawn_tcp`]) serves at once, TLS
    /// handshakes included; a connection over the limit is closed at once, unread.
    pub max_connections: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_frame: frame::DEFAULT_MAX_FRAME,
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            chunk_bytes: 1 << 20,
            max_connections: 512,
        }
    }
}

/// A running listener; dropping it does not stop it, [`ServerHandle::shutdown`] does.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes every open connection (in-flight queries are cut).
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        // The accept task ends at once; a join error would only mean it panicked.
        let _ = self.task.await;
    }
}

fn remote(kind: RemoteErrorKind, message: impl Into<String>) -> RemoteError {
    RemoteError {
        kind,
        message: message.into(),
    }
}

impl ReplicationServer {
    /// A server over the primary's store; `authorizer` checks every request's token.
    pub fn new(
        registry: TableRegistry,
        store: Arc<dyn Store>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Self {
        Self {
            registry,
            store,
            authorizer,
            max_wait: DEFAULT_MAX_WAIT,
            enroller: None,
        }
    }

    /// Answers [`EnrollRequest`]s with `enroller` (without one they are refused as
    /// [`RemoteErrorKind::Unsupported`]).
    pub fn with_enroller(mut self, enroller: Arc<dyn Enroller>) -> Self {
        self.enroller = Some(enroller);
        self
    }

    /// Caps how long a blocking query is held.
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    fn check_global(&self, table: &TableName) -> Result<(), RemoteError> {
        match self.registry.scope(table) {
            Some(Scope::Global) => Ok(()),
            Some(Scope::Local) => Err(remote(
                RemoteErrorKind::NotGlobal,
                format!("table {table} is local to its datacenter"),
            )),
            None => Err(remote(
                RemoteErrorKind::UnknownTable,
                format!("table {table} is not registered"),
            )),
        }
    }

    /// Answers a blocking list query: checks the table is global and the token may replicate
    /// it, waits until the table index passes `min_index` (at most `wait`, capped), then lists.
    pub async fn list(&self, req: ListRequest) -> Result<CompleteListing, RemoteError> {
        self.check_global(&req.table)?;
        self.authorizer
            .authorize(&req.token, Op::Replicate { table: &req.table })
            .map_err(denied)?;
        if req.min_index > Index::ZERO {
            self.store
                .wait_table(&req.table, req.min_index, req.wait.min(self.max_wait))
                .await
                .map_err(store_error)?;
        }
        let listing = self.store.list(&req.table).await.map_err(store_error)?;
        Ok(CompleteListing {
            index: listing.index,
            records: listing.records,
        })
    }

    /// Applies a forwarded write. Every operation of the transaction is checked on its own
    /// (its table is global, and the token may make exactly this change with exactly this
    /// value); one refusal refuses the whole transaction and nothing is written.
    pub async fn apply(&self, req: ApplyRequest) -> Result<Index, RemoteError> {
        for op in &req.ops {
            self.check_global(op.table())?;
            self.authorizer
                .authorize(&req.token, Op::Write(op))
                .map_err(denied)?;
        }
        self.store.txn(req.ops).await.map_err(store_error)
    }

    /// Answers an enrollment: the token must allow [`Op::Enroll`], then the enroller signs.
    pub async fn enroll(&self, req: EnrollRequest) -> Result<String, RemoteError> {
        self.authorizer
            .authorize(&req.token, Op::Enroll)
            .map_err(denied)?;
        let Some(enroller) = &self.enroller else {
            return Err(remote(
                RemoteErrorKind::Unsupported,
                "this server enrolls no servers (it has no CA)",
            ));
        };
        enroller.enroll(&req.csr_pem).await
    }

    /// Serves framed requests on one stream until the peer closes it, it idles out, or an
    /// error occurs. Requests are answered one after the other. The stream is trusted as it
    /// is: every request is served (tokens are still checked).
    ///
    /// Each request must start within `cfg.idle_timeout` and, once started, arrive whole within
    /// `cfg.frame_timeout` ([`FrameError::TooSlow`] otherwise); its buffer grows with the bytes
    /// received, not with the length it announces.
    pub async fn serve_stream<S>(&self, stream: S, cfg: &ServeConfig) -> Result<(), FrameError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        self.serve_as(stream, cfg, Access::Full).await
    }

    async fn serve_as<S>(
        &self,
        mut stream: S,
        cfg: &ServeConfig,
        access: Access,
    ) -> Result<(), FrameError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        // A new connection is opened to send a request at once: its first request must start
        // within the frame deadline, so a silent connection holds a slot for seconds, not for
        // the idle time-out that a pooled connection between requests gets.
        let mut timeouts = frame::FrameTimeouts {
            idle: cfg.frame_timeout.min(cfg.idle_timeout),
            frame: cfg.frame_timeout,
        };
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            // Hold no large answer buffer while the peer idles.
            if out.capacity() > frame::READ_CHUNK {
                out = Vec::new();
            }
            match frame::read_frame_timed(&mut stream, &mut buf, cfg.max_frame, timeouts).await {
                Ok(()) => {}
                Err(FrameError::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
            timeouts.idle = cfg.idle_timeout;
            let decoded = Request::decode(&buf);
            // The request is decoded: hold no large payload while it is handled.
            if buf.capacity() > frame::READ_CHUNK {
                buf = Vec::new();
            }
            let req = match decoded {
                Ok(r) => r,
                Err(e) => {
                    out.clear();
                    let answer = Response::Error(remote(
                        RemoteErrorKind::InvalidRequest,
                        format!("malformed request: {e}"),
                    ));
                    frame::write_frame(&mut out, cfg.max_frame, |o| answer.encode(o))?;
                    write_all(&mut stream, &out, cfg.write_timeout).await?;
                    return Err(e.into());
                }
            };
            if access == Access::EnrollOnly && !matches!(req, Request::Enroll(_)) {
                out.clear();
                let answer = Response::Error(remote(
                    RemoteErrorKind::CertificateRequired,
                    "this server port serves replication and forwarded writes only to servers \
                     of the mesh presenting their certificate (mTLS); without one it answers \
                     enrollment alone",
                ));
                frame::write_frame(&mut out, cfg.max_frame, |o| answer.encode(o))?;
                write_all(&mut stream, &out, cfg.write_timeout).await?;
                return Err(FrameError::Refused("request without a client certificate"));
            }
            match req {
                Request::Enroll(e) => {
                    let answer = match self.enroll(e).await {
                        Ok(chain_pem) => Response::Enrolled { chain_pem },
                        Err(e) => Response::Error(e),
                    };
                    out.clear();
                    frame::write_frame(&mut out, cfg.max_frame, |o| answer.encode(o))?;
                    write_all(&mut stream, &out, cfg.write_timeout).await?;
                }
                Request::List(l) => match self.list(l).await {
                    Ok(listing) => {
                        self.send_listing(&mut stream, &mut out, listing, cfg)
                            .await?
                    }
                    Err(e) => {
                        out.clear();
                        frame::write_frame(&mut out, cfg.max_frame, |o| {
                            Response::Error(e).encode(o);
                        })?;
                        write_all(&mut stream, &out, cfg.write_timeout).await?;
                    }
                },
                Request::Apply(a) => {
                    let answer = match self.apply(a).await {
                        Ok(index) => Response::Applied { index },
                        Err(e) => Response::Error(e),
                    };
                    out.clear();
                    frame::write_frame(&mut out, cfg.max_frame, |o| answer.encode(o))?;
                    write_all(&mut stream, &out, cfg.write_timeout).await?;
                }
            }
        }
    }

    async fn send_listing<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        out: &mut Vec<u8>,
        listing: CompleteListing,
        cfg: &ServeConfig,
    ) -> Result<(), FrameError> {
        let target = cfg.chunk_bytes.min(cfg.max_frame / 2).max(1);
        let records = &listing.records;
        let mut start = 0;
        loop {
            let mut end = start;
            let mut size = 0;
            while end < records.len() && (end == start || size < target) {
                size += frame::record_wire_size(&records[end]);
                end += 1;
            }
            let last = end >= records.len();
            out.clear();
            frame::write_frame(out, cfg.max_frame, |o| {
                frame::encode_chunk(o, listing.index, last, &records[start..end]);
            })?;
            write_all(stream, out, cfg.write_timeout).await?;
            if last {
                return Ok(());
            }
            start = end;
        }
    }

    /// Accepts connections on `listener` and serves each one, over mTLS when `tls` is given
    /// (the config should require client certificates), in plain TCP otherwise.
    ///
    /// At most `cfg.max_connections` are served at once; one more is closed as soon as it is
    /// accepted, without reading from it, and logged (at most once a second, with the number
    /// closed since the last log) while the others are served on.
    ///
    /// Over TLS, a connection whose client presented no certificate is answered only
    /// [`EnrollRequest`]s; any other request is refused ([`RemoteErrorKind::CertificateRequired`])
    /// and the connection closed. The TLS configuration decides whether such clients get through
    /// the handshake at all.
    pub fn spawn_tcp(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        cfg: ServeConfig,
    ) -> std::io::Result<ServerHandle> {
        self.spawn(listener, tls, cfg, None)
    }

    /// [`ReplicationServer::spawn_tcp`] over TLS, with a second protocol on the same port: a
    /// connection that negotiates `alpn` in its handshake and presented a client certificate is
    /// handed to `side`; one that negotiates it without a certificate is closed. `tls` must list
    /// `alpn` in its ALPN protocols; clients that offer no ALPN get the replication protocol.
    pub fn spawn_tls_with(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        cfg: ServeConfig,
        alpn: Vec<u8>,
        side: Arc<dyn SideProtocol>,
    ) -> std::io::Result<ServerHandle> {
        self.spawn(listener, Some(tls), cfg, Some(Arc::new((alpn, side))))
    }

    fn spawn(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        cfg: ServeConfig,
        side: Option<Arc<Side>>,
    ) -> std::io::Result<ServerHandle> {
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let slots = Arc::new(tokio::sync::Semaphore::new(
            cfg.max_connections.min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let cfg = Arc::new(cfg);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            let mut last_refusal_log: Option<tokio::time::Instant> = None;
            let mut refused_unlogged = 0u64;
            loop {
                let accepted = tokio::select! {
                    _ = stopped.changed() => break,
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                    a = listener.accept() => a,
                };
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "replication listener accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // A slot is held until the connection's task ends (or is aborted at shutdown).
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    drop(tcp);
                    let now = tokio::time::Instant::now();
                    if last_refusal_log.is_some_and(|t| now - t < Duration::from_secs(1)) {
                        refused_unlogged += 1;
                    } else {
                        warn!(
                            %peer,
                            max_connections = cfg.max_connections,
                            also_closed = refused_unlogged,
                            "replication listener at its connection limit: connection closed unread"
                        );
                        last_refusal_log = Some(now);
                        refused_unlogged = 0;
                    }
                    continue;
                };
                // Small answers (forwarded writes) must not wait for Nagle.
                let _ = tcp.set_nodelay(true);
                let server = self.clone();
                let cfg = cfg.clone();
                let acceptor = acceptor.clone();
                let side = side.clone();
                conns.spawn(async move {
                    let _slot = slot;
                    let res = match acceptor {
                        None => server.serve_stream(tcp, &cfg).await,
                        Some(acc) => {
                            match tokio::time::timeout(cfg.handshake_timeout, acc.accept(tcp)).await
                            {
                                Ok(Ok(tls)) => {
                                    let (_, conn) = tls.get_ref();
                                    let certified =
                                        conn.peer_certificates().is_some_and(|c| !c.is_empty());
                                    let wants_side = side.as_ref().is_some_and(|s| {
                                        conn.alpn_protocol() == Some(s.0.as_slice())
                                    });
                                    match (wants_side, certified, side) {
                                        (true, true, Some(side)) => {
                                            side.1.serve(tls, peer).await;
                                            Ok(())
                                        }
                                        (true, _, _) => Err(FrameError::Refused(
                                            "side protocol without a client certificate",
                                        )),
                                        (false, true, _) => server.serve_stream(tls, &cfg).await,
                                        (false, false, _) => {
                                            server.serve_as(tls, &cfg, Access::EnrollOnly).await
                                        }
                                    }
                                }
                                Ok(Err(e)) => Err(FrameError::Io(e)),
                                Err(_) => Err(FrameError::TimedOut(cfg.handshake_timeout)),
                            }
                        }
                    };
                    if let Err(e) = res {
                        debug!(%peer, error = %e, "replication connection ended");
                    }
                });
            }
            conns.shutdown().await;
        });
        Ok(ServerHandle { addr, stop, task })
    }
}

async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), FrameError> {
    let fut = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(FrameError::Io),
        Err(_) => Err(FrameError::TimedOut(timeout)),
    }
}

fn denied(d: crate::auth::Denied) -> RemoteError {
    let kind = match d.kind {
        DeniedKind::Invalid => RemoteErrorKind::InvalidRequest,
        _ => RemoteErrorKind::Denied,
    };
    remote(kind, d.to_string())
}

fn store_error(e: StoreError) -> RemoteError {
    match e {
        StoreError::CasConflict { .. } => remote(RemoteErrorKind::CasConflict, e.to_string()),
        StoreError::InvalidId { .. } | StoreError::EmptyTransaction => {
            remote(RemoteErrorKind::InvalidRequest, e.to_string())
        }
        other => {
            warn!(error = %other, "primary store failed");
            remote(RemoteErrorKind::Internal, "the primary's store failed")
        }
    }
}
