//! Compiling policies into an authorizer, and the decisions it returns.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use mesh_core::Datacenter;

use super::level::{AccessLevel, Effect, Required, enforce, rank};
use super::rules::{Family, Grant, MatchKind, Rules, SingleRule};
use super::token::{
    AccessorId, NodeIdentity, Policy, PolicyId, Role, RoleId, ServiceIdentity, Token,
};

/// Where a rule came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuleSource {
    /// A policy.
    Policy {
        /// Its ID.
        id: PolicyId,
        /// Its name.
        name: String,
    },
    /// The synthetic policy of a service identity.
    ServiceIdentity {
        /// The service name.
        service: String,
    },
    /// The synthetic policy of a node identity.
    NodeIdentity {
        /// The node name.
        node: String,
        /// Its datacenter.
        datacenter: Datacenter,
    },
    /// Rules given directly (tests, tooling), with a label.
    Inline {
        /// A label for messages.
        label: String,
    },
}

impl RuleSource {
    /// The source of a policy's rules.
    pub fn policy(p: &Policy) -> Self {
        Self::Policy {
            id: p.id().clone(),
            name: p.name().to_owned(),
        }
    }
}

impl fmt::Display for RuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Policy { id, name } => write!(f, "policy {name:?} ({id})"),
            Self::ServiceIdentity { service } => write!(f, "service identity {service:?}"),
            Self::NodeIdentity { node, datacenter } => {
                write!(f, "node identity {node:?} in {datacenter}")
            }
            Self::Inline { label } => write!(f, "rules {label:?}"),
        }
    }
}

/// The default policy of the ACL system (`acl.default_policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DefaultPolicy {
    /// Allow what no rule decides (except ACL management and snapshots).
    Allow,
    /// Deny what no rule decides.
    Deny,
}

/// The last authorizer of a chain, answering what no policy decided (see
/// docs/consul-compatibility.md, 'Authorizer chain and default policy').
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RootAuthorizer {
    /// Default policy `allow`: everything except `acl:read`, `acl:write` and `snapshot`.
    AllowAll,
    /// Default policy `deny`: nothing.
    DenyAll,
    /// ACLs disabled: everything.
    ManageAll,
}

impl From<DefaultPolicy> for RootAuthorizer {
    fn from(d: DefaultPolicy) -> Self {
        match d {
            DefaultPolicy::Allow => Self::AllowAll,
            DefaultPolicy::Deny => Self::DenyAll,
        }
    }
}

/// Which attribute of a named rule decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleAttribute {
    /// `policy = ...`.
    Policy,
    /// An explicit `intentions = ...`.
    Intentions,
    /// `intentions` left unset, derived from `policy` (`read` when it is `read` or `write`,
    /// else `deny`).
    ImpliedIntentions,
}

/// A named rule that decided a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleMatch<'a> {
    /// The family.
    pub family: Family,
    /// Exact or prefix.
    pub kind: MatchKind,
    /// The rule's name or prefix.
    pub name: &'a str,
    /// Which attribute decided.
    pub attribute: RuleAttribute,
    /// Its level.
    pub level: AccessLevel,
    /// The policy (or identity) it came from.
    pub source: &'a RuleSource,
}

impl fmt::Display for RuleMatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attr = match self.attribute {
            RuleAttribute::Policy => "policy",
            RuleAttribute::Intentions => "intentions",
            RuleAttribute::ImpliedIntentions => "intentions (implied by policy)",
        };
        write!(
            f,
            "{} {:?} {attr} = {:?} in {}",
            self.family.block_name(self.kind),
            self.name,
            self.level.as_str(),
            self.source
        )
    }
}

/// A single-valued rule that decided a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SingleMatch<'a> {
    /// The rule that decided (`operator` when `mesh` was unset and fell back).
    pub rule: SingleRule,
    /// The rule the check was about (`mesh`).
    pub checked: SingleRule,
    /// Its level.
    pub level: AccessLevel,
    /// Where it came from.
    pub source: &'a RuleSource,
}

impl fmt::Display for SingleMatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {:?} in {}",
            self.rule,
            self.level.as_str(),
            self.source
        )?;
        if self.rule != self.checked {
            write!(f, " (fallback for unset {})", self.checked)?;
        }
        Ok(())
    }
}

/// What decided a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason<'a> {
    /// A named rule.
    Rule(RuleMatch<'a>),
    /// A single-valued rule.
    Single(SingleMatch<'a>),
    /// No rule applied; the ACL default policy decided.
    DefaultPolicy(DefaultPolicy),
    /// No rule applied and the default policy is `allow`, which never covers ACL management or
    /// snapshots.
    DefaultPolicyExcludesAcl,
    /// ACLs are disabled.
    AclsDisabled,
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rule(r) => r.fmt(f),
            Self::Single(s) => s.fmt(f),
            Self::DefaultPolicy(DefaultPolicy::Allow) => f.write_str("ACL default policy allow"),
            Self::DefaultPolicy(DefaultPolicy::Deny) => f.write_str("ACL default policy deny"),
            Self::DefaultPolicyExcludesAcl => {
                f.write_str("ACL default policy allow (which never grants acl or snapshot access)")
            }
            Self::AclsDisabled => f.write_str("ACLs disabled"),
        }
    }
}

/// The answer to a check: allow or deny, and what decided. Borrowed from the authorizer so a
/// check allocates nothing; [`Decision::decided_by`] gives an owned copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    effect: Effect,
    reason: Reason<'a>,
}

impl<'a> Decision<'a> {
    fn new(effect: Effect, reason: Reason<'a>) -> Self {
        Self { effect, reason }
    }
    /// Allow or deny.
    pub fn effect(&self) -> Effect {
        self.effect
    }
    /// Whether access is granted.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
    /// What decided.
    pub fn reason(&self) -> Reason<'a> {
        self.reason
    }
    /// An owned copy of the reason, for errors and logs.
    pub fn decided_by(&self) -> DecidedBy {
        match self.reason {
            Reason::Rule(r) => DecidedBy::Rule {
                block: r.family.block_name(r.kind),
                name: r.name.to_owned(),
                attribute: r.attribute,
                level: r.level,
                source: r.source.clone(),
            },
            Reason::Single(s) => DecidedBy::Single {
                rule: s.rule,
                checked: s.checked,
                level: s.level,
                source: s.source.clone(),
            },
            Reason::DefaultPolicy(d) => DecidedBy::DefaultPolicy(d),
            Reason::DefaultPolicyExcludesAcl => DecidedBy::DefaultPolicyExcludesAcl,
            Reason::AclsDisabled => DecidedBy::AclsDisabled,
        }
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}", self.effect, self.reason)
    }
}

