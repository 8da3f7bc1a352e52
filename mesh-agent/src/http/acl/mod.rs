//! `/v1/acl/*`: bootstrap, policies, tokens, roles and replication status (see
//! docs/consul-compatibility.md, "ACL rules language" to "Token locality").

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use mesh::tables;
use serde_json::json;

use super::ApiState;
use super::ctx::Ctx;
use super::decode;
use super::error::ApiError;
use super::reply;
use super::util::ZERO_TIME;

mod checks;
mod policy;
mod role;
mod shapes;
mod token;

pub(crate) use policy::*;
pub(crate) use role::*;
pub(crate) use token::*;

type Res = Result<Response, ApiError>;

const POLICY_TABLES: &[&str] = &[tables::ACL_POLICIES];
const ROLE_TABLES: &[&str] = &[tables::ACL_ROLES];
const TOKEN_TABLES: &[&str] = &[tables::ACL_TOKENS, tables::ACL_LOCAL_TOKENS];

/// Every ACL endpoint answers 401 when ACLs are off.
fn enabled(state: &ApiState) -> Result<(), ApiError> {
    if state.dc().config().acl.enabled {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ACL support disabled",
        ))
    }
}

/// How a policy or role is looked up.
#[derive(Clone, Copy)]
enum Lookup<'a> {
    Id(&'a str),
    Name(&'a str),
}

/// `PUT /v1/acl/bootstrap`: [`mesh::Acl::bootstrap`] in the primary. A secondary sends the
/// request to the primary's HTTP API when it knows it (as Consul forwards the RPC), and answers
/// 500 otherwise.
pub(crate) async fn bootstrap(
    State(s): State<ApiState>,
    ctx: Ctx,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Res {
    enabled(&s)?;
    let mut secret = None;
    if !body.is_empty() {
        let v = decode::parse(&body)
            .map_err(|e| ApiError::bad_request(format!("Request decoding failed: {e}")))?;
        match v.get("BootstrapSecret") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(t)) if t.is_empty() => {}
            Some(serde_json::Value::String(t)) => secret = Some(mesh::Secret::new(t.clone())),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Request decoding failed: BootstrapSecret must be a string, not {other}"
                )));
            }
        }
    }
    let dc = s.dc();
    if !dc.is_primary() {
        let primary = dc.config().primary_datacenter.clone();
        if s.peers().contains_key(&primary) {
            return super::forward::forward(&s, &parts, body, primary.as_str()).await;
        }
        return Err(ApiError::server(format!(
            "ACL bootstrap is made in the primary datacenter {primary}, and this agent has no address for it"
        )));
    }
    let rec = match dc
        .acl()
        .bootstrap(secret.as_ref())
        .await
        .map_err(mesh::Error::into_kind)
    {
        Ok(rec) => rec,
        Err(mesh::ErrorKind::BootstrapNotAllowed { reset_index }) => {
            return Err(ApiError::forbidden(format!(
                "Permission denied: ACL bootstrap no longer allowed (reset index: {reset_index})"
            )));
        }
        Err(mesh::ErrorKind::Conflict(_)) => {
            return Err(ApiError::server(
                "Provided token cannot be used because a token with that secret already exists.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let names = shapes::Names::load(&s).await?;
    let (stored, t) = shapes::stored_token(&s, &rec.accessor_id)
        .await?
        .ok_or_else(|| ApiError::server("the bootstrap token was not stored"))?;
    let mut v = shapes::token_json(Some(&stored), &t, &names, true);
    if let Some(m) = v.as_object_mut() {
        m.insert("ID".into(), json!(t.secret_id));
    }
    Ok(reply::json(&ctx, &v))
}

/// `GET /v1/acl/replication`.
pub(crate) async fn replication(State(s): State<ApiState>, ctx: Ctx) -> Res {
    enabled(&s)?;
    let dc = s.dc();
    if dc.is_primary() {
        return Ok(reply::json(
            &ctx,
            &json!({
                "Enabled": false, "Running": false, "SourceDatacenter": "",
                "ReplicationType": "", "ReplicatedIndex": 0, "ReplicatedRoleIndex": 0,
                "ReplicatedTokenIndex": 0, "LastSuccess": ZERO_TIME, "LastError": ZERO_TIME,
                "LastErrorMessage": ""
            }),
        ));
    }
    let statuses = dc.replication_status();
    let find = |t: &str| statuses.iter().find(|st| st.table.as_str() == t);
    let acl_tables = [tables::ACL_POLICIES, tables::ACL_ROLES, tables::ACL_TOKENS];
    let acl: Vec<_> = statuses
        .iter()
        .filter(|st| acl_tables.contains(&st.table.as_str()))
        .collect();
    let index = |t: &str| find(t).map_or(0, |st| st.last_remote_index.0);
    let last_success = acl
        .iter()
        .filter_map(|st| st.last_success)
        .min()
        .map_or_else(|| ZERO_TIME.to_owned(), super::util::rfc3339_secs);
    let last_error = acl
        .iter()
        .filter_map(|st| st.last_error.as_ref())
        .max_by_key(|e| e.at);
    Ok(reply::json(
        &ctx,
        &json!({
            "Enabled": true,
            "Running": !acl.is_empty() && acl.iter().all(|st| st.running),
            "SourceDatacenter": dc.config().primary_datacenter.as_str(),
            "ReplicationType": "tokens",
            "ReplicatedIndex": index(tables::ACL_POLICIES),
            "ReplicatedRoleIndex": index(tables::ACL_ROLES),
            "ReplicatedTokenIndex": index(tables::ACL_TOKENS),
            "LastSuccess": last_success,
            "LastError": last_error.map_or_else(|| ZERO_TIME.to_owned(), |e| super::util::rfc3339_secs(e.at)),
            "LastErrorMessage": last_error.map_or("", |e| e.message.as_str()),
        }),
    ))
}
