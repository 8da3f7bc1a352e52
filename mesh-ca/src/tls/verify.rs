//! The SPIFFE verifiers and the typed refusals they produce.

use std::sync::Arc;

use arc_swap::ArcSwap;
use mesh_core::{SpiffeId, TrustDomain};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};
use x509_parser::extensions::GeneralName;

use super::{ConnectAuthorizer, ExpectedServer, TrustBundle, crypto_provider};
use crate::error::Refusal;

/// Why a TLS peer was refused. Our own checks travel inside rustls as
/// `CertificateError::Other`; [`classify`] recovers them (and maps WebPKI's errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerRefusal {
    /// The chain does not lead to any root in the bundle.
    #[error("certificate does not chain to a known root")]
    UnknownRoot,
    /// A certificate of the chain has expired.
    #[error("certificate has expired")]
    Expired,
    /// A certificate of the chain is not valid yet.
    #[error("certificate is not valid yet")]
    NotYetValid,
    /// The client sent no certificate.
    #[error("no client certificate presented")]
    MissingClientCert,
    /// The certificate carries no (or more than one, or an unparseable) SPIFFE URI SAN.
    #[error("certificate carries no valid SPIFFE ID")]
    NoSpiffeId,
    /// The SPIFFE ID belongs to another trust domain.
    #[error("SPIFFE ID {got} is not in trust domain {want}")]
    WrongTrustDomain {
        /// The peer's ID.
        got: SpiffeId,
        /// Our trust domain.
        want: TrustDomain,
    },
    /// The server's SPIFFE ID is not the one the client expected.
    #[error("SPIFFE ID {got} is not the expected server identity")]
    WrongSpiffeId {
        /// The server's ID.
        got: SpiffeId,
        /// What was expected.
        expected: ExpectedServer,
    },
    /// The authorizer (intentions) refused the client.
    #[error("{peer} is not authorized: {refusal}")]
    Unauthorized {
        /// The client's ID.
        peer: SpiffeId,
        /// What refused.
        refusal: Refusal,
    },
    /// Another certificate problem (bad signature, wrong key usage, malformed).
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    /// The other side refused us (a TLS alert was received).
    #[error("refused by the peer: {0}")]
    RemoteAlert(String),
}

/// The typed refusal inside a rustls error, if it is one.
pub fn classify(e: &Error) -> Option<PeerRefusal> {
    match e {
        Error::NoCertificatesPresented => Some(PeerRefusal::MissingClientCert),
        Error::AlertReceived(a) => Some(PeerRefusal::RemoteAlert(format!("{a:?}"))),
        Error::InvalidCertificate(c) => Some(match c {
            CertificateError::UnknownIssuer => PeerRefusal::UnknownRoot,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                PeerRefusal::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                PeerRefusal::NotYetValid
            }
            CertificateError::Other(OtherError(inner)) => match inner.downcast_ref::<PeerRefusal>()
            {
                Some(r) => r.clone(),
                None => PeerRefusal::BadCertificate(inner.to_string()),
            },
            other => PeerRefusal::BadCertificate(format!("{other:?}")),
        }),
        _ => None,
    }
}

/// [`classify`] for the `io::Error` tokio-rustls returns.
pub fn classify_io(e: &std::io::Error) -> Option<PeerRefusal> {
    e.get_ref()?.downcast_ref::<Error>().and_then(classify)
}

/// The SPIFFE ID of a certificate: exactly one URI SAN that parses as a SPIFFE ID. `None`
/// for anything else (including bytes that are not a certificate).
pub fn spiffe_id_of_cert(cert: &CertificateDer<'_>) -> Option<SpiffeId> {
    let (_, x) = x509_parser::parse_x509_certificate(cert).ok()?;
    let san = x.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let (Some(uri), None) = (uris.next(), uris.next()) else {
        return None;
    };
    SpiffeId::parse(uri).ok()
}

/// The SPIFFE ID of the peer of an established connection (server or client side).
pub fn peer_spiffe_id(conn: &rustls::CommonState) -> Option<SpiffeId> {
    spiffe_id_of_cert(conn.peer_certificates()?.first()?)
}

fn refuse(side: &'static str, r: PeerRefusal) -> Error {
    tracing::warn!(side, reason = %r, "refused TLS peer");
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(r))))
}

fn log_webpki(side: &'static str, e: Error) -> Error {
    if let Some(r) = classify(&e) {
        tracing::warn!(side, reason = %r, "refused TLS peer");
    }
    e
}

