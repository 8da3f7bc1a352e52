//! The CA engine: bootstrap, naming vectors, leaf signing rules, secondaries, rotation,
//! roots view, export/load.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use common::*;
use mesh_ca::KeyError;
use mesh_ca::ca_common_name;
use mesh_ca::x509::{CertInfo, certs_from_pem, colon_hex};
use mesh_ca::{
    Ca, CaConfig, CaError, CaOptions, CaState, Clock, CsrError, IntermediateRejection,
    IntermediateSigner, KeySpec, PrivateKey, Refusal, RenewOutcome, RenewReason, Role, RootsView,
    RotateOptions, SignError, SignerError, new_leaf_request,
};
use mesh_core::{MeshGatewayId, Namespace, Partition, ServiceId, SpiffeId};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use time::OffsetDateTime;

const DAY: i64 = 24 * 3600;

fn manual_clock() -> (Clock, Arc<AtomicI64>) {
    let off = Arc::new(AtomicI64::new(0));
    let o = off.clone();
    let clock = Clock::from_fn(move || {
        OffsetDateTime::now_utc() + time::Duration::seconds(o.load(Ordering::SeqCst))
    });
    (clock, off)
}

fn csr_with_sans(sans: Vec<SanType>) -> String {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = sans;
    p.serialize_request(&key).unwrap().pem().unwrap()
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.to_owned().try_into().unwrap())
}

async fn sign_err(ca: &Ca, csr_pem: &str) -> SignError {
    ca.sign_leaf_pem(csr_pem, &allow_all).await.unwrap_err()
}

#[test]
fn ca_common_name_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/consul/spiffe.json"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut n = 0;
    for v in doc["vectors"].as_array().unwrap() {
        if v["kind"] != "ca_common_name" {
            continue;
        }
        let i = &v["input"];
        let got = ca_common_name(
            i["provider"].as_str().unwrap(),
            i["unique_id"].as_str().unwrap(),
            i["trust_domain_or_cluster_id"].as_str().unwrap(),
            i["primary"].as_bool().unwrap(),
        );
        assert_eq!(got, v["expected"].as_str().unwrap(), "{}", v["name"]);
        n += 1;
    }
    assert_eq!(n, 2, "every ca_common_name vector checked");
}

#[tokio::test]
async fn bootstrap_primary_root_and_roots_view() {
    let ca = primary("dc1").await;
    assert_eq!(ca.role(), Role::Primary);
    let td = ca.trust_domain().clone();
    assert_eq!(td.as_str(), format!("{}.consul", ca.cluster_id()));
    let roots = ca.roots();
    assert_eq!(roots.trust_domain, td.as_str());
    assert_eq!(roots.roots.len(), 1);
    let r = &roots.roots[0];
    assert!(r.active && r.rotated_out_at.is_none());
    assert_eq!(r.id, roots.active_root_id);
    assert_eq!(r.name, "Consul CA Primary Cert");
    assert_eq!(
        (r.private_key_type.as_str(), r.private_key_bits),
        ("ec", 256)
    );
    assert_eq!(r.external_trust_domain, ca.cluster_id().as_str());
    assert!(r.root_cert.ends_with('\n'));
    let der = &certs_from_pem(&r.root_cert).unwrap()[0];
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    assert_eq!(r.id, colon_hex(sha1.as_ref()));
    let info = CertInfo::parse(der).unwrap();
    assert_eq!(r.serial_number, info.serial_u64);
    assert_eq!(
        r.signing_key_id,
        colon_hex(info.subject_key_id.as_ref().unwrap())
    );
    let cn = info.common_name.unwrap();
    let td8 = &ca.cluster_id().as_str()[..8];
    assert!(
        cn.starts_with("pri-") && cn.ends_with(&format!(".consul.ca.{td8}.consul")),
        "{cn}"
    );
    // Root TTL 10 years, not back-dated.
    let life = info.not_after - info.not_before;
    assert_eq!(life.whole_hours(), 87600);
    let json = roots.to_json();
    for key in [
        "\"ActiveRootID\"",
        "\"TrustDomain\"",
        "\"Roots\"",
        "\"ID\"",
        "\"Name\"",
        "\"SerialNumber\"",
        "\"SigningKeyID\"",
        "\"NotBefore\"",
        "\"NotAfter\"",
        "\"RootCert\"",
        "\"IntermediateCerts\"",
        "\"Active\"",
        "\"RotatedOutAt\"",
        "\"PrivateKeyType\"",
        "\"PrivateKeyBits\"",
    ] {
        assert!(json.contains(key), "{key} missing in {json}");
    }
    assert_eq!(RootsView::from_json(&json).unwrap(), *roots);
    assert!(roots.pem_bundle().contains("BEGIN CERTIFICATE"));
}

