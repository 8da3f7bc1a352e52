//! `/v1/connect/intentions*` and `/v1/agent/connect/authorize` (see
//! docs/consul-compatibility.md, "Intention model" to "service-intentions validation").

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use mesh::IntentionTarget;
use mesh::intentions::acl::{Access, Authorizer, Resource};
use mesh::intentions::intention::{Action, AuthorizeError, Intention, authorize_connect, can_read};
use mesh::replication_engine::Record;
use mesh::tables;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::blocking;
use super::ctx::Ctx;
use super::decode::{self, nullable};
use super::error::{ApiError, go_quote};
use super::raw::{self, authorizer, require};
use super::reply;
use super::util::{is_uuid, rfc3339_system, uuid_v4};

type Res = Result<Response, ApiError>;

const INTENTION_TABLES: &[&str] = &[tables::INTENTIONS];

/// A stored intention with its record.
struct Stored {
    rec: Record,
    ixn: Intention,
}

async fn stored(state: &ApiState) -> Result<Vec<Stored>, ApiError> {
    let mut out: Vec<Stored> = raw::list(state, tables::INTENTIONS)
        .await?
        .records
        .into_iter()
        .filter_map(|rec| {
            let ixn = raw::decode::<Intention>(&rec)?;
            Some(Stored { rec, ixn })
        })
        .collect();
    out.sort_by(|a, b| a.ixn.precedence_key().cmp(&b.ixn.precedence_key()));
    Ok(out)
}

fn find<'a>(all: &'a [Stored], source: &str, destination: &str) -> Option<&'a Stored> {
    all.iter()
        .find(|s| s.ixn.source_name == source && s.ixn.destination_name == destination)
}

/// The intention as Consul returns it, with its record's indexes.
fn intention_json(ixn: &Intention, create: u64, modify: u64) -> Value {
    let mut v = serde_json::to_value(ixn).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("Precedence".into(), json!(ixn.precedence));
        m.insert("CreateIndex".into(), json!(create));
        m.insert("ModifyIndex".into(), json!(modify));
    }
    v
}

/// The typed source and destination of an intention the datacenter API takes. A name no
/// service can have is refused with the words the intention's validation gives (Consul's).
fn targets(
    source: &str,
    destination: &str,
    action: Action,
) -> Result<(IntentionTarget, IntentionTarget), ApiError> {
    match (
        source.parse::<IntentionTarget>(),
        destination.parse::<IntentionTarget>(),
    ) {
        (Ok(s), Ok(d)) => Ok((s, d)),
        (Err(e), _) | (_, Err(e)) => {
            let mut ixn = Intention::new(source, destination, action);
            ixn.normalize();
            Err(match ixn.validate() {
                Err(errors) => mesh::Error::invalid(errors).into(),
                Ok(()) => mesh::Error::invalid(e).into(),
            })
        }
    }
}

/// A `source`/`destination` query value: `name`, `ns/name` or `partition/ns/name`, where CE
/// allows only the default namespace and partition.
fn parse_name(param: &str, v: Option<&str>) -> Result<String, ApiError> {
    let v = v
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::server(format!("required query parameter '{param}' not set")))?;
    let invalid =
        |why: &str| ApiError::server(format!("{param} {} is invalid: {why}", go_quote(v)));
    if v.starts_with("peer:") {
        return Err(invalid("peered sources are not supported by mesh"));
    }
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [ns, name] => {
            if *ns != "default" && *ns != "*" {
                return Err(invalid("Namespaces are a Consul Enterprise feature"));
            }
            *name
        }
        [partition, ns, name] => {
            if *partition != "default" || (*ns != "default" && *ns != "*") {
                return Err(invalid("Partitions are a Consul Enterprise feature"));
            }
            *name
        }
        _ => return Err(invalid("input can contain at most two '/'")),
    };
    if name.is_empty() {
        return Err(invalid("name is empty"));
    }
    Ok(name.to_owned())
}

fn require_intention(
    state: &ApiState,
    authz: &Authorizer,
    name: &str,
    write: bool,
) -> Result<(), ApiError> {
    let (d, access) = if write {
        (authz.intention_write(name), Access::Write)
    } else {
        (authz.intention_read(name), Access::Read)
    };
    require(state, authz, d, Resource::Intention, access, Some(name))
}

