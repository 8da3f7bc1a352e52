//! The gateway over real loopback sockets, with real rustls clients and servers: the TLS session
//! runs end to end between a client and a backend, through one or two gateways that only see
//! the ClientHello.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use mesh_sni::{Gateway, GatewayConfig, GatewayStats, ListenerKind, Pool, RouteKind, RouteTable};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Sleep, timeout};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const TD: &str = "11111111-2222-3333-4444-555555555555.consul";
/// Bound on every wait in these tests; never reached when the code works.
const PATIENCE: Duration = Duration::from_secs(10);

fn web_sni() -> String {
    format!("web.default.dc1.internal.{TD}")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for the names a backend serves, and the client config that trusts
/// it.
struct Identity {
    cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Identity {
    fn new(names: &[&str]) -> Self {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        Self {
            cert: ck.cert.der().clone(),
            key: ck.signing_key.serialize_der(),
        }
    }

    fn server_config(&self) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        Arc::new(
            ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![self.cert.clone()], key)
                .unwrap(),
        )
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    fn pem(&self) -> String {
        use std::fmt::Write;
        let b64 = base64_encode(&self.cert);
        let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            writeln!(s, "{}", std::str::from_utf8(chunk).unwrap()).unwrap();
        }
        s.push_str("-----END CERTIFICATE-----\n");
        s
    }
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A TLS backend: on each connection it sends its one-byte id, echoes every byte, and when the
/// client ends its stream it sends `bye` and closes.
struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Backend {
    async fn start(id: u8, identity: &Identity) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), id, identity).await
    }

    async fn start_on(bind: SocketAddr, id: u8, identity: &Identity) -> Self {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let acceptor = TlsAcceptor::from(identity.server_config());
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = tls.write_all(&[id]).await;
                    let mut buf = [0u8; 4096];
                    loop {
                        match tls.read(&mut buf).await {
                            Ok(0) => {
                                let _ = tls.write_all(b"bye").await;
                                let _ = tls.shutdown().await;
                                return;
                            }
                            Ok(n) => {
                                if tls.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        }
                    }
                });
            }
        });
        Self { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

type Client = TlsStream<TcpStream>;

/// Connects through `gateway` with SNI `sni`, completes the handshake and reads the backend id.
async fn connect(
    gateway: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> io::Result<(Client, u8)> {
    let tcp = TcpStream::connect(gateway).await?;
    connect_over(tcp, sni, config).await
}

async fn connect_over<S>(
    io: S,
    sni: &str,
    config: Arc<ClientConfig>,
) -> io::Result<(TlsStream<S>, u8)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let mut tls = timeout(PATIENCE, TlsConnector::from(config).connect(name, io))
        .await
        .map_err(|_| io::Error::other("handshake timed out"))??;
    let mut id = [0u8];
    timeout(PATIENCE, tls.read_exact(&mut id))
        .await
        .map_err(|_| io::Error::other("no id"))??;
    Ok((tls, id[0]))
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(tls: &mut S, msg: &[u8]) {
    tls.write_all(msg).await.unwrap();
    // A slow transport may leave TLS records buffered until flushed.
    tls.flush().await.unwrap();
    let mut back = vec![0u8; msg.len()];
    timeout(PATIENCE, tls.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(back, msg);
}

/// Waits until `cond` holds on the gateway's stats (polling, bounded by [`PATIENCE`]).
async fn wait_stats(gw: &Gateway, what: &str, cond: impl Fn(&GatewayStats) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let s = gw.stats();
        if cond(&s) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited in vain for {what}:\n{s}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads until end of stream or error; returns what was read (bounded by [`PATIENCE`]).
async fn read_to_close<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = timeout(PATIENCE, s.read_to_end(&mut all))
        .await
        .expect("closed in time");
    all
}

fn table_web(backends: &[&Backend]) -> RouteTable {
    RouteTable::builder("dc1".parse().unwrap(), TD.parse().unwrap())
        .service(
            "web".parse().unwrap(),
            Pool::new(backends.iter().map(|b| b.addr)),
        )
        .build()
        .unwrap()
}

async fn gateway(config: GatewayConfig, table: RouteTable) -> (Gateway, SocketAddr) {
    let gw = Gateway::new(config, table).unwrap();
    let addr = gw
        .listen(ListenerKind::Lan, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (gw, addr)
}

#[tokio::test]
async fn local_route_end_to_end() {
    let id = Identity::new(&[&web_sni()]);
    let backend = Backend::start(b'A', &id).await;
    let (gw, addr) = gateway(GatewayConfig::default(), table_web(&[&backend])).await;

    let (mut tls, who) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
    assert_eq!(who, b'A');
    echo(&mut tls, b"ping").await;
    echo(&mut tls, &vec![7u8; 200_000]).await;
    drop(tls);

    wait_stats(&gw, "connection closed", |s| s.active() == 0).await;
    let s = gw.stats();
    let r = &s.routes[&web_sni()];
    assert_eq!(
        (r.kind, r.accepted, r.active),
        (RouteKind::LocalService, 1, 0)
    );
    assert!(
        r.bytes_to_backend > 200_000 && r.bytes_to_client > 200_000,
        "{s}"
    );
    assert_eq!((s.lan.accepted, s.wan.accepted), (1, 0));
    assert_eq!(s.refused().total(), 0);
}

#[tokio::test]
async fn remote_route_through_two_gateways() {
    let id = Identity::new(&[&web_sni()]);
    let backend = Backend::start(b'W', &id).await;
    // dc1's gateway: its WAN face serves the other datacenters.
    let gw1 = Gateway::new(GatewayConfig::default(), table_web(&[&backend])).unwrap();
    let gw1_wan = gw1
        .listen(ListenerKind::Wan, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // dc2's gateway forwards everything for dc1 to dc1's gateway WAN address.
    let table2 = RouteTable::builder("dc2".parse().unwrap(), TD.parse().unwrap())
        .datacenter("dc1".parse().unwrap(), Pool::new([gw1_wan]))
        .build()
        .unwrap();
    let (gw2, gw2_lan) = gateway(GatewayConfig::default(), table2).await;

    // The client verifies the backend's certificate: the session is end to end.
    let (mut tls, who) = connect(gw2_lan, &web_sni(), id.client_config())
        .await
        .unwrap();
    assert_eq!(who, b'W');
    let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(peer, id.cert);
    echo(&mut tls, b"across datacenters").await;
    drop(tls);

    wait_stats(&gw2, "dc2 idle", |s| s.active() == 0).await;
    wait_stats(&gw1, "dc1 idle", |s| s.active() == 0).await;
    let s2 = gw2.stats();
    let r2 = &s2.routes[&format!("dc1.internal.{TD}")];
    assert_eq!((r2.kind, r2.accepted), (RouteKind::RemoteGateway, 1));
    let s1 = gw1.stats();
    assert_eq!(
        (s1.wan.accepted, s1.lan.accepted),
        (1, 0),
        "counted on the WAN face"
    );
    assert_eq!(s1.routes[&web_sni()].accepted, 1);
}

#[tokio::test]
async fn unknown_sni_invalid_hello_and_no_sni_are_refused() {
    let id = Identity::new(&[
        &web_sni(),
        "nope.example",
        &format!("api.default.dc1.internal.{TD}"),
    ]);
    let backend = Backend::start(b'A', &id).await;
    let (gw, addr) = gateway(GatewayConfig::default(), table_web(&[&backend])).await;

    for sni in [
        "nope.example".to_owned(),
        format!("api.default.dc1.internal.{TD}"),
    ] {
        assert!(
            connect(addr, &sni, id.client_config()).await.is_err(),
            "{sni}"
        );
    }
    wait_stats(&gw, "two unknown routes", |s| {
        s.lan.refused.unknown_route == 2
    })
    .await;

    // A client that sends no SNI at all.
    let mut no_sni = (*id.client_config()).clone();
    no_sni.enable_sni = false;
    assert!(connect(addr, &web_sni(), Arc::new(no_sni)).await.is_err());
    wait_stats(&gw, "no SNI", |s| s.lan.refused.no_sni == 1).await;

    // Not TLS at all.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut tcp).await.is_empty());
    wait_stats(&gw, "invalid hello", |s| s.lan.refused.invalid_hello == 1).await;

    // A client that closes before its hello is complete.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    tcp.shutdown().await.unwrap();
    assert!(read_to_close(&mut tcp).await.is_empty());
    wait_stats(&gw, "closed early", |s| {
        s.lan.refused.closed_before_hello == 1
    })
    .await;

    assert_eq!(backend.accepted(), 0, "nothing reached the backend");
    assert!(gw.stats().routes.is_empty());
}

/// A stream that writes one byte per call, with a pause before each.
struct OneByteAtATime {
    inner: TcpStream,
    pause: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for OneByteAtATime {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for OneByteAtATime {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let pause = self
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_micros(300))));
        if pause.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.pause = None;
        Pin::new(&mut self.inner).poll_write(cx, &buf[..buf.len().min(1)])
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn client_sending_one_byte_at_a_time() {
    let id = Identity::new(&[&web_sni()]);
    let backend = Backend::start(b'S', &id).await;
    let (gw, addr) = gateway(GatewayConfig::default(), table_web(&[&backend])).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let slow = OneByteAtATime {
        inner: tcp,
        pause: None,
    };
    let (mut tls, who) = connect_over(slow, &web_sni(), id.client_config())
        .await
        .unwrap();
    assert_eq!(who, b'S');
    echo(&mut tls, b"slowly").await;
    assert_eq!(gw.stats().routes[&web_sni()].accepted, 1);
}

#[tokio::test]
async fn silent_and_stalled_clients_are_closed_by_the_hello_timeout() {
    let config = GatewayConfig {
        hello_timeout: Duration::from_millis(150),
        ..GatewayConfig::default()
    };
    let (gw, addr) = gateway(config, table_web(&[])).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    // The first bytes of a handshake record, then nothing.
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    assert!(read_to_close(&mut silent).await.is_empty());
    assert!(read_to_close(&mut stalled).await.is_empty());
    wait_stats(&gw, "two time-outs", |s| s.lan.refused.hello_timeout == 2).await;
}

#[tokio::test]
async fn failover_past_a_closed_port_and_all_endpoints_down() {
    let id = Identity::new(&[&web_sni()]);
    let backend = Backend::start(b'B', &id).await;
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let pool = Arc::new(Pool::new([closed, backend.addr]));
    let table = RouteTable::builder("dc1".parse().unwrap(), TD.parse().unwrap())
        .service("web".parse().unwrap(), pool.clone())
        .build()
        .unwrap();
    let (gw, addr) = gateway(GatewayConfig::default(), table).await;

    // Round-robin starts at the closed port: the connect fails over to the backend.
    let (mut tls, who) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
    assert_eq!(who, b'B');
    echo(&mut tls, b"after failover").await;
    assert_eq!(
        pool.is_up(closed),
        Some(false),
        "held off after the failure"
    );
    assert_eq!(gw.stats().routes[&web_sni()].connect_failures, 1);

    // While held off, the closed port is skipped without a new attempt.
    for _ in 0..3 {
        let (mut tls, _) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
        echo(&mut tls, b"x").await;
    }
    assert_eq!(gw.stats().routes[&web_sni()].connect_failures, 1);
    assert_eq!(backend.accepted(), 4);

    // An operator marks the backend down: nothing is left.
    assert!(pool.mark_down(backend.addr));
    assert!(connect(addr, &web_sni(), id.client_config()).await.is_err());
    wait_stats(&gw, "all down", |s| s.lan.refused.all_endpoints_down == 1).await;
    assert_eq!(backend.accepted(), 4);
    assert!(pool.mark_up(backend.addr));
    let (mut tls, _) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
    echo(&mut tls, b"back").await;
}

#[tokio::test]
async fn round_robin_spreads_exactly_over_three_backends() {
    let id = Identity::new(&[&web_sni()]);
    let a = Backend::start(b'1', &id).await;
    let b = Backend::start(b'2', &id).await;
    let c = Backend::start(b'3', &id).await;
    let (_gw, addr) = gateway(GatewayConfig::default(), table_web(&[&a, &b, &c])).await;
    let mut seen = Vec::new();
    for _ in 0..9 {
        let (mut tls, who) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
        echo(&mut tls, b"rr").await;
        seen.push(who);
    }
    assert_eq!(seen, b"123123123");
    assert_eq!((a.accepted(), b.accepted(), c.accepted()), (3, 3, 3));
}

#[tokio::test]
async fn table_swap_under_traffic() {
    let id = Identity::new(&[&web_sni()]);
    let old = Backend::start(b'O', &id).await;
    let new = Backend::start(b'N', &id).await;
    let (gw, addr) = gateway(GatewayConfig::default(), table_web(&[&old])).await;

    // Long connections keep talking while the table changes under them.
    let (swapped_tx, swapped_rx) = tokio::sync::watch::channel(false);
    let mut talkers = Vec::new();
    for i in 0..4u8 {
        let (mut tls, who) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
        assert_eq!(who, b'O');
        let mut swapped = swapped_rx.clone();
        talkers.push(tokio::spawn(async move {
            let mut rounds = 0;
            // Talk until the swap happened and then some more.
            loop {
                echo(&mut tls, &[i; 100]).await;
                rounds += 1;
                if *swapped.borrow_and_update() {
                    break;
                }
            }
            for _ in 0..10 {
                echo(&mut tls, &[i; 100]).await;
            }
            tls.shutdown().await.unwrap();
            let rest = read_to_close(&mut tls).await;
            assert_eq!(rest, b"bye");
            rounds
        }));
    }
    gw.routes().store(Arc::new(table_web(&[&new])));
    swapped_tx.send(true).unwrap();
    // New connections follow the new table at once.
    for _ in 0..3 {
        let (mut tls, who) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
        assert_eq!(who, b'N');
        echo(&mut tls, b"new").await;
    }
    for t in talkers {
        assert!(t.await.unwrap() >= 1);
    }
    assert_eq!((old.accepted(), new.accepted()), (4, 3));
    // set_routes is the same swap.
    gw.set_routes(table_web(&[&old]));
    let (_tls, who) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
    assert_eq!(who, b'O');
}

#[tokio::test]
async fn connection_limit_closes_extra_connections() {
    let id = Identity::new(&[&web_sni()]);
    let backend = Backend::start(b'L', &id).await;
    let config = GatewayConfig {
        max_connections: 2,
        ..GatewayConfig::default()
    };
    let (gw, addr) = gateway(config, table_web(&[&backend])).await;
    let (mut one, _) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
    let (two, _) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
    assert!(connect(addr, &web_sni(), id.client_config()).await.is_err());
    wait_stats(&gw, "over limit", |s| s.lan.refused.over_limit == 1).await;
    assert_eq!(gw.active_connections(), 2);
    echo(&mut one, b"still fine").await;

    drop(two);
    wait_stats(&gw, "a free slot", |s| s.active() == 1).await;
    let (mut three, _) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
    echo(&mut three, b"room again").await;
    assert_eq!(backend.accepted(), 3);
}

#[tokio::test]
async fn graceful_shutdown_drains_then_aborts() {
    let id = Identity::new(&[&web_sni()]);
    let backend = Backend::start(b'D', &id).await;
    let (gw, addr) = gateway(GatewayConfig::default(), table_web(&[&backend])).await;
    let (mut live, _) = connect(addr, &web_sni(), id.client_config()).await.unwrap();

    let drainer = gw.clone();
    let shutdown = tokio::spawn(async move { drainer.shutdown(PATIENCE).await });
    // Wait until the listener is gone: new connections are refused by the OS.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener still open"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The live connection keeps working while the gateway drains.
    echo(&mut live, b"draining").await;
    assert!(!shutdown.is_finished());
    live.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut live).await, b"bye");
    let report = timeout(PATIENCE, shutdown).await.unwrap().unwrap();
    assert_eq!((report.active_at_start, report.aborted), (1, 0));
    assert!(
        gw.listen(ListenerKind::Lan, "127.0.0.1:0".parse().unwrap())
            .await
            .is_err()
    );

    // A second gateway whose connection outlives a short drain is cut.
    let (gw, addr) = gateway(GatewayConfig::default(), table_web(&[&backend])).await;
    let (mut idle, _) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
    let report = gw.shutdown(Duration::from_millis(50)).await;
    assert_eq!((report.active_at_start, report.aborted), (1, 1));
    let mut buf = [0u8; 16];
    let cut = timeout(PATIENCE, idle.read(&mut buf)).await.unwrap();
    assert!(matches!(cut, Ok(0) | Err(_)), "{cut:?}");
    assert_eq!(gw.stats().lan.aborted, 1);
    assert_eq!(gw.active_connections(), 0);
}

#[tokio::test]
async fn half_close_keeps_the_other_direction() {
    let id = Identity::new(&[&web_sni()]);
    let backend = Backend::start(b'H', &id).await;
    let (gw, addr) = gateway(GatewayConfig::default(), table_web(&[&backend])).await;
    let (mut tls, _) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
    tls.write_all(b"last words").await.unwrap();
    // close_notify and FIN: the client will send nothing more but still reads.
    tls.shutdown().await.unwrap();
    let rest = read_to_close(&mut tls).await;
    assert_eq!(rest, b"last wordsbye");
    wait_stats(&gw, "closed", |s| s.active() == 0).await;
}

#[tokio::test]
async fn openssl_s_client_through_the_gateway() {
    let Ok(out) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        eprintln!("SKIPPED: the openssl binary is not installed (apt-get install -y openssl)");
        return;
    };
    assert!(out.status.success());
    let id = Identity::new(&[&web_sni()]);
    let backend = Backend::start(b'Z', &id).await;
    let (gw, addr) = gateway(GatewayConfig::default(), table_web(&[&backend])).await;
    let dir = std::env::temp_dir().join(format!("mesh-sni-openssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("backend.pem");
    std::fs::write(&ca, id.pem()).unwrap();

    let mut child = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect"])
        .arg(addr.to_string())
        .args([
            "-servername",
            &web_sni(),
            "-verify_hostname",
            &web_sni(),
            "-CAfile",
        ])
        .arg(&ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(b"hello from openssl\n").await.unwrap();
    stdin.flush().await.unwrap();
    let want = b"Zhello from openssl\n";
    let mut got = vec![0u8; want.len()];
    timeout(PATIENCE, stdout.read_exact(&mut got))
        .await
        .expect("openssl answered in time")
        .unwrap();
    assert_eq!(got, want);
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    wait_stats(&gw, "closed", |s| s.active() == 0).await;
    assert_eq!(gw.stats().routes[&web_sni()].accepted, 1);
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let id = Identity::new(&[&web_sni()]);
    let backend = Backend::start(b'I', &id).await;
    let config = GatewayConfig {
        idle_timeout: Duration::from_millis(100),
        ..GatewayConfig::default()
    };
    let (gw, addr) = gateway(config, table_web(&[&backend])).await;
    let (mut tls, _) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
    echo(&mut tls, b"then silence").await;
    let mut buf = [0u8; 16];
    let cut = timeout(PATIENCE, tls.read(&mut buf)).await.unwrap();
    assert!(matches!(cut, Ok(0) | Err(_)), "{cut:?}");
    wait_stats(&gw, "idle time-out", |s| {
        s.routes[&web_sni()].idle_timeouts == 1
    })
    .await;
}

#[tokio::test]
async fn one_gateway_served_by_an_event_loop_per_thread() {
    let id = Identity::new(&[&web_sni()]);
    let backend = Backend::start(b'E', &id).await;
    let gw = Gateway::new(GatewayConfig::default(), table_web(&[&backend])).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(2);
    let mut loops = Vec::new();
    for _ in 0..2 {
        let (gw, mut stop, ready) = (gw.clone(), stop_rx.clone(), ready_tx.clone());
        let mine = listener.try_clone().unwrap();
        loops.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = TcpListener::from_std(mine).unwrap();
                gw.serve(ListenerKind::Lan, l).unwrap();
                ready.send(()).await.unwrap();
                let _ = stop.wait_for(|s| *s).await;
            });
        }));
    }
    for _ in 0..2 {
        ready_rx.recv().await.unwrap();
    }
    let mut clients = Vec::new();
    for _ in 0..6 {
        let (mut tls, _) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
        echo(&mut tls, b"loop").await;
        clients.push(tls);
    }
    assert_eq!(gw.active_connections(), 6);
    drop(clients);
    let report = gw.shutdown(PATIENCE).await;
    assert_eq!(report.aborted, 0);
    stop_tx.send(true).unwrap();
    for l in loops {
        l.join().unwrap();
    }
    assert_eq!(gw.stats().routes[&web_sni()].accepted, 6);
}

