//! The framed transport: requests and answers as length-prefixed frames over any byte stream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use mesh_core::Index;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{ApplyRequest, CompleteListing, EnrollRequest, ListRequest, Transport, TransportError};
use crate::frame::{self, FrameError, Request, Response};

/// Opens byte streams to the primary: plain TCP ([`TcpConnector`]), mTLS on top of another
/// connector ([`super::tls::TlsConnector`]), or anything else (a tunnel, a test pipe).
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The stream type.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Opens a new stream.
    async fn connect(&self) -> Result<Self::Stream, TransportError>;
}

/// Dials the primary's servers, or the mesh gateways in front of them, over TCP: one address,
/// or several tried in turn from the last one that answered.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    addrs: Arc<[SocketAddr]>,
    /// The index of the address that answered last.
    last_good: Arc<AtomicUsize>,
    timeout: Duration,
}

impl TcpConnector {
    /// Dials `addr`, giving up after 5 seconds.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addrs: Arc::from([addr]),
            last_good: Arc::new(AtomicUsize::new(0)),
            timeout: Duration::from_secs(5),
        }
    }

    /// Dials the first of `addrs` that answers, starting with the one that answered last,
    /// each attempt giving up after 5 seconds. `None` when `addrs` is empty.
    pub fn any_of(addrs: Vec<SocketAddr>) -> Option<Self> {
        (!addrs.is_empty()).then(|| Self {
            addrs: addrs.into(),
            last_good: Arc::new(AtomicUsize::new(0)),
            timeout: Duration::from_secs(5),
        })
    }

    /// Changes the connect time-out (per address).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The address dialled first.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[self.last_good.load(Ordering::Relaxed) % self.addrs.len()]
    }
}

#[async_trait]
impl Connector for TcpConnector {
    type Stream = TcpStream;

    async fn connect(&self) -> Result<TcpStream, TransportError> {
        let start = self.last_good.load(Ordering::Relaxed);
        let mut last_error = TransportError::TimedOut(self.timeout);
        for i in 0..self.addrs.len() {
            let at = (start + i) % self.addrs.len();
            match tokio::time::timeout(self.timeout, TcpStream::connect(self.addrs[at])).await {
                Ok(Ok(s)) => {
                    // Small frames (forwarded writes, short listings) must not wait for Nagle.
                    let _ = s.set_nodelay(true);
                    self.last_good.store(at, Ordering::Relaxed);
                    return Ok(s);
                }
                Ok(Err(e)) => last_error = TransportError::Unreachable(e),
                Err(_) => last_error = TransportError::TimedOut(self.timeout),
            }
        }
        Err(last_error)
    }
}

/// Settings of a [`FramedTransport`].
#[derive(Debug, Clone)]
pub struct FramedConfig {
    /// Largest frame sent or accepted.
    pub max_frame: usize,
    /// Time allowed for each frame of an answer, on top of a blocking query's `wait` for the
    /// first one, and for writing a request.
    pub request_timeout: Duration,
    /// Most records accepted in one listing.
    pub max_records: usize,
    /// Idle connections kept for reuse.
    pub max_idle: usize,
    /// An idle connection older than this is closed rather than reused (keep it below the
    /// server's idle time-out).
    pub idle_keep: Duration,
}

impl Default for FramedConfig {
    fn default() -> Self {
        Self {
            max_frame: frame::DEFAULT_MAX_FRAME,
            request_timeout: Duration::from_secs(10),
            max_records: 10_000_000,
            max_idle: 4,
            idle_keep: Duration::from_secs(60),
        }
    }
}

/// A [`Transport`] that sends frames over streams from a [`Connector`], keeping a few idle
/// connections for reuse. Each connection carries one request at a time.
pub struct FramedTransport<C: Connector> {
    connector: C,
    cfg: FramedConfig,
    idle: Mutex<Vec<(Instant, C::Stream)>>,
}

impl<C: Connector> std::fmt::Debug for FramedTransport<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramedTransport")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

struct Conn<S> {
    stream: S,
    reused: bool,
}

impl<C: Connector> FramedTransport<C> {
    /// A transport over `connector` with default settings.
    pub fn new(connector: C) -> Self {
        Self::with_config(connector, FramedConfig::default())
    }

    /// A transport over `connector` with `cfg`.
    pub fn with_config(connector: C, cfg: FramedConfig) -> Self {
        Self {
            connector,
            cfg,
            idle: Mutex::new(Vec::new()),
        }
    }

