//! The Consul-compatible HTTP API of a mesh datacenter server.
//!
//! [`router`] answers the subset of Consul's `/v1/` API that real clients (the Go client,
//! py-consul, `consul connect envoy`) use for the mesh: ACL, agent, Connect CA and
//! intentions, config entries, catalog, health, status and metrics, with Consul's paths,
//! JSON field names, headers, status codes and error texts. [`serve`] runs it on a listener,
//! plain or TLS, with header and body time-outs, a body size limit and a connection cap.
//!
//! Conventions every endpoint follows:
//! - the token comes from `?token=`, `X-Consul-Token` or `Authorization: Bearer`, else the
//!   agent's default token, else the anonymous token; tokens are never logged;
//! - reads that Consul makes blocking take `?index=`/`?wait=`, are woken by the state
//!   store's table watch (no polling), report `X-Consul-Index` (never 0) with
//!   `X-Consul-KnownLeader`/`X-Consul-LastContact`, and are bounded in number (then 429);
//! - `?dc=` naming this datacenter is served here, naming a peer is forwarded to it, naming
//!   anything else is Consul's 500 `No path to datacenter`;
//! - list reads hide what the token may not read and say so with
//!   `X-Consul-Results-Filtered-By-ACLs: true` when a token was given;
//! - errors are plain text with Consul's statuses (403 `Permission denied: ...`, 404, 400,
//!   405 `method X not allowed`, 413 past the body limit); a failed request writes nothing.
//!
//! What it does not do: namespaces and partitions (refused, as Consul CE does), `?filter=`
//! expressions (refused with 400), KV, sessions, prepared queries, DNS, gzip.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{MethodRouter, get, post, put};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

mod acl;
mod agent;
mod blocking;
mod catalog;
mod config;
mod connect;
mod ctx;
mod dataplane;
mod decode;
mod error;
mod forward;
mod intentions;
mod layer;
mod leaf;
mod raw;
mod reply;
mod server;
#[cfg(feature = "etcd")]
mod standby;
mod util;

pub use forward::{Federation, SERVER_PORT_HTTP_ALPN};
pub use server::{serve, server_port_http};
#[cfg(feature = "etcd")]
pub use standby::serve_standby;

/// Limits and time-outs of the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The largest request body accepted (default 1 MiB); larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers (default 10 s); the
    /// connection is closed after that.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body (default 30 s); 408 after that.
    pub body_timeout: Duration,
    /// How many blocking queries may wait at once (default 512); more get 429.
    pub max_blocking_queries: usize,
    /// The longest a blocking query is held, whatever `?wait=` asks (default 10 min, as
    /// Consul's `max_query_time`).
    pub max_wait: Duration,
    /// How long a blocking query without `?wait=` is held (default 5 min, as Consul's
    /// `default_query_time`).
    pub default_wait: Duration,
    /// How many connections are served at once (default 1024); more wait to be accepted.
    pub max_connections: usize,
    /// How long [`serve`] lets open requests finish after shutdown (default 5 s).
    pub shutdown_grace: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_blocking_queries: 512,
            max_wait: Duration::from_secs(600),
            default_wait: Duration::from_secs(300),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What `/v1/agent/self`, `/v1/agent/members` and `/v1/status/*` say about this server.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    /// The node name (`node_name`).
    pub node_name: String,
    /// The node ID (a UUID).
    pub node_id: String,
    /// The address other nodes reach this one at (`advertise_addr`).
    pub advertise_addr: IpAddr,
    /// The server address (`ip:port` of the server/replication port): what
    /// `/v1/status/leader` and `/v1/status/peers` report.
    pub server_addr: SocketAddr,
    /// The Serf LAN port reported in `Member.Port` (mesh runs no gossip; Consul's default).
    pub serf_lan_port: u16,
    /// The HTTP API address, if served.
    pub http_addr: Option<SocketAddr>,
    /// The HTTPS API address, if served.
    pub https_addr: Option<SocketAddr>,
    /// The version reported (`Config.Version`).
    pub version: String,
    /// The build revision reported (`Config.Revision`).
    pub revision: String,
    /// Node metadata (`node_meta`).
    pub node_meta: BTreeMap<String, String>,
    /// A summary of the configuration for `DebugConfig`. Must hold no secret.
    pub config: serde_json::Value,
}

