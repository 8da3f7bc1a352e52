//! The CA engine: bootstrap, secondaries, leaf signing, rotation, the roots list, state.

use mesh_core::error_chain;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use mesh_core::{AgentId, ClusterId, Datacenter, SpiffeId, TrustDomain};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::cn::{ca_common_name, compact_uid};
use crate::config::CaConfig;
use crate::csr::VerifiedCsr;
use crate::error::{
    Authorize, CaError, IntermediateRejection, Refusal, SignError, SignerError, signer_error,
};
use crate::keys::KeySpec;
use crate::limit::Limiter;
use crate::provider::{
    BuiltinFactory, CaProvider, ProviderContext, ProviderFactory, ProviderState, RootRequest,
    Validity,
};
use crate::roots::{CaRoot, RootsView, root_name};
use crate::x509::{
    CertInfo, CertParseError, cert_pem, certs_from_pem, colon_hex, key_id, root_id, signed_by,
};

/// Leaves and intermediates are back-dated by this much against clock skew (Consul's 1 minute).
pub const BACKDATE: Duration = Duration::from_secs(60);
/// Shortest life of a cross-signed root (Consul's fixed value; mesh extends it to the leaf TTL
/// when that is longer, see docs/consul-compatibility.md, 'Cross-signed root lifetime').
pub const CROSS_SIGN_MIN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long past `RotatedOutAt + LeafCertTTL` an old root stays in the bundle, for leaves a
/// secondary signed before it noticed the rotation.
pub const ROOT_PRUNE_GRACE: Duration = crate::config::INTERMEDIATE_RENEW_INTERVAL;
/// Version of the exported state format.
pub const STATE_VERSION: u32 = 1;

/// Primary (holds the roots) or secondary (holds an intermediate signed by the primary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The primary datacenter.
    Primary,
    /// A secondary datacenter.
    Secondary,
}

/// How to build a [`Ca`].
#[derive(Clone)]
pub struct CaOptions {
    /// This datacenter.
    pub datacenter: Datacenter,
    /// TTLs, key kind, limits.
    pub config: CaConfig,
    /// Makes and restores providers (default: the built-in one).
    pub factory: Arc<dyn ProviderFactory>,
    /// Wall clock (default: system).
    pub clock: Clock,
}

impl std::fmt::Debug for CaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaOptions")
            .field("datacenter", &self.datacenter)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl CaOptions {
    /// Defaults: Consul's config, the built-in provider, the system clock.
    pub fn new(datacenter: Datacenter) -> Self {
        Self {
            datacenter,
            config: CaConfig::default(),
            factory: Arc::new(BuiltinFactory::default()),
            clock: Clock::system(),
        }
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: CaConfig) -> Self {
        self.config = config;
        self
    }

    /// Replaces the provider factory.
    pub fn with_factory(mut self, factory: Arc<dyn ProviderFactory>) -> Self {
        self.factory = factory;
        self
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

/// A signed leaf, as the CA returns it (Consul's `IssuedCert` without the private key, which
/// the CA never sees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLeaf {
    /// The identity in the certificate (agent IDs rewritten to our trust domain).
    pub spiffe_id: SpiffeId,
    /// Serial, colon hex.
    pub serial_number: String,
    /// The leaf, DER.
    pub cert: CertificateDer<'static>,
    /// The intermediates to present after the leaf (cross-signed roots, local intermediate).
    pub chain: Vec<CertificateDer<'static>>,
    /// Leaf then intermediates, PEM (Consul's `CertPEM`).
    pub cert_pem: String,
    /// Start of validity.
    pub valid_after: OffsetDateTime,
    /// End of validity.
    pub valid_before: OffsetDateTime,
    /// ID of the active root it was signed under.
    pub root_id: String,
}

impl IssuedLeaf {
    /// Reads a leaf back from its PEM chain (leaf first, then intermediates), as a remote
    /// signer returns it: the identity, serial and validity come from the certificate itself,
    /// never from fields beside it. `root_id` is the active root it was signed under.
    pub fn from_pem(cert_pem: &str, root_id: String) -> Result<Self, CertParseError> {
        let mut certs = certs_from_pem(cert_pem)
            .map_err(|e| CertParseError(format!("certificate PEM: {e}")))?
            .into_iter();
        let cert = certs
            .next()
            .ok_or_else(|| CertParseError("no certificate in the PEM".into()))?;
        let info = CertInfo::parse(&cert)?;
        let uri = match info.uris.as_slice() {
            [one] => one,
            _ => return Err(CertParseError("a leaf needs exactly one URI SAN".into())),
        };
        let spiffe_id: SpiffeId = uri
            .parse()
            .map_err(|e| CertParseError(format!("URI SAN {uri:?}: {e}")))?;
        Ok(Self {
            spiffe_id,
            serial_number: colon_hex(&info.serial),
            cert,
            chain: certs.collect(),
            cert_pem: cert_pem.to_owned(),
            valid_after: info.not_before,
            valid_before: info.not_after,
            root_id,
        })
    }
}

/// Everything needed to restart a CA with the same roots and keys.
///
/// Holds private keys: `Debug` redacts them, [`CaState::write_file`] writes a new file with
/// mode 0600.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaState {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// Primary or secondary.
    pub role: Role,
    /// The datacenter.
    pub datacenter: Datacenter,
    /// The cluster id.
    pub cluster_id: String,
    /// The configuration in effect when exported.
    pub config: CaConfig,
    /// The roots list.
    pub roots: RootsView,
    /// The provider's keys and certificates.
    pub provider: ProviderState,
    /// Secondary: the local intermediate, PEM.
    pub local_intermediate: Option<String>,
    /// Secondary: the primary's active root id the intermediate was signed under.
    pub primary_active_root_id: Option<String>,
}

