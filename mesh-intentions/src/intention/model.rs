//! The intention model in Consul's API shape, its precedence, and legacy validation.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use mesh_core::{NameErrorReason, ServiceName};
use serde::{Deserialize, Serialize};

/// The wildcard value of a name or namespace.
pub const WILDCARD: &str = "*";
/// The namespace every name lives in (mesh follows Consul CE: one namespace).
pub const DEFAULT_NAMESPACE: &str = "default";
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 512;
/// Most meta entries.
pub const MAX_META_PAIRS: usize = 64;
/// Longest meta key, in bytes.
pub const MAX_META_KEY_LEN: usize = 128;
/// Longest meta value, in bytes.
pub const MAX_META_VALUE_LEN: usize = 512;
/// The meta key naming the system that manages an intention.
pub const META_EXTERNAL_SOURCE: &str = "external-source";
/// The only source type.
pub const SOURCE_TYPE_CONSUL: &str = "consul";

/// What an L4 intention does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Allow the connection.
    Allow,
    /// Refuse the connection.
    Deny,
}

impl Action {
    /// Parses `allow` or `deny` (exactly, as Consul).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Self::Allow),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// An HTTP header match of an L7 permission.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HeaderPermission {
    /// Header name.
    pub name: String,
    /// Match when present.
    #[serde(skip_serializing_if = "is_false")]
    pub present: bool,
    /// Exact value.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub exact: String,
    /// Value prefix.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Value suffix.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub suffix: String,
    /// Value substring.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub contains: String,
    /// Value regex.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub regex: String,
    /// Invert the match.
    #[serde(skip_serializing_if = "is_false")]
    pub invert: bool,
    /// Compare ignoring case (Exact/Prefix/Suffix/Contains only).
    #[serde(skip_serializing_if = "is_false")]
    pub ignore_case: bool,
}

/// The HTTP part of an L7 permission.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HttpPermission {
    /// Exact path.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path_exact: String,
    /// Path prefix.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    /// Path regex.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path_regex: String,
    /// Header matches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<HeaderPermission>,
    /// Methods (upper-cased by normalisation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

/// An L7 permission: evaluated per request by the proxy; for L4 checks an intention that has
/// permissions counts as deny.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Permission {
    /// `allow` or `deny` (kept as text so validation can name a bad value).
    pub action: String,
    /// The HTTP match.
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpPermission>,
    /// JWT requirement (opaque here).
    #[serde(rename = "JWT", skip_serializing_if = "Option::is_none")]
    pub jwt: Option<serde_json::Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// An intention in Consul's API shape (`/v1/connect/intentions`). Text fields stay text so
/// that validation can report bad values with Consul's messages; [`Intention::validate`]
/// checks them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Intention {
    /// ID (legacy intentions only).
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Description (at most 512 bytes).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Source namespace.
    #[serde(rename = "SourceNS")]
    pub source_ns: String,
    /// Source service name, or `*`.
    pub source_name: String,
    /// Destination namespace.
    #[serde(rename = "DestinationNS")]
    pub destination_ns: String,
    /// Destination service name, or `*`.
    pub destination_name: String,
    /// Source partition (Enterprise; empty in mesh).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_partition: String,
    /// Destination partition (Enterprise; empty in mesh).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_partition: String,
    /// Source peer (a peered cluster), empty for local sources.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_peer: String,
    /// Source sameness group (Enterprise; such intentions never match in mesh).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_sameness_group: String,
    /// Source type: `consul`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_type: String,
    /// `allow` or `deny` for L4 intentions; empty when `permissions` are set.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// L7 permissions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Permission>,
    /// Free-form metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Computed precedence (read-only; see [`precedence`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub precedence: i32,
    /// Creation time (RFC 3339), omitted when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Update time (RFC 3339), omitted when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// Consul's `countExact`: 0 for a wildcard namespace, 1 for a wildcard name, else 2.
fn count_exact(ns: &str, name: &str) -> i32 {
    if ns == WILDCARD {
        0
    } else if name == WILDCARD {
        1
    } else {
        2
    }
}

/// The precedence of an intention (see docs/consul-compatibility.md, 'Intention precedence'):
/// destination exactness picks 9, 6 or 3, minus how much less exact the source is. Peers and
/// sameness groups do not change it.
pub fn precedence(
    source_ns: &str,
    source_name: &str,
    destination_ns: &str,
    destination_name: &str,
) -> i32 {
    let max = match count_exact(destination_ns, destination_name) {
        2 => 9,
        1 => 6,
        _ => 3,
    };
    max - (2 - count_exact(source_ns, source_name))
}