impl Default for AgentInfo {
    fn default() -> Self {
        Self {
            node_name: "mesh".to_owned(),
            node_id: util::uuid_v4(),
            advertise_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            server_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8300),
            serf_lan_port: 8301,
            http_addr: None,
            https_addr: None,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            revision: String::new(),
            node_meta: BTreeMap::new(),
            config: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
}

/// A boxed future that can be sent between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What `PUT /v1/agent/reload` runs: re-reads the agent's configuration; the error text is
/// answered with 500.
pub type ReloadHook = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    dc: mesh::Datacenter,
    cfg: Arc<HttpConfig>,
    metrics: Arc<Metrics>,
    peers: Arc<BTreeMap<mesh::core::DatacenterName, String>>,
    federation: Option<forward::Federation>,
    agent: Arc<AgentInfo>,
    reload: Option<ReloadHook>,
    default_token: Option<Arc<str>>,
    blocking: Arc<Semaphore>,
    leaves: Arc<leaf::LeafCache>,
    deposed: Option<Deposed>,
}

/// Whether this server lost its leadership (state on etcd), and since when.
#[derive(Clone)]
struct Deposed {
    lost: tokio::sync::watch::Receiver<bool>,
    since: Arc<std::sync::OnceLock<std::time::Instant>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("dc", &self.dc)
            .field("cfg", &self.cfg)
            .field("peers", &self.peers)
            .field("agent", &self.agent.node_name)
            .field("reload", &self.reload.is_some())
            .field(
                "default_token",
                &self.default_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// The API of `dc` with these limits, recording into `metrics`.
    pub fn new(dc: mesh::Datacenter, cfg: HttpConfig, metrics: Arc<Metrics>) -> Self {
        let blocking = Arc::new(Semaphore::new(cfg.max_blocking_queries));
        Self {
            dc,
            cfg: Arc::new(cfg),
            metrics,
            peers: Arc::new(BTreeMap::new()),
            federation: None,
            agent: Arc::new(AgentInfo::default()),
            reload: None,
            default_token: None,
            blocking,
            leaves: Arc::new(leaf::LeafCache::default()),
            deposed: None,
        }
    }

    /// Follows this server's leadership (`true` once lost, see
    /// [`mesh::Datacenter::leadership_lost`]): once lost, reads are still answered, flagged
    /// `X-Consul-KnownLeader: false`, and writes are refused with Consul's 500 `No cluster
    /// leader`.
    pub fn with_leadership(mut self, lost: tokio::sync::watch::Receiver<bool>) -> Self {
        self.deposed = Some(Deposed {
            lost,
            since: Arc::default(),
        });
        self
    }

    /// How long ago this server lost its leadership; `None` while it leads.
    pub(crate) fn deposed_for(&self) -> Option<Duration> {
        let d = self.deposed.as_ref()?;
        if !*d.lost.borrow() {
            return None;
        }
        Some(d.since.get_or_init(std::time::Instant::now).elapsed())
    }

    /// Adds a datacenter that `?dc=<name>` requests are forwarded to: the base URL of its
    /// HTTP API (`http://10.0.0.2:8500`).
    pub fn with_peer(mut self, dc_name: mesh::core::DatacenterName, base_url: String) -> Self {
        Arc::make_mut(&mut self.peers).insert(dc_name, base_url);
        self
    }

    /// Forwards `?dc=<name>` for datacenters without an explicit peer URL to their servers,
    /// over mTLS on the server port.
    pub fn with_federation(mut self, federation: forward::Federation) -> Self {
        self.federation = Some(federation);
        self
    }

    pub(crate) fn federation(&self) -> Option<&forward::Federation> {
        self.federation.as_ref()
    }

    /// Sets what the agent endpoints report about this server.
    pub fn with_agent_info(mut self, info: AgentInfo) -> Self {
        self.agent = Arc::new(info);
        self
    }

    /// Sets what `PUT /v1/agent/reload` runs.
    pub fn with_reload(mut self, hook: ReloadHook) -> Self {
        self.reload = Some(hook);
        self
    }

    /// Sets the token requests without one run as (Consul's `acl.tokens.default`); without
    /// it they run as the anonymous token.
    pub fn with_default_token(mut self, secret: String) -> Self {
        self.default_token = (!secret.is_empty()).then(|| Arc::from(secret));
        self
    }

    /// The datacenter served.
    pub fn datacenter(&self) -> &mesh::Datacenter {
        &self.dc
    }

    /// The metrics recorded.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(crate) fn dc(&self) -> &mesh::Datacenter {
        &self.dc
    }

