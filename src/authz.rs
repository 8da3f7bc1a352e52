//! Every write to a replicated table, decoded into what it will enforce, and the one pure
//! function that decides whether a token may make it.
//!
//! A write reaches the state store from three places: the datacenter's own API, a write that
//! a secondary forwards to the primary, and a write that a secondary's replicator copies from
//! the primary. All three decode each operation with [`decode`] (which validates the value
//! and checks that the record id is the one its content derives), and the first two authorize
//! the decoded operation with [`authorize`]. No operation is authorized by another one of the
//! same transaction, and the permission is checked on the value that will be enforced, never
//! on a name the caller chose separately.

use std::fmt;

use mesh_core::{ConfigEntry, Datacenter as DatacenterName};
use mesh_intentions::acl::{
    Access, Authorizer, Decision, GLOBAL_MANAGEMENT_POLICY_ID, GLOBAL_READ_ONLY_POLICY_ID,
    Permission, Resource,
};
use mesh_intentions::intention::Intention;
use mesh_replication::{TxnOp, Value};
use serde::de::DeserializeOwned;

use crate::acl::{NameIndexRecord, PolicyRecord, RoleRecord, TokenRecord};
use crate::catalog::{FederationGateway, ServiceEndpoint};
use crate::tables;

/// A write decoded from one table operation. `None` values are deletions.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    /// A policy, by id.
    Policy {
        id: String,
        record: Option<PolicyRecord>,
    },
    /// A role, by id.
    Role { id: String },
    /// A global token, by accessor id.
    Token { accessor: String },
    /// The unique-name index of policies or roles.
    NameIndex { table: &'static str, name: String },
    /// An intention, by destination and source.
    Intention {
        destination: String,
        source: String,
        value: Option<Box<Intention>>,
    },
    /// A config entry, by kind and name.
    ConfigEntry { kind: String, name: String },
    /// A secondary's request for an intermediate certificate.
    CaIntermediateRequest { datacenter: String },
    /// A mesh gateway of some datacenter.
    Federation { service: String },
    /// A sidecar endpoint of some datacenter.
    Endpoint { service: String },
    /// A secondary datacenter announcing itself.
    Datacenter { name: String },
}

/// Why a write is refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The operation is invalid whatever the token.
    Invalid(String),
    /// The token lacks a permission.
    Denied(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(m) | Self::Denied(m) => f.write_str(m),
        }
    }
}

fn invalid(table: &str, id: &str, why: impl fmt::Display) -> Refusal {
    Refusal::Invalid(format!("record {table}/{id}: {why}"))
}

fn json_value<T: DeserializeOwned>(table: &str, id: &str, value: &Value) -> Result<T, Refusal> {
    let v = value
        .as_json()
        .ok_or_else(|| invalid(table, id, "value is not JSON"))?;
    T::deserialize(v).map_err(|e| {
        if table == tables::ACL_TOKENS || table == tables::ACL_LOCAL_TOKENS {
            // A decode error may quote a value, and a token record holds a secret: say only
            // that it does not decode, never what it holds.
            invalid(table, id, "does not decode as a token record")
        } else {
            invalid(table, id, format_args!("does not decode: {e}"))
        }
    })
}

/// The id an intention is stored under: `<destination>/<source>`.
pub(crate) fn intention_id(source: &str, destination: &str) -> String {
    format!("{destination}/{source}")
}

/// The id of a config entry: `<kind>/<name>`.
pub(crate) fn config_entry_id(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

/// The id of a record about a local instance published globally:
/// `<datacenter>/<service>/<instance>`.
pub(crate) fn instance_record_id(datacenter: &str, service: &str, instance: &str) -> String {
    format!("{datacenter}/{service}/{instance}")
}

fn split2<'a>(table: &str, id: &'a str) -> Result<(&'a str, &'a str), Refusal> {
    id.split_once('/')
        .ok_or_else(|| invalid(table, id, "id is not of the form <a>/<b>"))
}

