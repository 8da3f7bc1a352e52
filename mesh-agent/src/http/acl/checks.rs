//! Consul's validation of ACL input: names, rules, identities, with its (500) messages.

use mesh::acl::{NodeIdentityRecord, ServiceIdentityRecord};
use mesh::intentions::acl::Rules;

use super::shapes::{NodeIdentityIn, ServiceIdentityIn, TemplatedIn};
use crate::http::error::{ApiError, go_quote};

/// py-consul sends `Rules` as `json.dumps(rules)`: a rules text passed as a string arrives
/// as a JSON string literal. Consul refuses that; mesh reads the text inside (a string
/// literal is never valid rules, so this only accepts what would otherwise fail).
pub(super) fn unwrap_rules(rules: &str) -> String {
    let t = rules.trim();
    if t.starts_with('"')
        && let Ok(inner) = serde_json::from_str::<String>(t)
    {
        return inner;
    }
    rules.to_owned()
}

/// Consul's policy name rules, with its (500) messages.
pub(super) fn check_policy_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::server("Invalid Policy: no Name is set"));
    }
    if name.len() > 128 {
        return Err(ApiError::server(
            "Invalid Policy: invalid Name. Length must be greater than 0 and less than 128",
        ));
    }
    if name.starts_with('/') || name.starts_with("builtin/") {
        return Err(ApiError::server(
            "Invalid Policy: invalid Name. Names cannot be prefixed with '/' or 'builtin/'",
        ));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let valid = match name.split_once('/') {
        None => name.chars().all(ok_char),
        Some((a, b)) => !a.is_empty() && a.chars().all(ok_char) && b.chars().all(ok_char),
    };
    if !valid {
        return Err(ApiError::server(
            "Invalid Policy: invalid Name. Only alphanumeric characters, a single '/', '-' and '_' are allowed",
        ));
    }
    Ok(())
}

pub(super) fn check_rules(rules: &str) -> Result<(), ApiError> {
    Rules::parse(rules)
        .map(|_| ())
        .map_err(|e| ApiError::server(format!("Failed to parse ACL rules: {e}")))
}

pub(super) fn check_role_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::server("Invalid Role: no Name is set"));
    }
    let ok = name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(ApiError::server(
            "Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed",
        ));
    }
    Ok(())
}

/// Consul's service-identity name rule.
pub(super) fn check_identity_name(what: &str, name: &str) -> Result<(), ApiError> {
    let b = name.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_';
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !b.is_empty()
        && b.len() <= 256
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(inner);
    if ok {
        Ok(())
    } else {
        Err(ApiError::server(format!(
            "{what} {} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
            go_quote(name)
        )))
    }
}

pub(super) fn parse_dcs(dcs: &[String]) -> Result<Vec<mesh::core::DatacenterName>, ApiError> {
    dcs.iter()
        .map(|d| {
            d.parse()
                .map_err(|_| ApiError::server(format!("Invalid datacenter name {}", go_quote(d))))
        })
        .collect()
}

pub(super) fn service_identities(
    sis: &[ServiceIdentityIn],
) -> Result<Vec<ServiceIdentityRecord>, ApiError> {
    sis.iter()
        .map(|s| {
            check_identity_name("Service identity", &s.service_name)?;
            Ok(ServiceIdentityRecord {
                service_name: s.service_name.clone(),
                datacenters: parse_dcs(&s.datacenters)?,
            })
        })
        .collect()
}

pub(super) fn node_identities(
    nis: &[NodeIdentityIn],
    what: &str,
) -> Result<Vec<NodeIdentityRecord>, ApiError> {
    nis.iter()
        .map(|n| {
            check_identity_name("Node identity", &n.node_name)?;
            if n.datacenter.is_empty() {
                return Err(ApiError::server(format!(
                    "Node identity is missing the datacenter field on this {what}"
                )));
            }
            Ok(NodeIdentityRecord {
                node_name: n.node_name.clone(),
                datacenter: parse_dcs(std::slice::from_ref(&n.datacenter))?
                    .pop()
                    .ok_or_else(|| ApiError::server("Invalid datacenter"))?,
            })
        })
        .collect()
}

pub(super) fn refuse_templated(t: &[TemplatedIn]) -> Result<(), ApiError> {
    match t.first() {
        Some(t) => Err(ApiError::server(format!(
            "no such ACL templated policy with Name {}",
            go_quote(&t.template_name)
        ))),
        None => Ok(()),
    }
}
