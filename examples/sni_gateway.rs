//! A standalone SNI gateway: it reads the server name of each incoming TLS ClientHello and
//! forwards the still-encrypted connection to the endpoints routed for that name, round-robin
//! with failover, without ever terminating TLS.
//!
//! It shows `mesh_sni::Gateway` on its own: exact-name routes (any host name to a list of
//! addresses), optionally the mesh rules (services of this datacenter, gateways of other
//! datacenters), the time-outs and connection limit, and the counters printed on Ctrl-C.
//!
//! ```text
//! cargo run --example sni_gateway -- --listen 127.0.0.1:8443 \
//!     --route web.example=127.0.0.1:9001,127.0.0.1:9002 --route db.example=127.0.0.1:9003
//! ```
//!
//! Then `openssl s_client -connect 127.0.0.1:8443 -servername web.example` reaches one of the
//! web endpoints. Run with `--help` for every flag.
//!
//! `cargo run --example sni_gateway -- --demo` runs a self-contained tour instead: a TLS echo
//! service in dc1, dc1's gateway, dc2's gateway, and a rustls client in dc2 whose TLS session
//! crosses both gateways end to end; then a refused name, and both gateways' counters.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use mesh::sni::{Gateway, GatewayConfig, ListenerKind, Pool, RouteTable};

const HELP: &str = "\
sni_gateway: route TLS connections by SNI without terminating them

USAGE:
    cargo run --example sni_gateway -- [OPTIONS] --listen ADDR --route NAME=ADDR[,ADDR...]

OPTIONS:
    --listen ADDR                 LAN listener address, e.g. 127.0.0.1:8443 (repeatable;
                                  port 0 picks a free port)
    --wan-listen ADDR             WAN listener address (repeatable); counted apart from LAN
    --route NAME=ADDR[,ADDR...]   send the exact server name NAME to these endpoints,
                                  round-robin with failover (repeatable)
    --datacenter DC               this gateway's datacenter for mesh names (default dc1)
    --trust-domain TD             the mesh trust domain (default
                                  11111111-2222-3333-4444-555555555555.consul)
    --service NAME=ADDR[,...]     route <NAME>.default.<DC>.internal.<TD> to these instances
    --remote DC=ADDR[,...]        route every mesh name of datacenter DC to these gateways
    --connect-timeout-ms N        time-out of one connect attempt (default 2000)
    --hello-timeout-ms N          time a client has to send its ClientHello (default 5000)
    --max-connections N           connections held at once; more are closed (default 10000)
    --relay-buffer-bytes N        size of each relay buffer (default 65536)
    --workers N                   worker threads, each running its own tokio event loop that
                                  accepts on every listener (default: one per CPU)
    --demo                        run the two-datacenter tour on loopback and exit
    -h, --help                    print this help

The gateway prints each listening address as `listening lan|wan ADDR` on stdout, and its
counters when it stops on Ctrl-C (it stops accepting, drains live connections for up to 5 s,
then cuts the rest). Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to see more.
";

struct Args {
    demo: bool,
    lan: Vec<SocketAddr>,
    wan: Vec<SocketAddr>,
    exact: Vec<(String, Vec<SocketAddr>)>,
    services: Vec<(String, Vec<SocketAddr>)>,
    remotes: Vec<(String, Vec<SocketAddr>)>,
    datacenter: String,
    trust_domain: String,
    config: GatewayConfig,
    workers: Option<usize>,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The tour prints its own story; a gateway says what it does.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(if args.demo { "warn" } else { "info" })
                }),
        )
        .init();
    // This runtime only waits for Ctrl-C (and runs the tour); the gateway's own event loops are
    // started in `run`, one per worker.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.demo {
        return demo().await;
    }
    let mut table = RouteTable::builder(args.datacenter.parse()?, args.trust_domain.parse()?);
    for (name, addrs) in args.exact {
        table = table.exact(&name, Pool::new(addrs));
    }
    for (name, addrs) in args.services {
        table = table.service(name.parse()?, Pool::new(addrs));
    }
    for (dc, addrs) in args.remotes {
        table = table.datacenter(dc.parse()?, Pool::new(addrs));
    }
    let gateway = Gateway::new(args.config, table.build()?)?;
    let mut listeners = Vec::new();
    for (kind, addrs) in [
        (ListenerKind::Lan, &args.lan),
        (ListenerKind::Wan, &args.wan),
    ] {
        for addr in addrs {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            listener.set_nonblocking(true)?;
            println!("listening {} {}", kind.as_str(), listener.local_addr()?);
            listeners.push((kind, listener));
        }
    }
    // One event loop per worker thread, each accepting on every listener, all sharing the
    // gateway (routes, limit, counters): no task ever moves between threads.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut loops = Vec::new();
    for i in 0..args.workers.unwrap_or_else(default_workers) {
        let gateway = gateway.clone();
        let mut stop = stop_rx.clone();
        let mine = listeners
            .iter()
            .map(|(kind, l)| Ok((*kind, l.try_clone()?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        loops.push(
            std::thread::Builder::new()
                .name(format!("gateway-{i}"))
                .spawn(move || -> Result<(), String> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("cannot start an event loop: {e}"))?;
                    rt.block_on(async move {
                        for (kind, l) in mine {
                            let l =
                                tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?;
                            gateway.serve(kind, l).map_err(|e| e.to_string())?;
                        }
                        let _ = stop.wait_for(|s| *s).await;
                        Ok(())
                    })
                })?,
        );
    }
    tokio::signal::ctrl_c().await?;
    let report = gateway.shutdown(Duration::from_secs(5)).await;
    let _ = stop_tx.send(true);
    for l in loops {
        match l.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("error: {e}"),
            Err(_) => eprintln!("error: an event loop panicked"),
        }
    }
    println!(
        "stopped: {} connections were live, {} cut after the drain",
        report.active_at_start, report.aborted
    );
    print!("{}", gateway.stats());
    Ok(())
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `Ok(None)` means `--help`.
fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        demo: false,
        lan: Vec::new(),
        wan: Vec::new(),
        exact: Vec::new(),
        services: Vec::new(),
        remotes: Vec::new(),
        datacenter: "dc1".into(),
        trust_domain: "11111111-2222-3333-4444-555555555555.consul".into(),
        config: GatewayConfig::default(),
        workers: None,
    };
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--demo" => a.demo = true,
            "--listen" => a.lan.push(addr(&value()?)?),
            "--wan-listen" => a.wan.push(addr(&value()?)?),
            "--route" => a.exact.push(route(&value()?)?),
            "--service" => a.services.push(route(&value()?)?),
            "--remote" => a.remotes.push(route(&value()?)?),
            "--datacenter" => a.datacenter = value()?,
            "--trust-domain" => a.trust_domain = value()?,
            "--connect-timeout-ms" => {
                a.config.connect_timeout = Duration::from_millis(number(&flag, &value()?)?);
            }
            "--hello-timeout-ms" => {
                a.config.hello_timeout = Duration::from_millis(number(&flag, &value()?)?);
            }
            "--max-connections" => a.config.max_connections = number(&flag, &value()?)?,
            "--relay-buffer-bytes" => a.config.relay_buffer_size = number(&flag, &value()?)?,
            "--workers" => {
                let n: usize = number(&flag, &value()?)?;
                if n == 0 {
                    return Err("--workers must be at least 1".into());
                }
                a.workers = Some(n);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !a.demo && a.lan.is_empty() && a.wan.is_empty() {
        return Err("give at least one --listen or --wan-listen address".into());
    }
    Ok(Some(a))
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|e| format!("{s:?} is not an IP:port address: {e}"))
}

