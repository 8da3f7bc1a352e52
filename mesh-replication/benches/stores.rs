//! The three stores side by side in one run: memory, redb on disk, and etcd (one member started
//! by the bench on loopback, its data on the same disk).
//! * `stores/write/{memory,redb,etcd}`: one upsert at a time (writes/s = 1 / time);
//! * write-to-watcher latency: the time from the start of an upsert until a task blocked in
//!   `wait_table` wakes, on ANOTHER store instance of the same state for etcd (a second server
//!   on the cluster, woken by an etcd watch) and on the same instance for memory and redb
//!   (which one process owns); p50/p99 over 500 writes, printed.
//!
//! `cargo bench -p mesh-replication --features etcd --bench stores` (add `-- --quick` for a
//! short run). Needs the `etcd` binary (Debian: etcd-server).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_replication::{
    DurableStore, EtcdOptions, EtcdStore, Index, MemoryStore, Store, TableName, Value,
};
use tokio::runtime::Runtime;

fn table() -> TableName {
    TableName::new("intentions").unwrap_or_else(|e| panic!("{e}"))
}

fn value(n: u64) -> Value {
    Value::json(serde_json::json!({"SourceName": "web", "DestinationName": "db", "N": n}))
}

struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port: {e}"))
}

fn start_etcd() -> Etcd {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (client, peer) = (port(), port());
    let endpoint = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "bench", "--data-dir"])
        .arg(dir.path())
        .args(["--listen-client-urls", &endpoint])
        .args(["--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("bench={peer_url}")])
        .args(["--logger", "zap", "--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting etcd (apt-get install etcd-server): {e}"));
    Etcd {
        child,
        endpoint,
        _dir: dir,
    }
}

async fn open_etcd(endpoint: &str) -> Arc<dyn Store> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let opts = EtcdOptions::new(vec![endpoint.to_owned()], "mesh/bench");
        match EtcdStore::open(opts).await {
            Ok(s) => return Arc::new(s),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("etcd did not answer: {e}"),
        }
    }
}

fn writes(c: &mut Criterion, rt: &Runtime, stores: &[(&str, Arc<dyn Store>)]) {
    let mut g = c.benchmark_group("stores/write");
    g.sample_size(30);
    for (name, store) in stores {
        let mut n = 0u64;
        g.bench_function(*name, |b| {
            b.iter(|| {
                n += 1;
                rt.block_on(store.upsert(&table(), &format!("w-{}", n % 1000), value(n), None))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        });
    }
    g.finish();
}

/// p50 and p99 (µs) of write-to-watcher latency over `rounds` writes.
fn watcher_latency(
    rt: &Runtime,
    writer: &Arc<dyn Store>,
    watcher: &Arc<dyn Store>,
    rounds: usize,
) -> (f64, f64) {
    rt.block_on(async {
        let mut samples = Vec::with_capacity(rounds);
        for n in 0..rounds as u64 {
            let after = watcher.table_index(&table());
            let w = watcher.clone();
            let waiter = tokio::spawn(async move {
                let got = w
                    .wait_table(&table(), after, Duration::from_secs(10))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                (got, Instant::now())
            });
            tokio::task::yield_now().await;
            let start = Instant::now();
            let idx = writer
                .upsert(&table(), "watched", value(n), None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let (got, woke) = waiter.await.unwrap_or_else(|e| panic!("{e}"));
            assert!(got >= idx && got > Index::ZERO, "the watcher saw the write");
            samples.push(woke.duration_since(start).as_secs_f64() * 1e6);
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(0.99))
    })
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let etcd = start_etcd();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (memory, redb, etcd_a, etcd_b) = rt.block_on(async {
        let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let redb: Arc<dyn Store> = Arc::new(
            DurableStore::open(dir.path().join("state.redb"))
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let a = open_etcd(&etcd.endpoint).await;
        let b = open_etcd(&etcd.endpoint).await;
        (memory, redb, a, b)
    });
    let stores = [
        ("memory", memory.clone()),
        ("redb", redb.clone()),
        ("etcd", etcd_a.clone()),
    ];
    writes(c, &rt, &stores);
    for (name, writer, watcher) in [
        ("memory", &memory, &memory),
        ("redb", &redb, &redb),
        ("etcd (second server)", &etcd_a, &etcd_b),
    ] {
        let (p50, p99) = watcher_latency(&rt, writer, watcher, 500);
        println!("write-to-watcher {name}: p50 {p50:.0} us, p99 {p99:.0} us");
    }
    drop(etcd);
}

criterion_group!(group, benches);
criterion_main!(group);
