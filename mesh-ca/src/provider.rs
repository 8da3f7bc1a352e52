//! The CA provider contract and the built-in provider (rcgen + ring).
//!
//! A provider owns CA keys and turns requests into certificates. The engine ([`crate::Ca`])
//! decides *what* to sign (checks identities, computes validity windows, keeps the roots list);
//! the provider decides *how* (which key, where it lives). Bring an external CA by implementing
//! [`CaProvider`] and [`ProviderFactory`]; the crate's `tests/conformance.rs` suite runs against
//! the built-in provider and a callback-backed one, and shows what an implementation must do.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use mesh_core::{ClusterId, Datacenter, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::csr::{CsrBuildError, VerifiedCsr, intermediate_csr};
use crate::keys::{KeyError, KeySpec, PrivateKey, RingKeySource, SecretString, SharedKeySource};
use crate::x509::{CertInfo, cert_pem, certs_from_pem, key_id};

/// The name of the built-in provider, as Consul names its own (`consul`).
pub const BUILTIN_PROVIDER_NAME: &str = "consul";

/// What a provider needs to know about the CA it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderContext {
    /// The cluster id (first label of the trust domain).
    pub cluster_id: ClusterId,
    /// The trust domain, `<cluster-id>.consul`.
    pub trust_domain: TrustDomain,
    /// The datacenter this CA runs in.
    pub datacenter: Datacenter,
    /// Whether this is the primary datacenter (holds roots) or a secondary (holds an
    /// intermediate).
    pub primary: bool,
    /// Kind of CA keys to create.
    pub key_spec: KeySpec,
    /// Refuse cross-signing (Consul provider's `DisableCrossSigning`).
    pub disable_cross_signing: bool,
}

/// A validity window chosen by the engine; providers must use it as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start.
    pub not_before: OffsetDateTime,
    /// End.
    pub not_after: OffsetDateTime,
}

/// A request for a self-signed root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRequest {
    /// Subject CN (see [`crate::cn::ca_common_name`]).
    pub common_name: String,
    /// Validity of the root.
    pub validity: Validity,
}

/// A provider's exportable state. `secrets` hold private keys: they are serialized (state must
/// be restorable) but never printed by `Debug`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderState {
    /// Provider name.
    pub provider: String,
    /// Public values (certificates, key kinds).
    pub data: BTreeMap<String, String>,
    /// Private values (PEM keys).
    pub secrets: BTreeMap<String, SecretString>,
}

