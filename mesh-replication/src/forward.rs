//! Write forwarding: writes of global tables made in a secondary go to the primary.

use std::sync::Arc;

use mesh_core::Index;

use crate::auth::{Authorizer, Denied, Op, SecretToken};
use crate::record::TxnOp;
use crate::store::{Store, StoreError};
use crate::table::TableRegistry;
use crate::transport::{ApplyRequest, Transport, TransportError};

/// Where a write went and the index it got there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReceipt {
    /// The index of the write: the primary's when `forwarded`, the local one otherwise.
    pub index: Index,
    /// Whether the write was applied by the primary (wait with
    /// [`Replicas::wait_for_index`](crate::Replicas::wait_for_index) to read it locally).
    pub forwarded: bool,
}

/// Why a write was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// One transaction mixes global tables with local ones; in a secondary they live in two
    /// datacenters and cannot be written atomically.
    #[error("a transaction cannot mix global and local tables in a secondary datacenter")]
    MixedScopes,
    /// The token may not write a table.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The local store refused or failed the write.
    #[error("local write failed")]
    Local(#[source] StoreError),
    /// The primary refused the write or could not be reached.
    #[error("forwarding to the primary failed")]
    Forward(#[source] TransportError),
}

/// Routes writes: local tables to the local store, global tables to the primary's store
/// (directly in the primary, through the transport in a secondary).
pub struct Forwarder {
    registry: TableRegistry,
    local: Arc<dyn Store>,
    authorizer: Arc<dyn Authorizer>,
    primary: Option<Arc<dyn Transport>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("registry", &self.registry)
            .field("secondary", &self.primary.is_some())
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// The forwarder of the primary datacenter: every write is local.
    pub fn primary(
        registry: TableRegistry,
        local: Arc<dyn Store>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Self {
        Self {
            registry,
            local,
            authorizer,
            primary: None,
        }
    }

    /// The forwarder of a secondary: global-table writes go through `primary`.
    pub fn secondary(
        registry: TableRegistry,
        local: Arc<dyn Store>,
        authorizer: Arc<dyn Authorizer>,
        primary: Arc<dyn Transport>,
    ) -> Self {
        Self {
            registry,
            local,
            authorizer,
            primary: Some(primary),
        }
    }

    /// Applies `ops` as one transaction where it belongs. Local writes are checked with the
    /// local authorizer; forwarded ones by the primary's.
    pub async fn write(
        &self,
        token: &SecretToken,
        ops: Vec<TxnOp>,
    ) -> Result<WriteReceipt, WriteError> {
        let globals = ops
            .iter()
            .filter(|o| self.registry.is_global(o.table()))
            .count();
        if let Some(primary) = &self.primary {
            if globals == ops.len() && globals > 0 {
                let index = primary
                    .apply(ApplyRequest {
                        token: token.clone(),
                        ops,
                    })
                    .await
                    .map_err(WriteError::Forward)?;
                return Ok(WriteReceipt {
                    index,
                    forwarded: true,
                });
            }
            if globals > 0 {
                return Err(WriteError::MixedScopes);
            }
        }
        for op in &ops {
            self.authorizer.authorize(token, Op::Write(op))?;
        }
        let index = self.local.txn(ops).await.map_err(WriteError::Local)?;
        Ok(WriteReceipt {
            index,
            forwarded: false,
        })
    }
}
