//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Arc;

use mesh_ca::{
    Ca, CaConfig, CaOptions, IssuedLeaf, LeafCert, Refusal, RootsView, new_leaf_request,
};
use mesh_core::{Datacenter, ServiceId, SpiffeId, TrustDomain};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::ParsedCertificate;

pub fn dc(s: &str) -> Datacenter {
    s.parse().unwrap()
}

/// A config without the CSR rate limit (tests sign many leaves at once).
pub fn unlimited() -> CaConfig {
    CaConfig {
        csr_max_per_second: 0.0,
        ..CaConfig::default()
    }
}

pub fn allow_all(_: &SpiffeId) -> Result<(), Refusal> {
    Ok(())
}

pub fn service_id(td: &TrustDomain, dc_name: &str, svc: &str) -> SpiffeId {
    SpiffeId::Service(ServiceId::new(
        td.clone(),
        dc(dc_name),
        svc.parse().unwrap(),
    ))
}

pub async fn primary(name: &str) -> Ca {
    Ca::bootstrap_primary(CaOptions::new(dc(name)).with_config(unlimited()))
        .await
        .unwrap()
}

pub async fn secondary(primary: &Ca, name: &str) -> Ca {
    Ca::init_secondary(CaOptions::new(dc(name)).with_config(unlimited()), primary)
        .await
        .unwrap()
}

/// Key + CSR + signature for `svc` in `ca`'s datacenter.
pub async fn leaf(ca: &Ca, svc: &str) -> LeafCert {
    let id = service_id(ca.trust_domain(), ca.datacenter().as_str(), svc);
    leaf_for(ca, &id).await
}

pub async fn leaf_for(ca: &Ca, id: &SpiffeId) -> LeafCert {
    let req = new_leaf_request(id, &[]).unwrap();
    let issued = ca.sign_leaf_pem(&req.csr_pem, &allow_all).await.unwrap();
    LeafCert::new(issued, req.key)
}

pub fn root_ders(view: &RootsView) -> Vec<CertificateDer<'static>> {
    view.roots
        .iter()
        .flat_map(|r| mesh_ca::x509::certs_from_pem(&r.root_cert).unwrap())
        .collect()
}

pub fn store(roots: &[CertificateDer<'static>]) -> RootCertStore {
    let mut s = RootCertStore::empty();
    for r in roots {
        s.add(r.clone()).unwrap();
    }
    s
}

/// WebPKI path validation (chain, time, serverAuth EKU) of an issued leaf against `roots`.
pub fn verify_chain(
    leaf: &IssuedLeaf,
    roots: &[CertificateDer<'static>],
) -> Result<(), rustls::Error> {
    let store = store(roots);
    let parsed = ParsedCertificate::try_from(&leaf.cert)?;
    let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &store,
        &leaf.chain,
        UnixTime::now(),
        algs.all,
    )
}

pub fn shared<T>(t: T) -> Arc<T> {
    Arc::new(t)
}