fn readable(authz: &Authorizer, ixn: &Intention) -> bool {
    can_read(authz, ixn).is_ok()
}

fn require_read(state: &ApiState, authz: &Authorizer, ixn: &Intention) -> Result<(), ApiError> {
    let ok = readable(authz, ixn);
    state.metrics.acl_decision(ok);
    can_read(authz, ixn)
        .map(|_| ())
        .map_err(|pd| ApiError::denied(&pd))
}

// ---- list, match, check -------------------------------------------------------------------

/// `GET /v1/connect/intentions`: every intention the token may read, in precedence order.
pub(crate) async fn list(State(s): State<ApiState>, ctx: Ctx) -> Res {
    ctx.refuse_filter()?;
    let authz = authorizer(&s, &ctx)?;
    let (st, a) = (&s, &authz);
    let ((list, hidden), index) = blocking::query(st, &ctx, INTENTION_TABLES, move || async move {
        let mut hidden = false;
        let mut out = Vec::new();
        for x in stored(st).await? {
            if readable(a, &x.ixn) {
                out.push(intention_json(
                    &x.ixn,
                    x.rec.create_index.0,
                    x.rec.modify_index.0,
                ));
            } else {
                hidden = true;
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

/// `GET /v1/connect/intentions/match?by=&name=`: for each name, the intentions matching it
/// as a source or destination, in evaluation order.
pub(crate) async fn matches(State(s): State<ApiState>, ctx: Ctx) -> Res {
    let by: Vec<&str> = ctx.params("by").collect();
    let [by] = by.as_slice() else {
        return Err(ApiError::server("required query parameter 'by' not set"));
    };
    let by_source = match *by {
        "source" => true,
        "destination" => false,
        "" => return Err(ApiError::server("required query parameter 'by' not set")),
        _ => {
            return Err(ApiError::server(
                "'by' parameter must be one of 'source' or 'destination'",
            ));
        }
    };
    let names: Vec<String> = ctx.params("name").map(str::to_owned).collect();
    if names.is_empty() {
        return Err(ApiError::server("required query parameter 'name' not set"));
    }
    let mut plain = Vec::with_capacity(names.len());
    for n in &names {
        plain.push(
            parse_name("name", Some(n))
                .map_err(|_| ApiError::server(format!("name {} is invalid", go_quote(n))))?,
        );
    }
    let authz = authorizer(&s, &ctx)?;
    for n in &plain {
        require_intention(&s, &authz, n, false)?;
    }
    let (st, names_ref, plain_ref) = (&s, &names, &plain);
    let (out, index) = blocking::query(st, &ctx, INTENTION_TABLES, move || async move {
        let indexes: HashMap<(String, String), (u64, u64)> = stored(st)
            .await?
            .into_iter()
            .map(|x| {
                (
                    (x.ixn.source_name.clone(), x.ixn.destination_name.clone()),
                    (x.rec.create_index.0, x.rec.modify_index.0),
                )
            })
            .collect();
        let set = st.dc().intentions().current_set().await?;
        let mut out = Map::new();
        for (given, name) in names_ref.iter().zip(plain_ref) {
            let found = if by_source {
                set.match_source(name)
            } else {
                set.match_destination(name)
            };
            let list: Vec<Value> = found
                .into_iter()
                .map(|i| {
                    let (c, m) = indexes
                        .get(&(i.source_name.clone(), i.destination_name.clone()))
                        .copied()
                        .unwrap_or((1, 1));
                    intention_json(i, c, m)
                })
                .collect();
            out.insert(given.clone(), Value::Array(list));
        }
        Ok(out)
    })
    .await?;
    Ok(reply::meta_consistency(
        reply::json(&ctx, &out),
        index,
        &ctx,
    ))
}

/// `GET /v1/connect/intentions/check?source=&destination=`: `{"Allowed": bool}` (L7
/// intentions count as deny). Needs `service:read` on the destination.
pub(crate) async fn check(State(s): State<ApiState>, ctx: Ctx) -> Res {
    let source = parse_name("source", ctx.param("source"))?;
    let destination = parse_name("destination", ctx.param("destination"))?;
    if let Some(t) = ctx.param("source-type").filter(|t| !t.is_empty())
        && t != "consul"
    {
        return Err(ApiError::server(format!("unsupported SourceType: {t}")));
    }
    let authz = authorizer(&s, &ctx)?;
    raw::require_service_read(&s, &authz, &destination)?;
    let set = s.dc().intentions().shared().load();
    let allowed = set
        .decide(&source, &destination, s.dc().intentions().default())
        .is_allowed();
    s.metrics.intention_decision(allowed);
    Ok(reply::json(&ctx, &json!({ "Allowed": allowed })))
}

// ---- the exact-match API -------------------------------------------------------------------

#[derive(Default, Deserialize)]
#[serde(default)]
struct ExactIn {
    #[serde(rename = "Description", deserialize_with = "nullable")]
    description: String,
    #[serde(rename = "SourceType", deserialize_with = "nullable")]
    source_type: String,
    #[serde(rename = "Action", deserialize_with = "nullable")]
    action: String,
    #[serde(rename = "Permissions", deserialize_with = "nullable")]
    permissions: Vec<Value>,
    #[serde(rename = "JWT")]
    jwt: Option<Value>,
    #[serde(rename = "Meta", deserialize_with = "nullable")]
    meta: std::collections::BTreeMap<String, String>,
}

/// `GET /v1/connect/intentions/exact?source=&destination=`.
pub(crate) async fn exact_get(State(s): State<ApiState>, ctx: Ctx) -> Res {
    let source = parse_name("source", ctx.param("source"))?;
    let destination = parse_name("destination", ctx.param("destination"))?;
    let authz = authorizer(&s, &ctx)?;
    let all = stored(&s).await?;
    let Some(x) = find(&all, &source, &destination) else {
        return Err(ApiError::not_found("Intention not found"));
    };
    require_read(&s, &authz, &x.ixn)?;
    Ok(reply::json(
        &ctx,
        &intention_json(&x.ixn, x.rec.create_index.0, x.rec.modify_index.0),
    ))
}

/// `PUT /v1/connect/intentions/exact?source=&destination=`: creates or replaces the
/// intention; `true`.
pub(crate) async fn exact_put(State(s): State<ApiState>, ctx: Ctx, body: Bytes) -> Res {
    let source = parse_name("source", ctx.param("source"))?;
    let destination = parse_name("destination", ctx.param("destination"))?;
    let req: ExactIn = decode::typed(&body, &decode::INTENTION, "Request decode failed")?;
    let authz = authorizer(&s, &ctx)?;
    require_intention(&s, &authz, &destination, true)?;
    let all = stored(&s).await?;
    let existing = find(&all, &source, &destination);
    if !req.meta.is_empty() {
        match existing {
            None => return Err(ApiError::server("Meta must not be specified")),
            Some(x) if x.ixn.meta != req.meta => {
                return Err(ApiError::server(
                    "Meta must not be specified, or should be unchanged during an update.",
                ));
            }
            Some(_) => {}
        }
    }
    if !req.permissions.is_empty() || req.jwt.as_ref().is_some_and(|j| !j.is_null()) {
        return Err(ApiError::server(
            "L7 permissions and JWT requirements on intentions are not supported by mesh",
        ));
    }
    if !req.source_type.is_empty() && req.source_type != "consul" {
        return Err(ApiError::server("SourceType must be set to 'consul'"));
    }
    let action = Action::parse(&req.action)
        .ok_or_else(|| ApiError::server("Action must be set to 'allow' or 'deny'"))?;
    let (from, to) = targets(&source, &destination, action)?;
    let mut ixn = Intention::new(from.as_str(), to.as_str(), action);
    ixn.description = req.description;
    ixn.meta = req.meta;
    s.dc().intentions().upsert(&ctx.token, ixn).await?;
    Ok(reply::json(&ctx, &true))
}

/// Writes a whole intention through the datacenter's API (and removes `replaces`, an older
/// record of it, in the same transaction).
async fn write_intention(
    s: &ApiState,
    ctx: &Ctx,
    ixn: &Intention,
    replaces: Option<&Stored>,
) -> Result<(), ApiError> {
    let mut ixn = ixn.clone();
    ixn.normalize();
    ixn.validate()
        .map_err(|e| ApiError::server(e.to_string()))?;
    let intentions = s.dc().intentions();
    match replaces {
        Some(old) => {
            intentions
                .upsert_replacing(&ctx.token, &old.ixn, ixn)
                .await?
        }
        None => intentions.upsert(&ctx.token, ixn).await?,
    };
    Ok(())
}

/// `DELETE /v1/connect/intentions/exact?source=&destination=`: `true`, also when there was
/// nothing to delete.
pub(crate) async fn exact_delete(State(s): State<ApiState>, ctx: Ctx) -> Res {
    let source = parse_name("source", ctx.param("source"))?;
    let destination = parse_name("destination", ctx.param("destination"))?;
    let authz = authorizer(&s, &ctx)?;
    require_intention(&s, &authz, &destination, true)?;
    let intentions = s.dc().intentions();
    match (
        source.parse::<IntentionTarget>(),
        destination.parse::<IntentionTarget>(),
    ) {
        (Ok(from), Ok(to)) => intentions.delete(&ctx.token, &from, &to).await?,
        // A name no service can have: only a record written before names were checked
        // holds it; removing it is still allowed.
        _ => {
            let stored = Intention::new(&source, &destination, Action::Deny);
            intentions.delete_stored(&ctx.token, &stored).await?
        }
    }
    Ok(reply::json(&ctx, &true))
}

// ---- the legacy ID-based API ---------------------------------------------------------------

fn legacy_decode(body: &[u8]) -> Result<Intention, ApiError> {
    let fail = |e: String| ApiError::server(format!("Failed to decode request body: {e}"));
    let v = decode::body(body, &decode::INTENTION).map_err(fail)?;
    serde_json::from_value(v).map_err(|e| fail(e.to_string()))
}

fn legacy_checks(ixn: &Intention) -> Result<(), ApiError> {
    if !ixn.destination_partition.is_empty() {
        return Err(ApiError::bad_request(
            "Cannot specify a destination partition with this endpoint",
        ));
    }
    if !ixn.source_partition.is_empty() {
        return Err(ApiError::bad_request(
            "Cannot specify a source partition with this endpoint",
        ));
    }
    if !ixn.source_peer.is_empty() {
        return Err(ApiError::server(
            "SourcePeer field is not supported on this endpoint. Use config entries instead",
        ));
    }
    Ok(())
}

/// `POST /v1/connect/intentions` (deprecated): creates an intention with an ID.
pub(crate) async fn legacy_create(State(s): State<ApiState>, ctx: Ctx, body: Bytes) -> Res {
    let mut ixn = legacy_decode(&body)?;
    legacy_checks(&ixn)?;
    if !ixn.id.is_empty() {
        return Err(ApiError::server(
            "ID must be empty when creating a new intention",
        ));
    }
    ixn.normalize();
    ixn.validate()
        .map_err(|e| ApiError::server(e.to_string()))?;
    let authz = authorizer(&s, &ctx)?;
    require_intention(&s, &authz, &ixn.destination_name, true)?;
    let all = stored(&s).await?;
    if let Some(x) = find(&all, &ixn.source_name, &ixn.destination_name) {
        return Err(ApiError::server(format!(
            "duplicate intention found: {}",
            x.ixn
        )));
    }
    let id = uuid_v4();
    let now = rfc3339_system(std::time::SystemTime::now());
    ixn.id = id.clone();
    ixn.created_at = Some(now.clone());
    ixn.updated_at = Some(now);
    write_intention(&s, &ctx, &ixn, None).await?;
    Ok(reply::json(&ctx, &json!({ "ID": id })))
}

fn by_id<'a>(all: &'a [Stored], id: &str) -> Option<&'a Stored> {
    all.iter().find(|x| x.ixn.id == id)
}

fn check_uuid(id: &str) -> Result<(), ApiError> {
    if is_uuid(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid UUID {}",
            go_quote(id)
        )))
    }
}

