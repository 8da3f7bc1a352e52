//! The writes the HTTP API makes through the datacenter's spec-taking calls, made against
//! the primary's API and a secondary's (forwarded to the primary like every global write):
//! tokens with chosen IDs, expiry and identities; roles with descriptions and node
//! identities; policies with datacenters; intentions with a description and meta; config
//! entries with check-and-set; deregistration with the sidecar; Connect-native services;
//! the ACL bootstrap.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod http_common;

use std::sync::Arc;
use std::time::Duration;

use http_common::*;
use mesh::intentions::acl::DefaultPolicy;
use mesh::{Datacenter, DatacenterConfig, Secret, TokenSpec};
use mesh_agent::http::{ApiState, HttpConfig};
use mesh_agent::metrics::Metrics;
use serde_json::{Value, json};

const REPLICATION_RULES: &str = r#"acl = "write"
operator = "write"
service_prefix "" { policy = "read" intentions = "read" }
node_prefix "" { policy = "read" }"#;

fn config(name: &str) -> DatacenterConfig {
    let mut c = DatacenterConfig::new(name.parse().unwrap(), "primary".parse().unwrap());
    c.acl.enabled = true;
    c.acl.default_policy = DefaultPolicy::Deny;
    c
}

fn state(dc: &Datacenter) -> ApiState {
    ApiState::new(dc.clone(), HttpConfig::default(), Arc::new(Metrics::new()))
        .with_agent_info(agent_info())
}

