//! rustls configurations that authenticate peers by SPIFFE ID against the mesh roots, and
//! follow new leaves and new roots without a restart.
//!
//! Both sides read their certificate from an `ArcSwap` (through `ResolvesServerCert` /
//! `ResolvesClientCert`) and their roots from another `ArcSwap`, so a renewal or a rotation
//! changes the next handshake and never touches established connections.

mod verify;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use mesh_core::{ServiceName, SpiffeId, TrustDomain};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Refusal;
use crate::leaf::LeafCert;
use crate::roots::RootsView;
use crate::x509::certs_from_pem;

pub use verify::{PeerRefusal, classify, classify_io, peer_spiffe_id, spiffe_id_of_cert};

/// The crypto provider used everywhere: ring, passed explicitly (never the process default).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static P: LazyLock<Arc<CryptoProvider>> =
        LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    P.clone()
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The roots list holds no usable root.
    #[error("trust bundle has no usable root certificate")]
    NoRoots,
    /// The roots list has no valid trust domain.
    #[error("trust bundle has no valid trust domain")]
    NoTrustDomain,
    /// A root or a leaf was refused by rustls.
    #[error("rustls refused the configuration")]
    Rustls(#[from] rustls::Error),
    /// The WebPKI client verifier could not be built.
    #[error("client verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Decides whether an authenticated peer may talk to us (wired to intentions). Called inside
/// the handshake, so a refused client sees the handshake fail. Any
/// `Fn(&SpiffeId) -> Result<(), Refusal>` is one.
pub trait ConnectAuthorizer: Send + Sync {
    /// `Ok` to accept `peer`.
    fn authorize(&self, peer: &SpiffeId) -> Result<(), Refusal>;
}

impl<F> ConnectAuthorizer for F
where
    F: Fn(&SpiffeId) -> Result<(), Refusal> + Send + Sync,
{
    fn authorize(&self, peer: &SpiffeId) -> Result<(), Refusal> {
        self(peer)
    }
}

/// Knobs that weaken authentication.
pub mod danger {
    use super::*;

    /// Accepts every peer whose certificate chains to the mesh roots and carries an ID of our
    /// trust domain, without asking intentions.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct AllowAllPeers;

    impl ConnectAuthorizer for AllowAllPeers {
        fn authorize(&self, _peer: &SpiffeId) -> Result<(), Refusal> {
            Ok(())
        }
    }
}

/// Which server identities a client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExpectedServer {
    /// Any of these exact IDs.
    Ids(Vec<SpiffeId>),
    /// The named service (default partition and namespace) in any datacenter of our trust
    /// domain (for failover targets).
    Service(ServiceName),
}

impl ExpectedServer {
    /// Exactly `id`.
    pub fn id(id: SpiffeId) -> Self {
        Self::Ids(vec![id])
    }

    pub(crate) fn accepts(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Ids(ids) => ids.contains(id),
            Self::Service(name) => id.as_service().is_some_and(|s| {
                s.service() == name && s.partition().is_default() && s.namespace().is_default()
            }),
        }
    }
}

/// The mesh roots as rustls sees them: a root store, the trust domain, and a WebPKI client
/// verifier built once per bundle.
#[derive(Debug)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    roots: Arc<RootCertStore>,
    root_ids: Vec<String>,
    index: u64,
    webpki_client: Arc<dyn ClientCertVerifier>,
}

impl TrustBundle {
    /// Every root of a roots list (active and rotated-out ones).
    pub fn from_roots(view: &RootsView) -> Result<Self, TlsError> {
        let td = view.trust_domain().ok_or(TlsError::NoTrustDomain)?;
        let mut ders = Vec::with_capacity(view.roots.len());
        for r in &view.roots {
            ders.extend(certs_from_pem(&r.root_cert).map_err(|_| TlsError::NoRoots)?);
        }
        let mut b = Self::from_certs(td, ders)?;
        b.root_ids = view.roots.iter().map(|r| r.id.clone()).collect();
        b.index = view.index;
        Ok(b)
    }

    /// A bundle of explicit root certificates.
    pub fn from_certs(
        trust_domain: TrustDomain,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, TlsError> {
        let mut store = RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(roots.iter().cloned());
        if added == 0 {
            return Err(TlsError::NoRoots);
        }
        let store = Arc::new(store);
        let webpki_client =
            WebPkiClientVerifier::builder_with_provider(store.clone(), crypto_provider())
                .build()?;
        Ok(Self {
            trust_domain,
            root_ids: roots.iter().map(|d| crate::x509::root_id(d)).collect(),
            roots: store,
            index: 0,
            webpki_client,
        })
    }

    /// The trust domain peers must belong to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// IDs of the roots in the bundle.
    pub fn root_ids(&self) -> &[String] {
        &self.root_ids
    }

    /// The rustls root store.
    pub fn root_store(&self) -> &Arc<RootCertStore> {
        &self.roots
    }
}

/// The TLS side of one identity: its current leaf and the current bundle, both swappable at
/// any time. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TlsIdentity {
    leaf: Arc<ArcSwapOption<CertifiedKey>>,
    leaf_id: Arc<ArcSwapOption<SpiffeId>>,
    bundle: Arc<ArcSwap<TrustBundle>>,
    present_root: bool,
}

