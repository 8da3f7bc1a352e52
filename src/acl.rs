//! ACL objects as stored records, and the resolved view a datacenter answers checks from.
//!
//! Policies, roles and global tokens live in global tables (written in the primary,
//! replicated to every secondary); local tokens live in a local table. A watcher rebuilds an
//! [`AclSnapshot`] whenever one of those tables changes, so resolving a token never touches
//! the store and keeps working when the primary is unreachable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesh_core::Datacenter;
use mesh_core::Index;
use mesh_intentions::acl::{
    AccessorId, Authorizer, DefaultPolicy, GLOBAL_MANAGEMENT_POLICY_ID, GLOBAL_READ_ONLY_POLICY_ID,
    NodeIdentity, Policy, PolicyId, Role, RoleId, SecretId, ServiceIdentity, Token,
};
use mesh_replication::Record;
use serde::{Deserialize, Serialize};

use crate::tables;

/// A policy as stored (Consul's `ACLPolicy` JSON, rules kept as the text that was written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyRecord {
    /// Policy ID (UUID).
    #[serde(rename = "ID")]
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// The rules text (HCL or JSON) as written.
    pub rules: String,
    /// Datacenters the policy applies in (empty: all).
    #[serde(default)]
    pub datacenters: Vec<Datacenter>,
}

impl PolicyRecord {
    /// The compiled policy. Fails only if the stored text no longer parses. The built-in
    /// policies keep their built-in rules whatever the record says (as in Consul, their rules
    /// cannot be changed).
    pub fn to_policy(&self) -> Result<Policy, crate::Error> {
        match self.id.as_str() {
            GLOBAL_MANAGEMENT_POLICY_ID => return Ok(Policy::global_management()),
            GLOBAL_READ_ONLY_POLICY_ID => return Ok(Policy::global_read_only()),
            _ => {}
        }
        let id = PolicyId::new(self.id.clone()).map_err(crate::Error::invalid)?;
        Ok(Policy::from_rules_text(id, self.name.clone(), &self.rules)
            .map_err(crate::Error::invalid)?
            .with_description(self.description.clone())
            .with_datacenters(self.datacenters.iter().cloned()))
    }
}

/// An entry of a unique-name index (policy or role names): the id of the object holding the
/// name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NameIndexRecord {
    /// The id of the policy or role.
    #[serde(rename = "ID")]
    pub id: String,
}

/// A service identity as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceIdentityRecord {
    /// The service.
    pub service_name: String,
    /// Datacenters (empty: all).
    #[serde(default)]
    pub datacenters: Vec<Datacenter>,
}

/// A node identity as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeIdentityRecord {
    /// The node.
    pub node_name: String,
    /// Its datacenter.
    pub datacenter: Datacenter,
}

/// A role as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoleRecord {
    /// Role ID (UUID).
    #[serde(rename = "ID")]
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Linked policy IDs.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Service identities.
    #[serde(default)]
    pub service_identities: Vec<ServiceIdentityRecord>,
    /// Node identities.
    #[serde(default)]
    pub node_identities: Vec<NodeIdentityRecord>,
}

impl RoleRecord {
    /// The role object.
    pub fn to_role(&self) -> Result<Role, crate::Error> {
        let mut role = Role::new(
            RoleId::new(self.id.clone()).map_err(crate::Error::invalid)?,
            self.name.clone(),
        )
        .map_err(crate::Error::invalid)?
        .with_description(self.description.clone());
        for p in &self.policies {
            role = role.with_policy(PolicyId::new(p.clone()).map_err(crate::Error::invalid)?);
        }
        for si in service_identities(&self.service_identities)? {
            role = role.with_service_identity(si);
        }
        for ni in node_identities(&self.node_identities)? {
            role = role.with_node_identity(ni);
        }
        Ok(role)
    }
}

/// A token as stored. The secret is part of the record (replication carries it, as Consul's
/// does with a token holding `acl:write`), but never of a `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TokenRecord {
    /// Accessor ID (UUID): the public handle.
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    /// Secret ID: what requests present.
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Linked policy IDs.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Linked role IDs.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Service identities.
    #[serde(default)]
    pub service_identities: Vec<ServiceIdentityRecord>,
    /// Node identities.
    #[serde(default)]
    pub node_identities: Vec<NodeIdentityRecord>,
    /// Local tokens never leave their datacenter.
    #[serde(default)]
    pub local: bool,
    /// Expiry, seconds since the Unix epoch.
    #[serde(default)]
    pub expiration_time: Option<u64>,
    /// When the token was created, seconds since the Unix epoch (`None` for records written
    /// before mesh kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<u64>,
}

