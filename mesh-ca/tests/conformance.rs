//! One conformance suite, run against the built-in provider and against a provider that signs
//! through a callback (standing in for an external CA such as Vault, whose keys never leave
//! it).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ::time::OffsetDateTime;
use async_trait::async_trait;
use common::*;
use mesh_ca::x509::{CertInfo, certs_from_pem, key_id};
use mesh_ca::{
    BuiltinFactory, Ca, CaOptions, CaProvider, KeySpec, ProviderContext, ProviderError,
    ProviderFactory, ProviderState, RootRequest, Validity, VerifiedCsr, new_leaf_request,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};
use x509_parser::parse_x509_certificate;

async fn conformance(factory: Arc<dyn ProviderFactory>, provider_name: &str) {
    let opts = |dc_name: &str| {
        CaOptions::new(dc(dc_name))
            .with_config(unlimited())
            .with_factory(factory.clone())
    };
    let before = OffsetDateTime::now_utc();
    let p = Ca::bootstrap_primary(opts("dc1")).await.unwrap();
    let td = p.trust_domain().clone();

    // Root (docs/consul-compatibility.md, 'CA certificates').
    let view = p.roots();
    let root = &view.roots[0];
    assert!(root.name.to_lowercase().starts_with(provider_name));
    let root_der = certs_from_pem(&root.root_cert).unwrap().remove(0);
    let ri = CertInfo::parse(&root_der).unwrap();
    assert!(ri.is_ca && ri.path_len.is_none());
    assert_eq!(ri.uris, [td.signing_uri()]);
    assert_eq!(ri.subject_raw, ri.issuer_raw);
    let cn = ri.common_name.clone().unwrap();
    assert!(
        cn.starts_with("pri-") && cn.contains(&format!(".{provider_name}.ca.")),
        "{cn}"
    );
    assert_eq!(
        ri.subject_key_id.clone().unwrap(),
        key_id(&ri.spki),
        "SKI = full SHA-256 of SPKI"
    );
    assert_eq!(ri.authority_key_id, ri.subject_key_id);
    assert!(
        ri.not_before >= before - time::Duration::SECOND,
        "roots are not back-dated"
    );
    assert_eq!((ri.not_after - ri.not_before).whole_hours(), 87600);
    let (_, rx) = parse_x509_certificate(&root_der).unwrap();
    let ku = rx.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
    assert!(rx.extended_key_usage().unwrap().is_none());

    // Leaf (docs/consul-compatibility.md, 'CA certificates').
    let id = service_id(&td, "dc1", "web");
    let req = new_leaf_request(&id, &["web.internal"]).unwrap();
    let now = OffsetDateTime::now_utc();
    let l = p.sign_leaf_pem(&req.csr_pem, &allow_all).await.unwrap();
    verify_chain(&l, std::slice::from_ref(&root_der)).unwrap();
    let (_, lx) = parse_x509_certificate(&l.cert).unwrap();
    assert!(
        lx.subject().iter().next().is_none(),
        "leaf subject is empty"
    );
    let san = lx.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical, "SAN is critical when the subject is empty");
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|g| g.to_string())
        .collect();
    assert!(
        names.contains(&format!("URI({id})"))
            && names.contains(&"DNSName(web.internal)".to_owned()),
        "{names:?}"
    );
    let bc = lx.basic_constraints().unwrap().unwrap();
    assert!(!bc.value.ca && bc.critical);
    let ku = lx.key_usage().unwrap().unwrap().value;
    assert!(
        ku.digital_signature()
            && ku.key_encipherment()
            && ku.data_encipherment()
            && ku.key_agreement()
    );
    assert!(!ku.key_cert_sign());
    let eku = lx.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let li = CertInfo::parse(&l.cert).unwrap();
    assert_eq!(
        li.subject_key_id.unwrap(),
        key_id(&req.key.public_key_spki())
    );
    assert_eq!(li.authority_key_id, ri.subject_key_id);
    let skew = (li.not_before - (now - time::Duration::minutes(1))).abs();
    assert!(skew < time::Duration::seconds(5), "NotBefore = now - 1 min");
    assert_eq!((li.not_after - li.not_before).whole_hours(), 72);

    let mut serials = HashSet::from([ri.serial.clone(), li.serial.clone()]);
    for _ in 0..50 {
        let l = p.sign_leaf_pem(&req.csr_pem, &allow_all).await.unwrap();
        assert!(serials.insert(CertInfo::parse(&l.cert).unwrap().serial));
    }

    // Secondary intermediate (docs/consul-compatibility.md, 'Secondary intermediates').
    let s = Ca::init_secondary(opts("dc2"), &p).await.unwrap();
    let int_pem = s
        .roots()
        .active_root()
        .unwrap()
        .intermediate_certs
        .last()
        .unwrap()
        .clone();
    let int_der = certs_from_pem(&int_pem).unwrap().remove(0);
    let ii = CertInfo::parse(&int_der).unwrap();
    assert!(ii.is_ca && ii.path_len == Some(0));
    assert_eq!(ii.uris, [td.signing_uri()]);
    assert_eq!(ii.common_name, None);
    assert_eq!(ii.issuer_raw, ri.subject_raw);
    assert_eq!(ii.subject_key_id.clone().unwrap(), key_id(&ii.spki));
    assert_eq!(ii.authority_key_id, ri.subject_key_id);
    let (_, ix) = parse_x509_certificate(&int_der).unwrap();
    let ku = ix.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
    let sl = s
        .sign_leaf_pem(
            &new_leaf_request(&service_id(&td, "dc2", "api"), &[])
                .unwrap()
                .csr_pem,
            &allow_all,
        )
        .await
        .unwrap();
    assert_eq!(
        CertInfo::parse(&sl.cert).unwrap().authority_key_id,
        ii.subject_key_id
    );
    verify_chain(&sl, std::slice::from_ref(&root_der)).unwrap();

    // Rotation (docs/consul-compatibility.md, 'Root rotation and cross-signing').
    let rot = p.rotate().await.unwrap();
    let cross = CertInfo::parse(rot.cross_signed.as_ref().unwrap()).unwrap();
    let new_der = certs_from_pem(&p.roots().active_root().unwrap().root_cert)
        .unwrap()
        .remove(0);
    let ni = CertInfo::parse(&new_der).unwrap();
    assert_eq!(
        (cross.subject_raw.clone(), cross.spki.clone()),
        (ni.subject_raw.clone(), ni.spki.clone())
    );
    assert_eq!(cross.subject_key_id, ni.subject_key_id);
    assert_eq!(cross.authority_key_id, ri.subject_key_id);
    assert_eq!(cross.issuer_raw, ri.subject_raw);
    let nl = p.sign_leaf_pem(&req.csr_pem, &allow_all).await.unwrap();
    verify_chain(&nl, std::slice::from_ref(&root_der)).unwrap();
    verify_chain(&nl, std::slice::from_ref(&new_der)).unwrap();

    // Export and restore through the factory: same roots, still signing.
    let back = Ca::load(opts("dc1"), p.export_state()).unwrap();
    assert_eq!(back.roots(), p.roots());
    let bl = back.sign_leaf_pem(&req.csr_pem, &allow_all).await.unwrap();
    verify_chain(&bl, &[new_der]).unwrap();
    let s2 = Ca::load(opts("dc2"), s.export_state()).unwrap();
    s2.renew_intermediate(&back).await.unwrap();
    let l2 = s2
        .sign_leaf_pem(
            &new_leaf_request(&service_id(&td, "dc2", "api"), &[])
                .unwrap()
                .csr_pem,
            &allow_all,
        )
        .await
        .unwrap();
    verify_chain(&l2, &[root_der]).unwrap();
}

