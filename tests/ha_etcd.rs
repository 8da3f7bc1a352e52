//! Several servers of one datacenter on a 3-member etcd cluster (real `etcd` processes on
//! loopback): one leads, one stands by; the leader stops under a write load and the standby
//! takes over from the persisted state (same CA root, no bootstrap again), with every
//! acknowledged write kept; one etcd member down is not visible; the CA's private keys are
//! sealed in etcd.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

#[path = "../mesh-replication/tests/etcd_cluster/mod.rs"]
mod etcd_cluster;

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_cluster::EtcdCluster;
use mesh::replication_engine::EtcdOptions;
use mesh::{Datacenter, DatacenterConfig, EtcdStorage, Secret, StateKey, Storage};
use tokio::sync::Mutex;

const MGMT: &str = "11111111-aaaa-4bbb-8ccc-00000000e7cd";
const TTL: Duration = Duration::from_secs(2);

fn config(cluster: &EtcdCluster, server: &str) -> DatacenterConfig {
    let mut c = DatacenterConfig::new("dc1".parse().unwrap(), "dc1".parse().unwrap());
    c.acl.tokens.initial_management = Some(MGMT.into());
    let mut opts = EtcdOptions::new(cluster.endpoints(), "mesh/dc1");
    opts.request_timeout = Duration::from_secs(2);
    opts.retry_for = Duration::from_secs(5);
    let mut etcd = EtcdStorage::new(opts, server);
    etcd.lease_ttl = TTL;
    c.storage = Storage::Etcd(Box::new(etcd));
    c.state_key = Some(StateKey::from_bytes([42; 32]));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_server_takes_over_from_persisted_state_with_no_acknowledged_write_lost() {
    let mut cluster = EtcdCluster::start(3).await.unwrap();
    let a = Datacenter::start_primary(config(&cluster, "server-a"))
        .await
        .unwrap();
    let root = a.connect_ca().roots().unwrap().active_root_id.clone();
    let mgmt = Secret::new(MGMT);

    // b stands by while a leads.
    let standby = tokio::spawn(Datacenter::start_primary(config(&cluster, "server-b")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!standby.is_finished(), "b stands by while a leads");

    // One etcd member down: nothing visible.
    cluster.kill(2);
    a.intentions()
        .allow(&mgmt, &"web".parse().unwrap(), &"db".parse().unwrap())
        .await
        .unwrap();

    // A write load on a; a stops in the middle of it.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (a, acked, mgmt) = (a.clone(), acked.clone(), mgmt.clone());
        tokio::spawn(async move {
            for n in 0.. {
                let src = format!("client-{n}").parse().unwrap();
                match a
                    .intentions()
                    .deny(&mgmt, &src, &"db".parse().unwrap())
                    .await
                {
                    Ok(_) => acked.lock().await.push(format!("client-{n}")),
                    Err(e) => eprintln!("write {n} failed: {e}"),
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    writer.abort();
    let _ = writer.await;
    // a "crashes": every handle dropped, its lease no longer renewed (not given up).
    let stopped = Instant::now();
    drop(a);
    let b = tokio::time::timeout(Duration::from_secs(20), standby)
        .await
        .expect("b takes over")
        .unwrap()
        .unwrap();
    eprintln!(
        "b leads {:?} after a stopped (lease {TTL:?})",
        stopped.elapsed()
    );

    // The same CA: loaded from the sealed state, not bootstrapped again.
    assert_eq!(b.connect_ca().roots().unwrap().active_root_id, root);
    assert_eq!(b.connect_ca().roots().unwrap().roots.len(), 1);
    // Every acknowledged write is there.
    let acked = acked.lock().await.clone();
    assert!(
        !acked.is_empty(),
        "the load wrote something before a stopped"
    );
    let listed = b.intentions().list(&mgmt).await.unwrap();
    for name in &acked {
        assert!(
            listed.iter().any(|i| &i.source_name == name),
            "acknowledged write {name} lost"
        );
    }
    eprintln!("{} writes acknowledged by a, all present on b", acked.len());
    // b serves writes and signs leaves.
    b.intentions()
        .allow(&mgmt, &"api".parse().unwrap(), &"db".parse().unwrap())
        .await
        .unwrap();
    let id = format!(
        "spiffe://{}/ns/default/dc/dc1/svc/web",
        b.trust_domain().unwrap()
    )
    .parse()
    .unwrap();
    let req = mesh::ca::new_leaf_request(&id, &[]).unwrap();
    b.connect_ca().sign_leaf(&mgmt, &req.csr_pem).await.unwrap();

    // The CA's private keys are sealed in etcd: no key in the clear under the prefix, read
    // with etcdctl.
    let all = cluster.dump("mesh/dc1/").unwrap();
    assert!(
        all.iter().any(|(k, _)| k.ends_with("/t/ca-state/state")),
        "{all:?}"
    );
    for (key, value) in &all {
        let v = String::from_utf8_lossy(value);
        assert!(
            !v.contains("PRIVATE KEY"),
            "a private key in the clear under {key}"
        );
    }
    b.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_on_etcd_without_a_state_key_is_refused() {
    let cluster = EtcdCluster::start(1).await.unwrap();
    let mut c = config(&cluster, "server-a");
    c.state_key = None;
    let err = Datacenter::start_primary(c).await.unwrap_err();
    assert!(err.to_string().contains("state_key"), "{err}");
}