/// `GET /v1/connect/intentions/:id` (deprecated).
pub(crate) async fn legacy_get(State(s): State<ApiState>, ctx: Ctx, Path(id): Path<String>) -> Res {
    check_uuid(&id)?;
    let authz = authorizer(&s, &ctx)?;
    let all = stored(&s).await?;
    let x = by_id(&all, &id).ok_or_else(|| ApiError::not_found("Intention not found"))?;
    require_read(&s, &authz, &x.ixn)?;
    Ok(reply::json(
        &ctx,
        &intention_json(&x.ixn, x.rec.create_index.0, x.rec.modify_index.0),
    ))
}

/// `PUT /v1/connect/intentions/:id` (deprecated): replaces an intention created by ID.
pub(crate) async fn legacy_update(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    check_uuid(&id)?;
    let mut ixn = legacy_decode(&body)?;
    legacy_checks(&ixn)?;
    let authz = authorizer(&s, &ctx)?;
    let all = stored(&s).await?;
    let old = by_id(&all, &id)
        .ok_or_else(|| ApiError::server(format!("Cannot modify non-existent intention: '{id}'")))?;
    ixn.normalize();
    if ixn.destination_name != old.ixn.destination_name
        || ixn.destination_ns != old.ixn.destination_ns
    {
        return Err(ApiError::server(
            "Cannot modify Destination partition/namespace/name for an intention once it exists.",
        ));
    }
    require_intention(&s, &authz, &ixn.destination_name, true)?;
    if ixn.source_name != old.ixn.source_name
        && find(&all, &ixn.source_name, &ixn.destination_name).is_some()
    {
        return Err(ApiError::server(format!(
            "duplicate intention found: {}",
            ixn
        )));
    }
    ixn.id = id;
    ixn.created_at = old.ixn.created_at.clone();
    ixn.updated_at = Some(rfc3339_system(std::time::SystemTime::now()));
    write_intention(&s, &ctx, &ixn, Some(old)).await?;
    Ok(reply::empty())
}

