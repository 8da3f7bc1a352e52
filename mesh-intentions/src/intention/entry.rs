//! The `service-intentions` config entry: all intentions of one destination (see
//! docs/consul-compatibility.md, 'Intention model' and 'service-intentions validation').

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::model::{
    Action, DEFAULT_NAMESPACE, Intention, IntentionError, MAX_DESCRIPTION_LEN, Permission,
    SOURCE_TYPE_CONSUL, WILDCARD, check_meta, check_name, check_wildcards, ns_or_default,
    precedence,
};

/// The config entry kind.
pub const SERVICE_INTENTIONS_KIND: &str = "service-intentions";

/// HTTP methods an L7 permission may name.
pub const VALID_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A claim a JWT must carry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JwtClaim {
    /// Path into the claims.
    pub path: Vec<String>,
    /// Required value.
    pub value: String,
}

/// A JWT provider requirement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JwtProvider {
    /// Provider name (a `jwt-provider` config entry).
    pub name: String,
    /// Claims to verify.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_claims: Vec<JwtClaim>,
}

/// The JWT requirement of an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JwtRequirement {
    /// Providers, any of which may vouch.
    pub providers: Vec<JwtProvider>,
}

/// One source of a `service-intentions` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SourceIntention {
    /// Source service, or `*`.
    pub name: String,
    /// Source namespace (empty: `default`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Source partition.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub partition: String,
    /// Source peer.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// Source sameness group.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sameness_group: String,
    /// `allow` / `deny` (L4), empty with permissions.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// L7 permissions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Permission>,
    /// Computed by [`ServiceIntentionsEntry::normalize`].
    #[serde(skip_serializing_if = "is_zero")]
    pub precedence: i32,
    /// `consul`.
    #[serde(rename = "Type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
    /// Description.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// ID of a legacy intention this source came from.
    #[serde(rename = "LegacyID", skip_serializing_if = "String::is_empty")]
    pub legacy_id: String,
    /// Meta of that legacy intention.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub legacy_meta: BTreeMap<String, String>,
    /// Its creation time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_create_time: Option<String>,
    /// Its update time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_update_time: Option<String>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// `{"Kind": "service-intentions", "Name": <destination>, "Sources": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceIntentionsEntry {
    /// `service-intentions`.
    pub kind: String,
    /// The destination service, or `*`.
    pub name: String,
    /// Sources, in evaluation order after [`ServiceIntentionsEntry::normalize`].
    pub sources: Vec<SourceIntention>,
    /// JWT requirement.
    #[serde(rename = "JWT", skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtRequirement>,
    /// Meta.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// What is wrong with one L7 permission.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PermissionProblem {
    /// Action not `allow`/`deny`.
    Action,
    /// No HTTP block.
    HttpRequired,
    /// An empty HTTP block.
    HttpEmpty,
    /// More than one path match.
    PathCount,
    /// `PathExact` without a leading `/`.
    PathExactSlash(String),
    /// `PathPrefix` without a leading `/`.
    PathPrefixSlash(String),
    /// Header without a name.
    HeaderName(usize),
    /// Header with not exactly one matcher.
    HeaderParts(usize),
    /// IgnoreCase with Present or Regex.
    HeaderIgnoreCase(usize),
    /// Unknown method.
    BadMethod(String),
    /// Repeated method.
    DuplicateMethod(String),
}

impl fmt::Display for PermissionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Action => f.write_str(".Action must be set to 'allow' or 'deny'"),
            Self::HttpRequired => f.write_str(".HTTP is required"),
            Self::HttpEmpty => f.write_str(".HTTP should not be empty"),
            Self::PathCount => f.write_str(
                ".HTTP should only contain at most one of PathExact, PathPrefix, or PathRegex",
            ),
            Self::PathExactSlash(p) => write!(f, ".HTTP.PathExact doesn't start with '/': {p:?}"),
            Self::PathPrefixSlash(p) => write!(f, ".HTTP.PathPrefix doesn't start with '/': {p:?}"),
            Self::HeaderName(k) => write!(f, ".HTTP.Header[{k}] missing required Name field"),
            Self::HeaderParts(k) => write!(
                f,
                ".HTTP.Header[{k}] should only contain one of Present, Exact, Prefix, Suffix, Contains, or Regex"
            ),
            Self::HeaderIgnoreCase(k) => write!(
                f,
                ".HTTP.Header[{k}] should set one of Exact, Prefix, Suffix, or Contains when using IgnoreCase"
            ),
            Self::BadMethod(m) => write!(f, ".HTTP.Methods contains an invalid method {m:?}"),
            Self::DuplicateMethod(m) => write!(f, ".HTTP.Methods contains {m:?} more than once"),
        }
    }
}