impl TlsIdentity {
    /// An identity with no leaf yet and `bundle` as trust.
    pub fn new(bundle: TrustBundle) -> Self {
        Self {
            leaf: Arc::new(ArcSwapOption::empty()),
            leaf_id: Arc::new(ArcSwapOption::empty()),
            bundle: Arc::new(ArcSwap::from_pointee(bundle)),
            present_root: false,
        }
    }

    /// The same identity, presenting the active root after the leaf and its intermediates
    /// whenever [`TlsIdentity::follow`] installs a leaf: a peer that was given only the root's
    /// fingerprint can then find the root in the chain (a verifier that has the root ignores
    /// the extra certificate). Call before `follow`.
    pub fn presenting_root(mut self) -> Self {
        self.present_root = true;
        self
    }

    /// Uses `leaf` with `extra` certificates after its chain, from the next handshake on.
    fn set_leaf_with(
        &self,
        leaf: &LeafCert,
        extra: &[CertificateDer<'static>],
    ) -> Result<(), TlsError> {
        let mut chain = leaf.chain();
        chain.extend(extra.iter().cloned());
        let ck = CertifiedKey::from_der(
            chain,
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf.key().to_pkcs8_der()),
            &crypto_provider(),
        )?;
        self.leaf.store(Some(Arc::new(ck)));
        self.leaf_id.store(Some(Arc::new(leaf.spiffe_id().clone())));
        Ok(())
    }

    /// An identity with a leaf and the bundle of `roots`.
    pub fn with_leaf(leaf: &LeafCert, roots: &RootsView) -> Result<Self, TlsError> {
        let id = Self::new(TrustBundle::from_roots(roots)?);
        id.set_leaf(leaf)?;
        Ok(id)
    }

    /// Uses `leaf` from the next handshake on.
    pub fn set_leaf(&self, leaf: &LeafCert) -> Result<(), TlsError> {
        self.set_leaf_with(leaf, &[])
    }

    /// Uses `bundle` from the next handshake on.
    pub fn set_bundle(&self, bundle: TrustBundle) {
        self.bundle.store(Arc::new(bundle));
    }

    /// Uses the roots of `view` from the next handshake on.
    pub fn set_roots(&self, view: &RootsView) -> Result<(), TlsError> {
        self.set_bundle(TrustBundle::from_roots(view)?);
        Ok(())
    }

    /// The bundle in use.
    pub fn bundle(&self) -> Arc<TrustBundle> {
        self.bundle.load_full()
    }

    /// The SPIFFE ID of the current leaf.
    pub fn local_id(&self) -> Option<SpiffeId> {
        self.leaf_id.load_full().map(|a| (*a).clone())
    }

