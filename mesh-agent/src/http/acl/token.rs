//! `/v1/acl/token*` and `/v1/acl/tokens` (see docs/consul-compatibility.md, "Token
//! locality" and "Built-in tokens, policies and identities").

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use mesh::acl::{NodeIdentityRecord, ServiceIdentityRecord};
use mesh::{ErrorKind, Secret, TokenSpec};

use super::checks::{node_identities, refuse_templated, service_identities};
use super::shapes::{Names, TokenIn, all_tokens, anonymous, stored_token, token_json};
use super::{Res, TOKEN_TABLES, enabled};
use crate::http::ApiState;
use crate::http::blocking;
use crate::http::ctx::{ANONYMOUS_ACCESSOR, Ctx};
use crate::http::decode;
use crate::http::error::{ApiError, go_quote};
use crate::http::raw::{authorizer, require_acl_read, require_acl_write};
use crate::http::reply;
use crate::http::util::{
    RESERVED_ID_PREFIX, ZERO_TIME, go_duration, is_uuid, now_unix, parse_go_duration, parse_rfc3339,
};

pub(crate) async fn token_missing_id() -> ApiError {
    ApiError::bad_request("Missing token AccessorID")
}

fn token_not_found() -> ApiError {
    ApiError::forbidden("token does not exist: ACL not found")
}

/// `GET /v1/acl/tokens[?policy=&role=&servicename=&authmethod=]`.
pub(crate) async fn token_list(State(s): State<ApiState>, ctx: Ctx) -> Res {
    enabled(&s)?;
    let authz = authorizer(&s, &ctx)?;
    require_acl_read(&s, &authz)?;
    if ctx.param("authmethod-ns").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::bad_request(
            "Invalid query parameter: \"authmethod-ns\" - Namespaces are a Consul Enterprise feature",
        ));
    }
    let show = authz.acl_write().is_allowed();
    let policy = ctx.param("policy").filter(|v| !v.is_empty());
    let role = ctx.param("role").filter(|v| !v.is_empty());
    let service = ctx.param("servicename").filter(|v| !v.is_empty());
    let method = ctx.param("authmethod").filter(|v| !v.is_empty());
    let (list, index) = blocking::query(&s, &ctx, TOKEN_TABLES, || async {
        let names = Names::load(&s).await?;
        let mut tokens = all_tokens(&s).await?;
        tokens.sort_by(|a, b| a.1.accessor_id.cmp(&b.1.accessor_id));
        let anon = anonymous();
        let mut out = Vec::new();
        let all = tokens
            .iter()
            .map(|(r, t)| (Some(r), t))
            .chain(std::iter::once((None, &anon)));
        for (rec, t) in all {
            if method.is_some() {
                continue;
            }
            if policy.is_some_and(|p| !t.policies.iter().any(|x| x == p)) {
                continue;
            }
            if role.is_some_and(|r| !t.roles.iter().any(|x| x == r)) {
                continue;
            }
            if service.is_some_and(|sv| !t.service_identities.iter().any(|x| x.service_name == sv))
            {
                continue;
            }
            out.push(token_json(rec, t, &names, show));
        }
        Ok(out)
    })
    .await?;
    Ok(reply::meta(reply::json(&ctx, &list), index))
}

/// `GET /v1/acl/token/:accessor`.
pub(crate) async fn token_read(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(accessor): Path<String>,
) -> Res {
    enabled(&s)?;
    let authz = authorizer(&s, &ctx)?;
    require_acl_read(&s, &authz)?;
    let show = authz.acl_write().is_allowed();
    if accessor == ANONYMOUS_ACCESSOR {
        let names = Names::load(&s).await?;
        let index = blocking::tables_index(&s, TOKEN_TABLES);
        return Ok(reply::meta(
            reply::json(&ctx, &token_json(None, &anonymous(), &names, show)),
            index,
        ));
    }
    if !is_uuid(&accessor) {
        return Err(ApiError::server(
            "failed acl token lookup: index error: UUID must be 36 characters",
        ));
    }
    let (found, index) = blocking::query(&s, &ctx, TOKEN_TABLES, || async {
        let names = Names::load(&s).await?;
        Ok(stored_token(&s, &accessor)
            .await?
            .map(|(rec, t)| token_json(Some(&rec), &t, &names, show)))
    })
    .await?;
    match found {
        Some(t) => Ok(reply::meta(reply::json(&ctx, &t), index)),
        None => Err(token_not_found()),
    }
}