#[tokio::test]
async fn bootstrap_refuses_bad_config() {
    let cfg = CaConfig {
        leaf_cert_ttl: std::time::Duration::from_secs(60),
        ..CaConfig::default()
    };
    let err = Ca::bootstrap_primary(CaOptions::new(dc("dc1")).with_config(cfg))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "leaf cert TTL must be greater or equal than 1h0m0s"
    );
    let cfg = CaConfig::default().with_key_spec(KeySpec::Rsa2048);
    let err = Ca::bootstrap_primary(CaOptions::new(dc("dc1")).with_config(cfg))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CaError::Provider(mesh_ca::ProviderError::Key(
                KeyError::RsaGenerationUnavailable
            ))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn leaves_have_unique_serials_and_default_ttl() {
    let ca = primary("dc1").await;
    let id = service_id(ca.trust_domain(), "dc1", "web");
    let req = new_leaf_request(&id, &[]).unwrap();
    let mut serials = HashSet::new();
    for _ in 0..200 {
        let l = ca.sign_leaf_pem(&req.csr_pem, &allow_all).await.unwrap();
        assert!(serials.insert(l.serial_number.clone()));
    }
    let l = ca.sign_leaf_der(&req.csr_der, &allow_all).await.unwrap();
    assert_eq!((l.valid_before - l.valid_after).whole_hours(), 72);
    assert_eq!(l.spiffe_id, id);
    assert!(
        l.chain.is_empty(),
        "the primary signs with its root directly"
    );
    assert_eq!(l.root_id, ca.roots().active_root_id);
    verify_chain(&l, &root_ders(&ca.roots())).unwrap();
}

