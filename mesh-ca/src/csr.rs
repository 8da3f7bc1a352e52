//! Certificate signing requests: the CA-side parse (signature verified) and the client-side
//! builder that makes a key and a CSR for an identity.

use std::net::IpAddr;

use mesh_core::SpiffeId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, IsCa,
    PublicKeyData, SanType,
};
use rustls::pki_types::CertificateSigningRequestDer;
use rustls::pki_types::pem::SectionKind;

use crate::keys::{KeyError, KeySpec, PrivateKey};

/// The largest CSR accepted, PEM or DER (a P-256 leaf CSR is about 300 bytes).
pub const MAX_CSR_LEN: usize = 64 * 1024;

/// Why a CSR is malformed (the "invalid CSR" kind; Consul maps it to InvalidArgument).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// Longer than [`MAX_CSR_LEN`].
    #[error("CSR longer than {MAX_CSR_LEN} bytes")]
    TooLong,
    /// No PEM block at all, or a broken one.
    #[error("CSR is not valid PEM")]
    NotPem,
    /// The first PEM block is not a CSR.
    #[error("first PEM-block should be CERTIFICATE REQUEST type")]
    WrongPemType,
    /// The DER does not parse as a PKCS#10 request.
    #[error("CSR could not be parsed")]
    Parse,
    /// The request's self-signature does not verify.
    #[error("CSR signature is invalid")]
    BadSignature,
    /// The request asks for an extension mesh does not sign (anything but SAN, KU, EKU, BC).
    #[error("CSR requests an unsupported extension")]
    UnsupportedExtension,
    /// The signature algorithm is not one mesh accepts.
    #[error("CSR uses an unsupported signature algorithm")]
    UnsupportedAlgorithm,
    /// Not exactly one URI SAN.
    #[error("CSR SAN contains an invalid number of URIs: {0}")]
    InvalidUriCount(usize),
    /// An email SAN is present.
    #[error("CSR SAN does not allow specifying email addresses")]
    EmailSan,
    /// The URI SAN is not a SPIFFE ID mesh knows.
    #[error("CSR URI SAN is not a valid SPIFFE ID")]
    InvalidSpiffeId(#[source] mesh_core::SpiffeIdError),
}

/// A parsed CSR whose self-signature has been verified.
///
/// Providers receive it when they sign; [`VerifiedCsr::spiffe_id`] is the identity the
/// certificate must carry (for agent IDs it has already been rewritten to the CA's trust
/// domain), which may differ from the URI in the raw request.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    der: Vec<u8>,
    pub(crate) inner: CertificateSigningRequestParams,
    spki: Vec<u8>,
    uris: Vec<String>,
    dns_names: Vec<String>,
    ips: Vec<IpAddr>,
    has_email: bool,
    identity: Option<SpiffeId>,
}

impl VerifiedCsr {
    /// Parses PEM; the first PEM block must be a `CERTIFICATE REQUEST`.
    pub fn from_pem(pem: &str) -> Result<Self, CsrError> {
        if pem.len() > MAX_CSR_LEN {
            return Err(CsrError::TooLong);
        }
        let mut rd = pem.as_bytes();
        match rustls::pki_types::pem::from_buf(&mut rd) {
            Ok(Some((SectionKind::Csr, der))) => Self::from_der(&der),
            Ok(Some(_)) => Err(CsrError::WrongPemType),
            Ok(None) | Err(_) => Err(CsrError::NotPem),
        }
    }