/// `GET /v1/acl/token/self`: the calling token, secret included (the caller holds it).
pub(crate) async fn token_self(State(s): State<ApiState>, ctx: Ctx) -> Res {
    enabled(&s)?;
    if ctx.token.expose_secret().is_empty() || ctx.token.expose_secret() == "anonymous" {
        return Err(ApiError::acl_not_found());
    }
    // Resolving it checks that it exists and has not expired.
    authorizer(&s, &ctx)?;
    let names = Names::load(&s).await?;
    let index = blocking::tables_index(&s, TOKEN_TABLES);
    let found = all_tokens(&s)
        .await?
        .into_iter()
        .find(|(_, t)| t.secret_id == ctx.token.expose_secret());
    match found {
        Some((rec, t)) => Ok(reply::meta(
            reply::json(&ctx, &token_json(Some(&rec), &t, &names, true)),
            index,
        )),
        None => Err(token_not_found()),
    }
}

/// What a token create or update asks for, resolved and checked.
struct TokenPlan {
    description: String,
    policies: Vec<(String, String)>,
    roles: Vec<(String, String)>,
    service_identities: Vec<ServiceIdentityRecord>,
    node_identities: Vec<NodeIdentityRecord>,
    expiration: Option<u64>,
}

impl TokenPlan {
    fn resolve(t: &TokenIn, names: &Names) -> Result<Self, ApiError> {
        refuse_templated(&t.templated_policies)?;
        if !t.auth_method.is_empty() {
            return Err(ApiError::server(format!(
                "Auth method {} not found",
                go_quote(&t.auth_method)
            )));
        }
        let expiration = expiration(t)?;
        Ok(Self {
            description: t.description.clone(),
            policies: Names::resolve(&names.policies, &t.policies, "policy")?,
            roles: Names::resolve(&names.roles, &t.roles, "role")?,
            service_identities: service_identities(&t.service_identities)?,
            node_identities: node_identities(&t.node_identities, "token")?,
            expiration,
        })
    }

    fn spec(&self, local: bool) -> TokenSpec {
        TokenSpec {
            description: self.description.clone(),
            policy_names: self.policies.iter().map(|(_, n)| n.clone()).collect(),
            role_names: self.roles.iter().map(|(_, n)| n.clone()).collect(),
            scoped_service_identities: self
                .service_identities
                .iter()
                .map(|s| (s.service_name.clone(), s.datacenters.clone()))
                .collect(),
            node_identities: self
                .node_identities
                .iter()
                .map(|n| (n.node_name.clone(), n.datacenter.clone()))
                .collect(),
            expiration: self
                .expiration
                .map(|at| std::time::UNIX_EPOCH + std::time::Duration::from_secs(at)),
            local,
            ..TokenSpec::default()
        }
    }
}

/// Consul's default `acl.token_max_expiration_ttl`.
const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