/// Why a provider failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// A key could not be made or read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A CSR could not be built.
    #[error(transparent)]
    Csr(#[from] CsrBuildError),
    /// Certificate encoding or signing failed.
    #[error("certificate signing failed")]
    Sign(#[source] rcgen::Error),
    /// The provider holds no signing certificate yet (no root, or no intermediate set).
    #[error("CA provider has no signing certificate yet")]
    NotReady,
    /// `set_intermediate` without a pending key from `generate_intermediate_csr`.
    #[error("no pending intermediate key; generate an intermediate CSR first")]
    NoPendingKey,
    /// The intermediate's public key is not the pending key's.
    #[error("intermediate certificate does not match the pending private key")]
    PendingKeyMismatch,
    /// The operation only exists in a primary (or only in a secondary).
    #[error("operation {0} is not available in this datacenter's role")]
    WrongRole(&'static str),
    /// Cross-signing is disabled by configuration.
    #[error("cross-signing disabled")]
    CrossSigningDisabled,
    /// A certificate handed in could not be read.
    #[error("malformed certificate: {0}")]
    BadCertificate(String),
    /// Exported state is incomplete or inconsistent.
    #[error("provider state is invalid: {0}")]
    BadState(String),
    /// Failure inside an external provider.
    #[error("external CA failed: {0}")]
    External(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A CA provider: owns keys, issues certificates.
///
/// The engine calls, in a primary: `generate_root`, `sign_leaf`, `sign_intermediate`,
/// `cross_sign`; in a secondary: `generate_intermediate_csr`, `set_intermediate`, `sign_leaf`.
/// Every method takes `&self`; implementations synchronise internally.
#[async_trait]
pub trait CaProvider: Send + Sync + fmt::Debug {
    /// The provider's name (`consul`, `vault`, ...), used in CA common names and root names.
    fn name(&self) -> &str;

    /// The kind of key this provider's CA certificates hold.
    fn key_spec(&self) -> KeySpec;

    /// Primary: creates (or returns the configured) self-signed root and makes it the signer
    /// of leaves. Calling it again returns the same root.
    async fn generate_root(
        &self,
        req: &RootRequest,
    ) -> Result<CertificateDer<'static>, ProviderError>;

    /// Secondary: creates a new pending key and a CA CSR for it (empty subject, URI SAN =
    /// signing URI, BasicConstraints cA with pathLen 0).
    async fn generate_intermediate_csr(&self) -> Result<Vec<u8>, ProviderError>;

    /// Secondary: installs the intermediate signed by the primary for the pending key. The
    /// engine has already checked chain, URI and CA flag; the provider checks the key.
    async fn set_intermediate(
        &self,
        intermediate: &CertificateDer<'static>,
        root: &CertificateDer<'static>,
    ) -> Result<(), ProviderError>;

    /// Primary: signs a secondary's intermediate CSR (already checked by the engine) with the
    /// root: pathLen 0, KeyUsage CertSign|CRLSign|DigitalSignature, SKI = key id of the CSR key.
    async fn sign_intermediate(
        &self,
        csr: &VerifiedCsr,
        validity: Validity,
    ) -> Result<CertificateDer<'static>, ProviderError>;

    /// Signs a leaf for `csr.spiffe_id()` (already authorised by the engine) with the active
    /// signing key: empty subject, that URI plus the CSR's DNS and IP SANs, not a CA,
    /// KeyUsage DigitalSignature|KeyEncipherment|DataEncipherment|KeyAgreement, EKU
    /// ClientAuth+ServerAuth, SKI = key id of the CSR key, AKI = key id of the signer.
    async fn sign_leaf(
        &self,
        csr: &VerifiedCsr,
        validity: Validity,
    ) -> Result<CertificateDer<'static>, ProviderError>;

    /// Primary: signs a copy of `new_root` (same subject, key, SKI, SANs) with this
    /// provider's root, for rotation.
    async fn cross_sign(
        &self,
        new_root: &CertificateDer<'static>,
        validity: Validity,
    ) -> Result<CertificateDer<'static>, ProviderError>;

    /// Everything needed to restore this provider (see [`ProviderFactory::restore`]).
    fn export_state(&self) -> ProviderState;
}

/// Makes providers: fresh ones (bootstrap, rotation) and restored ones (after a restart).
pub trait ProviderFactory: Send + Sync {
    /// A new provider with no keys yet.
    fn create(&self, ctx: &ProviderContext) -> Result<Arc<dyn CaProvider>, ProviderError>;

    /// A provider restored from [`CaProvider::export_state`].
    fn restore(
        &self,
        ctx: &ProviderContext,
        state: &ProviderState,
    ) -> Result<Arc<dyn CaProvider>, ProviderError>;
}

/// A random, positive 64-bit serial with a non-zero top byte (8 DER bytes, no padding).
///
/// Consul uses a Raft counter; mesh uses random serials so that a CA restored from an older
/// export can never repeat one.
pub fn random_serial() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    // SystemRandom only fails when the OS has no entropy source; fall back to the clock so
    // signing still yields distinct serials rather than failing.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        let t = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
        b = t.to_be_bytes();
    }
    let v = u64::from_be_bytes(b) & 0x7fff_ffff_ffff_ffff;
    v | 0x0100_0000_0000_0000
}

/// The built-in provider: keys in memory (generated with ring or supplied by a [`crate::keys::KeySource`]),
/// certificates built with rcgen.
pub struct BuiltinProvider {
    ctx: ProviderContext,
    keys: SharedKeySource,
    signer: ArcSwapOption<Signer>,
    pending: Mutex<Option<PrivateKey>>,
}

struct Signer {
    issuer: Issuer<'static, KeyPair>,
    key_pem: SecretString,
    cert: CertificateDer<'static>,
    spec: KeySpec,
}

impl fmt::Debug for BuiltinProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltinProvider")
            .field("trust_domain", &self.ctx.trust_domain)
            .field("datacenter", &self.ctx.datacenter)
            .field("primary", &self.ctx.primary)
            .field("has_signer", &self.signer.load().is_some())
            .finish_non_exhaustive()
    }
}

