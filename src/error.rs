//! The errors of the datacenter API.

#[cfg(feature = "server")]
use mesh_replication::StoreError;

/// Why a datacenter call failed. Refusals say what refused; malformed input, policy refusals,
/// configuration and I/O failures are separate variants. `Display` names the failure and its
/// immediate cause; [`crate::core::error_chain`] prints the whole chain without repeating a
/// cause, and `source()` still gives the typed cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token does not resolve (unknown secret, expired, or local to another datacenter).
    #[error("ACL not found")]
    AclNotFound,
    /// The token lacks a permission; names the permission, the object and the rule or default
    /// that decided (never the secret).
    #[error(transparent)]
    PermissionDenied(#[from] Box<mesh_intentions::acl::PermissionDenied>),
    /// The input is malformed or breaks a rule.
    #[error("invalid input: {0}")]
    Invalid(#[source] Box<dyn std::error::Error + Send + Sync>),
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
    /// Network or file I/O.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Wraps any error as malformed input.
    pub fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Invalid(Box::new(e))
    }

    /// Malformed input described by a message.
    pub fn invalid_msg(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into().into())
    }
}

impl From<mesh_intentions::acl::PermissionDenied> for Error {
    fn from(e: mesh_intentions::acl::PermissionDenied) -> Self {
        Error::PermissionDenied(Box::new(e))
    }
}

impl From<mesh_ca::SignError> for Error {
    fn from(e: mesh_ca::SignError) -> Self {
        Error::Sign(Box::new(e))
    }
}