impl CaState {
    /// JSON form (includes private keys: treat as a secret).
    pub fn to_json(&self) -> Result<String, CaError> {
        serde_json::to_string_pretty(self).map_err(CaError::StateFormat)
    }

    /// Parses the JSON form.
    pub fn from_json(s: &str) -> Result<Self, CaError> {
        serde_json::from_str(s).map_err(CaError::StateFormat)
    }

    /// Writes the state atomically with [`write_secret_file`]: a new file readable by the
    /// owner only (mode 0600 on Unix) renamed over `path`. A symbolic link at `path` is
    /// refused, not followed.
    pub fn write_file(&self, path: &Path) -> Result<(), CaError> {
        let json = self.to_json()?;
        write_secret_file(path, json.as_bytes()).map_err(|source| CaError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads a state file.
    pub fn read_file(path: &Path) -> Result<Self, CaError> {
        let s = std::fs::read_to_string(path).map_err(|source| CaError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&s)
    }
}

/// Writes a secret (a private key, the CA state) to `path`, readable by the owner only.
///
/// The bytes go to a new temporary file in the same directory, created exclusively
/// (`O_CREAT | O_EXCL`, so no existing file and no symbolic link, even a dangling one, is
/// ever opened) with mode 0600 on Unix, synced, then renamed over `path`. Hence:
/// * a file already at `path` (mode 0644, say, or an inode another name shares) is replaced,
///   never written into, and its old mode does not carry over;
/// * a symbolic link at `path` is refused ([`std::io::ErrorKind::InvalidInput`]), as is
///   anything else that is not a regular file; should a link appear between that check and
///   the rename, the rename replaces the link itself: the secret never lands where it points;
/// * on error the temporary file is removed and `path` is left as it was.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind, Write};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{}: is a symbolic link; refusing to write a secret through it",
                    path.display()
                ),
            ));
        }
        Ok(m) if !m.is_file() => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{}: exists and is not a regular file", path.display()),
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let name = path.file_name().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{}: names no file", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (tmp, mut file) = create_secret_temp(dir, name)?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            std::fs::rename(&tmp, path)
        });
    if written.is_err() {
        // Best effort: the temporary file holds the secret too.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A new, empty, owner-only file `.<name>.<pid>.<n>.tmp` in `dir`, created exclusively.
fn create_secret_temp(
    dir: &Path,
    name: &std::ffi::OsStr,
) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    for _ in 0..64 {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join(tmp_name);
        match opts.open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            // Taken (by a file or a planted link, never opened): try the next name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{}: no free temporary file name", dir.display()),
    ))
}

/// The primary's side of intermediate signing, as a secondary sees it. Supplied by the caller
/// (wired to replication: `ConnectCA.Roots` and `ConnectCA.SignIntermediate` with the
/// replication token). A primary [`Ca`] implements it for in-process use.
#[async_trait]
pub trait IntermediateSigner: Send + Sync {
    /// The primary's roots list.
    async fn primary_roots(&self) -> Result<RootsView, SignerError>;
    /// Has the primary sign a CA CSR (PEM); returns the intermediate, PEM.
    async fn sign_intermediate(&self, csr_pem: &str) -> Result<String, SignerError>;
}

/// What [`Ca::renew_intermediate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenewOutcome {
    /// The intermediate is fine; the roots list was refreshed from the primary if it changed.
    Unchanged,
    /// A new intermediate was installed; why it was needed.
    Renewed(RenewReason),
    /// The primary refused or failed; the old intermediate is kept (Consul logs a warning and
    /// reports success). Holds the primary's error text.
    KeptOld(String),
}

/// Why a secondary asked for a new intermediate (step 2 of docs/consul-compatibility.md,
/// 'Secondary intermediates').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenewReason {
    /// No intermediate yet.
    Missing,
    /// The primary's active root changed.
    RootChanged,
    /// The recorded signing key id differs from the intermediate's.
    SigningKeyMismatch,
    /// Half of the intermediate's lifetime has passed.
    HalfLife,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The previous active root.
    pub old_root_id: String,
    /// The new active root (equal to the old one when nothing changed).
    pub new_root_id: String,
    /// The new root cross-signed by the old one, when cross-signing was done.
    pub cross_signed: Option<CertificateDer<'static>>,
}

/// Rotation options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotateOptions {
    /// Rotate even when the old provider cannot cross-sign (Consul's
    /// `ForceWithoutCrossSigning`): old-root peers will not accept new leaves until they fetch
    /// the new roots.
    pub force_without_cross_signing: bool,
}

/// A Connect CA for one datacenter. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Ca {
    inner: Arc<Inner>,
}

struct Inner {
    role: Role,
    datacenter: Datacenter,
    cluster_id: ClusterId,
    trust_domain: TrustDomain,
    signing_id: SpiffeId,
    config: CaConfig,
    key_spec: KeySpec,
    factory: Arc<dyn ProviderFactory>,
    clock: Clock,
    limiter: Limiter,
    write: tokio::sync::Mutex<()>,
    active: ArcSwap<Active>,
    roots_tx: watch::Sender<Arc<RootsView>>,
}

