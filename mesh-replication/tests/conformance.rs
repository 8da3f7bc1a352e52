//! One conformance suite, run against every `Store` implementation.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use mesh_replication::{
    DurableStore, Index, MemoryStore, Store, StoreError, TableName, TxnOp, Value,
};

type R = Result<(), Box<dyn Error>>;

fn t(s: &str) -> TableName {
    TableName::new(s).unwrap_or_else(|e| panic!("table {s}: {e}"))
}

fn v(n: u64) -> Value {
    Value::json(serde_json::json!({ "n": n, "name": format!("item-{n}") }))
}

fn up(table: &str, id: &str, value: Value, cas: Option<u64>) -> TxnOp {
    TxnOp::Upsert {
        table: t(table),
        id: id.into(),
        value,
        cas: cas.map(Index),
    }
}

fn del(table: &str, id: &str, cas: Option<u64>) -> TxnOp {
    TxnOp::Delete {
        table: t(table),
        id: id.into(),
        cas: cas.map(Index),
    }
}

mod suite {
    use super::*;

    pub(crate) async fn empty(s: Arc<dyn Store>) -> R {
        assert_eq!(s.index(), Index::ZERO);
        assert_eq!(s.table_index(&t("a")), Index::ZERO);
        assert_eq!(s.get(&t("a"), "x").await?, None);
        let l = s.list(&t("a")).await?;
        assert_eq!(l.index, Index::ZERO);
        assert!(l.records.is_empty());
        Ok(())
    }

    pub(crate) async fn upsert_sets_indexes_and_hash(s: Arc<dyn Store>) -> R {
        let i1 = s.upsert(&t("a"), "x", v(1), None).await?;
        assert_eq!(i1, Index(1));
        let r = s.get(&t("a"), "x").await?.ok_or("missing")?;
        assert_eq!((r.create_index, r.modify_index), (i1, i1));
        assert_eq!(r.hash, v(1).content_hash());
        assert_eq!(r.value, v(1));
        let i2 = s.upsert(&t("a"), "x", v(2), None).await?;
        assert_eq!(i2, Index(2));
        let r = s.get(&t("a"), "x").await?.ok_or("missing")?;
        assert_eq!((r.create_index, r.modify_index), (i1, i2));
        assert_eq!(r.hash, v(2).content_hash());
        assert_eq!(s.index(), i2);
        assert_eq!(s.table_index(&t("a")), i2);
        Ok(())
    }

    pub(crate) async fn one_index_per_transaction(s: Arc<dyn Store>) -> R {
        s.upsert(&t("c"), "z", v(0), None).await?;
        let i = s
            .txn(vec![
                up("a", "1", v(1), None),
                up("a", "2", v(2), None),
                up("b", "1", Value::bytes(&b"raw\x00bytes"[..]), None),
            ])
            .await?;
        assert_eq!(i, Index(2));
        assert_eq!(s.index(), Index(2));
        assert_eq!(s.table_index(&t("a")), i);
        assert_eq!(s.table_index(&t("b")), i);
        assert_eq!(s.table_index(&t("c")), Index(1));
        let b = s.get(&t("b"), "1").await?.ok_or("missing")?;
        assert_eq!(b.value.as_bytes(), Some(&b"raw\x00bytes"[..]));
        for r in s.list(&t("a")).await?.records {
            assert_eq!(r.modify_index, i);
        }
        Ok(())
    }

    pub(crate) async fn check_and_set(s: Arc<dyn Store>) -> R {
        let i = s.upsert(&t("a"), "x", v(1), Some(Index(0))).await?;
        let err = s.upsert(&t("a"), "x", v(2), Some(Index(0))).await;
        assert!(
            matches!(&err, Err(StoreError::CasConflict { expected, found, .. }) if *expected == Index(0) && *found == Some(i)),
            "{err:?}"
        );
        let err = s.upsert(&t("a"), "x", v(2), Some(Index(i.0 + 7))).await;
        assert!(matches!(err, Err(StoreError::CasConflict { .. })));
        assert!(matches!(
            s.upsert(&t("a"), "absent", v(2), Some(Index(3))).await,
            Err(StoreError::CasConflict { found: None, .. })
        ));
        assert_eq!(s.index(), i, "failed CAS must not bump the index");
        let i2 = s.upsert(&t("a"), "x", v(2), Some(Index(i.0))).await?;
        assert!(i2 > i);
        assert!(matches!(
            s.delete(&t("a"), "x", Some(Index(i.0))).await,
            Err(StoreError::CasConflict { .. })
        ));
        assert!(matches!(
            s.delete(&t("a"), "absent", Some(Index(1))).await,
            Err(StoreError::CasConflict { .. })
        ));
        s.delete(&t("a"), "x", Some(Index(i2.0))).await?;
        assert_eq!(s.get(&t("a"), "x").await?, None);
        // Deleting an absent record without CAS is fine.
        s.delete(&t("a"), "x", None).await?;
        Ok(())
    }