/// What is wrong with one source.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceProblem {
    /// No name.
    NameRequired,
    /// A wildcard rule on the name or namespace.
    Wildcard(IntentionError),
    /// A name that is neither `*` nor a valid service name
    /// ([`IntentionError::InvalidName`]).
    InvalidName(IntentionError),
    /// `*` in the partition.
    PartitionWildcard,
    /// `*` in the peer.
    PeerWildcard,
    /// `*` in the sameness group.
    SamenessGroupWildcard,
    /// Peer and Partition both set.
    PeerAndPartition,
    /// SamenessGroup and Partition both set.
    SamenessGroupAndPartition,
    /// SamenessGroup and Peer both set.
    SamenessGroupAndPeer,
    /// Description too long.
    DescriptionTooLong,
    /// A legacy field on a non-legacy write (`LegacyID`, `LegacyMeta`, ...).
    LegacyFieldSet(&'static str),
    /// A legacy field missing on a legacy write.
    LegacyFieldMissing(&'static str),
    /// Legacy meta over the limits.
    LegacyMeta(IntentionError),
    /// Action missing or not `allow`/`deny`.
    Action,
    /// Action together with permissions.
    ActionWithPermissions,
    /// Permissions on a legacy write.
    PermissionsOnLegacyWrite,
    /// Permissions on a wildcard destination.
    PermissionsOnWildcardDestination,
    /// Type not `consul`.
    Type,
    /// A bad permission.
    Permission(usize, PermissionProblem),
    /// The same source twice (rendered `"foo"`, `peer("p") "foo"`, ...).
    Duplicate(String),
}

impl fmt::Display for SourceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NameRequired => f.write_str(".Name is required"),
            Self::Wildcard(e) | Self::InvalidName(e) => write!(f, ".{e}"),
            Self::PartitionWildcard => {
                f.write_str(".Partition: cannot use wildcard '*' in partition")
            }
            Self::PeerWildcard => f.write_str(".Peer: cannot use wildcard '*' in peer"),
            Self::SamenessGroupWildcard => {
                f.write_str(".SamenessGroup: cannot use wildcard '*' in sameness group")
            }
            Self::PeerAndPartition => f.write_str(": Peer cannot be set with Partition"),
            Self::SamenessGroupAndPartition => {
                f.write_str(": SamenessGroup cannot be set with Partition")
            }
            Self::SamenessGroupAndPeer => f.write_str(": SamenessGroup cannot be set with Peer"),
            Self::DescriptionTooLong => {
                write!(
                    f,
                    ".Description exceeds maximum length {MAX_DESCRIPTION_LEN}"
                )
            }
            Self::LegacyFieldSet(n) => write!(f, ".{n} must be omitted"),
            Self::LegacyFieldMissing(n) => write!(f, ".{n} must be set"),
            Self::LegacyMeta(e) => write!(f, ".Legacy{e}"),
            Self::Action => f.write_str(".Action must be set to 'allow' or 'deny'"),
            Self::ActionWithPermissions => {
                f.write_str(".Action must be omitted if Permissions are specified")
            }
            Self::PermissionsOnLegacyWrite => {
                f.write_str(".Permissions must not be set when using the legacy APIs")
            }
            Self::PermissionsOnWildcardDestination => f.write_str(
                ".Permissions cannot be specified on intentions with wildcarded destinations",
            ),
            Self::Type => f.write_str(".Type must be set to 'consul'"),
            Self::Permission(j, p) => write!(f, ".Permissions[{j}]{p}"),
            Self::Duplicate(what) => write!(f, " defines {what} more than once"),
        }
    }
}

