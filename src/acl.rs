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
use mesh_intentions::acl::{
    AccessorId, Authorizer, DefaultPolicy, GLOBAL_MANAGEMENT_POLICY_ID, GLOBAL_READ_ONLY_POLICY_ID,
    NodeIdentity, Policy, PolicyId, Role, RoleId, SecretId, ServiceIdentity, Token,
};
use serde::{Deserialize, Serialize};

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

/// Every ACL object a datacenter knows, indexed for resolution. Immutable; rebuilt whole
/// when a table changes and swapped in atomically.
#[derive(Default)]
pub struct AclSnapshot {
    policies: HashMap<PolicyId, Policy>,
    policy_names: HashMap<String, PolicyId>,
    roles: HashMap<RoleId, Role>,
    role_names: HashMap<String, RoleId>,
    /// Secret -> token.
    tokens: HashMap<String, Arc<Token>>,
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

impl AclSnapshot {
    /// Builds a snapshot; records that no longer decode are skipped and logged (by id only).
    pub fn build(
        policies: impl IntoIterator<Item = PolicyRecord>,
        roles: impl IntoIterator<Item = RoleRecord>,
        tokens: impl IntoIterator<Item = TokenRecord>,
    ) -> Self {
        let mut snap = AclSnapshot::default();
        for p in policies {
            match p.to_policy() {
                Ok(policy) => {
                    snap.policy_names
                        .insert(policy.name().to_owned(), policy.id().clone());
                    snap.policies.insert(policy.id().clone(), policy);
                }
                Err(e) => tracing::warn!(policy = %p.id, error = %e, "stored policy skipped"),
            }
        }
        for r in roles {
            match r.to_role() {
                Ok(role) => {
                    snap.role_names
                        .insert(role.name().to_owned(), role.id().clone());
                    snap.roles.insert(role.id().clone(), role);
                }
                Err(e) => tracing::warn!(role = %r.id, error = %e, "stored role skipped"),
            }
        }
        for t in tokens {
            match t.to_token() {
                Ok(token) => {
                    snap.tokens.insert(t.secret_id.clone(), Arc::new(token));
                }
                Err(e) => {
                    tracing::warn!(accessor = %t.accessor_id, error = %e, "stored token skipped")
                }
            }
        }
        snap
    }

    /// A policy by name.
    pub fn policy_by_name(&self, name: &str) -> Option<&Policy> {
        self.policy_names
            .get(name)
            .and_then(|id| self.policies.get(id))
    }

    /// A role by name.
    pub fn role_by_name(&self, name: &str) -> Option<&Role> {
        self.role_names.get(name).and_then(|id| self.roles.get(id))
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
            |id| self.policies.get(id),
            |id| self.roles.get(id),
            default,
            dc,
        )
    }
}

/// Now, for token expiry checks.
pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}
