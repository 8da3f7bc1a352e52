//! Replication between a primary and a secondary, on both transports and both stores.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use mesh_replication::Listing;
use mesh_replication::STATE_TABLE;
use mesh_replication::{
    DurableStore, Forwarder, Index, ListRequest, Record, RemoteErrorKind, Replicas, Store,
    StoreError, TableName, Transport, TransportError, TxnOp, WriteError,
};
use tokio::time::Instant;

macro_rules! matrix {
    ($test:ident) => {
        mod $test {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory_in_process() -> R {
                super::$test(Kind::Memory, Net::InProcess).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory_tcp() -> R {
                super::$test(Kind::Memory, Net::Tcp).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn durable_in_process() -> R {
                super::$test(Kind::Durable, Net::InProcess).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn durable_tcp() -> R {
                super::$test(Kind::Durable, Net::Tcp).await
            }
        }
    };
}

macro_rules! both_transports {
    ($test:ident) => {
        mod $test {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn in_process() -> R {
                super::$test(Net::InProcess).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tcp() -> R {
                super::$test(Net::Tcp).await
            }
        }
    };
}

matrix!(converges_upserts_and_deletes);
matrix!(initial_sync_of_10000_records);
matrix!(primary_outage_keeps_reads_and_catches_up);
matrix!(forwarding_and_read_your_writes);
both_transports!(restart_mid_sync_resumes);
both_transports!(restart_after_sync_resumes_from_persisted_index);
both_transports!(token_without_rights_is_refused);
both_transports!(local_tables_never_replicate);

async fn converges_upserts_and_deletes(kind: Kind, net: Net) -> R {
    let dir = tempfile::tempdir()?;
    let primary = Primary::start(open_store(kind, dir.path(), "p").await?, net).await?;
    let secondary = open_store(kind, dir.path(), "s").await?;
    primary.store.txn(upserts(POLICIES, 0..50, 1)).await?;
    primary.store.txn(upserts(CONFIG, 0..20, 1)).await?;
    primary.store.txn(upserts(CATALOG, 0..5, 1)).await?;
    let replicas = Replicas::spawn(
        &registry(),
        secondary.clone(),
        primary.transport(),
        config(replication_token()),
    );
    let pol = replicas.get(&t(POLICIES)).ok_or("policies replicator")?;
    let cfg = replicas.get(&t(CONFIG)).ok_or("config replicator")?;
    caught_up(pol, &*primary.store).await?;
    caught_up(cfg, &*primary.store).await?;
    assert_converged(&*primary.store, &*secondary, POLICIES).await?;
    assert_converged(&*primary.store, &*secondary, CONFIG).await?;

    // Updates, deletes and new records, in one primary transaction and then in several.
    let mut ops = upserts(POLICIES, 10..20, 2);
    ops.extend(deletes(POLICIES, 40..50));
    ops.extend(upserts(POLICIES, 50..55, 1));
    primary.store.txn(ops).await?;
    primary.store.txn(deletes(CONFIG, 0..20)).await?;
    primary.store.txn(upserts(CONFIG, 100..101, 1)).await?;
    caught_up(pol, &*primary.store).await?;
    caught_up(cfg, &*primary.store).await?;
    assert_converged(&*primary.store, &*secondary, POLICIES).await?;
    assert_converged(&*primary.store, &*secondary, CONFIG).await?;
    assert!(secondary.list(&t(CATALOG)).await?.records.is_empty());

    let st = pol.status();
    assert!(st.running);
    assert_eq!(st.upserts_applied, 50 + 10 + 5);
    assert_eq!(st.deletes_applied, 10);
    assert_eq!(
        st.last_remote_index,
        primary.store.table_index(&t(POLICIES))
    );
    assert!(st.last_success.is_some() && st.staleness().is_some());
    assert_eq!(replicas.statuses().len(), 2);
    replicas.stop().await;
    Ok(())
}

async fn initial_sync_of_10000_records(kind: Kind, net: Net) -> R {
    let dir = tempfile::tempdir()?;
    let primary = Primary::start(open_store(kind, dir.path(), "p").await?, net).await?;
    let secondary = open_store(kind, dir.path(), "s").await?;
    for chunk in 0..10 {
        primary
            .store
            .txn(upserts(POLICIES, chunk * 1000..(chunk + 1) * 1000, 1))
            .await?;
    }
    let h = mesh_replication::spawn_replicator(
        t(POLICIES),
        secondary.clone(),
        primary.transport(),
        config(replication_token()),
    );
    caught_up(&h, &*primary.store).await?;
    assert_converged(&*primary.store, &*secondary, POLICIES).await?;
    let st = h.status();
    assert_eq!(st.upserts_applied, 10_000);
    assert_eq!(st.deletes_applied, 0);
    h.stop().await;
    Ok(())
}

/// A store that stops (never returns) once it has committed `budget` transactions: the
/// secondary "dies" in the middle of a sync.
struct DiesAfter {
    inner: Arc<dyn Store>,
    budget: AtomicUsize,
    died: tokio::sync::Notify,
}

#[async_trait]
impl Store for DiesAfter {
    fn index(&self) -> Index {
        self.inner.index()
    }
    fn table_index(&self, table: &TableName) -> Index {
        self.inner.table_index(table)
    }
    async fn get(&self, table: &TableName, id: &str) -> Result<Option<Record>, StoreError> {
        self.inner.get(table, id).await
    }
    async fn list(&self, table: &TableName) -> Result<Listing, StoreError> {
        self.inner.list(table).await
    }
    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Index, StoreError> {
        if self
            .budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_sub(1))
            .is_err()
        {
            self.died.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.txn(ops).await
    }
    async fn wait_table(
        &self,
        table: &TableName,
        after: Index,
        timeout: Duration,
    ) -> Result<Index, StoreError> {
        self.inner.wait_table(table, after, timeout).await
    }
}

async fn restart_mid_sync_resumes(net: Net) -> R {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("secondary.redb");
    let primary = Primary::start(open_store(Kind::Memory, dir.path(), "p").await?, net).await?;
    for chunk in 0..10 {
        primary
            .store
            .txn(upserts(POLICIES, chunk * 1000..(chunk + 1) * 1000, 1))
            .await?;
    }
    let mut cfg = config(replication_token());
    cfg.batch_max_records = 1000;
    {
        let dying = Arc::new(DiesAfter {
            inner: Arc::new(DurableStore::open(&path).await?),
            budget: AtomicUsize::new(4),
            died: tokio::sync::Notify::new(),
        });
        let h = mesh_replication::spawn_replicator(
            t(POLICIES),
            dying.clone(),
            primary.transport(),
            cfg.clone(),
        );
        dying.died.notified().await;
        h.stop().await;
    }
    // "Restarted": the file is reopened by a new process-like owner.
    let secondary = Arc::new(DurableStore::open(&path).await?);
    assert_eq!(
        secondary.list(&t(POLICIES)).await?.records.len(),
        4000,
        "four batches were committed before the secondary died"
    );
    assert_eq!(secondary.verify().await?, vec![]);
    let h = mesh_replication::spawn_replicator(
        t(POLICIES),
        secondary.clone(),
        primary.transport(),
        cfg,
    );
    caught_up(&h, &*primary.store).await?;
    assert_converged(&*primary.store, &*secondary, POLICIES).await?;
    // Only the missing records were transferred into the store.
    assert_eq!(h.status().upserts_applied, 6000);
    h.stop().await;
    Ok(())
}

/// Records the `min_index` of every list query.
struct Recording {
    inner: Arc<dyn Transport>,
    seen: std::sync::Mutex<Vec<Index>>,
    notify: tokio::sync::Notify,
}

#[async_trait]
impl Transport for Recording {
    async fn list(
        &self,
        req: ListRequest,
    ) -> Result<mesh_replication::CompleteListing, TransportError> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(req.min_index);
        self.notify.notify_one();
        self.inner.list(req).await
    }
    async fn apply(&self, req: mesh_replication::ApplyRequest) -> Result<Index, TransportError> {
        self.inner.apply(req).await
    }
}

async fn restart_after_sync_resumes_from_persisted_index(net: Net) -> R {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("secondary.redb");
    let primary = Primary::start(open_store(Kind::Memory, dir.path(), "p").await?, net).await?;
    primary.store.txn(upserts(POLICIES, 0..300, 1)).await?;
    let synced = {
        let secondary = Arc::new(DurableStore::open(&path).await?);
        let h = mesh_replication::spawn_replicator(
            t(POLICIES),
            secondary.clone(),
            primary.transport(),
            config(replication_token()),
        );
        let i = caught_up(&h, &*primary.store).await?;
        h.stop().await;
        i
    };
    let secondary = Arc::new(DurableStore::open(&path).await?);
    let persisted = secondary
        .get(&t(STATE_TABLE), POLICIES)
        .await?
        .ok_or("persisted state")?;
    assert_eq!(
        persisted
            .value
            .as_json()
            .and_then(|v| v["remote_index"].as_u64()),
        Some(synced.0)
    );
    let recording = Arc::new(Recording {
        inner: primary.transport(),
        seen: std::sync::Mutex::new(Vec::new()),
        notify: tokio::sync::Notify::new(),
    });
    let h = mesh_replication::spawn_replicator(
        t(POLICIES),
        secondary.clone(),
        recording.clone(),
        config(replication_token()),
    );
    recording.notify.notified().await;
    let first = recording
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)[0];
    assert_eq!(
        first, synced,
        "the first query resumes from the persisted index"
    );
    assert_eq!(h.status().last_remote_index, synced);
    // A new write is picked up by that blocking query; nothing else is re-applied.
    primary.store.txn(upserts(POLICIES, 300..301, 1)).await?;
    caught_up(&h, &*primary.store).await?;
    assert_converged(&*primary.store, &*secondary, POLICIES).await?;
    assert_eq!(h.status().upserts_applied, 1);
    h.stop().await;
    Ok(())
}

async fn primary_outage_keeps_reads_and_catches_up(kind: Kind, net: Net) -> R {
    let dir = tempfile::tempdir()?;
    let mut primary = Primary::start(open_store(kind, dir.path(), "p").await?, net).await?;
    let secondary = open_store(kind, dir.path(), "s").await?;
    primary.store.txn(upserts(POLICIES, 0..100, 1)).await?;
    let h = mesh_replication::spawn_replicator(
        t(POLICIES),
        secondary.clone(),
        primary.transport(),
        config(replication_token()),
    );
    caught_up(&h, &*primary.store).await?;
    let before = fingerprint(&*secondary, POLICIES).await?;

    primary.stop().await;
    // The primary keeps changing while it is out of reach.
    primary.store.txn(upserts(POLICIES, 100..150, 1)).await?;
    primary.store.txn(deletes(POLICIES, 0..10)).await?;
    primary.store.txn(upserts(POLICIES, 10..20, 2)).await?;
    let failing = status_until(&h, |s| s.consecutive_failures >= 3).await?;
    let since_failing = Instant::now();
    assert!(failing.last_error.is_some());
    // The secondary keeps answering reads with its last copy, nothing deleted.
    assert_eq!(fingerprint(&*secondary, POLICIES).await?, before);
    assert!(secondary.get(&t(POLICIES), "id-000000").await?.is_some());
    let st = h.status();
    let staleness = st.staleness().ok_or("staleness")?;
    assert!(staleness >= since_failing.elapsed());
    assert!(st.last_remote_index < primary.store.table_index(&t(POLICIES)));

    primary.resume().await?;
    caught_up(&h, &*primary.store).await?;
    assert_converged(&*primary.store, &*secondary, POLICIES).await?;
    let st = h.status();
    assert_eq!(
        st.deletes_applied, 10,
        "exactly the primary's deletes, no false ones"
    );
    assert_eq!(st.upserts_applied, 100 + 50 + 10);
    assert_eq!(st.consecutive_failures, 0);
    h.stop().await;
    Ok(())
}

async fn forwarding_and_read_your_writes(kind: Kind, net: Net) -> R {
    let dir = tempfile::tempdir()?;
    let primary = Primary::start(open_store(kind, dir.path(), "p").await?, net).await?;
    let secondary = open_store(kind, dir.path(), "s").await?;
    let transport = primary.transport();
    let replicas = Replicas::spawn(
        &registry(),
        secondary.clone(),
        transport.clone(),
        config(replication_token()),
    );
    let fwd = Forwarder::secondary(registry(), secondary.clone(), TestAcl::new(), transport);

    for n in 0..5 {
        let receipt = fwd
            .write(&management_token(), upserts(CONFIG, n..n + 1, 7))
            .await?;
        assert!(receipt.forwarded);
        let rec = primary
            .store
            .get(&t(CONFIG), &format!("id-{n:06}"))
            .await?
            .ok_or("on the primary")?;
        assert_eq!(
            rec.modify_index, receipt.index,
            "the caller gets the primary's index"
        );
        replicas
            .wait_for_index(&t(CONFIG), receipt.index, Duration::from_secs(30))
            .await?;
        let local = secondary
            .get(&t(CONFIG), &format!("id-{n:06}"))
            .await?
            .ok_or("read your write")?;
        assert_eq!(local.hash, rec.hash);
    }

    // Local tables stay local.
    let r = fwd
        .write(&management_token(), upserts(CATALOG, 0..1, 1))
        .await?;
    assert!(!r.forwarded);
    assert!(secondary.get(&t(CATALOG), "id-000000").await?.is_some());
    assert!(primary.store.get(&t(CATALOG), "id-000000").await?.is_none());

    // Mixed scopes cannot be one transaction across datacenters.
    let mut mixed = upserts(CONFIG, 9..10, 1);
    mixed.extend(upserts(CATALOG, 9..10, 1));
    assert!(matches!(
        fwd.write(&management_token(), mixed).await,
        Err(WriteError::MixedScopes)
    ));

    // A forwarded check-and-set conflict comes back typed.
    let cas = vec![TxnOp::Upsert {
        table: t(CONFIG),
        id: "id-000000".into(),
        value: value(1),
        cas: Some(Index::ZERO),
    }];
    match fwd.write(&management_token(), cas).await {
        Err(WriteError::Forward(TransportError::Remote(e))) => {
            assert_eq!(e.kind, RemoteErrorKind::CasConflict);
        }
        other => return Err(format!("expected a CAS conflict, got {other:?}").into()),
    }

    // The waiting side of read-your-writes times out cleanly on an index never reached.
    let far = Index(primary.store.index().0 + 1000);
    assert!(matches!(
        replicas
            .wait_for_index(&t(CONFIG), far, Duration::from_millis(50))
            .await,
        Err(mesh_replication::WaitError::TimedOut { .. })
    ));
    assert!(matches!(
        replicas
            .wait_for_index(&t(CATALOG), Index(1), Duration::from_millis(50))
            .await,
        Err(mesh_replication::WaitError::NotReplicated(_))
    ));
    replicas.stop().await;
    Ok(())
}

async fn token_without_rights_is_refused(net: Net) -> R {
    let dir = tempfile::tempdir()?;
    let primary = Primary::start(open_store(Kind::Memory, dir.path(), "p").await?, net).await?;
    let secondary = open_store(Kind::Memory, dir.path(), "s").await?;
    primary.store.txn(upserts(POLICIES, 0..10, 1)).await?;
    primary.store.txn(upserts(CONFIG, 0..10, 1)).await?;

    // service:read only: config entries replicate, ACL policies are refused.
    let replicas = Replicas::spawn(
        &registry(),
        secondary.clone(),
        primary.transport(),
        config(read_only_token()),
    );
    caught_up(replicas.get(&t(CONFIG)).ok_or("config")?, &*primary.store).await?;
    let st = status_until(replicas.get(&t(POLICIES)).ok_or("policies")?, |s| {
        s.last_error.is_some()
    })
    .await?;
    let msg = st.last_error.map(|e| e.message).unwrap_or_default();
    assert!(msg.contains("Denied"), "{msg}");
    assert!(secondary.list(&t(POLICIES)).await?.records.is_empty());
    replicas.stop().await;

    let transport = primary.transport();
    // An unknown token is refused too.
    let err = transport
        .list(ListRequest {
            token: mesh_replication::SecretToken::new("nobody"),
            table: t(CONFIG),
            min_index: Index::ZERO,
            wait: Duration::ZERO,
        })
        .await;
    assert!(matches!(&err, Err(e) if e.is_denied()), "{err:?}");

    // Forwarded writes: the replication token may not write config entries.
    let fwd = Forwarder::secondary(registry(), secondary.clone(), TestAcl::new(), transport);
    match fwd
        .write(&replication_token(), upserts(CONFIG, 0..1, 9))
        .await
    {
        Err(WriteError::Forward(e)) => assert!(e.is_denied()),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    assert!(
        fwd.write(&replication_token(), upserts(POLICIES, 0..1, 9))
            .await?
            .forwarded
    );
    // The primary's own forwarder checks locally.
    let local = Forwarder::primary(registry(), primary.store.clone(), TestAcl::new());
    assert!(matches!(
        local
            .write(&read_only_token(), upserts(CONFIG, 0..1, 9))
            .await,
        Err(WriteError::Denied(_))
    ));
    Ok(())
}

async fn local_tables_never_replicate(net: Net) -> R {
    let dir = tempfile::tempdir()?;
    let primary = Primary::start(open_store(Kind::Memory, dir.path(), "p").await?, net).await?;
    primary.store.txn(upserts(CATALOG, 0..10, 1)).await?;
    primary.store.txn(upserts("unregistered", 0..10, 1)).await?;
    let transport = primary.transport();
    let list = |table: &str| ListRequest {
        token: management_token(),
        table: t(table),
        min_index: Index::ZERO,
        wait: Duration::ZERO,
    };
    match transport.list(list(CATALOG)).await {
        Err(TransportError::Remote(e)) => assert_eq!(e.kind, RemoteErrorKind::NotGlobal),
        other => return Err(format!("expected NotGlobal, got {other:?}").into()),
    }
    match transport.list(list("unregistered")).await {
        Err(TransportError::Remote(e)) => assert_eq!(e.kind, RemoteErrorKind::UnknownTable),
        other => return Err(format!("expected UnknownTable, got {other:?}").into()),
    }
    let apply = mesh_replication::ApplyRequest {
        token: management_token(),
        ops: upserts(CATALOG, 0..1, 2),
    };
    match transport.apply(apply).await {
        Err(TransportError::Remote(e)) => assert_eq!(e.kind, RemoteErrorKind::NotGlobal),
        other => return Err(format!("expected NotGlobal, got {other:?}").into()),
    }
    let secondary = open_store(Kind::Memory, dir.path(), "s").await?;
    let replicas = Replicas::spawn(
        &registry(),
        secondary.clone(),
        transport,
        config(management_token()),
    );
    assert!(replicas.get(&t(CATALOG)).is_none());
    caught_up(
        replicas.get(&t(POLICIES)).ok_or("policies")?,
        &*primary.store,
    )
    .await?;
    assert!(secondary.list(&t(CATALOG)).await?.records.is_empty());
    replicas.stop().await;
    Ok(())
}