struct Active {
    provider: Arc<dyn CaProvider>,
    roots: Arc<RootsView>,
    root_id: String,
    root_not_after: OffsetDateTime,
    chain: Vec<CertificateDer<'static>>,
    chain_pem: String,
    intermediate: Option<Intermediate>,
    primary_active_root_id: Option<String>,
}

#[derive(Clone)]
struct Intermediate {
    der: CertificateDer<'static>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    key_id: Vec<u8>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = self.inner.active.load();
        f.debug_struct("Ca")
            .field("role", &self.inner.role)
            .field("datacenter", &self.inner.datacenter)
            .field("trust_domain", &self.inner.trust_domain)
            .field("active_root_id", &a.root_id)
            .field("provider", &a.provider)
            .finish()
    }
}

impl Ca {
    /// Primary, first start: generates the cluster id (random, ring's `SystemRandom`) and a
    /// root, which signs leaves directly.
    pub async fn bootstrap_primary(opts: CaOptions) -> Result<Self, CaError> {
        opts.config.validate()?;
        let key_spec = opts.config.key_spec()?;
        let cluster_id = ClusterId::from_random_bytes(random_bytes::<16>()?);
        let trust_domain = TrustDomain::from_cluster_id(&cluster_id);
        let ctx = context(&opts, &cluster_id, &trust_domain, true, key_spec);
        let provider = opts.factory.create(&ctx)?;
        let now = opts.clock.now();
        let root = new_root(&*provider, &cluster_id, &opts.config, now).await?;
        let record = root_record(&*provider, &root, &cluster_id, 1)?;
        let roots = RootsView {
            active_root_id: record.id.clone(),
            trust_domain: trust_domain.to_string(),
            roots: vec![record],
            index: 1,
        };
        let active = Active::new(provider, roots, None, None)?;
        tracing::info!(
            datacenter = %opts.datacenter, trust_domain = %trust_domain, root = %active.root_id,
            "initialized primary CA"
        );
        Ok(Self::assemble(
            opts,
            Role::Primary,
            cluster_id,
            trust_domain,
            key_spec,
            active,
        ))
    }

    /// Primary: loads `path` when it exists, otherwise bootstraps and writes the new state
    /// there (mode 0600). A restarted datacenter therefore keeps its root.
    pub async fn open_primary(opts: CaOptions, path: &Path) -> Result<Self, CaError> {
        if path.exists() {
            let state = CaState::read_file(path)?;
            if state.role != Role::Primary {
                return Err(CaError::StateMismatch(
                    "state file holds a secondary CA".into(),
                ));
            }
            return Self::load(opts, state);
        }
        let ca = Self::bootstrap_primary(opts).await?;
        ca.export_state().write_file(path)?;
        Ok(ca)
    }

    /// Restores a CA from exported state (either role). The datacenter must match.
    pub fn load(opts: CaOptions, state: CaState) -> Result<Self, CaError> {
        opts.config.validate()?;
        let key_spec = opts.config.key_spec()?;
        if state.version != STATE_VERSION {
            return Err(CaError::StateMismatch(format!(
                "unknown state version {}",
                state.version
            )));
        }
        if state.datacenter != opts.datacenter {
            return Err(CaError::StateMismatch(format!(
                "state is for datacenter {}, not {}",
                state.datacenter, opts.datacenter
            )));
        }
        let cluster_id: ClusterId = state
            .cluster_id
            .parse()
            .map_err(|_| CaError::StateMismatch("invalid cluster id".into()))?;
        let trust_domain = TrustDomain::from_cluster_id(&cluster_id);
        if state.roots.trust_domain != trust_domain.as_str() {
            return Err(CaError::StateMismatch(
                "trust domain does not match cluster id".into(),
            ));
        }
        let primary = state.role == Role::Primary;
        let ctx = context(&opts, &cluster_id, &trust_domain, primary, key_spec);
        let provider = opts.factory.restore(&ctx, &state.provider)?;
        let intermediate = match &state.local_intermediate {
            Some(pem) => {
                let der = certs_from_pem(pem)
                    .ok()
                    .and_then(|v| v.into_iter().next())
                    .ok_or_else(|| CaError::StateMismatch("local intermediate PEM".into()))?;
                Some(Intermediate::parse(der).map_err(CaError::BadIntermediate)?)
            }
            None => None,
        };
        if !primary && intermediate.is_none() {
            return Err(CaError::StateMismatch(
                "secondary state without intermediate".into(),
            ));
        }
        let active = Active::new(
            provider,
            state.roots,
            intermediate,
            state.primary_active_root_id,
        )?;
        Ok(Self::assemble(
            opts,
            state.role,
            cluster_id,
            trust_domain,
            key_spec,
            active,
        ))
    }

    /// Secondary: fetches the primary's roots, learns the trust domain from them, generates a
    /// key and CSR, has the primary sign it through `signer`, validates the result (a CA carrying
    /// our signing ID, chaining to the primary's root, holding our key) and starts signing
    /// leaves with it. Fails when the primary cannot be reached or refuses:
    /// a secondary without an intermediate cannot sign anything, so the caller retries.
    pub async fn init_secondary(
        opts: CaOptions,
        signer: &dyn IntermediateSigner,
    ) -> Result<Self, CaError> {
        opts.config.validate()?;
        let key_spec = opts.config.key_spec()?;
        let primary_roots = signer.primary_roots().await.map_err(CaError::RootsFetch)?;
        let trust_domain = primary_roots
            .trust_domain()
            .ok_or(CaError::PrimaryNotInitialized)?;
        let cluster_id: ClusterId = trust_domain
            .cluster_id()
            .parse()
            .map_err(|_| CaError::PrimaryNotInitialized)?;
        let ctx = context(&opts, &cluster_id, &trust_domain, false, key_spec);
        let provider = opts.factory.create(&ctx)?;
        let now = opts.clock.now();
        let int =
            obtain_intermediate(&*provider, signer, &primary_roots, &trust_domain, now).await?;
        let primary_active = primary_roots.active_root_id.clone();
        let roots = secondary_view(&primary_roots, &int, now, 1);
        let active = Active::new(provider, roots, Some(int), Some(primary_active))?;
        tracing::info!(
            datacenter = %opts.datacenter, trust_domain = %trust_domain,
            "initialized secondary CA with an intermediate from the primary"
        );
        Ok(Self::assemble(
            opts,
            Role::Secondary,
            cluster_id,
            trust_domain,
            key_spec,
            active,
        ))
    }

