//! `/v1/internal/mesh/*`: what a data-plane process (a gateway, a sidecar, an application
//! with in-app Connect) needs of its datacenter beyond Consul's own endpoints, for
//! [`mesh::dataplane::AgentControlPlane`].
//!
//! - `GET  /v1/internal/mesh/routing` (blocking): the [`Routing`] view, filtered to what the
//!   token may read (`service:read` on each service and gateway).
//! - `GET  /v1/internal/mesh/endpoints/{dc}/{service}`: a service's mesh endpoints in
//!   another datacenter (`service:read`).
//! - `GET  /v1/internal/mesh/instance/{id}`: one local registration (`service:read` on its
//!   service).
//! - `PUT  /v1/internal/mesh/instance/{id}/address` `{"Address"}`: moves an instance to the
//!   address it bound (`service:write`).
//! - `PUT  /v1/internal/mesh/gateway/{id}` `{"Name","Lan","Wan"}`: registers a mesh gateway
//!   instance (`service:write` on its name).
//! - `PUT  /v1/internal/mesh/sign/{service}` `{"CSR"}`: signs a leaf from a CSR, so the
//!   private key never leaves the caller (`service:write` on the CSR's service, which must
//!   be `{service}`).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use mesh::Secret;
use mesh::core::{DatacenterName, ServiceName};
use mesh::dataplane::{ControlPlane, Routing};
use mesh::tables;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::ApiState;
use super::blocking;
use super::ctx::Ctx;
use super::error::ApiError;
use super::leaf::sign_error;
use super::raw::{self, authorizer, require_service_read};
use super::reply;
use super::util::rfc3339;

type Res = Result<Response, ApiError>;

/// The tables the routing view is built from.
const ROUTING_TABLES: &[&str] = &[tables::CATALOG, tables::FEDERATION, tables::CONFIG_ENTRIES];

fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))
}

fn service_name(s: &str) -> Result<ServiceName, ApiError> {
    s.parse()
        .map_err(|e| ApiError::bad_request(format!("Invalid service name {s:?}: {e}")))
}

/// `GET /v1/internal/mesh/routing`.
pub(crate) async fn routing(State(s): State<ApiState>, ctx: Ctx) -> Res {
    let authz = authorizer(&s, &ctx)?;
    let st = &s;
    let (view, index) = blocking::query(st, &ctx, ROUTING_TABLES, || async {
        let full = st
            .dc()
            .current_routing(&Secret::new(""))
            .await
            .map_err(ApiError::from)?;
        let mut view: Routing = (*full).clone();
        view.endpoints
            .retain(|name, _| authz.service_read(name.as_str()).is_allowed());
        view.service_defaults
            .retain(|name, _| authz.service_read(name).is_allowed());
        view.gateways
            .retain(|g| authz.service_read(g.service.as_str()).is_allowed());
        let own = st.dc().name().clone();
        let visible_lan: Vec<SocketAddr> = view
            .gateways
            .iter()
            .filter(|g| g.datacenter == own)
            .map(|g| g.lan)
            .collect();
        view.local_gateways.retain(|a| visible_lan.contains(a));
        // The servers are the service "consul", as Consul's catalog lists them.
        if !authz.service_read("consul").is_allowed() {
            view.servers.clear();
        }
        Ok(view)
    })
    .await?;
    Ok(reply::meta(reply::json(&ctx, &view), index))
}

/// `GET /v1/internal/mesh/endpoints/{dc}/{service}`.
pub(crate) async fn endpoints(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((dc, service)): Path<(String, String)>,
) -> Res {
    let name = service_name(&service)?;
    let dc: DatacenterName = dc
        .parse()
        .map_err(|e| ApiError::bad_request(format!("Invalid datacenter {dc:?}: {e}")))?;
    let authz = authorizer(&s, &ctx)?;
    require_service_read(&s, &authz, name.as_str())?;
    let addrs = s.dc().catalog().remote_endpoints(&dc, &name).await?;
    Ok(reply::json(&ctx, &addrs))
}

/// `GET /v1/internal/mesh/instance/{id}`.
pub(crate) async fn instance(State(s): State<ApiState>, ctx: Ctx, Path(id): Path<String>) -> Res {
    let authz = authorizer(&s, &ctx)?;
    let entry = raw::record(&s, tables::CATALOG, &id)
        .await?
        .and_then(|r| raw::decode::<mesh::catalog::CatalogEntry>(&r))
        .ok_or_else(|| ApiError::not_found(format!("Unknown service ID {id:?}")))?;
    let name = entry.name().map_or("", |n| n.as_str()).to_owned();
    require_service_read(&s, &authz, &name)?;
    Ok(reply::json(&ctx, &entry))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressBody {
    #[serde(rename = "Address")]
    address: SocketAddr,
}

/// `PUT /v1/internal/mesh/instance/{id}/address`.
pub(crate) async fn instance_address(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Res {
    let b: AddressBody = body(&bytes)?;
    s.dc()
        .catalog()
        .set_instance_address(&ctx.token, &id, b.address)
        .await?;
    Ok(reply::json(&ctx, &true))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayBody {
    #[serde(rename = "Name")]
    name: ServiceName,
    #[serde(rename = "Lan")]
    lan: SocketAddr,
    #[serde(rename = "Wan")]
    wan: SocketAddr,
}

/// `PUT /v1/internal/mesh/gateway/{id}`.
pub(crate) async fn gateway(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Res {
    let b: GatewayBody = body(&bytes)?;
    s.dc()
        .catalog()
        .register_mesh_gateway(&ctx.token, &b.name, &id, b.lan, b.wan)
        .await?;
    Ok(reply::json(&ctx, &true))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignBody {
    #[serde(rename = "CSR")]
    csr: String,
}

/// `PUT /v1/internal/mesh/sign/{service}`.
pub(crate) async fn sign(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(service): Path<String>,
    bytes: Bytes,
) -> Res {
    let name = service_name(&service)?;
    let b: SignBody = body(&bytes)?;
    // Signing checks the token against the identity the CSR names: the value enforced.
    let leaf = s
        .dc()
        .connect_ca()
        .sign_leaf(&ctx.token, &b.csr)
        .await
        .map_err(sign_error)?;
    let matches = leaf
        .spiffe_id
        .as_service()
        .is_some_and(|id| id.service() == &name);
    if !matches {
        return Err(ApiError::bad_request(format!(
            "the CSR is for {}, not for service {name}",
            leaf.spiffe_id
        )));
    }
    Ok(reply::json(
        &ctx,
        &json!({
            "SerialNumber": leaf.serial_number,
            "CertPEM": leaf.cert_pem,
            "Service": name.as_str(),
            "ServiceURI": leaf.spiffe_id.to_string(),
            "ValidAfter": rfc3339(leaf.valid_after.unix_timestamp(), 0),
            "ValidBefore": rfc3339(leaf.valid_before.unix_timestamp(), 0),
            "RootID": leaf.root_id,
        }),
    ))
}
