//! The values a secondary and its primary exchange: requests, complete listings and the
//! primary's refusals. Both the transports and the frame codec use them; neither owns them.

use std::fmt;
use std::time::Duration;

use mesh_core::Index;

use crate::auth::SecretToken;
use crate::record::{Record, TxnOp};
use crate::table::TableName;

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

/// A server of another datacenter asks the primary for a certificate of its own server
/// identity (what it then presents for mTLS on the primary's server port). The only request
/// the primary answers on a connection without a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollRequest {
    /// The ACL token the primary checks (the replication token).
    pub token: SecretToken,
    /// A PEM certificate signing request naming the server's SPIFFE ID.
    pub csr_pem: String,
}

/// The primary's COMPLETE listing of a table at `index`: every record the table held at that
/// index and nothing else.
///
/// A transport returns this only once the whole answer arrived; anything less (a dropped
/// connection, a time-out, a stream cut between chunks) is a [`TransportError`](crate::TransportError). The replicator
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
    /// The request needs a connection that presented a client certificate of a mesh server
    /// (mTLS); without one the server port answers only [`EnrollRequest`]s.
    CertificateRequired,
    /// The primary does not answer this kind of request (enrollment on a server without a CA).
    Unsupported,
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
            Self::CertificateRequired => 7,
            Self::Unsupported => 8,
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
            7 => Self::CertificateRequired,
            8 => Self::Unsupported,
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

impl fmt::Display for RemoteErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
