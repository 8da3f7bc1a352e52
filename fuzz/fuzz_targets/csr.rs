//! Arbitrary bytes as a CSR (DER, and PEM-wrapped) into leaf signing: never panics, and a
//! certificate is only ever issued for an identity the authorizer allowed and the CA may sign.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mesh_ca::{Ca, CaConfig, CaOptions, Refusal};
use mesh_core::SpiffeId;

struct World {
    rt: tokio::runtime::Runtime,
    ca: Ca,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
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
    World { rt, ca }
});

/// Only services named `web` may be signed.
fn only_web(id: &SpiffeId) -> Result<(), Refusal> {
    match id.as_service() {
        Some(s) if s.service().as_str() == "web" => Ok(()),
        _ => Err(Refusal::new("only web")),
    }
}

fn check(issued: Result<mesh_ca::IssuedLeaf, mesh_ca::SignError>) {
    let Ok(leaf) = issued else { return };
    let w = &*WORLD;
    let svc = leaf
        .spiffe_id
        .as_service()
        .expect("only service IDs pass the authorizer");
    assert_eq!(svc.service().as_str(), "web");
    assert_eq!(svc.datacenter(), w.ca.datacenter());
    assert_eq!(svc.trust_domain(), w.ca.trust_domain());
    let info = mesh_ca::x509::CertInfo::parse(&leaf.cert).expect("issued cert parses");
    assert_eq!(info.uris, [leaf.spiffe_id.to_string()]);
    assert!(!info.is_ca);
}

fuzz_target!(|data: &[u8]| {
    let w = &*WORLD;
    check(w.rt.block_on(w.ca.sign_leaf_der(data, &only_web)));
    let pem = mesh_ca::x509::pem_block("CERTIFICATE REQUEST", data);
    check(w.rt.block_on(w.ca.sign_leaf_pem(&pem, &only_web)));
    if let Ok(text) = std::str::from_utf8(data) {
        check(w.rt.block_on(w.ca.sign_leaf_pem(text, &only_web)));
    }
});
