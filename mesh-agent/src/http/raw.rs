//! Reading stored records (with their indexes, which the datacenter API leaves out) and the
//! ACL checks handlers make themselves. Every write goes through the datacenter's API.

use mesh::intentions::acl::{Access, Authorizer, Decision, Permission, Resource};
use mesh::replication_engine::TableName;
use mesh::replication_engine::{Listing, Record};
use serde::de::DeserializeOwned;

use super::ApiState;
use super::ctx::Ctx;
use super::error::ApiError;

/// A table of the datacenter by its `mesh::tables` name; a name it does not keep is a server
/// error (every caller here passes one of those constants).
pub(crate) fn table(name: &str) -> Result<TableName, ApiError> {
    mesh::tables::lookup(name).ok_or_else(|| ApiError::server(format!("unknown table {name}")))
}

/// One stored record.
pub(crate) async fn record(
    state: &ApiState,
    t: &'static str,
    id: &str,
) -> Result<Option<Record>, ApiError> {
    if id.is_empty() || id.len() > 512 || id.chars().any(char::is_control) {
        return Ok(None);
    }
    Ok(state.dc().store().get(&table(t)?, id).await?)
}

/// Every record of a table.
pub(crate) async fn list(state: &ApiState, t: &'static str) -> Result<Listing, ApiError> {
    Ok(state.dc().store().list(&table(t)?).await?)
}

/// A record's JSON value decoded (`None` when it does not decode; the datacenter logs those).
pub(crate) fn decode<T: DeserializeOwned>(rec: &Record) -> Option<T> {
    T::deserialize(rec.value.as_json()?).ok()
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
