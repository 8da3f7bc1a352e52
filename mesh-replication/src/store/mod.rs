//! The [`Store`] trait a datacenter's state lives behind, and its implementations.
//!
//! A store holds named tables of [`Record`]s. Every write, whatever it touches, takes the next
//! value of ONE monotonic [`Index`] of the datacenter; each table remembers the index of the last
//! write that touched it, and [`Store::wait_table`] blocks until that table index passes a value
//! (the long-poll that replication and watchers use).

use std::time::Duration;

use async_trait::async_trait;
use mesh_core::Index;

use crate::record::{InvalidId, Record, TxnOp, Value};
use crate::table::TableName;

mod durable;
#[cfg(feature = "etcd")]
mod etcd;
mod memory;
mod txn;

pub use durable::{DurableStore, Inconsistency};
#[cfg(feature = "etcd")]
pub use etcd::{ETCD_DEFAULT_MAX_TXN_OPS, EtcdOptions, EtcdStore, EtcdTls, Leadership};
pub use memory::MemoryStore;

/// The records of one table and the table index they reflect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The table index at the time of the read: every write up to it is included.
    pub index: Index,
    /// The records, sorted by id.
    pub records: Vec<Record>,
}

/// What a store refuses or fails at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A check-and-set did not match; nothing of the transaction was applied.
    #[error(
        "check-and-set failed on {table}/{id}: expected modify index {expected}, found {found:?}"
    )]
    CasConflict {
        /// The table.
        table: TableName,
        /// The record id.
        id: String,
        /// The index the caller expected (0 = absent).
        expected: Index,
        /// The modify index found, `None` when the record is absent.
        found: Option<Index>,
    },
    /// A record id is malformed.
    #[error("invalid record id {id:?}")]
    InvalidId {
        /// The id (cut to 64 bytes).
        id: String,
        /// Why.
        #[source]
        source: InvalidId,
    },
    /// The transaction has no operation.
    #[error("empty transaction")]
    EmptyTransaction,
    /// The embedded database failed.
    #[error("durable store: {0}")]
    Database(#[from] redb::Error),
    /// Bytes read back from disk do not decode.
    #[error("durable store holds a corrupt entry: {0}")]
    Corrupt(String),
    /// The blocking task running the I/O did not finish.
    #[error("store worker task failed")]
    Worker(#[source] tokio::task::JoinError),
    /// A transaction holds more operations than the store takes in one atomic write (etcd's
    /// `--max-txn-ops`); nothing was applied. It is refused, never split.
    #[error("a transaction of {operations} operations exceeds the store's limit of {limit}")]
    TooManyOperations {
        /// The operations the transaction needs (records touched plus table indexes).
        operations: usize,
        /// The limit.
        limit: usize,
    },
    /// The etcd cluster could not be reached or refused the request (no quorum, time-out,
    /// permission); nothing of a write is known to be applied unless it was acknowledged.
    #[cfg(feature = "etcd")]
    #[error("etcd: {0}")]
    Etcd(String),
    /// This server's leadership of its datacenter lapsed (see `EtcdStore::lead`): the write
    /// was not applied, and another server leads now.
    #[cfg(feature = "etcd")]
    #[error("this server no longer leads its datacenter")]
    NotLeader,
}

/// A datacenter's versioned tables.
///
/// Implementations promise: writes are atomic (a transaction is applied entirely or not at all)
/// and take exactly one new datacenter index; `index()` and `table_index()` never go backwards;
/// a listing reflects every write up to its `index`; `wait_table` wakes without polling.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The datacenter index: the index of the last committed write.
    fn index(&self) -> Index;

    /// The index of the last write that touched `table` (`Index::ZERO` if none).
    fn table_index(&self, table: &TableName) -> Index;

    /// One record, `None` when absent.
    async fn get(&self, table: &TableName, id: &str) -> Result<Option<Record>, StoreError>;

    /// Every record of a table, sorted by id, with the table index the listing reflects.
    async fn list(&self, table: &TableName) -> Result<Listing, StoreError>;

    /// Applies every operation or none, in order, as one write with one new index, which is
    /// returned. Check-and-set failures leave the store untouched.
    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Index, StoreError>;

    /// Waits until the index of `table` is greater than `after` or `timeout` passed, and returns
    /// the table index at that moment (which is `<= after` on time-out).
    async fn wait_table(
        &self,
        table: &TableName,
        after: Index,
        timeout: Duration,
    ) -> Result<Index, StoreError>;

    /// Creates or replaces one record (see [`TxnOp::Upsert`] for `cas`).
    async fn upsert(
        &self,
        table: &TableName,
        id: &str,
        value: Value,
        cas: Option<Index>,
    ) -> Result<Index, StoreError> {
        self.txn(vec![TxnOp::Upsert {
            table: table.clone(),
            id: id.to_owned(),
            value,
            cas,
        }])
        .await
    }

    /// Removes one record (see [`TxnOp::Delete`] for `cas`).
    async fn delete(
        &self,
        table: &TableName,
        id: &str,
        cas: Option<Index>,
    ) -> Result<Index, StoreError> {
        self.txn(vec![TxnOp::Delete {
            table: table.clone(),
            id: id.to_owned(),
            cas,
        }])
        .await
    }
}

pub(crate) fn check_ids(ops: &[TxnOp]) -> Result<(), StoreError> {
    if ops.is_empty() {
        return Err(StoreError::EmptyTransaction);
    }
    for op in ops {
        crate::record::validate_id(op.id()).map_err(|source| StoreError::InvalidId {
            id: op.id().chars().take(64).collect(),
            source,
        })?;
    }
    Ok(())
}

/// Appends `value` as `[tag][payload]` (tag 0: the bytes; tag 1: JSON text): how both the
/// durable and the etcd store end a stored record.
pub(crate) fn push_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bytes(b) => {
            out.push(0);
            out.extend_from_slice(b);
        }
        Value::Json(j) => {
            out.push(1);
            // Writing JSON into a Vec cannot fail for a `serde_json::Value`.
            let _ = serde_json::to_writer(out, &**j);
        }
    }
}

/// Reads back what [`push_value`] wrote; `id` names the record in errors.
pub(crate) fn read_value(id: &str, tagged: &[u8]) -> Result<Value, StoreError> {
    match tagged.split_first() {
        Some((0, payload)) => Ok(Value::Bytes(bytes::Bytes::copy_from_slice(payload))),
        Some((1, payload)) => Ok(Value::json(
            serde_json::from_slice(payload)
                .map_err(|e| StoreError::Corrupt(format!("record {id}: {e}")))?,
        )),
        Some((t, _)) => Err(StoreError::Corrupt(format!("record {id}: value tag {t}"))),
        None => Err(StoreError::Corrupt(format!("record {id}: no value"))),
    }
}
