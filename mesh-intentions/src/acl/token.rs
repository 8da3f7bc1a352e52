//! ACL objects: policies, roles, tokens, service and node identities, and the built-ins.

use std::fmt;
use std::time::SystemTime;

use mesh_core::Datacenter;
use serde::{Deserialize, Serialize};

use super::parse::RulesError;
use super::rules::Rules;

/// Longest policy name (Consul's limit).
pub const MAX_POLICY_NAME_LEN: usize = 128;
/// Longest role name.
pub const MAX_ROLE_NAME_LEN: usize = 256;
/// Longest service- or node-identity name.
pub const MAX_IDENTITY_NAME_LEN: usize = 256;
/// IDs starting with this are reserved for built-in objects.
pub const RESERVED_ID_PREFIX: &str = "00000000-0000-0000-0000-0000000000";
/// ID of the built-in `global-management` policy.
pub const GLOBAL_MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
/// ID of the built-in `builtin/global-read-only` policy.
pub const GLOBAL_READ_ONLY_POLICY_ID: &str = "00000000-0000-0000-0000-000000000002";
/// Accessor ID of the anonymous token.
pub const ANONYMOUS_TOKEN_ACCESSOR_ID: &str = "00000000-0000-0000-0000-000000000002";
/// Secret ID of the anonymous token (used when a request carries no token).
pub const ANONYMOUS_TOKEN_SECRET: &str = "anonymous";

/// Why an ACL object was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclObjectError {
    /// A policy name breaks Consul's rules (1..128 chars of `[A-Za-z0-9-_]`, optionally one
    /// `/` in the middle, not starting with `/` or `builtin/`).
    #[error("Invalid Policy: invalid Name {0:?}")]
    PolicyName(String),
    /// A role name breaks `^[A-Za-z0-9\-_]{{1,256}}$`.
    #[error("Invalid Role: invalid Name {0:?}")]
    RoleName(String),
    /// A service-identity name breaks `^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$` or is too long.
    #[error(
        "Service identity {0:?} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"
    )]
    ServiceIdentityName(String),
    /// A node-identity name breaks the same rule.
    #[error(
        "Node identity {0:?} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"
    )]
    NodeIdentityName(String),
    /// An ID that is not a UUID.
    #[error("invalid ID {0:?}: must be a UUID")]
    BadId(String),
    /// The ID is in the reserved range of built-in objects.
    #[error("invalid ID {0:?}: IDs starting with {RESERVED_ID_PREFIX:?} are reserved")]
    ReservedId(String),
    /// The rules of a policy did not parse.
    #[error(transparent)]
    Rules(#[from] RulesError),
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

macro_rules! uuid_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses a UUID (any case, 8-4-4-4-12 hex digits). Reserved IDs are accepted
            /// here; [`is_reserved`](Self::is_reserved) tells them apart.
            pub fn new(s: impl Into<String>) -> Result<Self, AclObjectError> {
                let s = s.into();
                if is_uuid(&s) { Ok(Self(s)) } else { Err(AclObjectError::BadId(s)) }
            }

            /// The ID text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether the ID is in the range reserved for built-in objects.
            pub fn is_reserved(&self) -> bool {
                self.0.starts_with(RESERVED_ID_PREFIX)
            }
        }

        impl TryFrom<String> for $name {
            type Error = AclObjectError;
            fn try_from(s: String) -> Result<Self, AclObjectError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

uuid_id!(
    /// The ID of a policy.
    PolicyId
);
uuid_id!(
    /// The ID of a role.
    RoleId
);
uuid_id!(
    /// The public ID of a token (safe to log).
    AccessorId
);

/// The secret of a token: never shown by `Debug` (it prints `SecretId(<redacted>)`), has no
/// `Display`, and compares in constant time for equal lengths.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretId(String);

impl From<&mesh_core::TokenSecret> for SecretId {
    fn from(s: &mesh_core::TokenSecret) -> Self {
        Self::new(s.expose_secret())
    }
}

impl SecretId {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that must send or store it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the secrets Consul refuses to resolve (`allow`, `deny`,
    /// `manage`: `Cannot resolve root ACL`).
    pub fn is_root_name(&self) -> bool {
        ["allow", "deny", "manage"]
            .iter()
            .any(|r| self.ct_eq_str(r))
    }

    /// Constant-time comparison with a candidate secret (time depends only on the lengths).
    pub fn ct_eq_str(&self, other: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), other.as_bytes());
        let n = a.len().max(b.len());
        let mut diff = (a.len() ^ b.len()) as u64;
        for i in 0..n {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            diff |= u64::from(x ^ y);
        }
        std::hint::black_box(diff) == 0
    }
}