#[tokio::test]
async fn builtin_provider_conforms() {
    conformance(Arc::new(BuiltinFactory::default()), "consul").await;
}

#[tokio::test]
async fn callback_provider_conforms() {
    conformance(Arc::new(CallbackFactory::default()), "external").await;
}

// ---- A provider whose keys live behind a callback ("external CA") ----

/// What crosses the callback: DER and plain values only.
enum Call {
    Root {
        ca: String,
        cn: String,
        uri: String,
        v: Validity,
    },
    IntermediateCsr {
        ca: String,
        uri: String,
    },
    SetIntermediate {
        ca: String,
        cert: Vec<u8>,
    },
    SignIntermediate {
        ca: String,
        csr: Vec<u8>,
        v: Validity,
    },
    SignLeaf {
        ca: String,
        csr: Vec<u8>,
        uri: String,
        v: Validity,
    },
    CrossSign {
        ca: String,
        root: Vec<u8>,
        v: Validity,
    },
    Signer {
        ca: String,
    },
}

type Callback = Arc<dyn Fn(Call) -> Result<Vec<u8>, String> + Send + Sync>;

/// The external CA: keys by CA name, Consul-style counter serials.
#[derive(Default)]
struct External {
    cas: Mutex<HashMap<String, Slot>>,
    serial: Mutex<u64>,
}

