//! The mesh gateway data plane: read the SNI of a TLS ClientHello, decide where the connection
//! goes, and forward its bytes there untouched.
//!
//! * [`hello`]: an incremental, zero-copy ClientHello parser (done / need more / invalid).
//! * Routing: the [`RouteTable`] from SNI names to endpoint pools, following Consul's mesh
//!   gateway rules: a service of the gateway's own datacenter goes to its instances, anything
//!   addressed to another datacenter goes to that datacenter's gateways, exact host names take
//!   precedence, and everything else is refused with a typed [`RouteError`].
//! * Endpoints: [`Pool`]s picked round-robin without locks, skipping endpoints marked
//!   down or held off after a failed connect.
//! * The tokio [`Gateway`]: LAN and WAN listeners, a bounded and timed ClientHello
//!   read, connect with failover, a two-way relay with half-close, a connection limit, a
//!   graceful shutdown, counters, and a route table swapped atomically at run time.
//!
//! What this crate does not do: it never terminates TLS, holds no key and sees no plaintext
//! (peers authenticate each other end to end through it); it does not watch a catalog (the
//! `mesh` crate feeds route tables built from the catalog into [`Gateway::set_routes`]); it
//! does not check endpoint health on its own beyond holding off an endpoint whose connect
//! failed.
//!
//! ```
//! use std::net::SocketAddr;
//! use mesh_sni::{Pool, RouteKind, RouteTable};
//!
//! let td = "11111111-2222-3333-4444-555555555555.consul";
//! let web: SocketAddr = "127.0.0.1:21000".parse()?;
//! let dc2_gateway: SocketAddr = "192.0.2.10:8443".parse()?;
//! let table = RouteTable::builder("dc1".parse()?, td.parse()?)
//!     .service("web".parse()?, Pool::new([web]))
//!     .datacenter("dc2".parse()?, Pool::new([dc2_gateway]))
//!     .build()?;
//!
//! let local = table.route(Some(&format!("web.default.dc1.internal.{td}")))?;
//! assert_eq!((local.kind(), local.pool().pick()), (RouteKind::LocalService, Some(web)));
//!
//! let remote = table.route(Some(&format!("api.default.dc2.internal.{td}")))?;
//! assert_eq!(remote.kind(), RouteKind::RemoteGateway);
//! assert_eq!(remote.label(), format!("dc2.internal.{td}"));
//!
//! assert!(table.route(Some("example.org")).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
// Tests may unwrap: a panic there is a failed test, not a crash on peer input.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod gateway;
pub mod hello;
mod pool;
mod relay;
mod router;

// One path per item: the gateway, pools and routes at the root; the ClientHello parser, a
// namespace of its own, under `hello`.
pub use gateway::{
    ConfigError, DEFAULT_CONNECT_TIMEOUT, DEFAULT_ENDPOINT_HOLD_OFF, DEFAULT_HELLO_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING_HELLOS,
    DEFAULT_RELAY_BUFFER_SIZE, Gateway, GatewayConfig, GatewayError, GatewayStats, ListenerKind,
    ListenerStats, MAX_BUFFER_LEN, MIN_HELLO_LEN, RefusalStats, RouteStats, ShutdownReport,
};
pub use pool::{Candidates, EndpointState, Pool, local_exhaustion};
pub use relay::{RELAY_START_BUFFER, RelayCounters, RelayLimits, RelayTotals, relay};
pub use router::{Route, RouteConfigError, RouteError, RouteKind, RouteTable, RouteTableBuilder};
