//! The tables a datacenter keeps, and which of them replicate.

use mesh_replication::{Scope, TableName, TableRegistry};

macro_rules! tables {
    ($($(#[$doc:meta])* $konst:ident = $name:literal, $scope:ident;)*) => {
        $($(#[$doc])* pub const $konst: &str = $name;)*

        /// Every table with its scope.
        pub const ALL: &[(&str, Scope)] = &[$(($name, Scope::$scope)),*];
    };
}

tables! {
    /// ACL policies (global).
    ACL_POLICIES = "acl-policies", Global;
    /// ACL roles (global).
    ACL_ROLES = "acl-roles", Global;
    /// Policy names, keyed by name, each naming its policy's id (global): written in the same
    /// transaction as the policy with a check-and-set, so two policies never share a name.
    ACL_POLICY_NAMES = "acl-policy-names", Global;
    /// Role names, keyed by name (global), as for policies.
    ACL_ROLE_NAMES = "acl-role-names", Global;
    /// Global ACL tokens.
    ACL_TOKENS = "acl-tokens", Global;
    /// Tokens local to this datacenter.
    ACL_LOCAL_TOKENS = "acl-local-tokens", Local;
    /// Intentions, keyed `<destination>/<source>` (global).
    INTENTIONS = "intentions", Global;
    /// Config entries, keyed `<kind>/<name>` (global).
    CONFIG_ENTRIES = "config-entries", Global;
    /// The CA roots list (global, written by the primary).
    CA_ROOTS = "ca-roots", Global;
    /// Intermediate requests of secondaries and the primary's answers, keyed by datacenter
    /// (global: the request is forwarded to the primary, the answer replicates back).
    CA_INTERMEDIATES = "ca-intermediates", Global;
    /// This datacenter's CA state, with its private keys (local, never replicated).
    CA_STATE = "ca-state", Local;
    /// Every datacenter's mesh gateways, keyed `<datacenter>/<service>/<instance id>` (global).
    FEDERATION = "federation", Global;
    /// Every datacenter's sidecar addresses, keyed `<datacenter>/<service>/<sidecar id>` (global: used
    /// by upstreams in mesh-gateway mode `none` that dial another datacenter directly).
    ENDPOINTS = "endpoints", Global;
    /// Every datacenter of the mesh, keyed by name (global): the primary writes its own
    /// record when it starts, a secondary publishes its own through the primary.
    DATACENTERS = "datacenters", Global;
    /// This datacenter's catalog: service, sidecar and gateway instances (local).
    CATALOG = "catalog", Local;
}

/// One of the tables above by name: `None` for a name this datacenter does not keep.
pub fn lookup(name: &str) -> Option<TableName> {
    ALL.iter()
        .find(|(n, _)| *n == name)
        .and_then(|(n, _)| n.parse().ok())
}

/// A table name from one of the constants above (crate-internal: every caller passes a
/// constant, checked by `registry_builds`).
pub(crate) fn table(name: &'static str) -> TableName {
    // Every constant above is a valid table name (checked by `registry_builds`).
    name.parse()
        .unwrap_or_else(|_| unreachable!("table constant {name} is valid"))
}

/// The registry of every table with its scope.
pub fn registry() -> TableRegistry {
    let mut r = TableRegistry::new();
    for (name, scope) in ALL {
        // Names are unique and valid (checked by `registry_builds`).
        let _ = r.register(table(name), *scope);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_builds() {
        let mut r = TableRegistry::new();
        for (name, scope) in ALL {
            let t: TableName = name.parse().expect("valid table name");
            r.register(t, *scope).expect("unique table name");
        }
        assert!(r.is_global(&table(INTENTIONS)));
        assert!(!r.is_global(&table(CATALOG)));
        assert!(!r.is_global(&table(CA_STATE)));
    }

    #[test]
    fn lookup_finds_only_known_tables() {
        assert_eq!(lookup(INTENTIONS), Some(table(INTENTIONS)));
        assert_eq!(lookup(""), None);
        assert_eq!(lookup("no-such-table"), None);
    }
}
