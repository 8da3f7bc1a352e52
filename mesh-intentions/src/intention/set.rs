//! An immutable, indexed snapshot of all intentions, and the decision for a connection.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::acl::{Authorizer, DefaultPolicy, Reason};

use super::model::{
    Action, DEFAULT_NAMESPACE, Intention, IntentionErrors, MatchType, WILDCARD,
    authorize_intention_target, check_wildcards,
};

/// The configured `default_intention_policy` value was not `allow`, `deny` or empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unsupported default intention policy: {0}")]
pub struct UnsupportedDefaultIntentionPolicy(pub String);

/// What decides when no intention matches (see docs/consul-compatibility.md, 'Intention default
/// decision').
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DefaultSource {
    /// The `default_intention_policy` setting.
    DefaultIntentionPolicy,
    /// The ACL default policy.
    AclDefaultPolicy(DefaultPolicy),
    /// ACLs are disabled (allow).
    AclsDisabled,
}

/// The decision used when no intention matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IntentionDefault {
    allow: bool,
    source: DefaultSource,
}

impl IntentionDefault {
    /// Parses a `default_intention_policy` setting: `allow`, `deny`, or `""` (unset).
    pub fn parse_policy(s: &str) -> Result<Option<Action>, UnsupportedDefaultIntentionPolicy> {
        match s {
            "" => Ok(None),
            _ => Action::parse(s)
                .map(Some)
                .ok_or_else(|| UnsupportedDefaultIntentionPolicy(s.to_owned())),
        }
    }

    /// The default from the ACL configuration: an explicit `default_intention_policy` wins;
    /// else the ACL default policy (`acl_default` is `None` when ACLs are disabled: allow).
    pub fn new(
        acl_default: Option<DefaultPolicy>,
        default_intention_policy: Option<Action>,
    ) -> Self {
        match (default_intention_policy, acl_default) {
            (Some(a), _) => Self {
                allow: a == Action::Allow,
                source: DefaultSource::DefaultIntentionPolicy,
            },
            (None, Some(d)) => Self {
                allow: d == DefaultPolicy::Allow,
                source: DefaultSource::AclDefaultPolicy(d),
            },
            (None, None) => Self {
                allow: true,
                source: DefaultSource::AclsDisabled,
            },
        }
    }

    /// The default as Consul derives it from an authorizer (`IntentionDefaultAllow`, which only
    /// the root of the chain answers: even a management token gets the ACL default policy).
    pub fn from_authorizer(authz: &Authorizer, default_intention_policy: Option<Action>) -> Self {
        if default_intention_policy.is_some() {
            return Self::new(None, default_intention_policy);
        }
        let d = authz.intention_default_allow();
        let source = match d.reason() {
            Reason::AclsDisabled => DefaultSource::AclsDisabled,
            _ if d.is_allowed() => DefaultSource::AclDefaultPolicy(DefaultPolicy::Allow),
            _ => DefaultSource::AclDefaultPolicy(DefaultPolicy::Deny),
        };
        Self {
            allow: d.is_allowed(),
            source,
        }
    }

    /// Whether the default allows.
    pub fn allows(&self) -> bool {
        self.allow
    }

    /// What set the default.
    pub fn source(&self) -> DefaultSource {
        self.source
    }
}

/// What decided a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntentionReason<'a> {
    /// The destination fails closed: a stored intention for it could not be read, so no
    /// connection to it is allowed until that record is fixed or deleted.
    FailClosed,
    /// An L4 intention matched.
    L4(&'a Intention),
    /// An L7 intention matched; for a connection-level check it counts as deny, as in Consul.
    L7(&'a Intention),
    /// No intention matched.
    Default(IntentionDefault),
}

/// The decision for one source → destination connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntentionDecision<'a> {
    allowed: bool,
    reason: IntentionReason<'a>,
}

