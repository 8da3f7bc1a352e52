//! `/v1/config*`: config entries (see docs/consul-compatibility.md,
//! "proxy-defaults and service-defaults"). mesh implements `proxy-defaults` and
//! `service-defaults`; the other kinds Consul knows are refused on write and absent on read.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mesh::core::ConfigEntry;
use mesh::core::ConfigEntryError;
use mesh::intentions::acl::{Access, Authorizer, Resource};
use mesh::tables;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::blocking;
use super::ctx::Ctx;
use super::decode;
use super::error::{ApiError, chain, go_quote};
use super::raw::{self, authorizer, require};
use super::reply;

type Res = Result<Response, ApiError>;

const CONFIG_TABLES: &[&str] = &[tables::CONFIG_ENTRIES];

/// Every kind Consul knows.
const CONSUL_KINDS: &[&str] = &[
    "service-defaults",
    "proxy-defaults",
    "service-router",
    "service-splitter",
    "service-resolver",
    "ingress-gateway",
    "terminating-gateway",
    "service-intentions",
    "mesh",
    "exported-services",
    "sameness-group",
    "api-gateway",
    "bound-api-gateway",
    "file-system-certificate",
    "inline-certificate",
    "http-route",
    "tcp-route",
    "jwt-provider",
];

/// The kinds mesh stores.
const MESH_KINDS: &[&str] = &["proxy-defaults", "service-defaults"];

fn invalid_kind(kind: &str, status: StatusCode) -> ApiError {
    ApiError::new(status, format!("invalid config entry kind: {kind}"))
}

fn entry_id(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

/// What writing (`write`) or reading an entry of `kind` named `name` needs.
fn require_entry(
    state: &ApiState,
    authz: &Authorizer,
    kind: &str,
    name: &str,
    write: bool,
) -> Result<(), ApiError> {
    match (kind, write) {
        ("proxy-defaults", true) => require(
            state,
            authz,
            authz.mesh_write(),
            Resource::Mesh,
            Access::Write,
            None,
        ),
        ("proxy-defaults", false) => Ok(()),
        (_, true) => raw::require_service_write(state, authz, name),
        (_, false) => raw::require_service_read(state, authz, name),
    }
}

fn may_read(authz: &Authorizer, kind: &str, name: &str) -> bool {
    kind == "proxy-defaults" || authz.service_read(name).is_allowed()
}

fn entry_json(rec: &mesh::replication_engine::Record) -> Option<Value> {
    let mut v = rec.value.as_json()?.clone();
    if let Value::Object(m) = &mut v {
        m.insert("CreateIndex".into(), json!(rec.create_index.0));
        m.insert("ModifyIndex".into(), json!(rec.modify_index.0));
    }
    Some(v)
}

fn parse_cas(ctx: &Ctx) -> Result<Option<u64>, ApiError> {
    match ctx.param("cas") {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            ApiError::server(format!(
                "strconv.ParseUint: parsing {}: invalid syntax",
                go_quote(v)
            ))
        }),
    }
}

fn decoding(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Request decoding failed: {e}"))
}

/// `PUT /v1/config[?cas=]`: `true` when written (or when the entry already says exactly
/// this), `false` when the check-and-set did not match.
pub(crate) async fn write(State(s): State<ApiState>, ctx: Ctx, body: Bytes) -> Res {
    let v = decode::parse(&body).map_err(decoding)?;
    let Value::Object(mut map) = v else {
        return Err(decoding(
            "Payload does not contain a kind/Kind key at the top level",
        ));
    };
    let kind = match map.get("Kind").or_else(|| map.get("kind")) {
        None => {
            return Err(decoding(
                "Payload does not contain a kind/Kind key at the top level",
            ));
        }
        Some(Value::String(k)) => k.clone(),
        Some(_) => return Err(decoding("Kind value in payload is not a string")),
    };
    if !CONSUL_KINDS.contains(&kind.as_str()) {
        return Err(invalid_kind(&kind, StatusCode::BAD_REQUEST));
    }
    if !MESH_KINDS.contains(&kind.as_str()) {
        return Err(decoding(format!(
            "config entry kind {} is not supported by mesh",
            go_quote(&kind)
        )));
    }
    for k in [
        "CreateIndex",
        "ModifyIndex",
        "Hash",
        "create_index",
        "modify_index",
    ] {
        map.remove(k);
    }
    let text = Value::Object(map).to_string();
    let entry = ConfigEntry::from_json(&text).map_err(|e| match &e {
        ConfigEntryError::Json(inner) => decoding(inner),
        other => decoding(chain(other)),
    })?;
    entry.validate().map_err(|e| ApiError::server(chain(&e)))?;
    let cas = parse_cas(&ctx)?;
    let authz = authorizer(&s, &ctx)?;
    require_entry(&s, &authz, entry.kind().as_str(), entry.name(), true)?;
    let Some(cas) = cas else {
        s.dc()
            .config_entries()
            .write_json(&ctx.token, &text)
            .await?;
        return Ok(reply::json(&ctx, &true));
    };
    let id = entry_id(entry.kind().as_str(), entry.name());
    let new: Value =
        serde_json::from_str(&entry.to_json()).map_err(|e| ApiError::server(e.to_string()))?;
    let current = raw::record(&s, tables::CONFIG_ENTRIES, &id).await?;
    // Consul's no-op shortcut: the same entry is a success whatever the index.
    if current
        .as_ref()
        .and_then(|r| r.value.as_json())
        .is_some_and(|old| *old == new)
    {
        return Ok(reply::json(&ctx, &true));
    }
    let matches = match (&current, cas) {
        (None, 0) => true,
        (Some(r), c) => c != 0 && r.modify_index.0 == c,
        (None, _) => false,
    };
    if !matches {
        return Ok(reply::json(&ctx, &false));
    }
    let written = s
        .dc()
        .config_entries()
        .write_json_cas(&ctx.token, &text, mesh::core::Index(cas))
        .await?;
    Ok(reply::json(&ctx, &written))
}

