//! `?dc=<peer>`: the request is sent as it came to the peer datacenter, and its answer
//! returned as it is.
//!
//! Between the servers of a mesh the request goes to the peer's server port over mTLS (this
//! server's own server identity presented, the peer's verified as the server identity of the
//! datacenter named), on the HTTP protocol the server port serves by ALPN. Peers given by an
//! explicit base URL ([`ApiState::with_peer`]) are reached over plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, Request, Response, Uri, header, request::Parts};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mesh::ca::tls::{ExpectedServer, TlsIdentity};
use mesh::core::{ServerId, Sni, SpiffeId};
use tokio::net::TcpStream;

use super::ApiState;
use super::error::ApiError;

/// The ALPN protocol name of the HTTP API on the server port.
pub const SERVER_PORT_HTTP_ALPN: &[u8] = b"http/1.1";

/// How long a connection to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than the longest blocking query a forwarded request may take.
const EXTRA: Duration = Duration::from_secs(60);

/// How this server reaches the other datacenters' servers for `?dc=`: its own server
/// identity (whose leaf and trust follow its CA); for a secondary, its primary and where it
/// reaches it (its servers, or its mesh gateways); whether to go through this datacenter's
/// own mesh gateways (WAN federation through gateways); else the address each datacenter
/// announced in the datacenters table.
#[derive(Clone)]
pub struct Federation {
    identity: TlsIdentity,
    primary: Option<(mesh::core::DatacenterName, Vec<SocketAddr>)>,
    via_gateways: bool,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("primary", &self.primary)
            .field("via_gateways", &self.via_gateways)
            .finish_non_exhaustive()
    }
}

impl Federation {
    /// Forwarding with `identity` (a server identity of this mesh); `primary`, for a
    /// secondary, is its primary and the addresses its server port is reached at.
    pub fn new(
        identity: TlsIdentity,
        primary: Option<(mesh::core::DatacenterName, Vec<SocketAddr>)>,
    ) -> Self {
        Self {
            identity,
            primary,
            via_gateways: false,
        }
    }

    /// Reaches the other datacenters (the primary excepted, when it was given with its
    /// addresses) through this datacenter's mesh gateways, by the server SNI.
    pub fn through_gateways(mut self) -> Self {
        self.via_gateways = true;
        self
    }