impl BuiltinProvider {
    /// A provider with no keys; CA keys come from `keys`.
    pub fn new(ctx: ProviderContext, keys: SharedKeySource) -> Self {
        Self {
            ctx,
            keys,
            signer: ArcSwapOption::empty(),
            pending: Mutex::new(None),
        }
    }

    /// A primary provider that uses a caller-supplied root key and certificate (Consul's
    /// `PrivateKey` + `RootCert`). The certificate's public key must match the key.
    pub fn with_root(
        ctx: ProviderContext,
        keys: SharedKeySource,
        key: PrivateKey,
        root: CertificateDer<'static>,
    ) -> Result<Self, ProviderError> {
        let p = Self::new(ctx, keys);
        p.install_signer(key, root)?;
        Ok(p)
    }

    fn install_signer(
        &self,
        key: PrivateKey,
        cert: CertificateDer<'static>,
    ) -> Result<(), ProviderError> {
        let info = CertInfo::parse(&cert).map_err(|e| ProviderError::BadCertificate(e.0))?;
        if info.spki != key.public_key_spki() {
            return Err(ProviderError::PendingKeyMismatch);
        }
        let key_pem = key.to_pkcs8_pem();
        let spec = key.spec();
        let pair = key.into_pair();
        let issuer = Issuer::from_ca_cert_der(&cert, pair).map_err(ProviderError::Sign)?;
        self.signer.store(Some(Arc::new(Signer {
            issuer,
            key_pem,
            cert,
            spec,
        })));
        Ok(())
    }

    fn signer(&self) -> Result<Arc<Signer>, ProviderError> {
        self.signer.load_full().ok_or(ProviderError::NotReady)
    }

    fn restore_from(&self, state: &ProviderState) -> Result<(), ProviderError> {
        if let (Some(key), Some(cert)) = (
            state.secrets.get("signing_key"),
            state.data.get("signing_cert"),
        ) {
            let key = PrivateKey::from_pkcs8_pem(key.expose())?;
            let cert = certs_from_pem(cert)
                .ok()
                .and_then(|v| v.into_iter().next())
                .ok_or_else(|| ProviderError::BadState("signing_cert".into()))?;
            self.install_signer(key, cert)?;
        }
        if let Some(p) = state.secrets.get("pending_key") {
            let key = PrivateKey::from_pkcs8_pem(p.expose())?;
            *lock(&self.pending) = Some(key);
        }
        Ok(())
    }
}

#[async_trait]
impl CaProvider for BuiltinProvider {
    fn name(&self) -> &str {
        BUILTIN_PROVIDER_NAME
    }

    fn key_spec(&self) -> KeySpec {
        self.signer
            .load()
            .as_ref()
            .map_or(self.ctx.key_spec, |s| s.spec)
    }

