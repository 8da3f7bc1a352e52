//! Replication on loopback, over plain TCP and over mTLS with mesh CA server identities (the
//! transport `mesh agent` uses), in the same run:
//! * `replication/lag/{tcp,mtls}`: one write at a time, 15 ms apart (fewer rounds than the
//!   default limit of 100/s, so the bucket never empties): the time from a committed write in
//!   the primary until the secondary's copy reflects it (blocking query wakes, listing, diff,
//!   local transaction); p50/p99 printed. This is the latency of one write at defaults.
//! * `replication/lag_stream/{tcp,mtls}`: writes back to back at defaults. Once the burst of
//!   100 rounds is spent, rounds run at 100/s and each waits for its token: the shaping the
//!   limit exists for, about 10 ms per round.
//! * `replication/initial_sync_100k/{tcp,mtls}`: a fresh secondary copying 100,000 records.
//!
//! `cargo bench --bench replication` (add `-- --quick` for a short run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_ca::tls::{ConnectAuthorizer, ExpectedServer, TlsIdentity};
use mesh_ca::{Ca, CaOptions, LeafCert, Refusal, new_leaf_request};
use mesh_core::{ServerId, Sni, SpiffeId};
use mesh_replication::danger::AllowAll;

use mesh_replication::tls::TlsConnector;
use mesh_replication::{
    FramedTransport, MemoryStore, ReplicationServer, ReplicatorConfig, Scope, SecretToken,
    ServeConfig, ServerHandle, Store, TableName, TableRegistry, TcpConnector, Transport, TxnOp,
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

/// How the secondary reaches the primary.
#[derive(Clone, Copy, Debug)]
enum Link {
    Tcp,
    Mtls,
}

impl Link {
    fn name(self) -> &'static str {
        match self {
            Link::Tcp => "tcp",
            Link::Mtls => "mtls",
        }
    }
}

/// Servers of the mesh only, as the agent's server port admits.
struct ServersOnly;

impl ConnectAuthorizer for ServersOnly {
    fn authorize(&self, peer: &SpiffeId) -> Result<(), Refusal> {
        match peer {
            SpiffeId::Server(_) => Ok(()),
            other => Err(Refusal::new(format!("{other} is not a server"))),
        }
    }
}

