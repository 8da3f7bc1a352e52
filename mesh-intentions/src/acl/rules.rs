//! The rules of one ACL policy: a validated, order-free set, and why rules are refused.
//!
//! Nothing here reads rules text: `parse` builds [`Rules`] from text (and adds
//! [`Rules::parse`]), depending on this module and not the other way round.

use std::collections::BTreeMap;
use std::fmt;

use super::level::AccessLevel;

/// Longest rules text accepted, in bytes (see [`crate::acl::parse_rules`]).
pub const MAX_RULES_LEN: usize = 4 * 1024 * 1024;

/// A 1-based line and column (in characters) in rules text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, counted in characters.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Renders ` at L:C` or nothing.
struct At(Option<Position>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, " at {p}"),
            None => Ok(()),
        }
    }
}

/// Renders ` for block "name"` or nothing.
struct For<'a>(&'a str, Option<&'a str>);

impl fmt::Display for For<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(n) => write!(f, " for {} {:?}", self.0, n),
            None => Ok(()),
        }
    }
}

/// Why rules text was refused. Messages start like Consul's (`Failed to parse ACL rules: ...`,
/// `Invalid service policy: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// Malformed HCL or JSON.
    #[error("Failed to parse ACL rules: {message}{}", At(*position))]
    Syntax {
        /// What is wrong.
        message: String,
        /// Where (always set for HCL; set for JSON when the JSON parser knows it).
        position: Option<Position>,
    },
    /// The text is longer than [`MAX_RULES_LEN`].
    #[error("Failed to parse ACL rules: rules text is {len} bytes, the limit is {MAX_RULES_LEN}")]
    TooLong {
        /// The length seen.
        len: usize,
    },
    /// A single-valued rule or a block attribute was set twice.
    #[error(
        "Failed to parse ACL rules: The argument {key:?}{} was already set. Each argument can only be defined once",
        At(*position)
    )]
    DuplicateKey {
        /// The key set twice.
        key: String,
        /// Where the second occurrence is.
        position: Option<Position>,
    },
    /// The same block and name appears twice (`service "web"` twice).
    #[error("Failed to parse ACL rules: {block} {name:?}{} is defined more than once", At(*position))]
    DuplicateRule {
        /// The block name (`service_prefix`).
        block: String,
        /// The repeated name.
        name: String,
        /// Where the second occurrence is.
        position: Option<Position>,
    },
    /// A top-level key that is no ACL resource (Consul ignores these; mesh refuses them).
    #[error("Failed to parse ACL rules: unknown rule {key:?}{}", At(*position))]
    UnknownKey {
        /// The key.
        key: String,
        /// Where it is.
        position: Option<Position>,
    },
    /// An attribute a block does not have (only `policy`, plus `intentions` for services).
    #[error("Failed to parse ACL rules: unknown attribute {attribute:?} in {block} {name:?}{}", At(*position))]
    UnknownAttribute {
        /// The block name.
        block: String,
        /// The block's label.
        name: String,
        /// The unknown attribute.
        attribute: String,
        /// Where it is.
        position: Option<Position>,
    },
    /// A value of the wrong shape (a block where a string is needed, a number, a list...).
    #[error("Failed to parse ACL rules: {key:?} must be {expected}, found {found}{}", At(*position))]
    WrongType {
        /// The key whose value is wrong.
        key: String,
        /// What is needed.
        expected: &'static str,
        /// What was found.
        found: &'static str,
        /// Where it is.
        position: Option<Position>,
    },
    /// A block without exactly one name label (`service { ... }`, `service "a" "b" { ... }`).
    #[error("Failed to parse ACL rules: block {block:?} needs exactly one name, found {labels}{}", At(*position))]
    BadLabels {
        /// The block name.
        block: String,
        /// How many labels it had.
        labels: usize,
        /// Where it is.
        position: Option<Position>,
    },
    /// A level that is not valid for the rule (`Invalid service policy: "nope" ...`).
    #[error("Invalid {rule} policy: {value:?}{}{}", For(rule, name.as_deref()), At(*position))]
    InvalidLevel {
        /// The rule (`service`, `service_prefix intentions`, `acl`).
        rule: String,
        /// The block's name, for named rules.
        name: Option<String>,
        /// The refused value.
        value: String,
        /// Where it is.
        position: Option<Position>,
    },
    /// A block without its `policy` attribute.
    #[error("Invalid {block} policy: missing \"policy\" for {block} {name:?}{}", At(*position))]
    MissingPolicy {
        /// The block name.
        block: String,
        /// The block's label.
        name: String,
        /// Where the block is.
        position: Option<Position>,
    },
}