    async fn generate_root(
        &self,
        req: &RootRequest,
    ) -> Result<CertificateDer<'static>, ProviderError> {
        if !self.ctx.primary {
            return Err(ProviderError::WrongRole("generate_root"));
        }
        if let Some(s) = self.signer.load_full() {
            return Ok(s.cert.clone());
        }
        let key = self.keys.new_key(self.ctx.key_spec)?;
        if key.spec() != self.ctx.key_spec {
            return Err(KeyError::WrongKind {
                want: self.ctx.key_spec,
                got: key.spec(),
            }
            .into());
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, req.common_name.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![uri_san(&self.ctx.trust_domain.signing_uri())?];
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = req.validity.not_before;
        params.not_after = req.validity.not_after;
        params.serial_number = Some(SerialNumber::from(random_serial()));
        params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(&key.public_key_spki()));
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .self_signed(key.pair())
            .map_err(ProviderError::Sign)?;
        let der = cert.der().clone();
        self.install_signer(key, der.clone())?;
        Ok(der)
    }

    async fn generate_intermediate_csr(&self) -> Result<Vec<u8>, ProviderError> {
        if self.ctx.primary {
            return Err(ProviderError::WrongRole("generate_intermediate_csr"));
        }
        let key = self.keys.new_key(self.ctx.key_spec)?;
        let der = intermediate_csr(&key, &self.ctx.trust_domain.signing_uri())?;
        *lock(&self.pending) = Some(key);
        Ok(der)
    }

    async fn set_intermediate(
        &self,
        intermediate: &CertificateDer<'static>,
        _root: &CertificateDer<'static>,
    ) -> Result<(), ProviderError> {
        let mut pending = lock(&self.pending);
        let Some(key) = pending.take() else {
            return Err(ProviderError::NoPendingKey);
        };
        match self.install_signer(key.try_clone()?, intermediate.clone()) {
            Ok(()) => Ok(()),
            Err(e) => {
                *pending = Some(key);
                Err(e)
            }
        }
    }

    async fn sign_intermediate(
        &self,
        csr: &VerifiedCsr,
        validity: Validity,
    ) -> Result<CertificateDer<'static>, ProviderError> {
        if !self.ctx.primary {
            return Err(ProviderError::WrongRole("sign_intermediate"));
        }
        let signer = self.signer()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = csr.inner.params.distinguished_name.clone();
        params.subject_alt_names = csr.inner.params.subject_alt_names.clone();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(SerialNumber::from(random_serial()));
        params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(csr.public_key_spki()));
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&csr.inner.public_key, &signer.issuer)
            .map_err(ProviderError::Sign)?;
        Ok(cert.der().clone())
    }

    async fn sign_leaf(
        &self,
        csr: &VerifiedCsr,
        validity: Validity,
    ) -> Result<CertificateDer<'static>, ProviderError> {
        let signer = self.signer()?;
        let id = csr
            .spiffe_id()
            .ok_or_else(|| ProviderError::BadState("CSR identity not checked".into()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let mut sans = Vec::with_capacity(1 + csr.dns_names().len() + csr.ip_addresses().len());
        sans.push(uri_san(&id.to_string())?);
        for san in &csr.inner.params.subject_alt_names {
            if matches!(san, SanType::DnsName(_) | SanType::IpAddress(_)) {
                sans.push(san.clone());
            }
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::DataEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(SerialNumber::from(random_serial()));
        params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(csr.public_key_spki()));
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&csr.inner.public_key, &signer.issuer)
            .map_err(ProviderError::Sign)?;
        Ok(cert.der().clone())
    }

    async fn cross_sign(
        &self,
        new_root: &CertificateDer<'static>,
        validity: Validity,
    ) -> Result<CertificateDer<'static>, ProviderError> {
        if self.ctx.disable_cross_signing {
            return Err(ProviderError::CrossSigningDisabled);
        }
        if !self.ctx.primary {
            return Err(ProviderError::WrongRole("cross_sign"));
        }
        let signer = self.signer()?;
        let (params, public_key) = params_from_ca_cert(new_root)?;
        let mut params = params;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(SerialNumber::from(random_serial()));
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&public_key, &signer.issuer)
            .map_err(ProviderError::Sign)?;
        Ok(cert.der().clone())
    }

    fn export_state(&self) -> ProviderState {
        let mut st = ProviderState {
            provider: BUILTIN_PROVIDER_NAME.to_owned(),
            ..Default::default()
        };
        if let Some(s) = self.signer.load_full() {
            st.data.insert("signing_cert".into(), cert_pem(&s.cert));
            st.secrets.insert("signing_key".into(), s.key_pem.clone());
        }
        if let Some(p) = lock(&self.pending).as_ref() {
            st.secrets.insert("pending_key".into(), p.to_pkcs8_pem());
        }
        st
    }
}