impl std::fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRecord")
            .field("accessor_id", &self.accessor_id)
            .field("secret_id", &"<redacted>")
            .field("description", &self.description)
            .field("policies", &self.policies)
            .field("roles", &self.roles)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl TokenRecord {
    /// The token object.
    pub fn to_token(&self) -> Result<Token, crate::Error> {
        let mut t = Token::new(
            AccessorId::new(self.accessor_id.clone()).map_err(crate::Error::invalid)?,
            SecretId::new(self.secret_id.clone()),
        )
        .with_description(self.description.clone())
        .with_local(self.local);
        for p in &self.policies {
            t = t.with_policy(PolicyId::new(p.clone()).map_err(crate::Error::invalid)?);
        }
        for r in &self.roles {
            t = t.with_role(RoleId::new(r.clone()).map_err(crate::Error::invalid)?);
        }
        for si in service_identities(&self.service_identities)? {
            t = t.with_service_identity(si);
        }
        for ni in node_identities(&self.node_identities)? {
            t = t.with_node_identity(ni);
        }
        if let Some(secs) = self.expiration_time {
            t = t.with_expiration_time(UNIX_EPOCH + Duration::from_secs(secs));
        }
        Ok(t)
    }
}

fn service_identities(
    recs: &[ServiceIdentityRecord],
) -> Result<Vec<ServiceIdentity>, crate::Error> {
    recs.iter()
        .map(|r| {
            ServiceIdentity::new(r.service_name.clone(), r.datacenters.iter().cloned())
                .map_err(crate::Error::invalid)
        })
        .collect()
}

fn node_identities(recs: &[NodeIdentityRecord]) -> Result<Vec<NodeIdentity>, crate::Error> {
    recs.iter()
        .map(|r| {
            NodeIdentity::new(r.node_name.clone(), r.datacenter.clone())
                .map_err(crate::Error::invalid)
        })
        .collect()
}

/// Every ACL object a datacenter knows, indexed for resolution. Immutable; rebuilt when a
/// table changes and swapped in atomically. Compiled policies and roles are kept by record id
/// and modify index, so a rebuild compiles only what changed.
#[derive(Default)]
pub struct AclSnapshot {
    policies: HashMap<PolicyId, Arc<Policy>>,
    policy_names: HashMap<String, PolicyId>,
    roles: HashMap<RoleId, Arc<Role>>,
    role_names: HashMap<String, RoleId>,
    /// Secret -> token.
    tokens: HashMap<String, Arc<Token>>,
    /// Record id -> (modify index, compiled) of what the last build compiled.
    compiled_policies: HashMap<String, (Index, Arc<Policy>)>,
    compiled_roles: HashMap<String, (Index, Arc<Role>)>,
    compiled_tokens: HashMap<String, (Index, Arc<Token>, String)>,
}

impl std::fmt::Debug for AclSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclSnapshot")
            .field("policies", &self.policies.len())
            .field("roles", &self.roles.len())
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// The stored records an [`AclSnapshot`] is built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AclRecords<'a> {
    pub(crate) policies: &'a [Record],
    pub(crate) policy_names: &'a [Record],
    pub(crate) roles: &'a [Record],
    pub(crate) role_names: &'a [Record],
    pub(crate) global_tokens: &'a [Record],
    pub(crate) local_tokens: &'a [Record],
}