impl RulesError {
    /// Sets the position of an error that has none yet (the parser locates the errors that
    /// [`Rules::add`] and [`Rules::set_single`] report without one).
    pub(crate) fn located(mut self, at: Option<Position>) -> Self {
        match &mut self {
            Self::Syntax { position, .. }
            | Self::DuplicateKey { position, .. }
            | Self::DuplicateRule { position, .. }
            | Self::UnknownKey { position, .. }
            | Self::UnknownAttribute { position, .. }
            | Self::WrongType { position, .. }
            | Self::BadLabels { position, .. }
            | Self::InvalidLevel { position, .. }
            | Self::MissingPolicy { position, .. } => {
                if position.is_none() {
                    *position = at;
                }
            }
            Self::TooLong { .. } => {}
        }
        self
    }
}

/// A rule family keyed by a name or prefix (`service "web"`, `key_prefix "app/"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `agent` / `agent_prefix`: the agent API of a node.
    Agent,
    /// `event` / `event_prefix`: user events.
    Event,
    /// `key` / `key_prefix`: the KV store.
    Key,
    /// `node` / `node_prefix`: catalog nodes.
    Node,
    /// `query` / `query_prefix`: prepared queries.
    Query,
    /// `service` / `service_prefix`: services (and, derived, intentions).
    Service,
    /// `session` / `session_prefix`: sessions on a node.
    Session,
}

impl Family {
    /// Every family, in canonical order.
    pub const ALL: [Family; 7] = [
        Self::Agent,
        Self::Event,
        Self::Key,
        Self::Node,
        Self::Query,
        Self::Service,
        Self::Session,
    ];

    /// The block name of the exact form (`service`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Event => "event",
            Self::Key => "key",
            Self::Node => "node",
            Self::Query => "query",
            Self::Service => "service",
            Self::Session => "session",
        }
    }

    /// The block name for a match kind (`service` or `service_prefix`).
    pub fn block_name(self, kind: MatchKind) -> &'static str {
        match (self, kind) {
            (f, MatchKind::Exact) => f.as_str(),
            (Self::Agent, MatchKind::Prefix) => "agent_prefix",
            (Self::Event, MatchKind::Prefix) => "event_prefix",
            (Self::Key, MatchKind::Prefix) => "key_prefix",
            (Self::Node, MatchKind::Prefix) => "node_prefix",
            (Self::Query, MatchKind::Prefix) => "query_prefix",
            (Self::Service, MatchKind::Prefix) => "service_prefix",
            (Self::Session, MatchKind::Prefix) => "session_prefix",
        }
    }

    /// Looks a block name up: `"service_prefix"` gives `(Service, Prefix)`.
    pub fn from_block_name(s: &str) -> Option<(Family, MatchKind)> {
        Self::ALL.iter().find_map(|f| {
            [MatchKind::Exact, MatchKind::Prefix]
                .into_iter()
                .find(|k| f.block_name(*k) == s)
                .map(|k| (*f, k))
        })
    }

    /// Whether `list` is a valid level for this family (only `key`).
    pub fn allows_list(self) -> bool {
        self == Self::Key
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a named rule matches one name exactly or every name starting with its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchKind {
    /// `service "web"`: only the name `web`.
    Exact,
    /// `service_prefix "web"`: every name starting with `web` (`""` matches all).
    Prefix,
}

/// A single-valued rule (`acl = "write"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SingleRule {
    /// ACL management (tokens, policies, roles); `acl = "write"` also allows snapshots.
    Acl,
    /// The gossip keyring.
    Keyring,
    /// Mesh-wide configuration; unset falls back to `operator`.
    Mesh,
    /// Cluster operator actions.
    Operator,
    /// Cluster peering; unset falls back to `operator`.
    Peering,
}

impl SingleRule {
    /// Every single-valued rule, in canonical order.
    pub const ALL: [SingleRule; 5] = [
        Self::Acl,
        Self::Keyring,
        Self::Mesh,
        Self::Operator,
        Self::Peering,
    ];

