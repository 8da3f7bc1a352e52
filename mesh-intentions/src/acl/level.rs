//! Access levels, the required access of a check, and Consul's `enforce` table.

use std::fmt;

/// The level a rule grants: `deny`, `read`, `list` (key rules only) or `write`.
///
/// Parsing is case-insensitive and the value is stored lower case, so `"WRITE"` means `write`
/// everywhere: in validation, in merging and in the implied `intentions` level. (Consul validates
/// case-insensitively but merges and derives intentions case-sensitively, so there `"WRITE"`
/// silently loses to `"read"`; mesh does not copy that.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessLevel {
    /// No access; beats every other level when policies are merged.
    Deny,
    /// Read access.
    Read,
    /// Read and list access (valid only for `key` and `key_prefix` rules).
    List,
    /// Full access.
    Write,
}

impl AccessLevel {
    /// All levels, weakest merge precedence first.
    pub const ALL: [AccessLevel; 4] = [Self::Read, Self::List, Self::Write, Self::Deny];

    /// Parses a level, ignoring ASCII case. `None` for anything else, including `""`.
    pub fn parse(s: &str) -> Option<Self> {
        const NAMES: [(&str, AccessLevel); 4] = [
            ("deny", AccessLevel::Deny),
            ("read", AccessLevel::Read),
            ("list", AccessLevel::List),
            ("write", AccessLevel::Write),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, l)| *l)
    }

    /// The canonical (lower-case) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Read => "read",
            Self::List => "list",
            Self::Write => "write",
        }
    }

    /// Merge precedence: `deny` > `write` > `list` > `read` (> unset, which is 0).
    fn rank(self) -> u8 {
        match self {
            Self::Read => 1,
            Self::List => 2,
            Self::Write => 3,
            Self::Deny => 4,
        }
    }
}

impl fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Merge rank of an optional level (unset ranks lowest).
pub(crate) fn rank(level: Option<AccessLevel>) -> u8 {
    level.map_or(0, AccessLevel::rank)
}

/// Consul's `takesPrecedenceOver(a, b)` used when several policies are merged:
/// `deny` > `write` > `list` > `read` > unset. Like Consul, `deny` takes precedence over `deny`.
pub fn takes_precedence_over(a: Option<AccessLevel>, b: Option<AccessLevel>) -> bool {
    a == Some(AccessLevel::Deny) || rank(a) > rank(b)
}

/// The access a check requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Required {
    /// Read access.
    Read,
    /// List access (keys).
    List,
    /// Write access.
    Write,
}

impl Required {
    /// The lower-case name, as used in permission strings (`service:write`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::List => "list",
            Self::Write => "write",
        }
    }
}

/// The outcome of a check that made a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Access granted.
    Allow,
    /// Access refused.
    Deny,
}

impl Effect {
    /// `true` for [`Effect::Allow`].
    pub fn is_allow(self) -> bool {
        self == Self::Allow
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        })
    }
}

/// Consul's `enforce(rule, required)`: `None` when no rule applies (the authorizer has
/// no opinion and the next one in the chain decides).
pub fn enforce(rule: Option<AccessLevel>, required: Required) -> Option<Effect> {
    let rule = rule?;
    Some(match (rule, required) {
        (AccessLevel::Write, _) => Effect::Allow,
        (AccessLevel::List, Required::Read | Required::List) => Effect::Allow,
        (AccessLevel::Read, Required::Read) => Effect::Allow,
        _ => Effect::Deny,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_case_insensitive_and_normalises() {
        assert_eq!(AccessLevel::parse("WRITE"), Some(AccessLevel::Write));
        assert_eq!(AccessLevel::parse("Read").map(|l| l.as_str()), Some("read"));
        assert_eq!(AccessLevel::parse(""), None);
        assert_eq!(AccessLevel::parse("nope"), None);
        assert_eq!(AccessLevel::parse("writ"), None);
    }

    #[test]
    fn precedence_orders_deny_write_list_read_unset() {
        use AccessLevel::*;
        assert!(takes_precedence_over(Some(Deny), Some(Write)));
        assert!(takes_precedence_over(Some(Write), Some(List)));
        assert!(takes_precedence_over(Some(List), Some(Read)));
        assert!(takes_precedence_over(Some(Read), None));
        assert!(!takes_precedence_over(None, None));
        assert!(!takes_precedence_over(Some(Read), Some(Write)));
    }
}
