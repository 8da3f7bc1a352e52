//! How a secondary talks to the primary: the [`Transport`] trait, its requests and answers.
//!
//! Two implementations: [`InProcessTransport`] (a direct call into a [`ReplicationServer`] in the
//! same process, with a [`Link`] to simulate outages) and [`FramedTransport`] (length-prefixed
//! frames over any byte stream a [`Connector`] opens: plain TCP, or mTLS through [`tls`]).
//!
//! [`ReplicationServer`]: crate::ReplicationServer

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use mesh_core::Index;

use crate::auth::SecretToken;
use crate::frame::{DecodeError, FrameError};
use crate::record::{Record, TxnOp};
use crate::table::TableName;

mod framed;
mod in_process;
pub mod tls;

pub use framed::{Connector, FramedConfig, FramedTransport, TcpConnector};
pub use in_process::{Fault, InProcessTransport, Link};

/// A blocking list query: answer once the table index is above `min_index`, or after `wait`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// The ACL token the primary checks.
    pub token: SecretToken,
    /// The global table to list.
    pub table: TableName,
    /// Answer as soon as the table index is above this (0 = at once).
    pub min_index: Index,
    /// The longest time the primary may hold the query.
    pub wait: Duration,
}

/// A write forwarded to the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyRequest {
    /// The ACL token the primary checks.
    pub token: SecretToken,
    /// The operations, applied as one transaction.
    pub ops: Vec<TxnOp>,
}

/// The primary's COMPLETE listing of a table at `index`: every record the table held at that
/// index and nothing else.
///
/// A transport returns this only once the whole answer arrived; anything less (a dropped
/// connection, a time-out, a stream cut between chunks) is a [`TransportError`]. The replicator
/// deletes local records only on the strength of this type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompleteListing {
    /// The table index on the primary the listing reflects.
    pub index: Index,
    /// The records, sorted by id.
    pub records: Vec<Record>,
}

/// Why the primary refused or failed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// The token lacks the permission ([`crate::Denied`]).
    Denied,
    /// The table is not registered on the primary.
    UnknownTable,
    /// The table is local to the primary's datacenter: it is neither listed nor written remotely.
    NotGlobal,
    /// A check-and-set did not match.
    CasConflict,
    /// The request is malformed (bad id, empty transaction).
    InvalidRequest,
    /// The primary's store failed.
    Internal,
}

impl RemoteErrorKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Denied => 1,
            Self::UnknownTable => 2,
            Self::NotGlobal => 3,
            Self::CasConflict => 4,
            Self::InvalidRequest => 5,
            Self::Internal => 6,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Self::Denied,
            2 => Self::UnknownTable,
            3 => Self::NotGlobal,
            4 => Self::CasConflict,
            5 => Self::InvalidRequest,
            6 => Self::Internal,
            _ => return None,
        })
    }
}

/// An error answer from the primary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct RemoteError {
    /// The class of the error.
    pub kind: RemoteErrorKind,
    /// The primary's message.
    pub message: String,
}

/// Why a request to the primary did not produce an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The primary could not be reached (connect refused, no route, link cut).
    #[error("primary unreachable")]
    Unreachable(#[source] std::io::Error),
    /// The connection broke during the request.
    #[error("connection to the primary lost")]
    Disconnected(#[source] std::io::Error),
    /// No answer within the time-out.
    #[error("no answer from the primary within {0:?}")]
    TimedOut(Duration),
    /// The answer stopped before its last part: nothing of it may be used.
    #[error("incomplete answer from the primary ({received} records received before it stopped)")]
    Incomplete {
        /// Records received before the stream stopped.
        received: usize,
    },
    /// The peer sent bytes that are not a valid frame or message.
    #[error("malformed answer from the primary")]
    Malformed(#[from] FrameError),
    /// The TLS handshake or configuration failed.
    #[error("TLS with the primary failed")]
    Tls(#[source] std::io::Error),
    /// The primary answered with a message that does not fit the request.
    #[error("unexpected answer from the primary: {0}")]
    Unexpected(&'static str),
    /// The primary refused or failed the request.
    #[error("the primary refused the request")]
    Remote(#[from] RemoteError),
}

impl From<DecodeError> for TransportError {
    fn from(e: DecodeError) -> Self {
        Self::Malformed(FrameError::Decode(e))
    }
}

impl TransportError {
    /// Whether the primary refused the token.
    pub fn is_denied(&self) -> bool {
        matches!(
            self,
            Self::Remote(RemoteError {
                kind: RemoteErrorKind::Denied,
                ..
            })
        )
    }
}

/// A way to reach the primary datacenter's servers.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// A blocking list query; `Ok` only with the complete listing.
    async fn list(&self, req: ListRequest) -> Result<CompleteListing, TransportError>;

    /// Applies a transaction on the primary and returns the primary's index of that write.
    async fn apply(&self, req: ApplyRequest) -> Result<Index, TransportError>;
}

impl fmt::Display for RemoteErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