    /// Parses DER and verifies the request's signature.
    pub fn from_der(der: &[u8]) -> Result<Self, CsrError> {
        if der.len() > MAX_CSR_LEN {
            return Err(CsrError::TooLong);
        }
        let inner =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der))
                .map_err(|e| match e {
                    rcgen::Error::InvalidCertificationRequestSignature => CsrError::BadSignature,
                    rcgen::Error::UnsupportedExtension => CsrError::UnsupportedExtension,
                    rcgen::Error::UnsupportedSignatureAlgorithm => CsrError::UnsupportedAlgorithm,
                    _ => CsrError::Parse,
                })?;
        let mut uris = Vec::new();
        let mut dns_names = Vec::new();
        let mut ips = Vec::new();
        let mut has_email = false;
        for san in &inner.params.subject_alt_names {
            match san {
                SanType::URI(u) => uris.push(u.as_str().to_owned()),
                SanType::DnsName(d) => dns_names.push(d.as_str().to_owned()),
                SanType::IpAddress(ip) => ips.push(*ip),
                SanType::Rfc822Name(_) => has_email = true,
                _ => {}
            }
        }
        let spki = inner.public_key.subject_public_key_info();
        Ok(Self {
            der: der.to_vec(),
            inner,
            spki,
            uris,
            dns_names,
            ips,
            has_email,
            identity: None,
        })
    }

    /// The request as DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The URI SANs requested.
    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// The DNS SANs requested.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// The IP SANs requested.
    pub fn ip_addresses(&self) -> &[IpAddr] {
        &self.ips
    }

    /// Whether an email SAN was requested.
    pub fn has_email(&self) -> bool {
        self.has_email
    }

    /// Whether the request asks for a CA certificate (BasicConstraints cA=true).
    pub fn requests_ca(&self) -> bool {
        matches!(self.inner.params.is_ca, IsCa::Ca(_))
    }

    /// DER SubjectPublicKeyInfo of the requester's key.
    pub fn public_key_spki(&self) -> &[u8] {
        &self.spki
    }

    /// The identity the signed certificate carries, once the CA has checked it.
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        self.identity.as_ref()
    }

    pub(crate) fn set_identity(&mut self, id: SpiffeId) {
        self.identity = Some(id);
    }

    /// Checks the SAN rules of a leaf CSR (the first of Consul's leaf signing rules): exactly one
    /// URI, no email, the URI parses. Returns the parsed ID.
    pub fn leaf_identity(&self) -> Result<SpiffeId, CsrError> {
        if self.uris.len() != 1 {
            return Err(CsrError::InvalidUriCount(self.uris.len()));
        }
        if self.has_email {
            return Err(CsrError::EmailSan);
        }
        SpiffeId::parse(&self.uris[0]).map_err(CsrError::InvalidSpiffeId)
    }
}

/// A fresh key and a CSR for it, made by the holder of an identity.
#[derive(Debug)]
pub struct LeafRequest {
    /// The new private key (EC P-256).
    pub key: PrivateKey,
    /// The CSR, PEM.
    pub csr_pem: String,
    /// The CSR, DER.
    pub csr_der: Vec<u8>,
}

/// Why a CSR could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrBuildError {
    /// Key generation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A SAN could not be encoded.
    #[error("SAN {0:?} cannot be encoded")]
    San(String),
    /// rcgen refused to build the request.
    #[error("CSR encoding failed")]
    Encode(#[source] rcgen::Error),
}

/// Makes an EC P-256 key and a CSR for `id`, with the SANs Consul's agent puts in
/// (see docs/consul-compatibility.md, 'CA certificates'): the URI, then for an agent
/// `localhost`, `127.0.0.1` and `::1`, for a server `server.<dc>.peering.<td>`, plus
/// `extra_dns` (anything after a `:` is dropped, empty names dropped, duplicates removed).
/// Subject is empty, no other extension is requested.
pub fn new_leaf_request(id: &SpiffeId, extra_dns: &[&str]) -> Result<LeafRequest, CsrBuildError> {
    let key = PrivateKey::generate(KeySpec::EcP256)?;
    let mut dns: Vec<String> = Vec::new();
    let mut ips: Vec<IpAddr> = Vec::new();
    match id {
        SpiffeId::Agent(_) => {
            dns.push("localhost".to_owned());
            ips.push(IpAddr::from([127, 0, 0, 1]));
            ips.push(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]));
        }
        SpiffeId::Server(s) => {
            dns.push(format!(
                "server.{}.peering.{}",
                s.datacenter(),
                s.trust_domain()
            ));
        }
        _ => {}
    }
    for d in extra_dns {
        let d = d.split(':').next().unwrap_or_default();
        if !d.is_empty() && !dns.iter().any(|x| x == d) {
            dns.push(d.to_owned());
        }
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let uri = id.to_string();
    params.subject_alt_names.push(SanType::URI(
        uri.clone()
            .try_into()
            .map_err(|_| CsrBuildError::San(uri))?,
    ));
    for d in dns {
        params.subject_alt_names.push(SanType::DnsName(
            d.clone().try_into().map_err(|_| CsrBuildError::San(d))?,
        ));
    }
    params
        .subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    let csr = params
        .serialize_request(key.pair())
        .map_err(CsrBuildError::Encode)?;
    let csr_pem = csr.pem().map_err(CsrBuildError::Encode)?;
    Ok(LeafRequest {
        key,
        csr_pem,
        csr_der: csr.der().to_vec(),
    })
}