    pub(crate) async fn transactions_are_all_or_nothing(s: Arc<dyn Store>) -> R {
        s.upsert(&t("a"), "keep", v(1), None).await?;
        let before = s.index();
        let res = s
            .txn(vec![
                up("a", "new", v(2), None),
                del("a", "keep", None),
                up("b", "other", v(3), None),
                up("a", "cas", v(4), Some(99)),
            ])
            .await;
        assert!(matches!(res, Err(StoreError::CasConflict { .. })));
        assert_eq!(s.index(), before);
        assert!(s.get(&t("a"), "keep").await?.is_some());
        assert_eq!(s.get(&t("a"), "new").await?, None);
        assert_eq!(s.get(&t("b"), "other").await?, None);
        assert_eq!(s.table_index(&t("b")), Index::ZERO);
        Ok(())
    }

    pub(crate) async fn operations_apply_in_order(s: Arc<dyn Store>) -> R {
        let i = s
            .txn(vec![up("a", "x", v(1), None), del("a", "x", None)])
            .await?;
        assert_eq!(s.get(&t("a"), "x").await?, None);
        s.upsert(&t("a"), "y", v(1), None).await?;
        let j = s
            .txn(vec![del("a", "y", None), up("a", "y", v(2), Some(0))])
            .await?;
        let y = s.get(&t("a"), "y").await?.ok_or("missing")?;
        assert_eq!((y.create_index, y.modify_index), (j, j));
        assert!(j > i);
        // Within a transaction, a CAS on a record written earlier in it fails.
        assert!(matches!(
            s.txn(vec![up("a", "z", v(1), None), up("a", "z", v(2), Some(0))])
                .await,
            Err(StoreError::CasConflict { .. })
        ));
        Ok(())
    }

    pub(crate) async fn list_is_sorted_and_scoped(s: Arc<dyn Store>) -> R {
        for id in ["m", "a", "z", "b"] {
            s.upsert(&t("a"), id, v(1), None).await?;
        }
        s.upsert(&t("a.b"), "q", v(1), None).await?;
        s.upsert(&t("a-"), "q", v(1), None).await?;
        s.upsert(&t("ab"), "q", v(1), None).await?;
        let l = s.list(&t("a")).await?;
        let ids: Vec<_> = l.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "m", "z"]);
        assert_eq!(l.index, Index(4));
        Ok(())
    }

    pub(crate) async fn bad_input_is_refused(s: Arc<dyn Store>) -> R {
        assert!(matches!(
            s.upsert(&t("a"), "", v(1), None).await,
            Err(StoreError::InvalidId { .. })
        ));
        assert!(matches!(
            s.upsert(&t("a"), &"x".repeat(600), v(1), None).await,
            Err(StoreError::InvalidId { .. })
        ));
        assert!(matches!(
            s.txn(vec![]).await,
            Err(StoreError::EmptyTransaction)
        ));
        assert_eq!(s.index(), Index::ZERO);
        Ok(())
    }

    pub(crate) async fn blocking_query(s: Arc<dyn Store>) -> R {
        // Already past: immediate.
        s.upsert(&t("a"), "x", v(1), None).await?;
        assert_eq!(
            s.wait_table(&t("a"), Index::ZERO, Duration::from_secs(30))
                .await?,
            Index(1)
        );
        // Time-out: the current index comes back.
        assert_eq!(
            s.wait_table(&t("a"), Index(1), Duration::from_millis(20))
                .await?,
            Index(1)
        );
        // A write to another table does not wake a waiter; a write to its table does.
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move {
                s.wait_table(&t("a"), Index(1), Duration::from_secs(60))
                    .await
            })
        };
        let other = s.upsert(&t("b"), "y", v(2), None).await?;
        assert_eq!(other, Index(2));
        let woke = s.upsert(&t("a"), "x", v(3), None).await?;
        assert_eq!(waiter.await??, woke);
        // A waiter on a table nobody wrote yet.
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move {
                s.wait_table(&t("fresh"), Index::ZERO, Duration::from_secs(60))
                    .await
            })
        };
        let i = s.upsert(&t("fresh"), "x", v(1), None).await?;
        assert_eq!(waiter.await??, i);
        Ok(())
    }

    pub(crate) async fn concurrent_writers(s: Arc<dyn Store>) -> R {
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let table = t(if w % 2 == 0 { "even" } else { "odd" });
                for n in 0..25u64 {
                    s.upsert(&table, &format!("{w}-{n}"), v(n), None).await?;
                }
                Ok::<_, StoreError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        assert_eq!(s.index(), Index(100));
        let mut seen = std::collections::BTreeSet::new();
        for table in ["even", "odd"] {
            let l = s.list(&t(table)).await?;
            assert_eq!(l.records.len(), 50);
            assert_eq!(
                l.index,
                l.records
                    .iter()
                    .map(|r| r.modify_index)
                    .max()
                    .ok_or("empty")?
            );
            for r in l.records {
                assert!(
                    seen.insert(r.modify_index),
                    "index {} used twice",
                    r.modify_index
                );
            }
        }
        Ok(())
    }
}

