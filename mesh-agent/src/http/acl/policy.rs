//! `/v1/acl/policy*` and `/v1/acl/policies` (see docs/consul-compatibility.md, "ACL
//! rules language").

use axum::body::Bytes;
use axum::extract::{Path, State};
use mesh::acl::PolicyRecord;
use mesh::intentions::acl::GLOBAL_MANAGEMENT_POLICY_ID;
use mesh::tables;
use mesh::{Error, ErrorKind, PolicySpec};

use super::checks::{check_policy_name, check_rules, unwrap_rules};
use super::shapes::{PolicyIn, policy_json};
use super::{Lookup, POLICY_TABLES, Res, enabled};
use crate::http::ApiState;
use crate::http::blocking;
use crate::http::ctx::Ctx;
use crate::http::decode;
use crate::http::error::{ApiError, go_quote};
use crate::http::raw::{
    self, authorizer, decode as decode_rec, require_acl_read, require_acl_write,
};
use crate::http::reply;
use crate::http::util::is_uuid;

pub(crate) async fn policy_missing_id() -> ApiError {
    ApiError::bad_request("Missing policy ID")
}

pub(crate) async fn policy_missing_name() -> ApiError {
    ApiError::bad_request("Missing policy Name")
}

/// `GET /v1/acl/policies`.
pub(crate) async fn policy_list(State(s): State<ApiState>, ctx: Ctx) -> Res {
    enabled(&s)?;
    let authz = authorizer(&s, &ctx)?;
    require_acl_read(&s, &authz)?;
    let (list, index) = blocking::query(&s, &ctx, POLICY_TABLES, || async {
        let recs = raw::list(&s, tables::ACL_POLICIES).await?.records;
        Ok(recs
            .iter()
            .filter_map(|r| decode_rec::<PolicyRecord>(r).map(|p| policy_json(r, &p, true)))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(reply::meta(reply::json(&ctx, &list), index))
}

async fn policy_answer(s: &ApiState, ctx: &Ctx, lookup: Lookup<'_>) -> Res {
    enabled(s)?;
    let authz = authorizer(s, ctx)?;
    require_acl_read(s, &authz)?;
    if let Lookup::Id(id) = lookup
        && !is_uuid(id)
    {
        return Err(ApiError::server(
            "failed acl policy lookup: index error: UUID must be 36 characters",
        ));
    }
    let (found, index) = blocking::query(s, ctx, POLICY_TABLES, || async {
        let id = match lookup {
            Lookup::Id(id) => Some(id.to_owned()),
            Lookup::Name(name) => raw::record(s, tables::ACL_POLICY_NAMES, name)
                .await?
                .and_then(|r| r.value.as_json()?.get("ID")?.as_str().map(str::to_owned)),
        };
        let Some(id) = id else { return Ok(None) };
        Ok(raw::record(s, tables::ACL_POLICIES, &id)
            .await?
            .and_then(|r| decode_rec::<PolicyRecord>(&r).map(|p| policy_json(&r, &p, false))))
    })
    .await?;
    match found {
        Some(p) => Ok(reply::meta(reply::json(ctx, &p), index)),
        None => Err(ApiError::not_found(
            "Requested policy does not exist: ACL not found",
        )),
    }
}

/// `GET /v1/acl/policy/:id`.
pub(crate) async fn policy_read(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Res {
    policy_answer(&s, &ctx, Lookup::Id(&id)).await
}

/// `GET /v1/acl/policy/name/:name`.
pub(crate) async fn policy_read_by_name(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> Res {
    policy_answer(&s, &ctx, Lookup::Name(&name)).await
}

fn policy_write_error(e: Error, name: &str, create: bool) -> ApiError {
    match e.into_kind() {
        ErrorKind::Conflict(_) if create => ApiError::server(format!(
            "Invalid Policy: A Policy with Name {} already exists",
            go_quote(name)
        )),
        ErrorKind::Conflict(_) => ApiError::server(format!(
            "Invalid Policy: A policy with name {} already exists",
            go_quote(name)
        )),
        e => e.into(),
    }
}

async fn stored_policy(s: &ApiState, ctx: &Ctx, id: &str) -> Res {
    let rec = raw::record(s, tables::ACL_POLICIES, id)
        .await?
        .ok_or_else(|| ApiError::server(format!("cannot find policy {id}")))?;
    let p = decode_rec::<PolicyRecord>(&rec)
        .ok_or_else(|| ApiError::server(format!("stored policy {id} does not decode")))?;
    Ok(reply::json(ctx, &policy_json(&rec, &p, false)))
}

/// A policy's `Datacenters`, each a valid datacenter name.
fn datacenters(names: &[String]) -> Result<Vec<mesh::core::DatacenterName>, ApiError> {
    names
        .iter()
        .map(|n| {
            n.parse().map_err(|e| {
                ApiError::bad_request(format!(
                    "Policy decoding failed: invalid datacenter {}: {e}",
                    go_quote(n)
                ))
            })
        })
        .collect()
}

/// `PUT /v1/acl/policy`.
pub(crate) async fn policy_create(State(s): State<ApiState>, ctx: Ctx, body: Bytes) -> Res {
    enabled(&s)?;
    let p: PolicyIn = decode::typed(&body, &decode::POLICY, "Policy decoding failed")?;
    if !p.id.is_empty() {
        return Err(ApiError::bad_request(
            "Cannot specify the ID when creating a new policy",
        ));
    }
    let authz = authorizer(&s, &ctx)?;
    require_acl_write(&s, &authz)?;
    check_policy_name(&p.name)?;
    let rules = unwrap_rules(&p.rules);
    check_rules(&rules)?;
    let spec = PolicySpec {
        name: p.name.clone(),
        description: p.description.clone(),
        rules,
        datacenters: datacenters(&p.datacenters)?,
    };
    let rec = s
        .dc()
        .acl()
        .policy_create_with(&ctx.token, spec)
        .await
        .map_err(|e| policy_write_error(e, &p.name, true))?;
    stored_policy(&s, &ctx, &rec.id).await
}

/// `PUT /v1/acl/policy/:id`.
pub(crate) async fn policy_update(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    enabled(&s)?;
    let p: PolicyIn = decode::typed(&body, &decode::POLICY, "Policy decoding failed")?;
    if !p.id.is_empty() && p.id != id {
        return Err(ApiError::bad_request(
            "Policy ID in URL and payload do not match",
        ));
    }
    let authz = authorizer(&s, &ctx)?;
    require_acl_write(&s, &authz)?;
    check_policy_name(&p.name)?;
    let rules = unwrap_rules(&p.rules);
    let old = match raw::record(&s, tables::ACL_POLICIES, &id).await? {
        Some(rec) => decode_rec::<PolicyRecord>(&rec),
        None => None,
    }
    .ok_or_else(|| ApiError::server(format!("cannot find policy {id}")))?;
    if id == GLOBAL_MANAGEMENT_POLICY_ID {
        if !p.datacenters.is_empty() {
            return Err(ApiError::server(
                "Changing the Datacenters of the global-management policy is not permitted",
            ));
        }
        if !rules.is_empty() && rules != old.rules {
            return Err(ApiError::server(
                "Changing the Rules for the builtin global-management policy is not permitted",
            ));
        }
    }
    check_rules(&rules)?;
    let spec = PolicySpec {
        name: p.name.clone(),
        description: p.description.clone(),
        rules,
        datacenters: datacenters(&p.datacenters)?,
    };
    s.dc()
        .acl()
        .policy_update_with(&ctx.token, &id, spec)
        .await
        .map_err(|e| policy_write_error(e, &p.name, false))?;
    stored_policy(&s, &ctx, &id).await
}

/// `DELETE /v1/acl/policy/:id`.
pub(crate) async fn policy_delete(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Res {
    enabled(&s)?;
    let authz = authorizer(&s, &ctx)?;
    require_acl_write(&s, &authz)?;
    if id == GLOBAL_MANAGEMENT_POLICY_ID {
        return Err(ApiError::server(
            "Delete operation not permitted on the builtin global-management policy",
        ));
    }
    if raw::record(&s, tables::ACL_POLICIES, &id).await?.is_none() {
        return Err(ApiError::not_found("Cannot find policy to delete"));
    }
    match s
        .dc()
        .acl()
        .policy_delete(&ctx.token, &id)
        .await
        .map_err(mesh::Error::into_kind)
    {
        Ok(()) => Ok(reply::json(&ctx, &true)),
        Err(ErrorKind::NotFound(_)) => Err(ApiError::not_found("Cannot find policy to delete")),
        Err(e) => Err(e.into()),
    }
}