/// Builds a CA CSR for a secondary's intermediate: empty subject, the signing URI as the only
/// SAN, critical BasicConstraints cA=true with pathLen 0 (as Consul's secondaries do).
pub fn intermediate_csr(key: &PrivateKey, signing_uri: &str) -> Result<Vec<u8>, CsrBuildError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.subject_alt_names.push(SanType::URI(
        signing_uri
            .to_owned()
            .try_into()
            .map_err(|_| CsrBuildError::San(signing_uri.to_owned()))?,
    ));
    let csr = params
        .serialize_request(key.pair())
        .map_err(CsrBuildError::Encode)?;
    Ok(csr.der().to_vec())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn leaf_request_round_trip() {
        let web =
            id("spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web");
        let req = new_leaf_request(&web, &["web.local:8080", "", "web.local"]).unwrap();
        let csr = VerifiedCsr::from_pem(&req.csr_pem).unwrap();
        assert_eq!(csr.leaf_identity().unwrap(), web);
        assert_eq!(csr.dns_names(), ["web.local"]);
        assert_eq!(csr.public_key_spki(), req.key.public_key_spki().as_slice());
        assert!(!csr.requests_ca());
        assert_eq!(
            VerifiedCsr::from_der(&req.csr_der).unwrap().der(),
            req.csr_der.as_slice()
        );
    }

    #[test]
    fn agent_and_server_sans() {
        let agent =
            id("spiffe://11111111-2222-3333-4444-555555555555.consul/agent/client/dc/dc1/id/node1");
        let csr = VerifiedCsr::from_pem(&new_leaf_request(&agent, &[]).unwrap().csr_pem).unwrap();
        assert_eq!(csr.dns_names(), ["localhost"]);
        assert_eq!(csr.ip_addresses().len(), 2);
        let server = id("spiffe://11111111-2222-3333-4444-555555555555.consul/agent/server/dc/dc1");
        let csr = VerifiedCsr::from_pem(&new_leaf_request(&server, &[]).unwrap().csr_pem).unwrap();
        assert_eq!(
            csr.dns_names(),
            ["server.dc1.peering.11111111-2222-3333-4444-555555555555.consul"]
        );
    }

    #[test]
    fn bad_inputs() {
        assert_eq!(
            VerifiedCsr::from_pem("hello").unwrap_err(),
            CsrError::NotPem
        );
        let cert_pem = crate::x509::pem_block("CERTIFICATE", &[0x30, 0x00]);
        assert_eq!(
            VerifiedCsr::from_pem(&cert_pem).unwrap_err(),
            CsrError::WrongPemType
        );
        let junk = crate::x509::pem_block("CERTIFICATE REQUEST", &[0x30, 0x00]);
        assert_eq!(VerifiedCsr::from_pem(&junk).unwrap_err(), CsrError::Parse);
        assert_eq!(VerifiedCsr::from_der(&[]).unwrap_err(), CsrError::Parse);
        assert_eq!(
            VerifiedCsr::from_der(&vec![0; MAX_CSR_LEN + 1]).unwrap_err(),
            CsrError::TooLong
        );
    }

    #[test]
    fn tampered_signature_is_refused() {
        let web = id("spiffe://1234.consul/ns/default/dc/dc1/svc/web");
        let mut der = new_leaf_request(&web, &[]).unwrap().csr_der;
        let n = der.len();
        der[n - 3] ^= 0x55;
        assert!(matches!(
            VerifiedCsr::from_der(&der).unwrap_err(),
            CsrError::BadSignature | CsrError::Parse
        ));
    }

    #[test]
    fn intermediate_csr_shape() {
        let key = PrivateKey::generate(KeySpec::EcP256).unwrap();
        let der = intermediate_csr(&key, "spiffe://1234.consul").unwrap();
        let csr = VerifiedCsr::from_der(&der).unwrap();
        assert!(csr.requests_ca());
        assert_eq!(csr.uris(), ["spiffe://1234.consul"]);
        assert!(csr.inner.params.distinguished_name.iter().next().is_none());
    }
}