/// An owned [`Reason`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecidedBy {
    /// A named rule.
    Rule {
        /// Block name (`service_prefix`).
        block: &'static str,
        /// Rule name.
        name: String,
        /// Which attribute.
        attribute: RuleAttribute,
        /// Its level.
        level: AccessLevel,
        /// Where it came from.
        source: RuleSource,
    },
    /// A single-valued rule.
    Single {
        /// The rule that decided.
        rule: SingleRule,
        /// The rule checked.
        checked: SingleRule,
        /// Its level.
        level: AccessLevel,
        /// Where it came from.
        source: RuleSource,
    },
    /// The ACL default policy.
    DefaultPolicy(DefaultPolicy),
    /// The default policy `allow`, which never covers ACL management.
    DefaultPolicyExcludesAcl,
    /// ACLs are disabled.
    AclsDisabled,
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rule {
                block,
                name,
                attribute,
                level,
                source,
            } => {
                let attr = match attribute {
                    RuleAttribute::Policy => "policy",
                    RuleAttribute::Intentions => "intentions",
                    RuleAttribute::ImpliedIntentions => "intentions (implied by policy)",
                };
                write!(
                    f,
                    "{block} {name:?} {attr} = {:?} in {source}",
                    level.as_str()
                )
            }
            Self::Single {
                rule,
                checked,
                level,
                source,
            } => {
                write!(f, "{rule} = {:?} in {source}", level.as_str())?;
                if rule != checked {
                    write!(f, " (fallback for unset {checked})")?;
                }
                Ok(())
            }
            Self::DefaultPolicy(DefaultPolicy::Allow) => f.write_str("ACL default policy allow"),
            Self::DefaultPolicy(DefaultPolicy::Deny) => f.write_str("ACL default policy deny"),
            Self::DefaultPolicyExcludesAcl => {
                f.write_str("ACL default policy allow (which never grants acl or snapshot access)")
            }
            Self::AclsDisabled => f.write_str("ACLs disabled"),
        }
    }
}

/// The resources a check is about (Consul's names, used by [`Authorizer::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// ACL management.
    Acl,
    /// Agent API.
    Agent,
    /// User events.
    Event,
    /// Intentions (rules derived from service rules).
    Intention,
    /// KV.
    Key,
    /// Keyring.
    Keyring,
    /// Mesh configuration.
    Mesh,
    /// Catalog nodes.
    Node,
    /// Operator.
    Operator,
    /// Peering.
    Peering,
    /// Prepared queries.
    Query,
    /// Services.
    Service,
    /// Sessions.
    Session,
    /// Snapshots (requires `acl = "write"`).
    Snapshot,
}

impl Resource {
    /// Parses Consul's resource name (`service`, `intention`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "acl" => Self::Acl,
            "agent" => Self::Agent,
            "event" => Self::Event,
            "intention" | "intentions" => Self::Intention,
            "key" => Self::Key,
            "keyring" => Self::Keyring,
            "mesh" => Self::Mesh,
            "node" => Self::Node,
            "operator" => Self::Operator,
            "peering" => Self::Peering,
            "query" => Self::Query,
            "service" => Self::Service,
            "session" => Self::Session,
            "snapshot" => Self::Snapshot,
            _ => return None,
        })
    }

    /// The name used in permission strings. Intentions render as `intentions` (the rule
    /// attribute a token needs; Consul's own message says `intention`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acl => "acl",
            Self::Agent => "agent",
            Self::Event => "event",
            Self::Intention => "intentions",
            Self::Key => "key",
            Self::Keyring => "keyring",
            Self::Mesh => "mesh",
            Self::Node => "node",
            Self::Operator => "operator",
            Self::Peering => "peering",
            Self::Query => "query",
            Self::Service => "service",
            Self::Session => "session",
            Self::Snapshot => "snapshot",
        }
    }

    fn family(self) -> Option<Family> {
        Some(match self {
            Self::Agent => Family::Agent,
            Self::Event => Family::Event,
            Self::Key => Family::Key,
            Self::Node => Family::Node,
            Self::Query => Family::Query,
            Self::Service | Self::Intention => Family::Service,
            Self::Session => Family::Session,
            _ => return None,
        })
    }

    fn single(self) -> Option<SingleRule> {
        Some(match self {
            Self::Acl => SingleRule::Acl,
            Self::Keyring => SingleRule::Keyring,
            Self::Mesh => SingleRule::Mesh,
            Self::Operator => SingleRule::Operator,
            Self::Peering => SingleRule::Peering,
            _ => return None,
        })
    }
}

/// The kind of access a check asks for, including Consul's aggregate checks (see
/// docs/consul-compatibility.md, 'ACL evaluation').
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read.
    Read,
    /// List (keys only).
    List,
    /// Write.
    Write,
    /// `KeyWritePrefix` (keys only).
    WritePrefix,
    /// `ServiceReadAll` / `NodeReadAll`.
    ReadAll,
    /// `ServiceReadPrefix` (services only).
    ReadPrefix,
    /// `ServiceWriteAny` (services only).
    WriteAny,
    /// `IntentionDefaultAllow` (intentions only).
    DefaultAllow,
}

impl Access {
    /// Parses the names used by the test vectors (`read`, `write-prefix`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "read" => Self::Read,
            "list" => Self::List,
            "write" => Self::Write,
            "write-prefix" => Self::WritePrefix,
            "read-all" => Self::ReadAll,
            "read-prefix" => Self::ReadPrefix,
            "write-any" => Self::WriteAny,
            "default-allow" => Self::DefaultAllow,
            _ => return None,
        })
    }

    /// The name used in permission strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::List => "list",
            Self::Write => "write",
            Self::WritePrefix => "write-prefix",
            Self::ReadAll => "read-all",
            Self::ReadPrefix => "read-prefix",
            Self::WriteAny => "write-any",
            Self::DefaultAllow => "default-allow",
        }
    }
}

/// A permission a request needs: `service:write`, `intentions:write`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Permission {
    /// The resource.
    pub resource: Resource,
    /// The access.
    pub access: Access,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource.as_str(), self.access.as_str())
    }
}

/// A resource/access pair that has no check (e.g. `acl` with `read-prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("there is no {} check for {}", access.as_str(), resource.as_str())]
pub struct UnsupportedCheck {
    /// The resource.
    pub resource: Resource,
    /// The access.
    pub access: Access,
}

