//! The rustls side of `tests/data/capture.sh`, plus a live check against the
//! rustls version this workspace builds with.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

const SNI: &str = "web.default.dc1.internal.11111111-2222-3333-4444-555555555555.consul";

/// A rustls client with the ring provider offering ALPN `h2`, `http/1.1`.
fn client(sni: &str) -> ClientConnection {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = ServerName::try_from(sni.to_owned()).expect("valid DNS name");
    ClientConnection::new(Arc::new(cfg), name).expect("client connection")
}

/// Sends a real rustls ClientHello over TCP. With `MESH_HELLO_CAPTURE_ADDR` set (as
/// `tests/data/capture.sh` does) it goes to that capture listener; otherwise to a listener of
/// this test, which parses what arrived on the wire.
#[test]
fn rustls_client_hello_over_tcp() {
    use std::io::Read;

    use mesh_sni::hello::{DEFAULT_MAX_HELLO_LEN, Parse, parse_client_hello};

    let sni = std::env::var("MESH_HELLO_CAPTURE_SNI").unwrap_or_else(|_| SNI.to_owned());
    let (addr, server) = match std::env::var("MESH_HELLO_CAPTURE_ADDR") {
        Ok(a) => (a, None),
        Err(_) => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let a = l.local_addr().expect("addr").to_string();
            let t = std::thread::spawn(move || {
                let (mut s, _) = l.accept().expect("accept");
                s.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Parse::Done(h) = parse_client_hello(&got, DEFAULT_MAX_HELLO_LEN) {
                        return h.server_name().map(str::to_owned);
                    }
                    let n = s.read(&mut buf).expect("read the hello");
                    assert!(n > 0, "client closed before a whole hello");
                    got.extend_from_slice(&buf[..n]);
                }
            });
            (a, Some(t))
        }
    };
    let mut tcp = TcpStream::connect(addr).expect("connect to the listener");
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut conn = client(&sni);
    while conn.wants_write() {
        conn.write_tls(&mut tcp).expect("write the hello");
    }
    tcp.flush().expect("flush");
    if let Some(t) = server {
        assert_eq!(
            t.join().expect("listener thread").as_deref(),
            Some(sni.as_str())
        );
    }
}

/// The hello of the rustls this workspace builds with, made now, in memory,
/// parses to what the client was configured with, in one record and
/// re-fragmented.
#[test]
fn live_rustls_client_hello_parses() {
    use mesh_sni::hello::{DEFAULT_MAX_HELLO_LEN, Parse, parse_client_hello};

    for sni in [
        SNI,
        "socat.default.dc2.internal.11111111-2222-3333-4444-555555555555.consul",
    ] {
        let mut conn = client(sni);
        let mut wire = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut wire).expect("write to a Vec");
        }
        let Parse::Done(hello) = parse_client_hello(&wire, DEFAULT_MAX_HELLO_LEN) else {
            panic!("rustls hello did not parse");
        };
        assert_eq!(hello.server_name(), Some(sni));
        assert_eq!(hello.alpn().collect::<Vec<_>>(), [&b"h2"[..], b"http/1.1"]);
        assert_eq!(hello.versions().collect::<Vec<_>>(), [0x0304, 0x0303]);
        assert_eq!(hello.consumed(), wire.len());
        for n in 0..wire.len() {
            assert!(matches!(
                parse_client_hello(&wire[..n], DEFAULT_MAX_HELLO_LEN),
                Parse::NeedMore
            ));
        }
    }
}