impl<'a> IntentionDecision<'a> {
    /// Whether the connection is allowed.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }
    /// What decided.
    pub fn reason(&self) -> IntentionReason<'a> {
        self.reason
    }
    /// The matched intention, if one decided.
    pub fn intention(&self) -> Option<&'a Intention> {
        match self.reason {
            IntentionReason::L4(i) | IntentionReason::L7(i) => Some(i),
            IntentionReason::Default(_) | IntentionReason::FailClosed => None,
        }
    }
}

/// Consul's reason strings: `Matched L4 intention: <intention>`, `Matched L7 intention: ...`,
/// `Default intention policy`, `Default behavior configured by ACLs`.
impl fmt::Display for IntentionDecision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            IntentionReason::L4(i) => write!(f, "Matched L4 intention: {i}"),
            IntentionReason::L7(i) => write!(f, "Matched L7 intention: {i}"),
            IntentionReason::FailClosed => {
                f.write_str("Denied: a stored intention for this destination is invalid")
            }
            IntentionReason::Default(d) => match d.source {
                DefaultSource::DefaultIntentionPolicy => f.write_str("Default intention policy"),
                _ => f.write_str("Default behavior configured by ACLs"),
            },
        }
    }
}

/// Consul's `IntentionDecisionSummary`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecisionSummary<'a> {
    /// Whether allowed.
    pub allowed: bool,
    /// Whether the matched intention has L7 permissions.
    pub has_permissions: bool,
    /// `Meta["external-source"]` of the matched intention.
    pub external_source: &'a str,
    /// Whether neither name of the matched intention is `*`.
    pub has_exact: bool,
    /// The default that applied (or would have).
    pub default_allow: bool,
}

/// Consul's `IntentionDecision` over a candidate list already in precedence order: the first
/// candidate matching `target` on `match_type` decides; L7 intentions answer
/// `allow_permissions`.
pub fn decision_summary<'a>(
    candidates: &[&'a Intention],
    target: &str,
    match_type: MatchType,
    default_allow: bool,
    allow_permissions: bool,
) -> DecisionSummary<'a> {
    for ixn in candidates {
        let (_, matched) =
            authorize_intention_target(target, DEFAULT_NAMESPACE, "", ixn, match_type);
        if !matched {
            continue;
        }
        let has_permissions = ixn.has_permissions();
        return DecisionSummary {
            allowed: if has_permissions {
                allow_permissions
            } else {
                ixn.action() == Some(Action::Allow)
            },
            has_permissions,
            external_source: ixn.external_source(),
            has_exact: ixn.is_exact(),
            default_allow,
        };
    }
    DecisionSummary {
        allowed: default_allow,
        has_permissions: false,
        external_source: "",
        has_exact: false,
        default_allow,
    }
}

/// An intention the set cannot index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("intention {index} ({intention}) is invalid: {errors}")]
pub struct IntentionSetError {
    /// Its position in the input.
    pub index: usize,
    /// The intention, rendered.
    pub intention: String,
    /// What is wrong.
    pub errors: IntentionErrors,
}

const NONE: u32 = u32::MAX;

#[derive(Debug, Default)]
struct SrcIndex {
    by_name: HashMap<Box<str>, u32>,
    wildcard: u32,
}

impl SrcIndex {
    fn new() -> Self {
        Self {
            by_name: HashMap::new(),
            wildcard: NONE,
        }
    }

    fn insert(&mut self, name: &str, rank: u32) {
        // Ranks arrive in increasing order, so the first one kept is the best.
        if name == WILDCARD {
            self.wildcard = self.wildcard.min(rank);
        } else {
            self.by_name.entry(name.into()).or_insert(rank);
        }
    }

    fn best(&self, name: &str) -> u32 {
        let exact = if self.by_name.is_empty() {
            NONE
        } else {
            self.by_name.get(name).copied().unwrap_or(NONE)
        };
        exact.min(self.wildcard)
    }
}

