//! The in-memory store: one `RwLock` per table for readers, writers serialised.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use mesh_core::Index;
use tokio::sync::watch;

use super::txn::{Effect, stage};
use super::{Listing, Store, StoreError, check_ids};
use crate::record::{Record, TxnOp};
use crate::table::TableName;

/// A [`Store`] in memory: the default for examples and tests.
///
/// Readers take only the read lock of the table they read; writers are serialised by one short
/// mutex (held while the in-memory maps change, never across an `.await`), so the datacenter
/// index is handed out in commit order and every write up to `index()` is visible.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: RwLock<HashMap<TableName, Arc<MemTable>>>,
    index: AtomicU64,
    writer: Mutex<()>,
}

#[derive(Debug)]
struct MemTable {
    records: RwLock<BTreeMap<String, Record>>,
    index: watch::Sender<Index>,
}

impl MemoryStore {
    /// An empty store at index 0.
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&self, name: &TableName) -> Arc<MemTable> {
        if let Some(t) = self
            .tables
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return t.clone();
        }
        self.tables
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(MemTable {
                    records: RwLock::new(BTreeMap::new()),
                    index: watch::Sender::new(Index::ZERO),
                })
            })
            .clone()
    }

    fn existing(&self, name: &TableName) -> Option<Arc<MemTable>> {
        self.tables
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn commit(&self, ops: Vec<TxnOp>) -> Result<Index, StoreError> {
        check_ids(&ops)?;
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let names: BTreeSet<TableName> = ops.iter().map(|o| o.table().clone()).collect();
        let tables: BTreeMap<TableName, Arc<MemTable>> = names
            .into_iter()
            .map(|n| (n.clone(), self.table(&n)))
            .collect();
        let effects = stage(ops, |table, id| {
            Ok(tables.get(table).and_then(|t| {
                t.records
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(id)
                    .map(|r| (r.create_index, r.modify_index))
            }))
        })?;
        let idx = Index(self.index.load(Ordering::Acquire)).next();
        let mut by_table: BTreeMap<&TableName, Vec<(String, Effect)>> = BTreeMap::new();
        for ((table, id), e) in effects {
            if let Some((name, _)) = tables.get_key_value(&table) {
                by_table.entry(name).or_default().push((id, e));
            }
        }
        for (name, table) in &tables {
            {
                let mut records = table
                    .records
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                for (id, effect) in by_table.remove(name).unwrap_or_default() {
                    match effect {
                        Effect::Put { value, create } => {
                            let hash = value.content_hash();
                            records.insert(
                                id.clone(),
                                Record {
                                    id,
                                    value,
                                    create_index: create.unwrap_or(idx),
                                    modify_index: idx,
                                    hash,
                                },
                            );
                        }
                        Effect::Remove => {
                            records.remove(&id);
                        }
                    }
                }
                // Under the write lock, so a listing's index always matches its records.
                table.index.send_replace(idx);
            }
        }
        self.index.store(idx.0, Ordering::Release);
        Ok(idx)
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn index(&self) -> Index {
        Index(self.index.load(Ordering::Acquire))
    }

    fn table_index(&self, table: &TableName) -> Index {
        self.existing(table)
            .map_or(Index::ZERO, |t| *t.index.borrow())
    }

    async fn get(&self, table: &TableName, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.existing(table).and_then(|t| {
            t.records
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(id)
                .cloned()
        }))
    }

    async fn list(&self, table: &TableName) -> Result<Listing, StoreError> {
        let Some(t) = self.existing(table) else {
            return Ok(Listing::default());
        };
        let records = t.records.read().unwrap_or_else(PoisonError::into_inner);
        // Writers bump the table index under the write lock: this index matches the records.
        let index = *t.index.borrow();
        Ok(Listing {
            index,
            records: records.values().cloned().collect(),
        })
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Index, StoreError> {
        self.commit(ops)
    }

    async fn wait_table(
        &self,
        table: &TableName,
        after: Index,
        timeout: Duration,
    ) -> Result<Index, StoreError> {
        let mut rx = self.table(table).index.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|i| *i > after)).await;
        // A closed channel cannot happen while `self` lives; the current value is the answer
        // in every case.
        drop(waited);
        let current = *rx.borrow();
        Ok(current)
    }
}
