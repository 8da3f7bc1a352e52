//! The etcd store beyond the conformance suite: several servers on one cluster, races between
//! them, etcd's operation limit, losing and regaining quorum, and prefixes that share a
//! cluster. Real `etcd` processes on loopback (see `etcd_cluster`).
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod etcd_cluster;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use etcd_cluster::EtcdCluster;
use mesh_replication::{
    EtcdOptions, EtcdStore, EtcdTls, Index, Store, StoreError, TableName, TxnOp, Value,
};

type R = Result<(), Box<dyn Error>>;

fn t(s: &str) -> TableName {
    TableName::new(s).unwrap()
}

fn v(n: u64) -> Value {
    Value::json(serde_json::json!({ "n": n }))
}

async fn open(cluster: &EtcdCluster, prefix: &str) -> Result<Arc<EtcdStore>, StoreError> {
    let mut opts = cluster
        .options(prefix)
        .map_err(|e| StoreError::Etcd(e.to_string()))?;
    opts.request_timeout = Duration::from_secs(2);
    opts.retry_for = Duration::from_secs(4);
    Ok(Arc::new(EtcdStore::open(opts).await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_see_each_others_writes_and_wake_on_them() -> R {
    let cluster = EtcdCluster::start(1).await?;
    let a = open(&cluster, "mesh/dc1").await?;
    let b = open(&cluster, "mesh/dc1").await?;
    // A waiter on server b wakes for a write made through server a (an etcd watch, no poll).
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.wait_table(&t("intentions"), Index::ZERO, Duration::from_secs(30))
                .await
        })
    };
    let i = a.upsert(&t("intentions"), "web-db", v(1), None).await?;
    assert_eq!(waiter.await??, i);
    let r = b.get(&t("intentions"), "web-db").await?.unwrap();
    assert_eq!((r.create_index, r.modify_index, r.value), (i, i, v(1)));
    assert_eq!(b.index(), i);
    assert_eq!(b.table_index(&t("intentions")), i);
    // Both write; one index sequence for the datacenter.
    let j = b.upsert(&t("intentions"), "web-db", v(2), Some(i)).await?;
    assert!(j > i);
    assert_eq!(a.list(&t("intentions")).await?.index, j);
    // A store opened later starts from the persisted state.
    let c = open(&cluster, "mesh/dc1").await?;
    assert_eq!(c.index(), j);
    assert_eq!(
        c.get(&t("intentions"), "web-db").await?.unwrap().value,
        v(2)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_check_and_sets_on_two_servers_have_one_winner() -> R {
    let cluster = EtcdCluster::start(1).await?;
    let a = open(&cluster, "mesh/dc1").await?;
    let b = open(&cluster, "mesh/dc1").await?;
    let tokens = t("tokens");
    for round in 0..20u64 {
        let id = format!("r{round}");
        let (ra, rb) = tokio::join!(
            a.upsert(&tokens, &id, v(1), Some(Index::ZERO)),
            b.upsert(&tokens, &id, v(2), Some(Index::ZERO)),
        );
        let wins = [ra.is_ok(), rb.is_ok()];
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{ra:?} / {rb:?}");
        let loser = if ra.is_ok() { rb } else { ra };
        assert!(
            matches!(loser, Err(StoreError::CasConflict { .. })),
            "{loser:?}"
        );
    }
    // Unconditional writes from both never lose one: 2 x 25 writes, 50 records.
    let (ra, rb) = tokio::join!(
        async {
            for n in 0..25u64 {
                a.upsert(&t("catalog"), &format!("a{n}"), v(n), None)
                    .await?;
            }
            Ok::<_, StoreError>(())
        },
        async {
            for n in 0..25u64 {
                b.upsert(&t("catalog"), &format!("b{n}"), v(n), None)
                    .await?;
            }
            Ok::<_, StoreError>(())
        },
    );
    ra?;
    rb?;
    assert_eq!(a.list(&t("catalog")).await?.records.len(), 50);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_past_etcds_operation_limit_is_refused_whole() -> R {
    let cluster = EtcdCluster::start(1).await?;
    let s = open(&cluster, "mesh/dc1").await?;
    let ops: Vec<TxnOp> = (0..200)
        .map(|n| TxnOp::Upsert {
            table: t("catalog"),
            id: format!("svc-{n}"),
            value: v(n),
            cas: None,
        })
        .collect();
    let err = s.txn(ops).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooManyOperations {
                operations: 201,
                limit: 128
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.index(), Index::ZERO);
    assert!(s.list(&t("catalog")).await?.records.is_empty());
    // At the limit it goes through as one write.
    let ops: Vec<TxnOp> = (0..127)
        .map(|n| TxnOp::Upsert {
            table: t("catalog"),
            id: format!("svc-{n}"),
            value: v(n),
            cas: None,
        })
        .collect();
    assert_eq!(s.txn(ops).await?, Index(1));
    assert_eq!(s.list(&t("catalog")).await?.records.len(), 127);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datacenters_sharing_a_cluster_keep_their_own_state_and_indexes() -> R {
    let cluster = EtcdCluster::start(1).await?;
    let dc1 = open(&cluster, "mesh/dc1").await?;
    let dc2 = open(&cluster, "mesh/dc2").await?;
    dc1.upsert(&t("intentions"), "x", v(1), None).await?;
    dc1.upsert(&t("intentions"), "y", v(1), None).await?;
    assert_eq!(dc2.get(&t("intentions"), "x").await?, None);
    assert_eq!(dc2.table_index(&t("intentions")), Index::ZERO);
    // dc2's first write takes an index after dc1's: indexes never go backwards, and each
    // datacenter's are its own sequence.
    let i = dc2.upsert(&t("intentions"), "z", v(1), None).await?;
    assert!(i > Index::ZERO);
    assert_eq!(dc2.list(&t("intentions")).await?.records.len(), 1);
    assert_eq!(dc1.list(&t("intentions")).await?.records.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_quorum_refuses_writes_clearly_and_regaining_it_converges() -> R {
    let mut cluster = EtcdCluster::start(3).await?;
    let a = open(&cluster, "mesh/dc1").await?;
    let b = open(&cluster, "mesh/dc1").await?;
    a.upsert(&t("config"), "before", v(1), None).await?;

    // One member down: nothing visible.
    cluster.kill(0);
    let i = a.upsert(&t("config"), "one-down", v(2), None).await?;
    assert_eq!(
        b.get(&t("config"), "one-down").await?.unwrap().modify_index,
        i
    );

    // Two down: no quorum. A write is refused with a typed error, and is not applied.
    cluster.kill(1);
    let err = a
        .upsert(&t("config"), "no-quorum", v(3), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Etcd(_)), "{err:?}");
    assert!(!err.to_string().is_empty());
    assert_eq!(a.index(), i);

    // Back: writes go through, and a server that waited sees them.
    cluster.restart(0)?;
    cluster.restart(1)?;
    cluster.wait_ready(Duration::from_secs(30)).await?;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.wait_table(&t("config"), i, Duration::from_secs(30)).await })
    };
    let j = a.upsert(&t("config"), "after", v(4), None).await?;
    assert!(j > i);
    assert!(waiter.await?? >= j);
    // Whatever the refused write did is decided: it is either wholly there or wholly absent,
    // and every server reads the same.
    let la = a.list(&t("config")).await?;
    let lb = b.list(&t("config")).await?;
    assert_eq!(la, lb);
    assert!(la.records.iter().any(|r| r.id == "after"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_leads_a_standby_takes_over_and_the_old_leader_is_fenced() -> R {
    let cluster = EtcdCluster::start(1).await?;
    let a = open(&cluster, "mesh/dc1").await?;
    let b = open(&cluster, "mesh/dc1").await?;
    let ttl = Duration::from_secs(2);
    let lead_a = a.lead("server-a", "http://a", ttl).await?;
    assert_eq!(a.leader().await?.as_deref(), Some("server-a"));
    assert_eq!(
        b.leader_contact().await?,
        Some(("server-a".to_owned(), "http://a".to_owned()))
    );
    assert_eq!(a.servers().await?, ["server-a"]);
    let standby = {
        let b = b.clone();
        tokio::spawn(async move { b.lead("server-b", "http://b", ttl).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!standby.is_finished(), "b stands by while a leads");
    assert_eq!(a.servers().await?, ["server-a", "server-b"]);
    let acked = a.upsert(&t("config"), "by-a", v(1), None).await?;

    // a "crashes": its lease is no longer kept alive. b leads within the lease's time to live.
    let crashed = std::time::Instant::now();
    drop(lead_a);
    let lead_b = tokio::time::timeout(Duration::from_secs(10), standby).await???;
    eprintln!(
        "standby took over {:?} after the leader stopped renewing (ttl {ttl:?})",
        crashed.elapsed()
    );
    assert_eq!(b.leader().await?.as_deref(), Some("server-b"));
    assert_eq!(
        a.leader_contact().await?,
        Some(("server-b".to_owned(), "http://b".to_owned()))
    );
    // a's presence went with its lease.
    assert_eq!(b.servers().await?, ["server-b"]);
    // Nothing acknowledged is lost, and the old leader cannot write any more.
    assert_eq!(
        b.get(&t("config"), "by-a").await?.unwrap().modify_index,
        acked
    );
    let err = a
        .upsert(&t("config"), "late", v(2), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotLeader), "{err:?}");
    assert_eq!(b.get(&t("config"), "late").await?, None);
    b.upsert(&t("config"), "by-b", v(3), None).await?;

    // A graceful hand-over is immediate.
    let c = open(&cluster, "mesh/dc1").await?;
    let standby = {
        let c = c.clone();
        tokio::spawn(async move { c.lead("server-c", "http://c", ttl).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resigned = std::time::Instant::now();
    lead_b.resign().await?;
    let _lead_c = tokio::time::timeout(Duration::from_secs(5), standby).await???;
    eprintln!("hand-over after resigning took {:?}", resigned.elapsed());
    assert!(matches!(
        b.upsert(&t("config"), "late", v(4), None).await,
        Err(StoreError::NotLeader)
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_quorum_loses_its_lease_and_still_reads_one_members_copy() -> R {
    let mut cluster = EtcdCluster::start(3).await?;
    let a = open(&cluster, "mesh/dc1").await?;
    let ttl = Duration::from_secs(2);
    let lead = a.lead("server-a", "http://a", ttl).await?;
    let i = a.upsert(&t("config"), "before", v(1), None).await?;

    // Two members down: the lease cannot be renewed, and the leadership is lost.
    cluster.kill(0);
    cluster.kill(1);
    let mut lost = lead.lost();
    tokio::time::timeout(Duration::from_secs(30), lost.wait_for(|l| *l)).await??;

    // Reads are served from the surviving member's copy (stale, but there).
    let got = a.get(&t("config"), "before").await?.expect("the record");
    assert_eq!(got.modify_index, i);
    let listing = a.list(&t("config")).await?;
    assert_eq!(listing.records.len(), 1);
    // Writes are refused, and apply nothing.
    let err = a
        .upsert(&t("config"), "no-quorum", v(2), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotLeader | StoreError::Etcd(_)),
        "{err:?}"
    );
    cluster.restart(0)?;
    cluster.restart(1)?;
    cluster.wait_ready(Duration::from_secs(30)).await?;
    let b = open(&cluster, "mesh/dc1").await?;
    assert_eq!(b.get(&t("config"), "no-quorum").await?, None);
    assert_eq!(b.list(&t("config")).await?.records.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_client_certificates_the_store_works_and_without_one_it_is_refused() -> R {
    let cluster = EtcdCluster::start_tls(1).await?;
    let a = open(&cluster, "mesh/dc1").await?;
    let b = open(&cluster, "mesh/dc1").await?;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.wait_table(&t("config"), Index::ZERO, Duration::from_secs(10))
                .await
        })
    };
    let i = a.upsert(&t("config"), "x", v(1), None).await?;
    assert_eq!(waiter.await??, i);
    assert_eq!(b.get(&t("config"), "x").await?.unwrap().modify_index, i);
    // What etcd holds is read back over TLS by etcdctl.
    assert!(
        cluster
            .dump("mesh/dc1/t/config/")?
            .iter()
            .any(|(k, _)| k.ends_with("/x"))
    );

    // The same cluster without a client certificate, and with a CA that did not sign the
    // members' certificates: both refused, neither writes.
    let files = cluster.tls_files().expect("a TLS cluster");
    let ca = std::fs::read(&files.ca)?;
    let mut no_client = EtcdOptions::new(cluster.endpoints(), "mesh/dc1");
    no_client.tls = Some(EtcdTls::new(ca));
    no_client.request_timeout = Duration::from_secs(2);
    no_client.retry_for = Duration::ZERO;
    assert!(EtcdStore::open(no_client).await.is_err());
    let mut wrong_ca = EtcdOptions::new(cluster.endpoints(), "mesh/dc1");
    wrong_ca.tls = Some(EtcdTls::new(std::fs::read(&files.client_cert)?));
    wrong_ca.request_timeout = Duration::from_secs(2);
    wrong_ca.retry_for = Duration::ZERO;
    assert!(EtcdStore::open(wrong_ca).await.is_err());
    // Plain TCP to a TLS member fails too.
    let mut plain = EtcdOptions::new(
        cluster
            .endpoints()
            .iter()
            .map(|e| e.replace("https://", "http://"))
            .collect(),
        "mesh/dc1",
    );
    plain.request_timeout = Duration::from_secs(2);
    plain.retry_for = Duration::ZERO;
    assert!(EtcdStore::open(plain).await.is_err());
    assert_eq!(a.list(&t("config")).await?.records.len(), 1);
    Ok(())
}