    /// The attribute name (`acl`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acl => "acl",
            Self::Keyring => "keyring",
            Self::Mesh => "mesh",
            Self::Operator => "operator",
            Self::Peering => "peering",
        }
    }

    /// Looks an attribute name up.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SingleRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a named rule grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Grant {
    /// The `policy` level.
    pub policy: AccessLevel,
    /// The explicit `intentions` level (service rules only); `None` means derived from
    /// `policy` (`read` when policy is `read` or `write`, else `deny`).
    pub intentions: Option<AccessLevel>,
}

/// One named rule, as returned by [`Rules::iter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule<'a> {
    /// Its family.
    pub family: Family,
    /// Exact or prefix.
    pub kind: MatchKind,
    /// The name or prefix.
    pub name: &'a str,
    /// What it grants.
    pub grant: Grant,
}

/// The rules of one policy: single-valued rules and named rules, validated.
///
/// A rules document is a set: each single-valued rule and each (family, exact/prefix, name)
/// appears at most once (a second occurrence is refused), so source order carries no meaning
/// and [`Rules::to_json`] renders in a fixed, sorted order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    single: [Option<AccessLevel>; 5],
    named: BTreeMap<(Family, MatchKind, String), Grant>,
}

impl Rules {
    /// An empty rule set (grants nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self.single.iter().all(Option::is_none) && self.named.is_empty()
    }

    /// The number of named rules.
    pub fn named_len(&self) -> usize {
        self.named.len()
    }

    /// The level of a single-valued rule, `None` when unset.
    pub fn single(&self, rule: SingleRule) -> Option<AccessLevel> {
        self.single[rule.index()]
    }

    /// Sets a single-valued rule. `list` is refused (it is valid only for keys); setting a
    /// rule twice is refused.
    pub fn set_single(&mut self, rule: SingleRule, level: AccessLevel) -> Result<(), RulesError> {
        if level == AccessLevel::List {
            return Err(RulesError::InvalidLevel {
                rule: rule.as_str().to_owned(),
                name: None,
                value: level.as_str().to_owned(),
                position: None,
            });
        }
        let slot = &mut self.single[rule.index()];
        if slot.is_some() {
            return Err(RulesError::DuplicateKey {
                key: rule.as_str().to_owned(),
                position: None,
            });
        }
        *slot = Some(level);
        Ok(())
    }

    /// Adds a named rule. Refuses `list` outside key rules, an `intentions` level outside
    /// service rules or equal to `list`, and a second rule for the same family, kind and name.
    pub fn add(
        &mut self,
        family: Family,
        kind: MatchKind,
        name: impl Into<String>,
        grant: Grant,
    ) -> Result<(), RulesError> {
        let name = name.into();
        let block = family.block_name(kind);
        if grant.policy == AccessLevel::List && !family.allows_list() {
            return Err(RulesError::InvalidLevel {
                rule: block.to_owned(),
                name: Some(name),
                value: grant.policy.as_str().to_owned(),
                position: None,
            });
        }
        if let Some(i) = grant.intentions {
            if family != Family::Service {
                return Err(RulesError::UnknownAttribute {
                    block: block.to_owned(),
                    name,
                    attribute: "intentions".to_owned(),
                    position: None,
                });
            }
            if i == AccessLevel::List {
                return Err(RulesError::InvalidLevel {
                    rule: format!("{block} intentions"),
                    name: Some(name),
                    value: i.as_str().to_owned(),
                    position: None,
                });
            }
        }
        match self.named.entry((family, kind, name)) {
            std::collections::btree_map::Entry::Occupied(e) => Err(RulesError::DuplicateRule {
                block: block.to_owned(),
                name: e.key().2.clone(),
                position: None,
            }),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(grant);
                Ok(())
            }
        }
    }

    /// The named rule for a family, kind and name.
    pub fn get(&self, family: Family, kind: MatchKind, name: &str) -> Option<Grant> {
        // BTreeMap lookups need an owned key here; rules are looked up only in tests and
        // tooling, the authorizer has its own index.
        self.named.get(&(family, kind, name.to_owned())).copied()
    }

    /// All named rules, sorted by family, kind, then name.
    pub fn iter(&self) -> impl Iterator<Item = Rule<'_>> + '_ {
        self.named.iter().map(|((family, kind, name), grant)| Rule {
            family: *family,
            kind: *kind,
            name: name.as_str(),
            grant: *grant,
        })
    }

    /// Renders the canonical JSON form: keys in a fixed order (single-valued and block names
    /// sorted alphabetically, names sorted), unset rules omitted, levels lower case, no
    /// whitespace. [`Rules::parse`] of the result gives back an equal value.
    pub fn to_json(&self) -> String {
        let mut sections: BTreeMap<&'static str, String> = BTreeMap::new();
        for rule in SingleRule::ALL {
            if let Some(level) = self.single(rule) {
                sections.insert(rule.as_str(), format!("\"{}\"", level.as_str()));
            }
        }
        let mut blocks: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        for r in self.iter() {
            let mut body = format!("{{\"policy\":\"{}\"", r.grant.policy.as_str());
            if let Some(i) = r.grant.intentions {
                body.push_str(&format!(",\"intentions\":\"{}\"", i.as_str()));
            }
            body.push('}');
            blocks
                .entry(r.family.block_name(r.kind))
                .or_default()
                .push(format!("{}:{body}", json_string(r.name)));
        }
        for (block, entries) in blocks {
            sections.insert(block, format!("{{{}}}", entries.join(",")));
        }
        let parts: Vec<String> = sections
            .into_iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    /// Renders the rules as HCL (one block per named rule, attributes on their own lines).
    /// [`Rules::parse`] of the result gives back an equal value.
    pub fn to_hcl(&self) -> String {
        let mut out = String::new();
        for rule in SingleRule::ALL {
            if let Some(level) = self.single(rule) {
                out.push_str(&format!("{} = \"{}\"\n", rule.as_str(), level.as_str()));
            }
        }
        for r in self.iter() {
            out.push_str(&format!(
                "{} {} {{\n  policy = \"{}\"\n",
                r.family.block_name(r.kind),
                hcl_string(r.name),
                r.grant.policy.as_str()
            ));
            if let Some(i) = r.grant.intentions {
                out.push_str(&format!("  intentions = \"{}\"\n", i.as_str()));
            }
            out.push_str("}\n");
        }
        out
    }
}