/// Who a request was made as, for permission-denied messages.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Subject {
    /// A token.
    Token(AccessorId),
    /// The anonymous token.
    Anonymous,
    /// Unknown (an authorizer built from rules, not from a token).
    Unknown,
}

/// A request was refused by the ACL system. Names the permission, the resource name and what
/// decided (the denying rule or the default policy). Policy refusal, not malformed input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Permission denied: {}lacks permission '{needed}'{} (decided by {decided_by}){}",
    SubjectPart(subject), OnPart(on.as_deref()), AnonPart(subject))]
pub struct PermissionDenied {
    /// Who asked.
    pub subject: Subject,
    /// What was needed.
    pub needed: Permission,
    /// On which name (none for `acl`, `operator`, ...).
    pub on: Option<String>,
    /// What refused (boxed: the error travels through `Result`s on hot paths).
    pub decided_by: Box<DecidedBy>,
}

struct SubjectPart<'a>(&'a Subject);
impl fmt::Display for SubjectPart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Subject::Token(id) => write!(f, "token with AccessorID '{id}' "),
            Subject::Anonymous => f.write_str("anonymous token "),
            Subject::Unknown => f.write_str("token "),
        }
    }
}
struct OnPart<'a>(Option<&'a str>);
impl fmt::Display for OnPart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, " on {n:?}"),
            None => Ok(()),
        }
    }
}
struct AnonPart<'a>(&'a Subject);
impl fmt::Display for AnonPart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self.0 == Subject::Anonymous {
            f.write_str(
                ". The anonymous token is used implicitly when a request does not specify a token.",
            )
        } else {
            Ok(())
        }
    }
}

/// Peering context of a check: names imported from a peer are checked with the
/// aggregate rules instead of by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthorizerContext<'a> {
    /// The peer the name was imported from (`None` for local names).
    pub peer: Option<&'a str>,
}

// ---------------------------------------------------------------------------------------------
// Merging (see docs/consul-compatibility.md, 'Merging policies')

#[derive(Clone, Copy, Debug)]
struct SrcGrant {
    level: AccessLevel,
    src: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct Merged {
    policy: Option<SrcGrant>,
    intentions: Option<SrcGrant>,
}

fn keep_stronger(slot: &mut Option<SrcGrant>, new: Option<SrcGrant>) {
    // Strictly stronger only, so on a tie the first policy stays the named source.
    if rank(new.map(|g| g.level)) > rank(slot.map(|g| g.level)) {
        *slot = new;
    }
}

struct MergedSet {
    single: [Option<SrcGrant>; 5],
    named: HashMap<(Family, MatchKind, String), Merged>,
}

fn merge<'a>(inputs: impl IntoIterator<Item = (&'a Rules, u32)>) -> MergedSet {
    let mut out = MergedSet {
        single: [None; 5],
        named: HashMap::new(),
    };
    for (rules, src) in inputs {
        for (i, rule) in SingleRule::ALL.iter().enumerate() {
            let new = rules.single(*rule).map(|level| SrcGrant { level, src });
            keep_stronger(&mut out.single[i], new);
        }
        for r in rules.iter() {
            // Fresh entries owned by the merged set: inputs are never modified (unlike Consul's
            // merger; see docs/consul-compatibility.md, 'Policies merged into fresh copies').
            let m = out
                .named
                .entry((r.family, r.kind, r.name.to_owned()))
                .or_default();
            keep_stronger(
                &mut m.policy,
                Some(SrcGrant {
                    level: r.grant.policy,
                    src,
                }),
            );
            keep_stronger(
                &mut m.intentions,
                r.grant.intentions.map(|level| SrcGrant { level, src }),
            );
        }
    }
    out
}

