//! The relay every proxy of the mesh uses (`mesh_sni::relay`: one task for both directions,
//! buffers that start at 4 KiB and grow to 64 KiB) against tokio's
//! `copy_bidirectional_with_sizes` with fixed 64 KiB buffers (what the sidecars used before),
//! in the same run: 64 MiB each way at once through a relay between two loopback TCP
//! connections, and many short exchanges (a 64-byte request, a 64-byte answer).
//!
//! Run: `cargo bench --bench relay` (add `-- --quick` for a short run).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mesh_sni::{RelayCounters, RelayLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const BULK: usize = 64 << 20;

#[derive(Clone, Copy)]
enum Which {
    Mesh,
    Tokio,
}

/// A client connected through a relay (of `which`) to an echo server; returns the client.
async fn through_relay(which: Which) -> TcpStream {
    let echo = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let echo_addr = echo.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let front = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let front_addr = front.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = front.accept().await {
            tokio::spawn(async move {
                let _ = client.set_nodelay(true);
                let Ok(mut backend) = TcpStream::connect(echo_addr).await else {
                    return;
                };
                let _ = backend.set_nodelay(true);
                match which {
                    Which::Mesh => {
                        let limits = RelayLimits::new(64 * 1024, Duration::from_secs(3600));
                        let _ = mesh_sni::relay(
                            &mut client,
                            &mut backend,
                            limits,
                            RelayCounters::default(),
                        )
                        .await;
                    }
                    Which::Tokio => {
                        let _ = tokio::io::copy_bidirectional_with_sizes(
                            &mut client,
                            &mut backend,
                            64 * 1024,
                            64 * 1024,
                        )
                        .await;
                    }
                }
            });
        }
    });
    let c = TcpStream::connect(front_addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = c.set_nodelay(true);
    c
}

/// Writes `BULK` bytes and reads them back (the echo sends them through the relay again).
async fn bulk(client: &mut TcpStream) {
    let (mut r, mut w) = client.split();
    let chunk = vec![0x5au8; 256 * 1024];
    let write = async {
        let mut left = BULK;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            left -= n;
        }
    };
    let read = async {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < BULK {
            let n = r.read(&mut buf).await.unwrap_or_else(|e| panic!("{e}"));
            assert!(n > 0, "the echo closed early");
            got += n;
        }
    };
    tokio::join!(write, read);
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("relay/bulk_64MiB_each_way");
    group.throughput(Throughput::Bytes(2 * BULK as u64));
    group.sample_size(10);
    for (name, which) in [("mesh", Which::Mesh), ("tokio_64k", Which::Tokio)] {
        let mut client = rt.block_on(through_relay(which));
        group.bench_function(name, |b| b.iter(|| rt.block_on(bulk(&mut client))));
    }
    group.finish();

    let mut group = c.benchmark_group("relay/exchange_64B");
    for (name, which) in [("mesh", Which::Mesh), ("tokio_64k", Which::Tokio)] {
        let mut client = rt.block_on(through_relay(which));
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    client
                        .write_all(&[1u8; 64])
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    let mut back = [0u8; 64];
                    client
                        .read_exact(&mut back)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                })
            })
        });
    }
    group.finish();
}

criterion_group!(relay, benches);
criterion_main!(relay);