/// The order intentions are evaluated in (Consul's `IntentionPrecedenceSorter`), written once:
/// precedence descending, then ascending by source sameness group, source peer, source
/// partition, source namespace, source name, destination partition, destination namespace,
/// destination name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrecedenceKey<'a> {
    /// Precedence (higher first).
    pub precedence: i32,
    /// Then these, ascending.
    pub source_sameness_group: &'a str,
    /// .
    pub source_peer: &'a str,
    /// .
    pub source_partition: &'a str,
    /// .
    pub source_ns: &'a str,
    /// .
    pub source_name: &'a str,
    /// .
    pub destination_partition: &'a str,
    /// .
    pub destination_ns: &'a str,
    /// .
    pub destination_name: &'a str,
}

impl Ord for PrecedenceKey<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .precedence
            .cmp(&self.precedence)
            .then_with(|| self.source_sameness_group.cmp(other.source_sameness_group))
            .then_with(|| self.source_peer.cmp(other.source_peer))
            .then_with(|| self.source_partition.cmp(other.source_partition))
            .then_with(|| self.source_ns.cmp(other.source_ns))
            .then_with(|| self.source_name.cmp(other.source_name))
            .then_with(|| self.destination_partition.cmp(other.destination_partition))
            .then_with(|| self.destination_ns.cmp(other.destination_ns))
            .then_with(|| self.destination_name.cmp(other.destination_name))
    }
}

impl PartialOrd for PrecedenceKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One error of [`Intention::validate`], with Consul's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntentionError {
    /// A required field is empty.
    #[error("{0} must be set")]
    Missing(&'static str),
    /// `foo*`.
    #[error("{0}: wildcard character '*' cannot be used with partial values")]
    PartialWildcard(&'static str),
    /// `*/web`.
    #[error("{0}: exact value cannot follow wildcard namespace")]
    ExactAfterWildcardNamespace(&'static str),
    /// Description too long.
    #[error("Description exceeds maximum length {MAX_DESCRIPTION_LEN}")]
    DescriptionTooLong,
    /// Too many meta pairs.
    #[error("Meta exceeds maximum element count {MAX_META_PAIRS}")]
    MetaTooMany,
    /// A meta key too long.
    #[error("Meta key {0:?} exceeds maximum length {MAX_META_KEY_LEN}")]
    MetaKeyTooLong(String),
    /// A meta value too long.
    #[error("Meta value for key {0:?} exceeds maximum length {MAX_META_VALUE_LEN}")]
    MetaValueTooLong(String),
    /// Action not `allow`/`deny`.
    #[error("Action must be set to 'allow' or 'deny'")]
    BadAction,
    /// L7 permissions through the legacy API.
    #[error("Permissions must not be set when using the legacy APIs")]
    PermissionsNotAllowed,
    /// Source type not `consul`.
    #[error("SourceType must be set to 'consul'")]
    BadSourceType,
    /// A source or destination name that is neither `*` nor a valid service name
    /// ([`mesh_core::ServiceName`]: `WEB`, `a/b`, `web.1`...). Every service in mesh has a
    /// valid name, so such an intention could never match; Consul accepts it, mesh refuses it.
    #[error(
        "{field}: {value:?} is not a valid service name ({reason}), so the intention could never match"
    )]
    InvalidName {
        /// The field (`SourceName`, `DestinationName`, or `Name` in a config entry).
        field: &'static str,
        /// The name, as given.
        value: String,
        /// The rule of [`mesh_core::ServiceName`] it breaks.
        reason: NameErrorReason,
    },
}

/// All errors of one validation, rendered like Consul's multi-error
/// (`"2 errors occurred:\n\t* a\n\t* b\n\n"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct IntentionErrors(pub Vec<IntentionError>);

impl fmt::Display for IntentionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        if n == 1 {
            f.write_str("1 error occurred:\n")?;
        } else {
            writeln!(f, "{n} errors occurred:")?;
        }
        for e in &self.0 {
            writeln!(f, "\t* {e}")?;
        }
        f.write_str("\n")
    }
}