#[tokio::test]
async fn silent_connections_neither_hold_routed_clients_off_nor_keep_new_ones_out() {
    let id = Identity::new(&[&web_sni()]);
    let backend = Backend::start(b'S', &id).await;
    let config = GatewayConfig {
        max_connections: 4,
        ..GatewayConfig::default()
    };
    let (gw, addr) = gateway(config, table_web(&[&backend])).await;
    // 1,500 connections that never send a byte: more than the waiting budget (1,024), far
    // more than the connection limit (4).
    let mut silent = Vec::new();
    for _ in 0..1500 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    wait_stats(&gw, "the oldest silent ones make room", |s| {
        s.lan.refused.hello_evicted >= 1500 - 1024
    })
    .await;
    // A real client is routed at once, and the silent ones never counted against the limit.
    let (mut tls, _) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
    echo(&mut tls, b"through the crowd").await;
    assert_eq!(gw.active_connections(), 1);
    assert_eq!(gw.stats().lan.refused.over_limit, 0);
    drop(silent);
}

#[tokio::test]
async fn a_single_endpoint_route_serves_again_as_soon_as_its_backend_is_back() {
    let id = Identity::new(&[&web_sni()]);
    // The only endpoint: a port where nothing listens yet.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let pool = Arc::new(Pool::new([port]));
    let table = RouteTable::builder("dc1".parse().unwrap(), TD.parse().unwrap())
        .service("web".parse().unwrap(), pool.clone())
        .build()
        .unwrap();
    let (gw, addr) = gateway(GatewayConfig::default(), table).await;
    assert!(connect(addr, &web_sni(), id.client_config()).await.is_err());
    wait_stats(&gw, "the refused connect", |s| {
        s.lan.refused.all_endpoints_down == 1
    })
    .await;
    assert_eq!(pool.is_up(port), Some(false), "held off after the failure");
    // The backend comes back on that port: the next connection is routed to it although the
    // endpoint is still held off (every endpoint of the route is, so all are tried).
    let backend = Backend::start_on(port, b'R', &id).await;
    let back = tokio::time::Instant::now();
    let (mut tls, who) = connect(addr, &web_sni(), id.client_config()).await.unwrap();
    assert_eq!(who, b'R');
    // Reported, not asserted: the first connection after the backend's return, handshake
    // included, within the 5 s hold-off.
    eprintln!(
        "routed again {:?} after the backend came back",
        back.elapsed()
    );
    echo(&mut tls, b"back at once").await;
    assert_eq!(backend.accepted(), 1);
}