    fn assemble(
        opts: CaOptions,
        role: Role,
        cluster_id: ClusterId,
        trust_domain: TrustDomain,
        key_spec: KeySpec,
        active: Active,
    ) -> Self {
        let (roots_tx, _) = watch::channel(active.roots.clone());
        let signing_id = SpiffeId::Signing(trust_domain.clone());
        Self {
            inner: Arc::new(Inner {
                role,
                limiter: Limiter::from_config(&opts.config),
                datacenter: opts.datacenter,
                cluster_id,
                trust_domain,
                signing_id,
                config: opts.config,
                key_spec,
                factory: opts.factory,
                clock: opts.clock,
                write: tokio::sync::Mutex::new(()),
                active: ArcSwap::from_pointee(active),
                roots_tx,
            }),
        }
    }

    /// Primary or secondary.
    pub fn role(&self) -> Role {
        self.inner.role
    }

    /// This datacenter.
    pub fn datacenter(&self) -> &Datacenter {
        &self.inner.datacenter
    }

    /// The mesh's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.inner.trust_domain
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &ClusterId {
        &self.inner.cluster_id
    }

    /// The configuration.
    pub fn config(&self) -> &CaConfig {
        &self.inner.config
    }

    /// The active provider.
    pub fn provider(&self) -> Arc<dyn CaProvider> {
        self.inner.active.load().provider.clone()
    }

    /// The current roots list.
    pub fn roots(&self) -> Arc<RootsView> {
        self.inner.active.load().roots.clone()
    }

    /// A watch on the roots list; it changes on rotation, pruning and intermediate renewal.
    pub fn subscribe_roots(&self) -> watch::Receiver<Arc<RootsView>> {
        self.inner.roots_tx.subscribe()
    }

    /// Signs a leaf from a PEM CSR (see [`Ca::sign_leaf`]).
    pub async fn sign_leaf_pem<A: Authorize + ?Sized>(
        &self,
        csr_pem: &str,
        auth: &A,
    ) -> Result<IssuedLeaf, SignError> {
        self.sign_leaf(VerifiedCsr::from_pem(csr_pem)?, auth).await
    }

    /// Signs a leaf from a DER CSR (see [`Ca::sign_leaf`]).
    pub async fn sign_leaf_der<A: Authorize + ?Sized>(
        &self,
        csr_der: &[u8],
        auth: &A,
    ) -> Result<IssuedLeaf, SignError> {
        self.sign_leaf(VerifiedCsr::from_der(csr_der)?, auth).await
    }

    /// Signs a leaf, checking in Consul's order (see docs/consul-compatibility.md, 'Leaf signing
    /// rules'): one URI SAN and no email SAN; default partition and namespace; a service, agent,
    /// mesh-gateway or server ID; `auth` allows it; our datacenter (except agents); our trust
    /// domain (agents are rewritten to it); a rate-limit slot; the root and intermediate not
    /// expired.
    pub async fn sign_leaf<A: Authorize + ?Sized>(
        &self,
        csr: VerifiedCsr,
        auth: &A,
    ) -> Result<IssuedLeaf, SignError> {
        self.sign(csr, auth, false).await
    }

    /// Signs the server identity of ANOTHER datacenter of this trust domain
    /// (`spiffe://<td>/agent/server/dc/<dc>`, `dc` not ours), for a secondary's server that
    /// enrolls with the primary before its own CA exists. Any other identity is refused
    /// ([`SignError::UnsupportedIdentity`], or [`SignError::PermissionDenied`] for our own
    /// datacenter's servers, whose identity only this CA's own servers hold). The caller
    /// authorizes the request (a token) before calling this.
    pub async fn sign_peer_server_pem(&self, csr_pem: &str) -> Result<IssuedLeaf, SignError> {
        let csr = VerifiedCsr::from_pem(csr_pem)?;
        let ours = self.inner.datacenter.clone();
        let peers_only = move |id: &SpiffeId| match id {
            SpiffeId::Server(s) if s.datacenter() != &ours => Ok(()),
            SpiffeId::Server(_) => Err(Refusal::new(
                "a server of this datacenter is not enrolled: it holds its identity from this CA",
            )),
            other => Err(Refusal::new(format!("{other} is not a server identity"))),
        };
        self.sign(csr, &peers_only, true).await
    }

