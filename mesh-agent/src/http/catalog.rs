//! `/v1/catalog/*` and `/v1/health/*` (see docs/consul-compatibility.md, "HTTP API
//! conventions"), and the JSON shapes of services, nodes and
//! checks that the agent endpoints share.
//!
//! Every `mesh agent` is the one server of its datacenter and the node every local
//! registration lives on, so the catalog is the datacenter's local catalog on this node.
//! mesh runs no health checks: an instance's checks are `passing` unless the datacenter has
//! marked it down (then `critical`).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::response::Response;
use mesh::catalog::CatalogEntry;
use mesh::core::{CheckDefinition, ServiceKind, sidecar_default_checks};
use mesh::intentions::acl::Authorizer;
use mesh::replication_engine::Record;
use mesh::tables;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::blocking;
use super::ctx::Ctx;
use super::error::ApiError;
use super::raw::{self, authorizer};
use super::reply;

type Res = Result<Response, ApiError>;

/// The tables catalog and health reads depend on.
pub(crate) const CATALOG_TABLES: &[&str] = &[tables::CATALOG];

/// One instance of the local catalog, with its record's indexes.
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) entry: CatalogEntry,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

impl Instance {
    pub(crate) fn name(&self) -> &str {
        self.entry.name().map_or("", |n| n.as_str())
    }

    fn from_record(rec: &Record) -> Option<Self> {
        Some(Self {
            id: rec.id.clone(),
            entry: raw::decode(rec)?,
            create_index: rec.create_index.0,
            modify_index: rec.modify_index.0,
        })
    }

    /// Whether this is a Connect proxy fronting `service`.
    fn proxies(&self, service: &str) -> bool {
        self.entry.service.kind == ServiceKind::ConnectProxy
            && self
                .entry
                .service
                .proxy
                .as_ref()
                .and_then(|p| p.destination_service_name.as_ref())
                .is_some_and(|d| d.as_str() == service)
    }

    fn native(&self) -> bool {
        self.entry
            .service
            .connect
            .as_ref()
            .is_some_and(|c| c.native)
    }
}

/// Every instance of the local catalog, by id.
pub(crate) async fn instances(state: &ApiState) -> Result<Vec<Instance>, ApiError> {
    Ok(raw::list(state, tables::CATALOG)
        .await?
        .records
        .iter()
        .filter_map(Instance::from_record)
        .collect())
}

/// The server's own `consul` service (Consul lists it; clients expect it).
fn consul_service(state: &ApiState) -> Instance {
    let def: mesh::core::ServiceDefinition = serde_json::from_value(json!({
        "ID": "consul",
        "Name": "consul",
        "Port": state.agent().server_addr.port(),
    }))
    .unwrap_or_default();
    Instance {
        id: "consul".to_owned(),
        entry: CatalogEntry {
            service: def,
            lan: Some(state.agent().server_addr),
            down: false,
        },
        create_index: 1,
        modify_index: 1,
    }
}

