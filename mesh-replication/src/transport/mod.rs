//! How a secondary talks to the primary: the [`Transport`] trait, its requests and answers.
//!
//! Two implementations: [`InProcessTransport`] (a direct call into a [`ReplicationServer`] in the
//! same process, with a [`Link`] to simulate outages) and [`FramedTransport`] (length-prefixed
//! frames over any byte stream a [`Connector`] opens: plain TCP, or mTLS through [`tls`]).
//!
//! [`ReplicationServer`]: crate::ReplicationServer

use std::time::Duration;

use async_trait::async_trait;
use mesh_core::Index;

use crate::frame::{DecodeError, FrameError};
pub use crate::message::{
    ApplyRequest, CompleteListing, EnrollRequest, ListRequest, RemoteError, RemoteErrorKind,
};

mod framed;
mod in_process;
pub mod tls;

pub use framed::{Connector, FramedConfig, FramedTransport, TcpConnector};
pub use in_process::{Fault, InProcessTransport, Link};

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

    /// Asks the primary to sign this server's certificate (see [`EnrollRequest`]); the PEM
    /// chain, leaf first. Transports that cannot carry it refuse.
    async fn enroll(&self, req: EnrollRequest) -> Result<String, TransportError> {
        let _ = req;
        Err(TransportError::Unexpected(
            "this transport does not carry enrollment",
        ))
    }
}