    async fn sign<A: Authorize + ?Sized>(
        &self,
        mut csr: VerifiedCsr,
        auth: &A,
        peer_server: bool,
    ) -> Result<IssuedLeaf, SignError> {
        let inner = &*self.inner;
        let id = csr.leaf_identity()?;
        if peer_server && !matches!(id, SpiffeId::Server(_)) {
            return Err(SignError::UnsupportedIdentity);
        }
        match &id {
            SpiffeId::Service(s) if !s.partition().is_default() || !s.namespace().is_default() => {
                return Err(SignError::NonDefaultTenancy(id.clone()));
            }
            SpiffeId::MeshGateway(m) if !m.partition().is_default() => {
                return Err(SignError::NonDefaultTenancy(id.clone()));
            }
            SpiffeId::Signing(_) => return Err(SignError::UnsupportedIdentity),
            _ => {}
        }
        if let Err(refusal) = auth.authorize(&id) {
            tracing::warn!(spiffe_id = %id, reason = %refusal, "leaf signing refused by authorizer");
            return Err(SignError::PermissionDenied { id, refusal });
        }
        let final_id = match &id {
            SpiffeId::Agent(a) => SpiffeId::Agent(AgentId::new(
                inner.trust_domain.clone(),
                a.datacenter().clone(),
                a.agent().clone(),
            )),
            _ => {
                if let Some(dc) = id.datacenter()
                    && dc != &inner.datacenter
                    && !peer_server
                {
                    return Err(SignError::WrongDatacenter {
                        got: dc.clone(),
                        ours: inner.datacenter.clone(),
                    });
                }
                if !inner.signing_id.can_sign(&id) {
                    return Err(SignError::WrongTrustDomain {
                        got: id.trust_domain().to_string(),
                        ours: inner.trust_domain.to_string(),
                    });
                }
                id
            }
        };
        let _slot = inner
            .limiter
            .acquire()
            .await
            .map_err(|_| SignError::RateLimited)?;
        let active = inner.active.load_full();
        let now = inner.clock.now();
        if active.root_not_after < now {
            return Err(SignError::RootExpired(format!(
                "{} expired at {}",
                active.root_id, active.root_not_after
            )));
        }
        let mut cap = active.root_not_after;
        if inner.role == Role::Secondary {
            let Some(int) = &active.intermediate else {
                return Err(SignError::NotInitialized);
            };
            if int.not_after < now {
                return Err(SignError::IntermediateExpired(format!(
                    "expired at {}",
                    int.not_after
                )));
            }
            cap = cap.min(int.not_after);
        }
        let not_before = now - BACKDATE;
        let not_after = (not_before + inner.config.leaf_cert_ttl).min(cap);
        csr.set_identity(final_id.clone());
        let cert = active
            .provider
            .sign_leaf(
                &csr,
                Validity {
                    not_before,
                    not_after,
                },
            )
            .await?;
        let info = CertInfo::parse(&cert).map_err(|_| SignError::ProviderMismatch)?;
        if info.spki != csr.public_key_spki() {
            return Err(SignError::ProviderMismatch);
        }
        let mut cert_pem_text = cert_pem(&cert);
        cert_pem_text.push_str(&active.chain_pem);
        Ok(IssuedLeaf {
            spiffe_id: final_id,
            serial_number: colon_hex(&info.serial),
            cert,
            chain: active.chain.clone(),
            cert_pem: cert_pem_text,
            valid_after: info.not_before,
            valid_before: info.not_after,
            root_id: active.root_id.clone(),
        })
    }

    /// Primary: signs a secondary's intermediate CSR (PEM) and returns the intermediate (PEM).
    /// The caller checks `operator:write` first. The CSR may carry no URI (accepted, as Consul
    /// does for external CAs); otherwise exactly one, our signing ID. The intermediate lives
    /// `IntermediateCertTTL` from one minute ago, and never past the root.
    pub async fn sign_intermediate(&self, csr_pem: &str) -> Result<String, CaError> {
        let inner = &*self.inner;
        if inner.role != Role::Primary {
            return Err(CaError::NotPrimary);
        }
        let csr = VerifiedCsr::from_pem(csr_pem)?;
        match csr.uris() {
            [] => {}
            [uri] => {
                let ok = SpiffeId::parse(uri).is_ok_and(|id| inner.signing_id.can_sign(&id));
                if !ok {
                    return Err(CaError::IntermediateUri(uri.clone()));
                }
            }
            many => {
                return Err(CaError::Csr(crate::csr::CsrError::InvalidUriCount(
                    many.len(),
                )));
            }
        }
        let active = inner.active.load_full();
        let not_before = inner.clock.now() - BACKDATE;
        let not_after =
            (not_before + inner.config.intermediate_cert_ttl).min(active.root_not_after);
        let der = active
            .provider
            .sign_intermediate(
                &csr,
                Validity {
                    not_before,
                    not_after,
                },
            )
            .await?;
        tracing::info!(datacenter = %inner.datacenter, "signed an intermediate CA certificate for a secondary");
        Ok(cert_pem(&der))
    }

    /// Primary: rotates to a fresh root from the same factory (new key), cross-signed by the
    /// current root.
    pub async fn rotate(&self) -> Result<Rotation, CaError> {
        let inner = &*self.inner;
        if inner.role != Role::Primary {
            return Err(CaError::NotPrimary);
        }
        let ctx = ProviderContext {
            cluster_id: inner.cluster_id.clone(),
            trust_domain: inner.trust_domain.clone(),
            datacenter: inner.datacenter.clone(),
            primary: true,
            key_spec: inner.key_spec,
            disable_cross_signing: inner.config.disable_cross_signing,
        };
        let provider = inner.factory.create(&ctx)?;
        self.rotate_to(provider, RotateOptions::default()).await
    }