impl PartialEq for SecretId {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq_str(&other.0)
    }
}

impl Eq for SecretId {}

impl fmt::Debug for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretId(<redacted>)")
    }
}

/// Checks a policy name: 1 to 128 characters from `A-Za-z0-9-_` with at most one inner `/`, not
/// starting with `/` or `builtin/` (Consul's rule).
pub fn validate_policy_name(name: &str) -> Result<(), AclObjectError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let shape = match name.split_once('/') {
        None => !name.is_empty() && name.chars().all(ok_char),
        Some((a, b)) => !a.is_empty() && a.chars().all(ok_char) && b.chars().all(ok_char),
    };
    if name.len() > MAX_POLICY_NAME_LEN || name.starts_with("builtin/") || !shape {
        return Err(AclObjectError::PolicyName(name.to_owned()));
    }
    Ok(())
}

/// Checks a role name: `^[A-Za-z0-9\-_]{1,256}$`.
pub fn validate_role_name(name: &str) -> Result<(), AclObjectError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ROLE_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(AclObjectError::RoleName(name.to_owned()))
    }
}

/// `^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$`, 1..256 characters.
fn is_identity_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= MAX_IDENTITY_NAME_LEN
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-' || *c == b'_')
}

/// A named set of rules, optionally limited to some datacenters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    id: PolicyId,
    name: String,
    description: String,
    rules: Rules,
    datacenters: Vec<Datacenter>,
}

impl Policy {
    /// A policy with a validated name and already parsed rules. Reserved IDs are refused:
    /// only the built-ins ([`Policy::global_management`], [`Policy::global_read_only`]) use
    /// them.
    pub fn new(
        id: PolicyId,
        name: impl Into<String>,
        rules: Rules,
    ) -> Result<Self, AclObjectError> {
        let name = name.into();
        if id.is_reserved() {
            return Err(AclObjectError::ReservedId(id.0));
        }
        validate_policy_name(&name)?;
        Ok(Self {
            id,
            name,
            description: String::new(),
            rules,
            datacenters: Vec::new(),
        })
    }