/// Merges the rules of several policies of one token into a new rule set (see
/// docs/consul-compatibility.md, 'Merging policies'): per single-valued rule and per (family,
/// kind, name) the level that takes precedence (`deny` > `write` > `list` > `read`), service
/// `policy` and `intentions` independently. The inputs are not modified.
pub fn merge_rules<'a>(inputs: impl IntoIterator<Item = &'a Rules>) -> Rules {
    let merged = merge(inputs.into_iter().map(|r| (r, 0)));
    let mut out = Rules::new();
    for (rule, g) in SingleRule::ALL.iter().zip(merged.single) {
        if let Some(g) = g {
            // Each slot is set once on a fresh set, and `list` never reaches a single rule.
            let _ = out.set_single(*rule, g.level);
        }
    }
    for ((family, kind, name), m) in merged.named {
        if let Some(p) = m.policy {
            let grant = Grant {
                policy: p.level,
                intentions: m.intentions.map(|g| g.level),
            };
            // Keys are unique in the map and levels were validated when the inputs were built.
            let _ = out.add(family, kind, name, grant);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The compiled index of one family

#[derive(Clone, Copy, Debug)]
struct Attr {
    level: AccessLevel,
    src: u32,
    attribute: RuleAttribute,
}

#[derive(Debug)]
struct Entry {
    key: Box<str>,
    policy: Attr,
    /// Service rules only (for other families a copy of `policy`, never read).
    intentions: Attr,
}

impl Entry {
    fn attr(&self, intentions: bool) -> Attr {
        if intentions {
            self.intentions
        } else {
            self.policy
        }
    }
}

/// (kind, index into `exact` or `prefix`).
type EntryRef = (MatchKind, u32);

#[derive(Debug, Default)]
struct Tree {
    exact_by_name: HashMap<Box<str>, u32>,
    /// Sorted by key.
    exact: Vec<Entry>,
    /// Sorted by key.
    prefix: Vec<Entry>,
    /// The first 8 bytes of each prefix key, zero-padded, big-endian: non-decreasing in key
    /// order, so a binary search over this dense array narrows the range before any string
    /// comparison.
    heads: Vec<u64>,
    /// For each prefix entry, the index of the longest other prefix entry that is a prefix of
    /// its key (`u32::MAX`: none).
    parent: Vec<u32>,
}

const NONE: u32 = u32::MAX;

/// The first 8 bytes of `s`, zero-padded, as a big-endian integer.
fn head(s: &str) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(s.as_bytes()) {
        *d = *s;
    }
    u64::from_be_bytes(b)
}

impl Tree {
    fn build(mut exact: Vec<Entry>, mut prefix: Vec<Entry>) -> Self {
        exact.sort_by(|a, b| a.key.cmp(&b.key));
        prefix.sort_by(|a, b| a.key.cmp(&b.key));
        let exact_by_name = exact
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.clone(), i as u32))
            .collect();
        let mut parent = Vec::with_capacity(prefix.len());
        let mut stack: Vec<u32> = Vec::new();
        for (i, e) in prefix.iter().enumerate() {
            while let Some(&top) = stack.last() {
                if e.key.starts_with(&*prefix[top as usize].key) {
                    break;
                }
                stack.pop();
            }
            parent.push(stack.last().copied().unwrap_or(NONE));
            stack.push(i as u32);
        }
        let heads = prefix.iter().map(|e| head(&e.key)).collect();
        Self {
            exact_by_name,
            exact,
            prefix,
            heads,
            parent,
        }
    }

    fn entry(&self, r: EntryRef) -> &Entry {
        match r.0 {
            MatchKind::Exact => &self.exact[r.1 as usize],
            MatchKind::Prefix => &self.prefix[r.1 as usize],
        }
    }

    /// The longest prefix rule whose key is a prefix of `name` (binary search, then a walk up
    /// the parent links of the nearest key: only keys that are prefixes of that key).
    fn longest_prefix(&self, name: &str) -> Option<u32> {
        let n = name.as_bytes();
        // head(key) < head(name) implies key < name, and > implies >: only keys with the same
        // head need a string comparison.
        let h = head(name);
        let lo = self.heads.partition_point(|k| *k < h);
        let hi = lo + self.heads[lo..].partition_point(|k| *k <= h);
        let i = lo + self.prefix[lo..hi].partition_point(|e| e.key.as_bytes() <= n);
        let mut j = i.checked_sub(1)? as u32;
        let k = self.prefix[j as usize].key.as_bytes();
        let lcp = k.iter().zip(n).take_while(|(a, b)| a == b).count();
        loop {
            if self.prefix[j as usize].key.len() <= lcp {
                return Some(j);
            }
            j = self.parent[j as usize];
            if j == NONE {
                return None;
            }
        }
    }

    /// Exact rule first, else the longest prefix rule.
    fn lookup(&self, name: &str) -> Option<EntryRef> {
        if let Some(&i) = self.exact_by_name.get(name) {
            return Some((MatchKind::Exact, i));
        }
        self.longest_prefix(name).map(|i| (MatchKind::Prefix, i))
    }

    /// The `""` prefix rule.
    fn root(&self) -> Option<EntryRef> {
        self.prefix
            .first()
            .filter(|e| e.key.is_empty())
            .map(|_| (MatchKind::Prefix, 0))
    }

    fn all(&self) -> impl Iterator<Item = EntryRef> + '_ {
        (0..self.exact.len() as u32)
            .map(|i| (MatchKind::Exact, i))
            .chain((0..self.prefix.len() as u32).map(|i| (MatchKind::Prefix, i)))
    }

    /// Every rule whose key starts with `p` (a contiguous range of each sorted list).
    fn below(&self, p: &str) -> impl Iterator<Item = EntryRef> + '_ {
        let range = |v: &Vec<Entry>| {
            let lo = v.partition_point(|e| *e.key < *p);
            let hi = v.partition_point(|e| *e.key < *p || e.key.starts_with(p));
            lo as u32..hi as u32
        };
        range(&self.exact)
            .map(|i| (MatchKind::Exact, i))
            .chain(range(&self.prefix).map(|i| (MatchKind::Prefix, i)))
    }

    /// Consul's `allAllowed`: Deny if the `""` prefix or any rule denies, else the `""`
    /// prefix rule's Allow, else no opinion.
    fn all_allowed(&self, intentions: bool, req: Required) -> Option<(Effect, EntryRef)> {
        let denies = |r: &EntryRef| {
            enforce(Some(self.entry(*r).attr(intentions).level), req) == Some(Effect::Deny)
        };
        let root = self.root();
        if let Some(r) = root.filter(denies) {
            return Some((Effect::Deny, r));
        }
        if let Some(r) = self.all().find(denies) {
            return Some((Effect::Deny, r));
        }
        root.map(|r| (Effect::Allow, r))
    }

    /// Consul's `anyAllowed`: Allow if the `""` prefix or any rule allows, else the `""`
    /// prefix rule's Deny, else no opinion.
    fn any_allowed(&self, intentions: bool, req: Required) -> Option<(Effect, EntryRef)> {
        let allows = |r: &EntryRef| {
            enforce(Some(self.entry(*r).attr(intentions).level), req) == Some(Effect::Allow)
        };
        let root = self.root();
        if let Some(r) = root.filter(allows) {
            return Some((Effect::Allow, r));
        }
        if let Some(r) = self.all().find(allows) {
            return Some((Effect::Allow, r));
        }
        root.map(|r| (Effect::Deny, r))
    }
}

#[derive(Debug, Default)]
struct Aggregates {
    service_read_all: Option<(Effect, EntryRef)>,
    service_write_any: Option<(Effect, EntryRef)>,
    node_read_all: Option<(Effect, EntryRef)>,
    intention_read_any: Option<(Effect, EntryRef)>,
    intention_write_all: Option<(Effect, EntryRef)>,
}