#[derive(Default)]
struct Slot {
    signer: Option<(KeyPair, Vec<u8>)>,
    pending: Option<KeyPair>,
}

impl External {
    fn next_serial(&self) -> SerialNumber {
        let mut s = self.serial.lock().unwrap();
        *s += 1;
        SerialNumber::from(*s)
    }

    fn handle(&self, call: Call) -> Result<Vec<u8>, String> {
        let e = |x: rcgen::Error| x.to_string();
        let mut cas = self.cas.lock().unwrap();
        match call {
            Call::Root { ca, cn, uri, v } => {
                let slot = cas.entry(ca).or_default();
                if let Some((_, der)) = &slot.signer {
                    return Ok(der.clone());
                }
                let key = KeyPair::generate().map_err(e)?;
                let mut p = CertificateParams::default();
                let mut dn = DistinguishedName::new();
                dn.push(DnType::CommonName, cn);
                p.distinguished_name = dn;
                p.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(e)?)];
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                p.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                p.not_before = v.not_before;
                p.not_after = v.not_after;
                p.serial_number = Some(self.next_serial());
                p.key_identifier_method = KeyIdMethod::PreSpecified(key_id(
                    &rcgen::PublicKeyData::subject_public_key_info(&key),
                ));
                p.use_authority_key_identifier_extension = true;
                let der = p.self_signed(&key).map_err(e)?.der().to_vec();
                slot.signer = Some((key, der.clone()));
                Ok(der)
            }
            Call::IntermediateCsr { ca, uri } => {
                let key = KeyPair::generate().map_err(e)?;
                let mut p = CertificateParams::default();
                p.distinguished_name = DistinguishedName::new();
                p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                p.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(e)?)];
                let csr = p.serialize_request(&key).map_err(e)?.der().to_vec();
                cas.entry(ca).or_default().pending = Some(key);
                Ok(csr)
            }
            Call::SetIntermediate { ca, cert } => {
                let slot = cas.entry(ca).or_default();
                let key = slot.pending.take().ok_or("no pending key")?;
                slot.signer = Some((key, cert));
                Ok(Vec::new())
            }
            Call::SignIntermediate { ca, csr, v } => {
                let slot = cas.get(&ca).ok_or("unknown CA")?;
                let (key, der) = slot.signer.as_ref().ok_or("not ready")?;
                let issuer =
                    Issuer::from_ca_cert_der(&CertificateDer::from(der.clone()), key).map_err(e)?;
                let req = CertificateSigningRequestParams::from_der(
                    &CertificateSigningRequestDer::from(csr),
                )
                .map_err(e)?;
                let mut p = CertificateParams::default();
                p.distinguished_name = req.params.distinguished_name.clone();
                p.subject_alt_names = req.params.subject_alt_names.clone();
                p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                p.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                p.not_before = v.not_before;
                p.not_after = v.not_after;
                p.serial_number = Some(self.next_serial());
                p.key_identifier_method = KeyIdMethod::PreSpecified(key_id(
                    &rcgen::PublicKeyData::subject_public_key_info(&req.public_key),
                ));
                p.use_authority_key_identifier_extension = true;
                Ok(p.signed_by(&req.public_key, &issuer)
                    .map_err(e)?
                    .der()
                    .to_vec())
            }
            Call::SignLeaf { ca, csr, uri, v } => {
                let slot = cas.get(&ca).ok_or("unknown CA")?;
                let (key, der) = slot.signer.as_ref().ok_or("not ready")?;
                let issuer =
                    Issuer::from_ca_cert_der(&CertificateDer::from(der.clone()), key).map_err(e)?;
                let req = CertificateSigningRequestParams::from_der(
                    &CertificateSigningRequestDer::from(csr),
                )
                .map_err(e)?;
                let mut p = CertificateParams::default();
                p.distinguished_name = DistinguishedName::new();
                p.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(e)?)];
                p.subject_alt_names.extend(
                    req.params
                        .subject_alt_names
                        .iter()
                        .filter(|s| matches!(s, SanType::DnsName(_) | SanType::IpAddress(_)))
                        .cloned(),
                );
                p.is_ca = IsCa::ExplicitNoCa;
                p.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                    KeyUsagePurpose::DataEncipherment,
                    KeyUsagePurpose::KeyAgreement,
                ];
                p.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                p.not_before = v.not_before;
                p.not_after = v.not_after;
                p.serial_number = Some(self.next_serial());
                p.key_identifier_method = KeyIdMethod::PreSpecified(key_id(
                    &rcgen::PublicKeyData::subject_public_key_info(&req.public_key),
                ));
                p.use_authority_key_identifier_extension = true;
                Ok(p.signed_by(&req.public_key, &issuer)
                    .map_err(e)?
                    .der()
                    .to_vec())
            }
            Call::CrossSign { ca, root, v } => {
                let slot = cas.get(&ca).ok_or("unknown CA")?;
                let (key, der) = slot.signer.as_ref().ok_or("not ready")?;
                let issuer =
                    Issuer::from_ca_cert_der(&CertificateDer::from(der.clone()), key).map_err(e)?;
                let info = CertInfo::parse(&root).map_err(|x| x.to_string())?;
                let mut p = CertificateParams::default();
                let mut dn = DistinguishedName::new();
                dn.push(DnType::CommonName, info.common_name.clone().ok_or("no CN")?);
                p.distinguished_name = dn;
                p.subject_alt_names = info
                    .uris
                    .iter()
                    .map(|u| SanType::URI(u.clone().try_into().unwrap()))
                    .collect();
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                p.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                p.not_before = v.not_before;
                p.not_after = v.not_after;
                p.serial_number = Some(self.next_serial());
                p.key_identifier_method =
                    KeyIdMethod::PreSpecified(info.subject_key_id.clone().ok_or("no SKI")?);
                p.use_authority_key_identifier_extension = true;
                let pk = rcgen::SubjectPublicKeyInfo::from_der(&info.spki).map_err(e)?;
                Ok(p.signed_by(&pk, &issuer).map_err(e)?.der().to_vec())
            }
            Call::Signer { ca } => Ok(cas
                .get(&ca)
                .and_then(|s| s.signer.as_ref())
                .map(|(_, d)| d.clone())
                .unwrap_or_default()),
        }
    }
}

