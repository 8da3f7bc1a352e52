//! Reading stored records (with their indexes, which the datacenter API leaves out), the ACL
//! checks handlers make themselves, and the few writes the datacenter API cannot express yet.
//!
//! Those writes go through the primary's replication server ([`mesh::Datacenter::replication_server`]):
//! the same path a secondary's forwarded writes take, where every operation is decoded,
//! validated and authorized on its own value by the datacenter's own rules, and applied as
//! one transaction. They need a library method each to work in a secondary too.

use std::io::Read;

use mesh::Secret;
use mesh::intentions::acl::{Access, Authorizer, Decision, Permission, Resource};
use mesh::replication_engine::{ApplyRequest, Listing, Record, SecretToken, TxnOp};
use mesh::tables::table;
use serde::de::DeserializeOwned;

use super::ApiState;
use super::ctx::Ctx;
use super::error::ApiError;

/// One stored record.
pub(crate) async fn record(
    state: &ApiState,
    t: &'static str,
    id: &str,
) -> Result<Option<Record>, ApiError> {
    if id.is_empty() || id.len() > 512 || id.chars().any(char::is_control) {
        return Ok(None);
    }
    Ok(state.dc().store().get(&table(t), id).await?)
}

/// Every record of a table.
pub(crate) async fn list(state: &ApiState, t: &'static str) -> Result<Listing, ApiError> {
    Ok(state.dc().store().list(&table(t)).await?)
}

/// A record's JSON value decoded (`None` when it does not decode; the datacenter logs those).
pub(crate) fn decode<T: DeserializeOwned>(rec: &Record) -> Option<T> {
    T::deserialize(rec.value.as_json()?).ok()
}

/// Applies `ops` as one transaction through the primary's write path; `what` names the
/// operation for the error a secondary answers.
pub(crate) async fn apply(
    state: &ApiState,
    token: &Secret,
    ops: Vec<TxnOp>,
    what: &str,
) -> Result<u64, ApiError> {
    let dc = state.dc();
    if !dc.is_primary() {
        return Err(ApiError::server(format!(
            "{what} is not supported in a secondary datacenter yet; send the request to the primary datacenter"
        )));
    }
    let index = dc
        .replication_server()
        .apply(ApplyRequest {
            token: SecretToken::from(token),
            ops,
        })
        .await?;
    dc.refresh_views().await?;
    Ok(index.0)
}

/// A new secret: a version-4 UUID from the operating system's random source.
pub(crate) fn secret_uuid() -> Result<String, ApiError> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| ApiError::server(format!("generating a secret failed: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The caller's authorizer (403 `ACL not found` for an unknown secret).
pub(crate) fn authorizer(state: &ApiState, ctx: &Ctx) -> Result<Authorizer, ApiError> {
    state
        .dc()
        .acl()
        .authorizer(&ctx.token)
        .map_err(ApiError::from)
}

/// Enforces a decision: `Ok` when allowed, Consul's 403 otherwise; counted either way.
pub(crate) fn require(
    state: &ApiState,
    authz: &Authorizer,
    decision: Decision<'_>,
    resource: Resource,
    access: Access,
    on: Option<&str>,
) -> Result<(), ApiError> {
    let allowed = decision.is_allowed();
    state.metrics.acl_decision(allowed);
    authz
        .require(decision, Permission { resource, access }, on)
        .map(|_| ())
        .map_err(|pd| {
            tracing::debug!(denied = %pd, "request refused by ACLs");
            ApiError::denied(&pd)
        })
}

/// `acl:read`.
pub(crate) fn require_acl_read(state: &ApiState, authz: &Authorizer) -> Result<(), ApiError> {
    require(
        state,
        authz,
        authz.acl_read(),
        Resource::Acl,
        Access::Read,
        None,
    )
}

/// `acl:write`.
pub(crate) fn require_acl_write(state: &ApiState, authz: &Authorizer) -> Result<(), ApiError> {
    require(
        state,
        authz,
        authz.acl_write(),
        Resource::Acl,
        Access::Write,
        None,
    )
}

/// `operator:write`.
pub(crate) fn require_operator_write(state: &ApiState, authz: &Authorizer) -> Result<(), ApiError> {
    require(
        state,
        authz,
        authz.operator_write(),
        Resource::Operator,
        Access::Write,
        None,
    )
}

/// `service:read` on a name.
pub(crate) fn require_service_read(
    state: &ApiState,
    authz: &Authorizer,
    name: &str,
) -> Result<(), ApiError> {
    require(
        state,
        authz,
        authz.service_read(name),
        Resource::Service,
        Access::Read,
        Some(name),
    )
}

/// `service:write` on a name.
pub(crate) fn require_service_write(
    state: &ApiState,
    authz: &Authorizer,
    name: &str,
) -> Result<(), ApiError> {
    require(
        state,
        authz,
        authz.service_write(name),
        Resource::Service,
        Access::Write,
        Some(name),
    )
}
