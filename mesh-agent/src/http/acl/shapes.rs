//! The JSON of ACL objects: request bodies as decoded, answers as Consul shapes them, and
//! the stored tokens they come from.

use std::collections::HashMap;

use mesh::acl::{NodeIdentityRecord, PolicyRecord, RoleRecord, ServiceIdentityRecord, TokenRecord};
use mesh::replication_engine::Record;
use mesh::tables;
use serde::Deserialize;
use serde_json::{Map, json};

use crate::http::ApiState;
use crate::http::ctx::ANONYMOUS_ACCESSOR;
use crate::http::decode::nullable;
use crate::http::error::{ApiError, go_quote};
use crate::http::raw::{self, decode as decode_rec};
use crate::http::util::{ZERO_TIME, base64, fnv_hex, rfc3339};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct PolicyIn {
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub(super) id: String,
    #[serde(rename = "Name", deserialize_with = "nullable")]
    pub(super) name: String,
    #[serde(rename = "Description", deserialize_with = "nullable")]
    pub(super) description: String,
    #[serde(rename = "Rules", deserialize_with = "nullable")]
    pub(super) rules: String,
    #[serde(rename = "Datacenters", deserialize_with = "nullable")]
    pub(super) datacenters: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LinkIn {
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub(super) id: String,
    #[serde(rename = "Name", deserialize_with = "nullable")]
    pub(super) name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ServiceIdentityIn {
    #[serde(rename = "ServiceName", deserialize_with = "nullable")]
    pub(super) service_name: String,
    #[serde(rename = "Datacenters", deserialize_with = "nullable")]
    pub(super) datacenters: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct NodeIdentityIn {
    #[serde(rename = "NodeName", deserialize_with = "nullable")]
    pub(super) node_name: String,
    #[serde(rename = "Datacenter", deserialize_with = "nullable")]
    pub(super) datacenter: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TemplatedIn {
    #[serde(rename = "TemplateName", deserialize_with = "nullable")]
    pub(super) template_name: String,
}

/// The links, identities and description shared by tokens and roles.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct TokenIn {
    #[serde(rename = "AccessorID", deserialize_with = "nullable")]
    pub(super) accessor_id: String,
    #[serde(rename = "SecretID", deserialize_with = "nullable")]
    pub(super) secret_id: String,
    #[serde(rename = "Description", deserialize_with = "nullable")]
    pub(super) description: String,
    #[serde(rename = "Policies", deserialize_with = "nullable")]
    pub(super) policies: Vec<LinkIn>,
    #[serde(rename = "Roles", deserialize_with = "nullable")]
    pub(super) roles: Vec<LinkIn>,
    #[serde(rename = "ServiceIdentities", deserialize_with = "nullable")]
    pub(super) service_identities: Vec<ServiceIdentityIn>,
    #[serde(rename = "NodeIdentities", deserialize_with = "nullable")]
    pub(super) node_identities: Vec<NodeIdentityIn>,
    #[serde(rename = "TemplatedPolicies", deserialize_with = "nullable")]
    pub(super) templated_policies: Vec<TemplatedIn>,
    #[serde(rename = "Local")]
    pub(super) local: Option<bool>,
    #[serde(rename = "AuthMethod", deserialize_with = "nullable")]
    pub(super) auth_method: String,
    #[serde(rename = "ExpirationTime")]
    pub(super) expiration_time: Option<String>,
    #[serde(rename = "ExpirationTTL")]
    pub(super) expiration_ttl: Option<serde_json::Value>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct RoleIn {
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub(super) id: String,
    #[serde(rename = "Name", deserialize_with = "nullable")]
    pub(super) name: String,
    #[serde(rename = "Description", deserialize_with = "nullable")]
    pub(super) description: String,
    #[serde(rename = "Policies", deserialize_with = "nullable")]
    pub(super) policies: Vec<LinkIn>,
    #[serde(rename = "ServiceIdentities", deserialize_with = "nullable")]
    pub(super) service_identities: Vec<ServiceIdentityIn>,
    #[serde(rename = "NodeIdentities", deserialize_with = "nullable")]
    pub(super) node_identities: Vec<NodeIdentityIn>,
    #[serde(rename = "TemplatedPolicies", deserialize_with = "nullable")]
    pub(super) templated_policies: Vec<TemplatedIn>,
}

/// Policy and role names by id, for the `{"ID", "Name"}` links of tokens and roles.
pub(super) struct Names {
    pub(super) policies: HashMap<String, String>,
    pub(super) roles: HashMap<String, String>,
}

impl Names {
    pub(super) async fn load(state: &ApiState) -> Result<Self, ApiError> {
        let mut policies = HashMap::new();
        for rec in raw::list(state, tables::ACL_POLICIES).await?.records {
            if let Some(p) = decode_rec::<PolicyRecord>(&rec) {
                policies.insert(p.id, p.name);
            }
        }
        let mut roles = HashMap::new();
        for rec in raw::list(state, tables::ACL_ROLES).await?.records {
            if let Some(r) = decode_rec::<RoleRecord>(&rec) {
                roles.insert(r.id, r.name);
            }
        }
        Ok(Self { policies, roles })
    }

    pub(super) fn policy_links(&self, ids: &[String]) -> Vec<serde_json::Value> {
        ids.iter()
            .filter_map(|id| self.policies.get(id).map(|n| json!({"ID": id, "Name": n})))
            .collect()
    }

    pub(super) fn role_links(&self, ids: &[String]) -> Vec<serde_json::Value> {
        ids.iter()
            .filter_map(|id| self.roles.get(id).map(|n| json!({"ID": id, "Name": n})))
            .collect()
    }

    /// Resolves input links to `(id, name)`, with Consul's errors for missing ones.
    pub(super) fn resolve(
        map: &HashMap<String, String>,
        links: &[LinkIn],
        what: &str,
    ) -> Result<Vec<(String, String)>, ApiError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for l in links {
            let found = if !l.id.is_empty() {
                map.get(&l.id)
                    .map(|n| (l.id.clone(), n.clone()))
                    .ok_or_else(|| {
                        ApiError::server(format!("No such ACL {what} with ID {}", go_quote(&l.id)))
                    })?
            } else if !l.name.is_empty() {
                map.iter()
                    .find(|(_, n)| **n == l.name)
                    .map(|(i, n)| (i.clone(), n.clone()))
                    .ok_or_else(|| {
                        ApiError::server(format!(
                            "No such ACL {what} with name {}",
                            go_quote(&l.name)
                        ))
                    })?
            } else {
                continue;
            };
            if !out.iter().any(|(i, _)| *i == found.0) {
                out.push(found);
            }
        }
        Ok(out)
    }
}

/// A token's `Hash`: over everything but the secret (as Consul's), so that the hash shown
/// to `acl:read` holders says nothing about a secret, however weak.
fn token_hash(t: &TokenRecord) -> String {
    let mut t = t.clone();
    t.secret_id.clear();
    let text = serde_json::to_string(&t).unwrap_or_default();
    let h = u64::from_str_radix(&fnv_hex(text.as_bytes()), 16).unwrap_or(0);
    base64(&h.to_be_bytes())
}

pub(super) fn hash(rec: &Record) -> String {
    base64(rec.hash.as_bytes())
}

pub(super) fn policy_json(rec: &Record, p: &PolicyRecord, stub: bool) -> serde_json::Value {
    let mut m = Map::new();
    m.insert("ID".into(), json!(p.id));
    m.insert("Name".into(), json!(p.name));
    m.insert("Description".into(), json!(p.description));
    if !stub {
        m.insert("Rules".into(), json!(p.rules));
    }
    if stub || !p.datacenters.is_empty() {
        let dcs: Vec<&str> = p.datacenters.iter().map(|d| d.as_str()).collect();
        m.insert(
            "Datacenters".into(),
            if dcs.is_empty() {
                serde_json::Value::Null
            } else {
                json!(dcs)
            },
        );
    }
    m.insert("Hash".into(), json!(hash(rec)));
    m.insert("CreateIndex".into(), json!(rec.create_index.0));
    m.insert("ModifyIndex".into(), json!(rec.modify_index.0));
    serde_json::Value::Object(m)
}

pub(super) fn identities_json(
    m: &mut Map<String, serde_json::Value>,
    sis: &[ServiceIdentityRecord],
    nis: &[NodeIdentityRecord],
) {
    if !sis.is_empty() {
        let v: Vec<serde_json::Value> = sis
            .iter()
            .map(|s| {
                let mut o = Map::new();
                o.insert("ServiceName".into(), json!(s.service_name));
                if !s.datacenters.is_empty() {
                    let dcs: Vec<&str> = s.datacenters.iter().map(|d| d.as_str()).collect();
                    o.insert("Datacenters".into(), json!(dcs));
                }
                serde_json::Value::Object(o)
            })
            .collect();
        m.insert("ServiceIdentities".into(), json!(v));
    }
    if !nis.is_empty() {
        let v: Vec<serde_json::Value> = nis
            .iter()
            .map(|n| json!({"NodeName": n.node_name, "Datacenter": n.datacenter.as_str()}))
            .collect();
        m.insert("NodeIdentities".into(), json!(v));
    }
}

pub(super) fn role_json(rec: &Record, r: &RoleRecord, names: &Names) -> serde_json::Value {
    let mut m = Map::new();
    m.insert("ID".into(), json!(r.id));
    m.insert("Name".into(), json!(r.name));
    m.insert("Description".into(), json!(r.description));
    let links = names.policy_links(&r.policies);
    if !links.is_empty() {
        m.insert("Policies".into(), json!(links));
    }
    identities_json(&mut m, &r.service_identities, &r.node_identities);
    m.insert("Hash".into(), json!(hash(rec)));
    m.insert("CreateIndex".into(), json!(rec.create_index.0));
    m.insert("ModifyIndex".into(), json!(rec.modify_index.0));
    serde_json::Value::Object(m)
}

/// A token as Consul shows it; the secret only to a caller with `acl:write` (or to the
/// token itself on `token/self`), `<hidden>` otherwise.
pub(super) fn token_json(
    rec: Option<&Record>,
    t: &TokenRecord,
    names: &Names,
    show_secret: bool,
) -> serde_json::Value {
    let mut m = Map::new();
    m.insert("AccessorID".into(), json!(t.accessor_id));
    m.insert(
        "SecretID".into(),
        json!(if show_secret {
            t.secret_id.as_str()
        } else {
            "<hidden>"
        }),
    );
    m.insert("Description".into(), json!(t.description));
    let p = names.policy_links(&t.policies);
    if !p.is_empty() {
        m.insert("Policies".into(), json!(p));
    }
    let r = names.role_links(&t.roles);
    if !r.is_empty() {
        m.insert("Roles".into(), json!(r));
    }
    identities_json(&mut m, &t.service_identities, &t.node_identities);
    m.insert("Local".into(), json!(t.local));
    if let Some(exp) = t.expiration_time {
        m.insert("ExpirationTime".into(), json!(rfc3339(exp as i64, 0)));
    }
    // A record written before mesh kept the creation time: Go's zero time, as for a token
    // created before Consul recorded one.
    m.insert(
        "CreateTime".into(),
        match t.create_time {
            Some(at) => json!(rfc3339(at as i64, 0)),
            None => json!(ZERO_TIME),
        },
    );
    match rec {
        Some(rec) => {
            m.insert("Hash".into(), json!(token_hash(t)));
            m.insert("CreateIndex".into(), json!(rec.create_index.0));
            m.insert("ModifyIndex".into(), json!(rec.modify_index.0));
        }
        None => {
            m.insert("Hash".into(), json!(""));
            m.insert("CreateIndex".into(), json!(1));
            m.insert("ModifyIndex".into(), json!(1));
        }
    }
    serde_json::Value::Object(m)
}

/// The anonymous token (mesh keeps no record of it; Consul lists it).
pub(super) fn anonymous() -> TokenRecord {
    TokenRecord {
        accessor_id: ANONYMOUS_ACCESSOR.to_owned(),
        secret_id: "anonymous".to_owned(),
        description: "Anonymous Token".to_owned(),
        policies: Vec::new(),
        roles: Vec::new(),
        service_identities: Vec::new(),
        node_identities: Vec::new(),
        local: false,
        expiration_time: None,
        create_time: None,
    }
}

/// A stored token by accessor: the record and the token, from the global or local table.
pub(super) async fn stored_token(
    state: &ApiState,
    accessor: &str,
) -> Result<Option<(Record, TokenRecord)>, ApiError> {
    for t in [tables::ACL_TOKENS, tables::ACL_LOCAL_TOKENS] {
        if let Some(rec) = raw::record(state, t, accessor).await?
            && let Some(tok) = decode_rec::<TokenRecord>(&rec)
        {
            return Ok(Some((rec, tok)));
        }
    }
    Ok(None)
}

pub(super) async fn all_tokens(state: &ApiState) -> Result<Vec<(Record, TokenRecord)>, ApiError> {
    let mut out = Vec::new();
    for t in [tables::ACL_TOKENS, tables::ACL_LOCAL_TOKENS] {
        for rec in raw::list(state, t).await?.records {
            if let Some(tok) = decode_rec::<TokenRecord>(&rec) {
                out.push((rec, tok));
            }
        }
    }
    Ok(out)
}
