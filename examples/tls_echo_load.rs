//! A TLS echo server and a TLS load driver, used by `benches/gateway_vs_peers.sh` to compare SNI
//! proxies (mesh's gateway, HAProxy, nginx) with a direct connection under the same load.
//!
//! It shows how to measure a passthrough proxy from the outside: the echo server terminates
//! TLS (full handshakes only: no tickets, no session cache), the driver opens real rustls
//! connections through each target in turn, and every figure is also given as a ratio to the
//! direct connection.
//!
//! ```text
//! cargo run --release --example tls_echo_load -- serve --listen 127.0.0.1:9443 \
//!     --name bench.example --cert-out /tmp/echo.der
//! cargo run --release --example tls_echo_load -- bench --sni bench.example --cert /tmp/echo.der \
//!     --target direct=127.0.0.1:9443 --target mesh=127.0.0.1:8443 --seconds 3
//! ```
//!
//! The bench measures, per target: new connections per second (TCP connect, full TLS 1.3
//! handshake, a 64-byte echo, close; `--concurrency` at once), bulk echo throughput over
//! `--streams` long connections (64 KiB writes), and the p50/p99 round trip of 64-byte echoes on
//! one connection.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const HELP: &str = "\
tls_echo_load: a TLS echo server and a load driver for SNI proxies

USAGE:
    tls_echo_load serve --listen ADDR --name NAME [--name NAME...] --cert-out PATH [--workers N]
    tls_echo_load bench --sni NAME --cert PATH --target LABEL=ADDR [--target ...]
                        [--seconds S] [--rounds R] [--concurrency C] [--streams N] [--workers N]

serve: answers TLS on ADDR with a fresh self-signed certificate for the names (written as DER
       to PATH) and echoes every byte back; prints `listening ADDR`.
bench: the first target is the reference (a direct connection to the server); prints one table
       with every figure (the median over R rounds that visit every target in turn) and its
       ratio to the reference. Defaults: --seconds 3, --rounds 3, --concurrency 8,
       --streams 4, --workers 1.
";

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let workers = flag(&args, "--workers")
        .map(|w| w.parse::<usize>())
        .transpose();
    let workers = match workers {
        Ok(w) => w.unwrap_or(1).max(1),
        Err(e) => {
            eprintln!("error: --workers: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args[0].as_str() {
        "serve" => rt.block_on(serve(&args[1..])),
        "bench" => rt.block_on(bench(&args[1..])),
        other => Err(format!("unknown command {other:?}\n\n{HELP}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn flags<'a>(args: &'a [String], name: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].as_str())
        .collect()
}

fn required<'a>(args: &'a [String], name: &str) -> Result<&'a str, Error> {
    flag(args, name).ok_or_else(|| format!("{name} is required").into())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

async fn serve(args: &[String]) -> Result<(), Error> {
    let listen: SocketAddr = required(args, "--listen")?.parse()?;
    let names: Vec<String> = flags(args, "--name")
        .into_iter()
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err("give at least one --name".into());
    }
    let cert_out = required(args, "--cert-out")?;
    let ck = rcgen::generate_simple_self_signed(names)?;
    std::fs::write(cert_out, ck.cert.der())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)?;
    // Every connection pays a full handshake.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(listen).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tls.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tls.shutdown().await;
        });
    }
}

struct Target {
    label: String,
    addr: SocketAddr,
}