    /// Like [`Policy::new`], parsing the rules text first.
    pub fn from_rules_text(
        id: PolicyId,
        name: impl Into<String>,
        rules: &str,
    ) -> Result<Self, AclObjectError> {
        Self::new(id, name, Rules::parse(rules)?)
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Limits the policy to these datacenters (empty: valid everywhere).
    pub fn with_datacenters(mut self, dcs: impl IntoIterator<Item = Datacenter>) -> Self {
        self.datacenters = dcs.into_iter().collect();
        self
    }

    /// The built-in `global-management` policy: `write` on everything.
    pub fn global_management() -> Self {
        Self::builtin(GLOBAL_MANAGEMENT_POLICY_ID, "global-management", "write")
            .with_description("Builtin Policy that grants unlimited access")
    }

    /// The built-in `builtin/global-read-only` policy: `read` on everything.
    pub fn global_read_only() -> Self {
        Self::builtin(
            GLOBAL_READ_ONLY_POLICY_ID,
            "builtin/global-read-only",
            "read",
        )
        .with_description("Builtin Policy that grants unlimited read-only access to all components")
    }

    fn builtin(id: &str, name: &str, level: &str) -> Self {
        let text = format!(
            "acl = \"{level}\"\nagent_prefix \"\" {{\n  policy = \"{level}\"\n}}\n\
             event_prefix \"\" {{\n  policy = \"{level}\"\n}}\nkey_prefix \"\" {{\n  policy = \"{level}\"\n}}\n\
             keyring = \"{level}\"\nnode_prefix \"\" {{\n  policy = \"{level}\"\n}}\noperator = \"{level}\"\n\
             mesh = \"{level}\"\npeering = \"{level}\"\nquery_prefix \"\" {{\n  policy = \"{level}\"\n}}\n\
             service_prefix \"\" {{\n  policy = \"{level}\"\n  intentions = \"{level}\"\n}}\n\
             session_prefix \"\" {{\n  policy = \"{level}\"\n}}\n"
        );
        Self {
            id: PolicyId(id.to_owned()),
            name: name.to_owned(),
            description: String::new(),
            // The text above is a constant of this crate and parses (tested); an empty rule set
            // would only ever grant less.
            rules: Rules::parse(&text).unwrap_or_default(),
            datacenters: Vec::new(),
        }
    }

    /// The ID.
    pub fn id(&self) -> &PolicyId {
        &self.id
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The description.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }
    /// The datacenters the policy is limited to (empty: all).
    pub fn datacenters(&self) -> &[Datacenter] {
        &self.datacenters
    }
    /// Whether the policy applies in `dc`: it lists no datacenters, or lists `dc`.
    pub fn applies_in(&self, dc: &Datacenter) -> bool {
        self.datacenters.is_empty() || self.datacenters.contains(dc)
    }
}

/// A service identity: the rules a service and its sidecar need (see
/// docs/consul-compatibility.md, 'Built-in tokens, policies and identities').
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceIdentity {
    name: String,
    datacenters: Vec<Datacenter>,
}

impl ServiceIdentity {
    /// A service identity valid in `datacenters` (empty: all).
    pub fn new(
        name: impl Into<String>,
        datacenters: impl IntoIterator<Item = Datacenter>,
    ) -> Result<Self, AclObjectError> {
        let name = name.into();
        if !is_identity_name(&name) {
            return Err(AclObjectError::ServiceIdentityName(name));
        }
        Ok(Self {
            name,
            datacenters: datacenters.into_iter().collect(),
        })
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The datacenters (empty: all).
    pub fn datacenters(&self) -> &[Datacenter] {
        &self.datacenters
    }

    /// The exact rules text the identity expands to.
    pub fn rules_text(&self) -> String {
        let n = &self.name;
        format!(
            "service \"{n}\" {{\n\tpolicy = \"write\"\n}}\nservice \"{n}-sidecar-proxy\" {{\n\tpolicy = \"write\"\n}}\n\
             service_prefix \"\" {{\n\tpolicy = \"read\"\n}}\nnode_prefix \"\" {{\n\tpolicy = \"read\"\n}}"
        )
    }

    /// The rules the identity expands to.
    pub fn rules(&self) -> Rules {
        // The name is validated to `[a-z0-9_-]`, so the text always parses (tested).
        Rules::parse(&self.rules_text()).unwrap_or_default()
    }
}

/// A node identity: the rules a node's agent needs, valid in one datacenter (see
/// docs/consul-compatibility.md, 'Built-in tokens, policies and identities').
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    name: String,
    datacenter: Datacenter,
}

impl NodeIdentity {
    /// A node identity for `name` in `datacenter`.
    pub fn new(name: impl Into<String>, datacenter: Datacenter) -> Result<Self, AclObjectError> {
        let name = name.into();
        if !is_identity_name(&name) {
            return Err(AclObjectError::NodeIdentityName(name));
        }
        Ok(Self { name, datacenter })
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The datacenter.
    pub fn datacenter(&self) -> &Datacenter {
        &self.datacenter
    }

    /// The exact rules text the identity expands to.
    pub fn rules_text(&self) -> String {
        format!(
            "node \"{}\" {{\n\tpolicy = \"write\"\n}}\nservice_prefix \"\" {{\n\tpolicy = \"read\"\n}}",
            self.name
        )
    }

    /// The rules the identity expands to.
    pub fn rules(&self) -> Rules {
        // The name is validated, so the text always parses (tested).
        Rules::parse(&self.rules_text()).unwrap_or_default()
    }
}

/// A named bundle of policies and identities that tokens link to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    id: RoleId,
    name: String,
    description: String,
    policies: Vec<PolicyId>,
    service_identities: Vec<ServiceIdentity>,
    node_identities: Vec<NodeIdentity>,
}

impl Role {
    /// A role with a validated name and no links.
    pub fn new(id: RoleId, name: impl Into<String>) -> Result<Self, AclObjectError> {
        let name = name.into();
        validate_role_name(&name)?;
        Ok(Self {
            id,
            name,
            description: String::new(),
            policies: Vec::new(),
            service_identities: Vec::new(),
            node_identities: Vec::new(),
        })
    }