/// Checks wildcard use of a (namespace, name) pair, pushing errors named by field: either part
/// is exactly `*` or holds no `*`, and an exact name cannot follow a `*` namespace.
pub(crate) fn check_wildcards(
    ns: (&'static str, &str),
    name: (&'static str, &str),
    errors: &mut Vec<IntentionError>,
) {
    for (field, v) in [ns, name] {
        if v.contains('*') && v != WILDCARD {
            errors.push(IntentionError::PartialWildcard(field));
        }
    }
    if ns.1 == WILDCARD && name.1 != WILDCARD {
        errors.push(IntentionError::ExactAfterWildcardNamespace(name.0));
    }
}

/// Checks that a source or destination name could match a service: `*` or a valid
/// [`ServiceName`]. An empty name or one holding `*` is left to the `Missing` and wildcard
/// checks, so each problem is reported once.
pub(crate) fn check_name(field: &'static str, value: &str, errors: &mut Vec<IntentionError>) {
    if value.is_empty() || value.contains('*') {
        return;
    }
    if let Err(e) = ServiceName::new(value) {
        errors.push(IntentionError::InvalidName {
            field,
            value: e.value,
            reason: e.reason,
        });
    }
}

/// Checks meta limits, pushing errors.
pub(crate) fn check_meta(meta: &BTreeMap<String, String>, errors: &mut Vec<IntentionError>) {
    if meta.len() > MAX_META_PAIRS {
        errors.push(IntentionError::MetaTooMany);
    }
    for (k, v) in meta {
        if k.len() > MAX_META_KEY_LEN {
            errors.push(IntentionError::MetaKeyTooLong(k.clone()));
        }
        if v.len() > MAX_META_VALUE_LEN {
            errors.push(IntentionError::MetaValueTooLong(k.clone()));
        }
    }
}

impl Intention {
    /// An L4 intention `source => destination` in the default namespace, with precedence
    /// computed.
    pub fn new(source: &str, destination: &str, action: Action) -> Self {
        let mut i = Self {
            source_ns: DEFAULT_NAMESPACE.to_owned(),
            source_name: source.to_owned(),
            destination_ns: DEFAULT_NAMESPACE.to_owned(),
            destination_name: destination.to_owned(),
            source_type: SOURCE_TYPE_CONSUL.to_owned(),
            action: action.as_str().to_owned(),
            ..Self::default()
        };
        i.update_precedence();
        i
    }

    /// The parsed L4 action (`None` when empty or not `allow`/`deny`).
    pub fn action(&self) -> Option<Action> {
        Action::parse(&self.action)
    }

    /// Whether this is an L7 intention.
    pub fn has_permissions(&self) -> bool {
        !self.permissions.is_empty()
    }

    /// Fills empty namespaces with `default` and an empty source type with `consul`, then
    /// recomputes the precedence (Consul's `FillPartitionAndNamespace` + `UpdatePrecedence`).
    /// Names are left as given: `WEB` is not lower-cased into `web` (a different intention
    /// than the one written) but refused by [`Intention::validate`].
    pub fn normalize(&mut self) {
        for ns in [&mut self.source_ns, &mut self.destination_ns] {
            if ns.is_empty() {
                *ns = DEFAULT_NAMESPACE.to_owned();
            }
        }
        if self.source_type.is_empty() {
            self.source_type = SOURCE_TYPE_CONSUL.to_owned();
        }
        self.update_precedence();
    }

    /// Recomputes [`Intention::precedence`] (empty namespaces count as `default`).
    pub fn update_precedence(&mut self) {
        self.precedence = precedence(
            ns_or_default(&self.source_ns),
            &self.source_name,
            ns_or_default(&self.destination_ns),
            &self.destination_name,
        );
    }

    /// The evaluation-order key (see [`PrecedenceKey`]).
    pub fn precedence_key(&self) -> PrecedenceKey<'_> {
        PrecedenceKey {
            precedence: self.precedence,
            source_sameness_group: &self.source_sameness_group,
            source_peer: &self.source_peer,
            source_partition: &self.source_partition,
            source_ns: &self.source_ns,
            source_name: &self.source_name,
            destination_partition: &self.destination_partition,
            destination_ns: &self.destination_ns,
            destination_name: &self.destination_name,
        }
    }

    /// Validates a legacy (`/v1/connect/intentions`) intention, collecting every error
    /// (Consul's `Intention.Validate`). Stricter than Consul: a source or destination name
    /// must be `*` or a valid service name ([`IntentionError::InvalidName`]).
    pub fn validate(&self) -> Result<(), IntentionErrors> {
        let mut errors = Vec::new();
        for (field, v) in [
            ("SourceNS", &self.source_ns),
            ("SourceName", &self.source_name),
            ("DestinationNS", &self.destination_ns),
            ("DestinationName", &self.destination_name),
        ] {
            if v.is_empty() {
                errors.push(IntentionError::Missing(field));
            }
        }
        check_wildcards(
            ("SourceNS", &self.source_ns),
            ("SourceName", &self.source_name),
            &mut errors,
        );
        check_wildcards(
            ("DestinationNS", &self.destination_ns),
            ("DestinationName", &self.destination_name),
            &mut errors,
        );
        check_name("SourceName", &self.source_name, &mut errors);
        check_name("DestinationName", &self.destination_name, &mut errors);
        if self.description.len() > MAX_DESCRIPTION_LEN {
            errors.push(IntentionError::DescriptionTooLong);
        }
        check_meta(&self.meta, &mut errors);
        if self.action().is_none() {
            errors.push(IntentionError::BadAction);
        }
        if self.has_permissions() {
            errors.push(IntentionError::PermissionsNotAllowed);
        }
        if self.source_type != SOURCE_TYPE_CONSUL {
            errors.push(IntentionError::BadSourceType);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(IntentionErrors(errors))
        }
    }

    /// Whether neither name is a wildcard (Consul's `HasExact`).
    pub fn is_exact(&self) -> bool {
        self.source_name != WILDCARD && self.destination_name != WILDCARD
    }

    /// `Meta["external-source"]`, or `""`.
    pub fn external_source(&self) -> &str {
        self.meta
            .get(META_EXTERNAL_SOURCE)
            .map_or("", String::as_str)
    }
}

pub(crate) fn ns_or_default(ns: &str) -> &str {
    if ns.is_empty() { DEFAULT_NAMESPACE } else { ns }
}

/// Consul's `String()`: `default/web => default/db (Precedence: 9, Action: ALLOW)`, with
/// `ID: <id>, ` when the intention has an ID, `Permissions: N` for L7 intentions, and a
/// `peer(p)/` or `sameness-group(g)/` prefix on the source.
impl fmt::Display for Intention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.source_sameness_group.is_empty() {
            write!(f, "sameness-group({})/", self.source_sameness_group)?;
        } else if !self.source_peer.is_empty() {
            write!(f, "peer({})/", self.source_peer)?;
        }
        write!(
            f,
            "{}/{} => {}/{} (",
            ns_or_default(&self.source_ns),
            self.source_name,
            ns_or_default(&self.destination_ns),
            self.destination_name
        )?;
        if !self.id.is_empty() {
            write!(f, "ID: {}, ", self.id)?;
        }
        write!(f, "Precedence: {}, ", self.precedence)?;
        if self.has_permissions() {
            write!(f, "Permissions: {})", self.permissions.len())
        } else {
            write!(f, "Action: {})", self.action.to_uppercase())
        }
    }
}

