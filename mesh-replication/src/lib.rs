//! Versioned datacenter state, blocking queries, replication from the primary datacenter, write
//! forwarding, and the transports between datacenters.
//!
//! * State: a [`Store`] holds named tables of [`Record`]s; every write takes the next value of one
//!   monotonic [`Index`], transactions are atomic, writes can check-and-set, and
//!   [`Store::wait_table`] is the blocking query. [`MemoryStore`] and [`DurableStore`] (on disk,
//!   crash-safe) implement it, and with the `etcd` feature `EtcdStore` (an etcd v3 cluster
//!   shared by several servers of one datacenter; needs `protoc` to build).
//! * Replication: a [`TableRegistry`] marks tables [`Scope::Global`] or [`Scope::Local`]; in a
//!   secondary, [`Replicas`] runs one replicator per global table that long-polls the primary,
//!   [`diff()`]s the complete listing against the local copy and applies it in batches, with a
//!   rate limit, backoff with jitter, a [`ReplicationStatus`] and a persisted remote index.
//!   Local records are deleted only because the primary's complete listing lacks them.
//! * Forwarding: a [`Forwarder`] sends writes of global tables made in a secondary to the
//!   primary; [`Replicas::wait_for_index`] then gives read-your-writes.
//! * Transports: the [`Transport`] trait, [`InProcessTransport`] and [`FramedTransport`]
//!   (length-prefixed frames over TCP or mTLS, see [`transport::tls`]); the primary side is
//!   [`ReplicationServer`], which checks each request's [`SecretToken`] with an [`Authorizer`].
//!
//! This crate knows records, tables and indexes, not what they mean: ACL objects, intentions and
//! config entries are stored as values by the layers above, which also provide the real
//! authorizer and the certificates. There is no consensus here: several servers of a
//! datacenter share one state only through a store that provides it (etcd).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use mesh_replication::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policies: TableName = "acl-policies".parse()?;
//! let registry = TableRegistry::new().with(policies.clone(), Scope::Global)?;
//! let allow: Arc<dyn Authorizer> = Arc::new(danger::AllowAll);
//!
//! // The primary datacenter and its server side.
//! let primary: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let server = Arc::new(ReplicationServer::new(registry.clone(), primary.clone(), allow.clone()));
//!
//! // A secondary replicating from it in process.
//! let link: Arc<dyn Transport> = Arc::new(InProcessTransport::new(server));
//! let secondary: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let token = SecretToken::new("replication-token");
//! let replicas = Replicas::spawn(&registry, secondary.clone(), link.clone(),
//!     ReplicatorConfig::new(token.clone()));
//!
//! // A write made in the secondary is forwarded, then read back locally.
//! let writes = Forwarder::secondary(registry, secondary.clone(), allow, link);
//! let receipt = writes.write(&token, vec![TxnOp::Upsert {
//!     table: policies.clone(), id: "global-management".into(),
//!     value: Value::json(serde_json::json!({"rules": "acl = \"write\""})), cas: Some(Index::ZERO),
//! }]).await?;
//! assert!(receipt.forwarded);
//! replicas.wait_for_index(&policies, receipt.index, Duration::from_secs(5)).await?;
//! assert!(secondary.get(&policies, "global-management").await?.is_some());
//! replicas.stop().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod auth;
mod diff;
mod forward;
pub mod frame;
mod message;
mod record;
mod replicator;
mod server;
mod store;
mod table;
mod transport;

// One path per item: everything at the root, but for two namespaces of their own: the wire
// codec (`frame`) and the mTLS connector (`tls`), and the authorizer that allows everything
// (`danger`).
pub use auth::{Authorizer, Denied, DeniedKind, Op, SecretToken, danger};
pub use diff::{Diff, DiffItem, diff};
pub use forward::{Forwarder, WriteError, WriteReceipt};
pub use mesh_core::Index;
pub use record::{ContentHash, InvalidId, MAX_ID_LEN, Record, TxnOp, Value, validate_id};
pub use replicator::{
    Backoff, LastError, RateLimit, RecordCheck, Replicas, ReplicationStatus, ReplicatorConfig,
    ReplicatorHandle, STATE_TABLE, WaitError, spawn as spawn_replicator,
};
pub use server::{
    DEFAULT_MAX_WAIT, Enroller, ReplicationServer, ServeConfig, ServerHandle, SideProtocol,
};
pub use store::{DurableStore, Inconsistency, Listing, MemoryStore, Store, StoreError};
#[cfg(feature = "etcd")]
pub use store::{ETCD_DEFAULT_MAX_TXN_OPS, EtcdOptions, EtcdStore, EtcdTls, Leadership};
pub use table::{
    DuplicateTable, MAX_TABLE_NAME_LEN, Scope, TableName, TableNameError, TableRegistry,
};
pub use transport::{
    ApplyRequest, CompleteListing, Connector, EnrollRequest, Fault, FramedConfig, FramedTransport,
    InProcessTransport, Link, ListRequest, RemoteError, RemoteErrorKind, TcpConnector, Transport,
    TransportError, tls,
};
