//! A transport that calls the primary's [`ReplicationServer`] in the same process.

use std::sync::Arc;

use async_trait::async_trait;
use mesh_core::Index;
use tokio::sync::watch;

use super::{ApplyRequest, CompleteListing, EnrollRequest, ListRequest, Transport, TransportError};
use crate::server::ReplicationServer;

/// A failure the [`Link`] of an [`InProcessTransport`] simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The primary cannot be reached at all.
    Unreachable,
    /// The connection drops while the request is in flight.
    Disconnect,
    /// The answer does not come in time.
    TimeOut,
    /// The answer stops after part of a listing.
    Partial,
}

/// The simulated network between a secondary and the primary; clones share the state.
#[derive(Debug, Clone)]
pub struct Link {
    fault: Arc<watch::Sender<Option<Fault>>>,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            fault: Arc::new(watch::Sender::new(None)),
        }
    }
}

impl Link {
    /// Makes every request (including those in flight) fail with `fault`, or heals the link.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.fault.send_replace(fault);
    }

    /// Cuts the link: the primary is unreachable until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.set_fault(Some(Fault::Unreachable));
    }

    /// Heals the link.
    pub fn restore(&self) {
        self.set_fault(None);
    }

    fn error(fault: Fault, received: usize) -> TransportError {
        match fault {
            Fault::Unreachable => {
                TransportError::Unreachable(std::io::ErrorKind::ConnectionRefused.into())
            }
            Fault::Disconnect => {
                TransportError::Disconnected(std::io::ErrorKind::ConnectionReset.into())
            }
            Fault::TimeOut => TransportError::TimedOut(std::time::Duration::ZERO),
            Fault::Partial => TransportError::Incomplete { received },
        }
    }
}

/// Calls a [`ReplicationServer`] directly; its [`Link`] can simulate outages.
#[derive(Debug, Clone)]
pub struct InProcessTransport {
    server: Arc<ReplicationServer>,
    link: Link,
}

impl InProcessTransport {
    /// A transport to `server` over a healthy link.
    pub fn new(server: Arc<ReplicationServer>) -> Self {
        Self {
            server,
            link: Link::default(),
        }
    }

    /// The link, to cut and heal it.
    pub fn link(&self) -> &Link {
        &self.link
    }

    async fn run<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, TransportError>>,
        size: impl Fn(&T) -> usize,
    ) -> Result<T, TransportError> {
        let mut rx = self.link.fault.subscribe();
        if let Some(f) = *rx.borrow_and_update() {
            return Err(Link::error(f, 0));
        }
        let cut = async {
            let changed = rx.wait_for(Option::is_some).await;
            changed.ok().and_then(|f| *f).unwrap_or(Fault::Disconnect)
        };
        let res = tokio::select! {
            res = call => res,
            fault = cut => return Err(Link::error(fault, 0)),
        };
        // A fault that appeared while the answer was produced loses the answer.
        let fault = *self.link.fault.borrow();
        match (res, fault) {
            (Ok(v), Some(f)) => Err(Link::error(f, size(&v) / 2)),
            (res, _) => res,
        }
    }
}

#[async_trait]
impl Transport for InProcessTransport {
    async fn list(&self, req: ListRequest) -> Result<CompleteListing, TransportError> {
        let server = self.server.clone();
        self.run(
            async move { server.list(req).await.map_err(TransportError::Remote) },
            |l| l.records.len(),
        )
        .await
    }

    async fn apply(&self, req: ApplyRequest) -> Result<Index, TransportError> {
        let server = self.server.clone();
        self.run(
            async move { server.apply(req).await.map_err(TransportError::Remote) },
            |_| 0,
        )
        .await
    }

    async fn enroll(&self, req: EnrollRequest) -> Result<String, TransportError> {
        let server = self.server.clone();
        self.run(
            async move { server.enroll(req).await.map_err(TransportError::Remote) },
            |_| 0,
        )
        .await
    }
}