fn def_value(e: &CatalogEntry) -> Map<String, Value> {
    match serde_json::to_value(&e.service) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The `Proxy` object: the registration's, with `MeshGateway` and `Expose` always present.
fn proxy_value(def: &Map<String, Value>) -> Value {
    let mut p = match def.get("Proxy") {
        Some(Value::Object(p)) => p.clone(),
        _ => Map::new(),
    };
    p.entry("MeshGateway").or_insert_with(|| json!({}));
    p.entry("Expose").or_insert_with(|| json!({}));
    Value::Object(p)
}

fn weights(def: &Map<String, Value>) -> Value {
    def.get("Weights")
        .cloned()
        .unwrap_or_else(|| json!({"Passing": 1, "Warning": 1}))
}

fn tags(def: &Map<String, Value>) -> Value {
    def.get("Tags").cloned().unwrap_or_else(|| json!([]))
}

fn meta(def: &Map<String, Value>) -> Value {
    def.get("Meta").cloned().unwrap_or_else(|| json!({}))
}

fn connect_value(i: &Instance) -> Value {
    if i.native() {
        json!({"Native": true})
    } else {
        json!({})
    }
}

fn has_proxy_block(kind: ServiceKind) -> bool {
    matches!(kind, ServiceKind::ConnectProxy | ServiceKind::MeshGateway)
}

/// An agent-service object (`api.AgentService`) as `/v1/agent/services` shows it.
pub(crate) fn agent_service(state: &ApiState, i: &Instance) -> Map<String, Value> {
    let def = def_value(&i.entry);
    let mut m = Map::new();
    let kind = i.entry.service.kind;
    if kind != ServiceKind::Typical {
        m.insert("Kind".into(), json!(kind.as_str()));
    }
    m.insert("ID".into(), json!(i.id));
    m.insert("Service".into(), json!(i.name()));
    m.insert("Tags".into(), tags(&def));
    m.insert("Meta".into(), meta(&def));
    m.insert("Port".into(), json!(i.entry.service.port));
    m.insert(
        "Address".into(),
        def.get("Address").cloned().unwrap_or_else(|| json!("")),
    );
    if let Some(t) = def.get("TaggedAddresses") {
        m.insert("TaggedAddresses".into(), t.clone());
    }
    if let Some(p) = def.get("SocketPath") {
        m.insert("SocketPath".into(), p.clone());
    }
    m.insert("Weights".into(), weights(&def));
    m.insert(
        "EnableTagOverride".into(),
        json!(i.entry.service.enable_tag_override),
    );
    if has_proxy_block(kind) {
        m.insert("Proxy".into(), proxy_value(&def));
    }
    if i.native() {
        m.insert("Connect".into(), json!({"Native": true}));
    }
    if let Some(l) = def.get("Locality") {
        m.insert("Locality".into(), l.clone());
    }
    m.insert("Datacenter".into(), json!(state.dc().name().as_str()));
    m
}

/// This node (`structs.Node`).
fn node_value(state: &ApiState) -> Value {
    let a = state.agent();
    let addr = a.advertise_addr.to_string();
    let v4 = a.advertise_addr.is_ipv4();
    let mut tagged = Map::new();
    tagged.insert("lan".into(), json!(addr));
    tagged.insert(if v4 { "lan_ipv4" } else { "lan_ipv6" }.into(), json!(addr));
    tagged.insert("wan".into(), json!(addr));
    tagged.insert(if v4 { "wan_ipv4" } else { "wan_ipv6" }.into(), json!(addr));
    json!({
        "ID": a.node_id,
        "Node": a.node_name,
        "Address": addr,
        "Datacenter": state.dc().name().as_str(),
        "TaggedAddresses": tagged,
        "Meta": a.node_meta,
        "CreateIndex": 1,
        "ModifyIndex": 1,
    })
}

/// A node-service object (`structs.NodeService`) as health entries show it.
fn node_service(i: &Instance) -> Value {
    let def = def_value(&i.entry);
    let mut m = Map::new();
    let kind = i.entry.service.kind;
    if kind != ServiceKind::Typical {
        m.insert("Kind".into(), json!(kind.as_str()));
    }
    m.insert("ID".into(), json!(i.id));
    m.insert("Service".into(), json!(i.name()));
    m.insert("Tags".into(), tags(&def));
    m.insert(
        "Address".into(),
        def.get("Address").cloned().unwrap_or_else(|| json!("")),
    );
    if let Some(t) = def.get("TaggedAddresses") {
        m.insert("TaggedAddresses".into(), t.clone());
    }
    m.insert("Meta".into(), meta(&def));
    if i.entry.service.port != 0 {
        m.insert("Port".into(), json!(i.entry.service.port));
    }
    if let Some(p) = def.get("SocketPath") {
        m.insert("SocketPath".into(), p.clone());
    }
    m.insert("Weights".into(), weights(&def));
    m.insert(
        "EnableTagOverride".into(),
        json!(i.entry.service.enable_tag_override),
    );
    m.insert("Proxy".into(), proxy_value(&def));
    m.insert("Connect".into(), connect_value(i));
    if let Some(l) = def.get("Locality") {
        m.insert("Locality".into(), l.clone());
    }
    m.insert("PeerName".into(), json!(""));
    m.insert("CreateIndex".into(), json!(i.create_index));
    m.insert("ModifyIndex".into(), json!(i.modify_index));
    Value::Object(m)
}

/// A catalog service node (`structs.ServiceNode`).
fn service_node(state: &ApiState, i: &Instance) -> Value {
    let def = def_value(&i.entry);
    let node = node_value(state);
    let mut m = Map::new();
    for (k, from) in [
        ("ID", "ID"),
        ("Node", "Node"),
        ("Address", "Address"),
        ("Datacenter", "Datacenter"),
        ("TaggedAddresses", "TaggedAddresses"),
        ("NodeMeta", "Meta"),
    ] {
        m.insert(k.into(), node.get(from).cloned().unwrap_or(Value::Null));
    }
    m.insert("ServiceKind".into(), json!(i.entry.service.kind.as_str()));
    m.insert("ServiceID".into(), json!(i.id));
    m.insert("ServiceName".into(), json!(i.name()));
    m.insert("ServiceTags".into(), tags(&def));
    m.insert(
        "ServiceAddress".into(),
        def.get("Address").cloned().unwrap_or_else(|| json!("")),
    );
    if let Some(t) = def.get("TaggedAddresses") {
        m.insert("ServiceTaggedAddresses".into(), t.clone());
    }
    m.insert("ServiceWeights".into(), weights(&def));
    m.insert("ServiceMeta".into(), meta(&def));
    m.insert("ServicePort".into(), json!(i.entry.service.port));
    m.insert(
        "ServiceSocketPath".into(),
        def.get("SocketPath").cloned().unwrap_or_else(|| json!("")),
    );
    m.insert(
        "ServiceEnableTagOverride".into(),
        json!(i.entry.service.enable_tag_override),
    );
    m.insert("ServiceProxy".into(), proxy_value(&def));
    m.insert("ServiceConnect".into(), connect_value(i));
    if let Some(l) = def.get("Locality") {
        m.insert("ServiceLocality".into(), l.clone());
    }
    m.insert("CreateIndex".into(), json!(i.create_index));
    m.insert("ModifyIndex".into(), json!(i.modify_index));
    Value::Object(m)
}

fn check_type(c: &CheckDefinition) -> &'static str {
    if c.http.is_some() {
        "http"
    } else if c.tcp.is_some() {
        "tcp"
    } else if c.grpc.is_some() {
        "grpc"
    } else if c.udp.is_some() {
        "udp"
    } else if c.ttl.is_some() {
        "ttl"
    } else if !c.script_args.is_empty() {
        "script"
    } else if c.alias_service.is_some() || c.alias_node.is_some() {
        "alias"
    } else {
        ""
    }
}

