//! Replication over the framed TCP transport on loopback:
//! * `replication/lag`: time from a committed write in the primary until the secondary's copy
//!   reflects it (blocking query wakes, listing, diff, local transaction); p50/p99 printed.
//! * `replication/initial_sync_100k`: a fresh secondary copying 100,000 records.
//!
//! `cargo bench --bench replication` (add `-- --quick` for a short run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_replication::auth::danger::AllowAll;
use mesh_replication::replicator;
use mesh_replication::{
    FramedTransport, MemoryStore, RateLimit, ReplicationServer, ReplicatorConfig, Scope,
    SecretToken, ServeConfig, ServerHandle, Store, TableName, TableRegistry, TcpConnector, TxnOp,
    Value,
};
use tokio::runtime::Runtime;

fn table() -> TableName {
    TableName::new("acl-policies").unwrap_or_else(|e| panic!("{e}"))
}

fn record(n: u64, version: u64) -> TxnOp {
    TxnOp::Upsert {
        table: table(),
        id: format!("policy-{n:08}"),
        value: Value::bytes(format!("{{\"Rules\":\"service_prefix \\\"\\\" {{ policy = \\\"read\\\" }}\",\"V\":{version}}}").into_bytes()),
        cas: None,
    }
}

async fn primary(store: Arc<dyn Store>) -> ServerHandle {
    let registry = TableRegistry::new()
        .with(table(), Scope::Global)
        .unwrap_or_else(|e| panic!("{e}"));
    let server = Arc::new(ReplicationServer::new(registry, store, Arc::new(AllowAll)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    server
        .spawn_tcp(listener, None, ServeConfig::default())
        .unwrap_or_else(|e| panic!("listen: {e}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn lag_default_rate(c: &mut Criterion) {
    lag(c, "replication/lag", None);
}

fn lag_unpaced(c: &mut Criterion) {
    lag(c, "replication/lag_rate_10k", Some(10_000.0));
}

/// With back-to-back writes the round rate limit (default 100/s) sets the lag once its burst
/// is spent; `rate` raises it to show the transport's own lag.
fn lag(c: &mut Criterion, name: &str, rate: Option<f64>) {
    let rt = Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let p: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let s: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (handle, repl) = rt.block_on(async {
        p.txn((0..100).map(|n| record(n, 0)).collect())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let handle = primary(p.clone()).await;
        let transport = Arc::new(FramedTransport::new(TcpConnector::new(handle.local_addr())));
        let mut cfg = ReplicatorConfig::new(SecretToken::new("bench"));
        if let Some(r) = rate {
            cfg.rate = RateLimit {
                per_second: r,
                burst: 100,
            };
        }
        let repl = replicator::spawn(table(), s.clone(), transport, cfg);
        repl.wait_for_index(p.table_index(&table()), Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (handle, repl)
    });
    let mut samples = Vec::new();
    let mut version = 1;
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    version += 1;
                    let start = Instant::now();
                    let idx = p
                        .txn(vec![record(version % 100, version)])
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    repl.wait_for_index(idx, Duration::from_secs(10))
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    let d = start.elapsed();
                    samples.push(d);
                    total += d;
                }
                total
            })
        });
    });
    samples.sort();
    if !samples.is_empty() {
        println!(
            "{name} over TCP (write in primary -> visible in secondary), {} samples: p50 {:?}, p99 {:?}, max {:?}",
            samples.len(),
            percentile(&samples, 0.50),
            percentile(&samples, 0.99),
            samples[samples.len() - 1]
        );
    }
    rt.block_on(async {
        repl.stop().await;
        handle.shutdown().await;
    });
}

fn initial_sync(c: &mut Criterion) {
    const N: u64 = 100_000;
    let rt = Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let p: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let handle = rt.block_on(async {
        for chunk in 0..N / 10_000 {
            p.txn(
                (chunk * 10_000..(chunk + 1) * 10_000)
                    .map(|n| record(n, 0))
                    .collect(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        primary(p.clone()).await
    });
    let target = p.table_index(&table());
    let mut samples = Vec::new();
    let mut group = c.benchmark_group("replication");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("initial_sync_100k", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let s: Arc<dyn Store> = Arc::new(MemoryStore::new());
                    let transport =
                        Arc::new(FramedTransport::new(TcpConnector::new(handle.local_addr())));
                    let start = Instant::now();
                    let repl = replicator::spawn(
                        table(),
                        s.clone(),
                        transport,
                        ReplicatorConfig::new(SecretToken::new("bench")),
                    );
                    repl.wait_for_index(target, Duration::from_secs(120))
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    let d = start.elapsed();
                    samples.push(d);
                    total += d;
                    repl.stop().await;
                }
                total
            })
        });
    });
    group.finish();
    samples.sort();
    if !samples.is_empty() {
        println!(
            "initial sync of {N} records over TCP, {} runs: p50 {:?}, p99 {:?}",
            samples.len(),
            percentile(&samples, 0.50),
            percentile(&samples, 0.99)
        );
    }
    rt.block_on(handle.shutdown());
}

criterion_group!(benches, lag_default_rate, lag_unpaced, initial_sync);
criterion_main!(benches);