#[tokio::test]
async fn signing_rules_each_have_their_error() {
    let ca = primary("dc1").await;
    let td = ca.trust_domain().clone();
    let web = format!("spiffe://{td}/ns/default/dc/dc1/svc/web");

    let e = sign_err(
        &ca,
        &csr_with_sans(vec![SanType::DnsName("x".try_into().unwrap())]),
    )
    .await;
    assert!(matches!(e, SignError::Csr(CsrError::InvalidUriCount(0))));
    assert_eq!(
        e.to_string(),
        "CSR SAN contains an invalid number of URIs: 0"
    );
    let e = sign_err(&ca, &csr_with_sans(vec![uri(&web), uri(&web)])).await;
    assert_eq!(
        e.to_string(),
        "CSR SAN contains an invalid number of URIs: 2"
    );
    let e = sign_err(
        &ca,
        &csr_with_sans(vec![
            uri(&web),
            SanType::Rfc822Name("a@b.c".try_into().unwrap()),
        ]),
    )
    .await;
    assert_eq!(
        e.to_string(),
        "CSR SAN does not allow specifying email addresses"
    );
    let e = sign_err(&ca, &csr_with_sans(vec![uri("http://example.com/")])).await;
    assert!(matches!(e, SignError::Csr(CsrError::InvalidSpiffeId(_))));
    assert!(e.is_invalid_request());

    let e = sign_err(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
    )
    .await;
    assert_eq!(
        e.to_string(),
        "first PEM-block should be CERTIFICATE REQUEST type"
    );

    let part: SpiffeId = ServiceId::new(td.clone(), dc("dc1"), "web".parse().unwrap())
        .with_tenancy("p1".parse::<Partition>().unwrap(), Namespace::default())
        .into();
    let e = sign_err(&ca, &new_leaf_request(&part, &[]).unwrap().csr_pem).await;
    assert!(matches!(e, SignError::NonDefaultTenancy(_)));
    assert!(
        e.to_string()
            .starts_with("Non default partition or namespace is supported in Enterprise only")
    );

    let e = sign_err(&ca, &csr_with_sans(vec![uri(&format!("spiffe://{td}"))])).await;
    assert_eq!(
        e.to_string(),
        "SPIFFE ID in CSR must be a service, mesh-gateway, or agent ID"
    );

    let deny = |id: &SpiffeId| -> Result<(), Refusal> {
        Err(Refusal::new(format!(
            "token lacks service:write on {}",
            id.as_service().unwrap().service()
        )))
    };
    let csr = new_leaf_request(&web.parse().unwrap(), &[])
        .unwrap()
        .csr_pem;
    let e = ca.sign_leaf_pem(&csr, &deny).await.unwrap_err();
    assert!(
        matches!(&e, SignError::PermissionDenied { refusal, .. } if refusal.reason() == "token lacks service:write on web")
    );
    assert!(e.is_refusal());

    let other_dc = service_id(&td, "dc2", "web");
    let e = sign_err(&ca, &new_leaf_request(&other_dc, &[]).unwrap().csr_pem).await;
    assert_eq!(
        e.to_string(),
        "SPIFFE ID in CSR from a different datacenter: dc2, we are dc1"
    );
    let gw: SpiffeId = MeshGatewayId::new(td.clone(), dc("dc2")).into();
    let e = sign_err(&ca, &new_leaf_request(&gw, &[]).unwrap().csr_pem).await;
    assert!(matches!(e, SignError::WrongDatacenter { .. }));

    let foreign = service_id(
        &"22222222-2222-2222-2222-222222222222.consul"
            .parse()
            .unwrap(),
        "dc1",
        "web",
    );
    let e = sign_err(&ca, &new_leaf_request(&foreign, &[]).unwrap().csr_pem).await;
    assert_eq!(
        e.to_string(),
        format!(
            "SPIFFE ID in CSR from a different trust domain: 22222222-2222-2222-2222-222222222222.consul, we are {td}"
        )
    );

    // Agents are rewritten into our trust domain (auto-encrypt clients do not know it yet).
    let agent: SpiffeId = "spiffe://unknown/agent/client/dc/dc1/id/node1"
        .parse()
        .unwrap();
    let l = leaf_for(&ca, &agent).await;
    assert_eq!(
        l.spiffe_id().to_string(),
        format!("spiffe://{td}/agent/client/dc/dc1/id/node1")
    );
    let info = CertInfo::parse(&l.issued.cert).unwrap();
    assert_eq!(info.uris, [l.spiffe_id().to_string()]);
    assert!(info.dns_names.contains(&"localhost".to_owned()));

    // Mesh gateway and server identities of our datacenter are signed.
    leaf_for(&ca, &MeshGatewayId::new(td.clone(), dc("dc1")).into()).await;
    let server: SpiffeId = format!("spiffe://{td}/agent/server/dc/dc1")
        .parse()
        .unwrap();
    let l = leaf_for(&ca, &server).await;
    assert_eq!(
        CertInfo::parse(&l.issued.cert).unwrap().dns_names,
        [format!("server.dc1.peering.{td}")]
    );
}

#[tokio::test]
async fn rate_limit_message() {
    let cfg = CaConfig {
        csr_max_per_second: 0.5,
        ..CaConfig::default()
    };
    let ca = Ca::bootstrap_primary(CaOptions::new(dc("dc1")).with_config(cfg))
        .await
        .unwrap();
    let csr = new_leaf_request(&service_id(ca.trust_domain(), "dc1", "web"), &[])
        .unwrap()
        .csr_pem;
    ca.sign_leaf_pem(&csr, &allow_all).await.unwrap();
    let e = sign_err(&ca, &csr).await;
    assert!(matches!(e, SignError::RateLimited));
    assert_eq!(e.to_string(), "Rate limit reached, try again later");
}

