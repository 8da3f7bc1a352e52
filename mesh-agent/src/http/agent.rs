//! `/v1/agent/*` (service registration, connect CA roots, leaf, authorize, metrics)
//! and `/v1/status/*` (see docs/consul-compatibility.md, "HTTP API conventions").

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use mesh::Secret;
use mesh::core::{RegistrationError, ServiceDefinition};
use mesh::intentions::acl::{Access, Resource};
use mesh::tables;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::blocking;
use super::catalog::{CATALOG_TABLES, Instance, agent_service, instances};
use super::ctx::Ctx;
use super::decode;
use super::error::{ApiError, chain};
use super::raw::{self, authorizer, require, require_service_read, require_service_write};
use super::reply;
use super::util::fnv_hex;

type Res = Result<Response, ApiError>;

fn require_agent(state: &ApiState, ctx: &Ctx, write: bool) -> Result<(), ApiError> {
    let authz = authorizer(state, ctx)?;
    let node = &state.agent().node_name;
    let (d, access) = if write {
        (authz.agent_write(node), Access::Write)
    } else {
        (authz.agent_read(node), Access::Read)
    };
    require(state, &authz, d, Resource::Agent, access, Some(node))
}

/// The Serf member this server would be (`/v1/agent/members`, `Member` of `agent/self`).
fn member(state: &ApiState) -> Value {
    let a = state.agent();
    json!({
        "Name": a.node_name,
        "Addr": a.advertise_addr.to_string(),
        "Port": a.serf_lan_port,
        "Tags": {
            "acls": if state.dc().config().acl.enabled { "1" } else { "0" },
            "build": a.version,
            "dc": state.dc().name().as_str(),
            "id": a.node_id,
            "port": a.server_addr.port().to_string(),
            "role": "consul",
            "segment": "",
            "vsn": "2",
            "vsn_max": "3",
            "vsn_min": "2",
        },
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

/// `GET /v1/agent/self` (`agent:read` on this node).
pub(crate) async fn agent_self(State(s): State<ApiState>, ctx: Ctx) -> Res {
    require_agent(&s, &ctx, false)?;
    let a = s.agent();
    let dc = s.dc();
    let leader = a.server_addr.to_string();
    let acl = if dc.config().acl.enabled {
        "enabled"
    } else {
        "disabled"
    };
    let known: Vec<String> = std::iter::once(dc.name().as_str().to_owned())
        .chain(s.peers().keys().map(|d| d.as_str().to_owned()))
        .collect();
    let body = json!({
        "Config": {
            "Datacenter": dc.name().as_str(),
            "PrimaryDatacenter": dc.config().primary_datacenter.as_str(),
            "NodeName": a.node_name,
            "NodeID": a.node_id,
            "Revision": a.revision,
            "Server": true,
            "Version": a.version,
            "BuildDate": "",
            "BindAddr": a.advertise_addr.to_string(),
        },
        "DebugConfig": a.config,
        "Coord": null,
        "Member": member(&s),
        "Stats": {
            "consul": {
                "server": "true",
                "leader": "true",
                "leader_addr": leader,
                "bootstrap": "true",
                "known_datacenters": known.len().to_string(),
                "acl": acl,
            },
            "agent": {
                "check_monitors": "0", "check_ttls": "0", "checks": "0",
                "services": "0",
            },
            "build": {
                "revision": a.revision, "version": a.version,
                "version_metadata": "", "prerelease": "",
            },
            "runtime": {
                "arch": std::env::consts::ARCH, "os": std::env::consts::OS,
                "version": "rust",
            },
        },
        "Meta": a.node_meta,
    });
    Ok(reply::json(&ctx, &body))
}

/// `GET /v1/agent/members`: this server only (mesh runs no gossip), filtered by `node:read`.
pub(crate) async fn members(State(s): State<ApiState>, ctx: Ctx) -> Res {
    let authz = authorizer(&s, &ctx)?;
    let visible = authz.node_read(&s.agent().node_name).is_allowed();
    let list: Vec<Value> = if visible {
        vec![member(&s)]
    } else {
        Vec::new()
    };
    Ok(reply::filtered(reply::json(&ctx, &list), &ctx, !visible))
}

/// `PUT /v1/agent/reload` (`agent:write`): runs the agent's reload hook.
pub(crate) async fn reload(State(s): State<ApiState>, ctx: Ctx) -> Res {
    require_agent(&s, &ctx, true)?;
    let Some(hook) = s.reload.clone() else {
        return Err(ApiError::server(
            "Failed to reload configs: reloading is not available in this server",
        ));
    };
    hook()
        .await
        .map_err(|e| ApiError::server(format!("Failed to reload configs: {e}")))?;
    Ok(reply::empty())
}

/// `GET /v1/agent/metrics[?format=prometheus]` (`agent:read`).
pub(crate) async fn metrics(
    State(s): State<ApiState>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
) -> Res {
    require_agent(&s, &ctx, false)?;
    s.metrics.set_replication(&s.dc().replication_status());
    s.metrics.set_leaf_expiry(&s.leaves.expiry_by_service());
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let prometheus = ctx.param("format") == Some("prometheus")
        || accept.contains("application/openmetrics-text")
        || accept.contains("text/plain; version=0.4.0");
    if prometheus {
        return Ok(reply::raw(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            s.metrics.encode_openmetrics(),
        ));
    }
    Ok(reply::json(&ctx, &s.metrics.summary_json()))
}

// ---- services ------------------------------------------------------------------------------

/// `GET /v1/agent/services`: every local instance the token may read, by ID.
pub(crate) async fn services(State(s): State<ApiState>, ctx: Ctx) -> Res {
    ctx.refuse_filter()?;
    let authz = authorizer(&s, &ctx)?;
    let mut out = Map::new();
    let mut hidden = false;
    for i in instances(&s).await? {
        if !authz.service_read(i.name()).is_allowed() {
            hidden = true;
            continue;
        }
        out.insert(i.id.clone(), Value::Object(agent_service(&s, &i)));
    }
    Ok(reply::filtered(reply::json(&ctx, &out), &ctx, hidden))
}

/// `GET /v1/agent/service/:id` (`service:read`), with hash blocking (`?hash=&wait=`).
pub(crate) async fn service_read(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Res {
    let authz = authorizer(&s, &ctx)?;
    let lookup = || async {
        let rec = raw::record(&s, tables::CATALOG, &id).await?;
        Ok::<_, ApiError>(rec.and_then(|r| {
            let i = Instance {
                id: r.id.clone(),
                entry: raw::decode(&r)?,
                create_index: r.create_index.0,
                modify_index: r.modify_index.0,
            };
            let mut m = agent_service(&s, &i);
            let hash = fnv_hex(Value::Object(m.clone()).to_string().as_bytes());
            m.insert("ContentHash".into(), json!(hash));
            Some((i.name().to_owned(), m, hash))
        }))
    };
    let mut found = lookup().await?;
    if let Some(wanted) = ctx.param("hash").filter(|h| !h.is_empty())
        && found.as_ref().is_some_and(|(_, _, h)| h == wanted)
    {
        let b = ctx.blocking(&s)?;
        let _slot = blocking::permit(&s)?;
        let deadline = tokio::time::Instant::now() + b.wait;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let at = blocking::tables_index(&s, CATALOG_TABLES);
            blocking::wait_tables(&s, CATALOG_TABLES, at, deadline - now).await?;
            found = lookup().await?;
            if found.as_ref().is_none_or(|(_, _, h)| h != wanted) {
                break;
            }
        }
    }
    let Some((name, body, hash)) = found else {
        return Err(ApiError::not_found(format!("unknown service ID: {id}")));
    };
    require_service_read(&s, &authz, &name)?;
    let mut resp = reply::json(&ctx, &body);
    reply::set(&mut resp, "x-consul-contenthash", &hash);
    Ok(resp)
}

/// The 400 texts of a registration that does not parse or validate.
fn registration_error(e: &RegistrationError) -> ApiError {
    match e {
        RegistrationError::Json(inner) => {
            ApiError::bad_request(format!("Request decode failed: {inner}"))
        }
        RegistrationError::NotAnObject => ApiError::bad_request(
            "Request decode failed: json: cannot unmarshal into a service definition",
        ),
        RegistrationError::MissingName => ApiError::bad_request("Missing service name"),
        RegistrationError::Meta(m) => {
            ApiError::bad_request(format!("Invalid Service Meta: {}", chain(m)))
        }
        RegistrationError::WeightsPassing => ApiError::bad_request(format!("Invalid Weights: {e}")),
        RegistrationError::Check { source, .. } => {
            ApiError::bad_request(format!("Invalid check: {}", chain(source)))
        }
        RegistrationError::Sidecar(inner) => {
            ApiError::bad_request(format!("Invalid SidecarService: {}", chain(inner.as_ref())))
        }
        other => ApiError::bad_request(format!("Validation failed: {}", chain(other))),
    }
}

/// `PUT /v1/agent/service/register`: a service (with its sidecar) in Consul's JSON, in any
/// key casing and with Consul's snake_case aliases. 200 with an empty body.
pub(crate) async fn service_register(State(s): State<ApiState>, ctx: Ctx, body: Bytes) -> Res {
    let mut v = decode::parse(&body)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
    // Agent configuration files wrap the definition in {"service": {...}}; accept that too.
    if let Value::Object(m) = &mut v
        && m.len() == 1
        && let Some(key) = ["service", "Service"]
            .into_iter()
            .find(|k| m.get(*k).is_some_and(Value::is_object))
        && let Some(inner) = m.remove(key)
    {
        v = inner;
    }
    let v = decode::normalize(v, &decode::SERVICE)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
    if v.get("Name")
        .is_none_or(|n| n.as_str().is_none_or(str::is_empty))
    {
        return Err(ApiError::bad_request("Missing service name"));
    }
    let text = v.to_string();
    let def = ServiceDefinition::from_json(&text).map_err(|e| registration_error(&e))?;
    if def
        .address
        .as_ref()
        .and_then(|a| a.ip())
        .is_some_and(|ip| ip.is_unspecified())
    {
        return Err(ApiError::bad_request("Invalid service address"));
    }
    def.validate().map_err(|e| registration_error(&e))?;
    // The permission checks first, with Consul's words (the datacenter checks them again).
    let anonymous = Secret::new("");
    let token = if ctx.token.expose_secret().is_empty() {
        def.token.as_ref().unwrap_or(&anonymous)
    } else {
        &ctx.token
    };
    let authz = s.dc().acl().authorizer(token)?;
    if let Some(name) = &def.name {
        require_service_write(&s, &authz, name.as_str())?;
    }
    match s
        .dc()
        .catalog()
        .register(token, &def)
        .await
        .map_err(mesh::Error::into_kind)
    {
        Ok(_) => Ok(reply::empty()),
        Err(mesh::ErrorKind::Invalid(mesh::InvalidInput::Registration(e))) => {
            Err(registration_error(&e))
        }
        Err(e) => Err(e.into()),
    }
}

/// `PUT /v1/agent/service/deregister/:id`: removes the instance and the sidecar registered
/// with it (`<id>-sidecar-proxy`).
pub(crate) async fn service_deregister(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Res {
    let unknown = || {
        ApiError::not_found(format!(
            "Unknown service ID {}. Ensure that the service ID is passed, not the service name.",
            super::error::go_quote(&id)
        ))
    };
    // The datacenter removes the sidecar registered with the service in the same
    // transaction, after checking every permission.
    match s
        .dc()
        .catalog()
        .deregister(&ctx.token, &id)
        .await
        .map_err(mesh::Error::into_kind)
    {
        Ok(()) => Ok(reply::empty()),
        Err(mesh::ErrorKind::NotFound(_)) => Err(unknown()),
        Err(e) => Err(e.into()),
    }
}

// ---- status --------------------------------------------------------------------------------

/// `GET /v1/status/leader`: this server's server address (it leads its datacenter); `""`
/// once it lost its leadership, as Consul answers without a leader.
pub(crate) async fn status_leader(State(s): State<ApiState>, ctx: Ctx) -> Res {
    if s.deposed_for().is_some() {
        return Ok(reply::json(&ctx, &""));
    }
    Ok(reply::json(&ctx, &s.agent().server_addr.to_string()))
}

/// `GET /v1/status/peers`: the servers of this datacenter: with state on etcd, every server
/// alive (leading or standing by); otherwise this one.
pub(crate) async fn status_peers(State(s): State<ApiState>, ctx: Ctx) -> Res {
    match s.dc().servers().await? {
        Some(servers) => Ok(reply::json(&ctx, &servers)),
        None => Ok(reply::json(&ctx, &[s.agent().server_addr.to_string()])),
    }
}
