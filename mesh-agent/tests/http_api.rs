//! The HTTP API end to end over a real socket: ACL, agent, catalog, health, config entries,
//! status and metrics, with the JSON shapes py-consul and the Go client read, Consul's
//! error texts, and the rule that secrets appear only where `acl:write` may see them.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod http_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_common::*;
use mesh_agent::http::{ApiState, HttpConfig};
use mesh_agent::metrics::Metrics;
use serde_json::{Value, json};

/// py-consul's `acl.policy.create(name, rules=<str>)`: lower-case keys and the rules text
/// JSON-encoded once more.
fn py_policy(name: &str, rules: &str) -> String {
    json!({"name": name, "rules": serde_json::to_string(rules).unwrap()}).to_string()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_policies() {
    let api = start().await;
    let a = api.addr;

    // Bootstrapping is over: mesh bootstraps from the initial management token.
    let r = req(a, "PUT", "/v1/acl/bootstrap", None, None)
        .await
        .expect(403);
    assert!(
        r.body
            .starts_with("Permission denied: ACL bootstrap no longer allowed (reset index: "),
        "{}",
        r.body
    );

    // py-consul's create: lower-case keys, rules as a JSON string literal.
    let rules = r#"{"service": {"web": {"policy": "write"}}}"#;
    let p = put(a, "/v1/acl/policy", MGMT, &py_policy("web-write", rules))
        .await
        .expect(200)
        .json();
    assert_eq!(
        keys(&p),
        [
            "CreateIndex",
            "Description",
            "Hash",
            "ID",
            "ModifyIndex",
            "Name",
            "Rules"
        ]
    );
    assert_eq!(p["Name"], "web-write");
    assert_eq!(p["Rules"], rules);
    let id = p["ID"].as_str().unwrap().to_owned();

    // Read by ID and by name, with the query metadata.
    let r = get(a, &format!("/v1/acl/policy/{id}"), MGMT)
        .await
        .expect(200);
    assert_eq!(r.json()["ID"], id);
    assert!(r.index() >= 1);
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));
    assert_eq!(r.header("X-Consul-LastContact"), Some("0"));
    assert_eq!(r.header("X-Consul-Default-ACL-Policy"), Some("deny"));
    let r = get(a, "/v1/acl/policy/name/web-write", MGMT)
        .await
        .expect(200);
    assert_eq!(r.json()["ID"], id);

    // The list holds stubs (no Rules, Datacenters null) including the built-in policy.
    let list = get(a, "/v1/acl/policies", MGMT).await.expect(200).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"global-management") && names.contains(&"web-write"));
    let stub = &list.as_array().unwrap()[0];
    assert!(stub.get("Rules").is_none());
    assert_eq!(stub["Datacenters"], Value::Null);

    // py-consul's update: ID and PascalCase keys.
    let body = json!({"ID": id, "Name": "web-write", "Description": "changed",
                      "Rules": serde_json::to_string(rules).unwrap()})
    .to_string();
    let p2 = put(a, &format!("/v1/acl/policy/{id}"), MGMT, &body)
        .await
        .expect(200)
        .json();
    assert_eq!(p2["Description"], "changed");
    assert!(p2["ModifyIndex"].as_u64() > p["ModifyIndex"].as_u64());

    // Consul's errors.
    let r = put(a, "/v1/acl/policy", MGMT, &py_policy("web-write", rules))
        .await
        .expect(500);
    assert_eq!(
        r.body,
        "Invalid Policy: A Policy with Name \"web-write\" already exists"
    );
    let r = put(
        a,
        "/v1/acl/policy",
        MGMT,
        &json!({"ID": id, "Name": "x"}).to_string(),
    )
    .await
    .expect(400);
    assert_eq!(r.body, "Cannot specify the ID when creating a new policy");
    let r = put(a, "/v1/acl/policy", MGMT, "{\"Name\": ")
        .await
        .expect(400);
    assert!(r.body.starts_with("Policy decoding failed: "), "{}", r.body);
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    let r = put(a, "/v1/acl/policy", MGMT, r#"{"Name": "x", "Bogus": 1}"#)
        .await
        .expect(400);
    assert_eq!(
        r.body,
        "Policy decoding failed: json: unknown field \"Bogus\""
    );
    let r = put(
        a,
        &format!("/v1/acl/policy/{id}"),
        MGMT,
        &json!({"ID": "00000000-0000-0000-0000-00000000abcd", "Name": "x"}).to_string(),
    )
    .await
    .expect(400);
    assert_eq!(r.body, "Policy ID in URL and payload do not match");
    let r = put(a, "/v1/acl/policy", MGMT, &py_policy("bad", "service {")).await;
    assert_eq!(r.status, 500);
    assert!(
        r.body.starts_with("Failed to parse ACL rules: "),
        "{}",
        r.body
    );

    // Missing objects.
    let missing = "00000000-dead-beef-0000-000000000000";
    let r = get(a, &format!("/v1/acl/policy/{missing}"), MGMT)
        .await
        .expect(404);
    assert_eq!(r.body, "Requested policy does not exist: ACL not found");
    get(a, "/v1/acl/policy/name/nope", MGMT).await.expect(404);
    let r = get(a, "/v1/acl/policy/name/", MGMT).await.expect(400);
    assert_eq!(r.body, "Missing policy Name");

    // Delete: true, then 404.
    let r = delete(a, &format!("/v1/acl/policy/{id}"), MGMT)
        .await
        .expect(200);
    assert_eq!(r.json(), json!(true));
    let r = delete(a, &format!("/v1/acl/policy/{id}"), MGMT)
        .await
        .expect(404);
    assert_eq!(r.body, "Cannot find policy to delete");
    let r = delete(
        a,
        "/v1/acl/policy/00000000-0000-0000-0000-000000000001",
        MGMT,
    )
    .await
    .expect(500);
    assert_eq!(
        r.body,
        "Delete operation not permitted on the builtin global-management policy"
    );
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_tokens_and_roles() {
    let api = start().await;
    let a = api.addr;
    put(
        a,
        "/v1/acl/policy",
        MGMT,
        &py_policy("p1", r#"{"service_prefix": {"": {"policy": "read"}}}"#),
    )
    .await
    .expect(200);
    let p1 = get(a, "/v1/acl/policy/name/p1", MGMT).await.json();
    let p1_id = p1["ID"].as_str().unwrap().to_owned();

    // py-consul's token.create: policies by name, then by ID, and service identities.
    let t = put(
        a,
        "/v1/acl/token",
        MGMT,
        r#"{"Description": "t1", "Policies": [{"Name": "p1"}],
            "ServiceIdentities": [{"ServiceName": "web"}]}"#,
    )
    .await
    .expect(200)
    .json();
    for k in [
        "AccessorID",
        "SecretID",
        "Description",
        "Policies",
        "ServiceIdentities",
        "Local",
        "CreateTime",
        "Hash",
        "CreateIndex",
        "ModifyIndex",
    ] {
        assert!(t.get(k).is_some(), "{k} missing in {t}");
    }
    assert_eq!(t["Policies"], json!([{"ID": p1_id, "Name": "p1"}]));
    assert_eq!(t["ServiceIdentities"], json!([{"ServiceName": "web"}]));
    assert_eq!(t["Local"], json!(false));
    let accessor = t["AccessorID"].as_str().unwrap().to_owned();
    let secret = t["SecretID"].as_str().unwrap().to_owned();
    let t2 = put(
        a,
        "/v1/acl/token",
        MGMT,
        &json!({"Policies": [{"ID": p1_id}]}).to_string(),
    )
    .await
    .expect(200)
    .json();
    assert_eq!(t2["Policies"][0]["Name"], "p1");

    // Read, self, list with a filter.
    let r = get(a, &format!("/v1/acl/token/{accessor}"), MGMT)
        .await
        .expect(200);
    assert_eq!(r.json()["SecretID"], secret);
    let me = get(a, "/v1/acl/token/self", &secret)
        .await
        .expect(200)
        .json();
    assert_eq!(me["AccessorID"], accessor);
    let list = get(a, &format!("/v1/acl/tokens?policy={p1_id}"), MGMT)
        .await
        .expect(200)
        .json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    // Built-ins py-consul's tests assume: the management token and the anonymous token.
    let all = get(a, "/v1/acl/tokens", MGMT).await.expect(200).json();
    let descs: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["Description"].as_str().unwrap())
        .collect();
    assert!(descs.contains(&"Initial Management Token"));
    assert!(descs.contains(&"Anonymous Token"));

    // Update replaces the links; clone copies them.
    let u = put(
        a,
        &format!("/v1/acl/token/{accessor}"),
        MGMT,
        &json!({"AccessorID": accessor, "Description": "t1 again", "Policies": [{"Name": "p1"}]})
            .to_string(),
    )
    .await
    .expect(200)
    .json();
    assert_eq!(u["Description"], "t1 again");
    assert_eq!(u["SecretID"], secret);
    assert!(u.get("ServiceIdentities").is_none());
    let r = put(
        a,
        &format!("/v1/acl/token/{accessor}"),
        MGMT,
        r#"{"AccessorID": "00000000-dead-beef-0000-000000000001"}"#,
    )
    .await
    .expect(400);
    assert_eq!(r.body, "Token Accessor ID in URL and payload do not match");
    let c = put(
        a,
        &format!("/v1/acl/token/{accessor}/clone"),
        MGMT,
        r#"{"Description": "copy"}"#,
    )
    .await
    .expect(200)
    .json();
    assert_eq!(c["Description"], "copy");
    assert_eq!(c["Policies"][0]["Name"], "p1");
    assert_ne!(c["AccessorID"], accessor);

    // Chosen IDs, node identities (written as one checked record), then a reused secret.
    let chosen = json!({
        "AccessorID": "00000000-DEAD-BEEF-0000-000000000000",
        "SecretID": "6d1e3a77-6f0a-4d0d-9e36-3f1b7d3c9a10",
        "NodeIdentities": [{"NodeName": "node-1", "Datacenter": "primary"}],
    });
    let t3 = put(a, "/v1/acl/token", MGMT, &chosen.to_string())
        .await
        .expect(200)
        .json();
    assert_eq!(t3["AccessorID"], "00000000-DEAD-BEEF-0000-000000000000");
    assert_eq!(
        t3["NodeIdentities"],
        json!([{"NodeName": "node-1", "Datacenter": "primary"}])
    );
    get(
        a,
        "/v1/acl/token/00000000-DEAD-BEEF-0000-000000000000",
        MGMT,
    )
    .await
    .expect(200);
    get(
        a,
        "/v1/acl/token/self",
        "6d1e3a77-6f0a-4d0d-9e36-3f1b7d3c9a10",
    )
    .await
    .expect(200);
    let r = put(
        a,
        "/v1/acl/token",
        MGMT,
        r#"{"SecretID": "6d1e3a77-6f0a-4d0d-9e36-3f1b7d3c9a10"}"#,
    )
    .await
    .expect(500);
    assert_eq!(r.body, "Invalid Token: SecretID is already in use");
    let r = put(
        a,
        "/v1/acl/token",
        MGMT,
        r#"{"Policies": [{"Name": "nope"}]}"#,
    )
    .await
    .expect(500);
    assert_eq!(r.body, "No such ACL policy with name \"nope\"");

    // Delete: true; the token is gone (403, as Consul answers a missing accessor).
    let r = delete(a, &format!("/v1/acl/token/{accessor}"), MGMT)
        .await
        .expect(200);
    assert_eq!(r.json(), json!(true));
    let r = get(a, &format!("/v1/acl/token/{accessor}"), MGMT)
        .await
        .expect(403);
    assert_eq!(r.body, "token does not exist: ACL not found");
    let r = get(a, "/v1/acl/token/self", &secret).await.expect(403);
    assert_eq!(r.body, "ACL not found");
    let r = delete(a, &format!("/v1/acl/token/{accessor}"), MGMT)
        .await
        .expect(404);
    assert_eq!(r.body, "Cannot find token to delete");

    // Roles.
    let role = put(
        a,
        "/v1/acl/role",
        MGMT,
        r#"{"Name": "r1", "Description": "", "Policies": [{"Name": "p1"}],
            "ServiceIdentities": [{"ServiceName": "db"}]}"#,
    )
    .await
    .expect(200)
    .json();
    assert_eq!(role["Policies"], json!([{"ID": p1_id, "Name": "p1"}]));
    let role_id = role["ID"].as_str().unwrap().to_owned();
    assert_eq!(
        get(a, &format!("/v1/acl/role/{role_id}"), MGMT)
            .await
            .expect(200)
            .json()["Name"],
        "r1"
    );
    assert_eq!(
        get(a, "/v1/acl/role/name/r1", MGMT)
            .await
            .expect(200)
            .json()["ID"],
        role_id
    );
    let r = put(
        a,
        &format!("/v1/acl/role/{role_id}"),
        MGMT,
        &json!({"ID": role_id, "Name": "r1-renamed", "Description": "with a description"})
            .to_string(),
    )
    .await
    .expect(200)
    .json();
    assert_eq!(r["Description"], "with a description");
    assert_eq!(r["Name"], "r1-renamed");
    get(a, "/v1/acl/role/name/r1", MGMT).await.expect(404);
    let roles = get(a, "/v1/acl/roles", MGMT).await.expect(200).json();
    assert_eq!(roles.as_array().unwrap().len(), 1);
    let t4 = put(
        a,
        "/v1/acl/token",
        MGMT,
        r#"{"Roles": [{"Name": "r1-renamed"}]}"#,
    )
    .await
    .expect(200)
    .json();
    assert_eq!(t4["Roles"][0]["ID"], role_id);
    let r = put(a, "/v1/acl/role", MGMT, r#"{"Name": "r1-renamed"}"#)
        .await
        .expect(500);
    assert_eq!(
        r.body,
        "Invalid Role: A Role with Name \"r1-renamed\" already exists"
    );
    assert_eq!(
        delete(a, &format!("/v1/acl/role/{role_id}"), MGMT)
            .await
            .expect(200)
            .json(),
        json!(true)
    );
    let r = get(a, &format!("/v1/acl/role/{role_id}"), MGMT)
        .await
        .expect(404);
    assert_eq!(r.body, "Requested role does not exist: ACL not found");

    // Replication status of a primary: every field at its zero value.
    let rep = get(a, "/v1/acl/replication", MGMT).await.expect(200).json();
    assert_eq!(rep["Enabled"], json!(false));
    assert_eq!(rep["LastSuccess"], "0001-01-01T00:00:00Z");
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_denied_texts_and_token_forms() {
    let api = start().await;
    let a = api.addr;
    let (acc, sec) =
        token_with_rules(a, "nothing", r#"{"node_prefix": {"": {"policy": "read"}}}"#).await;

    let r = get(a, "/v1/acl/policies", &sec).await.expect(403);
    assert_eq!(
        r.body,
        format!("Permission denied: token with AccessorID '{acc}' lacks permission 'acl:read'")
    );
    let r = req(a, "GET", "/v1/acl/policies", None, None)
        .await
        .expect(403);
    assert_eq!(
        r.body,
        "Permission denied: anonymous token lacks permission 'acl:read'. The anonymous token is used implicitly when a request does not specify a token."
    );
    let r = put(
        a,
        "/v1/agent/service/register",
        &sec,
        r#"{"Name": "web", "Port": 80}"#,
    )
    .await
    .expect(403);
    assert_eq!(
        r.body,
        format!(
            "Permission denied: token with AccessorID '{acc}' lacks permission 'service:write' on \"web\""
        )
    );
    let r = get(
        a,
        "/v1/acl/policies",
        "00000000-1111-2222-3333-444444444444",
    )
    .await
    .expect(403);
    assert_eq!(r.body, "ACL not found");

    // The token three ways, in Consul's order.
    get(a, &format!("/v1/acl/token/self?token={MGMT}"), "")
        .await
        .expect(200);
    let bearer = format!(
        "GET /v1/acl/token/self HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: bearer {MGMT}\r\n\r\n"
    );
    let r = raw(a, bearer.as_bytes()).await.expect(200);
    assert_eq!(r.json()["Description"], "Initial Management Token");
    let r = req(
        a,
        "GET",
        &format!("/v1/acl/token/self?token={sec}"),
        Some(MGMT),
        None,
    )
    .await
    .expect(200);
    assert_eq!(r.json()["AccessorID"], acc, "?token= wins over the header");
    let basic = format!(
        "GET /v1/acl/policies HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {MGMT}\r\n\r\n"
    );
    raw(a, basic.as_bytes()).await.expect(403);
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_only_where_acl_write_sees_them() {
    let api = start().await;
    let a = api.addr;
    let (_, reader) = token_with_rules(
        a,
        "reader",
        r#"{"acl": "read", "operator": "read", "service_prefix": {"": {"policy": "read", "intentions": "read"}}, "node_prefix": {"": {"policy": "read"}}, "agent_prefix": {"": {"policy": "read"}}}"#,
    )
    .await;
    let made = put(a, "/v1/acl/token", MGMT, r#"{"Description": "made"}"#)
        .await
        .expect(200)
        .json();
    let made_acc = made["AccessorID"].as_str().unwrap().to_owned();
    let made_secret = made["SecretID"].as_str().unwrap().to_owned();
    put(
        a,
        "/v1/agent/service/register",
        MGMT,
        r#"{"name": "web", "port": 80, "token": "6d1e3a77-6f0a-4d0d-9e36-3f1b7d3c9a11"}"#,
    )
    .await
    .expect(200);

    let secrets = [
        MGMT,
        made_secret.as_str(),
        reader.as_str(),
        "6d1e3a77-6f0a-4d0d-9e36-3f1b7d3c9a11",
    ];
    let paths = [
        "/v1/acl/tokens".to_owned(),
        format!("/v1/acl/token/{made_acc}"),
        "/v1/acl/policies".to_owned(),
        "/v1/acl/roles".to_owned(),
        "/v1/acl/replication".to_owned(),
        "/v1/agent/self".to_owned(),
        "/v1/agent/members".to_owned(),
        "/v1/agent/services".to_owned(),
        "/v1/agent/service/web".to_owned(),
        "/v1/agent/metrics".to_owned(),
        "/v1/agent/metrics?format=prometheus".to_owned(),
        "/v1/catalog/services".to_owned(),
        "/v1/catalog/service/web".to_owned(),
        "/v1/health/service/web".to_owned(),
        "/v1/connect/intentions".to_owned(),
        "/v1/connect/ca/roots".to_owned(),
        "/v1/status/leader".to_owned(),
    ];
    let check = |r: &Resp, who: &str, path: &str, allowed: &[&str]| {
        for s in secrets {
            if allowed.contains(&s) {
                continue;
            }
            let in_headers = r.headers.iter().any(|(_, v)| v.contains(s));
            assert!(
                !r.body.contains(s) && !in_headers,
                "{who} GET {path} shows a secret: {}",
                r.body
            );
        }
    };
    for path in &paths {
        let r = get(a, path, &reader).await;
        assert_eq!(r.status, 200, "reader GET {path}: {}", r.body);
        check(&r, "reader", path, &[]);
        let r = req(a, "GET", path, None, None).await;
        check(&r, "anonymous", path, &[]);
        let r = get(
            a,
            &format!(
                "{path}{}token={reader}",
                if path.contains('?') { "&" } else { "?" }
            ),
            "",
        )
        .await;
        check(&r, "reader by ?token=", path, &[]);
    }
    // A reader sees `<hidden>` where the secret would be.
    let t = get(a, &format!("/v1/acl/token/{made_acc}"), &reader)
        .await
        .json();
    assert_eq!(t["SecretID"], "<hidden>");
    // acl:write sees secrets in token reads and lists, and nowhere else.
    for path in &paths {
        let r = get(a, path, MGMT).await;
        if path.starts_with("/v1/acl/token") {
            continue;
        }
        check(&r, "management", path, &[]);
    }
    let t = get(a, &format!("/v1/acl/token/{made_acc}"), MGMT)
        .await
        .json();
    assert_eq!(t["SecretID"], made_secret);
    // Errors never echo a token.
    let r = get(
        a,
        "/v1/acl/policies?token=6d1e3a77-6f0a-4d0d-9e36-3f1b7d3c9a12",
        "",
    )
    .await;
    assert!(!r.body.contains("6d1e3a77"), "{}", r.body);
    api.shutdown().await;
}

/// py-consul's `agent.service.register("socat", port=8181, connect={"sidecar_service": {}})`.
const PY_SOCAT: &str = r#"{"name": "socat", "port": 8181, "enabletagoverride": false, "connect": {"sidecar_service": {}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_services_catalog_and_health() {
    let api = start().await;
    let a = api.addr;
    let socat = put(
        a,
        "/v1/acl/token",
        MGMT,
        r#"{"ServiceIdentities": [{"ServiceName": "socat"}]}"#,
    )
    .await
    .expect(200)
    .json()["SecretID"]
        .as_str()
        .unwrap()
        .to_owned();

    // Register with lower-case keys and a sidecar: 200 with an empty body.
    let r = put(a, "/v1/agent/service/register", &socat, PY_SOCAT)
        .await
        .expect(200);
    assert_eq!(r.body, "");
    // The Go client's PascalCase form, with an upstream, for another service.
    let web = r#"{"Name": "web", "Port": 8080, "Tags": ["v1"],
      "Connect": {"SidecarService": {"Proxy": {"Upstreams": [
        {"DestinationName": "socat", "LocalBindPort": 9191, "MeshGateway": {"Mode": "local"}}]}}}}"#;
    put(a, "/v1/agent/service/register", MGMT, web)
        .await
        .expect(200);

    let svcs = get(a, "/v1/agent/services", MGMT).await.expect(200).json();
    let s = &svcs["socat"];
    assert_eq!(s["ID"], "socat");
    assert_eq!(s["Service"], "socat");
    assert_eq!(s["Port"], 8181);
    assert_eq!(s["Tags"], json!([]));
    assert_eq!(s["Meta"], json!({}));
    assert_eq!(s["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(s["Datacenter"], "primary");
    assert!(s.get("Kind").is_none());
    let sc = &svcs["socat-sidecar-proxy"];
    assert_eq!(sc["Kind"], "connect-proxy");
    assert_eq!(sc["Proxy"]["DestinationServiceName"], "socat");
    assert_eq!(sc["Proxy"]["MeshGateway"], json!({}));
    assert!(sc["Port"].as_u64().unwrap() >= 21000);
    let up = &svcs["web-sidecar-proxy"]["Proxy"]["Upstreams"][0];
    assert_eq!(up["DestinationName"], "socat");
    assert_eq!(up["LocalBindPort"], 9191);
    assert_eq!(up["MeshGateway"], json!({"Mode": "local"}));

    // One service; its content hash blocks nothing when it differs.
    let r = get(a, "/v1/agent/service/socat", MGMT).await.expect(200);
    let hash = r.header("X-Consul-ContentHash").unwrap().to_owned();
    assert_eq!(r.json()["ContentHash"], hash);
    // Hash blocking: held while the hash is the same, answered when the service changes.
    let waiter = tokio::spawn({
        let socat = socat.clone();
        let hash = hash.clone();
        async move {
            get(
                a,
                &format!("/v1/agent/service/socat?hash={hash}&wait=30s"),
                &socat,
            )
            .await
        }
    });
    let tagged =
        r#"{"name": "socat", "port": 8181, "tags": ["v2"], "connect": {"sidecar_service": {}}}"#;
    put(a, "/v1/agent/service/register", &socat, tagged)
        .await
        .expect(200);
    let r = tokio::time::timeout(REQUEST_TIMEOUT, waiter)
        .await
        .unwrap()
        .unwrap()
        .expect(200);
    assert_ne!(r.header("X-Consul-ContentHash").unwrap(), hash);
    assert_eq!(r.json()["Tags"], json!(["v2"]));
    put(a, "/v1/agent/service/register", &socat, PY_SOCAT)
        .await
        .expect(200);
    let r = get(a, "/v1/agent/service/nope", MGMT).await.expect(404);
    assert_eq!(r.body, "unknown service ID: nope");

    // Filtered by service:read, saying so to a token holder.
    let svcs = get(a, "/v1/agent/services", &socat).await;
    assert_eq!(
        svcs.header("X-Consul-Results-Filtered-By-ACLs"),
        None,
        "socat reads all services"
    );
    let (_, only_node) = token_with_rules(
        a,
        "node-only",
        r#"{"node_prefix": {"": {"policy": "read"}}}"#,
    )
    .await;
    let r = get(a, "/v1/agent/services", &only_node).await.expect(200);
    assert_eq!(r.json(), json!({}));
    assert_eq!(r.header("X-Consul-Results-Filtered-By-ACLs"), Some("true"));
    let r = req(a, "GET", "/v1/agent/services", None, None)
        .await
        .expect(200);
    assert_eq!(
        r.header("X-Consul-Results-Filtered-By-ACLs"),
        None,
        "not for anonymous"
    );

    // Catalog.
    let r = get(a, "/v1/catalog/services", MGMT).await.expect(200);
    assert_eq!(r.header("X-Consul-Effective-Consistency"), Some("leader"));
    let cat = r.json();
    assert_eq!(cat["consul"], json!([]));
    assert_eq!(cat["web"], json!(["v1"]));
    assert_eq!(cat["socat-sidecar-proxy"], json!([]));
    let r = get(a, "/v1/catalog/service/socat?stale=1", MGMT)
        .await
        .expect(200);
    assert_eq!(r.header("X-Consul-Effective-Consistency"), Some("stale"));
    let node = &r.json()[0];
    assert_eq!(node["ServiceName"], "socat");
    assert_eq!(node["ServiceID"], "socat");
    assert_eq!(node["ServicePort"], 8181);
    assert_eq!(node["Node"], "node-1");
    assert_eq!(node["Datacenter"], "primary");
    assert_eq!(node["ServiceTags"], json!([]));
    assert!(node["ServiceProxy"].is_object());
    let r = get(a, "/v1/catalog/service/web?tag=v1", MGMT).await.json();
    assert_eq!(r.as_array().unwrap().len(), 1);
    let r = get(a, "/v1/catalog/service/web?tag=v2", MGMT).await.json();
    assert_eq!(r, json!([]));
    let r = get(a, "/v1/catalog/connect/socat", MGMT)
        .await
        .expect(200)
        .json();
    assert_eq!(r[0]["ServiceName"], "socat-sidecar-proxy");
    assert_eq!(r[0]["ServiceKind"], "connect-proxy");
    assert_eq!(
        get(a, "/v1/catalog/datacenters", "").await.json(),
        json!(["primary"])
    );

    // Health: Node.Datacenter and Service.Proxy always there; checks passing.
    let r = get(a, "/v1/health/connect/socat?passing=1", MGMT)
        .await
        .expect(200);
    assert!(r.index() >= 1);
    let e = &r.json()[0];
    assert_eq!(e["Node"]["Datacenter"], "primary");
    assert_eq!(e["Node"]["Node"], "node-1");
    assert_eq!(e["Service"]["Service"], "socat-sidecar-proxy");
    assert_eq!(e["Service"]["Proxy"]["DestinationServiceName"], "socat");
    assert_eq!(e["Service"]["Connect"], json!({}));
    let checks = e["Checks"].as_array().unwrap();
    assert_eq!(checks[0]["CheckID"], "serfHealth");
    assert!(checks.iter().all(|c| c["Status"] == "passing"));
    assert!(
        checks
            .iter()
            .any(|c| c["Name"] == "Connect Sidecar Listening")
    );
    let r = get(a, "/v1/health/service/socat", MGMT)
        .await
        .expect(200)
        .json();
    assert_eq!(r[0]["Service"]["ID"], "socat");
    assert_eq!(
        r[0]["Service"]["Proxy"],
        json!({"MeshGateway": {}, "Expose": {}})
    );
    let r = get(a, "/v1/health/service/nothing", MGMT).await.expect(200);
    assert_eq!(r.body, "[]");
    let r = get(a, "/v1/health/service/socat?passing=maybe", MGMT)
        .await
        .expect(400);
    assert_eq!(r.body, "Invalid value for ?passing");
    let r = get(a, "/v1/health/service/socat", &only_node)
        .await
        .expect(200);
    assert_eq!(r.body, "[]");
    assert_eq!(r.header("X-Consul-Results-Filtered-By-ACLs"), Some("true"));

    // Deregister removes the sidecar too; an unknown ID is Consul's 404.
    put(a, "/v1/agent/service/deregister/socat", &socat, "")
        .await
        .expect(200);
    let svcs = get(a, "/v1/agent/services", MGMT).await.json();
    assert!(svcs.get("socat").is_none() && svcs.get("socat-sidecar-proxy").is_none());
    let r = put(a, "/v1/agent/service/deregister/socat", &socat, "")
        .await
        .expect(404);
    assert_eq!(
        r.body,
        "Unknown service ID \"socat\". Ensure that the service ID is passed, not the service name."
    );

    // Registration errors.
    let r = put(a, "/v1/agent/service/register", MGMT, r#"{"port": 1}"#)
        .await
        .expect(400);
    assert_eq!(r.body, "Missing service name");
    let r = put(
        a,
        "/v1/agent/service/register",
        MGMT,
        r#"{"name": "x", "upstream": 1}"#,
    )
    .await
    .expect(400);
    assert_eq!(
        r.body,
        "Request decode failed: json: unknown field \"upstream\""
    );
    let r = put(a, "/v1/agent/service/register", MGMT, "{not json")
        .await
        .expect(400);
    assert!(r.body.starts_with("Request decode failed: "), "{}", r.body);
    let r = put(
        a,
        "/v1/agent/service/register",
        MGMT,
        r#"{"name": "x", "address": "0.0.0.0"}"#,
    )
    .await
    .expect(400);
    assert_eq!(r.body, "Invalid service address");
    let r = put(
        a,
        "/v1/agent/service/register",
        MGMT,
        r#"{"name": "x", "Namespace": "a"}"#,
    )
    .await
    .expect(400);
    assert_eq!(
        r.body,
        "Request decode failed: json: unknown field \"Namespace\" - Namespaces are a Consul Enterprise feature"
    );
    // Nothing half-written: the refused registrations left no instance.
    let svcs = get(a, "/v1/agent/services", MGMT).await.json();
    assert!(svcs.get("x").is_none());
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_entries() {
    let api = start().await;
    let a = api.addr;
    let guide = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/guide/proxy-defaults.json"
    ));
    // py-consul's config.set: the entry plus Kind and Name; a JSON boolean back.
    let mut entry: Value = serde_json::from_str(guide).unwrap();
    entry["Kind"] = json!("proxy-defaults");
    entry["Name"] = json!("global");
    let r = put(a, "/v1/config", MGMT, &entry.to_string())
        .await
        .expect(200);
    assert_eq!(r.json(), json!(true));
    let r = get(a, "/v1/config/proxy-defaults/global", MGMT)
        .await
        .expect(200);
    let got = r.json();
    assert_eq!(got["Kind"], "proxy-defaults");
    assert_eq!(got["Name"], "global");
    assert_eq!(got["MeshGateway"]["Mode"], "local");
    let modify = got["ModifyIndex"].as_u64().unwrap();
    assert!(r.index() >= modify);
    // proxy-defaults reads need no token.
    req(a, "GET", "/v1/config/proxy-defaults/global", None, None)
        .await
        .expect(200);
    let list = get(a, "/v1/config/proxy-defaults", MGMT)
        .await
        .expect(200)
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Check-and-set: 0 means "only if absent"; a stale index is false; the same entry true.
    let mut changed = entry.clone();
    changed["MeshGateway"] = json!({"Mode": "remote"});
    let r = put(a, "/v1/config?cas=0", MGMT, &changed.to_string())
        .await
        .expect(200);
    assert_eq!(r.json(), json!(false));
    let r = put(a, "/v1/config?cas=1", MGMT, &changed.to_string())
        .await
        .expect(200);
    assert_eq!(r.json(), json!(false));
    let r = put(a, "/v1/config?cas=1", MGMT, &entry.to_string())
        .await
        .expect(200);
    assert_eq!(
        r.json(),
        json!(true),
        "a no-op write succeeds whatever the index"
    );
    let r = put(
        a,
        &format!("/v1/config?cas={modify}"),
        MGMT,
        &changed.to_string(),
    )
    .await
    .expect(200);
    assert_eq!(r.json(), json!(true));
    let got = get(a, "/v1/config/proxy-defaults/global", MGMT)
        .await
        .json();
    assert_eq!(got["MeshGateway"]["Mode"], "remote");
    let r = put(a, "/v1/config?cas=x", MGMT, &changed.to_string())
        .await
        .expect(500);
    assert_eq!(r.body, "strconv.ParseUint: parsing \"x\": invalid syntax");

    // service-defaults needs service:write on its name, and service:read to read.
    let (_, web) = token_with_rules(a, "web", r#"{"service": {"web": {"policy": "write"}}}"#).await;
    let sd = r#"{"Kind": "service-defaults", "Name": "web", "Protocol": "tcp"}"#;
    assert_eq!(
        put(a, "/v1/config", &web, sd).await.expect(200).json(),
        json!(true)
    );
    let r = put(
        a,
        "/v1/config",
        &web,
        r#"{"Kind": "service-defaults", "Name": "db"}"#,
    )
    .await
    .expect(403);
    assert!(
        r.body
            .contains("lacks permission 'service:write' on \"db\""),
        "{}",
        r.body
    );
    get(a, "/v1/config/service-defaults/web", &web)
        .await
        .expect(200);
    req(a, "GET", "/v1/config/service-defaults/web", None, None)
        .await
        .expect(403);
    let r = get(a, "/v1/config/service-defaults", &web)
        .await
        .expect(200);
    assert_eq!(r.json().as_array().unwrap().len(), 1);

    // Errors.
    let r = put(a, "/v1/config", MGMT, r#"{"Name": "x"}"#)
        .await
        .expect(400);
    assert_eq!(
        r.body,
        "Request decoding failed: Payload does not contain a kind/Kind key at the top level"
    );
    let r = put(a, "/v1/config", MGMT, r#"{"Kind": 3}"#)
        .await
        .expect(400);
    assert_eq!(
        r.body,
        "Request decoding failed: Kind value in payload is not a string"
    );
    let r = put(a, "/v1/config", MGMT, r#"{"Kind": "nope", "Name": "x"}"#)
        .await
        .expect(400);
    assert_eq!(r.body, "invalid config entry kind: nope");
    let r = get(a, "/v1/config/nope/x", MGMT).await.expect(500);
    assert_eq!(r.body, "invalid config entry kind: nope");
    let r = put(a, "/v1/config", MGMT, "{").await.expect(400);
    assert!(
        r.body.starts_with("Request decoding failed: "),
        "{}",
        r.body
    );

    // Delete: with a stale cas false, then {} and gone.
    let r = delete(a, "/v1/config/proxy-defaults/global?cas=1", MGMT)
        .await
        .expect(200);
    assert_eq!(r.json(), json!(false));
    let r = delete(a, "/v1/config/proxy-defaults/global", MGMT)
        .await
        .expect(200);
    assert_eq!(r.json(), json!({}));
    let r = get(a, "/v1/config/proxy-defaults/global", MGMT)
        .await
        .expect(404);
    assert_eq!(
        r.body,
        "Config entry not found for \"proxy-defaults\" / \"global\""
    );
    let r = delete(a, "/v1/config/proxy-defaults/global?cas=5", MGMT)
        .await
        .expect(200);
    assert_eq!(r.json(), json!(true), "deleting an absent entry succeeds");
    assert_eq!(get(a, "/v1/config/proxy-defaults", MGMT).await.body, "[]");
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_self_members_status_reload_and_metrics() {
    let dc = datacenter("primary").await;
    let reloads = Arc::new(AtomicUsize::new(0));
    let counter = reloads.clone();
    let state = ApiState::new(dc.clone(), HttpConfig::default(), Arc::new(Metrics::new()))
        .with_agent_info(agent_info())
        .with_reload(Arc::new(move || {
            let counter = counter.clone();
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        }));
    let api = serve_state(dc, state).await;
    let a = api.addr;

    let me = get(a, "/v1/agent/self", MGMT).await.expect(200).json();
    assert_eq!(
        keys(&me),
        ["Config", "Coord", "DebugConfig", "Member", "Meta", "Stats"]
    );
    assert_eq!(me["Config"]["NodeName"], "node-1");
    assert_eq!(me["Config"]["Datacenter"], "primary");
    assert_eq!(me["Config"]["Server"], json!(true));
    let members = get(a, "/v1/agent/members", MGMT).await.expect(200).json();
    assert_eq!(members[0], me["Member"]);
    let leader = get(a, "/v1/status/leader", "").await.expect(200).json();
    assert_eq!(leader, json!("127.0.0.1:8300"));
    assert_eq!(me["Stats"]["consul"]["leader_addr"], leader);
    let peers = get(a, "/v1/status/peers", "").await.expect(200).json();
    assert_eq!(peers, json!([leader]));
    let r = req(a, "GET", "/v1/agent/self", None, None)
        .await
        .expect(403);
    assert_eq!(
        r.body,
        "Permission denied: anonymous token lacks permission 'agent:read' on \"node-1\". The anonymous token is used implicitly when a request does not specify a token."
    );

    // Reload runs the hook (PUT only).
    put(a, "/v1/agent/reload", MGMT, "").await.expect(200);
    assert_eq!(reloads.load(Ordering::SeqCst), 1);
    get(a, "/v1/agent/reload", MGMT).await.expect(405);

    // Metrics: the JSON summary and the Prometheus text.
    let m = get(a, "/v1/agent/metrics", MGMT).await.expect(200).json();
    assert!(m["Timestamp"].as_str().unwrap().ends_with("+0000 UTC"));
    assert!(
        m["Counters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["Name"] == "mesh.http_requests")
    );
    for k in ["Gauges", "Points", "Samples"] {
        assert!(m[k].is_array(), "{k}");
    }
    let r = get(a, "/v1/agent/metrics?format=prometheus", MGMT)
        .await
        .expect(200);
    let line = r
        .body
        .lines()
        .find(|l| {
            l.starts_with("mesh_http_requests_total{")
                && l.contains("route=\"/v1/agent/self\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no request line in {}", r.body));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{line}");
    assert!(r.body.contains("# TYPE mesh_acl_decisions counter"));
    let denied = r
        .body
        .lines()
        .find(|l| l.starts_with("mesh_acl_decisions_total{decision=\"denied\"}"))
        .unwrap();
    assert!(denied.ends_with(" 1"), "{denied}");
    api.shutdown().await;
}