    /// Sets the description.
    pub fn with_description(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }
    /// Links a policy.
    pub fn with_policy(mut self, id: PolicyId) -> Self {
        self.policies.push(id);
        self
    }
    /// Adds a service identity.
    pub fn with_service_identity(mut self, si: ServiceIdentity) -> Self {
        self.service_identities.push(si);
        self
    }
    /// Adds a node identity.
    pub fn with_node_identity(mut self, ni: NodeIdentity) -> Self {
        self.node_identities.push(ni);
        self
    }
    /// The ID.
    pub fn id(&self) -> &RoleId {
        &self.id
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The description.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// Linked policies.
    pub fn policies(&self) -> &[PolicyId] {
        &self.policies
    }
    /// Service identities.
    pub fn service_identities(&self) -> &[ServiceIdentity] {
        &self.service_identities
    }
    /// Node identities.
    pub fn node_identities(&self) -> &[NodeIdentity] {
        &self.node_identities
    }
}

/// A token: what a request presents. Its `Debug` never shows the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    accessor_id: AccessorId,
    secret_id: SecretId,
    description: String,
    policies: Vec<PolicyId>,
    roles: Vec<RoleId>,
    service_identities: Vec<ServiceIdentity>,
    node_identities: Vec<NodeIdentity>,
    local: bool,
    expiration_time: Option<SystemTime>,
}

impl Token {
    /// A global token with no links.
    pub fn new(accessor_id: AccessorId, secret_id: SecretId) -> Self {
        Self {
            accessor_id,
            secret_id,
            description: String::new(),
            policies: Vec::new(),
            roles: Vec::new(),
            service_identities: Vec::new(),
            node_identities: Vec::new(),
            local: false,
            expiration_time: None,
        }
    }

    /// The anonymous token, used when a request carries no token. It has no links, so
    /// only the default policy applies to it unless an operator links policies.
    pub fn anonymous() -> Self {
        Self::new(
            AccessorId(ANONYMOUS_TOKEN_ACCESSOR_ID.to_owned()),
            SecretId::new(ANONYMOUS_TOKEN_SECRET),
        )
        .with_description("Anonymous Token")
    }

    /// Sets the description.
    pub fn with_description(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }
    /// Links a policy.
    pub fn with_policy(mut self, id: PolicyId) -> Self {
        self.policies.push(id);
        self
    }
    /// Links a role.
    pub fn with_role(mut self, id: RoleId) -> Self {
        self.roles.push(id);
        self
    }
    /// Adds a service identity.
    pub fn with_service_identity(mut self, si: ServiceIdentity) -> Self {
        self.service_identities.push(si);
        self
    }
    /// Adds a node identity.
    pub fn with_node_identity(mut self, ni: NodeIdentity) -> Self {
        self.node_identities.push(ni);
        self
    }
    /// Marks the token local to the datacenter that created it (never replicated).
    pub fn with_local(mut self, local: bool) -> Self {
        self.local = local;
        self
    }
    /// Sets an expiration time.
    pub fn with_expiration_time(mut self, t: SystemTime) -> Self {
        self.expiration_time = Some(t);
        self
    }