#[derive(Clone)]
struct CallbackFactory {
    call: Callback,
    next: Arc<Mutex<u32>>,
}

impl Default for CallbackFactory {
    fn default() -> Self {
        let ext = Arc::new(External::default());
        Self {
            call: Arc::new(move |c| ext.handle(c)),
            next: Arc::default(),
        }
    }
}

impl ProviderFactory for CallbackFactory {
    fn create(&self, ctx: &ProviderContext) -> Result<Arc<dyn CaProvider>, ProviderError> {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        Ok(Arc::new(CallbackProvider {
            ca: format!("ca-{n}"),
            ctx: ctx.clone(),
            call: self.call.clone(),
        }))
    }

    fn restore(
        &self,
        ctx: &ProviderContext,
        state: &ProviderState,
    ) -> Result<Arc<dyn CaProvider>, ProviderError> {
        let ca = state
            .data
            .get("ca")
            .cloned()
            .ok_or_else(|| ProviderError::BadState("ca".into()))?;
        assert!(state.secrets.is_empty(), "the external CA keeps its keys");
        Ok(Arc::new(CallbackProvider {
            ca,
            ctx: ctx.clone(),
            call: self.call.clone(),
        }))
    }
}

struct CallbackProvider {
    ca: String,
    ctx: ProviderContext,
    call: Callback,
}

