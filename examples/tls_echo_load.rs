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
//! one connection. Given the proxy's process ID (`--target LABEL=ADDR@PID`) and the echo
//! server's (`--server-pid`), it also reads their CPU time from `/proc` around each figure: the
//! proxy's CPU per connection and per GiB, each as a ratio to the CPU of the two TLS ends (the
//! echo server and this driver), and the proxy's resident memory per idle routed connection.

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
    tls_echo_load bench --sni NAME --cert PATH --target LABEL=ADDR[@PID] [--target ...]
                        [--server-pid PID] [--idle N] [--seconds S] [--rounds R]
                        [--concurrency C] [--streams N] [--workers N]

serve: answers TLS on ADDR with a fresh self-signed certificate for the names (written as DER
       to PATH) and echoes every byte back; prints `listening ADDR`.
bench: the first target is the reference (a direct connection to the server); prints one table
       with every figure (the median over R rounds that visit every target in turn) and its
       ratio to the reference. With @PID and --server-pid, a second table gives the proxy's
       CPU per connection and per GiB (and as a ratio to the TLS ends' CPU) and its memory per
       idle routed connection (N of them, default 1000). Defaults: --seconds 3, --rounds 3,
       --concurrency 8, --streams 4, --workers 1.
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
    /// The proxy's process, for its CPU and memory figures.
    pid: Option<u32>,
}

struct Figures {
    handshakes_per_s: f64,
    bulk_mib_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
    /// The proxy's CPU per connection (µs) and as a ratio to the TLS ends' CPU.
    cpu_us_per_conn: f64,
    cpu_ratio_conn: f64,
    /// The proxy's CPU per GiB echoed back (s) and as a ratio to the TLS ends' CPU.
    cpu_s_per_gib: f64,
    cpu_ratio_bulk: f64,
    /// The proxy's resident memory per idle routed connection (KiB).
    idle_kib_per_conn: f64,
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
            let (addr, pid) = match addr.split_once('@') {
                Some((a, p)) => (a, Some(p.parse::<u32>()?)),
                None => (addr, None),
            };
            Ok(Target {
                label: label.to_owned(),
                addr: addr.parse()?,
                pid,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    if targets.is_empty() {
        return Err("give at least one --target".into());
    }
    let server_pid: Option<u32> = flag(args, "--server-pid").map(str::parse).transpose()?;
    let idle_n: usize = flag(args, "--idle").unwrap_or("1000").parse()?;
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
            let before = CpuSample::take(t.pid, server_pid);
            let (hs, e1, conns) = handshakes(t.addr, &connector, &sni, concurrency, period).await;
            let (proxy_s, ends_s) = before.elapsed(t.pid, server_pid);
            let cpu_us_per_conn = proxy_s * 1e6 / conns as f64;
            let cpu_ratio_conn = proxy_s / ends_s;
            let before = CpuSample::take(t.pid, server_pid);
            let (bulk, e2) = bulk(t.addr, &connector, &sni, streams, period).await;
            let (proxy_s, ends_s) = before.elapsed(t.pid, server_pid);
            let gib = bulk * period.as_secs_f64() / 1024.0;
            let (cpu_s_per_gib, cpu_ratio_bulk) = (proxy_s / gib, proxy_s / ends_s);
            let (p50, p99, e3) = latency(t.addr, &connector, &sni, period).await;
            let idle_kib_per_conn = match t.pid {
                Some(pid) => idle_memory(t.addr, &connector, &sni, pid, idle_n).await,
                None => f64::NAN,
            };
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
                cpu_us_per_conn,
                cpu_ratio_conn,
                cpu_s_per_gib,
                cpu_ratio_bulk,
                idle_kib_per_conn,
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
        cpu_us_per_conn: med(|f| f.cpu_us_per_conn),
        cpu_ratio_conn: med(|f| f.cpu_ratio_conn),
        cpu_s_per_gib: med(|f| f.cpu_s_per_gib),
        cpu_ratio_bulk: med(|f| f.cpu_ratio_bulk),
        idle_kib_per_conn: med(|f| f.idle_kib_per_conn),
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
    if targets.iter().all(|t| t.pid.is_none()) {
        return;
    }
    println!();
    println!(
        "proxy CPU (user + system, its processes and their children) during the handshake and \
         bulk figures; ends = the echo server + this driver; idle = resident memory added per \
         routed connection held open after its handshake"
    );
    println!(
        "| {:<10} | {:>12} | {:>15} | {:>11} | {:>14} | {:>14} |",
        "target", "us per conn", "per conn / ends", "s per GiB", "per GiB / ends", "idle KiB/conn"
    );
    println!(
        "|{:-<12}|{:->14}|{:->17}|{:->13}|{:->16}|{:->16}|",
        "", "", "", "", "", ""
    );
    for (t, f) in targets.iter().zip(r).filter(|(t, _)| t.pid.is_some()) {
        println!(
            "| {:<10} | {:>12.1} | {:>15.3} | {:>11.3} | {:>14.3} | {:>14.1} |",
            t.label,
            f.cpu_us_per_conn,
            f.cpu_ratio_conn,
            f.cpu_s_per_gib,
            f.cpu_ratio_bulk,
            f.idle_kib_per_conn,
        );
    }
    println!("(a GiB echoed back crosses the proxy twice: once each way)");
}

/// CPU seconds used so far by a proxy (with its children), the echo server and this driver.
struct CpuSample {
    proxy: f64,
    ends: f64,
}

impl CpuSample {
    fn take(proxy: Option<u32>, server: Option<u32>) -> Self {
        let tree = |pid: Option<u32>| {
            pid.map(|p| tree_pids(p).iter().map(|&p| cpu_s(p)).sum())
                .unwrap_or(0.0)
        };
        CpuSample {
            proxy: tree(proxy),
            ends: tree(server) + cpu_s(std::process::id()),
        }
    }

    /// (proxy CPU s, ends CPU s) since this sample.
    fn elapsed(&self, proxy: Option<u32>, server: Option<u32>) -> (f64, f64) {
        let now = Self::take(proxy, server);
        (now.proxy - self.proxy, now.ends - self.ends)
    }
}

/// `pid` and its direct children (nginx's workers are children of its master).
fn tree_pids(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if stat_fields(child).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
                == Some(pid)
            {
                pids.push(child);
            }
        }
    }
    pids
}