#[tokio::test]
async fn expired_root_and_intermediate_refuse_signing() {
    let (clock, off) = manual_clock();
    let p = Ca::bootstrap_primary(
        CaOptions::new(dc("dc1"))
            .with_config(unlimited())
            .with_clock(clock.clone()),
    )
    .await
    .unwrap();
    let s = Ca::init_secondary(
        CaOptions::new(dc("dc2"))
            .with_config(unlimited())
            .with_clock(clock),
        &p,
    )
    .await
    .unwrap();
    let csr = new_leaf_request(&service_id(p.trust_domain(), "dc2", "web"), &[])
        .unwrap()
        .csr_pem;
    off.store(400 * DAY, Ordering::SeqCst);
    let e = s.sign_leaf_pem(&csr, &allow_all).await.unwrap_err();
    assert!(e.to_string().starts_with("intermediate expired: "), "{e}");
    off.store(3651 * DAY, Ordering::SeqCst);
    let csr = new_leaf_request(&service_id(p.trust_domain(), "dc1", "web"), &[])
        .unwrap()
        .csr_pem;
    let e = p.sign_leaf_pem(&csr, &allow_all).await.unwrap_err();
    assert!(e.to_string().starts_with("root expired: "), "{e}");
}

#[tokio::test]
async fn secondary_intermediate_chain_and_roots_view() {
    let p = primary("dc1").await;
    let s = secondary(&p, "dc2").await;
    assert_eq!(s.role(), Role::Secondary);
    assert_eq!(s.trust_domain(), p.trust_domain());
    assert_eq!(s.cluster_id(), p.cluster_id());
    let sv = s.roots();
    let pv = p.roots();
    assert_eq!(sv.active_root_id, pv.active_root_id);
    let active = sv.active_root().unwrap();
    assert_eq!(active.intermediate_certs.len(), 1);
    let int_der = &certs_from_pem(&active.intermediate_certs[0]).unwrap()[0];
    let int = CertInfo::parse(int_der).unwrap();
    assert_eq!(
        active.signing_key_id,
        colon_hex(int.subject_key_id.as_ref().unwrap())
    );
    assert_ne!(
        active.signing_key_id,
        pv.active_root().unwrap().signing_key_id
    );
    // As the primary signs it: CA with pathLen 0, the signing URI, empty subject, 1 year.
    assert!(int.is_ca);
    assert_eq!(int.path_len, Some(0));
    assert_eq!(int.uris, [p.trust_domain().signing_uri()]);
    assert_eq!(int.common_name, None);
    assert_eq!((int.not_after - int.not_before).whole_hours(), 8760);
    let l = leaf(&s, "api").await;
    assert_eq!(l.issued.chain.len(), 1);
    assert!(l.issued.cert_pem.matches("BEGIN CERTIFICATE").count() == 2);
    verify_chain(&l.issued, &root_ders(&pv)).unwrap();
    // The secondary signs for its own datacenter only.
    let csr = new_leaf_request(&service_id(s.trust_domain(), "dc1", "web"), &[])
        .unwrap()
        .csr_pem;
    assert!(matches!(
        sign_err(&s, &csr).await,
        SignError::WrongDatacenter { .. }
    ));
    // Primary-only operations.
    assert_eq!(
        s.rotate().await.unwrap_err().to_string(),
        "not the primary datacenter"
    );
    assert_eq!(
        s.sign_intermediate("x").await.unwrap_err().to_string(),
        "not the primary datacenter"
    );
    assert!(matches!(
        p.renew_intermediate(&p).await,
        Err(CaError::NotSecondary)
    ));
}

/// A primary seen through a lens that tampers with its answers.
struct Tamper {
    primary: Ca,
    mode: Mode,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Refuse,
    NoTrustDomain,
    LeafInstead,
    NoUri,
    OtherKey,
}

#[async_trait]
impl IntermediateSigner for Tamper {
    async fn primary_roots(&self) -> Result<RootsView, SignerError> {
        let mut v = (*self.primary.roots()).clone();
        if self.mode == Mode::NoTrustDomain {
            v.trust_domain.clear();
        }
        Ok(v)
    }