#[derive(Debug)]
struct DestIndex {
    /// Ranks of every intention with this destination, ascending.
    members: Vec<u32>,
    local: SrcIndex,
    peers: HashMap<Box<str>, SrcIndex>,
}

impl DestIndex {
    fn new() -> Self {
        Self {
            members: Vec::new(),
            local: SrcIndex::new(),
            peers: HashMap::new(),
        }
    }

    fn best(&self, source: &str, peer: &str) -> u32 {
        if peer.is_empty() {
            self.local.best(source)
        } else {
            self.peers.get(peer).map_or(NONE, |s| s.best(source))
        }
    }
}

/// All intentions of a datacenter, sorted once in evaluation order and indexed for lookups.
///
/// Immutable: build a new set when intentions change and publish it through an
/// `arc_swap::ArcSwap<IntentionSet>` (see [`SharedIntentions`](super::SharedIntentions)).
/// A decision costs the same with 10 or 100,000 intentions: one hash lookup of the destination
/// name, then in that bucket and in the wildcard-destination bucket one hash lookup of the
/// source name plus a precomputed wildcard-source entry; the smallest precomputed rank wins.
///
/// Namespaces follow Consul CE: every name lives in `default`, so a namespace is either `*`
/// (which implies the name `*`) or the one namespace. Sources in a sameness group never match
/// (no sameness groups in CE).
#[derive(Debug)]
pub struct IntentionSet {
    all: Vec<Intention>,
    by_dest: HashMap<Box<str>, DestIndex>,
    wild_dest: DestIndex,
    by_src: HashMap<Box<str>, Vec<u32>>,
    wild_src: Vec<u32>,
    /// Destinations that deny every connection (`*`: all of them).
    closed: HashSet<Box<str>>,
}

impl Default for IntentionSet {
    fn default() -> Self {
        Self {
            all: Vec::new(),
            by_dest: HashMap::new(),
            wild_dest: DestIndex::new(),
            by_src: HashMap::new(),
            wild_src: Vec::new(),
            closed: HashSet::new(),
        }
    }
}

impl IntentionSet {
    /// An empty set: every decision is the default.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds the set. Each intention is normalised (namespaces, precedence recomputed); an
    /// intention that breaks the wildcard rules, names nothing, or has neither a valid action
    /// nor permissions is refused, so a stored set can never decide on garbage.
    pub fn build(
        intentions: impl IntoIterator<Item = Intention>,
    ) -> Result<Self, IntentionSetError> {
        let mut all: Vec<Intention> = Vec::new();
        for (index, mut ixn) in intentions.into_iter().enumerate() {
            ixn.normalize();
            let mut errors = Vec::new();
            if ixn.source_name.is_empty() {
                errors.push(super::model::IntentionError::Missing("SourceName"));
            }
            if ixn.destination_name.is_empty() {
                errors.push(super::model::IntentionError::Missing("DestinationName"));
            }
            check_wildcards(
                ("SourceNS", &ixn.source_ns),
                ("SourceName", &ixn.source_name),
                &mut errors,
            );
            check_wildcards(
                ("DestinationNS", &ixn.destination_ns),
                ("DestinationName", &ixn.destination_name),
                &mut errors,
            );
            if !ixn.has_permissions() && ixn.action().is_none() {
                errors.push(super::model::IntentionError::BadAction);
            }
            if !errors.is_empty() {
                return Err(IntentionSetError {
                    index,
                    intention: ixn.to_string(),
                    errors: IntentionErrors(errors),
                });
            }
            all.push(ixn);
        }
        // Sort indices, not the (large) intentions themselves, then move each once.
        let mut order: Vec<u32> = (0..all.len() as u32).collect();
        order.sort_by(|a, b| {
            all[*a as usize]
                .precedence_key()
                .cmp(&all[*b as usize].precedence_key())
        });
        let mut slots: Vec<Option<Intention>> = all.into_iter().map(Some).collect();
        let all: Vec<Intention> = order
            .iter()
            .filter_map(|i| slots[*i as usize].take())
            .collect();
        let mut set = Self {
            all: Vec::new(),
            ..Self::default()
        };
        for (rank, ixn) in all.iter().enumerate() {
            let rank = rank as u32;
            let dest = if ixn.destination_name == WILDCARD {
                &mut set.wild_dest
            } else {
                set.by_dest
                    .entry(ixn.destination_name.as_str().into())
                    .or_insert_with(DestIndex::new)
            };
            dest.members.push(rank);
            if !ixn.source_sameness_group.is_empty() {
                continue;
            }
            if ixn.source_peer.is_empty() {
                dest.local.insert(&ixn.source_name, rank);
                if ixn.source_name == WILDCARD {
                    set.wild_src.push(rank);
                } else {
                    set.by_src
                        .entry(ixn.source_name.as_str().into())
                        .or_default()
                        .push(rank);
                }
            } else {
                dest.peers
                    .entry(ixn.source_peer.as_str().into())
                    .or_insert_with(SrcIndex::new)
                    .insert(&ixn.source_name, rank);
            }
        }
        set.all = all;
        Ok(set)
    }

