//! `?dc=<peer>`: the request is sent as it came to the peer datacenter's HTTP API, and its
//! answer returned as it is.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, Request, Response, Uri, header, request::Parts};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ApiState;
use super::error::ApiError;

/// How long a connection to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than the longest blocking query a forwarded request may take.
const EXTRA: Duration = Duration::from_secs(60);

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
    let name: mesh::core::Datacenter = dc.parse().map_err(|_| no_path())?;
    let base = state.peers().get(&name).ok_or_else(no_path)?;
    let Some((authority, prefix)) = split_base(base) else {
        tracing::warn!(datacenter = %name, "peer base URL is not http://host:port; cannot forward");
        return Err(unreachable());
    };
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: Uri = format!("{prefix}{path}")
        .parse()
        .map_err(|_| ApiError::bad_request("Invalid URL path"))?;
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority)).await {
        Ok(Ok(s)) => s,
        _ => {
            tracing::warn!(datacenter = %name, "peer datacenter unreachable");
            return Err(unreachable());
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| unreachable())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder().method(parts.method.clone()).uri(uri);
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) {
            req = req.header(k, v);
        }
    }
    let req = req
        .header(
            header::HOST,
            HeaderValue::from_str(authority).map_err(|_| unreachable())?,
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
