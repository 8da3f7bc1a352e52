//! A small client of the Consul-compatible HTTP API, for the `mesh` commands.
//!
//! It speaks HTTP/1.1 on hyper, one connection per request, over TCP, TLS (rustls with the
//! ring provider, trusting the CA file it is given) or a Unix socket, and reads its settings
//! the way Consul's commands do: `CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`,
//! `CONSUL_HTTP_TOKEN_FILE`, `CONSUL_CACERT` and `CONSUL_HTTP_SSL`, with flags winning.
//!
//! Every request runs under one time-out (longer than the longest blocking query a server
//! answers), every response body is bounded, and a status outside 2xx is an error that
//! carries the server's text. The token goes in the `X-Consul-Token` header only; it never
//! appears in an error, a `Debug` or a URL.
//!
//! What it is not: a typed client of every endpoint (callers decode the JSON they need), a
//! connection pool, or a client with the operating system's trust store (there is none in
//! this build: HTTPS needs a CA file).
//!
//! ```
//! use mesh::client::{Client, ClientConfig, path_with_query};
//!
//! let client = Client::new(ClientConfig {
//!     addr: "http://127.0.0.1:8500".into(),
//!     token: Some("a-secret".into()),
//!     ..ClientConfig::default()
//! })
//! .expect("a valid address");
//! assert_eq!(client.address(), "127.0.0.1:8500");
//! assert!(!format!("{client:?}").contains("a-secret"));
//! assert_eq!(
//!     path_with_query("/v1/connect/intentions/check", &[("source", "web"), ("destination", "db")]),
//!     "/v1/connect/intentions/check?source=web&destination=db"
//! );
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::{CONTENT_LENGTH, HOST, HeaderMap, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The agent address used when neither a flag nor `CONSUL_HTTP_ADDR` gives one.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8500";
/// The longest a request may take by default: a server holds a blocking query at most
/// 600 s plus 1/16 of jitter; 30 s more covers the answer itself (the margin py-consul uses).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 + 600 + 600 / 16);
/// The longest the TCP connect (and the TLS handshake) may take, within the request time-out.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body accepted, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// The header the token travels in.
pub const TOKEN_HEADER: &str = "X-Consul-Token";

/// Environment variable: the agent address (`host:port`, `http://…`, `https://…`, `unix://…`).
pub const ENV_HTTP_ADDR: &str = "CONSUL_HTTP_ADDR";
/// Environment variable: the ACL token.
pub const ENV_HTTP_TOKEN: &str = "CONSUL_HTTP_TOKEN";
/// Environment variable: a file holding the ACL token (used when no token is given).
pub const ENV_HTTP_TOKEN_FILE: &str = "CONSUL_HTTP_TOKEN_FILE";
/// Environment variable: the CA certificate file (PEM) HTTPS servers are verified with.
pub const ENV_CACERT: &str = "CONSUL_CACERT";
/// Environment variable: `true` makes an address without a scheme use HTTPS.
pub const ENV_HTTP_SSL: &str = "CONSUL_HTTP_SSL";

/// Where and how to reach an agent.
#[derive(Clone)]
pub struct ClientConfig {
    /// `host:port` (HTTP), `http://host[:port]`, `https://host[:port]` or `unix:///path`, as
    /// `CONSUL_HTTP_ADDR` accepts them.
    pub addr: String,
    /// The ACL token sent with every request, if any.
    pub token: Option<String>,
    /// PEM file of the CA certificates an HTTPS server must chain to.
    pub ca_file: Option<PathBuf>,
    /// The longest one request may take, connect to last byte.
    pub timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADDR.to_owned(),
            token: None,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ClientConfig {
    /// The settings Consul's commands take from the process environment (see the module
    /// docs); unset or empty variables leave the defaults.
    pub fn from_env() -> Result<Self, ClientError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`ClientConfig::from_env`], reading variables through `get`. Refuses an unreadable
    /// token file.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ClientError> {
        let get = |name: &str| get(name).filter(|v| !v.is_empty());
        let mut config = Self::default();
        if let Some(addr) = get(ENV_HTTP_ADDR) {
            config.addr = addr;
        }
        let ssl = get(ENV_HTTP_SSL).is_some_and(|v| parse_bool(&v) == Some(true));
        if ssl && !config.addr.contains("://") {
            config.addr = format!("https://{}", config.addr);
        }
        config.token = match get(ENV_HTTP_TOKEN) {
            Some(token) => Some(token),
            None => match get(ENV_HTTP_TOKEN_FILE) {
                Some(file) => read_token_file(Path::new(&file))?,
                None => None,
            },
        };
        config.ca_file = get(ENV_CACERT).map(PathBuf::from);
        Ok(config)
    }
}

