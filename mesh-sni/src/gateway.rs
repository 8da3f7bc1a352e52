//! The gateway data plane: accept TCP connections, read the ClientHello under a time-out, route
//! on its SNI, connect to an endpoint with failover, then relay bytes both ways untouched.
//!
//! The gateway never terminates TLS: it reads only as much of the stream as the ClientHello
//! takes (at most [`GatewayConfig::max_hello_len`] bytes), replays those bytes to the chosen
//! endpoint, and from then on copies the stream through. Half-close is kept: when one side
//! ends its stream, the gateway ends the other side's write direction and keeps copying the
//! opposite direction until it ends too.
//!
//! Shared state is lock-free on the connection path: the route table sits in an
//! [`ArcSwap`] (swap it at any time; connections already relaying keep their endpoint), the
//! connection limit is a semaphore, and the counters are atomics.

use mesh_core::error_chain;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwap;
use bytes::BufMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::hello::{DEFAULT_MAX_HELLO_LEN, HelloError, Parse, buffer_limit, parse_client_hello};
use crate::relay::{RelayCounters, RelayLimits};
use crate::router::{Route, RouteError, RouteKind, RouteTable};

/// Default time a client has to send its whole ClientHello.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time one connect attempt to an endpoint may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default size of each of the two relay buffers of a connection.
pub const DEFAULT_RELAY_BUFFER_SIZE: usize = 64 * 1024;
/// Default limit of connections held at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The size a relay buffer starts at (see [`GatewayConfig::relay_buffer_size`]).
/// Default [`GatewayConfig::max_pending_hellos`].
pub const DEFAULT_MAX_PENDING_HELLOS: usize = 1024;
/// Default time an endpoint is skipped after a failed connect.
pub const DEFAULT_ENDPOINT_HOLD_OFF: Duration = Duration::from_secs(5);
/// Default time a relayed connection may carry no byte in either direction (Envoy's TCP proxy
/// default).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// The smallest accepted [`GatewayConfig::max_hello_len`]: a TLS record header plus a minimal
/// ClientHello with an SNI extension.
pub const MIN_HELLO_LEN: usize = 512;
/// The largest accepted [`GatewayConfig::max_hello_len`] and
/// [`GatewayConfig::relay_buffer_size`].
pub const MAX_BUFFER_LEN: usize = 16 * 1024 * 1024;

/// Knobs of a [`Gateway`]; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Time a client has, from accept, to send a complete ClientHello (default 5 s). A slow or
    /// silent client is closed when it runs out.
    pub hello_timeout: Duration,
    /// Time one connect attempt may take before the next endpoint is tried (default 2 s).
    pub connect_timeout: Duration,
    /// Largest ClientHello accepted (default 16 KiB, at least [`MIN_HELLO_LEN`]); a longer one
    /// is refused as invalid. The hello buffer of a connection is capped at
    /// [`buffer_limit`]`(max_hello_len)`: this plus the headers of the records the hello may be
    /// split into.
    pub max_hello_len: usize,
    /// Largest size of each of the two relay buffers of a connection (default 64 KiB). A
    /// buffer starts at 4 KiB and doubles while reads fill it, so a connection holds
    /// 2 x 4 KiB while it carries little and at most 2 x this when it carries bulk: with
    /// the defaults, at most 128 KiB of relay buffers per connection (plus the ClientHello
    /// buffer, at most [`buffer_limit`]`(max_hello_len)`, held only until the hello is
    /// routed), and `max_connections` times that per gateway.
    pub relay_buffer_size: usize,
    /// Routed connections held at once (default 10 000): a connection whose ClientHello is
    /// routed while the limit is reached is closed.
    pub max_connections: usize,
    /// Connections still waiting for their ClientHello, a budget of their own (default 1024):
    /// when it is full, the oldest waiting connection is closed to make room for the new one,
    /// so silent connections can neither hold routed clients off nor keep new ones out.
    pub max_pending_hellos: usize,
    /// Time an endpoint is skipped after a failed connect (default 5 s).
    pub endpoint_hold_off: Duration,
    /// Time a relayed connection may carry no byte in either direction before it is closed
    /// (default 1 hour).
    pub idle_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_hello_len: DEFAULT_MAX_HELLO_LEN,
            relay_buffer_size: DEFAULT_RELAY_BUFFER_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending_hellos: DEFAULT_MAX_PENDING_HELLOS,
            endpoint_hold_off: DEFAULT_ENDPOINT_HOLD_OFF,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// A [`GatewayConfig`] value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A time-out is zero.
    #[error("{field} must be longer than zero")]
    ZeroTimeout {
        /// Which field.
        field: &'static str,
    },
    /// `max_hello_len` is below [`MIN_HELLO_LEN`] or above [`MAX_BUFFER_LEN`].
    #[error("max_hello_len {0} is outside {MIN_HELLO_LEN}..={MAX_BUFFER_LEN}")]
    MaxHelloLen(usize),
    /// `relay_buffer_size` is zero or above [`MAX_BUFFER_LEN`].
    #[error("relay_buffer_size {0} is outside 1..={MAX_BUFFER_LEN}")]
    RelayBufferSize(usize),
    /// `max_connections` is zero or more than a semaphore can count.
    #[error("max_connections {0} is outside 1..={max}", max = max_connections_limit())]
    MaxConnections(usize),
    /// `max_pending_hellos` is zero.
    #[error("max_pending_hellos must be at least 1")]
    MaxPendingHellos,
}