/// `GET /v1/config/:kind/:name`.
pub(crate) async fn read(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((kind, name)): Path<(String, String)>,
) -> Res {
    if !CONSUL_KINDS.contains(&kind.as_str()) {
        return Err(invalid_kind(&kind, StatusCode::INTERNAL_SERVER_ERROR));
    }
    let authz = authorizer(&s, &ctx)?;
    require_entry(&s, &authz, &kind, &name, false)?;
    let id = entry_id(&kind, &name);
    let (st, idr) = (&s, &id);
    let (found, index) = blocking::query(st, &ctx, CONFIG_TABLES, move || async move {
        Ok(raw::record(st, tables::CONFIG_ENTRIES, idr)
            .await?
            .as_ref()
            .and_then(entry_json))
    })
    .await?;
    match found {
        Some(v) => Ok(reply::meta(reply::json(&ctx, &v), index)),
        None => Err(ApiError::not_found(format!(
            "Config entry not found for {} / {}",
            go_quote(&kind),
            go_quote(&name)
        ))),
    }
}

/// `GET /v1/config/:kind`: the entries of a kind the token may read.
pub(crate) async fn list(State(s): State<ApiState>, ctx: Ctx, Path(kind): Path<String>) -> Res {
    if !CONSUL_KINDS.contains(&kind.as_str()) {
        return Err(invalid_kind(&kind, StatusCode::INTERNAL_SERVER_ERROR));
    }
    ctx.refuse_filter()?;
    let authz = authorizer(&s, &ctx)?;
    let prefix = format!("{kind}/");
    let (st, a, k, p) = (&s, &authz, kind.as_str(), prefix.as_str());
    let ((list, hidden), index) = blocking::query(st, &ctx, CONFIG_TABLES, move || async move {
        let mut hidden = false;
        let mut out = Vec::new();
        for rec in raw::list(st, tables::CONFIG_ENTRIES).await?.records {
            let Some(name) = rec.id.strip_prefix(p) else {
                continue;
            };
            if !may_read(a, k, name) {
                hidden = true;
                continue;
            }
            if let Some(v) = entry_json(&rec) {
                out.push(v);
            }
        }
        Ok((out, hidden))
    })
    .await?;
    Ok(reply::filtered(
        reply::meta(reply::json(&ctx, &list), index),
        &ctx,
        hidden,
    ))
}

/// `DELETE /v1/config/:kind/:name[?cas=]`: `{}`, or with `cas` `true`/`false`. Deleting an
/// absent entry succeeds.
pub(crate) async fn delete(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((kind, name)): Path<(String, String)>,
) -> Res {
    if !CONSUL_KINDS.contains(&kind.as_str()) {
        return Err(invalid_kind(&kind, StatusCode::BAD_REQUEST));
    }
    let cas = parse_cas(&ctx)?;
    let authz = authorizer(&s, &ctx)?;
    require_entry(&s, &authz, &kind, &name, true)?;
    let done = |ok: bool| match cas {
        Some(_) => reply::json(&ctx, &ok),
        None => reply::json(&ctx, &Value::Object(Map::new())),
    };
    let id = entry_id(&kind, &name);
    let Some(current) = raw::record(&s, tables::CONFIG_ENTRIES, &id).await? else {
        return Ok(done(true));
    };
    if let Some(c) = cas
        && current.modify_index.0 != c
    {
        return Ok(done(false));
    }
    let kind: mesh::core::ConfigEntryKind = kind
        .parse()
        .map_err(|_| invalid_kind(&kind, StatusCode::BAD_REQUEST))?;
    let entries = s.dc().config_entries();
    match cas {
        Some(_) => Ok(done(
            entries
                .delete_cas(&ctx.token, kind, &name, current.modify_index)
                .await?,
        )),
        None => {
            entries.delete(&ctx.token, kind, &name).await?;
            Ok(done(true))
        }
    }
}