/// Internal description of one check.
#[derive(Clone, Copy, Debug)]
enum Check<'s> {
    Named(Family, Required, &'s str),
    Intention(Required, &'s str),
    Single(SingleRule, Required),
    Snapshot,
    ServiceReadAll,
    NodeReadAll,
    ServiceWriteAny,
    ServiceReadPrefix(&'s str),
    KeyWritePrefix(&'s str),
    IntentionDefaultAllow,
    /// The name is ignored: imported names are checked with the aggregate rules.
    PeeredRead(Family),
}

impl Check<'_> {
    fn is_acl(&self) -> bool {
        matches!(self, Self::Single(SingleRule::Acl, _) | Self::Snapshot)
    }
}

/// The rules of one token (all its policies merged) compiled for fast lookups. Its
/// checks return `None` when no rule applies (Consul's `Default`); an [`Authorizer`] chains it
/// with the default policy.
///
/// Exact names are found in a hash map; the longest matching prefix by binary search over the
/// sorted prefixes plus a walk up precomputed parent links; the name-independent aggregate
/// checks are computed once at build time.
#[derive(Debug)]
pub struct PolicyAuthorizer {
    sources: Vec<RuleSource>,
    single: [Option<SrcGrant>; 5],
    trees: [Tree; 7],
    agg: Aggregates,
}

impl PolicyAuthorizer {
    /// Compiles rule sets, each with where it came from, into one authorizer (merged first).
    pub fn compile<'a>(inputs: impl IntoIterator<Item = (&'a Rules, RuleSource)>) -> Self {
        let mut sources = Vec::new();
        let mut rules = Vec::new();
        for (r, s) in inputs {
            rules.push((r, sources.len() as u32));
            sources.push(s);
        }
        let merged = merge(rules);
        let mut parts: [(Vec<Entry>, Vec<Entry>); 7] = Default::default();
        for ((family, kind, name), m) in merged.named {
            let Some(p) = m.policy else { continue };
            let policy = Attr {
                level: p.level,
                src: p.src,
                attribute: RuleAttribute::Policy,
            };
            let intentions = match m.intentions {
                Some(i) => Attr {
                    level: i.level,
                    src: i.src,
                    attribute: RuleAttribute::Intentions,
                },
                None => Attr {
                    level: match p.level {
                        AccessLevel::Read | AccessLevel::Write => AccessLevel::Read,
                        _ => AccessLevel::Deny,
                    },
                    src: p.src,
                    attribute: RuleAttribute::ImpliedIntentions,
                },
            };
            let e = Entry {
                key: name.into_boxed_str(),
                policy,
                intentions,
            };
            let slot = &mut parts[family as usize];
            match kind {
                MatchKind::Exact => slot.0.push(e),
                MatchKind::Prefix => slot.1.push(e),
            }
        }
        let trees = parts.map(|(e, p)| Tree::build(e, p));
        let svc = &trees[Family::Service as usize];
        let agg = Aggregates {
            service_read_all: svc.all_allowed(false, Required::Read),
            service_write_any: svc.any_allowed(false, Required::Write),
            node_read_all: trees[Family::Node as usize].all_allowed(false, Required::Read),
            intention_read_any: svc.any_allowed(true, Required::Read),
            intention_write_all: svc.all_allowed(true, Required::Write),
        };
        Self {
            sources,
            single: merged.single,
            trees,
            agg,
        }
    }

    /// Compiles one rule set (source [`RuleSource::Inline`] with `label`).
    pub fn from_rules(rules: &Rules, label: &str) -> Self {
        Self::compile([(
            rules,
            RuleSource::Inline {
                label: label.to_owned(),
            },
        )])
    }

    /// The generic check of [`Authorizer::check`], without a default: `Ok(None)` when no
    /// rule applies.
    pub fn check(
        &self,
        resource: Resource,
        access: Access,
        segment: &str,
        ctx: AuthorizerContext<'_>,
    ) -> Result<Option<Decision<'_>>, UnsupportedCheck> {
        Ok(self.run(to_check(resource, access, segment, ctx)?))
    }

    fn tree(&self, f: Family) -> &Tree {
        &self.trees[f as usize]
    }

    fn rule_decision(
        &self,
        family: Family,
        r: EntryRef,
        intentions: bool,
        effect: Effect,
    ) -> Decision<'_> {
        let e = self.tree(family).entry(r);
        let a = e.attr(intentions);
        Decision::new(
            effect,
            Reason::Rule(RuleMatch {
                family,
                kind: r.0,
                name: &e.key,
                attribute: a.attribute,
                level: a.level,
                source: &self.sources[a.src as usize],
            }),
        )
    }

    fn named(
        &self,
        family: Family,
        intentions: bool,
        req: Required,
        name: &str,
    ) -> Option<Decision<'_>> {
        let tree = self.tree(family);
        let r = tree.lookup(name)?;
        let level = tree.entry(r).attr(intentions).level;
        let effect = enforce(Some(level), req)?;
        Some(self.rule_decision(family, r, intentions, effect))
    }

    fn agg(
        &self,
        family: Family,
        intentions: bool,
        a: Option<(Effect, EntryRef)>,
    ) -> Option<Decision<'_>> {
        a.map(|(effect, r)| self.rule_decision(family, r, intentions, effect))
    }

    fn single(&self, checked: SingleRule, req: Required) -> Option<Decision<'_>> {
        let mut rule = checked;
        let mut g = self.single[checked as usize];
        if g.is_none() && matches!(checked, SingleRule::Mesh | SingleRule::Peering) {
            rule = SingleRule::Operator;
            g = self.single[SingleRule::Operator as usize];
        }
        let g = g?;
        let effect = enforce(Some(g.level), req)?;
        Some(Decision::new(
            effect,
            Reason::Single(SingleMatch {
                rule,
                checked,
                level: g.level,
                source: &self.sources[g.src as usize],
            }),
        ))
    }

    fn key_write_prefix(&self, p: &str) -> Option<Decision<'_>> {
        let tree = self.tree(Family::Key);
        let mut parent = None;
        if let Some(i) = tree.longest_prefix(p) {
            let r = (MatchKind::Prefix, i);
            if tree.entry(r).policy.level != AccessLevel::Write {
                return Some(self.rule_decision(Family::Key, r, false, Effect::Deny));
            }
            parent = Some(r);
        }
        if let Some(r) = tree
            .below(p)
            .find(|r| tree.entry(*r).policy.level != AccessLevel::Write)
        {
            return Some(self.rule_decision(Family::Key, r, false, Effect::Deny));
        }
        parent.map(|r| self.rule_decision(Family::Key, r, false, Effect::Allow))
    }

    fn service_read_prefix(&self, p: &str) -> Option<Decision<'_>> {
        let tree = self.tree(Family::Service);
        let readable = |r: &EntryRef| {
            matches!(
                tree.entry(*r).policy.level,
                AccessLevel::Read | AccessLevel::Write
            )
        };
        let parent = tree.longest_prefix(p).map(|i| (MatchKind::Prefix, i));
        if let Some(r) = parent.filter(|r| !readable(r)) {
            return Some(self.rule_decision(Family::Service, r, false, Effect::Deny));
        }
        if let Some(r) = tree.below(p).find(|r| !readable(r)) {
            return Some(self.rule_decision(Family::Service, r, false, Effect::Deny));
        }
        parent.map(|r| self.rule_decision(Family::Service, r, false, Effect::Allow))
    }

    fn run(&self, c: Check<'_>) -> Option<Decision<'_>> {
        match c {
            Check::Named(f, req, name) => self.named(f, false, req, name),
            Check::Intention(req, "*") => match req {
                Required::Write => self.agg(Family::Service, true, self.agg.intention_write_all),
                _ => self.agg(Family::Service, true, self.agg.intention_read_any),
            },
            Check::Intention(req, name) => self.named(Family::Service, true, req, name),
            Check::Single(rule, req) => self.single(rule, req),
            Check::Snapshot => self.single(SingleRule::Acl, Required::Write),
            Check::ServiceReadAll => self.agg(Family::Service, false, self.agg.service_read_all),
            Check::NodeReadAll => self.agg(Family::Node, false, self.agg.node_read_all),
            Check::ServiceWriteAny => self.agg(Family::Service, false, self.agg.service_write_any),
            Check::ServiceReadPrefix(p) => self.service_read_prefix(p),
            Check::KeyWritePrefix(p) => self.key_write_prefix(p),
            Check::IntentionDefaultAllow => None,
            Check::PeeredRead(f) => {
                let any = self.agg(Family::Service, false, self.agg.service_write_any);
                if any.is_some_and(|d| d.is_allowed()) {
                    return any;
                }
                match f {
                    Family::Node => self.agg(Family::Node, false, self.agg.node_read_all),
                    _ => self.agg(Family::Service, false, self.agg.service_read_all),
                }
            }
        }
    }
}