/// The checks of an instance: the node's `serfHealth`, then the service's own (or a
/// sidecar's two default checks).
fn checks(state: &ApiState, i: &Instance) -> Vec<Value> {
    let node = &state.agent().node_name;
    let status = if i.entry.down { "critical" } else { "passing" };
    let mut out = vec![json!({
        "Node": node, "CheckID": "serfHealth", "Name": "Serf Health Status",
        "Status": "passing", "Notes": "", "Output": "Agent alive and reachable",
        "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
        "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {},
        "CreateIndex": 1, "ModifyIndex": 1,
    })];
    let def = &i.entry.service;
    let mut own: Vec<CheckDefinition> = def.all_checks().cloned().collect();
    if own.is_empty()
        && def.kind == ServiceKind::ConnectProxy
        && let Ok(sid) = mesh::core::ServiceInstanceId::new(i.id.clone())
    {
        own = sidecar_default_checks(
            &sid,
            def.address.as_ref(),
            def.proxy
                .as_ref()
                .and_then(|p| p.local_service_address.as_ref()),
            def.port,
        );
    }
    let many = own.len() > 1;
    let tags = def_value(&i.entry)
        .get("Tags")
        .cloned()
        .unwrap_or_else(|| json!([]));
    for (n, c) in own.iter().enumerate() {
        let id = c.id.clone().unwrap_or_else(|| {
            if many {
                format!("service:{}:{}", i.id, n + 1)
            } else {
                format!("service:{}", i.id)
            }
        });
        let name = c
            .name
            .clone()
            .unwrap_or_else(|| format!("Service '{}' check", i.name()));
        let dur =
            |d: Option<&mesh::core::GoDuration>| d.map_or_else(String::new, ToString::to_string);
        out.push(json!({
            "Node": node, "CheckID": id, "Name": name, "Status": status,
            "Notes": c.notes.clone().unwrap_or_default(), "Output": "",
            "ServiceID": i.id, "ServiceName": i.name(), "ServiceTags": tags,
            "Type": check_type(c), "Interval": dur(c.interval.as_ref()),
            "Timeout": dur(c.timeout.as_ref()), "ExposedPort": 0, "Definition": {},
            "CreateIndex": i.create_index, "ModifyIndex": i.modify_index,
        }));
    }
    out
}

/// May the token see this instance (node and service read)?
fn visible(authz: &Authorizer, state: &ApiState, i: &Instance) -> bool {
    authz.node_read(&state.agent().node_name).is_allowed()
        && authz.service_read(i.name()).is_allowed()
}

fn tag_filter(ctx: &Ctx, i: &Instance) -> bool {
    ctx.params("tag")
        .all(|t| i.entry.service.tags.iter().any(|x| x == t))
}

/// The instances of `service` (or, with `connect`, its mesh-capable endpoints) that the token
/// may see; and whether any was hidden.
async fn select(
    state: &ApiState,
    ctx: &Ctx,
    authz: &Authorizer,
    service: &str,
    connect: bool,
    passing_only: bool,
) -> Result<(Vec<Instance>, bool), ApiError> {
    let mut all = instances(state).await?;
    if service == "consul" && !connect {
        all.push(consul_service(state));
    }
    let mut hidden = false;
    let mut out = Vec::new();
    for i in all {
        let wanted = if connect {
            i.proxies(service) || (i.name() == service && i.native())
        } else {
            i.name() == service
        };
        if !wanted || !tag_filter(ctx, &i) || (passing_only && i.entry.down) {
            continue;
        }
        if !visible(authz, state, &i) {
            hidden = true;
            continue;
        }
        out.push(i);
    }
    Ok((out, hidden))
}