/// An operation of the legacy intentions API (`Intention.Apply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LegacyOp {
    /// Create a new intention (`POST /v1/connect/intentions`).
    Create,
    /// Update by ID.
    Update,
    /// Delete by ID.
    Delete,
    /// Create or update by source and destination name (the "exact" API).
    Upsert,
    /// Delete everything: always refused.
    DeleteAll,
}

/// Why a legacy write was refused before the intention itself was validated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LegacyApplyError {
    /// `delete-all`.
    #[error("Invalid Intention operation: delete-all")]
    InvalidOperation,
    /// A peer source through the legacy API.
    #[error("SourcePeer field is not supported on this endpoint. Use config entries instead")]
    SourcePeer,
    /// Create with an ID.
    #[error("ID must be empty when creating a new intention")]
    IdOnCreate,
    /// Upsert with an ID.
    #[error("ID must not be specified")]
    IdOnUpsert,
    /// Upsert with meta and no existing intention.
    #[error("Meta must not be specified")]
    MetaOnUpsert,
    /// Upsert changing the meta of an existing intention.
    #[error("Meta must not be specified, or should be unchanged during an update.")]
    MetaChangedOnUpsert,
    /// Update of an intention that does not exist.
    #[error("Cannot modify non-existent intention: '{0}'")]
    UpdateMissing(String),
    /// Delete of an intention that does not exist.
    #[error("Cannot delete non-existent intention: '{0}'")]
    DeleteMissing(String),
    /// Update moving an intention to another destination.
    #[error("Cannot modify Destination partition/namespace/name for an intention once it exists.")]
    DestinationChanged,
    /// The intention itself is invalid.
    #[error(transparent)]
    Invalid(#[from] IntentionErrors),
}