fn split_instance<'a>(table: &str, id: &'a str) -> Result<(&'a str, &'a str, &'a str), Refusal> {
    let mut parts = id.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(dc), Some(svc), Some(inst)) if !dc.is_empty() && !svc.is_empty() => {
            Ok((dc, svc, inst))
        }
        _ => Err(invalid(
            table,
            id,
            "id is not of the form <datacenter>/<service>/<instance>",
        )),
    }
}

fn expect_id(table: &str, id: &str, derived: &str) -> Result<(), Refusal> {
    if id == derived {
        Ok(())
    } else {
        Err(invalid(
            table,
            id,
            format_args!("id does not match its content, which derives {derived:?}"),
        ))
    }
}

/// Decodes and validates one stored or requested record. `value` is `None` for a deletion.
/// Every value is checked as it will be read back: it must decode, validate, and live under
/// the id its content derives.
pub(crate) fn decode_record(
    table: &str,
    id: &str,
    value: Option<&Value>,
) -> Result<Write, Refusal> {
    match table {
        tables::ACL_POLICIES => {
            let record = match value {
                None => None,
                Some(v) => {
                    let rec: PolicyRecord = json_value(table, id, v)?;
                    expect_id(table, id, &rec.id)?;
                    rec.to_policy().map_err(|e| invalid(table, id, e))?;
                    Some(rec)
                }
            };
            Ok(Write::Policy {
                id: id.to_owned(),
                record,
            })
        }
        tables::ACL_ROLES => {
            if let Some(v) = value {
                let rec: RoleRecord = json_value(table, id, v)?;
                expect_id(table, id, &rec.id)?;
                rec.to_role().map_err(|e| invalid(table, id, e))?;
            }
            Ok(Write::Role { id: id.to_owned() })
        }
        tables::ACL_TOKENS | tables::ACL_LOCAL_TOKENS => {
            if let Some(v) = value {
                {
                    let rec: TokenRecord = json_value(table, id, v)?;
                    expect_id(table, id, &rec.accessor_id)?;
                    if rec.secret_id.is_empty() {
                        return Err(invalid(table, id, "a token needs a secret"));
                    }
                    if rec.local != (table == tables::ACL_LOCAL_TOKENS) {
                        return Err(invalid(
                            table,
                            id,
                            "a local token lives in the local table, a global one in the global table",
                        ));
                    }
                    rec.to_token().map_err(|e| invalid(table, id, e))?;
                }
            }
            Ok(Write::Token {
                accessor: id.to_owned(),
            })
        }
        tables::ACL_POLICY_NAMES | tables::ACL_ROLE_NAMES => {
            if let Some(v) = value {
                let rec: NameIndexRecord = json_value(table, id, v)?;
                if rec.id.is_empty() {
                    return Err(invalid(table, id, "a name index entry names an id"));
                }
            }
            let table = if table == tables::ACL_POLICY_NAMES {
                tables::ACL_POLICY_NAMES
            } else {
                tables::ACL_ROLE_NAMES
            };
            Ok(Write::NameIndex {
                table,
                name: id.to_owned(),
            })
        }
        tables::INTENTIONS => {
            let (destination, source) = split2(table, id)?;
            let value = match value {
                None => None,
                Some(v) => {
                    let mut ixn: Intention = json_value(table, id, v)?;
                    ixn.normalize();
                    ixn.validate().map_err(|e| invalid(table, id, e))?;
                    expect_id(
                        table,
                        id,
                        &intention_id(&ixn.source_name, &ixn.destination_name),
                    )?;
                    Some(Box::new(ixn))
                }
            };
            Ok(Write::Intention {
                destination: destination.to_owned(),
                source: source.to_owned(),
                value,
            })
        }
        tables::CONFIG_ENTRIES => {
            let (kind, name) = split2(table, id)?;
            if let Some(v) = value {
                let entry: ConfigEntry = json_value(table, id, v)?;
                entry.validate().map_err(|e| invalid(table, id, e))?;
                expect_id(
                    table,
                    id,
                    &config_entry_id(entry.kind().as_str(), entry.name()),
                )?;
            }
            Ok(Write::ConfigEntry {
                kind: kind.to_owned(),
                name: name.to_owned(),
            })
        }
        tables::CA_ROOTS => Err(invalid(
            table,
            id,
            "the roots list is written by the primary's CA only",
        )),
        tables::CA_INTERMEDIATES => {
            id.parse::<DatacenterName>()
                .map_err(|e| invalid(table, id, e))?;
            if let Some(v) = value {
                let req: crate::datacenter::IntermediateRecord = json_value(table, id, v)?;
                if req.cert.is_some() || req.error.is_some() {
                    return Err(invalid(
                        table,
                        id,
                        "only the primary's CA answers an intermediate request",
                    ));
                }
                if req.csr.is_empty() {
                    return Err(invalid(table, id, "an intermediate request carries a CSR"));
                }
            }
            Ok(Write::CaIntermediateRequest {
                datacenter: id.to_owned(),
            })
        }
        tables::FEDERATION => {
            let (_, service, _) = split_instance(table, id)?;
            if let Some(v) = value {
                let gw: FederationGateway = json_value(table, id, v)?;
                expect_id(
                    table,
                    id,
                    &instance_record_id(gw.datacenter.as_str(), gw.service.as_str(), &gw.id),
                )?;
            }
            Ok(Write::Federation {
                service: service.to_owned(),
            })
        }
        tables::ENDPOINTS => {
            let (_, service, _) = split_instance(table, id)?;
            if let Some(v) = value {
                {
                    let ep: ServiceEndpoint = json_value(table, id, v)?;
                    if ep.service.as_str() != service {
                        return Err(invalid(
                            table,
                            id,
                            format_args!("id names service {service:?}, the record {}", ep.service),
                        ));
                    }
                    if !id.starts_with(&format!("{}/", ep.datacenter)) {
                        return Err(invalid(
                            table,
                            id,
                            format_args!(
                                "id does not start with the record's datacenter {}",
                                ep.datacenter
                            ),
                        ));
                    }
                }
            }
            Ok(Write::Endpoint {
                service: service.to_owned(),
            })
        }
        tables::DATACENTERS => {
            if let Some(v) = value {
                let rec: crate::catalog::DatacenterRecord = json_value(table, id, v)?;
                expect_id(table, id, rec.name.as_str())?;
                if rec.primary {
                    return Err(invalid(table, id, "only the primary announces the primary"));
                }
            }
            Ok(Write::Datacenter {
                name: id.to_owned(),
            })
        }
        other => Err(Refusal::Invalid(format!(
            "table {other} takes no writes from this API"
        ))),
    }
}