    async fn sign_intermediate(&self, csr_pem: &str) -> Result<String, SignerError> {
        match self.mode {
            Mode::Refuse | Mode::NoTrustDomain => Err("permission denied".into()),
            Mode::LeafInstead => {
                let l = leaf(&self.primary, "web").await;
                Ok(mesh_ca::x509::cert_pem(&l.issued.cert))
            }
            Mode::NoUri => {
                let key = PrivateKey::generate(KeySpec::EcP256).unwrap();
                let _ = csr_pem;
                let der = mesh_ca::intermediate_csr(&key, "spiffe://x.consul").unwrap();
                let mut csr =
                    rcgen::CertificateSigningRequestParams::from_der(&der.into()).unwrap();
                csr.params.subject_alt_names.clear();
                let k = KeyPair::from_pem(key.to_pkcs8_pem().expose()).unwrap();
                let pem = csr.params.serialize_request(&k).unwrap().pem().unwrap();
                Ok(self.primary.sign_intermediate(&pem).await?)
            }
            Mode::OtherKey => {
                let key = PrivateKey::generate(KeySpec::EcP256).unwrap();
                let der =
                    mesh_ca::intermediate_csr(&key, &self.primary.trust_domain().signing_uri())
                        .unwrap();
                let pem = mesh_ca::x509::pem_block("CERTIFICATE REQUEST", &der);
                Ok(self.primary.sign_intermediate(&pem).await?)
            }
        }
    }
}

#[tokio::test]
async fn secondary_validates_what_the_primary_returns() {
    let p = primary("dc1").await;
    let opts = || CaOptions::new(dc("dc2")).with_config(unlimited());
    let init = |mode| {
        let p = p.clone();
        async move {
            Ca::init_secondary(opts(), &Tamper { primary: p, mode })
                .await
                .unwrap_err()
        }
    };
    let e = init(Mode::Refuse).await;
    assert!(matches!(e, CaError::PrimaryRefused(_)));
    assert_eq!(
        e.to_string(),
        "Primary datacenter refused to sign our intermediate CA certificate"
    );
    assert_eq!(
        init(Mode::NoTrustDomain).await.to_string(),
        "trust domain from primary datacenter is not initialized"
    );
    assert!(matches!(
        init(Mode::LeafInstead).await,
        CaError::BadIntermediate(IntermediateRejection::NotCa)
    ));
    assert!(matches!(
        init(Mode::NoUri).await,
        CaError::BadIntermediate(IntermediateRejection::WrongUri { .. })
    ));
    assert!(matches!(
        init(Mode::OtherKey).await,
        CaError::BadIntermediate(IntermediateRejection::KeyMismatch)
    ));
}

/// A signer that answers with an intermediate from an unrelated root.
struct ForeignRoot {
    primary: Ca,
}

#[async_trait]
impl IntermediateSigner for ForeignRoot {
    async fn primary_roots(&self) -> Result<RootsView, SignerError> {
        Ok((*self.primary.roots()).clone())
    }
    async fn sign_intermediate(&self, csr_pem: &str) -> Result<String, SignerError> {
        // Another CA restored from our state but rotated to a new root signs the CSR: same
        // trust domain, different key.
        let state = self.primary.export_state();
        let twin = Ca::load(CaOptions::new(dc("dc1")).with_config(unlimited()), state).unwrap();
        twin.rotate_to(
            twin_provider(&twin),
            RotateOptions {
                force_without_cross_signing: true,
            },
        )
        .await?;
        Ok(twin.sign_intermediate(csr_pem).await?)
    }
}

fn twin_provider(ca: &Ca) -> Arc<dyn mesh_ca::CaProvider> {
    use mesh_ca::{BuiltinFactory, ProviderContext, ProviderFactory};
    let ctx = ProviderContext {
        cluster_id: ca.cluster_id().clone(),
        trust_domain: ca.trust_domain().clone(),
        datacenter: ca.datacenter().clone(),
        primary: true,
        key_spec: KeySpec::EcP256,
        disable_cross_signing: false,
    };
    BuiltinFactory::default().create(&ctx).unwrap()
}