/// A JSON string literal (serde_json's escaping, which cannot fail for a `str`).
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// An HCL string literal, escaping what the parser in this crate unescapes.
fn hcl_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_names_round_trip() {
        for f in Family::ALL {
            for k in [MatchKind::Exact, MatchKind::Prefix] {
                assert_eq!(Family::from_block_name(f.block_name(k)), Some((f, k)));
            }
        }
        assert_eq!(Family::from_block_name("identity"), None);
    }

    #[test]
    fn add_refuses_duplicates_and_bad_levels() {
        let mut r = Rules::new();
        let g = Grant {
            policy: AccessLevel::Read,
            intentions: None,
        };
        r.add(Family::Service, MatchKind::Exact, "web", g).unwrap();
        assert!(matches!(
            r.add(Family::Service, MatchKind::Exact, "web", g),
            Err(RulesError::DuplicateRule { .. })
        ));
        // The same name as a prefix is a different rule.
        r.add(Family::Service, MatchKind::Prefix, "web", g).unwrap();
        let list = Grant {
            policy: AccessLevel::List,
            intentions: None,
        };
        assert!(r.add(Family::Node, MatchKind::Exact, "n", list).is_err());
        r.add(Family::Key, MatchKind::Prefix, "app/", list).unwrap();
        let with_int = Grant {
            policy: AccessLevel::Read,
            intentions: Some(AccessLevel::Write),
        };
        assert!(matches!(
            r.add(Family::Node, MatchKind::Exact, "n", with_int),
            Err(RulesError::UnknownAttribute { .. })
        ));
        assert!(r.set_single(SingleRule::Acl, AccessLevel::List).is_err());
        r.set_single(SingleRule::Acl, AccessLevel::Read).unwrap();
        assert!(r.set_single(SingleRule::Acl, AccessLevel::Write).is_err());
    }

    #[test]
    fn renders_canonical_json_and_hcl() {
        let r = Rules::parse(
            "service \"web\" { policy = \"WRITE\" intentions = \"read\" }\nacl = \"read\"\nkey_prefix \"a\\\"b\" { policy = \"list\" }",
        )
        .unwrap();
        assert_eq!(
            r.to_json(),
            r#"{"acl":"read","key_prefix":{"a\"b":{"policy":"list"}},"service":{"web":{"policy":"write","intentions":"read"}}}"#
        );
        assert_eq!(Rules::parse(&r.to_json()).unwrap(), r);
        assert_eq!(Rules::parse(&r.to_hcl()).unwrap(), r);
        assert_eq!(Rules::new().to_json(), "{}");
    }
}
