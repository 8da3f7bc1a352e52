//! mTLS for the framed transport: a [`TlsConnector`] that wraps any [`Connector`], and rustls
//! configurations that authenticate the primary's servers by their SPIFFE identity
//! (`spiffe://<td>/agent/server/dc/<dc>`, Consul's server ID) instead of a DNS name.
//!
//! The TLS server name sent is the servers' SNI `server.<dc>.<domain>`
//! ([`mesh_core::Sni::Server`]), so the connection can go straight to the primary or through
//! mesh gateways that route on it. Certificates come from the caller (normally mesh-ca).

use std::sync::Arc;

use async_trait::async_trait;
use mesh_core::{ServerId, Sni, SpiffeId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{Connector, TransportError};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A root certificate was refused.
    #[error("invalid root certificate")]
    BadRoot(#[source] rustls::Error),
    /// No root certificate was given.
    #[error("no root certificate")]
    NoRoots,
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// rustls refused the configuration (key/certificate mismatch, protocol versions).
    #[error("TLS configuration refused")]
    Config(#[source] rustls::Error),
    /// The SNI is not a valid DNS name.
    #[error("SNI {0:?} is not a valid TLS server name")]
    ServerName(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(roots: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsSetupError> {
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).map_err(TlsSetupError::BadRoot)?;
    }
    Ok(Arc::new(store))
}

/// A client configuration for a secondary: presents `chain`/`key`, and accepts only a server
/// whose chain leads to `roots` and whose leaf names the servers of `expected`'s datacenter.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    expected: ServerId,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let provider = provider();
    let verifier = SpiffeServerVerifier {
        roots: root_store(roots)?,
        expected: SpiffeId::Server(expected).to_string(),
        algs: provider.signature_verification_algorithms,
    };
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)
        .map_err(TlsSetupError::Config)?;
    Ok(Arc::new(cfg))
}

/// A server configuration for the primary: presents `chain`/`key` and requires a client
/// certificate leading to `roots`. Who may do what is then decided by the request's token.
pub fn server_config(
    roots: &[CertificateDer<'static>],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(root_store(roots)?, provider.clone())
            .build()
            .map_err(TlsSetupError::Verifier)?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(TlsSetupError::Config)?;
    Ok(Arc::new(cfg))
}

/// Wraps a [`Connector`] (TCP to the primary or to a mesh gateway) in TLS.
#[derive(Clone)]
pub struct TlsConnector<C> {
    inner: C,
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    handshake_timeout: std::time::Duration,
}

impl<C> std::fmt::Debug for TlsConnector<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> TlsConnector<C> {
    /// Speaks TLS with `config` over `inner`'s streams, sending `sni` as the server name
    /// (normally `Sni::server(None, primary_dc, "consul")`).
    pub fn new(
        inner: C,
        config: Arc<rustls::ClientConfig>,
        sni: &Sni,
    ) -> Result<Self, TlsSetupError> {
        let name = sni.to_string();
        let server_name =
            ServerName::try_from(name.clone()).map_err(|_| TlsSetupError::ServerName(name))?;
        Ok(Self {
            inner,
            tls: tokio_rustls::TlsConnector::from(config),
            server_name,
            handshake_timeout: std::time::Duration::from_secs(10),
        })
    }
}

#[async_trait]
impl<C: Connector> Connector for TlsConnector<C> {
    type Stream = tokio_rustls::client::TlsStream<C::Stream>;

    async fn connect(&self) -> Result<Self::Stream, TransportError> {
        let raw = self.inner.connect().await?;
        let hs = self.tls.connect(self.server_name.clone(), raw);
        match tokio::time::timeout(self.handshake_timeout, hs).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(TransportError::Tls(e)),
            Err(_) => Err(TransportError::TimedOut(self.handshake_timeout)),
        }
    }
}

/// Verifies the server's chain against the roots, then its SPIFFE URI; the DNS name is not
/// checked (Consul's SNI names are not in the certificates).
#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    expected: String,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        if leaf_has_uri(end_entity, &self.expected) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn leaf_has_uri(der: &CertificateDer<'_>, expected: &str) -> bool {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value
        .general_names
        .iter()
        .any(|n| matches!(n, GeneralName::URI(u) if *u == expected))
}
