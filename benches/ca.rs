//! CA and mTLS costs next to their physical floor.
//!
//! * Leaf issuance (`Ca::sign_leaf_der`: CSR parse + signature check, identity checks, build,
//!   sign, re-parse) next to one ring ECDSA P-256 verify plus one sign of a 130-byte message
//!   (the floor: issuance needs exactly one of each).
//! * Full mTLS handshakes in memory (ClientConnection/ServerConnection over buffers, TLS 1.3,
//!   resumption disabled) with mesh's SPIFFE verifiers next to rustls' stock WebPKI verifiers.
//!
//! `cargo bench --bench ca -- --quick` (criterion), then the ratios printed at the end.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_ca::tls::danger::AllowAllPeers;
use mesh_ca::tls::{ExpectedServer, TlsIdentity, crypto_provider};
use mesh_ca::{Ca, CaConfig, CaOptions, LeafCert, Refusal, new_leaf_request};
use mesh_core::{ServiceId, SpiffeId};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

fn allow(_: &SpiffeId) -> Result<(), Refusal> {
    Ok(())
}

struct Setup {
    rt: tokio::runtime::Runtime,
    ca: Ca,
    csr_der: Vec<u8>,
    mesh: (Arc<ClientConfig>, Arc<ServerConfig>),
    stock: (Arc<ClientConfig>, Arc<ServerConfig>),
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cfg = CaConfig {
        csr_max_per_second: 0.0,
        ..CaConfig::default()
    };
    let ca = rt
        .block_on(Ca::bootstrap_primary(
            CaOptions::new("dc1".parse().expect("dc")).with_config(cfg),
        ))
        .expect("ca");
    let id = |svc: &str| -> SpiffeId {
        ServiceId::new(
            ca.trust_domain().clone(),
            "dc1".parse().expect("dc"),
            svc.parse().expect("svc"),
        )
        .into()
    };
    let issue = |svc: &str| {
        let req = new_leaf_request(&id(svc), &[&format!("{svc}.internal")]).expect("csr");
        let issued = rt
            .block_on(ca.sign_leaf_pem(&req.csr_pem, &allow))
            .expect("leaf");
        LeafCert::new(issued, req.key)
    };
    let (web, api) = (issue("web"), issue("api"));
    let csr_der = new_leaf_request(&id("bench"), &[]).expect("csr").csr_der;

    let server_id = TlsIdentity::with_leaf(&web, &ca.roots()).expect("identity");
    let client_id = TlsIdentity::with_leaf(&api, &ca.roots()).expect("identity");
    let mut s = server_id
        .server_config(Arc::new(AllowAllPeers))
        .expect("server config");
    let mut c = client_id
        .client_config(ExpectedServer::id(web.spiffe_id().clone()))
        .expect("client config");
    no_resumption(&mut c, &mut s);
    let mesh = (Arc::new(c), Arc::new(s));

    let p = crypto_provider();
    let roots = server_id.bundle().root_store().clone();
    let cv = WebPkiClientVerifier::builder_with_provider(roots.clone(), p.clone())
        .build()
        .expect("verifier");
    let sv = WebPkiServerVerifier::builder_with_provider(roots, p.clone())
        .build()
        .expect("verifier");
    let key = |l: &LeafCert| rustls::pki_types::PrivateKeyDer::Pkcs8(l.key().to_pkcs8_der());
    let mut s = ServerConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(cv)
        .with_single_cert(web.chain(), key(&web))
        .expect("cert");
    let mut c = ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_webpki_verifier(sv)
        .with_client_auth_cert(api.chain(), key(&api))
        .expect("cert");
    no_resumption(&mut c, &mut s);
    let stock = (Arc::new(c), Arc::new(s));
    Setup {
        rt,
        ca,
        csr_der,
        mesh,
        stock,
    }
}

fn no_resumption(c: &mut ClientConfig, s: &mut ServerConfig) {
    c.resumption = Resumption::disabled();
    s.session_storage = Arc::new(NoServerSessionStorage {});
    s.send_tls13_tickets = 0;
}

/// One full handshake, both ends in this thread, bytes through buffers.
fn handshake(cfg: &(Arc<ClientConfig>, Arc<ServerConfig>)) {
    let name = rustls::pki_types::ServerName::try_from("web.internal").expect("name");
    let mut client = ClientConnection::new(cfg.0.clone(), name).expect("client");
    let mut server = ServerConnection::new(cfg.1.clone()).expect("server");
    let mut buf = Vec::with_capacity(8192);
    while client.is_handshaking() || server.is_handshaking() {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).expect("write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).expect("read");
        }
        server.process_new_packets().expect("server handshake");
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).expect("write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).expect("read");
        }
        client.process_new_packets().expect("client handshake");
    }
    assert_eq!(server.handshake_kind(), Some(rustls::HandshakeKind::Full));
}

struct Anchor {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    msg: [u8; 130],
    sig: Vec<u8>,
}

fn anchor() -> Anchor {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("keygen");
    let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("key");
    let msg = [7u8; 130];
    let sig = key.sign(&rng, &msg).expect("sign").as_ref().to_vec();
    Anchor { key, rng, msg, sig }
}

fn verify_plus_sign(a: &Anchor) {
    let pk = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        a.key.public_key().as_ref(),
    );
    pk.verify(&a.msg, &a.sig).expect("verify");
    black_box(a.key.sign(&a.rng, &a.msg).expect("sign"));
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let a = anchor();
    let mut g = c.benchmark_group("leaf_issuance");
    g.bench_function("floor_ring_p256_verify_plus_sign", |b| {
        b.iter(|| verify_plus_sign(&a))
    });
    g.bench_function("mesh_ca_sign_leaf", |b| {
        b.iter(|| {
            black_box(
                s.rt.block_on(s.ca.sign_leaf_der(&s.csr_der, &allow))
                    .expect("sign"),
            )
        })
    });
    g.finish();
    let mut g = c.benchmark_group("mtls_full_handshake");
    g.bench_function("stock_webpki_verifiers", |b| b.iter(|| handshake(&s.stock)));
    g.bench_function("mesh_spiffe_verifiers", |b| b.iter(|| handshake(&s.mesh)));
    g.finish();
    ratios(&s, &a);
}

/// Interleaved timing rounds; the best round of each side gives the printed ratio.
fn ratios(s: &Setup, a: &Anchor) {
    let best = |f: &dyn Fn(), n: u32| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..n {
                    f();
                }
                t.elapsed() / n
            })
            .min()
            .unwrap_or(Duration::ZERO)
    };
    let floor = best(&|| verify_plus_sign(a), 400);
    let issue = best(
        &|| drop(s.rt.block_on(s.ca.sign_leaf_der(&s.csr_der, &allow))),
        400,
    );
    let stock = best(&|| handshake(&s.stock), 150);
    let mesh = best(&|| handshake(&s.mesh), 150);
    println!(
        "leaf issuance {:?} ({:.0}/s) vs floor verify+sign {:?}: ratio {:.3} (goal <= 1.15)",
        issue,
        1.0 / issue.as_secs_f64(),
        floor,
        issue.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "mTLS full handshake mesh {:?} ({:.0}/s) vs stock WebPKI {:?} ({:.0}/s): ratio {:.3} (goal <= 1.05)",
        mesh,
        1.0 / mesh.as_secs_f64(),
        stock,
        1.0 / stock.as_secs_f64(),
        mesh.as_secs_f64() / stock.as_secs_f64()
    );
}

criterion_group!(ca, benches);
criterion_main!(ca);
