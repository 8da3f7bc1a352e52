//! `/v1/connect/ca/*` and `/v1/agent/connect/ca/roots` (see docs/consul-compatibility.md,
//! "CA roots list" and "Connect CA configuration").

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use mesh::tables;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::blocking;
use super::ctx::Ctx;
use super::decode::{self, nullable};
use super::error::ApiError;
use super::raw::{self, authorizer, require_operator_write};
use super::reply;
use super::util::parse_go_bool;

type Res = Result<Response, ApiError>;

/// What the roots depend on: the published roots list and this datacenter's CA state.
pub(crate) const ROOT_TABLES: &[&str] = &[tables::CA_ROOTS, tables::CA_STATE];

/// The roots list in Consul's `IndexedCARoots` shape: `IntermediateCerts` is `null` when
/// empty, and mesh's own additions (`RotatedOutAt`, `Index`) are left out.
pub(crate) fn roots_json(state: &ApiState) -> Result<Value, ApiError> {
    let view = state.dc().connect_ca().roots()?;
    let roots: Vec<Value> = view
        .roots
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.remove("RotatedOutAt");
                if r.intermediate_certs.is_empty() {
                    m.insert("IntermediateCerts".into(), Value::Null);
                }
            }
            v
        })
        .collect();
    Ok(json!({
        "ActiveRootID": view.active_root_id,
        "TrustDomain": view.trust_domain,
        "Roots": roots,
    }))
}

async fn roots_answer(s: ApiState, ctx: Ctx, agent: bool) -> Res {
    let pem = match ctx.param("pem") {
        None => false,
        Some(v) => parse_go_bool(v).ok_or_else(|| {
            ApiError::bad_request("The 'pem' query parameter must be a boolean value")
        })?,
    };
    let st = &s;
    let (body, index) = blocking::query(st, &ctx, ROOT_TABLES, move || async move {
        if pem {
            Ok(Value::String(st.dc().connect_ca().roots()?.pem_bundle()))
        } else {
            roots_json(st)
        }
    })
    .await?;
    let mut resp = match body {
        Value::String(pem) => reply::raw("application/pem-certificate-chain", pem),
        v => reply::json(&ctx, &v),
    };
    if agent {
        reply::set(&mut resp, "x-cache", "MISS");
    }
    Ok(reply::meta(resp, index))
}

/// `GET /v1/connect/ca/roots[?pem=]` (no ACL; blocking).
pub(crate) async fn roots(State(s): State<ApiState>, ctx: Ctx) -> Res {
    roots_answer(s, ctx, false).await
}

/// `GET /v1/agent/connect/ca/roots` (the same, as the agent cache answers it).
pub(crate) async fn agent_roots(State(s): State<ApiState>, ctx: Ctx) -> Res {
    roots_answer(s, ctx, true).await
}

/// `GET /v1/connect/ca/configuration` (`operator:write`).
pub(crate) async fn ca_config_get(State(s): State<ApiState>, ctx: Ctx) -> Res {
    let authz = authorizer(&s, &ctx)?;
    require_operator_write(&s, &authz)?;
    let ca = s.dc().connect_ca().ca()?;
    let config = serde_json::to_value(ca.config()).unwrap_or_else(|_| json!({}));
    let (create, modify) = match raw::record(&s, tables::CA_STATE, "state").await? {
        Some(r) => (r.create_index.0, r.modify_index.0),
        None => (1, 1),
    };
    Ok(reply::json(
        &ctx,
        &json!({
            "Provider": "consul",
            "Config": config,
            "State": null,
            "ForceWithoutCrossSigning": false,
            "CreateIndex": create,
            "ModifyIndex": modify,
        }),
    ))
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CaConfigIn {
    #[serde(rename = "Provider", deserialize_with = "nullable")]
    provider: String,
    #[serde(rename = "Config", deserialize_with = "nullable")]
    config: Map<String, Value>,
    #[serde(rename = "State")]
    state: Option<Value>,
    #[serde(rename = "ForceWithoutCrossSigning", deserialize_with = "nullable")]
    force_without_cross_signing: bool,
}

/// Keys of the Consul provider's configuration that carry key material: a request with them
/// asks for a new root.
const KEY_FIELDS: &[&str] = &["PrivateKey", "RootCert", "IntermediateCert"];

/// `PUT /v1/connect/ca/configuration` (`operator:write`): rotates the root (the primary's
/// CA makes a new key, cross-signed by the old root). The CA's other settings (TTLs, key
/// type) cannot be changed here yet: a request that changes them is refused whole.
pub(crate) async fn ca_config_put(State(s): State<ApiState>, ctx: Ctx, body: Bytes) -> Res {
    let req: CaConfigIn = decode::typed(&body, &decode::CA_CONFIG, "Request decode failed")?;
    let authz = authorizer(&s, &ctx)?;
    require_operator_write(&s, &authz)?;
    if req.state.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request(
            "Provider State is read-only. It must be omitted or identical to the current value",
        ));
    }
    if !req.provider.is_empty() && req.provider != "consul" {
        return Err(ApiError::server(format!(
            "CA provider {:?} is not supported by mesh: only the built-in \"consul\" provider",
            req.provider
        )));
    }
    let ca = s.dc().connect_ca().ca()?;
    let current = serde_json::to_value(ca.config()).unwrap_or_else(|_| json!({}));
    let Value::Object(current) = current else {
        return Err(ApiError::server("CA configuration does not encode"));
    };
    // Each known setting in the request must equal the one in effect.
    for (k, v) in &req.config {
        if KEY_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(k)) {
            continue;
        }
        let Some((name, now)) = current.iter().find(|(n, _)| {
            n.eq_ignore_ascii_case(k) || n.eq_ignore_ascii_case(&k.replace('_', ""))
        }) else {
            continue;
        };
        if !same_setting(now, v) {
            return Err(ApiError::bad_request(format!(
                "changing the CA configuration ({name}) is not supported by mesh yet; only a root rotation is"
            )));
        }
    }
    if req
        .config
        .keys()
        .any(|k| KEY_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(k)))
    {
        tracing::warn!(
            "CA configuration update carries key material; mesh generates the new root key itself"
        );
    }
    if req.force_without_cross_signing {
        tracing::info!("ForceWithoutCrossSigning requested; the new root is cross-signed anyway");
    }
    s.dc().connect_ca().rotate(&ctx.token).await?;
    Ok(reply::empty())
}

/// Whether a requested setting equals the current one (`"72h"` and `"72h0m0s"` agree).
fn same_setting(now: &Value, req: &Value) -> bool {
    if now == req {
        return true;
    }
    match (now, req) {
        (Value::String(a), Value::String(b)) => {
            match (
                super::util::parse_go_duration(a),
                super::util::parse_go_duration(b),
            ) {
                (Some(x), Some(y)) => x == y,
                _ => a.eq_ignore_ascii_case(b),
            }
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Number(a), Value::String(b)) | (Value::String(b), Value::Number(a)) => {
            b.parse::<f64>().ok() == a.as_f64()
        }
        _ => false,
    }
}