/// Why a gateway operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The bound address of a listener could not be read.
    #[error("cannot read the listener's local address")]
    LocalAddr(#[source] io::Error),
    /// No tokio runtime is running on this thread.
    #[error("a gateway listener needs a tokio runtime")]
    NoRuntime,
    /// [`Gateway::shutdown`] was called; no new listener is started.
    #[error("the gateway is shut down")]
    ShutDown,
}

/// Which of the gateway's faces a listener is, for counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListenerKind {
    /// The address the gateway's own datacenter reaches it on.
    Lan,
    /// The address other datacenters reach it on.
    Wan,
}

impl ListenerKind {
    /// `"lan"` or `"wan"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lan => "lan",
            Self::Wan => "wan",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Lan => 0,
            Self::Wan => 1,
        }
    }
}

/// Counts of refused connections, one per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalStats {
    /// The ClientHello named no server.
    pub no_sni: u64,
    /// The first bytes were not a ClientHello, or it was longer than the cap.
    pub invalid_hello: u64,
    /// The client closed (or failed) before its ClientHello was complete.
    pub closed_before_hello: u64,
    /// The ClientHello did not arrive within the hello time-out.
    pub hello_timeout: u64,
    /// The route table had no route for the SNI (unknown name, foreign trust domain, no pool).
    pub unknown_route: u64,
    /// Every endpoint of the route was down, or every connect attempt failed.
    pub all_endpoints_down: u64,
    /// The connection limit was reached when the ClientHello was routed.
    pub over_limit: u64,
    /// Closed while waiting for its ClientHello, to make room for a newer connection.
    pub hello_evicted: u64,
    /// The gateway itself was out of descriptors, buffers or ports when it connected (no
    /// endpoint was held off for it).
    pub local_resources: u64,
}

impl RefusalStats {
    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        self.no_sni
            + self.invalid_hello
            + self.closed_before_hello
            + self.hello_timeout
            + self.unknown_route
            + self.all_endpoints_down
            + self.over_limit
            + self.hello_evicted
            + self.local_resources
    }
}

/// Counters of one listener kind (all listeners of that kind together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// TCP connections accepted, including the ones refused afterwards.
    pub accepted: u64,
    /// Connections held now (reading the hello, connecting or relaying).
    pub active: u64,
    /// Connections refused, by reason.
    pub refused: RefusalStats,
    /// Connections cut by a shutdown whose drain deadline passed.
    pub aborted: u64,
}

/// Counters of one route target, named by [`Route::label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteStats {
    /// The kind of target.
    pub kind: RouteKind,
    /// Connections routed to it.
    pub accepted: u64,
    /// Connections relaying to it now.
    pub active: u64,
    /// Bytes sent from clients to its endpoints (the replayed ClientHello included).
    pub bytes_to_backend: u64,
    /// Bytes sent from its endpoints to clients.
    pub bytes_to_client: u64,
    /// Connect attempts that failed or timed out.
    pub connect_failures: u64,
    /// Connections closed because no byte moved for the idle time-out.
    pub idle_timeouts: u64,
}