fn to_check<'s>(
    resource: Resource,
    access: Access,
    segment: &'s str,
    ctx: AuthorizerContext<'_>,
) -> Result<Check<'s>, UnsupportedCheck> {
    let unsupported = Err(UnsupportedCheck { resource, access });
    let req = match access {
        Access::Read => Required::Read,
        Access::List => Required::List,
        Access::Write => Required::Write,
        Access::WritePrefix if resource == Resource::Key => {
            return Ok(Check::KeyWritePrefix(segment));
        }
        Access::ReadAll if resource == Resource::Service => return Ok(Check::ServiceReadAll),
        Access::ReadAll if resource == Resource::Node => return Ok(Check::NodeReadAll),
        Access::ReadPrefix if resource == Resource::Service => {
            return Ok(Check::ServiceReadPrefix(segment));
        }
        Access::WriteAny if resource == Resource::Service => return Ok(Check::ServiceWriteAny),
        Access::DefaultAllow if resource == Resource::Intention => {
            return Ok(Check::IntentionDefaultAllow);
        }
        _ => return unsupported,
    };
    if req == Required::List && resource != Resource::Key {
        return unsupported;
    }
    if resource == Resource::Snapshot {
        return if req == Required::Write {
            Ok(Check::Snapshot)
        } else {
            unsupported
        };
    }
    if resource == Resource::Intention {
        return Ok(Check::Intention(req, segment));
    }
    if let Some(s) = resource.single() {
        return Ok(Check::Single(s, req));
    }
    let Some(f) = resource.family() else {
        return unsupported;
    };
    if ctx.peer.is_some_and(|p| !p.is_empty())
        && req == Required::Read
        && matches!(f, Family::Service | Family::Node)
    {
        return Ok(Check::PeeredRead(f));
    }
    Ok(Check::Named(f, req, segment))
}

// ---------------------------------------------------------------------------------------------
// The chained authorizer

/// Everything a request may do: compiled policy layers consulted in order, then the root
/// (the ACL default policy, or allow-all when ACLs are disabled). Every check returns a
/// [`Decision`] naming what decided.
///
/// Immutable and `Send + Sync`: build one per token (cache it by token and policy versions)
/// and share it behind an `Arc`.
#[derive(Debug)]
pub struct Authorizer {
    layers: Vec<PolicyAuthorizer>,
    root: RootAuthorizer,
    subject: Subject,
}