/// Checks a legacy write (`/v1/connect/intentions`, Consul's `Intention.Apply`): the operation
/// rules, given the existing intention (by ID for update/delete, by name for upsert), then
/// [`Intention::validate`] for create, update and upsert. Deleting by name is idempotent: the
/// caller skips the write when nothing exists.
pub fn validate_legacy_apply(
    op: LegacyOp,
    ixn: &Intention,
    existing: Option<&Intention>,
) -> Result<(), LegacyApplyError> {
    if op == LegacyOp::DeleteAll {
        return Err(LegacyApplyError::InvalidOperation);
    }
    if !ixn.source_peer.is_empty() {
        return Err(LegacyApplyError::SourcePeer);
    }
    match op {
        LegacyOp::Create if !ixn.id.is_empty() => return Err(LegacyApplyError::IdOnCreate),
        LegacyOp::Upsert => {
            if !ixn.id.is_empty() {
                return Err(LegacyApplyError::IdOnUpsert);
            }
            match existing {
                None if !ixn.meta.is_empty() => return Err(LegacyApplyError::MetaOnUpsert),
                Some(e) if !ixn.meta.is_empty() && ixn.meta != e.meta => {
                    return Err(LegacyApplyError::MetaChangedOnUpsert);
                }
                _ => {}
            }
        }
        LegacyOp::Update => {
            let Some(e) = existing else {
                return Err(LegacyApplyError::UpdateMissing(ixn.id.clone()));
            };
            if e.destination_partition != ixn.destination_partition
                || ns_or_default(&e.destination_ns) != ns_or_default(&ixn.destination_ns)
                || e.destination_name != ixn.destination_name
            {
                return Err(LegacyApplyError::DestinationChanged);
            }
        }
        LegacyOp::Delete => {
            return match existing {
                Some(_) => Ok(()),
                None => Err(LegacyApplyError::DeleteMissing(ixn.id.clone())),
            };
        }
        _ => {}
    }
    let mut checked = ixn.clone();
    if checked.source_type.is_empty() {
        // Consul defaults the source type on create before validating.
        checked.source_type = SOURCE_TYPE_CONSUL.to_owned();
    }
    checked.validate()?;
    Ok(())
}

/// Which side of an intention a match is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// Match on the destination fields.
    Destination,
    /// Match on the source fields (including the peer).
    Source,
}

