//! Who may read and write intentions, and the agent's connect-authorize check (see
//! docs/consul-compatibility.md, 'Who may read and write intentions' and 'Intention matching and
//! connect authorize').

use mesh_core::{SpiffeId, SpiffeIdError};

use crate::acl::{Access, Authorizer, Decision, Permission, PermissionDenied, Resource};

use super::entry::ServiceIntentionsEntry;
use super::model::Intention;
use super::set::{IntentionDefault, IntentionSet};

const INTENTIONS_READ: Permission = Permission {
    resource: Resource::Intention,
    access: Access::Read,
};
const INTENTIONS_WRITE: Permission = Permission {
    resource: Resource::Intention,
    access: Access::Write,
};
const SERVICE_WRITE: Permission = Permission {
    resource: Resource::Service,
    access: Access::Write,
};

/// Writing (creating, updating, deleting) an intention needs `intentions = "write"` on its
/// destination (`policy = "write"` alone is not enough). A destination of `*` needs write on
/// every intention rule.
pub fn can_write<'a>(
    authz: &'a Authorizer,
    ixn: &Intention,
) -> Result<Decision<'a>, PermissionDenied> {
    let d = authz.intention_write(&ixn.destination_name);
    authz.require(d, INTENTIONS_WRITE, Some(&ixn.destination_name))
}

/// Reading an intention needs `intentions:read` on its source (not consulted for peer
/// sources) or on its destination. A `*` name asks whether any intention rule grants read.
/// On refusal the destination's decision is reported.
pub fn can_read<'a>(
    authz: &'a Authorizer,
    ixn: &Intention,
) -> Result<Decision<'a>, PermissionDenied> {
    if ixn.source_peer.is_empty() {
        let d = authz.intention_read(&ixn.source_name);
        if d.is_allowed() {
            return Ok(d);
        }
    }
    let d = authz.intention_read(&ixn.destination_name);
    authz.require(d, INTENTIONS_READ, Some(&ixn.destination_name))
}

/// Writing a `service-intentions` config entry needs `intentions:write` on its name.
pub fn can_write_entry<'a>(
    authz: &'a Authorizer,
    entry: &ServiceIntentionsEntry,
) -> Result<Decision<'a>, PermissionDenied> {
    let d = authz.intention_write(&entry.name);
    authz.require(d, INTENTIONS_WRITE, Some(&entry.name))
}

/// Reading a `service-intentions` config entry needs `intentions:read` on its name.
pub fn can_read_entry<'a>(
    authz: &'a Authorizer,
    entry: &ServiceIntentionsEntry,
) -> Result<Decision<'a>, PermissionDenied> {
    let d = authz.intention_read(&entry.name);
    authz.require(d, INTENTIONS_READ, Some(&entry.name))
}

/// The answer of a connect-authorize check (`{"Authorized": bool, "Reason": string}`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthorizeResponse {
    /// Whether the connection may proceed.
    pub authorized: bool,
    /// Why (Consul's reason strings).
    pub reason: String,
}

/// Why a connect-authorize request was refused before any intention was consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizeError {
    /// No target service.
    #[error("Target service must be specified")]
    MissingTarget,
    /// The client certificate URI is not a SPIFFE ID mesh understands.
    #[error("ClientCertURI not a valid Connect identifier")]
    InvalidUri(#[source] SpiffeIdError),
    /// The URI is valid but does not name a service.
    #[error("ClientCertURI not a valid Service identifier")]
    NotService,
    /// The caller's token lacks `service:write` on the target.
    #[error(transparent)]
    PermissionDenied(#[from] PermissionDenied),
}

impl AuthorizeError {
    /// The HTTP status Consul answers with (400, or 403 for a permission refusal).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::PermissionDenied(_) => 403,
            _ => 400,
        }
    }
}

/// The agent's `/v1/agent/connect/authorize`: may the service named by the client
/// certificate URI connect to `target`? The caller (`authz`) needs `service:write` on the
/// target. Like Consul, the URI's trust domain and datacenter are not checked here (the TLS
/// handshake already verified the chain).
pub fn authorize_connect(
    authz: &Authorizer,
    intentions: &IntentionSet,
    default: IntentionDefault,
    target: &str,
    client_cert_uri: &str,
) -> Result<AuthorizeResponse, AuthorizeError> {
    if target.is_empty() {
        return Err(AuthorizeError::MissingTarget);
    }
    let id = SpiffeId::parse(client_cert_uri).map_err(AuthorizeError::InvalidUri)?;
    let source = id.as_service().ok_or(AuthorizeError::NotService)?;
    let d = authz.service_write(target);
    authz.require(d, SERVICE_WRITE, Some(target))?;
    let decision = intentions.decide(source.service().as_str(), target, default);
    Ok(AuthorizeResponse {
        authorized: decision.is_allowed(),
        reason: decision.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{DefaultPolicy, PolicyAuthorizer, RootAuthorizer, Rules};
    use crate::intention::Action;

    fn authz(rules: &str) -> Authorizer {
        let r = Rules::parse(rules).unwrap();
        Authorizer::chain(
            vec![PolicyAuthorizer::from_rules(&r, "t")],
            RootAuthorizer::DenyAll,
        )
    }

    #[test]
    fn write_needs_intentions_write_on_destination() {
        let ixn = Intention::new("web", "socat", Action::Allow);
        let a = authz("service \"socat\" { policy = \"write\" }");
        let err = can_write(&a, &ixn).unwrap_err();
        assert_eq!(err.needed.to_string(), "intentions:write");
        assert_eq!(err.on.as_deref(), Some("socat"));
        assert!(
            err.to_string()
                .contains("intentions (implied by policy) = \"read\""),
            "{err}"
        );
        let a = authz("service \"socat\" { policy = \"read\" intentions = \"write\" }");
        can_write(&a, &ixn).unwrap();
        can_read(&a, &ixn).unwrap();
    }

    #[test]
    fn peer_sources_do_not_grant_read() {
        let mut ixn = Intention::new("web", "db", Action::Allow);
        let a = authz("service \"web\" { policy = \"read\" }");
        can_read(&a, &ixn).unwrap();
        ixn.source_peer = "p".into();
        assert!(can_read(&a, &ixn).is_err());
    }

    #[test]
    fn authorize_errors_in_consul_order() {
        let set = IntentionSet::empty();
        let def = IntentionDefault::new(Some(DefaultPolicy::Deny), None);
        let a = Authorizer::acls_disabled();
        let uri = "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web";
        assert_eq!(
            authorize_connect(&a, &set, def, "", "tubes")
                .unwrap_err()
                .http_status(),
            400
        );
        let e = authorize_connect(&a, &set, def, "db", "tubes").unwrap_err();
        assert_eq!(
            e.to_string(),
            "ClientCertURI not a valid Connect identifier"
        );
        let e = authorize_connect(&authz(""), &set, def, "db", uri).unwrap_err();
        assert_eq!(e.http_status(), 403);
        let r = authorize_connect(&a, &set, def, "db", uri).unwrap();
        assert!(!r.authorized);
        assert_eq!(r.reason, "Default behavior configured by ACLs");
    }
}
