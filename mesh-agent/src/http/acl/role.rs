//! `/v1/acl/role*` and `/v1/acl/roles` (see docs/consul-compatibility.md, "ACL rules
//! language").

use axum::body::Bytes;
use axum::extract::{Path, State};
use mesh::acl::RoleRecord;
use mesh::tables;
use mesh::{Error, ErrorKind, RoleSpec};

use super::checks::{check_role_name, node_identities, refuse_templated, service_identities};
use super::shapes::{Names, RoleIn, role_json};
use super::{Lookup, ROLE_TABLES, Res, enabled};
use crate::http::ApiState;
use crate::http::blocking;
use crate::http::ctx::Ctx;
use crate::http::decode;
use crate::http::error::{ApiError, go_quote};
use crate::http::raw::{
    self, authorizer, decode as decode_rec, require_acl_read, require_acl_write,
};
use crate::http::reply;

pub(crate) async fn role_missing_id() -> ApiError {
    ApiError::bad_request("Missing role ID")
}

pub(crate) async fn role_missing_name() -> ApiError {
    ApiError::bad_request("Missing role Name")
}

/// `GET /v1/acl/roles[?policy=]`.
pub(crate) async fn role_list(State(s): State<ApiState>, ctx: Ctx) -> Res {
    enabled(&s)?;
    let authz = authorizer(&s, &ctx)?;
    require_acl_read(&s, &authz)?;
    let policy = ctx.param("policy").filter(|p| !p.is_empty());
    let (list, index) = blocking::query(&s, &ctx, ROLE_TABLES, || async {
        let names = Names::load(&s).await?;
        let recs = raw::list(&s, tables::ACL_ROLES).await?.records;
        Ok(recs
            .iter()
            .filter_map(|r| decode_rec::<RoleRecord>(r).map(|role| (r, role)))
            .filter(|(_, role)| policy.is_none_or(|p| role.policies.iter().any(|x| x == p)))
            .map(|(r, role)| role_json(r, &role, &names))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(reply::meta(reply::json(&ctx, &list), index))
}

async fn role_answer(s: &ApiState, ctx: &Ctx, lookup: Lookup<'_>) -> Res {
    enabled(s)?;
    let authz = authorizer(s, ctx)?;
    require_acl_read(s, &authz)?;
    let (found, index) = blocking::query(s, ctx, ROLE_TABLES, || async {
        let names = Names::load(s).await?;
        let id = match lookup {
            Lookup::Id(id) => Some(id.to_owned()),
            Lookup::Name(name) => names
                .roles
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(i, _)| i.clone()),
        };
        let Some(id) = id else { return Ok(None) };
        Ok(raw::record(s, tables::ACL_ROLES, &id)
            .await?
            .and_then(|r| decode_rec::<RoleRecord>(&r).map(|role| role_json(&r, &role, &names))))
    })
    .await?;
    match found {
        Some(r) => Ok(reply::meta(reply::json(ctx, &r), index)),
        None => Err(ApiError::not_found(
            "Requested role does not exist: ACL not found",
        )),
    }
}

/// `GET /v1/acl/role/:id`.
pub(crate) async fn role_read(State(s): State<ApiState>, ctx: Ctx, Path(id): Path<String>) -> Res {
    role_answer(&s, &ctx, Lookup::Id(&id)).await
}

/// `GET /v1/acl/role/name/:name`.
pub(crate) async fn role_read_by_name(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> Res {
    role_answer(&s, &ctx, Lookup::Name(&name)).await
}

fn role_write_error(e: Error, name: &str) -> ApiError {
    match e.into_kind() {
        ErrorKind::Conflict(_) => ApiError::server(format!(
            "Invalid Role: A Role with Name {} already exists",
            go_quote(name)
        )),
        e => e.into(),
    }
}

async fn role_write(s: &ApiState, ctx: &Ctx, id: Option<&str>, r: RoleIn) -> Res {
    let authz = authorizer(s, ctx)?;
    require_acl_write(s, &authz)?;
    check_role_name(&r.name)?;
    refuse_templated(&r.templated_policies)?;
    let names = Names::load(s).await?;
    let policies = Names::resolve(&names.policies, &r.policies, "policy")?;
    let sis = service_identities(&r.service_identities)?;
    let nis = node_identities(&r.node_identities, "role")?;
    if let Some(id) = id
        && raw::record(s, tables::ACL_ROLES, id).await?.is_none()
    {
        return Err(ApiError::server(format!("cannot find role {id}")));
    }
    let spec = RoleSpec {
        name: r.name.clone(),
        description: r.description.clone(),
        policy_names: policies.into_iter().map(|(_, n)| n).collect(),
        service_identities: sis
            .into_iter()
            .map(|s| (s.service_name, s.datacenters))
            .collect(),
        node_identities: nis
            .into_iter()
            .map(|n| (n.node_name, n.datacenter))
            .collect(),
    };
    let acl = s.dc().acl();
    let role_id = match id {
        None => acl.role_create_with(&ctx.token, spec).await,
        Some(id) => acl.role_update_with(&ctx.token, id, spec).await,
    }
    .map_err(|e| role_write_error(e, &r.name))?
    .id;
    let names = Names::load(s).await?;
    let rec = raw::record(s, tables::ACL_ROLES, &role_id)
        .await?
        .ok_or_else(|| ApiError::server(format!("cannot find role {role_id}")))?;
    let role = decode_rec::<RoleRecord>(&rec)
        .ok_or_else(|| ApiError::server(format!("stored role {role_id} does not decode")))?;
    Ok(reply::json(ctx, &role_json(&rec, &role, &names)))
}

/// `PUT /v1/acl/role`.
pub(crate) async fn role_create(State(s): State<ApiState>, ctx: Ctx, body: Bytes) -> Res {
    enabled(&s)?;
    let r: RoleIn = decode::typed(&body, &decode::ROLE, "Role decoding failed")?;
    if !r.id.is_empty() {
        return Err(ApiError::bad_request(
            "Role ID in URL and payload do not match",
        ));
    }
    role_write(&s, &ctx, None, r).await
}

/// `PUT /v1/acl/role/:id`.
pub(crate) async fn role_update(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    enabled(&s)?;
    let r: RoleIn = decode::typed(&body, &decode::ROLE, "Role decoding failed")?;
    if !r.id.is_empty() && r.id != id {
        return Err(ApiError::bad_request(
            "Role ID in URL and payload do not match",
        ));
    }
    role_write(&s, &ctx, Some(&id), r).await
}

/// `DELETE /v1/acl/role/:id`.
pub(crate) async fn role_delete(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Res {
    enabled(&s)?;
    let authz = authorizer(&s, &ctx)?;
    require_acl_write(&s, &authz)?;
    if raw::record(&s, tables::ACL_ROLES, &id).await?.is_none() {
        return Err(ApiError::not_found("Cannot find role to delete"));
    }
    match s
        .dc()
        .acl()
        .role_delete(&ctx.token, &id)
        .await
        .map_err(mesh::Error::into_kind)
    {
        Ok(()) => Ok(reply::json(&ctx, &true)),
        Err(ErrorKind::NotFound(_)) => Err(ApiError::not_found("Cannot find role to delete")),
        Err(e) => Err(e.into()),
    }
}
