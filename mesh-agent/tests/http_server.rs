//! The server side of the API: wrong paths and methods, the body limit and the time-outs of
//! slow clients, blocking queries (woken by a registration; bounded, then 429), `?dc=`
//! forwarding, HTTPS, curl as a third-party client, and shutdown.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod http_common;

use std::sync::Arc;
use std::time::Duration;

use http_common::*;
use mesh_agent::http::{ApiState, HttpConfig};
use mesh_agent::metrics::Metrics;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SOCAT: &str = r#"{"name": "socat", "port": 8181, "connect": {"sidecar_service": {}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_methods_and_query_errors() {
    let api = start().await;
    let a = api.addr;
    let r = get(a, "/v1/no/such/thing", MGMT).await.expect(404);
    assert_eq!(
        r.body,
        "Invalid URL path: not a recognized HTTP API endpoint\n"
    );
    assert_eq!(r.header("X-Consul-Default-ACL-Policy"), Some("deny"));
    let r = req(
        a,
        "POST",
        "/v1/agent/service/register",
        Some(MGMT),
        Some("{}"),
    )
    .await
    .expect(405);
    assert_eq!(r.body, "method POST not allowed");
    assert_eq!(r.header("Allow"), Some("OPTIONS,PUT"));
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    let r = req(
        a,
        "DELETE",
        "/v1/connect/ca/configuration",
        Some(MGMT),
        None,
    )
    .await
    .expect(405);
    assert_eq!(r.header("Allow"), Some("OPTIONS,GET,PUT"));
    let r = req(a, "OPTIONS", "/v1/acl/policy/x", None, None)
        .await
        .expect(200);
    assert_eq!(r.header("Allow"), Some("OPTIONS,GET,PUT,DELETE"));
    assert_eq!(r.body, "");

    for (path, text) in [
        ("/v1/catalog/services?index=x", "Invalid index"),
        ("/v1/catalog/services?index=1&wait=10", "Invalid wait time"),
        (
            "/v1/catalog/services?ns=team",
            "Invalid query parameter: \"ns\" - Namespaces are a Consul Enterprise feature",
        ),
        (
            "/v1/catalog/services?partition=p",
            "Invalid query parameter: \"partition\" - Partitions are a Consul Enterprise feature",
        ),
        (
            "/v1/catalog/services?stale&consistent",
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ),
        (
            "/v1/catalog/services?filter=Service==web",
            "Failed to create boolean expression evaluator: filter expressions are not supported by mesh",
        ),
    ] {
        let r = get(a, path, MGMT).await.expect(400);
        assert_eq!(r.body, text, "{path}");
    }
    let ns = format!(
        "GET /v1/catalog/services HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Consul-Token: {MGMT}\r\nX-Consul-Namespace: team\r\n\r\n"
    );
    let r = raw(a, ns.as_bytes()).await.expect(400);
    assert_eq!(
        r.body,
        "Invalid header: \"X-Consul-Namespace\" - Namespaces are a Consul Enterprise feature"
    );

    // `?dc=` naming this datacenter is served here; an unknown one is Consul's 500.
    get(a, "/v1/catalog/services?dc=primary", MGMT)
        .await
        .expect(200);
    let r = get(a, "/v1/catalog/services?dc=elsewhere", MGMT)
        .await
        .expect(500);
    assert_eq!(r.body, "No path to datacenter");

    // `?pretty` indents with four spaces and ends with a newline.
    let r = get(a, "/v1/status/peers?pretty", "").await.expect(200);
    assert_eq!(r.body, "[\n    \"127.0.0.1:8300\"\n]\n");
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_disabled() {
    let mut c = mesh::DatacenterConfig::new("primary".parse().unwrap(), "primary".parse().unwrap());
    c.acl.enabled = false;
    let dc = mesh::Datacenter::start_primary(c).await.unwrap();
    let state = ApiState::new(dc.clone(), HttpConfig::default(), Arc::new(Metrics::new()))
        .with_agent_info(agent_info());
    let api = serve_state(dc, state).await;
    let a = api.addr;
    let r = req(a, "GET", "/v1/acl/policies", None, None)
        .await
        .expect(401);
    assert_eq!(r.body, "ACL support disabled");
    assert_eq!(r.header("X-Consul-Default-ACL-Policy"), Some("allow"));
    req(a, "PUT", "/v1/agent/service/register", None, Some(SOCAT))
        .await
        .expect(200);
    let r = req(a, "GET", "/v1/agent/services", None, None)
        .await
        .expect(200);
    assert!(r.json().get("socat-sidecar-proxy").is_some());
    let r = req(
        a,
        "GET",
        "/v1/connect/intentions/check?source=web&destination=socat",
        None,
        None,
    )
    .await
    .expect(200);
    assert_eq!(
        r.json(),
        json!({"Allowed": true}),
        "ACLs off: intentions default to allow"
    );
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_and_slow_clients() {
    let api = start_with(HttpConfig {
        max_body_bytes: 1024,
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        ..HttpConfig::default()
    })
    .await;
    let a = api.addr;

    // Past the limit: 413, announced or not, and nothing written.
    let big = format!(
        r#"{{"Name": "big", "Description": "{}"}}"#,
        "x".repeat(2000)
    );
    let r = put(a, "/v1/acl/policy", MGMT, &big).await.expect(413);
    assert_eq!(r.body, "Request body too large, max size: 1024 bytes");
    let chunked = format!(
        "PUT /v1/acl/policy HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Consul-Token: {MGMT}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    raw(a, chunked.as_bytes()).await.expect(413);
    get(a, "/v1/acl/policy/name/big", MGMT).await.expect(404);
    // Within the limit it works.
    put(a, "/v1/acl/policy", MGMT, r#"{"Name": "small"}"#)
        .await
        .expect(200);

    // A body that stops coming: 408 after the body time-out.
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(
        format!(
            "PUT /v1/acl/policy HTTP/1.1\r\nHost: x\r\nX-Consul-Token: {MGMT}\r\nContent-Length: 100\r\n\r\n{{\"Name\""
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(REQUEST_TIMEOUT, s.read_to_end(&mut buf))
        .await
        .expect("the server answers a stalled body")
        .unwrap();
    assert_eq!(parse_response(&buf).status, 408);

    // Headers that stop coming: the connection is closed.
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(REQUEST_TIMEOUT, s.read_to_end(&mut buf))
        .await
        .expect("the server closes a connection whose headers stall");
    assert!(n.is_err() || !String::from_utf8_lossy(&buf).contains("200 OK"));
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_health_connect_woken_by_registration() {
    let api = start().await;
    let a = api.addr;
    let r = get(a, "/v1/health/connect/socat", MGMT).await.expect(200);
    assert_eq!(r.body, "[]");
    let index = r.index();
    assert!(index >= 1);

    let waiter = tokio::spawn(async move {
        get(
            a,
            &format!("/v1/health/connect/socat?index={index}&wait=60s"),
            MGMT,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "the query blocks until something changes"
    );
    put(a, "/v1/agent/service/register", MGMT, SOCAT)
        .await
        .expect(200);
    let r = tokio::time::timeout(REQUEST_TIMEOUT, waiter)
        .await
        .expect("the registration wakes the query")
        .unwrap()
        .expect(200);
    assert!(r.index() > index, "{} > {index}", r.index());
    let nodes = r.json();
    assert_eq!(nodes[0]["Service"]["Service"], "socat-sidecar-proxy");

    // A wait that runs out answers 200 with the current result and index.
    let now = r.index();
    let r = get(
        a,
        &format!("/v1/health/connect/socat?index={now}&wait=50ms"),
        MGMT,
    )
    .await
    .expect(200);
    assert_eq!(r.index(), now);
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_queries_are_bounded() {
    let api = start_with(HttpConfig {
        max_blocking_queries: 1,
        ..HttpConfig::default()
    })
    .await;
    let a = api.addr;
    let index = get(a, "/v1/catalog/services", MGMT).await.index();
    let hold = move || {
        tokio::spawn(async move {
            get(
                a,
                &format!("/v1/catalog/services?index={index}&wait=60s"),
                MGMT,
            )
            .await
        })
    };
    let mut holder = hold();
    // Once the holder has the only slot, the next blocking query is refused. (Until then
    // the probe may take the slot for its millisecond, and the holder be the one refused:
    // then it starts again.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        if holder.is_finished() {
            assert_eq!(holder.await.unwrap().status, 429);
            holder = hold();
        }
        let r = get(
            a,
            &format!("/v1/catalog/services?index={index}&wait=1ms"),
            MGMT,
        )
        .await;
        if r.status == 429 && !holder.is_finished() {
            break r;
        }
        assert!(matches!(r.status, 200 | 429), "{}", r.body);
        assert!(tokio::time::Instant::now() < deadline, "never refused");
    };
    assert!(refused.body.contains("rate limit"), "{}", refused.body);
    // Non-blocking reads are not limited.
    get(a, "/v1/catalog/services", MGMT).await.expect(200);
    put(a, "/v1/agent/service/register", MGMT, SOCAT)
        .await
        .expect(200);
    let r = tokio::time::timeout(REQUEST_TIMEOUT, holder)
        .await
        .unwrap()
        .unwrap()
        .expect(200);
    assert!(r.json().get("socat").is_some());
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_as_a_client() {
    let api = start().await;
    let url = |p: &str| format!("http://{}{p}", api.addr);
    let token = format!("X-Consul-Token: {MGMT}");
    let r = curl(&[
        "-X",
        "PUT",
        "-H",
        &token,
        "--data-binary",
        SOCAT,
        &url("/v1/agent/service/register"),
    ])
    .expect(200);
    assert_eq!(r.body, "");
    let bearer = format!("Authorization: Bearer {MGMT}");
    let r = curl(&["-H", &bearer, &url("/v1/agent/services")]).expect(200);
    assert_eq!(r.json()["socat"]["Port"], 8181);
    let r = curl(&[&url(&format!("/v1/health/service/socat?token={MGMT}"))]).expect(200);
    assert!(r.index() >= 1);
    assert_eq!(r.json()[0]["Service"]["ID"], "socat");
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        &token,
        &url("/v1/agent/service/register"),
    ])
    .expect(405);
    assert_eq!(r.body, "method POST not allowed");
    let r = curl(&[&url("/v1/acl/policies")]).expect(403);
    assert!(r.body.starts_with("Permission denied: anonymous token"));
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dc_parameter_forwards_to_a_peer() {
    let other_dc = datacenter("other").await;
    let mut other_info = agent_info();
    other_info.server_addr = "127.0.0.2:8300".parse().unwrap();
    let other_state = ApiState::new(
        other_dc.clone(),
        HttpConfig::default(),
        Arc::new(Metrics::new()),
    )
    .with_agent_info(other_info);
    let other = serve_state(other_dc, other_state).await;
    put(other.addr, "/v1/agent/service/register", MGMT, SOCAT)
        .await
        .expect(200);

    let dc = datacenter("primary").await;
    let state = ApiState::new(dc.clone(), HttpConfig::default(), Arc::new(Metrics::new()))
        .with_agent_info(agent_info())
        .with_peer("other".parse().unwrap(), format!("http://{}", other.addr))
        .with_peer("gone".parse().unwrap(), "http://127.0.0.1:1".to_owned());
    let api = serve_state(dc, state).await;
    let a = api.addr;

    let r = get(a, "/v1/status/leader?dc=other", "").await.expect(200);
    assert_eq!(r.json(), json!("127.0.0.2:8300"));
    let r = get(a, "/v1/health/service/socat?dc=other", MGMT)
        .await
        .expect(200);
    assert!(r.index() >= 1);
    assert_eq!(r.json()[0]["Node"]["Datacenter"], "other");
    assert_eq!(get(a, "/v1/health/service/socat", MGMT).await.body, "[]");
    // Writes go there too, with the token.
    put(
        a,
        "/v1/connect/intentions/exact?source=web&destination=socat&dc=other",
        MGMT,
        r#"{"Action": "allow"}"#,
    )
    .await
    .expect(200);
    let r = get(
        other.addr,
        "/v1/connect/intentions/check?source=web&destination=socat",
        MGMT,
    )
    .await
    .expect(200);
    assert_eq!(r.json(), json!({"Allowed": true}));
    let r = get(a, "/v1/acl/policies?dc=other", "").await.expect(403);
    assert!(r.body.starts_with("Permission denied: anonymous token"));
    let dcs = get(a, "/v1/catalog/datacenters", "").await.json();
    assert_eq!(dcs, json!(["primary", "gone", "other"]));
    let r = get(a, "/v1/status/leader?dc=gone", "").await.expect(500);
    assert_eq!(r.body, "Remote DC has no server currently reachable");
    api.shutdown().await;
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_mesh_certificate() {
    let dc = datacenter("primary").await;
    // A server certificate from the mesh CA itself.
    let td = dc.trust_domain().unwrap();
    let id: mesh::core::SpiffeId =
        mesh::core::ServiceId::new(td, "primary".parse().unwrap(), "api".parse().unwrap()).into();
    let leaf_req = mesh::ca::new_leaf_request(&id, &["localhost"]).unwrap();
    let issued = dc
        .connect_ca()
        .sign_leaf(&MGMT.into(), &leaf_req.csr_pem)
        .await
        .unwrap();
    let mut chain = vec![issued.cert.clone()];
    chain.extend(issued.chain.iter().cloned());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_req.key.to_pkcs8_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let state = ApiState::new(dc.clone(), HttpConfig::default(), Arc::new(Metrics::new()))
        .with_agent_info(agent_info());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(mesh_agent::http::serve(
        listener,
        Some(Arc::new(tls)),
        state,
        async move {
            let _ = rx.await;
        },
    ));
    let root = dc.connect_ca().roots().unwrap().roots[0].root_cert.clone();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, root).unwrap();
    let url = format!("https://localhost:{}/v1/status/leader", addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", addr.port());
    let r = tokio::task::spawn_blocking(move || {
        curl(&[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            &url,
        ])
    })
    .await
    .unwrap()
    .expect(200);
    assert_eq!(r.json(), json!("127.0.0.1:8300"));
    // Plain HTTP on the HTTPS port gets no answer.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, s.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("127.0.0.1:8300"));
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_blocking_queries() {
    let api = start_with(HttpConfig {
        shutdown_grace: Duration::from_millis(200),
        ..HttpConfig::default()
    })
    .await;
    let a = api.addr;
    let index = get(a, "/v1/catalog/services", MGMT).await.index();
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(
        format!(
            "GET /v1/catalog/services?index={index}&wait=60s HTTP/1.1\r\nHost: x\r\nX-Consul-Token: {MGMT}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.shutdown().await;
    // The held connection is cut, and nothing listens any more.
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, s.read_to_end(&mut buf))
        .await
        .expect("the connection ends");
    assert!(TcpStream::connect(a).await.is_err());
}