#[tokio::test]
async fn secondary_refuses_intermediate_from_another_root() {
    let p = primary("dc1").await;
    let e = Ca::init_secondary(
        CaOptions::new(dc("dc2")).with_config(unlimited()),
        &ForeignRoot { primary: p },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            CaError::BadIntermediate(IntermediateRejection::NotSignedByRoot)
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn secondary_renews_at_half_life_and_on_root_change_and_keeps_old_on_refusal() {
    let (clock, off) = manual_clock();
    let p = Ca::bootstrap_primary(
        CaOptions::new(dc("dc1"))
            .with_config(unlimited())
            .with_clock(clock.clone()),
    )
    .await
    .unwrap();
    let s = Ca::init_secondary(
        CaOptions::new(dc("dc2"))
            .with_config(unlimited())
            .with_clock(clock),
        &p,
    )
    .await
    .unwrap();
    assert_eq!(
        s.renew_intermediate(&p).await.unwrap(),
        RenewOutcome::Unchanged
    );
    let first = s.roots().active_root().unwrap().signing_key_id.clone();
    off.store(170 * DAY, Ordering::SeqCst);
    assert_eq!(
        s.renew_intermediate(&p).await.unwrap(),
        RenewOutcome::Unchanged
    );
    off.store(190 * DAY, Ordering::SeqCst);
    let refuse = Tamper {
        primary: p.clone(),
        mode: Mode::Refuse,
    };
    assert!(
        matches!(s.renew_intermediate(&refuse).await.unwrap(), RenewOutcome::KeptOld(m) if m.contains("permission denied"))
    );
    assert_eq!(s.roots().active_root().unwrap().signing_key_id, first);
    assert_eq!(
        s.renew_intermediate(&p).await.unwrap(),
        RenewOutcome::Renewed(RenewReason::HalfLife)
    );
    assert_ne!(s.roots().active_root().unwrap().signing_key_id, first);
    off.store(0, Ordering::SeqCst);

    let rot = p.rotate().await.unwrap();
    let mut watch = s.subscribe_roots();
    assert_eq!(
        s.renew_intermediate(&p).await.unwrap(),
        RenewOutcome::Renewed(RenewReason::RootChanged)
    );
    assert!(watch.has_changed().unwrap());
    let v = watch.borrow_and_update().clone();
    assert_eq!(v.active_root_id, rot.new_root_id);
    assert_eq!(v.roots.len(), 2);
    let active = v.active_root().unwrap();
    // cross-signed first, local intermediate last
    assert_eq!(active.intermediate_certs.len(), 2);
    let cross =
        CertInfo::parse(&certs_from_pem(&active.intermediate_certs[0]).unwrap()[0]).unwrap();
    assert!(cross.is_ca && cross.common_name.is_some());
    // A new secondary leaf verifies with the old root alone (through the cross-signed root)
    // and with the new root alone.
    let l = leaf(&s, "api").await;
    let old = root_ders(&v).remove(0);
    let new = root_ders(&v).remove(1);
    verify_chain(&l.issued, &[old]).unwrap();
    verify_chain(&l.issued, &[new]).unwrap();
}

#[tokio::test]
async fn rotation_cross_signs_and_pruning_drops_old_root() {
    let (clock, off) = manual_clock();
    let ca = Ca::bootstrap_primary(
        CaOptions::new(dc("dc1"))
            .with_config(unlimited())
            .with_clock(clock),
    )
    .await
    .unwrap();
    let old_leaf = leaf(&ca, "web").await;
    let old_view = ca.roots();
    let rot = ca.rotate().await.unwrap();
    assert_eq!(rot.old_root_id, old_view.active_root_id);
    let view = ca.roots();
    assert_eq!(view.active_root_id, rot.new_root_id);
    assert_eq!(view.index, old_view.index + 1);
    let (old, new) = (&view.roots[0], &view.roots[1]);
    assert!(!old.active && old.rotated_out_at.is_some());
    assert!(new.active && new.rotated_out_at.is_none());
    assert_eq!(new.intermediate_certs.len(), 1);
    let old_der = certs_from_pem(&old.root_cert).unwrap().remove(0);
    let new_der = certs_from_pem(&new.root_cert).unwrap().remove(0);
    let (oi, ni) = (
        CertInfo::parse(&old_der).unwrap(),
        CertInfo::parse(&new_der).unwrap(),
    );
    assert_ne!(oi.common_name, ni.common_name, "root CNs stay unique");
    let cross_der = rot.cross_signed.clone().unwrap();
    let ci = CertInfo::parse(&cross_der).unwrap();
    assert_eq!(ci.subject_raw, ni.subject_raw);
    assert_eq!(ci.issuer_raw, oi.subject_raw);
    assert_eq!(ci.subject_key_id, ni.subject_key_id);
    assert_eq!(ci.authority_key_id, oi.subject_key_id);
    assert_eq!(ci.spki, ni.spki);
    assert_ne!(ci.serial, ni.serial);
    assert_eq!((ci.not_after - ci.not_before).whole_days(), 7);

    let new_leaf = leaf(&ca, "web").await;
    assert_eq!(new_leaf.issued.root_id, rot.new_root_id);
    assert_eq!(new_leaf.issued.chain, vec![cross_der]);
    verify_chain(&new_leaf.issued, std::slice::from_ref(&old_der)).unwrap();
    verify_chain(&new_leaf.issued, std::slice::from_ref(&new_der)).unwrap();
    verify_chain(&old_leaf.issued, &root_ders(&view)).unwrap();

    // Nothing to prune yet.
    assert!(!ca.prune_roots().await);
    // After LeafCertTTL + grace the old root and the cross-signed cert go.
    off.store(72 * 3600 + 3600 + 120, Ordering::SeqCst);
    assert!(ca.prune_roots().await);
    let pruned = ca.roots();
    assert_eq!(pruned.roots.len(), 1);
    assert_eq!(pruned.active_root_id, rot.new_root_id);
    assert!(pruned.active_root().unwrap().intermediate_certs.is_empty());
}

#[tokio::test]
async fn cross_signing_can_be_disabled_and_forced() {
    let cfg = CaConfig {
        disable_cross_signing: true,
        ..unlimited()
    };
    let ca = Ca::bootstrap_primary(CaOptions::new(dc("dc1")).with_config(cfg))
        .await
        .unwrap();
    let e = ca.rotate().await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("The current CA Provider does not support cross-signing."),
        "{e}"
    );
    assert_eq!(
        ca.roots().roots.len(),
        1,
        "a refused rotation changes nothing"
    );
    let rot = ca
        .rotate_to(
            twin_provider(&ca),
            RotateOptions {
                force_without_cross_signing: true,
            },
        )
        .await
        .unwrap();
    assert!(rot.cross_signed.is_none());
    assert!(
        ca.roots()
            .active_root()
            .unwrap()
            .intermediate_certs
            .is_empty()
    );
    // Rotating to the active root is a no-op.
    let same = ca
        .rotate_to(ca.provider(), RotateOptions::default())
        .await
        .unwrap();
    assert_eq!(same.old_root_id, same.new_root_id);
}

#[tokio::test]
async fn export_load_keeps_root_and_redacts_keys() {
    let ca = primary("dc1").await;
    let state = ca.export_state();
    let dbg = format!("{state:?} {ca:?}");
    assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
    assert!(dbg.contains("[redacted]"));
    let json = state.to_json().unwrap();
    assert!(
        json.contains("BEGIN PRIVATE KEY"),
        "the state itself must carry the key"
    );
    let back = Ca::load(
        CaOptions::new(dc("dc1")).with_config(unlimited()),
        CaState::from_json(&json).unwrap(),
    )
    .unwrap();
    assert_eq!(back.roots(), ca.roots());
    assert_eq!(back.trust_domain(), ca.trust_domain());
    let l = leaf(&back, "web").await;
    verify_chain(&l.issued, &root_ders(&ca.roots())).unwrap();

    let e = Ca::load(CaOptions::new(dc("dc9")), ca.export_state()).unwrap_err();
    assert!(matches!(e, CaError::StateMismatch(_)));
    assert!(CaState::from_json("{}").is_err());

    let s = secondary(&ca, "dc2").await;
    let s2 = Ca::load(
        CaOptions::new(dc("dc2")).with_config(unlimited()),
        s.export_state(),
    )
    .unwrap();
    assert_eq!(s2.role(), Role::Secondary);
    assert_eq!(s2.roots(), s.roots());
    let l = leaf(&s2, "api").await;
    verify_chain(&l.issued, &root_ders(&ca.roots())).unwrap();
}

#[tokio::test]
async fn open_primary_restarts_with_same_root_and_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.json");
    let opts = || CaOptions::new(dc("dc1")).with_config(unlimited());
    let first = Ca::open_primary(opts(), &path).await.unwrap();
    let again = Ca::open_primary(opts(), &path).await.unwrap();
    assert_eq!(first.roots().active_root_id, again.roots().active_root_id);
    assert_eq!(first.cluster_id(), again.cluster_id());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // An existing file with loose permissions is tightened on save.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        again.save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let bad = dir.path().join("missing-dir").join("x.json");
    assert!(matches!(first.save(&bad), Err(CaError::Io { .. })));
}

