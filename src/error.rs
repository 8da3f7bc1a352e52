//! The errors of the datacenter API.

use std::fmt;

#[cfg(feature = "server")]
use mesh_replication::StoreError;

/// Why a datacenter call failed: the operation that failed (when the call names one) and what
/// went wrong ([`ErrorKind`], the part to match on).
///
/// `Display` reads `<operation>: <kind>`, for example
/// `intention create web -> socat: Permission denied: token with AccessorID '…' lacks
/// permission 'intentions:write' on "socat" (decided by default policy deny)`.
/// [`crate::core::error_chain`] adds the causes below the kind without repeating one.
///
/// ```
/// use mesh::{Error, ErrorKind};
///
/// fn status(e: &Error) -> u16 {
///     match e.kind() {
///         ErrorKind::AclNotFound | ErrorKind::PermissionDenied(_) => 403,
///         ErrorKind::Invalid(_) => 400,
///         ErrorKind::NotFound(_) => 404,
///         _ => 500,
///     }
/// }
/// # let _ = status;
/// ```
#[derive(Debug)]
pub struct Error(Box<Inner>);

#[derive(Debug)]
struct Inner {
    operation: Option<Operation>,
    kind: ErrorKind,
}

impl Error {
    /// The failure, to match on.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The failure, by value.
    pub fn into_kind(self) -> ErrorKind {
        self.0.kind
    }

    /// The operation that failed, when the call names one.
    pub fn operation(&self) -> Option<&Operation> {
        self.0.operation.as_ref()
    }

    /// Malformed input, typed.
    pub fn invalid(e: impl Into<InvalidInput>) -> Self {
        ErrorKind::Invalid(e.into()).into()
    }

    /// Input that breaks one of mesh's rules, described.
    pub fn invalid_msg(msg: impl Into<String>) -> Self {
        ErrorKind::Invalid(InvalidInput::Rule(msg.into())).into()
    }

    /// Names the operation that failed. The outermost name wins: it is the call the caller
    /// made (a delete that reads first fails as the delete, not as the read).
    fn during(mut self, op: Operation) -> Self {
        self.0.operation = Some(op);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.operation {
            Some(op) => write!(f, "{op}: {}", self.0.kind),
            None => self.0.kind.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0.kind)
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error(Box::new(Inner {
            operation: None,
            kind,
        }))
    }
}

/// `?` on a typed cause gives an [`Error`] that names no operation yet.
macro_rules! error_from {
    ($($(#[$m:meta])* $t:ty),* $(,)?) => {$(
        $(#[$m])*
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                ErrorKind::from(e).into()
            }
        }
    )*};
}

error_from!(
    Box<mesh_intentions::acl::PermissionDenied>,
    mesh_intentions::acl::PermissionDenied,
    InvalidInput,
    #[cfg(feature = "server")]
    StoreError,
    #[cfg(feature = "server")]
    mesh_replication::WriteError,
    #[cfg(feature = "server")]
    mesh_replication::WaitError,
    mesh_ca::CaError,
    mesh_ca::SignError,
    mesh_ca::tls::TlsError,
    mesh_sni::GatewayError,
    std::io::Error,
);

/// Runs one operation of the API; its error names `op`.
pub(crate) async fn during<T>(
    op: Operation,
    f: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    f.await.map_err(|e| e.during(op))
}

/// An operation of the datacenter API, as errors name it: a verb (`"intention create"`,
/// `"acl token delete"`) and what it was applied to (`"web -> socat"`, an accessor ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    name: &'static str,
    subject: Option<String>,
}

impl Operation {
    pub(crate) fn new(name: &'static str, subject: impl fmt::Display) -> Self {
        let subject = subject.to_string();
        Operation {
            name,
            subject: (!subject.is_empty()).then_some(subject),
        }
    }

    pub(crate) fn named(name: &'static str) -> Self {
        Operation {
            name,
            subject: None,
        }
    }

    /// The verb: `"intention create"`, `"config entry write"`, `"leaf sign"`, ...
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What the operation was applied to, if it names something.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Some(s) => write!(f, "{} {s}", self.name),
            None => f.write_str(self.name),
        }
    }
}

