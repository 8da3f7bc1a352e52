//! The durable store on disk, on top of the `redb` embedded database.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use mesh_core::Index;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

use super::txn::{Effect, stage};
use super::{Listing, Store, StoreError, check_ids};
use crate::record::{ContentHash, Record, TxnOp, Value};
use crate::table::TableName;

const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("mesh_records");
const TABLES: TableDefinition<&str, u64> = TableDefinition::new("mesh_tables");
const META: TableDefinition<&str, u64> = TableDefinition::new("mesh_meta");
const META_INDEX: &str = "index";
const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 8 + 8 + 32 + 1;

/// A [`Store`] in one file on disk that survives restarts and crashes.
///
/// Every transaction is one `redb` write transaction committed with immediate durability
/// (fsync), so a write acknowledged by [`Store::txn`] is on disk, and a process killed in the
/// middle of a write leaves the previous committed state. All file I/O runs on tokio's blocking
/// pool (`spawn_blocking`), never on the async workers. Indexes are mirrored in memory so that
/// [`Store::index`] and blocking queries cost no I/O. One process opens a file at a time.
#[derive(Clone)]
pub struct DurableStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    index: AtomicU64,
    watchers: RwLock<HashMap<TableName, watch::Sender<Index>>>,
}

impl std::fmt::Debug for DurableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStore")
            .field("path", &self.inner.path)
            .field("index", &self.inner.index.load(Ordering::Acquire))
            .finish()
    }
}

/// One broken invariant found by [`DurableStore::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inconsistency {
    /// A record's stored hash does not match its value.
    HashMismatch {
        /// The table.
        table: String,
        /// The record id.
        id: String,
    },
    /// A record does not decode.
    Undecodable {
        /// The table.
        table: String,
        /// The record id.
        id: String,
    },
    /// A record's modify index is above its table's index, or its create index above its
    /// modify index.
    IndexOrder {
        /// The table.
        table: String,
        /// The record id.
        id: String,
    },
    /// A table index is above the datacenter index.
    TableAhead {
        /// The table.
        table: String,
    },
    /// The datacenter index is not the highest table index.
    IndexNotMax {
        /// The datacenter index.
        index: u64,
        /// The highest table index.
        max_table: u64,
    },
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Database(e.into())
}

impl DurableStore {
    /// Opens (or creates) the store file at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(StoreError::Worker)?
    }

    fn open_blocking(path: PathBuf) -> Result<Self, StoreError> {
        let db = Database::create(&path).map_err(db_err)?;
        let w = db.begin_write().map_err(db_err)?;
        w.open_table(RECORDS).map_err(db_err)?;
        w.open_table(TABLES).map_err(db_err)?;
        w.open_table(META).map_err(db_err)?;
        w.commit().map_err(db_err)?;
        let r = db.begin_read().map_err(db_err)?;
        let meta = r.open_table(META).map_err(db_err)?;
        let index = meta
            .get(META_INDEX)
            .map_err(db_err)?
            .map_or(0, |g| g.value());
        let tables = r.open_table(TABLES).map_err(db_err)?;
        let mut watchers = HashMap::new();
        for item in tables.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let name = TableName::new(k.value())
                .map_err(|e| StoreError::Corrupt(format!("table name: {e}")))?;
            watchers.insert(name, watch::Sender::new(Index(v.value())));
        }
        drop((meta, tables, r));
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                path,
                index: AtomicU64::new(index),
                watchers: RwLock::new(watchers),
            }),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Reads the whole file and reports every broken invariant (none in a healthy store).
    pub async fn verify(&self) -> Result<Vec<Inconsistency>, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.verify())
            .await
            .map_err(StoreError::Worker)?
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(StoreError::Worker)?
    }
}

impl Inner {
    fn watcher(&self, table: &TableName) -> watch::Sender<Index> {
        if let Some(w) = self
            .watchers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(table)
        {
            return w.clone();
        }
        self.watchers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(table.clone())
            .or_insert_with(|| watch::Sender::new(Index::ZERO))
            .clone()
    }