/// Why a `service-intentions` entry was refused (the first problem found, in Consul's order).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// JSON `null`.
    #[error("config entry is nil")]
    Nil,
    /// Not JSON of the entry's shape.
    #[error("malformed service-intentions entry: {0}")]
    Malformed(String),
    /// Kind is not `service-intentions`.
    #[error("invalid config entry kind {0:?}, expected \"service-intentions\"")]
    Kind(String),
    /// No name.
    #[error("Name is required")]
    NameRequired,
    /// Wildcard rule on the destination.
    #[error("Name: {0}")]
    NameWildcard(String),
    /// A destination that is neither `*` nor a valid service name
    /// ([`IntentionError::InvalidName`], field `Name`).
    #[error("{0}")]
    InvalidName(IntentionError),
    /// A JWT provider without a name.
    #[error("JWT provider name is required")]
    JwtProviderName,
    /// Entry meta on a legacy write.
    #[error("Meta must be omitted for legacy intention writes")]
    MetaOnLegacyWrite,
    /// Entry meta over the limits.
    #[error("{0}")]
    Meta(IntentionError),
    /// No sources.
    #[error("At least one source is required")]
    NoSources,
    /// A problem with source `index`.
    #[error("Sources[{index}]{problem}")]
    Source {
        /// Which source.
        index: usize,
        /// What is wrong.
        problem: SourceProblem,
    },
}