fn passing(ctx: &Ctx) -> Result<bool, ApiError> {
    match ctx.param("passing") {
        None => Ok(false),
        Some("") => Ok(true),
        Some(v) => super::util::parse_go_bool(v)
            .ok_or_else(|| ApiError::bad_request("Invalid value for ?passing")),
    }
}

async fn catalog_answer(state: ApiState, ctx: Ctx, service: String, connect: bool) -> Res {
    if service.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    ctx.refuse_filter()?;
    let authz = authorizer(&state, &ctx)?;
    let ((list, hidden), index) = blocking::query(&state, &ctx, CATALOG_TABLES, || async {
        let (found, hidden) = select(&state, &ctx, &authz, &service, connect, false).await?;
        Ok((
            found
                .iter()
                .map(|i| service_node(&state, i))
                .collect::<Vec<_>>(),
            hidden,
        ))
    })
    .await?;
    let resp = reply::meta_consistency(reply::json(&ctx, &list), index, &ctx);
    Ok(reply::filtered(resp, &ctx, hidden))
}

async fn health_answer(state: ApiState, ctx: Ctx, service: String, connect: bool) -> Res {
    if service.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    ctx.refuse_filter()?;
    let passing_only = passing(&ctx)?;
    let authz = authorizer(&state, &ctx)?;
    let ((list, hidden), index) = blocking::query(&state, &ctx, CATALOG_TABLES, || async {
        let (found, hidden) = select(&state, &ctx, &authz, &service, connect, passing_only).await?;
        let node = node_value(&state);
        Ok((
            found
                .iter()
                .map(|i| {
                    json!({
                        "Node": node,
                        "Service": node_service(i),
                        "Checks": checks(&state, i),
                    })
                })
                .collect::<Vec<_>>(),
            hidden,
        ))
    })
    .await?;
    let resp = reply::meta_consistency(reply::json(&ctx, &list), index, &ctx);
    Ok(reply::filtered(resp, &ctx, hidden))
}

/// `GET /v1/catalog/service/:service`.
pub(crate) async fn catalog_service(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(service): Path<String>,
) -> Res {
    catalog_answer(s, ctx, service, false).await
}

/// `GET /v1/catalog/connect/:service`.
pub(crate) async fn catalog_connect(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(service): Path<String>,
) -> Res {
    catalog_answer(s, ctx, service, true).await
}

/// `GET /v1/health/service/:service`.
pub(crate) async fn health_service(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(service): Path<String>,
) -> Res {
    health_answer(s, ctx, service, false).await
}

/// `GET /v1/health/connect/:service`.
pub(crate) async fn health_connect(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(service): Path<String>,
) -> Res {
    health_answer(s, ctx, service, true).await
}

/// `GET /v1/catalog/services`: every visible service with the union of its tags.
pub(crate) async fn services(State(s): State<ApiState>, ctx: Ctx) -> Res {
    ctx.refuse_filter()?;
    let authz = authorizer(&s, &ctx)?;
    let ((map, hidden), index) = blocking::query(&s, &ctx, CATALOG_TABLES, || async {
        let mut all = instances(&s).await?;
        all.push(consul_service(&s));
        let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut hidden = false;
        for i in &all {
            if !visible(&authz, &s, i) {
                hidden = true;
                continue;
            }
            map.entry(i.name().to_owned())
                .or_default()
                .extend(i.entry.service.tags.iter().cloned());
        }
        Ok((map, hidden))
    })
    .await?;
    let resp = reply::meta_consistency(reply::json(&ctx, &map), index, &ctx);
    Ok(reply::filtered(resp, &ctx, hidden))
}

/// `GET /v1/catalog/datacenters`: this datacenter, then the peers the API forwards to.
pub(crate) async fn datacenters(State(s): State<ApiState>, ctx: Ctx) -> Res {
    let own = s.dc().name().as_str().to_owned();
    let mut list = vec![own.clone()];
    let known = s
        .dc()
        .catalog()
        .datacenters()
        .await
        .map_err(ApiError::from)?;
    for d in known
        .iter()
        .map(|d| d.name.as_str().to_owned())
        .chain(s.peers().keys().map(|d| d.as_str().to_owned()))
    {
        if !list.contains(&d) {
            list.push(d);
        }
    }
    Ok(reply::json(&ctx, &list))
}