    /// Follows a leaf manager and a roots watch: every new leaf and every new roots list is
    /// installed as it arrives. The task ends when both channels close.
    pub fn follow(
        &self,
        mut leaves: watch::Receiver<Option<Arc<LeafCert>>>,
        mut roots: watch::Receiver<Arc<RootsView>>,
    ) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let (mut leaves_open, mut roots_open) = (true, true);
            // The active root's DER, when this identity presents it.
            let active_root = |r: &RootsView| -> Vec<CertificateDer<'static>> {
                r.active_root()
                    .and_then(|root| certs_from_pem(&root.root_cert).ok())
                    .unwrap_or_default()
            };
            let install_leaf =
                |me: &TlsIdentity, l: &Option<Arc<LeafCert>>, extra: &[CertificateDer<'static>]| {
                    if let Some(l) = l
                        && let Err(e) = me.set_leaf_with(l, extra)
                    {
                        tracing::error!(error = %e, "new leaf refused by rustls");
                    }
                };
            let install_roots = |me: &TlsIdentity, r: &Arc<RootsView>| {
                if let Err(e) = me.set_roots(r) {
                    tracing::error!(error = %e, "new roots refused");
                }
            };
            let current = roots.borrow_and_update().clone();
            install_roots(&me, &current);
            let mut extra = if me.present_root {
                active_root(&current)
            } else {
                Vec::new()
            };
            install_leaf(&me, &leaves.borrow_and_update(), &extra);
            while leaves_open || roots_open {
                tokio::select! {
                    r = leaves.changed(), if leaves_open => match r {
                        Ok(()) => install_leaf(&me, &leaves.borrow_and_update(), &extra),
                        Err(_) => leaves_open = false,
                    },
                    r = roots.changed(), if roots_open => match r {
                        Ok(()) => {
                            let current = roots.borrow_and_update().clone();
                            install_roots(&me, &current);
                            if me.present_root {
                                extra = active_root(&current);
                                install_leaf(&me, &leaves.borrow(), &extra);
                            }
                        }
                        Err(_) => roots_open = false,
                    },
                }
            }
        })
    }

    /// A server config that requires a client certificate chaining to the bundle, with a
    /// SPIFFE ID of our trust domain that `authorizer` accepts (checked inside the
    /// handshake, every handshake: resumption is off). Returned unfrozen so the caller can set
    /// ALPN and the like.
    pub fn server_config(
        &self,
        authorizer: Arc<dyn ConnectAuthorizer>,
    ) -> Result<ServerConfig, TlsError> {
        let verifier = Arc::new(verify::SpiffeClientVerifier::new(
            self.bundle.clone(),
            authorizer,
        ));
        let mut cfg = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(LeafResolver(self.leaf.clone())));
        // The authorizer runs when the client certificate is verified, which a resumed
        // session skips: never resume, so every connection meets the authorizer in force.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok(cfg)
    }

    /// [`TlsIdentity::server_config`] for a listener some of whose clients have no
    /// certificate yet (a secondary's server before its first leaf): a certificate that is
    /// presented must pass exactly as there; a client without one gets through the handshake,
    /// and the server must authorize its requests by other means (a token).
    pub fn server_config_optional_client(
        &self,
        authorizer: Arc<dyn ConnectAuthorizer>,
    ) -> Result<ServerConfig, TlsError> {
        let verifier =
            Arc::new(verify::SpiffeClientVerifier::new(self.bundle.clone(), authorizer).optional());
        let mut cfg = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(LeafResolver(self.leaf.clone())));
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok(cfg)
    }

    /// A client config that verifies the server chain against the bundle and accepts only
    /// `expected` identities; the server name (SNI) is not checked, so callers send Consul
    /// service SNIs. Presents the current leaf.
    pub fn client_config(&self, expected: ExpectedServer) -> Result<ClientConfig, TlsError> {
        let verifier = Arc::new(verify::SpiffeServerVerifier::new(
            self.bundle.clone(),
            expected,
        ));
        Ok(ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(LeafResolver(self.leaf.clone()))))
    }
}

/// Hands rustls whatever leaf is current.
#[derive(Debug)]
struct LeafResolver(Arc<ArcSwapOption<CertifiedKey>>);

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load_full()
    }
}

impl ResolvesClientCert for LeafResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.load_full()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Why an accept or connect failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The handshake did not finish in time.
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The peer was refused (typed reason).
    #[error("peer refused: {0}")]
    Refused(#[source] PeerRefusal),
    /// Any other I/O or TLS failure.
    #[error("TLS handshake failed")]
    Io(#[source] std::io::Error),
    /// The handshake succeeded but the peer has no SPIFFE ID (cannot happen with mesh
    /// verifiers in place).
    #[error("peer presented no SPIFFE ID")]
    NoPeerId,
}

/// Accepts one TLS connection with a time-out; returns the stream and the client's SPIFFE ID.
/// A refusal is logged with its reason.
pub async fn accept<IO>(
    acceptor: &tokio_rustls::TlsAcceptor,
    io: IO,
    timeout: Duration,
) -> Result<(tokio_rustls::server::TlsStream<IO>, SpiffeId), HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let tls = match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Err(_) => return Err(HandshakeError::Timeout(timeout)),
        Ok(Err(e)) => return Err(handshake_failure("server", e)),
        Ok(Ok(tls)) => tls,
    };
    let id = peer_spiffe_id(tls.get_ref().1).ok_or(HandshakeError::NoPeerId)?;
    Ok((tls, id))
}

/// Connects with a time-out; returns the stream and the server's SPIFFE ID.
pub async fn connect<IO>(
    connector: &tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
    io: IO,
    timeout: Duration,
) -> Result<(tokio_rustls::client::TlsStream<IO>, SpiffeId), HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let tls = match tokio::time::timeout(timeout, connector.connect(server_name, io)).await {
        Err(_) => return Err(HandshakeError::Timeout(timeout)),
        Ok(Err(e)) => return Err(handshake_failure("client", e)),
        Ok(Ok(tls)) => tls,
    };
    let id = peer_spiffe_id(tls.get_ref().1).ok_or(HandshakeError::NoPeerId)?;
    Ok((tls, id))
}

fn handshake_failure(side: &'static str, e: std::io::Error) -> HandshakeError {
    match classify_io(&e) {
        Some(r) => {
            tracing::debug!(side, reason = %r, "TLS peer refused");
            HandshakeError::Refused(r)
        }
        None => HandshakeError::Io(e),
    }
}