/// Consul's `AuthorizeIntentionTarget`: whether `ixn` matches `target` (namespace `target_ns`,
/// peer `target_peer`) on the given side, and if so whether it allows (`Action == allow`; an
/// L7 intention does not). Returns `(allowed, matched)`.
pub fn authorize_intention_target(
    target: &str,
    target_ns: &str,
    target_peer: &str,
    ixn: &Intention,
    match_type: MatchType,
) -> (bool, bool) {
    let (ns, name) = match match_type {
        MatchType::Destination => (&ixn.destination_ns, &ixn.destination_name),
        MatchType::Source => {
            if ixn.source_peer != target_peer {
                return (false, false);
            }
            (&ixn.source_ns, &ixn.source_name)
        }
    };
    let ns = ns_or_default(ns);
    if ns != WILDCARD && ns != ns_or_default(target_ns) {
        return (false, false);
    }
    if name != WILDCARD && name != target {
        return (false, false);
    }
    (ixn.action() == Some(Action::Allow), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(p: i32, fields: [&'a str; 8]) -> PrecedenceKey<'a> {
        PrecedenceKey {
            precedence: p,
            source_sameness_group: fields[0],
            source_peer: fields[1],
            source_partition: fields[2],
            source_ns: fields[3],
            source_name: fields[4],
            destination_partition: fields[5],
            destination_ns: fields[6],
            destination_name: fields[7],
        }
    }

    const BASE: [&str; 8] = ["", "", "", "default", "web", "", "default", "db"];

    fn with(i: usize, v: &'static str) -> [&'static str; 8] {
        let mut f = BASE;
        f[i] = v;
        f
    }

    // One test per rule of Consul's precedence and ordering (docs/consul-compatibility.md,
    // 'Intention precedence').

    #[test]
    fn precedence_exact_source_to_exact_destination_is_9() {
        assert_eq!(precedence("default", "web", "default", "db"), 9);
    }

    #[test]
    fn precedence_wildcard_source_name_costs_one() {
        assert_eq!(precedence("default", "*", "default", "db"), 8);
        assert_eq!(precedence("*", "*", "default", "db"), 7);
    }

    #[test]
    fn precedence_wildcard_destination_name_caps_at_6() {
        assert_eq!(precedence("default", "web", "default", "*"), 6);
        assert_eq!(precedence("default", "*", "default", "*"), 5);
        assert_eq!(precedence("*", "*", "default", "*"), 4);
    }

    #[test]
    fn precedence_wildcard_destination_namespace_caps_at_3() {
        assert_eq!(precedence("default", "web", "*", "*"), 3);
        assert_eq!(precedence("default", "*", "*", "*"), 2);
        assert_eq!(precedence("*", "*", "*", "*"), 1);
    }

    #[test]
    fn order_higher_precedence_first() {
        assert!(key(9, BASE) < key(8, BASE));
    }

    #[test]
    fn order_then_source_sameness_group() {
        assert!(key(9, BASE) < key(9, with(0, "g")));
    }

    #[test]
    fn order_then_source_peer() {
        assert!(key(9, with(1, "a")) < key(9, with(1, "b")));
        // Local (empty peer) sorts before peers, peers before sameness groups.
        assert!(key(9, BASE) < key(9, with(1, "a")));
        assert!(key(9, with(1, "z")) < key(9, with(0, "a")));
    }

    #[test]
    fn order_then_source_partition() {
        assert!(key(9, with(2, "a")) < key(9, with(2, "b")));
    }

    #[test]
    fn order_then_source_namespace() {
        assert!(key(9, with(3, "a")) < key(9, with(3, "b")));
    }

    #[test]
    fn order_then_source_name() {
        assert!(key(9, with(4, "a")) < key(9, with(4, "b")));
    }

    #[test]
    fn order_then_destination_partition() {
        assert!(key(9, with(5, "a")) < key(9, with(5, "b")));
    }

    #[test]
    fn order_then_destination_namespace() {
        assert!(key(9, with(6, "a")) < key(9, with(6, "b")));
    }

    #[test]
    fn order_then_destination_name() {
        assert!(key(9, with(7, "a")) < key(9, with(7, "b")));
        assert_eq!(key(9, BASE).cmp(&key(9, BASE)), Ordering::Equal);
    }

    #[test]
    fn validate_accumulates_errors() {
        let mut i = Intention::new("we*", "*", Action::Allow);
        i.destination_ns = "*".into();
        i.destination_name = "db".into();
        i.action = "maybe".into();
        i.source_type = "other".into();
        i.meta.insert("k".repeat(129), "v".repeat(513));
        let err = i.validate().unwrap_err();
        assert_eq!(err.0.len(), 6, "{err}");
        let s = err.to_string();
        assert!(s.starts_with("6 errors occurred:\n\t* SourceName: wildcard character '*' cannot be used with partial values\n"), "{s}");
        assert!(s.contains("DestinationName: exact value cannot follow wildcard namespace"));
        assert!(s.ends_with("\t* SourceType must be set to 'consul'\n\n"));
        Intention::new("web", "db", Action::Deny)
            .validate()
            .unwrap();
    }

    #[test]
    fn validate_refuses_names_that_can_never_match() {
        let err = Intention::new("WEB", "a/b", Action::Allow)
            .validate()
            .unwrap_err();
        assert_eq!(
            err.0,
            vec![
                IntentionError::InvalidName {
                    field: "SourceName",
                    value: "WEB".into(),
                    reason: NameErrorReason::BadStart,
                },
                IntentionError::InvalidName {
                    field: "DestinationName",
                    value: "a/b".into(),
                    reason: NameErrorReason::BadChar,
                },
            ]
        );
        assert_eq!(
            err.0[1].to_string(),
            "DestinationName: \"a/b\" is not a valid service name (may only hold a-z, 0-9, '-' and '_'), so the intention could never match"
        );
        for (src, dst) in [
            ("web", "Db"),
            ("-web", "db"),
            ("web", &"a".repeat(64)),
            ("web.1", "db"),
            ("web", "db "),
        ] {
            let err = Intention::new(src, dst, Action::Deny)
                .validate()
                .unwrap_err();
            assert!(
                matches!(err.0.as_slice(), [IntentionError::InvalidName { .. }]),
                "{src} -> {dst}: {err}"
            );
        }
        // The wildcard and every valid service name pass.
        for (src, dst) in [("*", "*"), ("web_2", "db-1"), ("0", &"a".repeat(63))] {
            Intention::new(src, dst, Action::Deny).validate().unwrap();
        }
        // A partial wildcard or an empty name is reported once, by its own rule.
        let mut i = Intention::new("we*", "db", Action::Allow);
        i.destination_name.clear();
        assert_eq!(
            i.validate().unwrap_err().0,
            vec![
                IntentionError::Missing("DestinationName"),
                IntentionError::PartialWildcard("SourceName"),
            ]
        );
        // Through the legacy API too.
        assert!(matches!(
            validate_legacy_apply(
                LegacyOp::Create,
                &Intention::new("WEB", "db", Action::Allow),
                None
            ),
            Err(LegacyApplyError::Invalid(_))
        ));
    }

    #[test]
    fn normalize_does_not_rewrite_names() {
        // Refused, not silently lower-cased into a different intention.
        let mut i = Intention::new("WEB", "Db", Action::Allow);
        i.source_ns.clear();
        i.normalize();
        assert_eq!(
            (i.source_name.as_str(), i.destination_name.as_str()),
            ("WEB", "Db")
        );
        assert_eq!(i.source_ns, DEFAULT_NAMESPACE);
        assert_eq!(i.validate().unwrap_err().0.len(), 2);
    }

    #[test]
    fn legacy_apply_rules() {
        let mut i = Intention::new("web", "db", Action::Allow);
        validate_legacy_apply(LegacyOp::Create, &i, None).unwrap();
        assert_eq!(
            validate_legacy_apply(LegacyOp::DeleteAll, &i, None)
                .unwrap_err()
                .to_string(),
            "Invalid Intention operation: delete-all"
        );
        i.id = "x".into();
        assert!(matches!(
            validate_legacy_apply(LegacyOp::Create, &i, None),
            Err(LegacyApplyError::IdOnCreate)
        ));
        assert!(matches!(
            validate_legacy_apply(LegacyOp::Update, &i, None),
            Err(LegacyApplyError::UpdateMissing(_))
        ));
        let mut moved = i.clone();
        moved.destination_name = "other".into();
        assert!(matches!(
            validate_legacy_apply(LegacyOp::Update, &moved, Some(&i)),
            Err(LegacyApplyError::DestinationChanged)
        ));
        validate_legacy_apply(LegacyOp::Delete, &i, Some(&i)).unwrap();
        let mut up = Intention::new("web", "db", Action::Deny);
        up.meta.insert("k".into(), "v".into());
        assert!(matches!(
            validate_legacy_apply(LegacyOp::Upsert, &up, None),
            Err(LegacyApplyError::MetaOnUpsert)
        ));
        up.source_peer = "p".into();
        assert!(matches!(
            validate_legacy_apply(LegacyOp::Upsert, &up, None),
            Err(LegacyApplyError::SourcePeer)
        ));
        let mut bad = Intention::new("web", "db", Action::Allow);
        bad.action.clear();
        assert!(matches!(
            validate_legacy_apply(LegacyOp::Create, &bad, None),
            Err(LegacyApplyError::Invalid(_))
        ));
    }

    #[test]
    fn display_matches_consul() {
        let mut i = Intention::new("foo", "bar", Action::Deny);
        assert_eq!(
            i.to_string(),
            "default/foo => default/bar (Precedence: 9, Action: DENY)"
        );
        i.id = "abc".into();
        assert_eq!(
            i.to_string(),
            "default/foo => default/bar (ID: abc, Precedence: 9, Action: DENY)"
        );
    }

    #[test]
    fn json_is_consul_api_shape() {
        let i = Intention::new("web", "db", Action::Allow);
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(v["SourceName"], "web");
        assert_eq!(v["DestinationNS"], "default");
        assert_eq!(v["Precedence"], 9);
        assert!(v.get("CreatedAt").is_none());
        let back: Intention = serde_json::from_value(v).unwrap();
        assert_eq!(back, i);
    }
}