/// The fields of `/proc/PID/stat` after the command name: state, ppid, ...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// User + system CPU seconds of one process (all its threads).
fn cpu_s(pid: u32) -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    });
    // utime and stime are fields 14 and 15 of stat: 11 and 12 after the command name.
    stat_fields(pid)
        .and_then(|f| {
            let u: f64 = f.get(11)?.parse().ok()?;
            let s: f64 = f.get(12)?.parse().ok()?;
            Some((u + s) / ticks)
        })
        .unwrap_or(0.0)
}

/// Resident memory of a process and its children, KiB.
fn rss_kib(pid: u32) -> f64 {
    tree_pids(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .sum()
}

/// Opens `n` connections through the proxy, each with a full handshake and one echo (so it is
/// routed), holds them open, and returns the proxy's resident memory added per connection.
async fn idle_memory(
    addr: SocketAddr,
    connector: &TlsConnector,
    sni: &ServerName<'static>,
    pid: u32,
    n: usize,
) -> f64 {
    let before = rss_kib(pid);
    let mut held = Vec::with_capacity(n);
    let msg = [9u8; 64];
    let mut back = [0u8; 64];
    for _ in 0..n {
        let Ok(mut tls) = open(addr, connector, sni).await else {
            continue;
        };
        if tls.write_all(&msg).await.is_ok() && tls.read_exact(&mut back).await.is_ok() {
            held.push(tls);
        }
    }
    // Let the proxy settle its buffers after the last echo.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let added = rss_kib(pid) - before;
    let count = held.len();
    for mut tls in held {
        let _ = tls.shutdown().await;
    }
    if count == 0 {
        f64::NAN
    } else {
        added / count as f64
    }
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

/// Full handshake + 64-byte echo + close, `concurrency` loops at once; returns (rate, errors,
/// connections completed).
async fn handshakes(
    addr: SocketAddr,
    connector: &TlsConnector,
    sni: &ServerName<'static>,
    concurrency: usize,
    period: Duration,
) -> (f64, u64, u64) {
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
    let done = done.load(Ordering::Relaxed);
    let rate = done as f64 / start.elapsed().as_secs_f64();
    (rate, errors.load(Ordering::Relaxed), done)
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
            Err(e) => {
                eprintln!("bulk via {addr}: opening a stream failed: {e}");
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
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "no end within the period + 5 s".to_owned(),
                    };
                    eprintln!("bulk via {addr}: a stream failed: {why}");
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