impl ServiceIntentionsEntry {
    /// Decodes an entry from JSON; `null` is [`EntryError::Nil`].
    pub fn from_json(text: &str) -> Result<Self, EntryError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if v.is_null() {
            return Err(EntryError::Nil);
        }
        serde_json::from_value(v).map_err(|e| EntryError::Malformed(e.to_string()))
    }

    /// Consul's `Normalize`: kind set, each source's `Type` defaulted to `consul`, methods
    /// upper-cased, precedence computed, then sources stably sorted by precedence, highest
    /// first (ties keep their order).
    pub fn normalize(&mut self) {
        if self.kind.is_empty() {
            self.kind = SERVICE_INTENTIONS_KIND.to_owned();
        }
        for s in &mut self.sources {
            if s.type_.is_empty() {
                s.type_ = SOURCE_TYPE_CONSUL.to_owned();
            }
            for p in &mut s.permissions {
                if let Some(h) = &mut p.http {
                    for m in &mut h.methods {
                        *m = m.to_uppercase();
                    }
                }
            }
            s.precedence = precedence(
                ns_or_default(&s.namespace),
                &s.name,
                DEFAULT_NAMESPACE,
                &self.name,
            );
        }
        // `sort_by_key` is stable: ties keep their order.
        self.sources
            .sort_by_key(|s| std::cmp::Reverse(s.precedence));
    }

    /// Consul's `Validate` (`legacy_write` for writes through the legacy intentions API):
    /// the first problem, in Consul's order. Stricter than Consul: the entry's name and
    /// each source's name must be `*` or a valid service name, else the entry could never
    /// match ([`EntryError::InvalidName`], [`SourceProblem::InvalidName`]).
    pub fn validate(&self, legacy_write: bool) -> Result<(), EntryError> {
        if !self.kind.is_empty() && self.kind != SERVICE_INTENTIONS_KIND {
            return Err(EntryError::Kind(self.kind.clone()));
        }
        if self.name.is_empty() {
            return Err(EntryError::NameRequired);
        }
        if self.name.contains('*') && self.name != WILDCARD {
            return Err(EntryError::NameWildcard(
                "wildcard character '*' cannot be used with partial values".to_owned(),
            ));
        }
        let mut name_errors = Vec::new();
        check_name("Name", &self.name, &mut name_errors);
        if let Some(e) = name_errors.into_iter().next() {
            return Err(EntryError::InvalidName(e));
        }
        if let Some(jwt) = &self.jwt
            && jwt.providers.iter().any(|p| p.name.is_empty())
        {
            return Err(EntryError::JwtProviderName);
        }
        if legacy_write && !self.meta.is_empty() {
            return Err(EntryError::MetaOnLegacyWrite);
        }
        let mut meta_errors = Vec::new();
        check_meta(&self.meta, &mut meta_errors);
        if let Some(e) = meta_errors.into_iter().next() {
            return Err(EntryError::Meta(e));
        }
        if self.sources.is_empty() {
            return Err(EntryError::NoSources);
        }
        let mut seen = BTreeSet::new();
        for (index, src) in self.sources.iter().enumerate() {
            self.validate_source(src, legacy_write)
                .map_err(|problem| EntryError::Source { index, problem })?;
            let key = (
                ns_or_default(&src.namespace).to_owned(),
                src.name.clone(),
                src.partition.clone(),
                src.peer.clone(),
                src.sameness_group.clone(),
            );
            if !seen.insert(key) {
                let what = if !src.peer.is_empty() {
                    format!("peer({:?}) {:?}", src.peer, src.name)
                } else if !src.sameness_group.is_empty() {
                    format!("sameness-group({:?}) {:?}", src.sameness_group, src.name)
                } else {
                    format!("{:?}", src.name)
                };
                return Err(EntryError::Source {
                    index,
                    problem: SourceProblem::Duplicate(what),
                });
            }
        }
        Ok(())
    }

    fn validate_source(
        &self,
        src: &SourceIntention,
        legacy_write: bool,
    ) -> Result<(), SourceProblem> {
        if src.name.is_empty() {
            return Err(SourceProblem::NameRequired);
        }
        let mut w = Vec::new();
        check_wildcards(
            ("Namespace", ns_or_default(&src.namespace)),
            ("Name", &src.name),
            &mut w,
        );
        if let Some(e) = w.into_iter().next() {
            return Err(SourceProblem::Wildcard(e));
        }
        let mut n = Vec::new();
        check_name("Name", &src.name, &mut n);
        if let Some(e) = n.into_iter().next() {
            return Err(SourceProblem::InvalidName(e));
        }
        if src.partition.contains('*') {
            return Err(SourceProblem::PartitionWildcard);
        }
        if src.peer.contains('*') {
            return Err(SourceProblem::PeerWildcard);
        }
        if src.sameness_group.contains('*') {
            return Err(SourceProblem::SamenessGroupWildcard);
        }
        if !src.peer.is_empty() && !src.partition.is_empty() {
            return Err(SourceProblem::PeerAndPartition);
        }
        if !src.sameness_group.is_empty() && !src.partition.is_empty() {
            return Err(SourceProblem::SamenessGroupAndPartition);
        }
        if !src.sameness_group.is_empty() && !src.peer.is_empty() {
            return Err(SourceProblem::SamenessGroupAndPeer);
        }
        if src.description.len() > MAX_DESCRIPTION_LEN {
            return Err(SourceProblem::DescriptionTooLong);
        }
        if legacy_write {
            let mut e = Vec::new();
            check_meta(&src.legacy_meta, &mut e);
            if let Some(e) = e.into_iter().next() {
                return Err(SourceProblem::LegacyMeta(e));
            }
            if src.legacy_id.is_empty() {
                return Err(SourceProblem::LegacyFieldMissing("LegacyID"));
            }
            if src.legacy_create_time.is_none() {
                return Err(SourceProblem::LegacyFieldMissing("LegacyCreateTime"));
            }
            if src.legacy_update_time.is_none() {
                return Err(SourceProblem::LegacyFieldMissing("LegacyUpdateTime"));
            }
        } else {
            if !src.legacy_meta.is_empty() {
                return Err(SourceProblem::LegacyFieldSet("LegacyMeta"));
            }
            if !src.legacy_id.is_empty() {
                return Err(SourceProblem::LegacyFieldSet("LegacyID"));
            }
            if src.legacy_create_time.is_some() {
                return Err(SourceProblem::LegacyFieldSet("LegacyCreateTime"));
            }
            if src.legacy_update_time.is_some() {
                return Err(SourceProblem::LegacyFieldSet("LegacyUpdateTime"));
            }
        }
        if legacy_write || src.permissions.is_empty() {
            if Action::parse(&src.action).is_none() {
                return Err(SourceProblem::Action);
            }
            if legacy_write && !src.permissions.is_empty() {
                return Err(SourceProblem::PermissionsOnLegacyWrite);
            }
        } else {
            if !src.action.is_empty() {
                return Err(SourceProblem::ActionWithPermissions);
            }
            if self.name == WILDCARD {
                return Err(SourceProblem::PermissionsOnWildcardDestination);
            }
        }
        if !src.type_.is_empty() && src.type_ != SOURCE_TYPE_CONSUL {
            return Err(SourceProblem::Type);
        }
        for (j, p) in src.permissions.iter().enumerate() {
            validate_permission(p).map_err(|e| SourceProblem::Permission(j, e))?;
        }
        Ok(())
    }

    /// The entry as API intentions (one per source), meta from the entry unless the source
    /// came from a legacy intention.
    pub fn to_intentions(&self) -> Vec<Intention> {
        self.sources
            .iter()
            .map(|s| {
                let mut i = Intention {
                    id: s.legacy_id.clone(),
                    description: s.description.clone(),
                    source_ns: ns_or_default(&s.namespace).to_owned(),
                    source_name: s.name.clone(),
                    destination_ns: DEFAULT_NAMESPACE.to_owned(),
                    destination_name: self.name.clone(),
                    source_partition: s.partition.clone(),
                    source_peer: s.peer.clone(),
                    source_sameness_group: s.sameness_group.clone(),
                    source_type: if s.type_.is_empty() {
                        SOURCE_TYPE_CONSUL.to_owned()
                    } else {
                        s.type_.clone()
                    },
                    action: s.action.clone(),
                    permissions: s.permissions.clone(),
                    meta: if s.legacy_id.is_empty() {
                        self.meta.clone()
                    } else {
                        s.legacy_meta.clone()
                    },
                    created_at: s.legacy_create_time.clone(),
                    updated_at: s.legacy_update_time.clone(),
                    ..Intention::default()
                };
                i.update_precedence();
                i
            })
            .collect()
    }
}