    /// Primary: makes `provider`'s root the active one (Consul's CA config change, see
    /// docs/consul-compatibility.md, 'Root rotation and cross-signing'). The old root
    /// cross-signs the new one (unless forced without), old roots stay in the list marked
    /// inactive with `RotatedOutAt`, and the new root's `IntermediateCerts` start with the
    /// cross-signed certificate. Nothing changes when the new root is the active one.
    pub async fn rotate_to(
        &self,
        provider: Arc<dyn CaProvider>,
        opts: RotateOptions,
    ) -> Result<Rotation, CaError> {
        let inner = &*self.inner;
        if inner.role != Role::Primary {
            return Err(CaError::NotPrimary);
        }
        let _w = inner.write.lock().await;
        let old = inner.active.load_full();
        let now = inner.clock.now();
        let root = new_root(&*provider, &inner.cluster_id, &inner.config, now).await?;
        let new_id = root_id(&root);
        if new_id == old.root_id {
            return Ok(Rotation {
                old_root_id: old.root_id.clone(),
                new_root_id: new_id,
                cross_signed: None,
            });
        }
        let cross_signed = if opts.force_without_cross_signing {
            None
        } else {
            let not_before = now - BACKDATE;
            let life = CROSS_SIGN_MIN_TTL.max(inner.config.leaf_cert_ttl);
            let not_after = (not_before + life).min(old.root_not_after);
            let cross = old
                .provider
                .cross_sign(
                    &root,
                    Validity {
                        not_before,
                        not_after,
                    },
                )
                .await
                .map_err(CaError::CrossSignUnsupported)?;
            Some(cross)
        };
        let index = old.roots.index + 1;
        let mut record = root_record(&*provider, &root, &inner.cluster_id, index)?;
        if let Some(c) = &cross_signed {
            record.intermediate_certs.push(cert_pem(c));
        }
        let mut roots = (*old.roots).clone();
        for r in roots.roots.iter_mut().filter(|r| r.active) {
            r.active = false;
            r.rotated_out_at = Some(now);
            r.modify_index = index;
        }
        roots.active_root_id = record.id.clone();
        roots.roots.push(record);
        roots.index = index;
        let active = Active::new(provider, roots, None, None)?;
        let rotation = Rotation {
            old_root_id: old.root_id.clone(),
            new_root_id: active.root_id.clone(),
            cross_signed,
        };
        self.publish(active);
        tracing::info!(
            old_root = %rotation.old_root_id, new_root = %rotation.new_root_id,
            cross_signed = rotation.cross_signed.is_some(), "rotated CA root"
        );
        Ok(rotation)
    }