/// A secondary of `primary` (replicating with a token created by `mgmt`) served with its own
/// API, which knows the primary's at `primary_api` when given.
async fn secondary_api(
    primary: &Datacenter,
    mgmt: &str,
    primary_api: Option<std::net::SocketAddr>,
) -> Api {
    let acl = primary.acl();
    let m = Secret::new(mgmt);
    if acl.policy_read_by_name("replication").await.is_err() {
        acl.policy_create(&m, "replication", "", REPLICATION_RULES)
            .await
            .unwrap();
    }
    let repl = acl
        .token_create(
            &m,
            TokenSpec {
                policy_names: vec!["replication".into()],
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap()
        .secret_id;
    let mut sc = config("secondary");
    sc.acl.tokens.replication = Some(repl.into());
    let dc = tokio::time::timeout(
        Duration::from_secs(20),
        Datacenter::start_secondary(sc, primary.in_process_link()),
    )
    .await
    .expect("secondary starts in time")
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while dc.acl().authorizer(&m).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "management token replicates"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut st = state(&dc);
    if let Some(addr) = primary_api {
        st = st.with_peer("primary".parse().unwrap(), format!("http://{addr}"));
    }
    serve_state(dc, st).await
}

/// The primary's API and a secondary's.
async fn both() -> (Api, Api) {
    let p = start().await;
    let s = secondary_api(&p.dc, MGMT, Some(p.addr)).await;
    (p, s)
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_with_chosen_ids_expiry_and_identities_in_both_datacenters() {
    let (p, s) = both().await;
    for (i, api) in [&p, &s].into_iter().enumerate() {
        let a = api.addr;
        let accessor = format!("6a3f0c3e-1b2d-4c5e-8f90-00000000010{i}");
        let secret = format!("6a3f0c3e-1b2d-4c5e-8f90-00000000020{i}");
        let body = json!({
            "AccessorID": accessor, "SecretID": secret, "Description": "chosen",
            "ExpirationTTL": "1h",
            "NodeIdentities": [{"NodeName": "node-1", "Datacenter": "primary"}],
            "ServiceIdentities": [{"ServiceName": "web", "Datacenters": ["secondary"]}]
        })
        .to_string();
        let t = put(a, "/v1/acl/token", MGMT, &body)
            .await
            .expect(200)
            .json();
        assert_eq!(t["AccessorID"], accessor.as_str());
        assert_eq!(t["SecretID"], secret.as_str());
        assert_ne!(t["CreateTime"], ZERO_TIME, "{t}");
        assert!(t["CreateTime"].as_str().unwrap().ends_with('Z'));
        assert!(t["ExpirationTime"].is_string());
        assert!(t["Hash"].is_string() && t["CreateIndex"].as_u64().unwrap() > 0);
        assert_eq!(t["NodeIdentities"][0]["NodeName"], "node-1");
        assert_eq!(
            t["ServiceIdentities"][0]["Datacenters"],
            json!(["secondary"])
        );
        let back = get(a, &format!("/v1/acl/token/{accessor}"), MGMT)
            .await
            .expect(200)
            .json();
        assert_eq!(back["CreateTime"], t["CreateTime"]);
        // Taken IDs: Consul's texts.
        let r = put(
            a,
            "/v1/acl/token",
            MGMT,
            &json!({"AccessorID": accessor}).to_string(),
        )
        .await
        .expect(500);
        assert_eq!(r.body, "Invalid Token: AccessorID is already in use");
        let r = put(
            a,
            "/v1/acl/token",
            MGMT,
            &json!({"SecretID": secret}).to_string(),
        )
        .await
        .expect(500);
        assert_eq!(r.body, "Invalid Token: SecretID is already in use");
        // TTL bounds.
        let r = put(
            a,
            "/v1/acl/token",
            MGMT,
            &json!({"ExpirationTTL": "30s"}).to_string(),
        )
        .await
        .expect(500);
        assert!(
            r.body
                .starts_with("ExpirationTime cannot be less than 1m0s")
        );
        let r = put(
            a,
            "/v1/acl/token",
            MGMT,
            &json!({"ExpirationTTL": "25h"}).to_string(),
        )
        .await
        .expect(500);
        assert!(
            r.body
                .starts_with("ExpirationTime cannot be more than 24h0m0s")
        );
        // Update with node identities; the secret, expiry and creation time stay.
        let body = json!({"Description": "updated",
            "NodeIdentities": [{"NodeName": "node-2", "Datacenter": "secondary"}]})
        .to_string();
        let u = put(a, &format!("/v1/acl/token/{accessor}"), MGMT, &body)
            .await
            .expect(200)
            .json();
        assert_eq!(u["SecretID"], secret.as_str());
        assert_eq!(u["CreateTime"], t["CreateTime"]);
        assert_eq!(u["ExpirationTime"], t["ExpirationTime"]);
        assert_eq!(u["NodeIdentities"][0]["NodeName"], "node-2");
        // A local token with an expiry and node identities.
        let body = json!({"Local": true, "ExpirationTTL": "2m",
            "NodeIdentities": [{"NodeName": "node-3", "Datacenter": "primary"}]})
        .to_string();
        let l = put(a, "/v1/acl/token", MGMT, &body)
            .await
            .expect(200)
            .json();
        assert_eq!(l["Local"], true);
        assert!(l["ExpirationTime"].is_string());
        // Clone keeps the identities.
        let c = put(a, &format!("/v1/acl/token/{accessor}/clone"), MGMT, "{}")
            .await
            .expect(200)
            .json();
        assert_eq!(c["NodeIdentities"][0]["NodeName"], "node-2");
    }
    s.shutdown().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_policies_with_all_their_fields_in_both_datacenters() {
    let (p, s) = both().await;
    for api in [&p, &s] {
        let a = api.addr;
        let dc = api.dc.name().to_string();
        let pname = format!("team/{dc}");
        let body = json!({"Name": pname, "Rules": "service \"web\" { policy = \"read\" }",
                          "Datacenters": ["primary"]})
        .to_string();
        let pol = put(a, "/v1/acl/policy", MGMT, &body)
            .await
            .expect(200)
            .json();
        assert_eq!(pol["Datacenters"], json!(["primary"]));
        assert_eq!(pol["Name"], pname.as_str());
        let id = pol["ID"].as_str().unwrap().to_owned();
        let body = json!({"Name": pname, "Rules": pol["Rules"],
                          "Datacenters": ["primary", "secondary"]})
        .to_string();
        let upd = put(a, &format!("/v1/acl/policy/{id}"), MGMT, &body)
            .await
            .expect(200)
            .json();
        assert_eq!(upd["Datacenters"], json!(["primary", "secondary"]));
        let r = put(
            a,
            "/v1/acl/policy",
            MGMT,
            &json!({"Name": "a/b/c"}).to_string(),
        )
        .await
        .expect(500);
        assert_eq!(
            r.body,
            "Invalid Policy: invalid Name. Only alphanumeric characters, a single '/', '-' and '_' are allowed"
        );

        let rname = format!("role-{dc}");
        let body = json!({"Name": rname, "Description": "a role",
            "Policies": [{"Name": pname}],
            "ServiceIdentities": [{"ServiceName": "db", "Datacenters": ["primary"]}],
            "NodeIdentities": [{"NodeName": "node-1", "Datacenter": "secondary"}]})
        .to_string();
        let role = put(a, "/v1/acl/role", MGMT, &body).await.expect(200).json();
        assert_eq!(role["Description"], "a role");
        assert_eq!(role["NodeIdentities"][0]["NodeName"], "node-1");
        assert_eq!(
            role["ServiceIdentities"][0]["Datacenters"],
            json!(["primary"])
        );
        let rid = role["ID"].as_str().unwrap().to_owned();
        let body = json!({"Name": format!("{rname}-2"), "Description": "renamed"}).to_string();
        let upd = put(a, &format!("/v1/acl/role/{rid}"), MGMT, &body)
            .await
            .expect(200)
            .json();
        assert_eq!(upd["Description"], "renamed");
        assert!(upd.get("NodeIdentities").is_none());
        let r = put(
            a,
            "/v1/acl/role",
            MGMT,
            &json!({"Name": format!("{rname}-2"), "Description": "dup"}).to_string(),
        )
        .await
        .expect(500);
        assert_eq!(
            r.body,
            format!("Invalid Role: A Role with Name \"{rname}-2\" already exists")
        );
    }
    s.shutdown().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intentions_and_config_entries_in_both_datacenters() {
    let (p, s) = both().await;
    for (i, api) in [&p, &s].into_iter().enumerate() {
        let a = api.addr;
        let src = format!("web{i}");
        let exact = format!("/v1/connect/intentions/exact?source={src}&destination=db");
        let body = json!({"Action": "allow", "Description": "web may reach db"}).to_string();
        let r = put(a, &exact, MGMT, &body).await.expect(200);
        assert_eq!(r.body.trim(), "true");
        let x = get(a, &exact, MGMT).await.expect(200).json();
        assert_eq!(x["Description"], "web may reach db");
        // The legacy API: Meta and an ID, then a rename by ID.
        let body = json!({"SourceName": format!("api{i}"), "DestinationName": "db",
            "Action": "deny", "Description": "legacy", "Meta": {"owner": "team-a"}})
        .to_string();
        let created = req(a, "POST", "/v1/connect/intentions", Some(MGMT), Some(&body))
            .await
            .expect(200)
            .json();
        let id = created["ID"].as_str().unwrap().to_owned();
        let x = get(a, &format!("/v1/connect/intentions/{id}"), MGMT)
            .await
            .expect(200)
            .json();
        assert_eq!(x["Meta"], json!({"owner": "team-a"}));
        let body = json!({"SourceName": format!("api{i}-b"), "DestinationName": "db",
            "Action": "allow", "Meta": {"owner": "team-b"}})
        .to_string();
        put(a, &format!("/v1/connect/intentions/{id}"), MGMT, &body)
            .await
            .expect(200);
        let all = get(a, "/v1/connect/intentions", MGMT)
            .await
            .expect(200)
            .json();
        let names: Vec<&str> = all
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["SourceName"].as_str())
            .collect();
        assert!(names.contains(&format!("api{i}-b").as_str()), "{names:?}");
        assert!(!names.contains(&format!("api{i}").as_str()), "{names:?}");

        // Config entries with check-and-set.
        let name = format!("svc{i}");
        let entry =
            json!({"Kind": "service-defaults", "Name": name, "Protocol": "http"}).to_string();
        let r = put(a, "/v1/config?cas=0", MGMT, &entry).await.expect(200);
        assert_eq!(r.body.trim(), "true");
        let changed =
            json!({"Kind": "service-defaults", "Name": name, "Protocol": "tcp"}).to_string();
        let r = put(a, "/v1/config?cas=0", MGMT, &changed).await.expect(200);
        assert_eq!(r.body.trim(), "false");
        let cur = get(a, &format!("/v1/config/service-defaults/{name}"), MGMT)
            .await
            .expect(200)
            .json();
        let idx = cur["ModifyIndex"].as_u64().unwrap();
        let r = put(a, &format!("/v1/config?cas={idx}"), MGMT, &changed)
            .await
            .expect(200);
        assert_eq!(r.body.trim(), "true");
        let r = delete(
            a,
            &format!("/v1/config/service-defaults/{name}?cas={idx}"),
            MGMT,
        )
        .await
        .expect(200);
        assert_eq!(r.body.trim(), "false", "stale index");
        let r = delete(a, &format!("/v1/config/service-defaults/{name}"), MGMT)
            .await
            .expect(200);
        assert_eq!(r.json(), json!({}));
        get(a, &format!("/v1/config/service-defaults/{name}"), MGMT)
            .await
            .expect(404);
    }
    s.shutdown().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_services_and_deregistration_with_the_sidecar_in_both_datacenters() {
    let (p, s) = both().await;
    for api in [&p, &s] {
        let a = api.addr;
        let body = json!({"Name": "nat", "ID": "nat-1", "Port": 9191,
                          "Connect": {"Native": true}})
        .to_string();
        put(a, "/v1/agent/service/register", MGMT, &body)
            .await
            .expect(200);
        let r = get(a, "/v1/catalog/connect/nat", MGMT)
            .await
            .expect(200)
            .json();
        assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
        assert_eq!(r[0]["ServiceID"], "nat-1");
        assert_eq!(r[0]["ServiceConnect"], json!({"Native": true}));
        let r = get(a, "/v1/health/connect/nat", MGMT)
            .await
            .expect(200)
            .json();
        assert_eq!(r[0]["Service"]["ID"], "nat-1");
        assert_eq!(r[0]["Service"]["Connect"], json!({"Native": true}));

        // A service with a sidecar, deregistered with it in one go.
        let body = json!({"Name": "web", "ID": "web-1", "Port": 8080,
                          "Connect": {"SidecarService": {}}})
        .to_string();
        put(a, "/v1/agent/service/register", MGMT, &body)
            .await
            .expect(200);
        let services = get(a, "/v1/agent/services", MGMT).await.expect(200).json();
        assert!(services.get("web-1-sidecar-proxy").is_some(), "{services}");
        // A token that may write web only removes nothing.
        let (_, web_only) = token_with_rules(
            a,
            &format!("web-only-{}", api.dc.name()),
            r#"service "web" { policy = "write" }"#,
        )
        .await;
        put(a, "/v1/agent/service/deregister/web-1", &web_only, "")
            .await
            .expect(403);
        let services = get(a, "/v1/agent/services", MGMT).await.expect(200).json();
        assert!(services.get("web-1").is_some() && services.get("web-1-sidecar-proxy").is_some());
        put(a, "/v1/agent/service/deregister/web-1", MGMT, "")
            .await
            .expect(200);
        let services = get(a, "/v1/agent/services", MGMT).await.expect(200).json();
        assert!(services.get("web-1").is_none(), "{services}");
        assert!(services.get("web-1-sidecar-proxy").is_none(), "{services}");
        put(a, "/v1/agent/service/deregister/nat-1", MGMT, "")
            .await
            .expect(200);
        let r = get(a, "/v1/catalog/connect/nat", MGMT)
            .await
            .expect(200)
            .json();
        assert_eq!(r, json!([]));
    }
    s.shutdown().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_once_in_the_primary_and_through_a_secondary() {
    // A primary without initial_management.
    let dc = Datacenter::start_primary(config("primary")).await.unwrap();
    let p = serve_state(dc.clone(), state(&dc)).await;
    let t = req(p.addr, "PUT", "/v1/acl/bootstrap", None, Some(""))
        .await
        .expect(200)
        .json();
    assert_eq!(t["ID"], t["SecretID"]);
    assert_eq!(t["Description"], "Bootstrap Token (Global Management)");
    assert_eq!(
        t["Policies"],
        json!([{"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}])
    );
    assert_eq!(t["Local"], false);
    assert_ne!(t["CreateTime"], ZERO_TIME);
    let mgmt = t["SecretID"].as_str().unwrap().to_owned();
    let again = req(p.addr, "PUT", "/v1/acl/bootstrap", None, Some(""))
        .await
        .expect(403);
    assert!(
        again
            .body
            .starts_with("Permission denied: ACL bootstrap no longer allowed (reset index: "),
        "{}",
        again.body
    );
    // The bootstrap token works.
    get(p.addr, "/v1/acl/tokens", &mgmt).await.expect(200);

    // A secondary sends it to the primary: the same refusal.
    let s = secondary_api(&p.dc, &mgmt, Some(p.addr)).await;
    let r = req(s.addr, "PUT", "/v1/acl/bootstrap", None, Some(""))
        .await
        .expect(403);
    assert_eq!(r.body, again.body);
    s.shutdown().await;
    // Without the primary's address it says why.
    let s = secondary_api(&p.dc, &mgmt, None).await;
    let r = req(s.addr, "PUT", "/v1/acl/bootstrap", None, Some(""))
        .await
        .expect(500);
    assert!(r.body.contains("primary datacenter"), "{}", r.body);
    s.shutdown().await;
    p.shutdown().await;

    // A chosen secret. (A secondary cannot start before a primary has a token to make its
    // replication token with, so a first bootstrap is always made in the primary.)
    let dc = Datacenter::start_primary(config("primary")).await.unwrap();
    let p = serve_state(dc.clone(), state(&dc)).await;
    let chosen = "6a3f0c3e-1b2d-4c5e-8f90-000000000abc";
    let body = json!({ "BootstrapSecret": chosen }).to_string();
    let t = req(p.addr, "PUT", "/v1/acl/bootstrap", None, Some(&body))
        .await
        .expect(200)
        .json();
    assert_eq!(t["SecretID"], chosen);
    let v: Value = get(p.addr, "/v1/acl/token/self", chosen)
        .await
        .expect(200)
        .json();
    assert_eq!(v["AccessorID"], t["AccessorID"]);
    p.shutdown().await;

    // initial_management counts as a bootstrap.
    let p = start().await;
    req(p.addr, "PUT", "/v1/acl/bootstrap", None, Some(""))
        .await
        .expect(403);
    p.shutdown().await;
}