struct Figures {
    handshakes_per_s: f64,
    bulk_mib_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

async fn bench(args: &[String]) -> Result<(), Error> {
    let sni = ServerName::try_from(required(args, "--sni")?.to_owned())?;
    let cert = CertificateDer::from(std::fs::read(required(args, "--cert")?)?);
    let seconds: f64 = flag(args, "--seconds").unwrap_or("3").parse()?;
    let concurrency: usize = flag(args, "--concurrency").unwrap_or("8").parse()?;
    let streams: usize = flag(args, "--streams").unwrap_or("4").parse()?;
    let rounds_n: usize = flag(args, "--rounds")
        .unwrap_or("3")
        .parse::<usize>()?
        .max(1);
    let targets = flags(args, "--target")
        .into_iter()
        .map(|t| {
            let (label, addr) = t.split_once('=').ok_or("--target is LABEL=ADDR")?;
            Ok(Target {
                label: label.to_owned(),
                addr: addr.parse()?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    if targets.is_empty() {
        return Err("give at least one --target".into());
    }
    let mut roots = RootCertStore::empty();
    roots.add(cert)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    let connector = TlsConnector::from(Arc::new(config));
    let period = Duration::from_secs_f64(seconds);

    // Rounds interleave the targets, so a burst of foreign load hits them all alike; each
    // figure is the median over the rounds.
    let mut rounds: Vec<Vec<Figures>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds_n {
        for (t, per_target) in targets.iter().zip(rounds.iter_mut()) {
            // Warm-up: a few connections so that no figure pays for lazy set-up.
            let _ = handshakes(t.addr, &connector, &sni, 2, Duration::from_millis(100)).await;
            let (hs, e1) = handshakes(t.addr, &connector, &sni, concurrency, period).await;
            let (bulk, e2) = bulk(t.addr, &connector, &sni, streams, period).await;
            let (p50, p99, e3) = latency(t.addr, &connector, &sni, period).await;
            eprintln!(
                "round {round} {}: {hs:.0} handshakes/s, {bulk:.0} MiB/s, p50 {p50:.1} us, \
                 p99 {p99:.1} us, errors {e1}/{e2}/{e3}",
                t.label
            );
            per_target.push(Figures {
                handshakes_per_s: hs,
                bulk_mib_per_s: bulk,
                p50_us: p50,
                p99_us: p99,
                errors: e1 + e2 + e3,
            });
        }
    }
    let results: Vec<Figures> = rounds.iter().map(|r| median(r)).collect();
    print_table(&targets, &results, concurrency, streams, seconds, rounds_n);
    Ok(())
}

fn median(r: &[Figures]) -> Figures {
    let med = |f: fn(&Figures) -> f64| {
        let mut v: Vec<f64> = r.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    Figures {
        handshakes_per_s: med(|f| f.handshakes_per_s),
        bulk_mib_per_s: med(|f| f.bulk_mib_per_s),
        p50_us: med(|f| f.p50_us),
        p99_us: med(|f| f.p99_us),
        errors: r.iter().map(|f| f.errors).sum(),
    }
}

fn print_table(
    targets: &[Target],
    r: &[Figures],
    concurrency: usize,
    streams: usize,
    s: f64,
    rounds: usize,
) {
    let base = &r[0];
    let ratio = |v: f64, b: f64| if b > 0.0 { v / b } else { f64::NAN };
    println!(
        "median of {rounds} rounds of {s} s per figure; handshakes: {concurrency} at once, full \
         TLS 1.3 + 64 B echo; bulk: {streams} streams of 64 KiB echo writes; latency: 64 B echo \
         on one connection"
    );
    println!(
        "| {:<10} | {:>17} | {:>16} | {:>17} | {:>17} | {:>6} |",
        "target", "handshakes/s (x)", "bulk MiB/s (x)", "p50 us (x)", "p99 us (x)", "errors"
    );
    println!(
        "|{:-<12}|{:->19}|{:->18}|{:->19}|{:->19}|{:->8}|",
        "", "", "", "", "", ""
    );
    for (t, f) in targets.iter().zip(r) {
        println!(
            "| {:<10} | {:>8.0} ({:>5.2}) | {:>7.0} ({:>5.2}) | {:>8.1} ({:>5.2}) | {:>8.1} ({:>5.2}) | {:>6} |",
            t.label,
            f.handshakes_per_s,
            ratio(f.handshakes_per_s, base.handshakes_per_s),
            f.bulk_mib_per_s,
            ratio(f.bulk_mib_per_s, base.bulk_mib_per_s),
            f.p50_us,
            ratio(f.p50_us, base.p50_us),
            f.p99_us,
            ratio(f.p99_us, base.p99_us),
            f.errors,
        );
    }
    println!(
        "(x) = ratio to {}: above 1 is better for handshakes/s and MiB/s, worse for latency",
        targets[0].label
    );
}

async fn open(
    addr: SocketAddr,
    connector: &TlsConnector,
    sni: &ServerName<'static>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(connector.connect(sni.clone(), tcp).await?)
}

/// Full handshake + 64-byte echo + close, `concurrency` loops at once; returns (rate, errors).
async fn handshakes(
    addr: SocketAddr,
    connector: &TlsConnector,
    sni: &ServerName<'static>,
    concurrency: usize,
    period: Duration,
) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + period;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (connector, sni, done, errors) =
            (connector.clone(), sni.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let msg = [42u8; 64];
            let mut back = [0u8; 64];
            while Instant::now() < deadline {
                let one = async {
                    let mut tls = open(addr, &connector, &sni).await?;
                    tls.write_all(&msg).await?;
                    tls.read_exact(&mut back).await?;
                    tls.shutdown().await?;
                    Ok::<_, Error>(())
                };
                match tokio::time::timeout(Duration::from_secs(5), one).await {
                    Ok(Ok(())) => done.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    (rate, errors.load(Ordering::Relaxed))
}

/// `streams` long connections, each writing 64 KiB chunks while reading the echo; returns
/// (MiB/s echoed back, errors).
async fn bulk(
    addr: SocketAddr,
    connector: &TlsConnector,
    sni: &ServerName<'static>,
    streams: usize,
    period: Duration,
) -> (f64, u64) {
    let received = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::new();
    for _ in 0..streams {
        match open(addr, connector, sni).await {
            Ok(c) => conns.push(c),
            Err(_) => {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let start = Instant::now();
    let deadline = start + period;
    let mut tasks = Vec::new();
    for tls in conns {
        let (received, errors) = (received.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(tls);
            let writer = async move {
                let chunk = vec![7u8; 64 * 1024];
                while Instant::now() < deadline {
                    w.write_all(&chunk).await?;
                }
                w.shutdown().await?;
                Ok::<_, std::io::Error>(())
            };
            let reader = async {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = r.read(&mut buf).await?;
                    if n == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    if Instant::now() <= deadline {
                        received.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            };
            let both = async { tokio::try_join!(writer, reader) };
            match tokio::time::timeout(period + Duration::from_secs(5), both).await {
                Ok(Ok(_)) => {}
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mib = received.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0);
    (mib / period.as_secs_f64(), errors.load(Ordering::Relaxed))
}

/// Sequential 64-byte echoes on one connection; returns (p50 µs, p99 µs, errors).
async fn latency(
    addr: SocketAddr,
    connector: &TlsConnector,
    sni: &ServerName<'static>,
    period: Duration,
) -> (f64, f64, u64) {
    let Ok(mut tls) = open(addr, connector, sni).await else {
        return (f64::NAN, f64::NAN, 1);
    };
    let msg = [1u8; 64];
    let mut back = [0u8; 64];
    let mut samples = Vec::with_capacity(100_000);
    let mut errors = 0;
    let start = Instant::now();
    while start.elapsed() < period {
        let t = Instant::now();
        let ok = tls.write_all(&msg).await.is_ok() && tls.read_exact(&mut back).await.is_ok();
        if !ok {
            errors += 1;
            break;
        }
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let _ = tls.shutdown().await;
    if samples.is_empty() {
        return (f64::NAN, f64::NAN, errors + 1);
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99), errors)
}