fn expiration(t: &TokenIn) -> Result<Option<u64>, ApiError> {
    let now = now_unix();
    let ttl = match &t.expiration_ttl {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => {
            let ns = n.as_f64().unwrap_or(0.0);
            if ns <= 0.0 {
                if ns < 0.0 {
                    return Err(ApiError::server(format!(
                        "Token Expiration TTL '{n}ns' should be > 0"
                    )));
                }
                None
            } else {
                Some(std::time::Duration::from_secs_f64(ns / 1e9))
            }
        }
        Some(serde_json::Value::String(v)) if v.is_empty() => None,
        Some(serde_json::Value::String(v)) => match parse_go_duration(v) {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => {
                return Err(ApiError::bad_request(format!(
                    "Token decoding failed: time: invalid duration {}",
                    go_quote(v)
                )));
            }
        },
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Token decoding failed: invalid ExpirationTTL {other}"
            )));
        }
    };
    let time = match t.expiration_time.as_deref() {
        None | Some("") | Some(ZERO_TIME) => None,
        Some(v) => Some(parse_rfc3339(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Token decoding failed: parsing time {} as RFC 3339 failed",
                go_quote(v)
            ))
        })?),
    };
    match (ttl, time) {
        (Some(_), Some(_)) => Err(ApiError::server(
            "Token Expiration TTL and Expiration Time cannot both be set",
        )),
        (Some(d), None) => {
            if d < std::time::Duration::from_secs(60) {
                return Err(ApiError::server(format!(
                    "ExpirationTime cannot be less than 1m0s in the future (was {})",
                    go_duration(d)
                )));
            }
            if d > MAX_TTL {
                return Err(ApiError::server(format!(
                    "ExpirationTime cannot be more than 24h0m0s in the future (was {})",
                    go_duration(d)
                )));
            }
            Ok(Some(now as u64 + d.as_secs()))
        }
        (None, Some(at)) => {
            if at < now {
                return Err(ApiError::server(
                    "ExpirationTime cannot be before CreateTime",
                ));
            }
            if at < now + 60 {
                return Err(ApiError::server(format!(
                    "ExpirationTime cannot be less than 1m0s in the future (was {}s)",
                    at - now
                )));
            }
            if at - now > MAX_TTL.as_secs() as i64 {
                return Err(ApiError::server(format!(
                    "ExpirationTime cannot be more than 24h0m0s in the future (was {})",
                    go_duration(std::time::Duration::from_secs((at - now) as u64))
                )));
            }
            Ok(Some(at as u64))
        }
        (None, None) => Ok(None),
    }
}

fn check_token_id(what: &str, id: &str) -> Result<(), ApiError> {
    if !is_uuid(id) {
        return Err(ApiError::server(format!(
            "Invalid Token: {what} - not a valid UUID"
        )));
    }
    if id.starts_with(RESERVED_ID_PREFIX) {
        return Err(ApiError::server(format!(
            "Invalid Token: {what} - UUIDs with the prefix \"{RESERVED_ID_PREFIX}\" are reserved"
        )));
    }
    Ok(())
}

async fn answer_token(s: &ApiState, ctx: &Ctx, accessor: &str) -> Res {
    let names = Names::load(s).await?;
    let (rec, t) = stored_token(s, accessor)
        .await?
        .ok_or_else(|| ApiError::server(format!("Cannot find token {}", go_quote(accessor))))?;
    Ok(reply::json(ctx, &token_json(Some(&rec), &t, &names, true)))
}

