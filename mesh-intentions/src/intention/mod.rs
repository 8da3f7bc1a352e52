//! Intentions: the model, precedence, validation, who may read and write them, the indexed
//! set and the decision for a connection.

mod authz;
mod entry;
pub(crate) mod model;
pub(crate) mod set;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use authz::{
    AuthorizeError, AuthorizeResponse, authorize_connect, can_read, can_read_entry, can_write,
    can_write_entry,
};
pub use entry::{
    EntryError, JwtClaim, JwtProvider, JwtRequirement, PermissionProblem, SERVICE_INTENTIONS_KIND,
    ServiceIntentionsEntry, SourceIntention, SourceProblem, VALID_METHODS,
};
pub use model::{
    Action, DEFAULT_NAMESPACE, HeaderPermission, HttpPermission, Intention, IntentionError,
    IntentionErrors, MAX_DESCRIPTION_LEN, MAX_META_KEY_LEN, MAX_META_PAIRS, MAX_META_VALUE_LEN,
    META_EXTERNAL_SOURCE, MatchType, Permission, PrecedenceKey, SOURCE_TYPE_CONSUL, WILDCARD,
    authorize_intention_target, precedence,
};
pub use set::{
    DefaultSource, IntentionDecision, IntentionDefault, IntentionReason, IntentionSet,
    IntentionSetError, UnsupportedDefaultIntentionPolicy,
};

/// The current [`IntentionSet`] of a datacenter, swapped atomically when intentions change.
/// Readers never block and never see a half-built set.
#[derive(Debug, Default)]
pub struct SharedIntentions {
    current: ArcSwap<IntentionSet>,
}

impl SharedIntentions {
    /// Starts with `set`.
    pub fn new(set: IntentionSet) -> Self {
        Self {
            current: ArcSwap::from_pointee(set),
        }
    }

    /// The current snapshot (cheap; hold it for the duration of one decision or request).
    pub fn load(&self) -> Arc<IntentionSet> {
        self.current.load_full()
    }

    /// Publishes a new snapshot.
    pub fn store(&self, set: IntentionSet) {
        self.current.store(Arc::new(set));
    }

    /// Decides with the current snapshot (allocation-free: a guard, not an `Arc` clone).
    pub fn is_allowed(&self, source: &str, destination: &str, default: IntentionDefault) -> bool {
        self.current
            .load()
            .decide(source, destination, default)
            .is_allowed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::DefaultPolicy;

    #[test]
    fn shared_intentions_swap_snapshots() {
        let shared = SharedIntentions::default();
        let deny = IntentionDefault::new(Some(DefaultPolicy::Deny), None);
        assert!(!shared.is_allowed("web", "db", deny));
        let before = shared.load();
        shared.store(IntentionSet::build([Intention::new("web", "db", Action::Allow)]).unwrap());
        assert!(shared.is_allowed("web", "db", deny));
        // A reader holding the old snapshot keeps a consistent view.
        assert!(!before.decide("web", "db", deny).is_allowed());
        assert_eq!(shared.load().len(), 1);
    }
}