/// A snapshot of a gateway's counters; see [`Gateway::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// The LAN listeners.
    pub lan: ListenerStats,
    /// The WAN listeners.
    pub wan: ListenerStats,
    /// Per route target, by label. A label stays once seen, also after a table swap drops it.
    pub routes: BTreeMap<String, RouteStats>,
}

impl GatewayStats {
    /// The counters of one listener kind.
    pub fn listener(&self, kind: ListenerKind) -> &ListenerStats {
        match kind {
            ListenerKind::Lan => &self.lan,
            ListenerKind::Wan => &self.wan,
        }
    }

    /// Refusals of both listener kinds added up.
    pub fn refused(&self) -> RefusalStats {
        let (a, b) = (self.lan.refused, self.wan.refused);
        RefusalStats {
            no_sni: a.no_sni + b.no_sni,
            invalid_hello: a.invalid_hello + b.invalid_hello,
            closed_before_hello: a.closed_before_hello + b.closed_before_hello,
            hello_timeout: a.hello_timeout + b.hello_timeout,
            unknown_route: a.unknown_route + b.unknown_route,
            all_endpoints_down: a.all_endpoints_down + b.all_endpoints_down,
            over_limit: a.over_limit + b.over_limit,
            hello_evicted: a.hello_evicted + b.hello_evicted,
            local_resources: a.local_resources + b.local_resources,
        }
    }

    /// Connections held now on both listener kinds.
    pub fn active(&self) -> u64 {
        self.lan.active + self.wan.active
    }
}

impl fmt::Display for GatewayStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for kind in [ListenerKind::Lan, ListenerKind::Wan] {
            let l = self.listener(kind);
            let r = l.refused;
            writeln!(
                f,
                "{}: accepted {} active {} aborted {} refused {} (no_sni {} invalid_hello {} \
                 closed_before_hello {} hello_timeout {} unknown_route {} all_endpoints_down {} \
                 over_limit {} hello_evicted {} local_resources {})",
                kind.as_str(),
                l.accepted,
                l.active,
                l.aborted,
                r.total(),
                r.no_sni,
                r.invalid_hello,
                r.closed_before_hello,
                r.hello_timeout,
                r.unknown_route,
                r.all_endpoints_down,
                r.over_limit,
                r.hello_evicted,
                r.local_resources
            )?;
        }
        for (label, s) in &self.routes {
            writeln!(
                f,
                "route {label} ({}): accepted {} active {} bytes_to_backend {} bytes_to_client {} \
                 connect_failures {} idle_timeouts {}",
                s.kind.as_str(),
                s.accepted,
                s.active,
                s.bytes_to_backend,
                s.bytes_to_client,
                s.connect_failures,
                s.idle_timeouts
            )?;
        }
        Ok(())
    }
}

/// What [`Gateway::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections held when accepting stopped.
    pub active_at_start: usize,
    /// Connections still held at the drain deadline, which were then cut.
    pub aborted: usize,
}

/// An SNI gateway: listeners that share one route table, one connection limit and one set of
/// counters. Cloning gives another handle to the same gateway.
///
/// Each listener runs on the tokio runtime it was started on until [`Gateway::shutdown`]. One
/// gateway may serve listeners on several runtimes at once, e.g. a single-threaded event loop
/// per core, each accepting on a clone of the same socket (see `examples/sni_gateway.rs`):
/// routes, limit and counters stay shared.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    config: GatewayConfig,
    routes: ArcSwap<RouteTable>,
    route_stats: ArcSwap<HashMap<Arc<str>, Arc<RouteCounters>>>,
    listeners: [ListenerCounters; 2],
    limit: Arc<Semaphore>,
    stop_accepting: watch::Sender<bool>,
    abort: watch::Sender<bool>,
    accept_tasks: Mutex<Vec<JoinHandle<()>>>,
    pending: Mutex<PendingHellos>,
}

/// The connections waiting for their ClientHello, oldest first. Leaving is O(1) (a map
/// removal); an eviction skips ids that already left.
#[derive(Default)]
struct PendingHellos {
    next: u64,
    order: std::collections::VecDeque<u64>,
    waiting: HashMap<u64, Arc<tokio::sync::Notify>>,
}

/// A connection's place among the waiting ones; leaves on drop.
struct PendingSlot<'a> {
    inner: &'a Inner,
    id: u64,
    evicted: Arc<tokio::sync::Notify>,
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.inner.pending_lock().waiting.remove(&self.id);
    }
}