    async fn checkout(&self) -> Result<Conn<C::Stream>, TransportError> {
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            idle.retain(|(t, _)| now.duration_since(*t) < self.cfg.idle_keep);
            idle.pop()
        };
        if let Some((_, stream)) = reused {
            return Ok(Conn {
                stream,
                reused: true,
            });
        }
        Ok(Conn {
            stream: self.connector.connect().await?,
            reused: false,
        })
    }

    fn checkin(&self, stream: C::Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.cfg.max_idle {
            idle.push((Instant::now(), stream));
        }
    }

    async fn send(&self, conn: &mut Conn<C::Stream>, req: &Request) -> Result<(), TransportError> {
        let mut out = Vec::new();
        frame::write_frame(&mut out, self.cfg.max_frame, |o| req.encode(o))?;
        let t = self.cfg.request_timeout;
        let fut = async {
            conn.stream.write_all(&out).await?;
            conn.stream.flush().await
        };
        match tokio::time::timeout(t, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(TransportError::Disconnected(e)),
            Err(_) => Err(TransportError::TimedOut(t)),
        }
    }

    async fn list_once(
        &self,
        conn: &mut Conn<C::Stream>,
        req: &ListRequest,
    ) -> Result<CompleteListing, TransportError> {
        self.send(conn, &Request::List(req.clone())).await?;
        let mut buf = Vec::new();
        let mut records = Vec::new();
        let mut index: Option<Index> = None;
        loop {
            let t = if index.is_none() {
                req.wait.saturating_add(self.cfg.request_timeout)
            } else {
                self.cfg.request_timeout
            };
            if let Err(e) =
                frame::read_frame(&mut conn.stream, &mut buf, self.cfg.max_frame, t).await
            {
                return Err(match (e, index.is_some()) {
                    (FrameError::Closed, true) | (FrameError::Io(_), true) => {
                        TransportError::Incomplete {
                            received: records.len(),
                        }
                    }
                    (FrameError::Closed, false) => {
                        TransportError::Disconnected(std::io::ErrorKind::UnexpectedEof.into())
                    }
                    (FrameError::Io(e), false) => TransportError::Disconnected(e),
                    (FrameError::TimedOut(d) | FrameError::TooSlow(d), _) => {
                        TransportError::TimedOut(d)
                    }
                    (e, _) => TransportError::Malformed(e),
                });
            }
            match Response::decode(&buf)? {
                Response::Chunk {
                    index: i,
                    last,
                    records: mut part,
                } => {
                    if index.is_some_and(|prev| prev != i) {
                        return Err(TransportError::Unexpected(
                            "listing chunks disagree on the index",
                        ));
                    }
                    index = Some(i);
                    if records.len().saturating_add(part.len()) > self.cfg.max_records {
                        return Err(TransportError::Unexpected("listing exceeds max_records"));
                    }
                    records.append(&mut part);
                    if last {
                        return Ok(CompleteListing { index: i, records });
                    }
                }
                Response::Error(e) if index.is_none() => return Err(TransportError::Remote(e)),
                Response::Error(_) => {
                    return Err(TransportError::Incomplete {
                        received: records.len(),
                    });
                }
                Response::Applied { .. } | Response::Enrolled { .. } => {
                    return Err(TransportError::Unexpected("write receipt to a list query"));
                }
            }
        }
    }

    /// Sends a request answered by one frame, and decodes that frame.
    async fn one_answer(
        &self,
        conn: &mut Conn<C::Stream>,
        req: &Request,
    ) -> Result<Response, TransportError> {
        self.send(conn, req).await?;
        let mut buf = Vec::new();
        let t = self.cfg.request_timeout;
        frame::read_frame(&mut conn.stream, &mut buf, self.cfg.max_frame, t)
            .await
            .map_err(|e| match e {
                FrameError::Closed => {
                    TransportError::Disconnected(std::io::ErrorKind::UnexpectedEof.into())
                }
                FrameError::Io(e) => TransportError::Disconnected(e),
                FrameError::TimedOut(d) | FrameError::TooSlow(d) => TransportError::TimedOut(d),
                e => TransportError::Malformed(e),
            })?;
        Ok(Response::decode(&buf)?)
    }

    async fn apply_once(
        &self,
        conn: &mut Conn<C::Stream>,
        req: ApplyRequest,
    ) -> Result<Index, TransportError> {
        match self.one_answer(conn, &Request::Apply(req)).await? {
            Response::Applied { index } => Ok(index),
            Response::Error(e) => Err(TransportError::Remote(e)),
            Response::Chunk { .. } | Response::Enrolled { .. } => {
                Err(TransportError::Unexpected("not a write receipt"))
            }
        }
    }

    async fn enroll_once(
        &self,
        conn: &mut Conn<C::Stream>,
        req: EnrollRequest,
    ) -> Result<String, TransportError> {
        match self.one_answer(conn, &Request::Enroll(req)).await? {
            Response::Enrolled { chain_pem } => Ok(chain_pem),
            Response::Error(e) => Err(TransportError::Remote(e)),
            Response::Chunk { .. } | Response::Applied { .. } => {
                Err(TransportError::Unexpected("not a certificate"))
            }
        }
    }
}

fn keeps_connection(r: &Result<impl Sized, TransportError>) -> bool {
    matches!(r, Ok(_) | Err(TransportError::Remote(_)))
}

#[async_trait]
impl<C: Connector> Transport for FramedTransport<C> {
    async fn list(&self, req: ListRequest) -> Result<CompleteListing, TransportError> {
        let mut conn = self.checkout().await?;
        let mut res = self.list_once(&mut conn, &req).await;
        // A reused connection may have been closed by the server while idle; a list query is
        // safe to repeat on a fresh one.
        if conn.reused && matches!(res, Err(TransportError::Disconnected(_))) {
            conn = Conn {
                stream: self.connector.connect().await?,
                reused: false,
            };
            res = self.list_once(&mut conn, &req).await;
        }
        if keeps_connection(&res) {
            self.checkin(conn.stream);
        }
        res
    }

    async fn apply(&self, req: ApplyRequest) -> Result<Index, TransportError> {
        let mut conn = self.checkout().await?;
        let res = self.apply_once(&mut conn, req).await;
        if keeps_connection(&res) {
            self.checkin(conn.stream);
        }
        res
    }

    async fn enroll(&self, req: EnrollRequest) -> Result<String, TransportError> {
        // Always a connection of its own: the client certificate a pooled connection presented
        // (or did not) is the one of its handshake, and enrollment is rare.
        let mut conn = Conn {
            stream: self.connector.connect().await?,
            reused: false,
        };
        self.enroll_once(&mut conn, req).await
    }
}