impl AclSnapshot {
    /// Builds a snapshot from stored records, re-using what `prev` compiled for every record
    /// whose modify index is unchanged. A record that does not decode or validate is left out
    /// and logged by id (a token that is left out resolves to nothing: refused).
    pub(crate) fn rebuild(prev: &AclSnapshot, recs: AclRecords<'_>) -> Self {
        let mut snap = AclSnapshot::default();
        for rec in recs.policies {
            let policy = match prev.compiled_policies.get(&rec.id) {
                Some((at, p)) if *at == rec.modify_index => p.clone(),
                _ => match stored::<PolicyRecord>(tables::ACL_POLICIES, rec)
                    .and_then(|p| p.to_policy().map_err(|e| e.to_string()))
                {
                    Ok(p) => Arc::new(p),
                    Err(e) => {
                        tracing::warn!(policy = %rec.id, error = %e, "stored policy left out");
                        continue;
                    }
                },
            };
            snap.compiled_policies
                .insert(rec.id.clone(), (rec.modify_index, policy.clone()));
            snap.policies.insert(policy.id().clone(), policy);
        }
        snap.policy_names = names(
            snap.policies
                .values()
                .map(|p| (p.name().to_owned(), p.id().clone())),
            recs.policy_names,
            |id| PolicyId::new(id.to_owned()).ok(),
        );
        for rec in recs.roles {
            let role = match prev.compiled_roles.get(&rec.id) {
                Some((at, r)) if *at == rec.modify_index => r.clone(),
                _ => match stored::<RoleRecord>(tables::ACL_ROLES, rec)
                    .and_then(|r| r.to_role().map_err(|e| e.to_string()))
                {
                    Ok(r) => Arc::new(r),
                    Err(e) => {
                        tracing::warn!(role = %rec.id, error = %e, "stored role left out");
                        continue;
                    }
                },
            };
            snap.compiled_roles
                .insert(rec.id.clone(), (rec.modify_index, role.clone()));
            snap.roles.insert(role.id().clone(), role);
        }
        snap.role_names = names(
            snap.roles
                .values()
                .map(|r| (r.name().to_owned(), r.id().clone())),
            recs.role_names,
            |id| RoleId::new(id.to_owned()).ok(),
        );
        for (table, list) in [
            (tables::ACL_TOKENS, recs.global_tokens),
            (tables::ACL_LOCAL_TOKENS, recs.local_tokens),
        ] {
            for rec in list {
                let (token, secret) = match prev.compiled_tokens.get(&rec.id) {
                    Some((at, t, secret)) if *at == rec.modify_index => (t.clone(), secret.clone()),
                    _ => match stored::<TokenRecord>(table, rec).and_then(|t| {
                        Ok((
                            Arc::new(t.to_token().map_err(|e| e.to_string())?),
                            t.secret_id,
                        ))
                    }) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::warn!(accessor = %rec.id, error = %e, "stored token left out");
                            continue;
                        }
                    },
                };
                snap.compiled_tokens.insert(
                    rec.id.clone(),
                    (rec.modify_index, token.clone(), secret.clone()),
                );
                snap.tokens.insert(secret, token);
            }
        }
        snap
    }

    /// The number of tokens that resolve.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// A policy by id.
    pub fn policy(&self, id: &str) -> Option<&Policy> {
        PolicyId::new(id.to_owned())
            .ok()
            .and_then(|id| self.policies.get(&id))
            .map(AsRef::as_ref)
    }

    /// A role by id.
    pub fn role(&self, id: &str) -> Option<&Role> {
        RoleId::new(id.to_owned())
            .ok()
            .and_then(|id| self.roles.get(&id))
            .map(AsRef::as_ref)
    }

    /// A policy by name.
    pub fn policy_by_name(&self, name: &str) -> Option<&Policy> {
        self.policy_names
            .get(name)
            .and_then(|id| self.policies.get(id))
            .map(AsRef::as_ref)
    }

    /// A role by name.
    pub fn role_by_name(&self, name: &str) -> Option<&Role> {
        self.role_names
            .get(name)
            .and_then(|id| self.roles.get(id))
            .map(AsRef::as_ref)
    }

    /// The token holding `secret`. The empty secret is the anonymous token.
    pub fn token(&self, secret: &str) -> Option<Arc<Token>> {
        if secret.is_empty() {
            return Some(Arc::new(Token::anonymous()));
        }
        self.tokens.get(secret).cloned()
    }

    /// Compiles the authorizer of `token` in datacenter `dc`.
    pub fn authorizer(&self, token: &Token, default: DefaultPolicy, dc: &Datacenter) -> Authorizer {
        Authorizer::for_token(
            token,
            |id| self.policies.get(id).map(AsRef::as_ref),
            |id| self.roles.get(id).map(AsRef::as_ref),
            default,
            dc,
        )
    }
}

/// Decodes a stored ACL record with the same checks a write makes.
fn stored<T: serde::de::DeserializeOwned>(table: &str, rec: &Record) -> Result<T, String> {
    crate::authz::decode_record(table, &rec.id, Some(&rec.value)).map_err(|e| e.to_string())?;
    let v = rec.value.as_json().ok_or("value is not JSON")?;
    T::deserialize(v).map_err(|e| e.to_string())
}

/// The name -> id map: each name goes to the object the unique-name index gives it, or, for
/// a name the index does not hold (state written before the index existed), to the smallest
/// id carrying it, so the answer never depends on listing order.
fn names<I: Clone + Ord>(
    objects: impl Iterator<Item = (String, I)>,
    index: &[Record],
    parse: impl Fn(&str) -> Option<I>,
) -> HashMap<String, I> {
    let mut by_name: HashMap<String, Vec<I>> = HashMap::new();
    for (name, id) in objects {
        by_name.entry(name).or_default().push(id);
    }
    let indexed: HashMap<&str, I> = index
        .iter()
        .filter_map(|r| {
            let v = r.value.as_json()?;
            let rec = NameIndexRecord::deserialize(v).ok()?;
            Some((r.id.as_str(), parse(&rec.id)?))
        })
        .collect();
    by_name
        .into_iter()
        .map(|(name, mut ids)| {
            let chosen = match indexed.get(name.as_str()) {
                Some(i) if ids.contains(i) => i.clone(),
                _ => {
                    ids.sort();
                    ids.swap_remove(0)
                }
            };
            (name, chosen)
        })
        .collect()
}

/// Now, for token expiry checks.
pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}

/// Now in whole seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