    /// Makes each destination of `destinations` deny every connection, whatever the
    /// intentions say (`*` closes every destination). A control plane that finds a stored
    /// intention it cannot read closes its destination instead of guessing what it said.
    pub fn with_closed_destinations<S: AsRef<str>>(
        mut self,
        destinations: impl IntoIterator<Item = S>,
    ) -> Self {
        self.closed
            .extend(destinations.into_iter().map(|d| d.as_ref().into()));
        self
    }

    /// The destinations that fail closed.
    pub fn closed_destinations(&self) -> impl Iterator<Item = &str> + '_ {
        self.closed.iter().map(AsRef::as_ref)
    }

    /// How many intentions the set holds.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Every intention, in evaluation order.
    pub fn iter(&self) -> impl Iterator<Item = &Intention> + '_ {
        self.all.iter()
    }

    /// The decision for a connection from local service `source` to `destination`.
    pub fn decide(
        &self,
        source: &str,
        destination: &str,
        default: IntentionDefault,
    ) -> IntentionDecision<'_> {
        self.decide_from_peer(source, "", destination, default)
    }

    /// The decision for a connection from `source` imported from `peer` (`""` for local).
    pub fn decide_from_peer(
        &self,
        source: &str,
        peer: &str,
        destination: &str,
        default: IntentionDefault,
    ) -> IntentionDecision<'_> {
        if !self.closed.is_empty()
            && (self.closed.contains(destination) || self.closed.contains(WILDCARD))
        {
            return IntentionDecision {
                allowed: false,
                reason: IntentionReason::FailClosed,
            };
        }
        match self.best(source, peer, destination) {
            Some(ixn) if ixn.has_permissions() => IntentionDecision {
                allowed: false,
                reason: IntentionReason::L7(ixn),
            },
            Some(ixn) => IntentionDecision {
                allowed: ixn.action() == Some(Action::Allow),
                reason: IntentionReason::L4(ixn),
            },
            None => IntentionDecision {
                allowed: default.allow,
                reason: IntentionReason::Default(default),
            },
        }
    }

    /// The first intention, in evaluation order, matching both source and destination.
    pub fn best(&self, source: &str, peer: &str, destination: &str) -> Option<&Intention> {
        let exact = self
            .by_dest
            .get(destination)
            .map_or(NONE, |d| d.best(source, peer));
        let rank = exact.min(self.wild_dest.best(source, peer));
        self.all.get(rank as usize)
    }

    /// Intentions whose destination matches `name` (`name` or `*`), in evaluation order
    /// (Consul's `IntentionMatch` by destination).
    pub fn match_destination(&self, name: &str) -> Vec<&Intention> {
        let exact = self.by_dest.get(name).map_or(&[][..], |d| &d.members[..]);
        self.merged(exact, &self.wild_dest.members)
    }

    /// Local intentions whose source matches `name` (`name` or `*`), in evaluation order
    /// (Consul's `IntentionMatch` by source).
    pub fn match_source(&self, name: &str) -> Vec<&Intention> {
        let exact = self.by_src.get(name).map_or(&[][..], |v| &v[..]);
        self.merged(exact, &self.wild_src)
    }

    fn merged(&self, a: &[u32], b: &[u32]) -> Vec<&Intention> {
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let take_a = j >= b.len() || (i < a.len() && a[i] < b[j]);
            let r = if take_a {
                i += 1;
                a[i - 1]
            } else {
                j += 1;
                b[j - 1]
            };
            if let Some(ixn) = self.all.get(r as usize) {
                out.push(ixn);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny_default() -> IntentionDefault {
        IntentionDefault::new(Some(DefaultPolicy::Deny), None)
    }

    #[test]
    fn exact_beats_wildcards_and_default_applies() {
        let set = IntentionSet::build([
            Intention::new("*", "db", Action::Deny),
            Intention::new("web", "db", Action::Allow),
            Intention::new("web", "*", Action::Deny),
            Intention::new("*", "*", Action::Allow),
        ])
        .unwrap();
        let d = set.decide("web", "db", deny_default());
        assert!(d.is_allowed());
        assert_eq!(
            d.to_string(),
            "Matched L4 intention: default/web => default/db (Precedence: 9, Action: ALLOW)"
        );
        assert!(!set.decide("api", "db", deny_default()).is_allowed());
        assert!(!set.decide("web", "cache", deny_default()).is_allowed());
        assert!(set.decide("api", "cache", deny_default()).is_allowed());
        let empty = IntentionSet::empty();
        let d = empty.decide("a", "b", deny_default());
        assert!(!d.is_allowed());
        assert_eq!(d.to_string(), "Default behavior configured by ACLs");
        assert_eq!(d.intention(), None);
    }

    #[test]
    fn peers_and_l7() {
        let mut peered = Intention::new("web", "db", Action::Allow);
        peered.source_peer = "other".into();
        let mut l7 = Intention::new("api", "db", Action::Allow);
        l7.action.clear();
        l7.permissions.push(super::super::model::Permission {
            action: "allow".into(),
            ..Default::default()
        });
        let set = IntentionSet::build([peered, l7]).unwrap();
        assert!(!set.decide("web", "db", deny_default()).is_allowed());
        assert!(
            set.decide_from_peer("web", "other", "db", deny_default())
                .is_allowed()
        );
        let d = set.decide("api", "db", IntentionDefault::new(None, None));
        assert!(!d.is_allowed());
        assert!(d.to_string().starts_with("Matched L7 intention: "));
    }

    #[test]
    fn build_refuses_garbage() {
        let mut bad = Intention::new("web", "db", Action::Allow);
        bad.action = "sure".into();
        assert!(IntentionSet::build([bad]).is_err());
        assert!(IntentionSet::build([Intention::new("w*", "db", Action::Allow)]).is_err());
        assert!(IntentionSet::build([Intention::new("", "db", Action::Allow)]).is_err());
    }

    #[test]
    fn default_policy_parsing() {
        assert_eq!(IntentionDefault::parse_policy(""), Ok(None));
        assert_eq!(
            IntentionDefault::parse_policy("allow"),
            Ok(Some(Action::Allow))
        );
        assert_eq!(
            IntentionDefault::parse_policy("maybe")
                .unwrap_err()
                .to_string(),
            "Unsupported default intention policy: maybe"
        );
        let d = IntentionDefault::from_authorizer(&Authorizer::acls_disabled(), None);
        assert!(d.allows());
        assert_eq!(d.source(), DefaultSource::AclsDisabled);
    }
}