fn route(s: &str) -> Result<(String, Vec<SocketAddr>), String> {
    let (name, list) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=ADDR[,ADDR...]"))?;
    let addrs = list.split(',').map(addr).collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_owned(), addrs))
}

fn number<T: std::str::FromStr>(flag: &str, s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| format!("{flag}: {s:?} is not a number: {e}"))
}

/// The two-datacenter tour: client (dc2) -> dc2 gateway -> dc1 gateway (WAN) -> web (dc1).
async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    use std::sync::Arc;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    let td = "11111111-2222-3333-4444-555555555555.consul";
    let web_sni = format!("web.default.dc1.internal.{td}");
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    // web, in dc1: a TLS echo service whose certificate names its SNI.
    let cert = rcgen::generate_simple_self_signed(vec![web_sni.clone()])?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)?;
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let web = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let web_addr = web.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = web.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    if tls.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    println!("web (dc1) serves TLS on {web_addr}");

    // dc1's gateway: web's instances; its WAN face is what dc2 reaches.
    let dc1_table = RouteTable::builder("dc1".parse()?, td.parse()?)
        .service("web".parse()?, Pool::new([web_addr]))
        .build()?;
    let dc1 = Gateway::new(GatewayConfig::default(), dc1_table)?;
    let dc1_wan = dc1
        .listen(ListenerKind::Wan, "127.0.0.1:0".parse()?)
        .await?;
    println!("dc1 gateway: WAN {dc1_wan}");

    // dc2's gateway: everything for dc1 goes to dc1's gateways.
    let dc2_table = RouteTable::builder("dc2".parse()?, td.parse()?)
        .datacenter("dc1".parse()?, Pool::new([dc1_wan]))
        .build()?;
    let dc2 = Gateway::new(GatewayConfig::default(), dc2_table)?;
    let dc2_lan = dc2
        .listen(ListenerKind::Lan, "127.0.0.1:0".parse()?)
        .await?;
    println!("dc2 gateway: LAN {dc2_lan}");

    // A client in dc2 that trusts web's certificate and asks for web by its SNI.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone())?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(dc2_lan).await?;
    let mut tls = connector
        .connect(ServerName::try_from(web_sni.clone())?, tcp)
        .await?;
    let msg = b"hello from dc2, through two gateways";
    tls.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    tls.read_exact(&mut back).await?;
    println!(
        "client -> {web_sni}: sent {:?}, web echoed {:?} ({:?}, the gateways saw only the hello)",
        String::from_utf8_lossy(msg),
        String::from_utf8_lossy(&back),
        tls.get_ref()
            .1
            .protocol_version()
            .unwrap_or(rustls::ProtocolVersion::Unknown(0)),
    );
    tls.shutdown().await?;
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest).await?;

    // A name no route knows is refused at dc2's gateway.
    let tcp = tokio::net::TcpStream::connect(dc2_lan).await?;
    let refused = connector
        .connect(
            ServerName::try_from(format!("web.default.dc9.internal.{td}"))?,
            tcp,
        )
        .await;
    println!(
        "client -> web in dc9: {}",
        match refused {
            Ok(_) => "connected (unexpected)".to_owned(),
            Err(e) => format!("refused ({e})"),
        }
    );

    for (name, gw) in [("dc2", &dc2), ("dc1", &dc1)] {
        gw.shutdown(Duration::from_secs(1)).await;
        print!("\n{name} gateway counters:\n{}", gw.stats());
    }
    Ok(())
}