/// `DELETE /v1/connect/intentions/:id` (deprecated).
pub(crate) async fn legacy_delete(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Res {
    check_uuid(&id)?;
    let authz = authorizer(&s, &ctx)?;
    let all = stored(&s).await?;
    let x = by_id(&all, &id)
        .ok_or_else(|| ApiError::server(format!("Cannot delete non-existent intention: '{id}'")))?;
    require_intention(&s, &authz, &x.ixn.destination_name, true)?;
    s.dc()
        .intentions()
        .delete_stored(&ctx.token, &x.ixn)
        .await?;
    Ok(reply::json(&ctx, &true))
}

// ---- the agent's authorize -----------------------------------------------------------------

#[derive(Default, Deserialize)]
#[serde(default)]
struct AuthorizeIn {
    #[serde(rename = "Target", deserialize_with = "nullable")]
    target: String,
    #[serde(rename = "ClientCertURI", deserialize_with = "nullable")]
    client_cert_uri: String,
}

/// `POST /v1/agent/connect/authorize`: may the service in `ClientCertURI` connect to
/// `Target`? Needs `service:write` on the target. Like Consul, the URI's trust domain and
/// datacenter are not checked (the TLS handshake verified the chain).
pub(crate) async fn agent_authorize(State(s): State<ApiState>, ctx: Ctx, body: Bytes) -> Res {
    let req: AuthorizeIn = decode::typed(&body, &decode::AUTHORIZE, "Request decode failed")?;
    let authz = authorizer(&s, &ctx)?;
    let set = s.dc().intentions().shared().load();
    match authorize_connect(
        &authz,
        &set,
        s.dc().intentions().default(),
        &req.target,
        &req.client_cert_uri,
    ) {
        Ok(r) => {
            s.metrics.acl_decision(true);
            s.metrics.intention_decision(r.authorized);
            let mut resp = reply::json(
                &ctx,
                &json!({"Authorized": r.authorized, "Reason": r.reason}),
            );
            reply::set(&mut resp, "x-cache", "MISS");
            Ok(resp)
        }
        Err(AuthorizeError::PermissionDenied(pd)) => {
            s.metrics.acl_decision(false);
            Err(ApiError::denied(&pd))
        }
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}