    pub(crate) fn config(&self) -> &HttpConfig {
        &self.cfg
    }

    pub(crate) fn agent(&self) -> &AgentInfo {
        &self.agent
    }

    pub(crate) fn peers(&self) -> &BTreeMap<mesh::core::DatacenterName, String> {
        &self.peers
    }

    pub(crate) fn default_token(&self) -> Option<&str> {
        self.default_token.as_deref()
    }
}

/// A route that answers Consul's 405 (and `OPTIONS`) for methods outside `allowed`.
fn m(allowed: &'static [&'static str], mr: MethodRouter<ApiState>) -> MethodRouter<ApiState> {
    mr.fallback(move |method: Method| async move { layer::method_not_allowed(&method, allowed) })
}

/// The API's routes, with the common layer (body limit and time-out, `?dc=` forwarding,
/// namespace refusals, metrics, `X-Consul-Default-ACL-Policy`) and Consul's 404 for anything
/// else under `/v1/`.
pub fn router(state: ApiState) -> Router {
    const GET: &[&str] = &["GET"];
    const PUT: &[&str] = &["PUT"];
    const POST: &[&str] = &["POST"];
    const GET_PUT: &[&str] = &["GET", "PUT"];
    const GET_POST: &[&str] = &["GET", "POST"];
    const GET_DELETE: &[&str] = &["GET", "DELETE"];
    const GET_PUT_DELETE: &[&str] = &["GET", "PUT", "DELETE"];
    Router::new()
        // ACL
        .route("/v1/acl/bootstrap", m(PUT, put(acl::bootstrap)))
        .route("/v1/acl/replication", m(GET, get(acl::replication)))
        .route("/v1/acl/policies", m(GET, get(acl::policy_list)))
        .route("/v1/acl/policy", m(PUT, put(acl::policy_create)))
        .route(
            "/v1/acl/policy/",
            m(
                GET_PUT_DELETE,
                get(acl::policy_missing_id)
                    .put(acl::policy_create)
                    .delete(acl::policy_missing_id),
            ),
        )
        .route(
            "/v1/acl/policy/{id}",
            m(
                GET_PUT_DELETE,
                get(acl::policy_read)
                    .put(acl::policy_update)
                    .delete(acl::policy_delete),
            ),
        )
        .route(
            "/v1/acl/policy/name/",
            m(GET, get(acl::policy_missing_name)),
        )
        .route(
            "/v1/acl/policy/name/{name}",
            m(GET, get(acl::policy_read_by_name)),
        )
        .route("/v1/acl/tokens", m(GET, get(acl::token_list)))
        .route("/v1/acl/token", m(PUT, put(acl::token_create)))
        .route(
            "/v1/acl/token/",
            m(
                GET_PUT_DELETE,
                get(acl::token_missing_id)
                    .put(acl::token_create)
                    .delete(acl::token_missing_id),
            ),
        )
        .route("/v1/acl/token/self", m(GET, get(acl::token_self)))
        .route(
            "/v1/acl/token/{id}",
            m(
                GET_PUT_DELETE,
                get(acl::token_read)
                    .put(acl::token_update)
                    .delete(acl::token_delete),
            ),
        )
        .route("/v1/acl/token/{id}/clone", m(PUT, put(acl::token_clone)))
        .route("/v1/acl/roles", m(GET, get(acl::role_list)))
        .route("/v1/acl/role", m(PUT, put(acl::role_create)))
        .route(
            "/v1/acl/role/",
            m(
                GET_PUT_DELETE,
                get(acl::role_missing_id)
                    .put(acl::role_create)
                    .delete(acl::role_missing_id),
            ),
        )
        .route(
            "/v1/acl/role/{id}",
            m(
                GET_PUT_DELETE,
                get(acl::role_read)
                    .put(acl::role_update)
                    .delete(acl::role_delete),
            ),
        )
        .route("/v1/acl/role/name/", m(GET, get(acl::role_missing_name)))
        .route(
            "/v1/acl/role/name/{name}",
            m(GET, get(acl::role_read_by_name)),
        )
        // agent
        .route("/v1/agent/self", m(GET, get(agent::agent_self)))
        .route("/v1/agent/members", m(GET, get(agent::members)))
        .route("/v1/agent/reload", m(PUT, put(agent::reload)))
        .route("/v1/agent/metrics", m(GET, get(agent::metrics)))
        .route("/v1/agent/services", m(GET, get(agent::services)))
        .route(
            "/v1/agent/service/register",
            m(PUT, put(agent::service_register)),
        )
        .route(
            "/v1/agent/service/deregister/{id}",
            m(PUT, put(agent::service_deregister)),
        )
        .route("/v1/agent/service/{id}", m(GET, get(agent::service_read)))
        .route(
            "/v1/agent/connect/ca/roots",
            m(GET, get(connect::agent_roots)),
        )
        .route(
            "/v1/agent/connect/ca/leaf/{service}",
            m(GET, get(leaf::leaf)),
        )
        .route(
            "/v1/agent/connect/authorize",
            m(POST, post(intentions::agent_authorize)),
        )
        // Connect
        .route("/v1/connect/ca/roots", m(GET, get(connect::roots)))
        .route(
            "/v1/connect/ca/configuration",
            m(
                GET_PUT,
                get(connect::ca_config_get).put(connect::ca_config_put),
            ),
        )
        .route(
            "/v1/connect/intentions",
            m(
                GET_POST,
                get(intentions::list).post(intentions::legacy_create),
            ),
        )
        .route(
            "/v1/connect/intentions/exact",
            m(
                GET_PUT_DELETE,
                get(intentions::exact_get)
                    .put(intentions::exact_put)
                    .delete(intentions::exact_delete),
            ),
        )
        .route(
            "/v1/connect/intentions/match",
            m(GET, get(intentions::matches)),
        )
        .route(
            "/v1/connect/intentions/check",
            m(GET, get(intentions::check)),
        )
        .route(
            "/v1/connect/intentions/{id}",
            m(
                GET_PUT_DELETE,
                get(intentions::legacy_get)
                    .put(intentions::legacy_update)
                    .delete(intentions::legacy_delete),
            ),
        )
        // config entries
        .route("/v1/config", m(PUT, put(config::write)))
        .route("/v1/config/{kind}", m(GET, get(config::list)))
        .route(
            "/v1/config/{kind}/{name}",
            m(GET_DELETE, get(config::read).delete(config::delete)),
        )
        // catalog and health
        .route("/v1/catalog/datacenters", m(GET, get(catalog::datacenters)))
        .route("/v1/catalog/services", m(GET, get(catalog::services)))
        .route(
            "/v1/catalog/service/{service}",
            m(GET, get(catalog::catalog_service)),
        )
        .route(
            "/v1/catalog/connect/{service}",
            m(GET, get(catalog::catalog_connect)),
        )
        .route(
            "/v1/health/service/{service}",
            m(GET, get(catalog::health_service)),
        )
        .route(
            "/v1/health/connect/{service}",
            m(GET, get(catalog::health_connect)),
        )
        // the data plane's extensions
        .route("/v1/internal/mesh/routing", m(GET, get(dataplane::routing)))
        .route(
            "/v1/internal/mesh/endpoints/{dc}/{service}",
            m(GET, get(dataplane::endpoints)),
        )
        .route(
            "/v1/internal/mesh/instance/{id}",
            m(GET, get(dataplane::instance)),
        )
        .route(
            "/v1/internal/mesh/instance/{id}/address",
            m(PUT, put(dataplane::instance_address)),
        )
        .route(
            "/v1/internal/mesh/gateway/{id}",
            m(PUT, put(dataplane::gateway)),
        )
        .route(
            "/v1/internal/mesh/sign/{service}",
            m(PUT, put(dataplane::sign)),
        )
        // status
        .route("/v1/status/leader", m(GET, get(agent::status_leader)))
        .route("/v1/status/peers", m(GET, get(agent::status_peers)))
        .fallback(layer::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            layer::common,
        ))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
