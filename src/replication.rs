//! The primary's check of replication and forwarded-write requests, from the ACL snapshot.

use std::sync::Arc;

use arc_swap::ArcSwap;
use mesh_core::Datacenter;
use mesh_intentions::acl::Decision;
use mesh_replication::{Authorizer, Denied, Op, SecretToken};

use crate::acl::AclSnapshot;
use crate::config::AclConfig;
use crate::tables;

/// Maps each table to the permission Consul's replication token needs for it:
/// `acl:write` for ACL tables (tokens carry secrets), `operator:write` for CA tables,
/// `service:read` on every service (`service_prefix ""`) for intentions and config entries,
/// and `operator:read` for the federation table. Forwarded writes of intentions and config
/// entries are checked per record by the datacenter that forwards them and again here at
/// table level.
pub(crate) struct AclReplicationAuthorizer {
    acl: Arc<ArcSwap<AclSnapshot>>,
    config: AclConfig,
    datacenter: Datacenter,
}

impl AclReplicationAuthorizer {
    pub(crate) fn new(
        acl: Arc<ArcSwap<AclSnapshot>>,
        config: AclConfig,
        datacenter: Datacenter,
    ) -> Self {
        Self {
            acl,
            config,
            datacenter,
        }
    }
}

impl Authorizer for AclReplicationAuthorizer {
    fn authorize(&self, token: &SecretToken, op: Op) -> Result<(), Denied> {
        if !self.config.enabled {
            return Ok(());
        }
        let snap = self.acl.load();
        let Some(tok) = snap.token(token.expose_secret()) else {
            return Err(Denied::new("ACL not found"));
        };
        if tok.is_expired(crate::acl::now()) || tok.is_local() {
            return Err(Denied::new("ACL not found"));
        }
        let authz = snap.authorizer(&tok, self.config.default_policy, &self.datacenter);
        let write = matches!(op, Op::Write { .. });
        let table = op.table().as_str();
        let (decision, needed): (Decision<'_>, &str) = match table {
            tables::ACL_POLICIES | tables::ACL_ROLES | tables::ACL_TOKENS => {
                (authz.acl_write(), "acl:write")
            }
            tables::CA_ROOTS | tables::CA_INTERMEDIATES => {
                (authz.operator_write(), "operator:write")
            }
            tables::INTENTIONS if write => (authz.intention_write("*"), "intentions:write"),
            tables::CONFIG_ENTRIES if write => (authz.mesh_write(), "mesh:write"),
            tables::INTENTIONS | tables::CONFIG_ENTRIES => {
                (authz.service_read_all(), "service:read")
            }
            tables::FEDERATION | tables::ENDPOINTS if write => {
                (authz.service_write_any(), "service:write")
            }
            tables::FEDERATION => (authz.operator_read(), "operator:read"),
            tables::ENDPOINTS => (authz.service_read_all(), "service:read"),
            other => return Err(Denied::new(format!("table {other} is not served"))),
        };
        if decision.is_allowed() {
            Ok(())
        } else {
            Err(Denied::new(format!(
                "token lacks permission '{needed}' to {op} ({decision})"
            )))
        }
    }
}
