//! Echo through the two-datacenter mesh against a direct TCP echo, in the same run:
//! round trip on an open connection, a new connection with its full mTLS handshake, bulk
//! throughput, and the in-app path (no sidecar hop). Prints a ratio table at the end.
//!
//! `cargo bench --bench mesh_echo`

#[allow(dead_code)] // the examples' shared set-up; the bench uses part of it
#[path = "../examples/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mesh::connect::{Dialer, Service};
use mesh::intentions::intention::Action;
use mesh::{Sidecar, SidecarOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const MSG: usize = 64;
const BULK: usize = 4 << 20;

struct Setup {
    direct: SocketAddr,
    upstream: SocketAddr,
    dialer: Dialer,
    _keep: (support::Guide, Sidecar, Sidecar, Service),
}

async fn setup() -> Setup {
    let g = support::first_steps().await.expect("guide set-up");
    let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let direct = echo.local_addr().expect("addr");
    tokio::spawn(support::echo_server(echo));
    let socat_token = support::service_token(&g, "socat").await.expect("token");
    let web_token = support::service_token(&g, "web").await.expect("token");
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    g.primary
        .catalog()
        .register_json(
            &(&socat_token).into(),
            &format!(
                r#"{{"name":"socat","port":{},"connect":{{"sidecar_service":{{}}}}}}"#,
                direct.port()
            ),
        )
        .await
        .expect("register socat");
    g.secondary
        .catalog().register_json(
            &(&web_token).into(),
            &format!(
                r#"{{"name":"web","port":8080,"connect":{{"sidecar_service":{{"proxy":{{"upstreams":[
                {{"destination_name":"socat","datacenter":"primary","local_bind_port":{port}}}]}}}}}}}}"#
            ),
        )
        .await
        .expect("register web");
    let any = SidecarOptions::default().public_bind("127.0.0.1:0".parse().expect("addr"));
    let socat = Sidecar::start(&g.primary, &(&socat_token).into(), "socat", any.clone())
        .await
        .expect("socat sidecar");
    let web = Sidecar::start(&g.secondary, &(&web_token).into(), "web", any)
        .await
        .expect("web sidecar");
    g.secondary
        .intentions()
        .create(
            &(&g.management).into(),
            &"web".parse().expect("valid intention target"),
            &"socat".parse().expect("valid intention target"),
            Action::Allow,
        )
        .await
        .expect("intention");
    let upstream = web.upstreams()[0].1;
    let app = Service::new(
        &g.secondary,
        &(&web_token).into(),
        "web".parse().expect("name"),
    )
    .await
    .expect("in-app");
    let up = serde_json::from_str(&format!(
        r#"{{"destination_name":"socat","datacenter":"primary","local_bind_port":{port}}}"#
    ))
    .expect("upstream");
    let dialer = app.dialer(&up).expect("dialer");
    Setup {
        direct,
        upstream,
        dialer,
        _keep: (g, socat, web, app),
    }
}

async fn ping<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, buf: &mut [u8; MSG]) {
    s.write_all(&buf[..]).await.expect("write");
    s.read_exact(&mut buf[..]).await.expect("read");
}

async fn connect_and_ping(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    ping(&mut s, &mut [7u8; MSG]).await;
}

async fn bulk<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(s: S) {
    let (mut r, mut w) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        let chunk = vec![1u8; 64 * 1024];
        for _ in 0..BULK / chunk.len() {
            w.write_all(&chunk).await.expect("write");
        }
        w
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < BULK {
        got += r.read(&mut buf).await.expect("read");
    }
    drop(writer.await);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let s = rt.block_on(setup());
    let (mut d, mut m, mut a) = rt.block_on(async {
        let d = TcpStream::connect(s.direct).await.expect("direct");
        let m = TcpStream::connect(s.upstream).await.expect("mesh");
        d.set_nodelay(true).expect("nodelay");
        m.set_nodelay(true).expect("nodelay");
        let a = s.dialer.dial().await.expect("in-app");
        (d, m, a)
    });
    let mut buf = [7u8; MSG];

    let mut g = c.benchmark_group("echo_rtt_64B");
    g.bench_function("direct", |b| b.iter(|| rt.block_on(ping(&mut d, &mut buf))));
    g.bench_function("mesh_sidecars_two_gateways", |b| {
        b.iter(|| rt.block_on(ping(&mut m, &mut buf)))
    });
    g.bench_function("in_app_two_gateways", |b| {
        b.iter(|| rt.block_on(ping(&mut a, &mut buf)))
    });
    g.finish();

    let mut g = c.benchmark_group("new_connection_and_echo");
    g.sample_size(20);
    g.bench_function("direct", |b| {
        b.iter(|| rt.block_on(connect_and_ping(s.direct)))
    });
    g.bench_function("mesh_full_mtls_handshake", |b| {
        b.iter(|| rt.block_on(connect_and_ping(s.upstream)))
    });
    g.finish();

    let mut g = c.benchmark_group("bulk_echo");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(BULK as u64));
    g.bench_function("direct", |b| {
        b.iter(|| rt.block_on(async { bulk(TcpStream::connect(s.direct).await.expect("c")).await }))
    });
    g.bench_function("mesh", |b| {
        b.iter(|| {
            rt.block_on(async { bulk(TcpStream::connect(s.upstream).await.expect("c")).await })
        })
    });
    g.finish();

    // The same figures side by side, from one more pass in this run.
    let time = |f: &mut dyn FnMut()| {
        let v: Vec<Duration> = (0..300)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect();
        median(v)
    };
    let direct = time(&mut || rt.block_on(ping(&mut d, &mut buf)));
    let mesh = time(&mut || rt.block_on(ping(&mut m, &mut buf)));
    let in_app = time(&mut || rt.block_on(ping(&mut a, &mut buf)));
    let new_direct = time(&mut || rt.block_on(connect_and_ping(s.direct)));
    let new_mesh = time(&mut || rt.block_on(connect_and_ping(s.upstream)));
    let ratio = |x: Duration, base: Duration| x.as_secs_f64() / base.as_secs_f64();
    println!("\nmedian of 300 in this run           time      vs direct");
    println!("echo 64 B, direct                    {direct:>9.1?}  1.00x");
    println!(
        "echo 64 B, sidecars + 2 gateways     {mesh:>9.1?}  {:.2}x",
        ratio(mesh, direct)
    );
    println!(
        "echo 64 B, in-app + 2 gateways       {in_app:>9.1?}  {:.2}x",
        ratio(in_app, direct)
    );
    println!(
        "in-app saves vs sidecars             {:>9.1?}",
        mesh.saturating_sub(in_app)
    );
    println!("new conn + echo, direct              {new_direct:>9.1?}  1.00x");
    println!(
        "new conn + echo, mesh (mTLS)         {new_mesh:>9.1?}  {:.2}x",
        ratio(new_mesh, new_direct)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