macro_rules! named_checks {
    ($($(#[$m:meta])* $fn:ident => $family:ident, $req:ident;)*) => {$(
        $(#[$m])*
        pub fn $fn(&self, name: &str) -> Decision<'_> {
            self.decide(Check::Named(Family::$family, Required::$req, name))
        }
    )*};
}

macro_rules! single_checks {
    ($($(#[$m:meta])* $fn:ident => $rule:ident, $req:ident;)*) => {$(
        $(#[$m])*
        pub fn $fn(&self) -> Decision<'_> {
            self.decide(Check::Single(SingleRule::$rule, Required::$req))
        }
    )*};
}

impl Authorizer {
    /// Chains compiled layers (consulted first to last) in front of a root.
    pub fn chain(layers: Vec<PolicyAuthorizer>, root: RootAuthorizer) -> Self {
        Self {
            layers,
            root,
            subject: Subject::Unknown,
        }
    }

    /// The authorizer used when ACLs are disabled: everything is allowed, with the reason
    /// "ACLs disabled".
    pub fn acls_disabled() -> Self {
        Self::chain(Vec::new(), RootAuthorizer::ManageAll)
    }

    /// Compiles policies (already resolved) in front of the default policy. Policies whose
    /// datacenters do not include `dc` are skipped, as in Consul.
    pub fn for_policies<'a>(
        policies: impl IntoIterator<Item = &'a Policy>,
        default: DefaultPolicy,
        dc: &Datacenter,
    ) -> Self {
        let layer = PolicyAuthorizer::compile(
            policies
                .into_iter()
                .filter(|p| p.applies_in(dc))
                .map(|p| (p.rules(), RuleSource::policy(p))),
        );
        Self::chain(vec![layer], default.into())
    }

    /// Compiles what a token grants in datacenter `dc` (see docs/consul-compatibility.md,
    /// 'Authorizer chain and default policy' and 'Built-in tokens, policies and identities'):
    /// its policies and its roles' policies (each once, those scoped to other datacenters
    /// dropped), its and its roles' service identities valid in `dc` (one per name), and node
    /// identities of `dc`; all merged into one layer in front of the default policy. Links that
    /// do not resolve (deleted policies or roles) are skipped, as in Consul.
    ///
    /// Pure: the caller resolves IDs (storage belongs to replication) and checks expiry with
    /// [`Token::is_expired`] before calling.
    pub fn for_token<'p, 'r>(
        token: &Token,
        resolve_policy: impl Fn(&PolicyId) -> Option<&'p Policy>,
        resolve_role: impl Fn(&RoleId) -> Option<&'r Role>,
        default: DefaultPolicy,
        dc: &Datacenter,
    ) -> Self {
        let roles: Vec<&Role> = token
            .roles()
            .iter()
            .filter_map(|id| {
                let r = resolve_role(id);
                if r.is_none() {
                    tracing::debug!(role = %id, "token links a role that does not exist; skipped");
                }
                r
            })
            .collect();
        let mut seen = BTreeSet::new();
        let mut policies: Vec<&Policy> = Vec::new();
        let policy_ids = token
            .policies()
            .iter()
            .chain(roles.iter().flat_map(|r| r.policies().iter()));
        for id in policy_ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            match resolve_policy(id) {
                Some(p) if p.applies_in(dc) => policies.push(p),
                Some(_) => {}
                None => {
                    tracing::debug!(policy = %id, "token links a policy that does not exist; skipped")
                }
            }
        }
        let mut service_ids: Vec<&ServiceIdentity> = Vec::new();
        let sis = token
            .service_identities()
            .iter()
            .chain(roles.iter().flat_map(|r| r.service_identities().iter()));
        for si in sis {
            let applies = si.datacenters().is_empty() || si.datacenters().contains(dc);
            if applies && !service_ids.iter().any(|s| s.name() == si.name()) {
                service_ids.push(si);
            }
        }
        let mut node_ids: Vec<&NodeIdentity> = Vec::new();
        let nis = token
            .node_identities()
            .iter()
            .chain(roles.iter().flat_map(|r| r.node_identities().iter()));
        for ni in nis {
            if ni.datacenter() == dc && !node_ids.iter().any(|n| n.name() == ni.name()) {
                node_ids.push(ni);
            }
        }
        let si_rules: Vec<(Rules, RuleSource)> = service_ids
            .iter()
            .map(|si| {
                (
                    si.rules(),
                    RuleSource::ServiceIdentity {
                        service: si.name().to_owned(),
                    },
                )
            })
            .chain(node_ids.iter().map(|ni| {
                (
                    ni.rules(),
                    RuleSource::NodeIdentity {
                        node: ni.name().to_owned(),
                        datacenter: ni.datacenter().clone(),
                    },
                )
            }))
            .collect();
        let layer = PolicyAuthorizer::compile(
            policies
                .iter()
                .map(|p| (p.rules(), RuleSource::policy(p)))
                .chain(si_rules.iter().map(|(r, s)| (r, s.clone()))),
        );
        let subject = if token.is_anonymous() {
            Subject::Anonymous
        } else {
            Subject::Token(token.accessor_id().clone())
        };
        Self {
            layers: vec![layer],
            root: default.into(),
            subject,
        }
    }

    /// Who the authorizer speaks for.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// The root of the chain.
    pub fn root(&self) -> RootAuthorizer {
        self.root
    }

    fn decide(&self, c: Check<'_>) -> Decision<'_> {
        for layer in &self.layers {
            if let Some(d) = layer.run(c) {
                return d;
            }
        }
        match self.root {
            RootAuthorizer::AllowAll if c.is_acl() => {
                Decision::new(Effect::Deny, Reason::DefaultPolicyExcludesAcl)
            }
            RootAuthorizer::AllowAll => {
                Decision::new(Effect::Allow, Reason::DefaultPolicy(DefaultPolicy::Allow))
            }
            RootAuthorizer::DenyAll => {
                Decision::new(Effect::Deny, Reason::DefaultPolicy(DefaultPolicy::Deny))
            }
            RootAuthorizer::ManageAll => Decision::new(Effect::Allow, Reason::AclsDisabled),
        }
    }

    /// A check by resource and access names (`service`, `write`), for table-driven callers.
    pub fn check(
        &self,
        resource: Resource,
        access: Access,
        segment: &str,
        ctx: AuthorizerContext<'_>,
    ) -> Result<Decision<'_>, UnsupportedCheck> {
        Ok(self.decide(to_check(resource, access, segment, ctx)?))
    }

    /// Turns a decision into `Ok` (allowed) or [`PermissionDenied`] naming `needed`, `on` and
    /// what refused.
    pub fn require<'a>(
        &self,
        decision: Decision<'a>,
        needed: Permission,
        on: Option<&str>,
    ) -> Result<Decision<'a>, PermissionDenied> {
        if decision.is_allowed() {
            Ok(decision)
        } else {
            Err(PermissionDenied {
                subject: self.subject.clone(),
                needed,
                on: on.map(str::to_owned),
                decided_by: Box::new(decision.decided_by()),
            })
        }
    }

    named_checks! {
        /// `agent:read` on a node's agent.
        agent_read => Agent, Read;
        /// `agent:write` on a node's agent.
        agent_write => Agent, Write;
        /// `event:read`.
        event_read => Event, Read;
        /// `event:write` (fire an event).
        event_write => Event, Write;
        /// `key:read`.
        key_read => Key, Read;
        /// `key:list` (requires a `list` or `write` rule).
        key_list => Key, List;
        /// `key:write`.
        key_write => Key, Write;
        /// `node:read`.
        node_read => Node, Read;
        /// `node:write` (register a node).
        node_write => Node, Write;
        /// `query:read` (prepared queries).
        query_read => Query, Read;
        /// `query:write`.
        query_write => Query, Write;
        /// `service:read` (discover a service).
        service_read => Service, Read;
        /// `service:write` (register a service, get its leaf certificate).
        service_write => Service, Write;
        /// `session:read` on a node.
        session_read => Session, Read;
        /// `session:write` on a node.
        session_write => Session, Write;
    }

    single_checks! {
        /// `acl:read`.
        acl_read => Acl, Read;
        /// `acl:write`.
        acl_write => Acl, Write;
        /// `keyring:read`.
        keyring_read => Keyring, Read;
        /// `keyring:write`.
        keyring_write => Keyring, Write;
        /// `operator:read`.
        operator_read => Operator, Read;
        /// `operator:write`.
        operator_write => Operator, Write;
        /// `mesh:read` (falls back to the operator rule when unset).
        mesh_read => Mesh, Read;
        /// `mesh:write` (falls back to the operator rule when unset).
        mesh_write => Mesh, Write;
        /// `peering:read` (falls back to the operator rule when unset).
        peering_read => Peering, Read;
        /// `peering:write` (falls back to the operator rule when unset).
        peering_write => Peering, Write;
    }

    /// Taking a snapshot (requires `acl = "write"`).
    pub fn snapshot(&self) -> Decision<'_> {
        self.decide(Check::Snapshot)
    }

    /// `intentions:read` on a service name; `"*"` asks whether ANY intention rule grants read.
    pub fn intention_read(&self, name: &str) -> Decision<'_> {
        self.decide(Check::Intention(Required::Read, name))
    }

    /// `intentions:write` on a service name; `"*"` asks whether ALL intention rules grant
    /// write.
    pub fn intention_write(&self, name: &str) -> Decision<'_> {
        self.decide(Check::Intention(Required::Write, name))
    }

    /// Whether intentions default to allow when none matches: policies never decide this; the
    /// root does (default policy allow or ACLs disabled: allow). See
    /// docs/consul-compatibility.md, 'Intention default decision'.
    pub fn intention_default_allow(&self) -> Decision<'_> {
        self.decide(Check::IntentionDefaultAllow)
    }

    /// `ServiceReadAll`: read on every service.
    pub fn service_read_all(&self) -> Decision<'_> {
        self.decide(Check::ServiceReadAll)
    }

    /// `ServiceWriteAny`: write on at least one service.
    pub fn service_write_any(&self) -> Decision<'_> {
        self.decide(Check::ServiceWriteAny)
    }

    /// `ServiceReadPrefix`: read on every service starting with `prefix`.
    pub fn service_read_prefix(&self, prefix: &str) -> Decision<'_> {
        self.decide(Check::ServiceReadPrefix(prefix))
    }

    /// `NodeReadAll`: read on every node.
    pub fn node_read_all(&self) -> Decision<'_> {
        self.decide(Check::NodeReadAll)
    }

    /// `KeyWritePrefix`: write on every key under `prefix` (recursive deletes).
    pub fn key_write_prefix(&self, prefix: &str) -> Decision<'_> {
        self.decide(Check::KeyWritePrefix(prefix))
    }

    /// `service:read` with a context: a name imported from a peer is checked with the
    /// aggregate rules (see docs/consul-compatibility.md, 'ACL evaluation').
    pub fn service_read_in(&self, name: &str, ctx: AuthorizerContext<'_>) -> Decision<'_> {
        match ctx.peer {
            Some(p) if !p.is_empty() => self.decide(Check::PeeredRead(Family::Service)),
            _ => self.service_read(name),
        }
    }

    /// `node:read` with a context (see [`Authorizer::service_read_in`]).
    pub fn node_read_in(&self, name: &str, ctx: AuthorizerContext<'_>) -> Decision<'_> {
        match ctx.peer {
            Some(p) if !p.is_empty() => self.decide(Check::PeeredRead(Family::Node)),
            _ => self.node_read(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authz(text: &str, root: RootAuthorizer) -> Authorizer {
        let rules = Rules::parse(text).unwrap();
        Authorizer::chain(vec![PolicyAuthorizer::from_rules(&rules, "t")], root)
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let a = authz(
            "service_prefix \"\" { policy = \"read\" }\nservice_prefix \"we\" { policy = \"write\" }\n\
             service_prefix \"web-\" { policy = \"deny\" }\nservice \"web-x\" { policy = \"write\" }",
            RootAuthorizer::DenyAll,
        );
        let d = a.service_write("web");
        assert!(d.is_allowed());
        assert!(matches!(
            d.reason(),
            Reason::Rule(RuleMatch {
                name: "we",
                kind: MatchKind::Prefix,
                ..
            })
        ));
        assert!(!a.service_write("web-y").is_allowed());
        assert!(a.service_write("web-x").is_allowed());
        assert!(!a.service_write("other").is_allowed());
        assert!(a.service_read("other").is_allowed());
        let d = a.service_write("w");
        assert!(
            matches!(d.reason(), Reason::Rule(RuleMatch { name: "", .. })),
            "{d}"
        );
    }

    #[test]
    fn longest_prefix_walks_parents() {
        let a = authz(
            "key_prefix \"a\" { policy = \"read\" }\nkey_prefix \"ab\" { policy = \"write\" }\n\
             key_prefix \"abd\" { policy = \"deny\" }\nkey_prefix \"abz\" { policy = \"deny\" }\nkey_prefix \"b\" { policy = \"deny\" }",
            RootAuthorizer::DenyAll,
        );
        // "abc" sorts after "ab" but before "abd": nearest key "ab".
        assert!(a.key_write("abc").is_allowed());
        // "abe" sorts after "abd" (not a prefix): walk up to "ab".
        assert!(a.key_write("abe").is_allowed());
        assert!(!a.key_write("abzz").is_allowed());
        // "ac" sorts after "abz": walk up to "a".
        let d = a.key_read("ac");
        assert!(
            matches!(d.reason(), Reason::Rule(RuleMatch { name: "a", .. })),
            "{d}"
        );
        assert!(matches!(
            a.key_read("c").reason(),
            Reason::DefaultPolicy(DefaultPolicy::Deny)
        ));
    }

    #[test]
    fn decision_names_policy_and_default() {
        let p = Policy::from_rules_text(
            PolicyId::new("6a1253d2-1785-24fd-91c2-f8e78c745511").unwrap(),
            "web-writer",
            "service \"web\" { policy = \"write\" }",
        )
        .unwrap();
        let a = Authorizer::for_policies([&p], DefaultPolicy::Deny, &"dc1".parse().unwrap());
        let d = a.service_write("web");
        assert_eq!(
            d.to_string(),
            "allow by service \"web\" policy = \"write\" in policy \"web-writer\" (6a1253d2-1785-24fd-91c2-f8e78c745511)"
        );
        let d = a.service_write("db");
        assert_eq!(d.to_string(), "deny by ACL default policy deny");
        let err = a
            .require(
                d,
                Permission {
                    resource: Resource::Service,
                    access: Access::Write,
                },
                Some("db"),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Permission denied: token lacks permission 'service:write' on \"db\" (decided by ACL default policy deny)"
        );
        assert!(Authorizer::acls_disabled().acl_write().is_allowed());
        assert_eq!(
            Authorizer::acls_disabled().acl_write().reason(),
            Reason::AclsDisabled
        );
    }

    #[test]
    fn unsupported_checks_are_refused() {
        let a = Authorizer::acls_disabled();
        let ctx = AuthorizerContext::default();
        assert!(a.check(Resource::Acl, Access::ReadPrefix, "", ctx).is_err());
        assert!(a.check(Resource::Service, Access::List, "x", ctx).is_err());
        assert!(a.check(Resource::Snapshot, Access::Read, "", ctx).is_err());
        assert!(a.check(Resource::Key, Access::List, "x", ctx).is_ok());
    }

    #[test]
    fn merging_does_not_touch_inputs() {
        let a = Rules::parse("service \"web\" { policy = \"read\" }").unwrap();
        let b =
            Rules::parse("service \"web\" { policy = \"deny\" intentions = \"write\" }").unwrap();
        let (a0, b0) = (a.clone(), b.clone());
        let m = merge_rules([&a, &b]);
        assert_eq!((a, b), (a0, b0));
        let g = m.get(Family::Service, MatchKind::Exact, "web").unwrap();
        assert_eq!(
            (g.policy, g.intentions),
            (AccessLevel::Deny, Some(AccessLevel::Write))
        );
    }
}