/// The built-in provider's factory.
#[derive(Clone)]
pub struct BuiltinFactory {
    keys: SharedKeySource,
}

impl fmt::Debug for BuiltinFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltinFactory").finish_non_exhaustive()
    }
}

impl Default for BuiltinFactory {
    fn default() -> Self {
        Self::new(Arc::new(RingKeySource))
    }
}

impl BuiltinFactory {
    /// A factory whose providers take CA keys from `keys` (use this for RSA CA keys).
    pub fn new(keys: SharedKeySource) -> Self {
        Self { keys }
    }
}

impl ProviderFactory for BuiltinFactory {
    fn create(&self, ctx: &ProviderContext) -> Result<Arc<dyn CaProvider>, ProviderError> {
        Ok(Arc::new(BuiltinProvider::new(
            ctx.clone(),
            self.keys.clone(),
        )))
    }

    fn restore(
        &self,
        ctx: &ProviderContext,
        state: &ProviderState,
    ) -> Result<Arc<dyn CaProvider>, ProviderError> {
        if state.provider != BUILTIN_PROVIDER_NAME {
            return Err(ProviderError::BadState(format!(
                "state belongs to provider {:?}",
                state.provider
            )));
        }
        let p = BuiltinProvider::new(ctx.clone(), self.keys.clone());
        p.restore_from(state)?;
        Ok(Arc::new(p))
    }
}

fn uri_san(uri: &str) -> Result<SanType, ProviderError> {
    Ok(SanType::URI(uri.to_owned().try_into().map_err(|_| {
        ProviderError::BadState(format!("URI {uri:?} cannot be encoded"))
    })?))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the data (an
    // optional key) is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Rebuilds the parameters of a CA certificate (subject, SANs, SKI, CA flag, key usages) for a
/// cross-signed copy, and its public key.
fn params_from_ca_cert(
    der: &CertificateDer<'static>,
) -> Result<(CertificateParams, rcgen::SubjectPublicKeyInfo), ProviderError> {
    let bad = |m: &str| ProviderError::BadCertificate(m.to_owned());
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(&e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for attr in cert.subject().iter_attributes() {
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| bad("subject attribute OID"))?
            .collect();
        let value = attr.as_str().map_err(|_| bad("subject attribute value"))?;
        dn.push(
            DnType::from_oid(&oid),
            DnValue::Utf8String(value.to_owned()),
        );
    }
    params.distinguished_name = dn;
    let info = CertInfo::parse(der).map_err(|e| ProviderError::BadCertificate(e.0))?;
    if !info.is_ca {
        return Err(bad("not a CA certificate"));
    }
    params.is_ca = IsCa::Ca(match info.path_len {
        Some(n) => BasicConstraints::Constrained(u8::try_from(n).map_err(|_| bad("path length"))?),
        None => BasicConstraints::Unconstrained,
    });
    params.subject_alt_names = info
        .uris
        .iter()
        .map(|u| uri_san(u))
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::PreSpecified(
        info.subject_key_id
            .clone()
            .unwrap_or_else(|| key_id(&info.spki)),
    );
    let pk = rcgen::SubjectPublicKeyInfo::from_der(&info.spki).map_err(ProviderError::Sign)?;
    Ok((params, pk))
}