/// Creates a token from a plan through the datacenter's API (forwarded to the primary
/// from a secondary, as every global write).
async fn create_token(
    s: &ApiState,
    ctx: &Ctx,
    plan: &TokenPlan,
    accessor: &str,
    secret: &str,
    local: bool,
) -> Res {
    if !accessor.is_empty() {
        check_token_id("AccessorID", accessor)?;
        if stored_token(s, accessor).await?.is_some() {
            return Err(ApiError::server(
                "Invalid Token: AccessorID is already in use",
            ));
        }
    }
    if !secret.is_empty() {
        check_token_id("SecretID", secret)?;
        if all_tokens(s)
            .await?
            .iter()
            .any(|(_, t)| t.secret_id == secret)
        {
            return Err(ApiError::server(
                "Invalid Token: SecretID is already in use",
            ));
        }
    }
    let mut spec = plan.spec(local);
    spec.accessor_id = (!accessor.is_empty()).then(|| accessor.to_owned());
    spec.secret_id = (!secret.is_empty()).then(|| Secret::new(secret));
    let rec = match s
        .dc()
        .acl()
        .token_create(&ctx.token, spec)
        .await
        .map_err(mesh::Error::into_kind)
    {
        Ok(rec) => rec,
        Err(ErrorKind::Conflict(what)) if what.contains("SecretID") => {
            return Err(ApiError::server(
                "Invalid Token: SecretID is already in use",
            ));
        }
        Err(ErrorKind::Conflict(_)) => {
            return Err(ApiError::server(
                "Invalid Token: AccessorID is already in use",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    answer_token(s, ctx, &rec.accessor_id).await
}

/// `PUT /v1/acl/token`.
pub(crate) async fn token_create(State(s): State<ApiState>, ctx: Ctx, body: Bytes) -> Res {
    enabled(&s)?;
    let t: TokenIn = decode::typed(&body, &decode::TOKEN, "Token decoding failed")?;
    let authz = authorizer(&s, &ctx)?;
    require_acl_write(&s, &authz)?;
    let names = Names::load(&s).await?;
    let plan = TokenPlan::resolve(&t, &names)?;
    create_token(
        &s,
        &ctx,
        &plan,
        &t.accessor_id,
        &t.secret_id,
        t.local.unwrap_or(false),
    )
    .await
}

/// `PUT /v1/acl/token/:accessor`.
pub(crate) async fn token_update(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(accessor): Path<String>,
    body: Bytes,
) -> Res {
    enabled(&s)?;
    let t: TokenIn = decode::typed(&body, &decode::TOKEN, "Token decoding failed")?;
    if !t.accessor_id.is_empty() && t.accessor_id != accessor {
        return Err(ApiError::bad_request(
            "Token Accessor ID in URL and payload do not match",
        ));
    }
    let authz = authorizer(&s, &ctx)?;
    require_acl_write(&s, &authz)?;
    if !is_uuid(&accessor) {
        return Err(ApiError::server("AccessorID is not a valid UUID"));
    }
    let (_, old) = stored_token(&s, &accessor)
        .await?
        .ok_or_else(|| ApiError::server(format!("Cannot find token {}", go_quote(&accessor))))?;
    if !t.secret_id.is_empty() && t.secret_id != old.secret_id {
        return Err(ApiError::server(
            "Changing a token's SecretID is not permitted",
        ));
    }
    if t.local.is_some_and(|l| l != old.local) {
        return Err(ApiError::server(format!(
            "Cannot toggle local mode of {accessor}"
        )));
    }
    let names = Names::load(&s).await?;
    let mut plan = TokenPlan::resolve(&t, &names)?;
    if plan.expiration.is_some() && plan.expiration != old.expiration_time {
        return Err(ApiError::server(format!(
            "Cannot change expiration time of {accessor}"
        )));
    }
    plan.expiration = None;
    s.dc()
        .acl()
        .token_update(&ctx.token, &accessor, plan.spec(old.local))
        .await?;
    answer_token(&s, &ctx, &accessor).await
}

/// `PUT /v1/acl/token/:accessor/clone`.
pub(crate) async fn token_clone(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(accessor): Path<String>,
    body: Bytes,
) -> Res {
    enabled(&s)?;
    let t: TokenIn = decode::typed(&body, &decode::TOKEN, "Token decoding failed")?;
    let authz = authorizer(&s, &ctx)?;
    require_acl_write(&s, &authz)?;
    let (_, old) = stored_token(&s, &accessor)
        .await?
        .ok_or_else(token_not_found)?;
    let names = Names::load(&s).await?;
    let pick = |ids: &[String], map: &HashMap<String, String>| -> Vec<(String, String)> {
        ids.iter()
            .filter_map(|i| map.get(i).map(|n| (i.clone(), n.clone())))
            .collect()
    };
    let plan = TokenPlan {
        description: if t.description.is_empty() {
            old.description.clone()
        } else {
            t.description.clone()
        },
        policies: pick(&old.policies, &names.policies),
        roles: pick(&old.roles, &names.roles),
        service_identities: old.service_identities.clone(),
        node_identities: old.node_identities.clone(),
        expiration: old.expiration_time,
    };
    create_token(&s, &ctx, &plan, "", "", old.local).await
}

/// `DELETE /v1/acl/token/:accessor`.
pub(crate) async fn token_delete(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(accessor): Path<String>,
) -> Res {
    enabled(&s)?;
    let authz = authorizer(&s, &ctx)?;
    require_acl_write(&s, &authz)?;
    if stored_token(&s, &accessor).await?.is_none() {
        return Err(ApiError::not_found("Cannot find token to delete"));
    }
    match s
        .dc()
        .acl()
        .token_delete(&ctx.token, &accessor)
        .await
        .map_err(mesh::Error::into_kind)
    {
        Ok(()) => Ok(reply::json(&ctx, &true)),
        Err(ErrorKind::NotFound(_)) => Err(ApiError::not_found("Cannot find token to delete")),
        Err(e) => Err(e.into()),
    }
}