impl std::fmt::Debug for CallbackProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackProvider")
            .field("ca", &self.ca)
            .finish()
    }
}

impl CallbackProvider {
    fn call(&self, c: Call) -> Result<CertificateDer<'static>, ProviderError> {
        (self.call)(c)
            .map(CertificateDer::from)
            .map_err(|m| ProviderError::External(m.into()))
    }
}

#[async_trait]
impl CaProvider for CallbackProvider {
    fn name(&self) -> &str {
        "external"
    }
    fn key_spec(&self) -> KeySpec {
        KeySpec::EcP256
    }
    async fn generate_root(
        &self,
        req: &RootRequest,
    ) -> Result<CertificateDer<'static>, ProviderError> {
        self.call(Call::Root {
            ca: self.ca.clone(),
            cn: req.common_name.clone(),
            uri: self.ctx.trust_domain.signing_uri(),
            v: req.validity,
        })
    }
    async fn generate_intermediate_csr(&self) -> Result<Vec<u8>, ProviderError> {
        Ok(self
            .call(Call::IntermediateCsr {
                ca: self.ca.clone(),
                uri: self.ctx.trust_domain.signing_uri(),
            })?
            .to_vec())
    }
    async fn set_intermediate(
        &self,
        i: &CertificateDer<'static>,
        _r: &CertificateDer<'static>,
    ) -> Result<(), ProviderError> {
        self.call(Call::SetIntermediate {
            ca: self.ca.clone(),
            cert: i.to_vec(),
        })
        .map(|_| ())
    }
    async fn sign_intermediate(
        &self,
        csr: &VerifiedCsr,
        v: Validity,
    ) -> Result<CertificateDer<'static>, ProviderError> {
        self.call(Call::SignIntermediate {
            ca: self.ca.clone(),
            csr: csr.der().to_vec(),
            v,
        })
    }
    async fn sign_leaf(
        &self,
        csr: &VerifiedCsr,
        v: Validity,
    ) -> Result<CertificateDer<'static>, ProviderError> {
        let uri = csr.spiffe_id().ok_or(ProviderError::NotReady)?.to_string();
        self.call(Call::SignLeaf {
            ca: self.ca.clone(),
            csr: csr.der().to_vec(),
            uri,
            v,
        })
    }
    async fn cross_sign(
        &self,
        root: &CertificateDer<'static>,
        v: Validity,
    ) -> Result<CertificateDer<'static>, ProviderError> {
        self.call(Call::CrossSign {
            ca: self.ca.clone(),
            root: root.to_vec(),
            v,
        })
    }
    fn export_state(&self) -> ProviderState {
        let _ = self.call(Call::Signer {
            ca: self.ca.clone(),
        });
        ProviderState {
            provider: "external".into(),
            data: [("ca".to_owned(), self.ca.clone())].into(),
            secrets: Default::default(),
        }
    }
}