/// A client of one agent. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    endpoint: Endpoint,
    token: Option<HeaderValue>,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A request body.
#[derive(Clone)]
pub enum Body {
    /// Sent as compact JSON.
    Json(serde_json::Value),
    /// Sent as is.
    Bytes(Bytes),
}

impl fmt::Debug for Body {
    // Bodies carry secrets (a token's SecretID, a service's token): only their size shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Json(_) => f.write_str("Body::Json(..)"),
            Body::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
        }
    }
}

impl From<serde_json::Value> for Body {
    fn from(v: serde_json::Value) -> Self {
        Body::Json(v)
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Bytes(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Self {
        Body::Bytes(b.into())
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::Bytes(s.into())
    }
}

/// A successful (2xx) answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body (at most [`MAX_RESPONSE_BYTES`]).
    pub body: Bytes,
}

impl Response {
    /// The body decoded as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `X-Consul-Index` header, when present and numeric.
    pub fn index(&self) -> Option<u64> {
        self.headers
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

/// Why a request failed. The `Display` names the operation (`PUT /v1/acl/policy`) and the
/// cause; no variant holds the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The address is not one the client understands.
    #[error("invalid HTTP address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token cannot travel in an HTTP header (control characters, non-ASCII).
    #[error("the ACL token contains characters an HTTP header cannot carry")]
    InvalidToken,
    /// The token file could not be read.
    #[error("reading token file {}: {source}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An `https://` address was given without a CA file to verify the server with.
    #[error(
        "{addr} is HTTPS but no CA file was given (-ca-file or CONSUL_CACERT): this build has no system trust store"
    )]
    NoCaFile {
        /// The address.
        addr: String,
    },
    /// The CA file could not be read.
    #[error("reading CA file {}: {source}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The CA file is not PEM certificates.
    #[error("CA file {}: {source}", path.display())]
    CaPem {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate of the CA file was refused as a trust anchor, or the file holds none.
    #[error("CA file {}: {reason}", path.display())]
    CaCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the TLS settings.
    #[error("TLS settings: {0}")]
    TlsSetup(#[source] rustls::Error),
    /// The path does not start with `/`.
    #[error("{op}: the request path must start with '/'")]
    InvalidPath {
        /// The operation.
        op: String,
    },
    /// The path is not a valid request target.
    #[error("{op}: invalid request: {source}")]
    Request {
        /// The operation.
        op: String,
        /// The cause.
        #[source]
        source: hyper::http::Error,
    },
    /// The body could not be encoded.
    #[error("{op}: encoding the request body: {source}")]
    Encode {
        /// The operation.
        op: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The agent could not be reached.
    #[error("{op}: connecting to {addr}: {source}")]
    Connect {
        /// The operation.
        op: String,
        /// The agent's address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (an untrusted or misnamed server certificate, for one).
    #[error("{op}: TLS handshake with {addr}: {source}")]
    Tls {
        /// The operation.
        op: String,
        /// The agent's address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The request did not complete in time.
    #[error("{op}: no complete answer within {after:?}")]
    Timeout {
        /// The operation.
        op: String,
        /// The time-out.
        after: Duration,
    },
    /// The HTTP exchange failed (connection closed early, malformed answer).
    #[error("{op}: {source}")]
    Http {
        /// The operation.
        op: String,
        /// The cause.
        #[source]
        source: hyper::Error,
    },
    /// The response body could not be read.
    #[error("{op}: reading the response: {source}")]
    Read {
        /// The operation.
        op: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The response body exceeds the bound.
    #[error("{op}: response body larger than {limit} bytes")]
    TooLarge {
        /// The operation.
        op: String,
        /// The bound.
        limit: usize,
    },
    /// The server answered with a status outside 2xx; `body` is its text.
    #[error("{op}: Unexpected response code: {status} ({body})")]
    Status {
        /// The operation.
        op: String,
        /// The status code.
        status: u16,
        /// The response body (trimmed, cut at 4 KiB).
        body: String,
    },
    /// The answer is not the JSON expected.
    #[error("{op}: decoding the response: {source}")]
    Decode {
        /// The operation.
        op: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The HTTP status of a [`ClientError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl Client {
    /// A client for `config`. Refuses an invalid address or token, and for an HTTPS address a
    /// missing or unusable CA file. Does not connect.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let endpoint = Endpoint::parse(&config.addr)?;
        let token = match config.token.as_deref().map(str::trim) {
            Some(t) if !t.is_empty() => {
                let mut v = HeaderValue::from_str(t).map_err(|_| ClientError::InvalidToken)?;
                v.set_sensitive(true);
                Some(v)
            }
            _ => None,
        };
        let tls = match &endpoint {
            Endpoint::Tcp {
                tls: true, host, ..
            } => {
                let ca = config
                    .ca_file
                    .as_deref()
                    .ok_or_else(|| ClientError::NoCaFile {
                        addr: config.addr.clone(),
                    })?;
                let name = ServerName::try_from(host.clone()).map_err(|_| {
                    ClientError::InvalidAddress {
                        addr: config.addr.clone(),
                        reason: "the host is not a valid TLS server name",
                    }
                })?;
                Some((tls_connector(ca)?, name))
            }
            _ => None,
        };
        Ok(Self {
            endpoint,
            token,
            tls,
            timeout: config.timeout,
        })
    }

    /// The same client sending `token` instead (none when `None` or empty).
    pub fn with_token(&self, token: Option<&str>) -> Result<Self, ClientError> {
        let token = match token.map(str::trim) {
            Some(t) if !t.is_empty() => {
                let mut v = HeaderValue::from_str(t).map_err(|_| ClientError::InvalidToken)?;
                v.set_sensitive(true);
                Some(v)
            }
            _ => None,
        };
        Ok(Self {
            token,
            ..self.clone()
        })
    }

    /// [`ClientConfig::from_env`] with `http_addr` and `token` (when given) winning.
    pub fn from_env_and_flags(
        http_addr: Option<&str>,
        token: Option<&str>,
    ) -> Result<Self, ClientError> {
        let mut config = ClientConfig::from_env()?;
        if let Some(addr) = http_addr {
            config.addr = addr.to_owned();
        }
        if let Some(token) = token {
            config.token = Some(token.to_owned());
        }
        Self::new(config)
    }

    /// The agent's address: `host:port`, or the socket path.
    pub fn address(&self) -> String {
        self.endpoint.to_string()
    }

    /// `GET path_and_query`.
    pub async fn get(&self, path_and_query: &str) -> Result<Response, ClientError> {
        self.request(Method::GET, path_and_query, None).await
    }

    /// `PUT path_and_query` with `body` (empty when `None`).
    pub async fn put(
        &self,
        path_and_query: &str,
        body: Option<Body>,
    ) -> Result<Response, ClientError> {
        self.request(Method::PUT, path_and_query, body).await
    }

    /// `DELETE path_and_query`.
    pub async fn delete(&self, path_and_query: &str) -> Result<Response, ClientError> {
        self.request(Method::DELETE, path_and_query, None).await
    }

    /// `GET path_and_query`, the body decoded as JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<T, ClientError> {
        let resp = self.get(path_and_query).await?;
        decode(Method::GET, path_and_query, &resp)
    }

    /// `PUT path_and_query` with `body`, the answer decoded as JSON.
    pub async fn put_json<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        body: Option<Body>,
    ) -> Result<T, ClientError> {
        let resp = self.put(path_and_query, body).await?;
        decode(Method::PUT, path_and_query, &resp)
    }

    /// One request. `path_and_query` starts with `/`. A status outside 2xx is
    /// [`ClientError::Status`].
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Body>,
    ) -> Result<Response, ClientError> {
        let op = format!("{method} {path_and_query}");
        if !path_and_query.starts_with('/') {
            return Err(ClientError::InvalidPath { op });
        }
        let bytes = match body {
            None => Bytes::new(),
            Some(Body::Bytes(b)) => b,
            Some(Body::Json(v)) => serde_json::to_vec(&v)
                .map_err(|source| ClientError::Encode {
                    op: op.clone(),
                    source,
                })?
                .into(),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, self.endpoint.host_header())
            .header(USER_AGENT, concat!("mesh/", env!("CARGO_PKG_VERSION")));
        if let Some(token) = &self.token {
            builder = builder.header(TOKEN_HEADER, token.clone());
        }
        let req = builder
            .body(Full::new(bytes))
            .map_err(|source| ClientError::Request {
                op: op.clone(),
                source,
            })?;
        match tokio::time::timeout(self.timeout, self.exchange(&op, req)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                op,
                after: self.timeout,
            }),
        }
    }

    async fn exchange(&self, op: &str, req: Request<Full<Bytes>>) -> Result<Response, ClientError> {
        let connect_timeout = CONNECT_TIMEOUT.min(self.timeout);
        let connect_err = |source| ClientError::Connect {
            op: op.to_owned(),
            addr: self.endpoint.to_string(),
            source,
        };
        match &self.endpoint {
            Endpoint::Tcp { host, port, .. } => {
                let tcp = tokio::time::timeout(
                    connect_timeout,
                    TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| connect_err(std::io::ErrorKind::TimedOut.into()))?
                .map_err(connect_err)?;
                // Small requests: do not wait for more bytes before sending.
                let _ = tcp.set_nodelay(true);
                match &self.tls {
                    None => roundtrip(op, tcp, req).await,
                    Some((connector, name)) => {
                        let tls_err = |source| ClientError::Tls {
                            op: op.to_owned(),
                            addr: self.endpoint.to_string(),
                            source,
                        };
                        let stream = tokio::time::timeout(
                            connect_timeout,
                            connector.connect(name.clone(), tcp),
                        )
                        .await
                        .map_err(|_| tls_err(std::io::ErrorKind::TimedOut.into()))?
                        .map_err(tls_err)?;
                        roundtrip(op, stream, req).await
                    }
                }
            }
            #[cfg(unix)]
            Endpoint::Unix(path) => {
                let stream =
                    tokio::time::timeout(connect_timeout, tokio::net::UnixStream::connect(path))
                        .await
                        .map_err(|_| connect_err(std::io::ErrorKind::TimedOut.into()))?
                        .map_err(connect_err)?;
                roundtrip(op, stream, req).await
            }
        }
    }
}

/// `path` with `params` as a percent-encoded query string (nothing added when empty).
pub fn path_with_query(path: &str, params: &[(&str, &str)]) -> String {
    let mut out = path.to_owned();
    for (i, (k, v)) in params.iter().enumerate() {
        out.push(if i == 0 && !path.contains('?') {
            '?'
        } else {
            '&'
        });
        out.push_str(&percent_encode(k));
        if !v.is_empty() {
            out.push('=');
            out.push_str(&percent_encode(v));
        }
    }
    out
}

/// `s` percent-encoded for a path segment or a query component: everything but the
/// unreserved characters of RFC 3986 is escaped.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a token file: its trimmed content, `None` when empty.
pub fn read_token_file(path: &Path) -> Result<Option<String>, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::TokenFile {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    Ok((!token.is_empty()).then(|| token.to_owned()))
}

/// Where the agent listens.
#[derive(Clone, PartialEq, Eq)]
enum Endpoint {
    /// TCP, plain or TLS. `host` has no brackets.
    Tcp { tls: bool, host: String, port: u16 },
    /// A Unix socket.
    #[cfg(unix)]
    Unix(PathBuf),
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { tls, .. } => {
                write!(f, "{}://{self}", if *tls { "https" } else { "http" })
            }
            #[cfg(unix)]
            Endpoint::Unix(_) => write!(f, "unix://{self}"),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { .. } => f.write_str(&self.host_header()),
            #[cfg(unix)]
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

impl Endpoint {
    fn parse(addr: &str) -> Result<Self, ClientError> {
        let invalid = |reason| ClientError::InvalidAddress {
            addr: addr.to_owned(),
            reason,
        };
        let addr = addr.trim();
        if let Some(path) = addr.strip_prefix("unix://") {
            #[cfg(unix)]
            {
                if path.is_empty() {
                    return Err(invalid("no socket path"));
                }
                return Ok(Endpoint::Unix(PathBuf::from(path)));
            }
            #[cfg(not(unix))]
            {
                let _ = path;
                return Err(invalid("Unix sockets are not supported on this platform"));
            }
        }
        let (tls, rest, default_port) = if let Some(rest) = addr.strip_prefix("https://") {
            (true, rest, 443)
        } else if let Some(rest) = addr.strip_prefix("http://") {
            (false, rest, 80)
        } else if addr.contains("://") {
            return Err(invalid("the scheme must be http, https or unix"));
        } else {
            (false, addr, 8500)
        };
        // A trailing slash is harmless; any other path is not part of an agent address.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(invalid("only host and port are allowed"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '[' in an IPv6 address"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| invalid("junk after ']'"))?,
                    ),
                ),
            }
        } else {
            match rest.matches(':').count() {
                0 => (rest, None),
                1 => rest
                    .split_once(':')
                    .map(|(h, p)| (h, Some(p)))
                    .ok_or_else(|| invalid("bad port"))?,
                _ => return Err(invalid("an IPv6 address must be in brackets")),
            }
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
        };
        Ok(Endpoint::Tcp {
            tls,
            host: host.to_owned(),
            port,
        })
    }

    /// The `Host` header: `host:port`, IPv6 in brackets.
    fn host_header(&self) -> String {
        match self {
            Endpoint::Tcp { host, port, .. } if host.contains(':') => format!("[{host}]:{port}"),
            Endpoint::Tcp { host, port, .. } => format!("{host}:{port}"),
            #[cfg(unix)]
            Endpoint::Unix(_) => "localhost".to_owned(),
        }
    }
}

fn decode<T: DeserializeOwned>(
    method: Method,
    path: &str,
    resp: &Response,
) -> Result<T, ClientError> {
    resp.json().map_err(|source| ClientError::Decode {
        op: format!("{method} {path}"),
        source,
    })
}

/// Sends `req` on a fresh connection and reads the whole (bounded) answer.
async fn roundtrip<S>(
    op: &str,
    stream: S,
    req: Request<Full<Bytes>>,
) -> Result<Response, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_err = |source| ClientError::Http {
        op: op.to_owned(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_err)?;
    // The connection task ends when the sender is dropped or the peer closes; it is aborted
    // below in any case, so nothing outlives the request.
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let resp = sender.send_request(req).await.map_err(http_err)?;
        let (parts, body) = resp.into_parts();
        let too_large = || ClientError::TooLarge {
            op: op.to_owned(),
            limit: MAX_RESPONSE_BYTES,
        };
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Err(too_large());
        }
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    return too_large();
                }
                match e.downcast::<hyper::Error>() {
                    Ok(h) => http_err(*h),
                    Err(other) => ClientError::Read {
                        op: op.to_owned(),
                        source: other,
                    },
                }
            })?
            .to_bytes();
        if !parts.status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let mut text = text.trim().to_owned();
            if text.len() > 4096 {
                let mut cut = 4096;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push('…');
            }
            return Err(ClientError::Status {
                op: op.to_owned(),
                status: parts.status.as_u16(),
                body: text,
            });
        }
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
    .await;
    driver.abort();
    result
}

fn tls_connector(ca_file: &Path) -> Result<tokio_rustls::TlsConnector, ClientError> {
    let pem = std::fs::read(ca_file).map_err(|source| ClientError::CaFile {
        path: ca_file.to_owned(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|source| ClientError::CaPem {
            path: ca_file.to_owned(),
            source,
        })?;
        roots.add(cert).map_err(|e| ClientError::CaCertificate {
            path: ca_file.to_owned(),
            reason: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(ClientError::CaCertificate {
            path: ca_file.to_owned(),
            reason: "no certificate in the file".to_owned(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientError::TlsSetup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Go's `strconv.ParseBool`, which Consul uses for its boolean variables and flags.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn endpoint(addr: &str) -> Result<Endpoint, String> {
        Endpoint::parse(addr).map_err(|e| e.to_string())
    }

    fn tcp(tls: bool, host: &str, port: u16) -> Result<Endpoint, String> {
        Ok(Endpoint::Tcp {
            tls,
            host: host.to_owned(),
            port,
        })
    }

    #[test]
    fn addresses_as_consul_http_addr_takes_them() {
        assert_eq!(endpoint("127.0.0.1:8500"), tcp(false, "127.0.0.1", 8500));
        assert_eq!(endpoint("localhost"), tcp(false, "localhost", 8500));
        assert_eq!(endpoint("http://10.0.0.1:85/"), tcp(false, "10.0.0.1", 85));
        assert_eq!(endpoint("http://consul"), tcp(false, "consul", 80));
        assert_eq!(endpoint("https://consul"), tcp(true, "consul", 443));
        assert_eq!(endpoint("https://consul:8501"), tcp(true, "consul", 8501));
        assert_eq!(endpoint("[::1]:8500"), tcp(false, "::1", 8500));
        assert_eq!(endpoint("http://[::1]"), tcp(false, "::1", 80));
        #[cfg(unix)]
        assert_eq!(
            endpoint("unix:///var/run/consul.sock"),
            Ok(Endpoint::Unix("/var/run/consul.sock".into()))
        );
    }

    #[test]
    fn bad_addresses_are_refused_with_the_reason() {
        for (addr, reason) in [
            ("", "no host"),
            (":8500", "no host"),
            ("ftp://x", "the scheme must be http, https or unix"),
            ("x:0", "the port must be a number from 1 to 65535"),
            ("x:99999", "the port must be a number from 1 to 65535"),
            ("x:port", "the port must be a number from 1 to 65535"),
            ("::1", "an IPv6 address must be in brackets"),
            ("[::1", "unclosed '[' in an IPv6 address"),
            ("[::1]x", "junk after ']'"),
            ("http://x/v1", "only host and port are allowed"),
            ("http://user@x", "only host and port are allowed"),
            ("unix://", "no socket path"),
        ] {
            let err = endpoint(addr).err().unwrap_or_default();
            assert!(err.ends_with(reason), "{addr:?}: {err}");
            assert!(err.contains(&format!("{addr:?}")), "{addr:?}: {err}");
        }
    }

    #[test]
    fn host_headers() {
        for (addr, host) in [
            ("127.0.0.1:8500", "127.0.0.1:8500"),
            ("[::1]:1", "[::1]:1"),
            ("https://consul", "consul:443"),
        ] {
            let e = Endpoint::parse(addr).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(e.host_header(), host);
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn settings_from_the_environment() {
        let c = ClientConfig::from_lookup(env(&[])).unwrap_or_default();
        assert_eq!(c.addr, DEFAULT_ADDR);
        assert_eq!(c.token, None);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        let c = ClientConfig::from_lookup(env(&[
            (ENV_HTTP_ADDR, "10.1.1.1:8501"),
            (ENV_HTTP_SSL, "true"),
            (ENV_HTTP_TOKEN, "t0k3n"),
            (ENV_CACERT, "/etc/ca.pem"),
        ]))
        .unwrap_or_default();
        assert_eq!(c.addr, "https://10.1.1.1:8501");
        assert_eq!(c.token.as_deref(), Some("t0k3n"));
        assert_eq!(c.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        // Empty variables are unset ones; an explicit scheme is kept.
        let c = ClientConfig::from_lookup(env(&[
            (ENV_HTTP_ADDR, "http://a:1"),
            (ENV_HTTP_SSL, "1"),
            (ENV_HTTP_TOKEN, ""),
        ]))
        .unwrap_or_default();
        assert_eq!(c.addr, "http://a:1");
        assert_eq!(c.token, None);
    }

    #[test]
    fn token_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap_or_else(|e| panic!("{e}"));
        let path = file.to_string_lossy().into_owned();
        let c = ClientConfig::from_lookup(env(&[(ENV_HTTP_TOKEN_FILE, &path)])).unwrap_or_default();
        assert_eq!(c.token.as_deref(), Some("from-file"));
        // The token variable wins over the file variable.
        let c =
            ClientConfig::from_lookup(env(&[(ENV_HTTP_TOKEN_FILE, &path), (ENV_HTTP_TOKEN, "v")]))
                .unwrap_or_default();
        assert_eq!(c.token.as_deref(), Some("v"));
        let err = ClientConfig::from_lookup(env(&[(ENV_HTTP_TOKEN_FILE, "/nonexistent/t")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("reading token file /nonexistent/t: "),
            "{err}"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let config = ClientConfig {
            token: Some("s3cr3t".into()),
            ..ClientConfig::default()
        };
        assert!(!format!("{config:?}").contains("s3cr3t"));
        let client = Client::new(config).unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{client:?}").contains("s3cr3t"));
        let body = Body::Json(serde_json::json!({"SecretID": "s3cr3t"}));
        assert!(!format!("{body:?}").contains("s3cr3t"));
    }

    #[test]
    fn bad_tokens_and_tls_settings_are_refused() {
        let bad = Client::new(ClientConfig {
            token: Some("a\nb".into()),
            ..ClientConfig::default()
        });
        assert!(matches!(bad, Err(ClientError::InvalidToken)));
        let no_ca = Client::new(ClientConfig {
            addr: "https://127.0.0.1:8501".into(),
            ..ClientConfig::default()
        });
        assert!(
            matches!(no_ca, Err(ClientError::NoCaFile { .. })),
            "{no_ca:?}"
        );
        let missing = Client::new(ClientConfig {
            addr: "https://127.0.0.1:8501".into(),
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..ClientConfig::default()
        });
        assert!(
            matches!(missing, Err(ClientError::CaFile { .. })),
            "{missing:?}"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let junk = dir.path().join("ca.pem");
        std::fs::write(&junk, "not a certificate").unwrap_or_else(|e| panic!("{e}"));
        let empty = Client::new(ClientConfig {
            addr: "https://127.0.0.1:8501".into(),
            ca_file: Some(junk),
            ..ClientConfig::default()
        });
        let err = empty.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.ends_with("no certificate in the file"), "{err}");
        // A CA file is not needed, and not read, for plain HTTP.
        assert!(
            Client::new(ClientConfig {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..ClientConfig::default()
            })
            .is_ok()
        );
    }

    #[tokio::test]
    async fn paths_must_be_absolute() {
        let err = Client::new(ClientConfig::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .get("v1/agent/self")
            .await
            .err();
        assert!(
            matches!(err, Some(ClientError::InvalidPath { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(path_with_query("/v1/x", &[]), "/v1/x");
        assert_eq!(
            path_with_query("/v1/x", &[("name", "a b&c=d/é"), ("pretty", "")]),
            "/v1/x?name=a%20b%26c%3Dd%2F%C3%A9&pretty"
        );
        assert_eq!(
            path_with_query("/v1/x?a=1", &[("dc", "d")]),
            "/v1/x?a=1&dc=d"
        );
    }

    /// A one-shot HTTP server: reads one request head (and a body of `Content-Length`
    /// bytes), answers `reply`, returns what it read.
    async fn one_shot(reply: &'static [u8]) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        let task = tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else {
                return String::new();
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .and_then(|v| v.trim().parse::<usize>().ok())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let _ = s.write_all(reply).await;
            let _ = s.shutdown().await;
            String::from_utf8_lossy(&buf).into_owned()
        });
        (addr, task)
    }

    fn client(addr: &str, token: Option<&str>) -> Client {
        Client::new(ClientConfig {
            addr: addr.to_owned(),
            token: token.map(str::to_owned),
            timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_request_carries_the_token_and_the_json_body() {
        let (addr, server) = one_shot(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: 7\r\nContent-Length: 11\r\n\r\n{\"ID\":\"p\"}\n",
        )
        .await;
        let c = client(&addr, Some("s3cr3t"));
        let resp = c
            .put(
                "/v1/acl/policy",
                Some(serde_json::json!({"Name": "x"}).into()),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.index(), Some(7));
        let v: serde_json::Value = resp.json().unwrap_or_default();
        assert_eq!(v["ID"], "p");
        let seen = server.await.unwrap_or_default();
        assert!(
            seen.starts_with("PUT /v1/acl/policy HTTP/1.1\r\n"),
            "{seen}"
        );
        assert!(
            seen.to_ascii_lowercase()
                .contains("x-consul-token: s3cr3t\r\n"),
            "{seen}"
        );
        assert!(
            seen.to_ascii_lowercase()
                .contains(&format!("host: {addr}\r\n")),
            "{seen}"
        );
        assert!(seen.ends_with("{\"Name\":\"x\"}"), "{seen}");
    }

    #[tokio::test]
    async fn without_a_token_no_token_header() {
        let (addr, server) = one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnull").await;
        let v: Option<String> = client(&addr, None)
            .get_json("/v1/status/leader")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v, None);
        let seen = server.await.unwrap_or_default();
        assert!(
            !seen.to_ascii_lowercase().contains("x-consul-token"),
            "{seen}"
        );
    }

    #[tokio::test]
    async fn an_error_status_carries_the_servers_text() {
        let (addr, _server) = one_shot(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nACL not found",
        )
        .await;
        let err = client(&addr, Some("s3cr3t"))
            .get("/v1/acl/policies")
            .await
            .err()
            .unwrap_or_else(|| panic!("a 403 is an error"));
        assert_eq!(err.status(), Some(403));
        let text = err.to_string();
        assert_eq!(
            text,
            "GET /v1/acl/policies: Unexpected response code: 403 (ACL not found)"
        );
        assert!(!format!("{err:?}").contains("s3cr3t"));
    }

    #[tokio::test]
    async fn answers_that_are_not_the_json_expected() {
        let (addr, _server) = one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        let err = client(&addr, None)
            .get_json::<serde_json::Value>("/v1/x")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("GET /v1/x: decoding the response: "),
            "{err}"
        );
    }

    #[tokio::test]
    async fn oversized_answers_are_refused() {
        let (addr, _server) =
            one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n{}").await;
        let err = client(&addr, None).get("/v1/x").await.err();
        assert!(matches!(err, Some(ClientError::TooLarge { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        let _hold = tokio::spawn(async move {
            let accepted = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(accepted);
        });
        let c = Client::new(ClientConfig {
            addr,
            timeout: Duration::from_millis(200),
            ..ClientConfig::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let err = c.get("/v1/agent/members").await.err();
        assert!(matches!(err, Some(ClientError::Timeout { .. })), "{err:?}");
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with("GET /v1/agent/members: no complete answer within"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error_naming_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        drop(listener);
        let err = client(&addr, None)
            .get("/v1/agent/members")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with(&format!("GET /v1/agent/members: connecting to {addr}: ")),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn unix_sockets() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap_or_else(|e| panic!("{e}"));
        let server = tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
                .await;
        });
        let c = client(&format!("unix://{}", path.display()), None);
        let v: Vec<String> = c
            .get_json("/v1/status/peers")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(v.is_empty());
        let _ = server.await;
    }
}