impl Inner {
    fn pending_lock(&self) -> std::sync::MutexGuard<'_, PendingHellos> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place among the waiting connections, closing the oldest waiting one first when
    /// the budget is full (it is told through its `Notify`).
    fn pending_enter(&self) -> (u64, Arc<tokio::sync::Notify>) {
        let mut p = self.pending_lock();
        while p.waiting.len() >= self.config.max_pending_hellos {
            let Some(oldest) = p.order.pop_front() else {
                break;
            };
            if let Some(n) = p.waiting.remove(&oldest) {
                n.notify_one();
            }
        }
        // Ids that left stay in `order` until an eviction reaches them; keep it bounded.
        if p.order.len() > 4 * self.config.max_pending_hellos {
            let PendingHellos { order, waiting, .. } = &mut *p;
            order.retain(|id| waiting.contains_key(id));
        }
        let id = p.next;
        p.next += 1;
        let notify = Arc::new(tokio::sync::Notify::new());
        p.order.push_back(id);
        p.waiting.insert(id, notify.clone());
        (id, notify)
    }
}

#[derive(Default)]
struct ListenerCounters {
    accepted: AtomicU64,
    active: AtomicU64,
    aborted: AtomicU64,
    no_sni: AtomicU64,
    invalid_hello: AtomicU64,
    closed_before_hello: AtomicU64,
    hello_timeout: AtomicU64,
    unknown_route: AtomicU64,
    all_endpoints_down: AtomicU64,
    over_limit: AtomicU64,
    hello_evicted: AtomicU64,
    local_resources: AtomicU64,
}

struct RouteCounters {
    kind: RouteKind,
    accepted: AtomicU64,
    active: AtomicU64,
    bytes_to_backend: AtomicU64,
    bytes_to_client: AtomicU64,
    connect_failures: AtomicU64,
    idle_timeouts: AtomicU64,
}