/// What went wrong. Refusals say what refused; malformed input, policy refusals,
/// configuration and I/O failures are separate variants. `Display` names the failure and its
/// immediate cause, and `source()` gives the typed cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The token does not resolve (unknown secret, expired, or local to another datacenter).
    #[error("ACL not found")]
    AclNotFound,
    /// The token lacks a permission; names the permission, the object and the rule or default
    /// that decided (never the secret).
    #[error(transparent)]
    PermissionDenied(#[from] Box<mesh_intentions::acl::PermissionDenied>),
    /// The input is malformed or breaks a rule.
    #[error("invalid input: {0}")]
    Invalid(#[source] InvalidInput),
    /// A named object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A named object exists already.
    #[error("{0} already exists")]
    Conflict(String),
    /// ACLs were bootstrapped already (by `initial_management` or an earlier bootstrap);
    /// the index is Consul's reset index.
    #[error("ACL bootstrap no longer allowed (reset index: {reset_index})")]
    BootstrapNotAllowed {
        /// The index of the write that made bootstrapping impossible.
        reset_index: u64,
    },
    /// The operation is made in the primary datacenter only.
    #[error("{0} is only possible in the primary datacenter")]
    PrimaryOnly(String),
    /// The primary refused this secondary's replication token (unknown, expired, or without
    /// the rights replication needs).
    #[error("the primary refused the replication token: {0}")]
    ReplicationTokenRefused(String),
    /// The server a secondary reached is not the primary its `primary_datacenter` names: the
    /// primary of another datacenter, or no primary at all.
    #[error(
        "primary_datacenter is {configured:?}, but the server reached is {}",
        match found {
            Some(f) => format!("the primary of {f:?}"),
            None => "not a primary".to_owned(),
        }
    )]
    WrongPrimary {
        /// `primary_datacenter` as configured.
        configured: String,
        /// The primary the server's datacenters list names, if any.
        found: Option<String>,
    },
    /// Connect is disabled in this datacenter.
    #[error("Connect is disabled in this datacenter")]
    ConnectDisabled,
    /// The datacenter's configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A stored record does not decode: the store holds something this version cannot read.
    #[error("corrupt state: {0}")]
    Corrupt(String),
    /// The local store failed.
    #[cfg(feature = "server")]
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    /// A write could not reach the primary or was refused there.
    #[cfg(feature = "server")]
    #[error("write to the primary datacenter failed: {0}")]
    Forward(#[from] mesh_replication::WriteError),
    /// A replicated write did not become visible locally in time.
    #[cfg(feature = "server")]
    #[error("waiting for replication: {0}")]
    Wait(#[from] mesh_replication::WaitError),
    /// The CA failed.
    #[error("certificate authority: {0}")]
    Ca(#[from] mesh_ca::CaError),
    /// A leaf CSR was not signed.
    #[error("leaf signing: {0}")]
    Sign(#[source] Box<mesh_ca::SignError>),
    /// TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] mesh_ca::tls::TlsError),
    /// An agent's HTTP API could not be reached or refused the request.
    #[cfg(feature = "client")]
    #[error("agent API: {0}")]
    Agent(#[source] Box<crate::client::ClientError>),
    /// A mesh gateway's listener could not be served.
    #[error("mesh gateway: {0}")]
    Gateway(#[from] mesh_sni::GatewayError),
    /// Network or file I/O.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl From<mesh_intentions::acl::PermissionDenied> for ErrorKind {
    fn from(e: mesh_intentions::acl::PermissionDenied) -> Self {
        ErrorKind::PermissionDenied(Box::new(e))
    }
}

impl From<mesh_ca::SignError> for ErrorKind {
    fn from(e: mesh_ca::SignError) -> Self {
        ErrorKind::Sign(Box::new(e))
    }
}

impl From<InvalidInput> for ErrorKind {
    fn from(e: InvalidInput) -> Self {
        ErrorKind::Invalid(e)
    }
}

/// Which input was malformed, with the parser's or validator's own typed error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// A service, node or datacenter name.
    #[error(transparent)]
    Name(#[from] mesh_core::NameError),
    /// A service instance ID.
    #[error(transparent)]
    ServiceInstanceId(#[from] mesh_core::ServiceInstanceIdError),
    /// A trust domain.
    #[error(transparent)]
    TrustDomain(#[from] mesh_core::TrustDomainError),
    /// A service registration (definition, upstreams, checks, sidecar stanza).
    #[error(transparent)]
    Registration(#[from] mesh_core::RegistrationError),
    /// A `sidecar_service` stanza.
    #[error(transparent)]
    Sidecar(#[from] mesh_core::SidecarError),
    /// A sidecar's port could not be assigned.
    #[error(transparent)]
    SidecarPort(#[from] mesh_core::SidecarPortError),
    /// A config entry.
    #[error(transparent)]
    ConfigEntry(#[from] mesh_core::ConfigEntryError),
    /// An intention (every rule it breaks).
    #[error(transparent)]
    Intention(#[from] mesh_intentions::intention::IntentionErrors),
    /// ACL rules text.
    #[error(transparent)]
    AclRules(#[from] mesh_intentions::acl::RulesError),
    /// An ACL policy, role or token field (name, ID, identity).
    #[error(transparent)]
    AclObject(#[from] mesh_intentions::acl::AclObjectError),
    /// An ACL check that cannot be made as asked.
    #[error(transparent)]
    AclCheck(#[from] mesh_intentions::acl::UnsupportedCheck),
    /// A certificate request for a SPIFFE ID.
    #[error(transparent)]
    Csr(#[from] mesh_ca::CsrBuildError),
    /// A TLS server name (an SNI built from names that are not DNS labels).
    #[error(transparent)]
    ServerName(#[from] rustls::pki_types::InvalidDnsNameError),
    /// A gateway's configuration.
    #[error(transparent)]
    Gateway(#[from] mesh_sni::ConfigError),
    /// A route table.
    #[error(transparent)]
    Route(#[from] mesh_sni::RouteConfigError),
    /// JSON that does not decode into what was asked for.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A rule of mesh's own, described.
    #[error("{0}")]
    Rule(String),
}