    async fn addresses(
        &self,
        state: &ApiState,
        dc: &mesh::core::DatacenterName,
    ) -> Vec<SocketAddr> {
        if let Some((name, addrs)) = &self.primary
            && name == dc
        {
            return addrs.clone();
        }
        if self.via_gateways {
            use mesh::dataplane::ControlPlane as _;
            return match state.dc().current_routing(&mesh::Secret::new("")).await {
                Ok(r) => r.local_gateways.clone(),
                Err(_) => Vec::new(),
            };
        }
        match state.dc().catalog().datacenters().await {
            Ok(all) => all
                .into_iter()
                .filter(|d| &d.name == dc)
                .filter_map(|d| d.server)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// An mTLS connection to the server port of `dc`'s servers, speaking HTTP: the first
    /// address that answers, the server verified as `dc`'s server identity.
    async fn connect(
        &self,
        state: &ApiState,
        dc: &mesh::core::DatacenterName,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ApiError> {
        let addrs = self.addresses(state, dc).await;
        if addrs.is_empty() {
            return Err(no_path());
        }
        let td = self.identity.bundle().trust_domain().clone();
        let expected = ExpectedServer::id(SpiffeId::Server(ServerId::new(td, dc.clone())));
        let mut cfg = self.identity.client_config(expected).map_err(|e| {
            tracing::warn!(error = %e, "no TLS configuration to forward to another datacenter");
            unreachable()
        })?;
        cfg.alpn_protocols = vec![SERVER_PORT_HTTP_ALPN.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let domain = mesh::core::DEFAULT_DNS_DOMAIN
            .parse()
            .map_err(|_| unreachable())?;
        let sni = Sni::server(None, dc.clone(), domain);
        let name =
            rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(|_| unreachable())?;
        for addr in addrs {
            let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => tcp,
                _ => {
                    tracing::debug!(datacenter = %dc, %addr, "no answer; trying the next address");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            return match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), tcp))
                .await
            {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => {
                    tracing::warn!(datacenter = %dc, %addr, error = %e, "peer datacenter's server port refused or untrusted");
                    Err(unreachable())
                }
                Err(_) => {
                    tracing::warn!(datacenter = %dc, %addr, "TLS with the peer datacenter's server port timed out");
                    Err(unreachable())
                }
            };
        }
        tracing::warn!(datacenter = %dc, "no address of the peer datacenter answered");
        Err(unreachable())
    }
}

/// Consul's answer for a datacenter it knows no route to.
fn no_path() -> ApiError {
    ApiError::server("No path to datacenter")
}

/// Consul's answer when a known datacenter cannot be reached.
fn unreachable() -> ApiError {
    ApiError::server("Remote DC has no server currently reachable")
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Splits `http://host:port/prefix` into the authority and the path prefix.
fn split_base(base: &str) -> Option<(&str, &str)> {
    let rest = base.strip_prefix("http://")?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    (!authority.is_empty()).then_some((authority, prefix))
}

/// Forwards the request to datacenter `dc`.
pub(crate) async fn forward(
    state: &ApiState,
    parts: &Parts,
    body: Bytes,
    dc: &str,
) -> Result<axum::response::Response, ApiError> {
    let name: mesh::core::DatacenterName = dc.parse().map_err(|_| no_path())?;
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let (mut sender, authority, uri): (_, String, Uri) = if let Some(base) =
        state.peers().get(&name)
    {
        let Some((authority, prefix)) = split_base(base) else {
            tracing::warn!(datacenter = %name, "peer base URL is not http://host:port; cannot forward");
            return Err(unreachable());
        };
        let uri = format!("{prefix}{path}")
            .parse()
            .map_err(|_| ApiError::bad_request("Invalid URL path"))?;
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority)).await {
                Ok(Ok(s)) => s,
                _ => {
                    tracing::warn!(datacenter = %name, "peer datacenter unreachable");
                    return Err(unreachable());
                }
            };
        (handshake(stream).await?, authority.to_owned(), uri)
    } else if let Some(federation) = state.federation() {
        let stream = federation.connect(state, &name).await?;
        let uri = path
            .parse()
            .map_err(|_| ApiError::bad_request("Invalid URL path"))?;
        (
            handshake(stream).await?,
            format!("server.{name}.consul"),
            uri,
        )
    } else {
        return Err(no_path());
    };
    let mut req = Request::builder().method(parts.method.clone()).uri(uri);
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) {
            req = req.header(k, v);
        }
    }
    let req = req
        .header(
            header::HOST,
            HeaderValue::from_str(&authority).map_err(|_| unreachable())?,
        )
        .body(Full::new(body))
        .map_err(|_| ApiError::bad_request("Invalid request"))?;
    let limit = state.config().max_wait + EXTRA;
    let resp = match tokio::time::timeout(limit, sender.send_request(req)).await {
        Ok(Ok(r)) => r,
        _ => return Err(unreachable()),
    };
    let (rparts, rbody) = resp.into_parts();
    let bytes = match tokio::time::timeout(limit, rbody.collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        _ => return Err(unreachable()),
    };
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = rparts.status;
    for (k, v) in &rparts.headers {
        if !hop_by_hop(k) {
            out.headers_mut().append(k.clone(), v.clone());
        }
    }
    Ok(out)
}

/// An HTTP/1.1 client connection over `stream`, driven in the background.
async fn handshake<S>(
    stream: S,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ApiError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| unreachable())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            split_base("http://10.0.0.2:8500"),
            Some(("10.0.0.2:8500", ""))
        );
        assert_eq!(split_base("http://h:1/consul/"), Some(("h:1", "/consul")));
        assert_eq!(split_base("https://h:1"), None);
        assert_eq!(split_base("http://"), None);
    }
}