/// Decodes one operation of a transaction.
pub(crate) fn decode(op: &TxnOp) -> Result<Write, Refusal> {
    match op {
        TxnOp::Upsert {
            table, id, value, ..
        } => decode_record(table.as_str(), id, Some(value)),
        TxnOp::Delete { table, id, .. } => decode_record(table.as_str(), id, None),
    }
}

fn need(
    authz: &Authorizer,
    decision: Decision<'_>,
    resource: Resource,
    access: Access,
    on: Option<&str>,
    what: &str,
) -> Result<(), Refusal> {
    authz
        .require(decision, Permission { resource, access }, on)
        .map(|_| ())
        .map_err(|e| Refusal::Denied(format!("{what}: {e}")))
}

/// May the holder of `authz` make this write? Pure: the answer depends on the token's rules
/// and the decoded operation alone.
pub(crate) fn authorize(authz: &Authorizer, write: &Write) -> Result<(), Refusal> {
    match write {
        Write::Policy { id, record } => {
            if id == GLOBAL_MANAGEMENT_POLICY_ID || id == GLOBAL_READ_ONLY_POLICY_ID {
                return Err(Refusal::Invalid(format!(
                    "policy {id} is built in and cannot be changed or deleted"
                )));
            }
            let what = match record {
                Some(r) => format!("write policy {:?}", r.name),
                None => format!("delete policy {id}"),
            };
            need(
                authz,
                authz.acl_write(),
                Resource::Acl,
                Access::Write,
                None,
                &what,
            )
        }
        Write::Role { id, .. } => need(
            authz,
            authz.acl_write(),
            Resource::Acl,
            Access::Write,
            None,
            &format!("write role {id}"),
        ),
        Write::Token { accessor, .. } => need(
            authz,
            authz.acl_write(),
            Resource::Acl,
            Access::Write,
            None,
            &format!("write token {accessor}"),
        ),
        Write::NameIndex { table, name } => need(
            authz,
            authz.acl_write(),
            Resource::Acl,
            Access::Write,
            None,
            &format!("write {table} {name:?}"),
        ),
        Write::Intention {
            destination,
            source,
            ..
        } => need(
            authz,
            authz.intention_write(destination),
            Resource::Intention,
            Access::Write,
            Some(destination),
            &format!("intention {source} -> {destination}"),
        ),
        Write::ConfigEntry { kind, name, .. } => {
            let what = format!("config entry {kind}/{name}");
            if kind == "proxy-defaults" {
                need(
                    authz,
                    authz.mesh_write(),
                    Resource::Mesh,
                    Access::Write,
                    None,
                    &what,
                )
            } else {
                need(
                    authz,
                    authz.service_write(name),
                    Resource::Service,
                    Access::Write,
                    Some(name),
                    &what,
                )
            }
        }
        Write::CaIntermediateRequest { datacenter } => need(
            authz,
            authz.operator_write(),
            Resource::Operator,
            Access::Write,
            None,
            &format!("intermediate request of {datacenter}"),
        ),
        Write::Federation { service, .. } => need(
            authz,
            authz.service_write(service),
            Resource::Service,
            Access::Write,
            Some(service),
            &format!("mesh gateway {service}"),
        ),
        Write::Datacenter { name } => need(
            authz,
            authz.operator_write(),
            Resource::Operator,
            Access::Write,
            None,
            &format!("announce datacenter {name}"),
        ),
        Write::Endpoint { service, .. } => need(
            authz,
            authz.service_write(service),
            Resource::Service,
            Access::Write,
            Some(service),
            &format!("endpoint of {service}"),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn rec(v: serde_json::Value) -> Value {
        Value::json(v)
    }

    #[test]
    fn an_intention_lives_under_the_id_its_content_derives() {
        let good = rec(
            serde_json::json!({"SourceName": "web", "DestinationName": "socat",
            "Action": "allow"}),
        );
        assert!(matches!(
            decode_record(tables::INTENTIONS, "socat/web", Some(&good)),
            Ok(Write::Intention { .. })
        ));
        for id in ["socat/evil", "web/socat", "socat", "x/web"] {
            assert!(
                matches!(
                    decode_record(tables::INTENTIONS, id, Some(&good)),
                    Err(Refusal::Invalid(_))
                ),
                "{id}"
            );
        }
    }

    #[test]
    fn a_token_record_that_does_not_decode_never_quotes_its_content() {
        let secret = "5ec2e7-never-in-a-message";
        let bad = rec(serde_json::json!({"AccessorID": "a", "SecretID": "s",
            "Policies": secret}));
        let err = decode_record(tables::ACL_TOKENS, "a", Some(&bad)).unwrap_err();
        assert!(!err.to_string().contains(secret), "{err}");
        let bad = rec(serde_json::json!({"AccessorID": secret, "SecretID": 7}));
        let err = decode_record(tables::ACL_LOCAL_TOKENS, "a", Some(&bad)).unwrap_err();
        assert!(!err.to_string().contains(secret), "{err}");
    }

    #[test]
    fn roots_and_unknown_tables_take_no_writes() {
        let v = rec(serde_json::json!({}));
        for t in [tables::CA_ROOTS, tables::CA_STATE, tables::CATALOG, "nope"] {
            assert!(
                matches!(decode_record(t, "x", Some(&v)), Err(Refusal::Invalid(_))),
                "{t}"
            );
        }
    }

    #[test]
    fn deletions_are_authorized_on_the_id() {
        let authz = Authorizer::acls_disabled();
        let w = decode_record(tables::INTENTIONS, "socat/web", None).unwrap();
        assert!(authorize(&authz, &w).is_ok());
        assert!(decode_record(tables::INTENTIONS, "no-slash", None).is_err());
        let w = decode_record(tables::ACL_POLICIES, GLOBAL_MANAGEMENT_POLICY_ID, None).unwrap();
        assert!(matches!(authorize(&authz, &w), Err(Refusal::Invalid(_))));
    }
}
