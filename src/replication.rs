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
/// `service:read` on every service (`service_prefix ""`) for intentions, config entries and
/// endpoints, and `operator:read` for the federation table. A forwarded write is checked per
/// record, on the object its id names: `intentions:write` on an intention's destination,
/// `mesh:write` for `proxy-defaults`, `service:write` on a `service-defaults` entry's service
/// and on the service a gateway or endpoint record describes.
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
        let table = op.table().as_str();
        let write_id = match &op {
            Op::Write { id, .. } => Some(id.as_str()),
            _ => None,
        };
        let on = |id: &str| {
            id.split_once('/')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        };
        let (decision, needed): (Decision<'_>, String) = match (table, write_id) {
            (tables::ACL_POLICIES | tables::ACL_ROLES | tables::ACL_TOKENS, _) => {
                (authz.acl_write(), "acl:write".into())
            }
            (tables::CA_ROOTS | tables::CA_INTERMEDIATES, _) => {
                (authz.operator_write(), "operator:write".into())
            }
            // `<destination>/<source>`: writing needs intentions:write on the destination.
            (tables::INTENTIONS, Some(id)) => {
                let dest = on(id).map(|(d, _)| d).unwrap_or_default();
                (
                    authz.intention_write(&dest),
                    format!("intentions:write on {dest:?}"),
                )
            }
            // `<kind>/<name>`: proxy-defaults needs mesh:write, others service:write on the name.
            (tables::CONFIG_ENTRIES, Some(id)) => match on(id) {
                Some((kind, _)) if kind == "proxy-defaults" => {
                    (authz.mesh_write(), "mesh:write".into())
                }
                Some((_, name)) => (
                    authz.service_write(&name),
                    format!("service:write on {name:?}"),
                ),
                None => (authz.mesh_write(), "mesh:write".into()),
            },
            // `<datacenter>/<service>/<instance>`: service:write on the service it describes.
            (tables::FEDERATION | tables::ENDPOINTS, Some(id)) => {
                let service = id.split('/').nth(1).unwrap_or_default();
                (
                    authz.service_write(service),
                    format!("service:write on {service:?}"),
                )
            }
            (tables::INTENTIONS | tables::CONFIG_ENTRIES | tables::ENDPOINTS, None) => {
                (authz.service_read_all(), "service:read".into())
            }
            (tables::FEDERATION, None) => (authz.operator_read(), "operator:read".into()),
            (other, _) => return Err(Denied::new(format!("table {other} is not served"))),
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