    /// The accessor ID.
    pub fn accessor_id(&self) -> &AccessorId {
        &self.accessor_id
    }
    /// The secret.
    pub fn secret_id(&self) -> &SecretId {
        &self.secret_id
    }
    /// The description.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// Linked policies.
    pub fn policies(&self) -> &[PolicyId] {
        &self.policies
    }
    /// Linked roles.
    pub fn roles(&self) -> &[RoleId] {
        &self.roles
    }
    /// Service identities.
    pub fn service_identities(&self) -> &[ServiceIdentity] {
        &self.service_identities
    }
    /// Node identities.
    pub fn node_identities(&self) -> &[NodeIdentity] {
        &self.node_identities
    }
    /// Whether the token is local to its datacenter.
    pub fn is_local(&self) -> bool {
        self.local
    }
    /// The expiration time, if any.
    pub fn expiration_time(&self) -> Option<SystemTime> {
        self.expiration_time
    }
    /// Whether the token has expired at `now` (an expired token must not be used).
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expiration_time.is_some_and(|t| t <= now)
    }
    /// Whether this is the anonymous token.
    pub fn is_anonymous(&self) -> bool {
        self.accessor_id.0 == ANONYMOUS_TOKEN_ACCESSOR_ID
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{AccessLevel, Family, MatchKind, SingleRule};

    #[test]
    fn secret_is_redacted_and_compared_in_full() {
        let t = Token::new(
            AccessorId::new("6a1253d2-1785-24fd-91c2-f8e78c745511").unwrap(),
            SecretId::new("45a3bd52-07c7-47a4-52fd-0745e0cfe967"),
        );
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("45a3bd52"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        assert!(
            t.secret_id()
                .ct_eq_str("45a3bd52-07c7-47a4-52fd-0745e0cfe967")
        );
        assert!(
            !t.secret_id()
                .ct_eq_str("45a3bd52-07c7-47a4-52fd-0745e0cfe96")
        );
        assert!(!t.secret_id().ct_eq_str(""));
        assert!(SecretId::new("manage").is_root_name());
        assert!(!SecretId::new("root").is_root_name());
    }

    #[test]
    fn policy_names_follow_consul() {
        for ok in ["a", "mesh-gateway", "team/web_1", "x".repeat(128).as_str()] {
            validate_policy_name(ok).unwrap();
        }
        // `^[A-Za-z0-9\-_]+\/?[A-Za-z0-9\-_]*$` allows one slash, even a trailing one.
        validate_policy_name("a/").unwrap();
        let long = "x".repeat(129);
        for bad in ["", "/a", "builtin/x", "a/b/c", "a b", "ü", long.as_str()] {
            assert!(validate_policy_name(bad).is_err(), "{bad:?}");
        }
        validate_role_name("r-1_x").unwrap();
        assert!(validate_role_name("r/1").is_err());
        assert!(validate_role_name("").is_err());
    }

    #[test]
    fn ids_must_be_uuids_and_reserved_ones_are_builtin_only() {
        assert!(PolicyId::new("nope").is_err());
        let reserved = PolicyId::new(GLOBAL_MANAGEMENT_POLICY_ID).unwrap();
        assert!(matches!(
            Policy::new(reserved, "x", Rules::new()),
            Err(AclObjectError::ReservedId(_))
        ));
    }

    #[test]
    fn builtins_and_identities_expand_as_documented() {
        let gm = Policy::global_management();
        assert_eq!(gm.rules().single(SingleRule::Acl), Some(AccessLevel::Write));
        assert_eq!(gm.rules().named_len(), 7);
        let sp = gm
            .rules()
            .get(Family::Service, MatchKind::Prefix, "")
            .unwrap();
        assert_eq!(sp.intentions, Some(AccessLevel::Write));
        let ro = Policy::global_read_only();
        assert_eq!(
            ro.rules().single(SingleRule::Peering),
            Some(AccessLevel::Read)
        );

        let si = ServiceIdentity::new("web", []).unwrap();
        let r = si.rules();
        assert_eq!(r.named_len(), 4);
        assert!(
            r.get(Family::Service, MatchKind::Exact, "web-sidecar-proxy")
                .is_some()
        );
        assert!(ServiceIdentity::new("Web", []).is_err());
        assert!(ServiceIdentity::new("web-", []).is_err());
        let ni = NodeIdentity::new("node-1", "dc1".parse().unwrap()).unwrap();
        assert_eq!(ni.rules().named_len(), 2);
        assert!(NodeIdentity::new("", "dc1".parse().unwrap()).is_err());
    }

    #[test]
    fn anonymous_token_and_expiry() {
        let a = Token::anonymous();
        assert!(a.is_anonymous());
        assert_eq!(a.accessor_id().as_str(), ANONYMOUS_TOKEN_ACCESSOR_ID);
        let now = SystemTime::now();
        let t = a.with_expiration_time(now);
        assert!(t.is_expired(now));
    }
}
