//! Errors of the CA engine. Malformed input, policy refusals, misconfiguration and I/O are
//! separate variants so callers (and metrics) can tell them apart.

use std::borrow::Cow;
use std::fmt;

use mesh_core::{Datacenter, SpiffeId};

use crate::config::ConfigError;
use crate::csr::CsrError;
use crate::provider::ProviderError;

/// A policy decision against something: an ACL rule, an intention. Carries what decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    reason: Cow<'static, str>,
}

impl Refusal {
    /// A refusal with a reason naming what refused (`ACL rule service "web" write`,
    /// `intention db -> web deny`).
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Decides whether the caller may get a certificate for an identity (wired to ACLs:
/// `service:write` for a service, `node:write` for an agent, `mesh:write` for a mesh gateway,
/// `acl:write` for a server). Any `Fn(&SpiffeId) -> Result<(), Refusal>` is one.
pub trait Authorize: Send + Sync {
    /// `Ok` to allow signing for `id`.
    fn authorize(&self, id: &SpiffeId) -> Result<(), Refusal>;
}

impl<F> Authorize for F
where
    F: Fn(&SpiffeId) -> Result<(), Refusal> + Send + Sync,
{
    fn authorize(&self, id: &SpiffeId) -> Result<(), Refusal> {
        self(id)
    }
}

/// Why a leaf CSR was not signed, one variant per rule (see docs/consul-compatibility.md, 'Leaf
/// signing rules').
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The CSR is malformed (Consul's "invalid CSR" kind).
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// A non-default partition or namespace (CE scope check).
    #[error("Non default partition or namespace is supported in Enterprise only: {0}")]
    NonDefaultTenancy(SpiffeId),
    /// A SPIFFE ID of a kind that is never signed as a leaf (the signing ID).
    #[error("SPIFFE ID in CSR must be a service, mesh-gateway, or agent ID")]
    UnsupportedIdentity,
    /// The caller may not sign for this identity.
    #[error("Permission denied: signing {id}: {refusal}")]
    PermissionDenied {
        /// The identity asked for.
        id: SpiffeId,
        /// What refused.
        #[source]
        refusal: Refusal,
    },
    /// The identity names another datacenter.
    #[error("SPIFFE ID in CSR from a different datacenter: {got}, we are {ours}")]
    WrongDatacenter {
        /// The datacenter in the CSR.
        got: Datacenter,
        /// Ours.
        ours: Datacenter,
    },
    /// The identity names another trust domain.
    #[error("SPIFFE ID in CSR from a different trust domain: {got}, we are {ours}")]
    WrongTrustDomain {
        /// The trust domain in the CSR.
        got: String,
        /// Ours.
        ours: String,
    },
    /// No signing slot within the wait limit.
    #[error("Rate limit reached, try again later")]
    RateLimited,
    /// The active root is past its NotAfter.
    #[error("root expired: {0}")]
    RootExpired(String),
    /// The local intermediate is past its NotAfter.
    #[error("intermediate expired: {0}")]
    IntermediateExpired(String),
    /// The CA has no signing certificate yet.
    #[error("CA has not finished initializing")]
    NotInitialized,
    /// The provider returned a certificate for another key than the CSR's.
    #[error("provider returned a certificate that does not match the CSR")]
    ProviderMismatch,
    /// The provider failed.
    #[error("CA provider failed")]
    Provider(#[from] ProviderError),
    /// A remote signer (a datacenter reached over its API) could not be reached or answered
    /// with something unusable.
    #[error("signer unavailable: {0}")]
    Unavailable(String),
}

impl SignError {
    /// Whether the request was malformed (InvalidArgument), as opposed to refused by policy,
    /// throttled, or failed inside the CA.
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            Self::Csr(_) | Self::NonDefaultTenancy(_) | Self::UnsupportedIdentity
        )
    }

    /// Whether this is a policy refusal (PermissionDenied / wrong datacenter / trust domain).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::PermissionDenied { .. }
                | Self::WrongDatacenter { .. }
                | Self::WrongTrustDomain { .. }
        )
    }
}

/// Why a secondary's intermediate from the primary was not accepted (step 5 of
/// docs/consul-compatibility.md, 'Secondary intermediates').
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntermediateRejection {
    /// Not a parseable certificate.
    #[error("not a certificate: {0}")]
    Malformed(String),
    /// BasicConstraints cA is not set.
    #[error("intermediate is not a CA")]
    NotCa,
    /// Not exactly one URI SAN equal to our signing URI.
    #[error("intermediate URI SANs {got:?} are not exactly [{want}]")]
    WrongUri {
        /// URIs found.
        got: Vec<String>,
        /// The signing URI.
        want: String,
    },
    /// The signature does not verify against the primary's active root.
    #[error("intermediate is not signed by the primary's active root")]
    NotSignedByRoot,
    /// Its key is not the key we generated the CSR for.
    #[error("intermediate public key does not match the pending private key")]
    KeyMismatch,
    /// Not valid now.
    #[error("intermediate is not valid at this time")]
    NotValidNow,
}

/// Errors of CA lifecycle operations (bootstrap, load, secondaries, rotation, state files).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The provider failed.
    #[error("CA provider failed")]
    Provider(#[from] ProviderError),
    /// A primary-only operation in a secondary.
    #[error("not the primary datacenter")]
    NotPrimary,
    /// A secondary-only operation in the primary.
    #[error("not a secondary datacenter")]
    NotSecondary,
    /// An intermediate CSR is malformed.
    #[error("invalid intermediate CSR")]
    Csr(#[from] CsrError),
    /// An intermediate CSR names an identity we may not sign.
    #[error("intermediate CSR URI {0} is not this CA's signing ID")]
    IntermediateUri(String),
    /// The primary's roots could not be fetched.
    #[error("failed to get CA roots from primary DC: {0}")]
    RootsFetch(#[source] SignerError),
    /// The primary has no trust domain yet.
    #[error("trust domain from primary datacenter is not initialized")]
    PrimaryNotInitialized,
    /// The primary's roots list has no active root.
    #[error("primary datacenter has no active root")]
    NoActiveRoot,
    /// The primary refused (or failed) to sign our intermediate.
    #[error("Primary datacenter refused to sign our intermediate CA certificate")]
    PrimaryRefused(#[source] SignerError),
    /// The intermediate returned by the primary is not acceptable.
    #[error("intermediate from the primary rejected: {0}")]
    BadIntermediate(#[from] IntermediateRejection),
    /// The old provider cannot cross-sign the new root.
    #[error(
        "The current CA Provider does not support cross-signing. Please use ForceWithoutCrossSigning to rotate without cross-signing"
    )]
    CrossSignUnsupported(#[source] ProviderError),
    /// Loaded state does not fit the options (another datacenter, role or version).
    #[error("CA state does not match: {0}")]
    StateMismatch(String),
    /// State (de)serialization failed.
    #[error("CA state is not valid JSON")]
    StateFormat(#[source] serde_json::Error),
    /// Reading or writing a state file failed.
    #[error("CA state file I/O failed: {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Random,
}

/// An error from a caller-supplied [`crate::IntermediateSigner`].
pub type SignerError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps a message as a [`SignerError`].
pub fn signer_error(msg: impl fmt::Display) -> SignerError {
    msg.to_string().into()
}
