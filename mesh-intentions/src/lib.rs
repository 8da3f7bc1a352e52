//! Consul's ACL system and intentions, as pure data and functions.
//!
//! * [`acl`]: the rules language (HCL v1 syntax and JSON, every resource of Consul's policy
//!   language), policies with Consul's name rules, roles, tokens (their secret never shown by
//!   `Debug`), service and node identities, the built-in `global-management` policy and the
//!   anonymous token, and the [`acl::Authorizer`] compiled from a token's policies and the
//!   default policy. Every check returns an [`acl::Decision`] naming the rule (family,
//!   exact/prefix, name, level, policy) or the default that decided.
//! * [`intention`]: the intention model in Consul's API shape, its precedence (one `Ord`),
//!   validation with Consul's messages (legacy intentions and `service-intentions` config
//!   entries), who may read and write intentions, and the [`intention::IntentionSet`]: an
//!   immutable, indexed snapshot whose decision for a source → destination pair costs the same
//!   with 10 or 100,000 intentions, and whose default comes from the ACL default policy.
//!
//! What this crate does not do: storage, replication, caching of resolved tokens, network
//! I/O or certificate checks. Tokens, policies and roles are resolved by the caller (the
//! replicated store owns them) and passed in; a TLS layer verifies the peer before asking for
//! an intention decision.
//!
//! Where Consul has a quirk, mesh does the safer or saner thing, and says so where it applies:
//! levels are case-insensitive and normalised (`"WRITE"` is `write` everywhere), unknown rule
//! keys and duplicate rules are refused instead of ignored, merging never mutates its inputs,
//! and several JSON documents one after another (as in Consul's mesh-gateway guide) are read
//! as their union.
//!
//! ```
//! use mesh_intentions::acl::{Authorizer, DefaultPolicy, Policy, PolicyId};
//! use mesh_intentions::intention::{Action, Intention, IntentionDefault, IntentionSet, can_write};
//!
//! // The guide's mesh-gateway-policy.json: three JSON objects one after another.
//! let rules = r#"{"node_prefix":{"":{"policy":"read"}}}
//! {"service_prefix":{"":{"policy":"read"}}}
//! {"service":{"mesh-gateway":{"policy":"write"}}}"#;
//! let id = PolicyId::new("6a1253d2-1785-24fd-91c2-f8e78c745511")?;
//! let policy = Policy::from_rules_text(id, "mesh-gateway", rules)?;
//! let dc = "primary".parse()?;
//! let authz = Authorizer::for_policies([&policy], DefaultPolicy::Deny, &dc);
//!
//! let d = authz.service_write("mesh-gateway");
//! assert!(d.is_allowed());
//! assert!(d.to_string().contains("policy \"mesh-gateway\""));
//! assert!(!authz.service_write("web").is_allowed());
//!
//! // Writing an intention needs `intentions = "write"` on its destination.
//! let ixn = Intention::new("web", "socat", Action::Allow);
//! let err = can_write(&authz, &ixn).unwrap_err();
//! assert_eq!(err.needed.to_string(), "intentions:write");
//!
//! // Deciding a connection; nothing matches web -> db, so the ACL default (deny) decides.
//! let set = IntentionSet::build([ixn])?;
//! let default = IntentionDefault::from_authorizer(&authz, None);
//! let ok = set.decide("web", "socat", default);
//! assert!(ok.is_allowed());
//! assert_eq!(ok.to_string(), "Matched L4 intention: default/web => default/socat (Precedence: 9, Action: ALLOW)");
//! let no = set.decide("web", "db", default);
//! assert_eq!((no.is_allowed(), no.to_string().as_str()), (false, "Default behavior configured by ACLs"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
// Unit tests unwrap on purpose: a failing unwrap is a failing test.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod acl;
pub mod intention;

/// Consul's own shapes, kept to check mesh against Consul's test vectors and its legacy
/// intention writes: the decision summary Consul's tests compare, and the rules of the legacy
/// by-ID intention API. Applications use [`intention::IntentionSet`] and
/// [`intention::Intention`].
pub mod consul_compat {
    pub use crate::intention::model::{LegacyApplyError, LegacyOp, validate_legacy_apply};
    pub use crate::intention::set::{DecisionSummary, decision_summary};
}