    /// Drops inactive roots that no unexpired leaf can chain to any more (rotated out more than
    /// `LeafCertTTL` + [`ROOT_PRUNE_GRACE`] ago, or expired), intermediates whose issuer is no
    /// longer listed, and expired intermediates. Returns whether anything was removed.
    pub async fn prune_roots(&self) -> bool {
        let inner = &*self.inner;
        let _w = inner.write.lock().await;
        let old = inner.active.load_full();
        let now = inner.clock.now();
        let keep_for = inner.config.leaf_cert_ttl + ROOT_PRUNE_GRACE;
        let mut roots = (*old.roots).clone();
        let before: usize = roots
            .roots
            .iter()
            .map(|r| 1 + r.intermediate_certs.len())
            .sum();
        roots.roots.retain(|r| {
            r.active || (r.not_after > now && r.rotated_out_at.is_none_or(|t| t + keep_for > now))
        });
        let subjects: Vec<Vec<u8>> = roots
            .roots
            .iter()
            .filter_map(|r| certs_from_pem(&r.root_cert).ok()?.into_iter().next())
            .filter_map(|d| CertInfo::parse(&d).ok().map(|i| i.subject_raw))
            .collect();
        for r in &mut roots.roots {
            r.intermediate_certs.retain(|pem| {
                let Some(info) = certs_from_pem(pem)
                    .ok()
                    .and_then(|v| v.into_iter().next())
                    .and_then(|d| CertInfo::parse(&d).ok())
                else {
                    return false;
                };
                info.not_after > now && subjects.contains(&info.issuer_raw)
            });
        }
        let after: usize = roots
            .roots
            .iter()
            .map(|r| 1 + r.intermediate_certs.len())
            .sum();
        if after == before {
            return false;
        }
        roots.index += 1;
        let active = match Active::new(
            old.provider.clone(),
            roots,
            old.intermediate.clone(),
            old.primary_active_root_id.clone(),
        ) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "pruning would leave no active root; keeping roots");
                return false;
            }
        };
        self.publish(active);
        true
    }

    /// Secondary: refreshes the primary's roots and gets a new intermediate when needed: none
    /// yet, the primary's active root changed, the signing key id differs, or half of the
    /// intermediate's life has passed. A refusal by the primary keeps the old intermediate
    /// (returned as [`RenewOutcome::KeptOld`], logged as a warning).
    pub async fn renew_intermediate(
        &self,
        signer: &dyn IntermediateSigner,
    ) -> Result<RenewOutcome, CaError> {
        let inner = &*self.inner;
        if inner.role != Role::Secondary {
            return Err(CaError::NotSecondary);
        }
        let primary_roots = signer.primary_roots().await.map_err(CaError::RootsFetch)?;
        if primary_roots.trust_domain().as_ref() != Some(&inner.trust_domain) {
            return Err(CaError::PrimaryNotInitialized);
        }
        let _w = inner.write.lock().await;
        let old = inner.active.load_full();
        let now = inner.clock.now();
        let reason = match &old.intermediate {
            None => Some(RenewReason::Missing),
            Some(_)
                if old.primary_active_root_id.as_deref()
                    != Some(primary_roots.active_root_id.as_str()) =>
            {
                Some(RenewReason::RootChanged)
            }
            Some(int) => {
                let recorded = old.roots.active_root().map(|r| r.signing_key_id.clone());
                if recorded.as_deref() != Some(colon_hex(&int.key_id).as_str()) {
                    Some(RenewReason::SigningKeyMismatch)
                } else if half_life_passed(now, int.not_before, int.not_after) {
                    Some(RenewReason::HalfLife)
                } else {
                    None
                }
            }
        };
        let index = old.roots.index + 1;
        let Some(reason) = reason else {
            let Some(int) = &old.intermediate else {
                return Ok(RenewOutcome::Unchanged);
            };
            let mut view = secondary_view(&primary_roots, int, now, old.roots.index);
            if view != *old.roots {
                view.index = index;
                let active = Active::new(
                    old.provider.clone(),
                    view,
                    Some(int.clone()),
                    old.primary_active_root_id.clone(),
                )?;
                self.publish(active);
            }
            return Ok(RenewOutcome::Unchanged);
        };
        let int = match obtain_intermediate(
            &*old.provider,
            signer,
            &primary_roots,
            &inner.trust_domain,
            now,
        )
        .await
        {
            Ok(int) => int,
            Err(e) if old.intermediate.is_some() => {
                tracing::warn!(error = %e, reason = ?reason, "Primary datacenter refused to sign our intermediate CA certificate");
                return Ok(RenewOutcome::KeptOld(error_chain(&e)));
            }
            Err(e) => return Err(e),
        };
        let view = secondary_view(&primary_roots, &int, now, index);
        let active = Active::new(
            old.provider.clone(),
            view,
            Some(int),
            Some(primary_roots.active_root_id.clone()),
        )?;
        self.publish(active);
        tracing::info!(datacenter = %inner.datacenter, reason = ?reason, "installed a new intermediate CA certificate");
        Ok(RenewOutcome::Renewed(reason))
    }

    /// Secondary: runs [`Ca::renew_intermediate`] every `interval` (Consul: 1 h) forever and
    /// logs failures. Spawn it; call `renew_intermediate` directly when the primary's roots
    /// are known to have changed.
    pub async fn run_secondary(&self, signer: Arc<dyn IntermediateSigner>, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = self.renew_intermediate(&*signer).await {
                tracing::warn!(error = %e, "intermediate renewal failed");
            }
            self.prune_roots().await;
        }
    }

    /// Everything needed to restart this CA (includes private keys).
    pub fn export_state(&self) -> CaState {
        let inner = &*self.inner;
        let a = inner.active.load_full();
        CaState {
            version: STATE_VERSION,
            role: inner.role,
            datacenter: inner.datacenter.clone(),
            cluster_id: inner.cluster_id.to_string(),
            config: inner.config.clone(),
            roots: (*a.roots).clone(),
            provider: a.provider.export_state(),
            local_intermediate: a.intermediate.as_ref().map(|i| cert_pem(&i.der)),
            primary_active_root_id: a.primary_active_root_id.clone(),
        }
    }

    /// Writes [`Ca::export_state`] to `path` (mode 0600).
    pub fn save(&self, path: &Path) -> Result<(), CaError> {
        self.export_state().write_file(path)
    }

    fn publish(&self, active: Active) {
        let roots = active.roots.clone();
        self.inner.active.store(Arc::new(active));
        self.inner.roots_tx.send_replace(roots);
    }
}

#[async_trait]
impl IntermediateSigner for Ca {
    async fn primary_roots(&self) -> Result<RootsView, SignerError> {
        if self.role() != Role::Primary {
            return Err(signer_error(CaError::NotPrimary));
        }
        Ok((*self.roots()).clone())
    }

    async fn sign_intermediate(&self, csr_pem: &str) -> Result<String, SignerError> {
        Ca::sign_intermediate(self, csr_pem)
            .await
            .map_err(|e| Box::new(e) as SignerError)
    }
}

impl Active {
    fn new(
        provider: Arc<dyn CaProvider>,
        roots: RootsView,
        intermediate: Option<Intermediate>,
        primary_active_root_id: Option<String>,
    ) -> Result<Self, CaError> {
        let root = roots.active_root().ok_or(CaError::NoActiveRoot)?;
        let mut chain = Vec::with_capacity(root.intermediate_certs.len());
        let mut chain_pem = String::new();
        for pem in &root.intermediate_certs {
            let certs = certs_from_pem(pem)
                .map_err(|_| CaError::StateMismatch("intermediate PEM".into()))?;
            for der in certs {
                chain_pem.push_str(&cert_pem(&der));
                chain.push(der);
            }
        }
        Ok(Self {
            root_id: root.id.clone(),
            root_not_after: root.not_after,
            provider,
            chain,
            chain_pem,
            intermediate,
            primary_active_root_id,
            roots: Arc::new(roots),
        })
    }
}

impl Intermediate {
    fn parse(der: CertificateDer<'static>) -> Result<Self, IntermediateRejection> {
        let info = CertInfo::parse(&der).map_err(|e| IntermediateRejection::Malformed(e.0))?;
        Ok(Self {
            key_id: info.subject_key_id.unwrap_or_else(|| key_id(&info.spki)),
            not_before: info.not_before,
            not_after: info.not_after,
            der,
        })
    }
}