/// Server side: WebPKI chain check against the current bundle, then trust domain, then the
/// authorizer, all inside the handshake.
#[derive(Debug)]
pub(super) struct SpiffeClientVerifier {
    bundle: Arc<ArcSwap<TrustBundle>>,
    authorizer: Arc<dyn ConnectAuthorizer>,
    algs: WebPkiSupportedAlgorithms,
    /// Whether a client must present a certificate (a presented one is always verified).
    mandatory: bool,
}

impl std::fmt::Debug for dyn ConnectAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectAuthorizer")
    }
}

impl SpiffeClientVerifier {
    pub(super) fn new(
        bundle: Arc<ArcSwap<TrustBundle>>,
        authorizer: Arc<dyn ConnectAuthorizer>,
    ) -> Self {
        Self {
            bundle,
            authorizer,
            algs: crypto_provider().signature_verification_algorithms,
            mandatory: true,
        }
    }

    /// The same verifier, letting clients without a certificate through (their requests are
    /// then the server's to authorize by other means).
    pub(super) fn optional(mut self) -> Self {
        self.mandatory = false;
        self
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: mesh clients always present their one leaf.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let bundle = self.bundle.load();
        bundle
            .webpki_client
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| log_webpki("server", e))?;
        let id = spiffe_id_of_cert(end_entity)
            .ok_or_else(|| refuse("server", PeerRefusal::NoSpiffeId))?;
        if id.trust_domain() != &bundle.trust_domain {
            let want = bundle.trust_domain.clone();
            return Err(refuse(
                "server",
                PeerRefusal::WrongTrustDomain { got: id, want },
            ));
        }
        if let Err(refusal) = self.authorizer.authorize(&id) {
            return Err(refuse(
                "server",
                PeerRefusal::Unauthorized { peer: id, refusal },
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Client side: WebPKI chain check against the current bundle (no name check), then trust
/// domain and the expected server identity.
#[derive(Debug)]
pub(super) struct SpiffeServerVerifier {
    bundle: Arc<ArcSwap<TrustBundle>>,
    expected: ExpectedServer,
    algs: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    pub(super) fn new(bundle: Arc<ArcSwap<TrustBundle>>, expected: ExpectedServer) -> Self {
        Self {
            bundle,
            expected,
            algs: crypto_provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let bundle = self.bundle.load();
        let parsed =
            ParsedCertificate::try_from(end_entity).map_err(|e| log_webpki("client", e))?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &bundle.roots,
            intermediates,
            now,
            self.algs.all,
        )
        .map_err(|e| log_webpki("client", e))?;
        let id = spiffe_id_of_cert(end_entity)
            .ok_or_else(|| refuse("client", PeerRefusal::NoSpiffeId))?;
        if id.trust_domain() != &bundle.trust_domain {
            let want = bundle.trust_domain.clone();
            return Err(refuse(
                "client",
                PeerRefusal::WrongTrustDomain { got: id, want },
            ));
        }
        if !self.expected.accepts(&id) {
            let expected = self.expected.clone();
            return Err(refuse(
                "client",
                PeerRefusal::WrongSpiffeId { got: id, expected },
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    #[test]
    fn classify_maps_webpki_and_own_errors() {
        use rustls::AlertDescription;
        assert_eq!(
            classify(&Error::NoCertificatesPresented),
            Some(PeerRefusal::MissingClientCert)
        );
        assert_eq!(
            classify(&Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            Some(PeerRefusal::UnknownRoot)
        );
        assert_eq!(
            classify(&Error::InvalidCertificate(CertificateError::Expired)),
            Some(PeerRefusal::Expired)
        );
        assert_eq!(
            classify(&Error::InvalidCertificate(CertificateError::NotValidYet)),
            Some(PeerRefusal::NotYetValid)
        );
        let own = refuse("test", PeerRefusal::NoSpiffeId);
        assert_eq!(classify(&own), Some(PeerRefusal::NoSpiffeId));
        assert!(matches!(
            classify(&Error::AlertReceived(AlertDescription::AccessDenied)),
            Some(PeerRefusal::RemoteAlert(_))
        ));
        assert_eq!(classify(&Error::HandshakeNotComplete), None);
        let io = std::io::Error::other(Error::NoCertificatesPresented);
        assert_eq!(classify_io(&io), Some(PeerRefusal::MissingClientCert));
        assert_eq!(classify_io(&std::io::Error::other("x")), None);
    }

    #[test]
    fn spiffe_id_of_garbage() {
        assert_eq!(
            spiffe_id_of_cert(&CertificateDer::from(vec![1, 2, 3])),
            None
        );
    }
}
