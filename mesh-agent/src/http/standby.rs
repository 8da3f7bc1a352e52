//! The HTTP API of a server standing by (state on etcd, another server leads): every request
//! is sent as it came to the leading server's HTTP API, found in etcd, and its answer returned
//! as it is, so that clients may be given any server of the datacenter. Consul's followers
//! forward to their leader the same way.
//!
//! The standby itself holds no state and decides nothing: tokens, limits and time-outs are the
//! leader's. It bounds what it holds itself: open connections ([`HttpConfig::max_connections`]),
//! the time to send headers, the time to reach the leader, and the time a forwarded request
//! may take (the longest blocking query plus a minute). Bodies stream through, never
//! collected. A request that already went through a standby is not forwarded again (no loop
//! while leadership changes hands): it gets Consul's 500 `No cluster leader`, as does every
//! request while no server leads.
//!
//! The leader is reached over plain HTTP at the address it published: servers of one
//! datacenter sit on one private network, as their HTTP API does. Who leads is read from etcd
//! at most once a second, and again as soon as the leader cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::HttpConfig;
use super::error::ApiError;

/// Marks a request a standby forwarded.
const FORWARDED_BY: &str = "x-mesh-forwarded-by";
/// How long connecting to the leader may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than the longest blocking query a forwarded request may take.
const EXTRA: Duration = Duration::from_secs(60);
/// How long the leader found in etcd is used before it is looked up again (sooner when it
/// cannot be reached).
const LEADER_TTL: Duration = Duration::from_secs(1);

struct Standby {
    storage: mesh::EtcdStorage,
    cfg: HttpConfig,
    /// The leader last found: when, its name, and its contact.
    leader: std::sync::Mutex<Option<(std::time::Instant, String, String)>>,
    /// Connections to the leader, kept open between requests.
    client: Client<HttpConnector, Body>,
}

impl Standby {
    /// The leader (name, contact), from the cache while it is fresh, else from etcd.
    async fn leader(&self) -> Result<Option<(String, String)>, mesh::Error> {
        if let Some((at, name, contact)) = &*self.cached()
            && at.elapsed() < LEADER_TTL
        {
            return Ok(Some((name.clone(), contact.clone())));
        }
        let found = self.storage.leader_contact().await?;
        *self.cached() = found
            .as_ref()
            .map(|(n, c)| (std::time::Instant::now(), n.clone(), c.clone()));
        Ok(found)
    }

    fn forget_leader(&self) {
        *self.cached() = None;
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Option<(std::time::Instant, String, String)>> {
        self.leader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Serves `listener` as a standby until the returned future is dropped (the caller drops it
/// once this server leads, and serves the full API on the same listener). Connections
/// accepted until then finish on their own. Returns only when accepting fails for good.
pub async fn serve_standby(
    listener: &TcpListener,
    storage: mesh::EtcdStorage,
    cfg: HttpConfig,
) -> std::io::Result<()> {
    let app = Router::new()
        .fallback(forward)
        .with_state(Arc::new(Standby {
            storage,
            cfg: cfg.clone(),
            leader: std::sync::Mutex::new(None),
            client: leader_client(),
        }));
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    // Connections outlive this loop: they are never told to stop.
    let (_never_tx, never) = watch::channel(false);
    let mut failures = 0u32;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => {
                failures = 0;
                s
            }
            Err(e) => {
                failures += 1;
                if failures > 100 && !super::server::is_transient(&e) {
                    return Err(e);
                }
                tracing::warn!(error = %e, "HTTP API accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (app, stop, header_timeout) = (app.clone(), never.clone(), cfg.header_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            super::server::connection(stream, app, header_timeout, stop).await;
        });
    }
}

/// An HTTP/1.1 client that keeps a few idle connections to the leader, for 30 s at most.
fn leader_client() -> Client<HttpConnector, Body> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(32)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

fn no_leader() -> Response {
    ApiError::server("No cluster leader").into_response()
}

async fn forward(State(s): State<Arc<Standby>>, req: Request) -> Response {
    if req.headers().contains_key(FORWARDED_BY) {
        return no_leader();
    }
    let (leader, contact) = match s.leader().await {
        Ok(Some(found)) => found,
        Ok(None) => return no_leader(),
        Err(e) => {
            tracing::warn!(error = %e, "finding the leader in etcd failed");
            return ApiError::server(format!("No cluster leader (etcd: {})", e.kind()))
                .into_response();
        }
    };
    if leader == s.storage.server_name {
        // This server just won; its own API starts in a moment.
        return no_leader();
    }
    let Some(authority) = contact
        .strip_prefix("http://")
        .map(|a| a.trim_end_matches('/').to_owned())
    else {
        tracing::warn!(%leader, %contact, "the leader published no HTTP address");
        return no_leader();
    };
    match send(&s, &authority, req).await {
        Ok(resp) => resp,
        Err(e) => {
            // Perhaps it is gone: look it up again for the next request.
            s.forget_leader();
            tracing::debug!(%leader, error = %e, "forwarding to the leader failed");
            ApiError::server(format!(
                "No cluster leader (the leader at {authority}: {e})"
            ))
            .into_response()
        }
    }
}

async fn send(s: &Standby, authority: &str, req: Request) -> Result<Response, String> {
    let (mut parts, body) = req.into_parts();
    // Toward the leader: its own authority, the same path and query.
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = Uri::try_from(format!("http://{authority}{path}")).map_err(|e| e.to_string())?;
    if let Ok(host) = HeaderValue::from_str(authority) {
        parts.headers.insert(header::HOST, host);
    }
    if let Ok(by) = HeaderValue::from_str(&s.storage.server_name) {
        parts.headers.insert(FORWARDED_BY, by);
    }
    let limit = s.cfg.max_wait + EXTRA;
    let resp = tokio::time::timeout(limit, s.client.request(Request::from_parts(parts, body)))
        .await
        .map_err(|_| format!("no answer within {limit:?}"))?
        .map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let mut resp = Response::from_parts(parts, Body::new(body));
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Nothing of the API upgrades; do not pretend to relay it.
        *resp.status_mut() = StatusCode::BAD_GATEWAY;
    }
    Ok(resp)
}