fn context(
    opts: &CaOptions,
    cluster_id: &ClusterId,
    td: &TrustDomain,
    primary: bool,
    key_spec: KeySpec,
) -> ProviderContext {
    ProviderContext {
        cluster_id: cluster_id.clone(),
        trust_domain: td.clone(),
        datacenter: opts.datacenter.clone(),
        primary,
        key_spec,
        disable_cross_signing: opts.config.disable_cross_signing,
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], CaError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| CaError::Random)?;
    Ok(b)
}

async fn new_root(
    provider: &dyn CaProvider,
    cluster_id: &ClusterId,
    config: &CaConfig,
    now: OffsetDateTime,
) -> Result<CertificateDer<'static>, CaError> {
    let cn = ca_common_name(
        provider.name(),
        &compact_uid(random_bytes::<8>()?),
        cluster_id.as_str(),
        true,
    );
    let req = RootRequest {
        common_name: cn,
        validity: Validity {
            not_before: now,
            not_after: now + config.effective_root_ttl(),
        },
    };
    Ok(provider.generate_root(&req).await?)
}

fn root_record(
    provider: &dyn CaProvider,
    der: &CertificateDer<'static>,
    cluster_id: &ClusterId,
    index: u64,
) -> Result<CaRoot, CaError> {
    let info = CertInfo::parse(der)
        .map_err(|e| CaError::Provider(crate::provider::ProviderError::BadCertificate(e.0)))?;
    let spec = provider.key_spec();
    Ok(CaRoot {
        id: root_id(der),
        name: root_name(provider.name()),
        serial_number: info.serial_u64,
        signing_key_id: colon_hex(
            &info
                .subject_key_id
                .clone()
                .unwrap_or_else(|| key_id(&info.spki)),
        ),
        external_trust_domain: cluster_id.to_string(),
        not_before: info.not_before,
        not_after: info.not_after,
        root_cert: cert_pem(der),
        intermediate_certs: Vec::new(),
        active: true,
        rotated_out_at: None,
        private_key_type: spec.type_name().to_owned(),
        private_key_bits: spec.bits(),
        create_index: index,
        modify_index: index,
    })
}

/// Asks the primary for an intermediate and validates it (steps 3-5 of
/// docs/consul-compatibility.md, 'Secondary intermediates').
async fn obtain_intermediate(
    provider: &dyn CaProvider,
    signer: &dyn IntermediateSigner,
    primary_roots: &RootsView,
    td: &TrustDomain,
    now: OffsetDateTime,
) -> Result<Intermediate, CaError> {
    let root = primary_roots.active_root().ok_or(CaError::NoActiveRoot)?;
    let root_der = certs_from_pem(&root.root_cert)
        .ok()
        .and_then(|v| v.into_iter().next())
        .ok_or(CaError::NoActiveRoot)?;
    let csr_der = provider.generate_intermediate_csr().await?;
    let csr_spki = VerifiedCsr::from_der(&csr_der)?.public_key_spki().to_vec();
    let csr_pem = crate::x509::pem_block("CERTIFICATE REQUEST", &csr_der);
    let pem = signer
        .sign_intermediate(&csr_pem)
        .await
        .map_err(CaError::PrimaryRefused)?;
    let der = certs_from_pem(&pem)
        .ok()
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| IntermediateRejection::Malformed("no certificate in PEM".into()))?;
    let info = CertInfo::parse(&der).map_err(|e| IntermediateRejection::Malformed(e.0))?;
    if !info.is_ca {
        return Err(IntermediateRejection::NotCa.into());
    }
    let want = td.signing_uri();
    if info.uris.len() != 1 || info.uris[0] != want {
        return Err(IntermediateRejection::WrongUri {
            got: info.uris.clone(),
            want,
        }
        .into());
    }
    let root_info =
        CertInfo::parse(&root_der).map_err(|e| IntermediateRejection::Malformed(e.0))?;
    if info.issuer_raw != root_info.subject_raw || !signed_by(&der, &root_info.spki) {
        return Err(IntermediateRejection::NotSignedByRoot.into());
    }
    if info.spki != csr_spki {
        return Err(IntermediateRejection::KeyMismatch.into());
    }
    if now < info.not_before || now > info.not_after {
        return Err(IntermediateRejection::NotValidNow.into());
    }
    provider.set_intermediate(&der, &root_der).await?;
    Ok(Intermediate::parse(der)?)
}

/// The primary's roots with our intermediate appended to the active root (expired
/// intermediates pruned first) and `SigningKeyID` set to it.
fn secondary_view(
    primary: &RootsView,
    int: &Intermediate,
    now: OffsetDateTime,
    index: u64,
) -> RootsView {
    let mut view = primary.clone();
    view.index = index;
    let pem = cert_pem(&int.der);
    for r in view
        .roots
        .iter_mut()
        .filter(|r| r.active && r.id == primary.active_root_id)
    {
        r.intermediate_certs.retain(|p| {
            certs_from_pem(p)
                .ok()
                .and_then(|v| v.into_iter().next())
                .and_then(|d| CertInfo::parse(&d).ok())
                .is_some_and(|i| i.not_after > now)
        });
        r.intermediate_certs.push(pem.clone());
        r.signing_key_id = colon_hex(&int.key_id);
    }
    view
}

/// Whether at least half of [not_before, not_after] has passed at `now`.
pub fn half_life_passed(
    now: OffsetDateTime,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> bool {
    let half = (not_after - not_before) / 2;
    now >= not_before + half
}
