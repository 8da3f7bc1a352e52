//! Real mTLS handshakes over loopback with tokio-rustls: mutual authentication across
//! datacenters, every refusal, and a root rotation under live connections.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::*;
use mesh_ca::tls::danger::AllowAllPeers;
use mesh_ca::tls::{
    self, ConnectAuthorizer, ExpectedServer, HandshakeError, PeerRefusal, TlsIdentity, TrustBundle,
};
use mesh_ca::{Ca, CaOptions, Clock, LeafCert, Refusal};
use mesh_core::{Sni, SpiffeId};
use rustls::pki_types::ServerName;
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const T: Duration = Duration::from_secs(5);

type Accepted = Result<SpiffeId, String>;

/// An echo server: each line comes back prefixed with the client's SPIFFE ID. Every accept
/// result (peer id or refusal text) is reported on the channel.
async fn serve(
    identity: &TlsIdentity,
    authz: Arc<dyn ConnectAuthorizer>,
) -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<(Accepted, Option<PeerRefusal>)>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(identity.server_config(authz).unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tls::accept(&acceptor, tcp, T).await {
                    Ok((stream, id)) => {
                        let _ = tx.send((Ok(id.clone()), None));
                        let (r, mut w) = tokio::io::split(stream);
                        let mut lines = BufReader::new(r).lines();
                        while let Ok(Ok(Some(line))) =
                            tokio::time::timeout(T, lines.next_line()).await
                        {
                            if w.write_all(format!("{id} {line}\n").as_bytes())
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        let refusal = match &e {
                            HandshakeError::Refused(r) => Some(r.clone()),
                            _ => None,
                        };
                        let _ = tx.send((Err(e.to_string()), refusal));
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn sni(ca: &Ca, svc: &str) -> ServerName<'static> {
    let s = Sni::service(
        svc.parse().unwrap(),
        ca.datacenter().clone(),
        ca.trust_domain().clone(),
    );
    ServerName::try_from(s.to_string()).unwrap()
}

struct Conn {
    lines: tokio::io::Lines<
        BufReader<tokio::io::ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>>,
    >,
    w: tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>,
    server_id: SpiffeId,
}

impl Conn {
    async fn ping(&mut self, msg: &str) -> String {
        self.w
            .write_all(format!("{msg}\n").as_bytes())
            .await
            .unwrap();
        tokio::time::timeout(T, self.lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }
}

async fn dial(
    identity: &TlsIdentity,
    expected: ExpectedServer,
    addr: std::net::SocketAddr,
    name: ServerName<'static>,
) -> Result<Conn, HandshakeError> {
    let connector = TlsConnector::from(Arc::new(identity.client_config(expected).unwrap()));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (stream, server_id) = tls::connect(&connector, name, tcp, T).await?;
    let (r, w) = tokio::io::split(stream);
    Ok(Conn {
        lines: BufReader::new(r).lines(),
        w,
        server_id,
    })
}

/// Dials and expects the server to refuse; returns the server-side refusal.
async fn server_refuses(
    rx: &mut mpsc::UnboundedReceiver<(Accepted, Option<PeerRefusal>)>,
    client: &TlsIdentity,
    expected: ExpectedServer,
    addr: std::net::SocketAddr,
    name: ServerName<'static>,
) -> PeerRefusal {
    // In TLS 1.3 the client finishes before the server checks its certificate, so the
    // client-side error may only show on first read.
    if let Ok(mut c) = dial(client, expected, addr, name).await {
        c.w.write_all(b"hello\n").await.ok();
        let r = tokio::time::timeout(T, c.lines.next_line()).await.unwrap();
        assert!(
            !matches!(r, Ok(Some(_))),
            "refused client must not get data"
        );
    }
    let (res, refusal) = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
    assert!(res.is_err());
    refusal.expect("typed refusal")
}

fn identity(leaf: &LeafCert, ca: &Ca) -> TlsIdentity {
    TlsIdentity::with_leaf(leaf, &ca.roots()).unwrap()
}

#[tokio::test]
async fn primary_and_secondary_leaves_authenticate_each_other() {
    let p = primary("dc1").await;
    let s = secondary(&p, "dc2").await;
    let web = leaf(&p, "web").await;
    let api = leaf(&s, "api").await;
    let server = identity(&web, &p);
    let client = identity(&api, &s);
    assert_eq!(client.local_id().unwrap(), *api.spiffe_id());
    let (addr, mut rx) = serve(&server, Arc::new(AllowAllPeers)).await;
    let mut c = dial(
        &client,
        ExpectedServer::id(web.spiffe_id().clone()),
        addr,
        sni(&p, "web"),
    )
    .await
    .unwrap();
    assert_eq!(c.server_id, *web.spiffe_id());
    assert_eq!(c.ping("hi").await, format!("{} hi", api.spiffe_id()));
    let (accepted, _) = rx.recv().await.unwrap();
    assert_eq!(accepted.unwrap(), *api.spiffe_id());

    // And the other way round: the secondary's service serves the primary's.
    let (addr, _rx) = serve(&client, Arc::new(AllowAllPeers)).await;
    let expected = ExpectedServer::Service("api".parse().unwrap());
    let mut c = dial(&server, expected, addr, sni(&s, "api")).await.unwrap();
    assert_eq!(c.ping("yo").await, format!("{} yo", web.spiffe_id()));
}

#[tokio::test]
async fn every_refusal_is_typed() {
    let p = primary("dc1").await;
    let web = leaf(&p, "web").await;
    let api = leaf(&p, "api").await;
    let server = identity(&web, &p);
    let client = identity(&api, &p);
    let expect_web = || ExpectedServer::id(web.spiffe_id().clone());

    // Authorizer (intentions) refusing api, inside the handshake.
    let deny_api = |id: &SpiffeId| -> Result<(), Refusal> {
        match id.as_service() {
            Some(s) if s.service().as_str() == "api" => {
                Err(Refusal::new("intention api -> web deny"))
            }
            _ => Ok(()),
        }
    };
    let (addr, mut rx) = serve(&server, Arc::new(deny_api)).await;
    let r = server_refuses(&mut rx, &client, expect_web(), addr, sni(&p, "web")).await;
    assert!(
        matches!(&r, PeerRefusal::Unauthorized { refusal, .. } if refusal.reason() == "intention api -> web deny"),
        "{r:?}"
    );

    let (addr, mut rx) = serve(&server, Arc::new(AllowAllPeers)).await;

    // Unknown root: a client from another mesh.
    let other = primary("dc1").await;
    let stranger_leaf = leaf(&other, "api").await;
    // (it trusts our roots, so it gets as far as presenting its own leaf)
    let stranger = TlsIdentity::new(TrustBundle::from_roots(&p.roots()).unwrap());
    stranger.set_leaf(&stranger_leaf).unwrap();
    let r = server_refuses(&mut rx, &stranger, expect_web(), addr, sni(&p, "web")).await;
    assert_eq!(r, PeerRefusal::UnknownRoot);
    // A client of the other mesh refuses our server: its bundle lacks our root.
    let stranger = identity(&stranger_leaf, &other);
    let e = dial(&stranger, expect_web(), addr, sni(&p, "web"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, HandshakeError::Refused(PeerRefusal::UnknownRoot)),
        "{e:?}"
    );
    let (_, seen_by_server) = rx.recv().await.unwrap();
    assert!(matches!(seen_by_server, Some(PeerRefusal::RemoteAlert(_))));

    // Missing client certificate.
    let anonymous = TlsIdentity::new(TrustBundle::from_roots(&p.roots()).unwrap());
    let r = server_refuses(&mut rx, &anonymous, expect_web(), addr, sni(&p, "web")).await;
    assert_eq!(r, PeerRefusal::MissingClientCert);

    // Wrong SPIFFE ID: the client expected db, the server is web.
    let db: SpiffeId = service_id(p.trust_domain(), "dc1", "db");
    let e = dial(&client, ExpectedServer::id(db), addr, sni(&p, "db"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            HandshakeError::Refused(PeerRefusal::WrongSpiffeId { .. })
        ),
        "{e:?}"
    );
    let _ = rx.recv().await;

    // Wrong trust domain: a server whose bundle claims another trust domain for our roots.
    let foreign_td = "33333333-3333-3333-3333-333333333333.consul"
        .parse()
        .unwrap();
    let odd = TlsIdentity::new(TrustBundle::from_certs(foreign_td, root_ders(&p.roots())).unwrap());
    odd.set_leaf(&web).unwrap();
    let (odd_addr, mut odd_rx) = serve(&odd, Arc::new(AllowAllPeers)).await;
    let r = server_refuses(&mut odd_rx, &client, expect_web(), odd_addr, sni(&p, "web")).await;
    assert!(matches!(r, PeerRefusal::WrongTrustDomain { .. }), "{r:?}");

    // Expired and not-yet-valid client certificates (issued by a CA whose clock is off).
    let off = Arc::new(AtomicI64::new(0));
    let o = off.clone();
    let clock = Clock::from_fn(move || {
        OffsetDateTime::now_utc() + time::Duration::seconds(o.load(Ordering::SeqCst))
    });
    let state = p.export_state();
    let skewed = Ca::load(
        CaOptions::new(dc("dc1"))
            .with_config(unlimited())
            .with_clock(clock),
        state,
    )
    .unwrap();
    off.store(-100 * 86400, Ordering::SeqCst);
    let old = identity(&leaf(&skewed, "api").await, &p);
    let r = server_refuses(&mut rx, &old, expect_web(), addr, sni(&p, "web")).await;
    assert_eq!(r, PeerRefusal::Expired);
    off.store(10 * 86400, Ordering::SeqCst);
    let early = identity(&leaf(&skewed, "api").await, &p);
    let r = server_refuses(&mut rx, &early, expect_web(), addr, sni(&p, "web")).await;
    assert_eq!(r, PeerRefusal::NotYetValid);

    // A server with an expired leaf is refused by the client.
    off.store(-100 * 86400, Ordering::SeqCst);
    let stale_server = identity(&leaf(&skewed, "web").await, &p);
    let (stale_addr, _rx2) = serve(&stale_server, Arc::new(AllowAllPeers)).await;
    let e = dial(&client, expect_web(), stale_addr, sni(&p, "web"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, HandshakeError::Refused(PeerRefusal::Expired)),
        "{e:?}"
    );
}

#[tokio::test]
async fn rotation_under_live_connections() {
    let p = primary("dc1").await;
    let s = secondary(&p, "dc2").await;
    // web (dc1) serves, api (dc2) and legacy (dc2, never refreshed) dial.
    let server = identity(&leaf(&p, "web").await, &p);
    let client = identity(&leaf(&s, "api").await, &s);
    let legacy = identity(&leaf(&s, "legacy").await, &s);
    let web_id = service_id(p.trust_domain(), "dc1", "web");
    let expect = || ExpectedServer::id(web_id.clone());
    let (addr, _rx) = serve(&server, Arc::new(AllowAllPeers)).await;

    let mut before = dial(&client, expect(), addr, sni(&p, "web")).await.unwrap();
    assert!(before.ping("before").await.ends_with("before"));

    // Rotate: the primary gets a new root, the secondary a new intermediate under it.
    let rot = p.rotate().await.unwrap();
    s.renew_intermediate(&p).await.unwrap();

    // During: api has a new-root leaf and the new bundle; web still serves its old-root leaf
    // with the old bundle... and still accepts api through the cross-signed root.
    let api_new = leaf(&s, "api").await;
    assert_eq!(api_new.issued.root_id, rot.new_root_id);
    client.set_leaf(&api_new).unwrap();
    client.set_roots(&s.roots()).unwrap();
    let mut during = dial(&client, expect(), addr, sni(&p, "web")).await.unwrap();
    assert!(during.ping("during").await.ends_with("during"));

    // web moves to a new-root leaf and the new bundle; legacy (old leaf, old bundle only)
    // still connects, and api keeps working.
    let web_new = leaf(&p, "web").await;
    server.set_leaf(&web_new).unwrap();
    server.set_roots(&p.roots()).unwrap();
    let mut old_and_new = dial(&legacy, expect(), addr, sni(&p, "web")).await.unwrap();
    assert!(
        old_and_new
            .ping("legacy")
            .await
            .starts_with(&format!("{} ", legacy.local_id().unwrap()))
    );
    let mut after = dial(&client, expect(), addr, sni(&p, "web")).await.unwrap();
    assert!(after.ping("after").await.ends_with("after"));

    // After pruning-free steady state, all connections opened before still pass data.
    assert!(before.ping("still").await.ends_with("still"));
    assert!(during.ping("still").await.ends_with("still"));
    assert!(old_and_new.ping("still").await.ends_with("still"));
}

#[tokio::test]
async fn identity_follows_leaf_manager_and_roots() {
    let p = primary("dc1").await;
    let id = service_id(p.trust_domain(), "dc1", "web");
    let signer = Arc::new(mesh_ca::LocalSigner::new(p.clone(), allow_all));
    let mgr =
        mesh_ca::LeafManager::spawn(id.clone(), signer, p.subscribe_roots(), Default::default());
    let first = mgr.ready().await.unwrap();
    let ident = TlsIdentity::new(TrustBundle::from_roots(&p.roots()).unwrap());
    let task = ident.follow(mgr.subscribe(), p.subscribe_roots());
    tokio::time::timeout(T, async {
        while ident.local_id().is_none() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(ident.local_id().unwrap(), *first.spiffe_id());
    p.rotate().await.unwrap();
    tokio::time::timeout(T, async {
        while ident.bundle().root_ids().len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    task.abort();
}