macro_rules! conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;
            conformance!(@cases $make; empty, upsert_sets_indexes_and_hash, one_index_per_transaction,
                check_and_set, transactions_are_all_or_nothing, operations_apply_in_order,
                list_is_sorted_and_scoped, bad_input_is_refused, blocking_query, concurrent_writers);
        }
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> R {
                let (store, _guard) = $make.await?;
                suite::$case(store).await
            }
        )*
    };
}

#[cfg(feature = "etcd")]
mod etcd_cluster;

/// A fresh one-member etcd cluster per case (so that its indexes start at 1, as the other
/// stores' do); the guard keeps it running.
#[cfg(feature = "etcd")]
async fn etcd() -> Result<(Arc<dyn Store>, etcd_cluster::EtcdCluster), Box<dyn Error>> {
    let cluster = etcd_cluster::EtcdCluster::start(1).await?;
    let opts = mesh_replication::EtcdOptions::new(cluster.endpoints(), "mesh/conformance");
    let s = mesh_replication::EtcdStore::open(opts).await?;
    Ok((Arc::new(s), cluster))
}

#[cfg(feature = "etcd")]
conformance!(on_etcd, etcd());

async fn memory() -> Result<(Arc<dyn Store>, ()), Box<dyn Error>> {
    Ok((Arc::new(MemoryStore::new()), ()))
}

async fn durable() -> Result<(Arc<dyn Store>, tempfile::TempDir), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let s = DurableStore::open(dir.path().join("state.redb")).await?;
    Ok((Arc::new(s), dir))
}

conformance!(memory_store, memory());
conformance!(durable_store, durable());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_store_survives_reopen() -> R {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.redb");
    {
        let s = DurableStore::open(&path).await?;
        s.txn(vec![up("a", "x", v(1), None), up("b", "y", v(2), None)])
            .await?;
        s.upsert(&t("a"), "z", Value::bytes(&b"\x01\x02"[..]), None)
            .await?;
        s.delete(&t("b"), "y", None).await?;
    }
    let s = DurableStore::open(&path).await?;
    assert_eq!(s.index(), Index(3));
    assert_eq!(s.table_index(&t("a")), Index(2));
    assert_eq!(s.table_index(&t("b")), Index(3));
    let a = s.list(&t("a")).await?;
    assert_eq!(a.index, Index(2));
    assert_eq!(a.records.len(), 2);
    assert_eq!(a.records[1].value.as_bytes(), Some(&b"\x01\x02"[..]));
    assert!(s.list(&t("b")).await?.records.is_empty());
    assert_eq!(s.verify().await?, vec![]);
    assert_eq!(s.upsert(&t("a"), "x", v(9), None).await?, Index(4));
    Ok(())
}

#[tokio::test]
async fn durable_store_refuses_a_bad_path() {
    let res = DurableStore::open("/nonexistent-dir/for/sure/state.redb").await;
    assert!(matches!(res, Err(StoreError::Database(_))), "{res:?}");
}