/// A server identity of `dc` from `ca`.
async fn server_identity(ca: &Ca, dc: &str) -> TlsIdentity {
    let id = SpiffeId::Server(ServerId::new(
        ca.trust_domain().clone(),
        dc.parse().unwrap_or_else(|e| panic!("{e}")),
    ));
    let req = new_leaf_request(&id, &[]).unwrap_or_else(|e| panic!("{e}"));
    let issued = if dc == "primary" {
        let servers = |id: &SpiffeId| match id {
            SpiffeId::Server(_) => Ok(()),
            _ => Err(Refusal::new("servers only")),
        };
        ca.sign_leaf_pem(&req.csr_pem, &servers).await
    } else {
        // What a secondary's enrollment gets from the primary.
        ca.sign_peer_server_pem(&req.csr_pem).await
    }
    .unwrap_or_else(|e| panic!("{e}"));
    TlsIdentity::with_leaf(&LeafCert::new(issued, req.key), &ca.roots())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The primary's replication server over `store` on `link`, and a way to make transports to
/// it (each a fresh connection pool, as a secondary has).
struct Primary {
    handle: ServerHandle,
    connect: Box<dyn Fn() -> Arc<dyn Transport>>,
}

async fn primary(store: Arc<dyn Store>, link: Link) -> Primary {
    let registry = TableRegistry::new()
        .with(table(), Scope::Global)
        .unwrap_or_else(|e| panic!("{e}"));
    let server = Arc::new(ReplicationServer::new(registry, store, Arc::new(AllowAll)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    match link {
        Link::Tcp => {
            let handle = server
                .spawn_tcp(listener, None, ServeConfig::default())
                .unwrap_or_else(|e| panic!("listen: {e}"));
            let addr = handle.local_addr();
            Primary {
                handle,
                connect: Box::new(move || {
                    Arc::new(FramedTransport::new(TcpConnector::new(addr))) as Arc<dyn Transport>
                }),
            }
        }
        Link::Mtls => {
            let ca = Ca::bootstrap_primary(CaOptions::new(
                "primary".parse().unwrap_or_else(|e| panic!("{e}")),
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            let server_id = server_identity(&ca, "primary").await;
            let cfg = server_id
                .server_config(Arc::new(ServersOnly))
                .unwrap_or_else(|e| panic!("{e}"));
            let handle = server
                .spawn_tcp(listener, Some(Arc::new(cfg)), ServeConfig::default())
                .unwrap_or_else(|e| panic!("listen: {e}"));
            let addr = handle.local_addr();
            let client = server_identity(&ca, "secondary").await;
            let expected = ExpectedServer::id(SpiffeId::Server(ServerId::new(
                ca.trust_domain().clone(),
                "primary".parse().unwrap_or_else(|e| panic!("{e}")),
            )));
            let cfg = Arc::new(
                client
                    .client_config(expected)
                    .unwrap_or_else(|e| panic!("{e}")),
            );
            let sni = Sni::server(
                None,
                "primary".parse().unwrap_or_else(|e| panic!("{e}")),
                "consul".parse().unwrap_or_else(|e| panic!("{e}")),
            );
            Primary {
                handle,
                connect: Box::new(move || {
                    let connector = TlsConnector::new(TcpConnector::new(addr), cfg.clone(), &sni)
                        .unwrap_or_else(|e| panic!("{e}"));
                    Arc::new(FramedTransport::new(connector)) as Arc<dyn Transport>
                }),
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Records in the replicated table of the lag measurements (each round lists them all).
const LAG_RECORDS: u64 = 100;

fn lag_one_write(c: &mut Criterion) {
    for link in [Link::Tcp, Link::Mtls] {
        lag(c, "lag", link, Some(Duration::from_millis(15)));
    }
}

fn lag_stream(c: &mut Criterion) {
    for link in [Link::Tcp, Link::Mtls] {
        lag(c, "lag_stream", link, None);
    }
}

/// The lag of writes made `gap` apart (back to back without one), at the default round rate.
fn lag(c: &mut Criterion, name: &str, link: Link, gap: Option<Duration>) {
    let rt = Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let p: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let s: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (primary, repl) = rt.block_on(async {
        p.txn((0..LAG_RECORDS).map(|n| record(n, 0)).collect())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let primary = primary(p.clone(), link).await;
        let cfg = ReplicatorConfig::new(SecretToken::new("bench"));
        let repl = mesh_replication::spawn_replicator(table(), s.clone(), (primary.connect)(), cfg);
        repl.wait_for_index(p.table_index(&table()), Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (primary, repl)
    });
    let mut samples = Vec::new();
    let mut version = 1;
    let mut group = c.benchmark_group(format!("replication/{name}"));
    group.bench_function(link.name(), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if let Some(gap) = gap {
                        tokio::time::sleep(gap).await;
                    }
                    version += 1;
                    let start = Instant::now();
                    let idx = p
                        .txn(vec![record(version % LAG_RECORDS, version)])
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
    group.finish();
    samples.sort();
    if !samples.is_empty() {
        println!(
            "replication/{name} over {} (write in primary -> visible in secondary), {} samples: p50 {:?}, p99 {:?}, max {:?}",
            link.name(),
            samples.len(),
            percentile(&samples, 0.50),
            percentile(&samples, 0.99),
            samples[samples.len() - 1]
        );
    }
    rt.block_on(async {
        repl.stop().await;
        primary.handle.shutdown().await;
    });
}

fn initial_sync(c: &mut Criterion) {
    for link in [Link::Tcp, Link::Mtls] {
        initial_sync_over(c, link);
    }
}

fn initial_sync_over(c: &mut Criterion, link: Link) {
    const N: u64 = 100_000;
    let rt = Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    let p: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let primary = rt.block_on(async {
        for chunk in 0..N / 10_000 {
            p.txn(
                (chunk * 10_000..(chunk + 1) * 10_000)
                    .map(|n| record(n, 0))
                    .collect(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        primary(p.clone(), link).await
    });
    let target = p.table_index(&table());
    let mut samples = Vec::new();
    let mut group = c.benchmark_group("replication/initial_sync_100k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function(link.name(), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let s: Arc<dyn Store> = Arc::new(MemoryStore::new());
                    let transport = (primary.connect)();
                    let start = Instant::now();
                    let repl = mesh_replication::spawn_replicator(
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
            "initial sync of {N} records over {}, {} runs: p50 {:?}, p99 {:?}",
            link.name(),
            samples.len(),
            percentile(&samples, 0.50),
            percentile(&samples, 0.99)
        );
    }
    rt.block_on(primary.handle.shutdown());
}

criterion_group!(benches, lag_one_write, lag_stream, initial_sync);
criterion_main!(benches);
