//! The primary's check of replication and forwarded-write requests, from the ACL snapshot.

use std::sync::Arc;

use arc_swap::ArcSwap;
use mesh_core::Datacenter;
use mesh_intentions::acl::Decision;
use mesh_replication::{Authorizer, Denied, Op, SecretToken};

use crate::acl::AclSnapshot;
use crate::authz::Refusal;
use crate::config::AclConfig;
use crate::tables;

/// Replicating a table needs what Consul's replication token holds for it: `acl:write` for
/// ACL tables (tokens carry secrets), `operator:write` for CA tables, `service:read` on every
/// service (`service_prefix ""`) for intentions, config entries and endpoints, and
/// `operator:read` for the federation table. Every operation of a write is decoded and
/// checked on its own by [`crate::authz::check_op`].
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
    fn authorize(&self, token: &SecretToken, op: Op<'_>) -> Result<(), Denied> {
        // A write is validated whatever the token, and with ACLs off too.
        let write = match op {
            Op::Write(txn) => Some(crate::authz::decode(txn).map_err(refusal)?),
            _ => None,
        };
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
        if let Some(write) = &write {
            // Each operation of a write on its own: the value that will be enforced.
            return crate::authz::authorize(&authz, write).map_err(refusal);
        }
        let table = match op {
            Op::Enroll => {
                let decision = authz.operator_write();
                return if decision.is_allowed() {
                    Ok(())
                } else {
                    Err(Denied::new(format!(
                        "token lacks permission 'operator:write' to {op} ({decision})"
                    )))
                };
            }
            Op::Replicate { table } => table.as_str(),
            _ => return Err(Denied::new(format!("operation {op} is not served"))),
        };
        let (decision, needed): (Decision<'_>, &str) = match table {
            tables::ACL_POLICIES
            | tables::ACL_ROLES
            | tables::ACL_TOKENS
            | tables::ACL_POLICY_NAMES
            | tables::ACL_ROLE_NAMES => (authz.acl_write(), "acl:write"),
            tables::CA_ROOTS | tables::CA_INTERMEDIATES => {
                (authz.operator_write(), "operator:write")
            }
            tables::INTENTIONS | tables::CONFIG_ENTRIES | tables::ENDPOINTS => {
                (authz.service_read_all(), "service:read")
            }
            tables::FEDERATION | tables::DATACENTERS => (authz.operator_read(), "operator:read"),
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

fn refusal(r: Refusal) -> Denied {
    match r {
        Refusal::Invalid(m) => Denied::invalid(m),
        Refusal::Denied(m) => Denied::new(m),
    }
}