fn validate_permission(p: &Permission) -> Result<(), PermissionProblem> {
    if Action::parse(&p.action).is_none() {
        return Err(PermissionProblem::Action);
    }
    let Some(h) = &p.http else {
        return Err(PermissionProblem::HttpRequired);
    };
    let paths = [&h.path_exact, &h.path_prefix, &h.path_regex]
        .iter()
        .filter(|p| !p.is_empty())
        .count();
    if paths > 1 {
        return Err(PermissionProblem::PathCount);
    }
    if !h.path_exact.is_empty() && !h.path_exact.starts_with('/') {
        return Err(PermissionProblem::PathExactSlash(h.path_exact.clone()));
    }
    if !h.path_prefix.is_empty() && !h.path_prefix.starts_with('/') {
        return Err(PermissionProblem::PathPrefixSlash(h.path_prefix.clone()));
    }
    for (k, hdr) in h.header.iter().enumerate() {
        if hdr.name.is_empty() {
            return Err(PermissionProblem::HeaderName(k));
        }
        let parts = [
            hdr.present,
            !hdr.exact.is_empty(),
            !hdr.prefix.is_empty(),
            !hdr.suffix.is_empty(),
            !hdr.contains.is_empty(),
            !hdr.regex.is_empty(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if parts != 1 {
            return Err(PermissionProblem::HeaderParts(k));
        }
        if hdr.ignore_case && (hdr.present || !hdr.regex.is_empty()) {
            return Err(PermissionProblem::HeaderIgnoreCase(k));
        }
    }
    let mut seen = BTreeSet::new();
    for m in &h.methods {
        let up = m.to_uppercase();
        if !VALID_METHODS.contains(&up.as_str()) {
            return Err(PermissionProblem::BadMethod(m.clone()));
        }
        if !seen.insert(up) {
            return Err(PermissionProblem::DuplicateMethod(m.clone()));
        }
    }
    if paths == 0 && h.header.is_empty() && h.methods.is_empty() {
        return Err(PermissionProblem::HttpEmpty);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> ServiceIntentionsEntry {
        ServiceIntentionsEntry::from_json(json).unwrap()
    }

    #[test]
    fn normalize_sorts_stably_and_converts() {
        let mut e = entry(
            r#"{"Kind":"service-intentions","Name":"db","Sources":[{"Name":"*","Action":"deny"},{"Name":"web","Action":"allow"}]}"#,
        );
        e.normalize();
        e.validate(false).unwrap();
        assert_eq!(e.sources[0].name, "web");
        assert_eq!(e.sources[0].type_, "consul");
        let ixns = e.to_intentions();
        assert_eq!(
            ixns[1].to_string(),
            "default/* => default/db (Precedence: 8, Action: DENY)"
        );
    }

    #[test]
    fn more_problems_are_named() {
        let cases = [
            (
                r#"{"Name":"d*","Sources":[{"Name":"a","Action":"allow"}]}"#,
                "Name: wildcard",
            ),
            (
                r#"{"Name":"*","Sources":[{"Name":"a","Permissions":[{"Action":"allow","HTTP":{"PathExact":"/"}}]}]}"#,
                "wildcarded destinations",
            ),
            (
                r#"{"Name":"d","Sources":[{"Name":"a","Permissions":[{"Action":"allow"}]}]}"#,
                "Sources[0].Permissions[0].HTTP is required",
            ),
            (
                r#"{"Name":"d","Sources":[{"Name":"a","Permissions":[{"Action":"allow","HTTP":{}}]}]}"#,
                "HTTP should not be empty",
            ),
            (
                r#"{"Name":"d","Sources":[{"Name":"a","Permissions":[{"Action":"allow","HTTP":{"PathPrefix":"x"}}]}]}"#,
                "doesn't start with '/'",
            ),
            (
                r#"{"Name":"d","Sources":[{"Name":"a","Permissions":[{"Action":"allow","HTTP":{"Methods":["get","GET"]}}]}]}"#,
                "more than once",
            ),
            (
                r#"{"Name":"d","Sources":[{"Name":"a","Peer":"p","Partition":"x","Action":"allow"}]}"#,
                "Peer cannot be set with Partition",
            ),
            (
                r#"{"Name":"d","Sources":[{"Name":"a","Type":"other","Action":"allow"}]}"#,
                "Type must be set",
            ),
            (
                r#"{"Name":"d","Sources":[{"Name":"a","SamenessGroup":"g","Action":"allow"},{"Name":"a","SamenessGroup":"g","Action":"allow"}]}"#,
                "Sources[1] defines sameness-group(\"g\") \"a\" more than once",
            ),
            (
                r#"{"Kind":"proxy-defaults","Name":"d"}"#,
                "invalid config entry kind",
            ),
            (
                r#"{"Name":"DB","Sources":[{"Name":"a","Action":"allow"}]}"#,
                "Name: \"DB\" is not a valid service name (must start with a lower-case letter or a digit), so the intention could never match",
            ),
            (
                r#"{"Name":"db","Sources":[{"Name":"web","Action":"allow"},{"Name":"a/b","Action":"allow"}]}"#,
                "Sources[1].Name: \"a/b\" is not a valid service name",
            ),
            (
                r#"{"Name":"db","Sources":[{"Name":"Web","Peer":"p","Action":"allow"}]}"#,
                "Sources[0].Name: \"Web\"",
            ),
        ];
        for (json, want) in cases {
            let err = entry(json).validate(false).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
        // Typed: the field and the value, for callers that do not parse messages.
        let err = entry(r#"{"Name":"db","Sources":[{"Name":"a/b","Action":"allow"}]}"#)
            .validate(false)
            .unwrap_err();
        assert!(matches!(
            err,
            EntryError::Source {
                index: 0,
                problem: SourceProblem::InvalidName(IntentionError::InvalidName { field: "Name", ref value, .. }),
            } if value == "a/b"
        ));
        assert!(matches!(
            entry(r#"{"Name":"DB","Sources":[{"Name":"*","Action":"allow"}]}"#).validate(false),
            Err(EntryError::InvalidName(IntentionError::InvalidName {
                field: "Name",
                ..
            }))
        ));
        assert_eq!(
            ServiceIntentionsEntry::from_json("null"),
            Err(EntryError::Nil)
        );
        assert!(matches!(
            ServiceIntentionsEntry::from_json("[1]"),
            Err(EntryError::Malformed(_))
        ));
        let legacy = entry(r#"{"Name":"d","Sources":[{"Name":"a","Action":"allow"}]}"#);
        assert!(
            legacy
                .validate(true)
                .unwrap_err()
                .to_string()
                .contains("LegacyID must be set")
        );
    }
}
