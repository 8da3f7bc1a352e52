//! Connect over HTTP: CA roots, leaf certificates (checked with openssl), root rotation
//! through the CA configuration endpoint waking a blocking leaf query, intentions (exact,
//! list, match, check, legacy) and the agent's authorize.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod http_common;

use std::process::Command;

use http_common::*;
use serde_json::{Value, json};

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn split_pem(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END") {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

async fn service_token(a: std::net::SocketAddr, service: &str) -> (String, String) {
    let t = put(
        a,
        "/v1/acl/token",
        MGMT,
        &json!({"ServiceIdentities": [{"ServiceName": service}]}).to_string(),
    )
    .await
    .expect(200)
    .json();
    (
        t["AccessorID"].as_str().unwrap().to_owned(),
        t["SecretID"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_leaves_and_rotation() {
    let api = start().await;
    let a = api.addr;
    let (_, web) = service_token(a, "web").await;
    let (socat_acc, socat) = service_token(a, "socat").await;

    // Roots: no token needed; Consul's shape.
    let r = req(a, "GET", "/v1/connect/ca/roots", None, None)
        .await
        .expect(200);
    let roots = r.json();
    assert!(r.index() >= 1);
    let active_id = roots["ActiveRootID"].as_str().unwrap().to_owned();
    assert!(roots["TrustDomain"].as_str().unwrap().ends_with(".consul"));
    let root = &roots["Roots"][0];
    assert_eq!(root["ID"], active_id);
    assert_eq!(root["Active"], json!(true));
    assert!(root["SerialNumber"].is_u64());
    assert_eq!(root["IntermediateCerts"], Value::Null);
    assert!(root.get("RotatedOutAt").is_none() && roots.get("Index").is_none());
    let r = req(a, "GET", "/v1/agent/connect/ca/roots", None, None)
        .await
        .expect(200);
    assert_eq!(r.json(), roots);
    assert_eq!(r.header("X-Cache"), Some("MISS"));
    let r = get(a, "/v1/connect/ca/roots?pem=true", "")
        .await
        .expect(200);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/pem-certificate-chain")
    );
    assert!(r.body.starts_with("-----BEGIN CERTIFICATE-----"));
    let r = get(a, "/v1/connect/ca/roots?pem=yes", "").await.expect(400);
    assert_eq!(r.body, "The 'pem' query parameter must be a boolean value");

    // A leaf for web with web's token; openssl accepts the chain and the key.
    let r = get(a, "/v1/agent/connect/ca/leaf/web", &web)
        .await
        .expect(200);
    assert_eq!(r.header("X-Cache"), Some("MISS"));
    let leaf = r.json();
    let leaf_index = r.index();
    assert_eq!(leaf["ModifyIndex"].as_u64().unwrap(), leaf_index);
    assert_eq!(leaf["Service"], "web");
    assert!(
        leaf["ServiceURI"]
            .as_str()
            .unwrap()
            .ends_with("/ns/default/dc/primary/svc/web")
    );
    let serial = leaf["SerialNumber"].as_str().unwrap().to_owned();
    assert!(
        serial.split(':').all(|b| b.len() == 2
            && b.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())),
        "{serial}"
    );
    let key = leaf["PrivateKeyPEM"].as_str().unwrap();
    assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(p("root.pem"), root["RootCert"].as_str().unwrap()).unwrap();
    let certs = split_pem(leaf["CertPEM"].as_str().unwrap());
    std::fs::write(p("leaf.pem"), &certs[0]).unwrap();
    std::fs::write(
        p("chain.pem"),
        if certs.len() > 1 {
            certs[1..].concat()
        } else {
            root["RootCert"].as_str().unwrap().to_owned()
        },
    )
    .unwrap();
    std::fs::write(p("key.pem"), key).unwrap();
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        &p("root.pem"),
        "-untrusted",
        &p("chain.pem"),
        &p("leaf.pem"),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = openssl(&["ec", "-in", &p("key.pem"), "-check", "-noout"]);
    assert!(ok, "{out}");
    let (_, cert_pub) = openssl(&["x509", "-in", &p("leaf.pem"), "-pubkey", "-noout"]);
    let (_, key_pub) = openssl(&["ec", "-in", &p("key.pem"), "-pubout"]);
    assert!(
        key_pub.contains(cert_pub.trim()),
        "the key belongs to the certificate"
    );

    // The same leaf again from the cache.
    let r = get(a, "/v1/agent/connect/ca/leaf/web", &web)
        .await
        .expect(200);
    assert_eq!(r.header("X-Cache"), Some("HIT"));
    assert_eq!(r.json()["SerialNumber"], serial);

    // The metrics say how long the agent's leaf for web has left.
    let m = get(a, "/v1/agent/metrics?format=prometheus", MGMT)
        .await
        .expect(200);
    let line = m
        .body
        .lines()
        .find(|l| l.starts_with("mesh_leaf_certificate_expiry_seconds{service=\"web\"}"))
        .unwrap_or_else(|| panic!("no leaf expiry gauge in:\n{}", m.body));
    let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(secs > 0.0, "{line}");

    // Another service's token may not have web's leaf.
    let r = get(a, "/v1/agent/connect/ca/leaf/web", &socat)
        .await
        .expect(403);
    assert_eq!(
        r.body,
        format!(
            "Permission denied: token with AccessorID '{socat_acc}' lacks permission 'service:write' on \"web\""
        )
    );

    // CA configuration needs operator:write.
    let r = get(a, "/v1/connect/ca/configuration", &web)
        .await
        .expect(403);
    assert!(
        r.body.contains("lacks permission 'operator:write'"),
        "{}",
        r.body
    );
    let cfg = get(a, "/v1/connect/ca/configuration", MGMT)
        .await
        .expect(200)
        .json();
    assert_eq!(cfg["Provider"], "consul");
    assert_eq!(cfg["State"], Value::Null);
    assert_eq!(cfg["Config"]["LeafCertTTL"], "72h0m0s");
    let r = put(
        a,
        "/v1/connect/ca/configuration",
        MGMT,
        r#"{"Provider": "consul", "Config": {"LeafCertTTL": "1h"}}"#,
    )
    .await
    .expect(400);
    assert!(r.body.contains("LeafCertTTL"), "{}", r.body);
    let r = put(
        a,
        "/v1/connect/ca/configuration",
        MGMT,
        r#"{"Provider": 3}"#,
    )
    .await
    .expect(400);
    assert!(r.body.starts_with("Request decode failed: "), "{}", r.body);
    assert_eq!(
        get(a, "/v1/connect/ca/roots", "").await.json()["ActiveRootID"],
        active_id,
        "a refused configuration change rotates nothing"
    );

    // A blocking leaf query at the current index, woken by a root rotation.
    let waiter = tokio::spawn({
        let web = web.clone();
        async move {
            get(
                a,
                &format!("/v1/agent/connect/ca/leaf/web?index={leaf_index}&wait=30s"),
                &web,
            )
            .await
        }
    });
    let roots_index = get(a, "/v1/connect/ca/roots", "").await.index();
    let rotate = put(
        a,
        "/v1/connect/ca/configuration",
        MGMT,
        r#"{"Provider": "consul", "Config": {"LeafCertTTL": "72h", "PrivateKey": "", "RootCert": ""}, "force_without_cross_signing": false}"#,
    )
    .await
    .expect(200);
    assert_eq!(rotate.body, "");
    let r = tokio::time::timeout(REQUEST_TIMEOUT, waiter)
        .await
        .unwrap()
        .unwrap()
        .expect(200);
    assert!(r.index() > leaf_index);
    let new_leaf = r.json();
    assert_ne!(new_leaf["SerialNumber"], serial);
    let roots = get(
        a,
        &format!("/v1/connect/ca/roots?index={roots_index}&wait=10s"),
        "",
    )
    .await
    .json();
    assert_ne!(roots["ActiveRootID"], active_id);
    assert_eq!(roots["Roots"].as_array().unwrap().len(), 2);
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intentions() {
    let api = start().await;
    let a = api.addr;
    let (web_acc, web) = service_token(a, "web").await;
    let (_, socat) = service_token(a, "socat").await;
    let ixn_writer = token_with_rules(
        a,
        "socat-intentions",
        r#"{"service": {"socat": {"policy": "write", "intentions": "write"}}}"#,
    )
    .await
    .1;

    // Default deny: nothing matches.
    let r = get(
        a,
        "/v1/connect/intentions/check?source=web&destination=socat",
        MGMT,
    )
    .await
    .expect(200);
    assert_eq!(r.json(), json!({"Allowed": false}));

    // web's token may not write intentions on socat.
    let exact = "/v1/connect/intentions/exact?source=web&destination=socat";
    let py_body = r#"{"SourceType": "consul", "Action": "allow"}"#;
    let r = put(a, exact, &web, py_body).await.expect(403);
    assert_eq!(
        r.body,
        format!(
            "Permission denied: token with AccessorID '{web_acc}' lacks permission 'intention:write' on \"socat\""
        )
    );
    let r = put(a, exact, &ixn_writer, py_body).await.expect(200);
    assert_eq!(r.json(), json!(true));

    let r = get(a, exact, MGMT).await.expect(200);
    assert!(r.header("X-Consul-Index").is_none());
    let i = r.json();
    assert_eq!(i["SourceName"], "web");
    assert_eq!(i["DestinationName"], "socat");
    assert_eq!(i["SourceNS"], "default");
    assert_eq!(i["Action"], "allow");
    assert_eq!(i["SourceType"], "consul");
    assert_eq!(i["Precedence"], 9);
    assert!(i.get("ID").is_none());
    assert!(i["ModifyIndex"].as_u64().unwrap() >= 1);
    let r = get(
        a,
        "/v1/connect/intentions/check?source=web&destination=socat",
        MGMT,
    )
    .await
    .expect(200);
    assert_eq!(r.json(), json!({"Allowed": true}));

    // With a description (written as one whole intention), and a wildcard one.
    put(
        a,
        "/v1/connect/intentions/exact?source=*&destination=socat",
        MGMT,
        r#"{"Action": "deny", "Description": "everyone else"}"#,
    )
    .await
    .expect(200);
    let r = get(
        a,
        "/v1/connect/intentions/exact?source=*&destination=socat",
        MGMT,
    )
    .await
    .expect(200);
    assert_eq!(r.json()["Description"], "everyone else");
    assert_eq!(r.json()["Precedence"], 8);

    // List (precedence order), match, filtered lists.
    let r = get(a, "/v1/connect/intentions", MGMT).await.expect(200);
    assert!(r.index() >= 1);
    let list = r.json();
    let pairs: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["SourceName"].as_str().unwrap(),
                i["Action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs, [("web", "allow"), ("*", "deny")]);
    let r = get(
        a,
        "/v1/connect/intentions/match?by=destination&name=socat",
        MGMT,
    )
    .await
    .expect(200);
    assert_eq!(r.header("X-Consul-Effective-Consistency"), Some("leader"));
    let m = r.json();
    assert_eq!(m["socat"].as_array().unwrap().len(), 2);
    assert_eq!(m["socat"][0]["SourceName"], "web");
    let m = get(
        a,
        "/v1/connect/intentions/match?by=source&name=web&name=nobody",
        MGMT,
    )
    .await
    .expect(200)
    .json();
    assert_eq!(m["web"].as_array().unwrap().len(), 2);
    assert_eq!(m["nobody"].as_array().unwrap().len(), 1);
    // A token reading intentions on web only sees web's; the wildcard source `*` is read by
    // any intention rule (Consul's "any allowed" for `*`).
    let (_, web_reader) = token_with_rules(
        a,
        "web-reader",
        r#"{"service": {"web": {"policy": "read"}}}"#,
    )
    .await;
    let r = get(a, "/v1/connect/intentions", &web_reader)
        .await
        .expect(200);
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    assert_eq!(r.header("X-Consul-Results-Filtered-By-ACLs"), None);
    let (_, no_reader) = token_with_rules(
        a,
        "no-reader",
        r#"{"node_prefix": {"": {"policy": "read"}}}"#,
    )
    .await;
    let r = get(a, "/v1/connect/intentions", &no_reader)
        .await
        .expect(200);
    assert_eq!(r.body, "[]");
    assert_eq!(r.header("X-Consul-Results-Filtered-By-ACLs"), Some("true"));

    // The agent's authorize: POST only.
    let body = |uri: &str| json!({"Target": "socat", "ClientCertURI": uri}).to_string();
    let td = get(a, "/v1/connect/ca/roots", "").await.json()["TrustDomain"]
        .as_str()
        .unwrap()
        .to_owned();
    let web_uri = format!("spiffe://{td}/ns/default/dc/primary/svc/web");
    let r = req(
        a,
        "POST",
        "/v1/agent/connect/authorize",
        Some(&socat),
        Some(&body(&web_uri)),
    )
    .await
    .expect(200);
    assert_eq!(
        r.json(),
        json!({"Authorized": true,
               "Reason": "Matched L4 intention: default/web => default/socat (Precedence: 9, Action: ALLOW)"})
    );
    let other = format!("spiffe://{td}/ns/default/dc/primary/svc/db");
    let r = req(
        a,
        "POST",
        "/v1/agent/connect/authorize",
        Some(&socat),
        Some(&body(&other)),
    )
    .await
    .expect(200);
    assert_eq!(r.json()["Authorized"], json!(false));
    let r = req(
        a,
        "PUT",
        "/v1/agent/connect/authorize",
        Some(&socat),
        Some(&body(&web_uri)),
    )
    .await
    .expect(405);
    assert_eq!(r.body, "method PUT not allowed");
    assert_eq!(r.header("Allow"), Some("OPTIONS,POST"));
    let r = req(
        a,
        "POST",
        "/v1/agent/connect/authorize",
        Some(&web),
        Some(&body(&web_uri)),
    )
    .await
    .expect(403);
    assert!(
        r.body
            .contains("lacks permission 'service:write' on \"socat\"")
    );
    let r = req(
        a,
        "POST",
        "/v1/agent/connect/authorize",
        Some(&socat),
        Some(r#"{"Target": ""}"#),
    )
    .await
    .expect(400);
    assert_eq!(r.body, "Target service must be specified");
    let r = req(
        a,
        "POST",
        "/v1/agent/connect/authorize",
        Some(&socat),
        Some(&body("http://x")),
    )
    .await
    .expect(400);
    assert_eq!(r.body, "ClientCertURI not a valid Connect identifier");

    // Errors of the exact API.
    let r = get(a, "/v1/connect/intentions/exact?destination=socat", MGMT)
        .await
        .expect(500);
    assert_eq!(r.body, "required query parameter 'source' not set");
    let r = get(
        a,
        "/v1/connect/intentions/exact?source=db&destination=socat",
        MGMT,
    )
    .await
    .expect(404);
    assert_eq!(r.body, "Intention not found");
    let r = put(
        a,
        "/v1/connect/intentions/exact?source=db&destination=socat",
        MGMT,
        r#"{"Action": "allow", "Meta": {"a": "b"}}"#,
    )
    .await
    .expect(500);
    assert_eq!(r.body, "Meta must not be specified");
    let r = put(
        a,
        "/v1/connect/intentions/exact?source=db&destination=socat",
        MGMT,
        "{",
    )
    .await
    .expect(400);
    assert!(r.body.starts_with("Request decode failed: "), "{}", r.body);
    let r = get(a, "/v1/connect/intentions/match?by=sideways&name=x", MGMT)
        .await
        .expect(500);
    assert_eq!(
        r.body,
        "'by' parameter must be one of 'source' or 'destination'"
    );

    // Delete: true, also when absent.
    assert_eq!(delete(a, exact, MGMT).await.expect(200).json(), json!(true));
    assert_eq!(delete(a, exact, MGMT).await.expect(200).json(), json!(true));
    get(a, exact, MGMT).await.expect(404);

    // The legacy ID API.
    let r = req(
        a,
        "POST",
        "/v1/connect/intentions",
        Some(MGMT),
        Some(r#"{"SourceName": "api", "DestinationName": "socat", "Action": "allow", "Meta": {"team": "x"}}"#),
    )
    .await
    .expect(200);
    let id = r.json()["ID"].as_str().unwrap().to_owned();
    let got = get(a, &format!("/v1/connect/intentions/{id}"), MGMT)
        .await
        .expect(200)
        .json();
    assert_eq!(got["ID"], id);
    assert_eq!(got["Meta"], json!({"team": "x"}));
    assert!(got["CreatedAt"].is_string());
    let r = req(
        a,
        "POST",
        "/v1/connect/intentions",
        Some(MGMT),
        Some(r#"{"SourceName": "api", "DestinationName": "socat", "Action": "deny"}"#),
    )
    .await
    .expect(500);
    assert!(
        r.body.starts_with("duplicate intention found: "),
        "{}",
        r.body
    );
    let r = req(a, "POST", "/v1/connect/intentions", Some(MGMT), Some("{x"))
        .await
        .expect(500);
    assert!(
        r.body.starts_with("Failed to decode request body: "),
        "{}",
        r.body
    );
    assert_eq!(
        delete(a, &format!("/v1/connect/intentions/{id}"), MGMT)
            .await
            .expect(200)
            .json(),
        json!(true)
    );
    get(a, &format!("/v1/connect/intentions/{id}"), MGMT)
        .await
        .expect(404);
    api.shutdown().await;
}