#[tokio::test]
async fn no_key_material_in_logs() {
    use std::io::Write;
    use std::sync::Mutex;
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let b2 = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || b2.clone())
        .finish();
    let _g = tracing::subscriber::set_default(sub);
    let p = primary("dc1").await;
    let s = secondary(&p, "dc2").await;
    leaf(&s, "api").await;
    p.rotate().await.unwrap();
    s.renew_intermediate(&p).await.unwrap();
    tracing::info!(state = ?p.export_state(), ca = ?p, "debug dump");
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("rotated CA root"), "{logs}");
    assert!(!logs.contains("PRIVATE KEY"), "{logs}");
}

#[tokio::test]
async fn p384_and_caller_supplied_rsa_roots() {
    let cfg = CaConfig::default().with_key_spec(KeySpec::EcP384);
    let ca = Ca::bootstrap_primary(CaOptions::new(dc("dc1")).with_config(CaConfig {
        csr_max_per_second: 0.0,
        ..cfg
    }))
    .await
    .unwrap();
    assert_eq!(ca.roots().roots[0].private_key_bits, 384);
    let l = leaf(&ca, "web").await;
    verify_chain(&l.issued, &root_ders(&ca.roots())).unwrap();

    // ring cannot generate RSA keys: the caller supplies them (here: `openssl genpkey`).
    let source = |spec: KeySpec| -> Result<PrivateKey, KeyError> {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                &format!("rsa_keygen_bits:{}", spec.bits()),
            ])
            .output()
            .map_err(|e| KeyError::Source(e.to_string()))?;
        PrivateKey::from_pkcs8_pem(&String::from_utf8_lossy(&out.stdout))
    };
    let factory = Arc::new(mesh_ca::BuiltinFactory::new(Arc::new(source)));
    let cfg = CaConfig {
        csr_max_per_second: 0.0,
        ..CaConfig::default().with_key_spec(KeySpec::Rsa2048)
    };
    let opts = CaOptions::new(dc("dc1"))
        .with_config(cfg)
        .with_factory(factory.clone());
    let ca = Ca::bootstrap_primary(opts).await.unwrap();
    let r = &ca.roots().roots[0];
    assert_eq!(
        (r.private_key_type.as_str(), r.private_key_bits),
        ("rsa", 2048)
    );
    let l = leaf(&ca, "web").await;
    verify_chain(&l.issued, &root_ders(&ca.roots())).unwrap();
    let cfg = CaConfig {
        csr_max_per_second: 0.0,
        ..CaConfig::default().with_key_spec(KeySpec::Rsa2048)
    };
    let s = Ca::init_secondary(
        CaOptions::new(dc("dc2"))
            .with_config(cfg)
            .with_factory(factory),
        &ca,
    )
    .await
    .unwrap();
    let l = leaf(&s, "api").await;
    verify_chain(&l.issued, &root_ders(&ca.roots())).unwrap();
}