    fn get(&self, table: &TableName, id: &str) -> Result<Option<Record>, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(RECORDS).map_err(db_err)?;
        let Some(v) = t.get((table.as_str(), id)).map_err(db_err)? else {
            return Ok(None);
        };
        decode_record(id, v.value()).map(Some)
    }

    fn list(&self, table: &TableName) -> Result<Listing, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let tables = r.open_table(TABLES).map_err(db_err)?;
        let index = Index(
            tables
                .get(table.as_str())
                .map_err(db_err)?
                .map_or(0, |g| g.value()),
        );
        let t = r.open_table(RECORDS).map_err(db_err)?;
        let mut records = Vec::new();
        for item in t.range((table.as_str(), "")..).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let (tn, id) = k.value();
            if tn != table.as_str() {
                break;
            }
            records.push(decode_record(id, v.value())?);
        }
        Ok(Listing { index, records })
    }

    fn commit(&self, ops: Vec<TxnOp>) -> Result<Index, StoreError> {
        check_ids(&ops)?;
        let names: BTreeSet<TableName> = ops.iter().map(|o| o.table().clone()).collect();
        let w = self.db.begin_write().map_err(db_err)?;
        let idx;
        {
            let mut records = w.open_table(RECORDS).map_err(db_err)?;
            let mut tables = w.open_table(TABLES).map_err(db_err)?;
            let mut meta = w.open_table(META).map_err(db_err)?;
            let effects = stage(ops, |table, id| {
                match records.get((table.as_str(), id)).map_err(db_err)? {
                    None => Ok(None),
                    Some(v) => {
                        let (c, m) = decode_indexes(v.value())?;
                        Ok(Some((c, m)))
                    }
                }
            })?;
            idx = Index(
                meta.get(META_INDEX)
                    .map_err(db_err)?
                    .map_or(0, |g| g.value()),
            )
            .next();
            for ((table, id), effect) in effects {
                match effect {
                    Effect::Put { value, create } => {
                        let bytes = encode_record(
                            create.unwrap_or(idx),
                            idx,
                            &value.content_hash(),
                            &value,
                        );
                        records
                            .insert((table.as_str(), id.as_str()), bytes.as_slice())
                            .map_err(db_err)?;
                    }
                    Effect::Remove => {
                        records
                            .remove((table.as_str(), id.as_str()))
                            .map_err(db_err)?;
                    }
                }
            }
            for name in &names {
                tables.insert(name.as_str(), idx.0).map_err(db_err)?;
            }
            meta.insert(META_INDEX, idx.0).map_err(db_err)?;
        }
        w.commit().map_err(db_err)?;
        // Writers are serialised by redb, but the notifications below run after the commit
        // lock is released: keep the maximum so an index never goes backwards.
        self.index.fetch_max(idx.0, Ordering::AcqRel);
        for name in &names {
            self.watcher(name).send_if_modified(|cur| {
                let newer = idx > *cur;
                if newer {
                    *cur = idx;
                }
                newer
            });
        }
        Ok(idx)
    }

    fn verify(&self) -> Result<Vec<Inconsistency>, StoreError> {
        let mut found = Vec::new();
        let r = self.db.begin_read().map_err(db_err)?;
        let meta = r.open_table(META).map_err(db_err)?;
        let index = meta
            .get(META_INDEX)
            .map_err(db_err)?
            .map_or(0, |g| g.value());
        let tables = r.open_table(TABLES).map_err(db_err)?;
        let mut table_index = BTreeMap::new();
        for item in tables.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            table_index.insert(k.value().to_owned(), v.value());
            if v.value() > index {
                found.push(Inconsistency::TableAhead {
                    table: k.value().to_owned(),
                });
            }
        }
        let max_table = table_index.values().copied().max().unwrap_or(0);
        if max_table != index {
            found.push(Inconsistency::IndexNotMax { index, max_table });
        }
        let records = r.open_table(RECORDS).map_err(db_err)?;
        for item in records.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let (table, id) = k.value();
            let (table, id) = (table.to_owned(), id.to_owned());
            match decode_record(&id, v.value()) {
                Err(_) => found.push(Inconsistency::Undecodable { table, id }),
                Ok(rec) => {
                    let ti = table_index.get(&table).copied().unwrap_or(0);
                    if rec.value.content_hash() != rec.hash {
                        found.push(Inconsistency::HashMismatch {
                            table: table.clone(),
                            id: id.clone(),
                        });
                    }
                    if rec.modify_index.0 > ti || rec.create_index > rec.modify_index {
                        found.push(Inconsistency::IndexOrder { table, id });
                    }
                }
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl Store for DurableStore {
    fn index(&self) -> Index {
        Index(self.inner.index.load(Ordering::Acquire))
    }

    fn table_index(&self, table: &TableName) -> Index {
        self.inner
            .watchers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(table)
            .map_or(Index::ZERO, |w| *w.borrow())
    }

    async fn get(&self, table: &TableName, id: &str) -> Result<Option<Record>, StoreError> {
        let (table, id) = (table.clone(), id.to_owned());
        self.blocking(move |i| i.get(&table, &id)).await
    }

    async fn list(&self, table: &TableName) -> Result<Listing, StoreError> {
        let table = table.clone();
        self.blocking(move |i| i.list(&table)).await
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Index, StoreError> {
        self.blocking(move |i| i.commit(ops)).await
    }

    async fn wait_table(
        &self,
        table: &TableName,
        after: Index,
        timeout: Duration,
    ) -> Result<Index, StoreError> {
        let mut rx = self.inner.watcher(table).subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|i| *i > after)).await;
        drop(waited);
        let current = *rx.borrow();
        Ok(current)
    }
}

fn encode_record(create: Index, modify: Index, hash: &ContentHash, value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + value.estimated_size());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&create.0.to_be_bytes());
    out.extend_from_slice(&modify.0.to_be_bytes());
    out.extend_from_slice(hash.as_bytes());
    super::push_value(&mut out, value);
    out
}

fn decode_indexes(b: &[u8]) -> Result<(Index, Index), StoreError> {
    if b.len() < HEADER_LEN || b[0] != FORMAT_VERSION {
        return Err(StoreError::Corrupt("record header".into()));
    }
    let c = u64::from_be_bytes(b[1..9].try_into().map_err(|_| corrupt_header())?);
    let m = u64::from_be_bytes(b[9..17].try_into().map_err(|_| corrupt_header())?);
    Ok((Index(c), Index(m)))
}

fn corrupt_header() -> StoreError {
    StoreError::Corrupt("record header".into())
}

fn decode_record(id: &str, b: &[u8]) -> Result<Record, StoreError> {
    let (create_index, modify_index) = decode_indexes(b)?;
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&b[17..49]);
    let value = super::read_value(id, &b[HEADER_LEN - 1..])?;
    Ok(Record {
        id: id.to_owned(),
        value,
        create_index,
        modify_index,
        hash: ContentHash(hash),
    })
}