/// Why a connection ended without being relayed.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("client sent an invalid ClientHello")]
    InvalidHello(#[source] HelloError),
    #[error("ClientHello longer than {0} bytes")]
    HelloTooLong(usize),
    #[error("client closed after {0} bytes, before its ClientHello was complete")]
    ClosedBeforeHello(usize),
    #[error("client failed before its ClientHello was complete")]
    ClientIo(#[source] io::Error),
    #[error("no ClientHello within {0:?}")]
    HelloTimeout(Duration),
    #[error("no route")]
    Route(#[source] RouteError),
    #[error("all {tried} endpoint attempts of route {label} failed ({pool} endpoints)")]
    AllEndpointsDown {
        label: Arc<str>,
        tried: usize,
        pool: usize,
    },
    #[error("over the connection limit ({0})")]
    OverLimit(usize),
    #[error("closed while waiting for its ClientHello, to make room for a newer connection")]
    Evicted,
    #[error("closed before its ClientHello: the gateway is shutting down")]
    ShuttingDown,
    #[error("out of local resources to connect")]
    LocalResources(#[source] io::Error),
}

impl Gateway {
    /// A gateway with `config` and the route table `routes`. It listens nowhere until
    /// [`Gateway::listen`] or [`Gateway::serve`] is called.
    pub fn new(config: GatewayConfig, routes: RouteTable) -> Result<Self, ConfigError> {
        validate(&config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                limit: Arc::new(Semaphore::new(config.max_connections)),
                config,
                routes: ArcSwap::from_pointee(routes),
                route_stats: ArcSwap::default(),
                listeners: Default::default(),
                stop_accepting: watch::Sender::new(false),
                abort: watch::Sender::new(false),
                accept_tasks: Mutex::new(Vec::new()),
                pending: Mutex::new(PendingHellos::default()),
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// The route table slot: `gateway.routes().store(Arc::new(table))` swaps the table for new
    /// connections at once, and `load()` reads the current one. Connections that have already
    /// been routed are not touched.
    pub fn routes(&self) -> &ArcSwap<RouteTable> {
        &self.inner.routes
    }

    /// Swaps in a new route table (the same as `routes().store(Arc::new(table))`).
    pub fn set_routes(&self, table: RouteTable) {
        self.inner.routes.store(Arc::new(table));
    }

    /// Binds `addr` and serves it as a `kind` listener; returns the bound address (useful with
    /// port 0).
    pub async fn listen(
        &self,
        kind: ListenerKind,
        addr: SocketAddr,
    ) -> Result<SocketAddr, GatewayError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        self.serve(kind, listener)
    }

    /// Serves an already bound listener as a `kind` listener on the current tokio runtime;
    /// returns its address. Any number of listeners of either kind may run at once.
    pub fn serve(
        &self,
        kind: ListenerKind,
        listener: TcpListener,
    ) -> Result<SocketAddr, GatewayError> {
        if *self.inner.stop_accepting.borrow() {
            return Err(GatewayError::ShutDown);
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| GatewayError::NoRuntime)?;
        let addr = listener.local_addr().map_err(GatewayError::LocalAddr)?;
        info!(listener = kind.as_str(), %addr, "gateway listening");
        let task = handle.spawn(accept_loop(self.inner.clone(), kind, listener));
        self.inner
            .accept_tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
        Ok(addr)
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> GatewayStats {
        let l = |k: ListenerKind| self.inner.listeners[k.index()].snapshot();
        let routes = self
            .inner
            .route_stats
            .load()
            .iter()
            .map(|(label, c)| (label.to_string(), c.snapshot()))
            .collect();
        GatewayStats {
            lan: l(ListenerKind::Lan),
            wan: l(ListenerKind::Wan),
            routes,
        }
    }

    /// Connections held now (reading the hello, connecting or relaying).
    pub fn active_connections(&self) -> usize {
        self.inner.config.max_connections - self.inner.limit.available_permits()
    }

    /// Stops at once without waiting: listeners stop accepting and every connection held is
    /// cut. What dropping an owner of the gateway does; [`Gateway::shutdown`] drains instead.
    pub fn stop_now(&self) {
        self.inner.stop_accepting.send_replace(true);
        self.inner.abort.send_replace(true);
        let tasks = std::mem::take(
            &mut *self
                .inner
                .accept_tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for t in tasks {
            t.abort();
        }
    }

    /// Stops every listener (their sockets are closed), waits up to `drain` for the connections
    /// held to end by themselves, then cuts the ones left. Returns once every connection is
    /// gone. Calling it again only waits again.
    pub async fn shutdown(&self, drain: Duration) -> ShutdownReport {
        self.inner.stop_accepting.send_replace(true);
        let tasks = std::mem::take(
            &mut *self
                .inner
                .accept_tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for t in tasks {
            // An accept loop only ends by the stop signal; a join error means it panicked,
            // which has nothing left to clean up.
            let _ = t.await;
        }
        let active_at_start = self.active_connections();
        info!(
            active = active_at_start,
            ?drain,
            "gateway stopped accepting, draining"
        );
        let all = self.all_permits();
        let drained = tokio::time::timeout(drain, self.inner.limit.acquire_many(all)).await;
        let mut aborted = 0;
        if drained.is_err() {
            aborted = self.active_connections();
            warn!(aborted, "drain deadline passed, cutting connections");
            self.inner.abort.send_replace(true);
            // Every connection task watches the abort signal, so this wait is short.
            let _ = self.inner.limit.acquire_many(all).await;
        }
        info!(aborted, "gateway shut down");
        ShutdownReport {
            active_at_start,
            aborted,
        }
    }

    fn all_permits(&self) -> u32 {
        // Invariant: validate() keeps max_connections within u32.
        u32::try_from(self.inner.config.max_connections).unwrap_or(u32::MAX)
    }
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.inner.config)
            .field("routes", &self.inner.routes.load())
            .field("active", &self.active_connections())
            .finish()
    }
}

impl Inner {
    fn route_counters(&self, route: &Route) -> Arc<RouteCounters> {
        if let Some(c) = self.route_stats.load().get(route.label()) {
            return c.clone();
        }
        // First connection on a label: copy the map once with it added.
        self.route_stats.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(route.label_arc().clone())
                .or_insert_with(|| Arc::new(RouteCounters::new(route.kind())));
            m
        });
        self.route_stats
            .load()
            .get(route.label())
            .cloned()
            .unwrap_or_else(|| Arc::new(RouteCounters::new(route.kind())))
    }
}

impl ListenerCounters {
    fn snapshot(&self) -> ListenerStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ListenerStats {
            accepted: g(&self.accepted),
            active: g(&self.active),
            aborted: g(&self.aborted),
            refused: RefusalStats {
                no_sni: g(&self.no_sni),
                invalid_hello: g(&self.invalid_hello),
                closed_before_hello: g(&self.closed_before_hello),
                hello_timeout: g(&self.hello_timeout),
                unknown_route: g(&self.unknown_route),
                all_endpoints_down: g(&self.all_endpoints_down),
                over_limit: g(&self.over_limit),
                hello_evicted: g(&self.hello_evicted),
                local_resources: g(&self.local_resources),
            },
        }
    }

    fn count(&self, refusal: &Refusal) {
        let c = match refusal {
            Refusal::InvalidHello(_) | Refusal::HelloTooLong(_) => &self.invalid_hello,
            Refusal::ClosedBeforeHello(_) | Refusal::ClientIo(_) => &self.closed_before_hello,
            Refusal::HelloTimeout(_) => &self.hello_timeout,
            Refusal::Route(RouteError::NoSni) => &self.no_sni,
            Refusal::Route(_) => &self.unknown_route,
            Refusal::AllEndpointsDown { .. } => &self.all_endpoints_down,
            Refusal::OverLimit(_) => &self.over_limit,
            Refusal::Evicted => &self.hello_evicted,
            Refusal::ShuttingDown => &self.aborted,
            Refusal::LocalResources(_) => &self.local_resources,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl RouteCounters {
    fn new(kind: RouteKind) -> Self {
        Self {
            kind,
            accepted: AtomicU64::new(0),
            active: AtomicU64::new(0),
            bytes_to_backend: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> RouteStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RouteStats {
            kind: self.kind,
            accepted: g(&self.accepted),
            active: g(&self.active),
            bytes_to_backend: g(&self.bytes_to_backend),
            bytes_to_client: g(&self.bytes_to_client),
            connect_failures: g(&self.connect_failures),
            idle_timeouts: g(&self.idle_timeouts),
        }
    }
}

/// Decrements a gauge when dropped, so an aborted connection is uncounted too.
struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn up(a: &'a AtomicU64) -> Self {
        a.fetch_add(1, Ordering::Relaxed);
        Self(a)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn max_connections_limit() -> usize {
    Semaphore::MAX_PERMITS.min(u32::MAX as usize)
}

fn validate(c: &GatewayConfig) -> Result<(), ConfigError> {
    for (field, d) in [
        ("hello_timeout", c.hello_timeout),
        ("connect_timeout", c.connect_timeout),
        ("idle_timeout", c.idle_timeout),
    ] {
        if d.is_zero() {
            return Err(ConfigError::ZeroTimeout { field });
        }
    }
    if !(MIN_HELLO_LEN..=MAX_BUFFER_LEN).contains(&c.max_hello_len) {
        return Err(ConfigError::MaxHelloLen(c.max_hello_len));
    }
    if !(1..=MAX_BUFFER_LEN).contains(&c.relay_buffer_size) {
        return Err(ConfigError::RelayBufferSize(c.relay_buffer_size));
    }
    if !(1..=max_connections_limit()).contains(&c.max_connections) {
        return Err(ConfigError::MaxConnections(c.max_connections));
    }
    if c.max_pending_hellos == 0 {
        return Err(ConfigError::MaxPendingHellos);
    }
    Ok(())
}

async fn accept_loop(inner: Arc<Inner>, kind: ListenerKind, listener: TcpListener) {
    let counters = &inner.listeners[kind.index()];
    let mut stop = inner.stop_accepting.subscribe();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        let (socket, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and similar: back off a little instead of spinning.
                warn!(listener = kind.as_str(), error = %e, "accept failed");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    () = tokio::time::sleep(Duration::from_millis(20)) => continue,
                }
            }
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection(inner.clone(), kind, socket, peer));
    }
    debug!(listener = kind.as_str(), "listener closed");
}

async fn connection(
    inner: Arc<Inner>,
    kind: ListenerKind,
    mut client: TcpStream,
    peer: SocketAddr,
) {
    let counters = &inner.listeners[kind.index()];
    let _active = Gauge::up(&counters.active);
    let mut abort = inner.abort.subscribe();
    debug!(listener = kind.as_str(), %peer, "connection accepted");
    let outcome = tokio::select! {
        r = handle(&inner, kind, &mut client, peer) => r,
        _ = abort.wait_for(|a| *a) => {
            counters.aborted.fetch_add(1, Ordering::Relaxed);
            debug!(listener = kind.as_str(), %peer, "connection cut by shutdown");
            return;
        }
    };
    if let Err(refusal) = outcome {
        counters.count(&refusal);
        let reason = error_chain(&refusal);
        match refusal {
            Refusal::AllEndpointsDown { .. }
            | Refusal::OverLimit(_)
            | Refusal::LocalResources(_) => {
                warn!(listener = kind.as_str(), %peer, %reason, "connection refused");
            }
            Refusal::Evicted | Refusal::ShuttingDown => {
                debug!(listener = kind.as_str(), %peer, %reason, "connection closed");
            }
            _ => info!(listener = kind.as_str(), %peer, %reason, "connection refused"),
        }
    }
}

async fn handle(
    inner: &Inner,
    kind: ListenerKind,
    client: &mut TcpStream,
    peer: SocketAddr,
) -> Result<(), Refusal> {
    let cfg = &inner.config;
    let started = Instant::now();
    let (id, evicted) = inner.pending_enter();
    let mut stopping = inner.stop_accepting.subscribe();
    let slot = PendingSlot { inner, id, evicted };
    let mut hello = Vec::with_capacity(2048);
    let route = tokio::select! {
        r = tokio::time::timeout(
            cfg.hello_timeout,
            read_hello(client, &mut hello, cfg.max_hello_len, &inner.routes),
        ) => r.map_err(|_| Refusal::HelloTimeout(cfg.hello_timeout))??,
        () = slot.evicted.notified() => return Err(Refusal::Evicted),
        // A gateway that stops accepting has no use for a connection still without a hello.
        _ = stopping.wait_for(|s| *s) => return Err(Refusal::ShuttingDown),
    };
    drop(slot);
    // Routed: only now does the connection count against the connection limit.
    let _permit: OwnedSemaphorePermit = inner
        .limit
        .clone()
        .try_acquire_owned()
        .map_err(|_| Refusal::OverLimit(cfg.max_connections))?;

    let stats = inner.route_counters(&route);
    stats.accepted.fetch_add(1, Ordering::Relaxed);
    let (mut backend, endpoint) = connect(cfg, &route, &stats).await?;
    let _active = Gauge::up(&stats.active);
    debug!(listener = kind.as_str(), %peer, route = route.label(), %endpoint, "relaying");
    // Latency matters more than segment count for the small records of a TLS handshake.
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);

    let result = async {
        backend.write_all(&hello).await?;
        stats
            .bytes_to_backend
            .fetch_add(hello.len() as u64, Ordering::Relaxed);
        drop(std::mem::take(&mut hello));
        relay(client, &mut backend, cfg, &stats).await
    }
    .await;
    match result {
        Ok(()) => debug!(listener = kind.as_str(), %peer, route = route.label(),
            elapsed = ?started.elapsed(), "connection closed"),
        Err(e) => debug!(listener = kind.as_str(), %peer, route = route.label(),
            error = %e, elapsed = ?started.elapsed(), "connection ended with an error"),
    }
    Ok(())
}

/// Reads into `buf` until it holds a complete ClientHello of at most `max` bytes, then routes
/// it. The buffer never grows past [`buffer_limit`]`(max)`: the hello plus the headers of the
/// records it may be split into.
async fn read_hello(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    routes: &ArcSwap<RouteTable>,
) -> Result<Route, Refusal> {
    let cap = buffer_limit(max);
    loop {
        let room = cap.saturating_sub(buf.len());
        if room == 0 {
            // The parser promises an answer before this; kept as a bound of its own.
            return Err(Refusal::HelloTooLong(max));
        }
        let n = client
            .read_buf(&mut (&mut *buf).limit(room))
            .await
            .map_err(Refusal::ClientIo)?;
        if n == 0 {
            return Err(Refusal::ClosedBeforeHello(buf.len()));
        }
        match parse_client_hello(buf, max) {
            Parse::Done(hello) => {
                let sni = hello.server_name();
                debug!(sni, "ClientHello read");
                return routes.load().route(sni).map_err(Refusal::Route);
            }
            Parse::Invalid(e) => return Err(Refusal::InvalidHello(e)),
            // NeedMore (and any outcome added later): read on; the buffer cap bounds this.
            _ => {}
        }
    }
}

/// Connects to the route's endpoints in round-robin order, each up endpoint at most once.
async fn connect(
    cfg: &GatewayConfig,
    route: &Route,
    stats: &RouteCounters,
) -> Result<(TcpStream, SocketAddr), Refusal> {
    let pool = route.pool();
    let mut tried = 0;
    // Every endpoint held off after failures: try them all anyway (panic mode) rather than
    // refuse what may work again by now.
    let mut up = pool.candidates();
    let first = up.next();
    let held_off_too: Vec<SocketAddr> = if first.is_none() {
        pool.held_off().collect()
    } else {
        Vec::new()
    };
    for addr in first.into_iter().chain(up).chain(held_off_too) {
        tried += 1;
        let error = match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await
        {
            Ok(Ok(stream)) => return Ok((stream, addr)),
            // Out of descriptors, buffers or ports here: no endpoint's fault, and every other
            // endpoint would meet the same. Refuse this connection, hold nobody off.
            Ok(Err(e)) if crate::pool::local_exhaustion(&e) => {
                return Err(Refusal::LocalResources(e));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", cfg.connect_timeout),
        };
        stats.connect_failures.fetch_add(1, Ordering::Relaxed);
        pool.hold_off(addr, cfg.endpoint_hold_off);
        warn!(route = route.label(), endpoint = %addr, %error,
            hold_off = ?cfg.endpoint_hold_off, "connect failed, trying the next endpoint");
    }
    Err(Refusal::AllEndpointsDown {
        label: route.label_arc().clone(),
        tried,
        pool: pool.len(),
    })
}

/// The relay between client and backend (see [`crate::relay()`]), counting bytes per route and
/// idle time-outs.
async fn relay(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    cfg: &GatewayConfig,
    stats: &RouteCounters,
) -> io::Result<()> {
    let limits = RelayLimits::new(cfg.relay_buffer_size, cfg.idle_timeout);
    let counters = RelayCounters {
        a_to_b: Some(&stats.bytes_to_backend),
        b_to_a: Some(&stats.bytes_to_client),
    };
    match crate::relay::relay(client, backend, limits, counters).await {
        Ok(_) => Ok(()),
        Err(e) => {
            if e.kind() == io::ErrorKind::TimedOut {
                stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let d = GatewayConfig::default();
        assert_eq!(d.hello_timeout, Duration::from_secs(5));
        assert_eq!(d.connect_timeout, Duration::from_secs(2));
        assert_eq!(d.max_hello_len, 16 * 1024);
        assert_eq!(d.relay_buffer_size, 64 * 1024);
        assert_eq!(validate(&d), Ok(()));
        let bad = |f: fn(&mut GatewayConfig)| {
            let mut c = GatewayConfig::default();
            f(&mut c);
            validate(&c).unwrap_err()
        };
        assert_eq!(
            bad(|c| c.hello_timeout = Duration::ZERO),
            ConfigError::ZeroTimeout {
                field: "hello_timeout"
            }
        );
        assert_eq!(
            bad(|c| c.connect_timeout = Duration::ZERO),
            ConfigError::ZeroTimeout {
                field: "connect_timeout"
            }
        );
        assert_eq!(
            bad(|c| c.idle_timeout = Duration::ZERO),
            ConfigError::ZeroTimeout {
                field: "idle_timeout"
            }
        );
        assert_eq!(bad(|c| c.max_hello_len = 10), ConfigError::MaxHelloLen(10));
        assert_eq!(
            bad(|c| c.relay_buffer_size = 0),
            ConfigError::RelayBufferSize(0)
        );
        assert_eq!(
            bad(|c| c.max_connections = 0),
            ConfigError::MaxConnections(0)
        );
        assert!(matches!(
            bad(|c| c.max_connections = usize::MAX),
            ConfigError::MaxConnections(_)
        ));
    }

    #[test]
    fn refusal_stats_add_up() {
        let s = GatewayStats {
            lan: ListenerStats {
                refused: RefusalStats {
                    no_sni: 1,
                    over_limit: 2,
                    ..Default::default()
                },
                ..Default::default()
            },
            wan: ListenerStats {
                refused: RefusalStats {
                    no_sni: 3,
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(s.refused().no_sni, 4);
        assert_eq!(s.refused().total(), 6);
        assert!(s.to_string().contains("lan: accepted 0"));
    }
}
