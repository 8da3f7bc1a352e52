//! The data plane over an agent's HTTP API: in-app Connect services whose control plane is
//! an [`AgentControlPlane`] reaching a real API server over real sockets, with failover
//! between server addresses, intentions followed by blocking queries, a CA rotation under
//! traffic, an outage the services ride out, and the ACL checks of the data plane's
//! endpoints.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod dataplane_common;
mod http_common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dataplane_common::{echo, eventually};
use http_common::{Api, MGMT, agent_info, get, put, token_with_rules};
use mesh::Secret;
use mesh::ca::LeafManagerOptions;
use mesh::connect::Service;
use mesh::core::ServiceName;
use mesh::core::Upstream;
use mesh::dataplane::{AgentControlPlane, AgentOptions, ControlPlane};
use mesh_agent::http::{ApiState, HttpConfig, serve};
use mesh_agent::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Rules of a service's own token: write on itself, read on everything (to route).
fn service_rules(name: &str) -> String {
    format!(
        "service \"{name}\" {{ policy = \"write\" }}\nservice_prefix \"\" {{ policy = \"read\" }}"
    )
}

/// An address nothing listens on (bound, then released).
async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A service "payments", Connect-native, echoing, through `cp`; returns its address.
async fn payments(
    cp: &Arc<AgentControlPlane>,
    token: &Secret,
    api: SocketAddr,
    secret: &str,
) -> (Arc<Service>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reg = serde_json::json!({
        "Name": "payments", "Address": "127.0.0.1", "Port": addr.port(),
        "Connect": {"Native": true}
    });
    put(api, "/v1/agent/service/register", secret, &reg.to_string())
        .await
        .expect(200);
    let svc = Arc::new(
        Service::with_leaf_options(cp, token, "payments".parse().unwrap(), fast_leaves())
            .await
            .unwrap(),
    );
    let acceptor = svc.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok((mut tls, _peer)) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    let _ = tls.flush().await;
                }
            });
        }
    });
    (svc, addr)
}

fn fast_leaves() -> LeafManagerOptions {
    LeafManagerOptions {
        root_change_jitter: Duration::from_millis(500),
        ..LeafManagerOptions::default()
    }
}

async fn set_intention(api: SocketAddr, action: &str) {
    let body = serde_json::json!({"Action": action}).to_string();
    put(
        api,
        "/v1/connect/intentions/exact?source=web&destination=payments",
        MGMT,
        &body,
    )
    .await
    .expect(200);
}

struct Setup {
    api: Api,
    web_cp: Arc<AgentControlPlane>,
    pay_cp: Arc<AgentControlPlane>,
    web: Service,
    _payments: Arc<Service>,
    dialer: mesh::connect::Dialer,
}

async fn setup() -> Setup {
    let api = http_common::start().await;
    let (_, web_secret) = token_with_rules(api.addr, "web", &service_rules("web")).await;
    let (_, pay_secret) = token_with_rules(api.addr, "payments", &service_rules("payments")).await;
    let web_token = Secret::new(web_secret.clone());
    let pay_token = Secret::new(pay_secret.clone());
    // The first address is dead: every request fails over to the second.
    let servers = [dead_addr().await.to_string(), api.addr.to_string()];
    let web_cp = AgentControlPlane::connect(
        AgentOptions::new(servers.clone(), web_token.clone()).wait(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let pay_cp = AgentControlPlane::connect(
        AgentOptions::new(servers, pay_token.clone()).wait(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(web_cp.current_server(), api.addr.to_string());
    let (pay, _) = payments(&pay_cp, &pay_token, api.addr, &pay_secret).await;
    let web =
        Service::with_leaf_options(&web_cp, &web_token, "web".parse().unwrap(), fast_leaves())
            .await
            .unwrap();
    let dialer = web
        .dialer(&Upstream::service("payments".parse().unwrap(), 0))
        .unwrap();
    Setup {
        api,
        web_cp,
        pay_cp,
        web,
        _payments: pay,
        dialer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_app_connect_follows_intentions_through_the_api() {
    let s = setup().await;
    assert_eq!(s.web_cp.datacenter().as_str(), "primary");
    // Default deny: refused until the intention exists.
    assert!(!echo(&s.dialer).await, "refused before any intention");
    set_intention(s.api.addr, "allow").await;
    eventually("allowed once the intention exists", || echo(&s.dialer)).await;
    set_intention(s.api.addr, "deny").await;
    eventually("refused again once it denies", || async {
        !echo(&s.dialer).await
    })
    .await;
    // The decision is answered from the cache: the same as the server's.
    let web_id = s.web.spiffe_id().clone();
    let src = s
        .pay_cp
        .intentions(&Secret::new(""), &"payments".parse().unwrap())
        .await
        .unwrap();
    assert!(!src.authorize(&web_id).authorized);
    assert!(
        !s.api
            .dc
            .intentions()
            .authorize(&web_id, &"payments".parse().unwrap())
            .authorized
    );
    s.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_under_traffic_fails_no_handshake() {
    let s = setup().await;
    set_intention(s.api.addr, "allow").await;
    eventually("allowed", || echo(&s.dialer)).await;
    let old_root = s.web.leaf().unwrap().issued.root_id.clone();
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let dialer = Arc::new(s.dialer);
    let stop = Arc::new(tokio::sync::Notify::new());
    let traffic = {
        let (d, f, n, stop) = (dialer.clone(), failures.clone(), done.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.notified() => return,
                    ok = echo(&d) => {
                        if !ok { f.fetch_add(1, Ordering::Relaxed); }
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    s.api
        .dc
        .connect_ca()
        .rotate(&Secret::new(MGMT))
        .await
        .unwrap();
    let new_root = s
        .api
        .dc
        .connect_ca()
        .roots()
        .unwrap()
        .active_root_id
        .clone();
    assert_ne!(old_root, new_root);
    let web = &s.web;
    eventually("both services carry a leaf of the new root", || async {
        web.leaf().unwrap().issued.root_id == new_root
            && s._payments.leaf().unwrap().issued.root_id == new_root
    })
    .await;
    // Some traffic on the new leaves too.
    let after = done.load(Ordering::Relaxed) + 20;
    eventually("traffic after the switch", || async {
        done.load(Ordering::Relaxed) >= after
    })
    .await;
    stop.notify_waiters();
    traffic.abort();
    let n = done.load(Ordering::Relaxed);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed handshakes out of {n}"
    );
    assert!(n >= 20);
    s.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_ride_out_a_server_outage_and_catch_up() {
    let s = setup().await;
    set_intention(s.api.addr, "allow").await;
    eventually("allowed", || echo(&s.dialer)).await;
    let addr = s.api.addr;
    let dc = s.api.dc.clone();
    s.api.shutdown().await;
    // No server: routing and decisions come from what the services hold.
    for _ in 0..5 {
        assert!(
            echo(&s.dialer).await,
            "served from the cached view while the server is down"
        );
    }
    // A change made while the API is down reaches the services once it is back.
    dc.intentions()
        .upsert(
            &Secret::new(MGMT),
            mesh::intentions::intention::Intention::new(
                "web",
                "payments",
                mesh::intentions::intention::Action::Deny,
            ),
        )
        .await
        .unwrap();
    let listener = TcpListener::bind(addr).await.unwrap();
    let state = ApiState::new(dc.clone(), HttpConfig::default(), Arc::new(Metrics::new()))
        .with_agent_info(agent_info());
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, None, state, async move {
        let _ = rx.await;
    }));
    eventually("the deny made during the outage is enforced", || async {
        !echo(&s.dialer).await
    })
    .await;
    let _ = tx.send(());
    let _ = server.await;
}

#[tokio::test]
async fn data_plane_endpoints_check_their_token() {
    let api = http_common::start().await;
    let (_, web) =
        token_with_rules(api.addr, "web", "service \"web\" { policy = \"write\" }").await;
    let (_, nobody) =
        token_with_rules(api.addr, "nobody", "node_prefix \"\" { policy = \"read\" }").await;
    let td = api.dc.trust_domain().unwrap();
    let csr = |svc: &str| {
        let id = format!("spiffe://{td}/ns/default/dc/primary/svc/{svc}")
            .parse()
            .unwrap();
        mesh::ca::new_leaf_request(&id, &[]).unwrap().csr_pem
    };
    let body = |svc: &str| serde_json::json!({"CSR": csr(svc)}).to_string();
    // Signing: write on the CSR's service, and the CSR must be for the service named.
    put(api.addr, "/v1/internal/mesh/sign/web", &web, &body("web"))
        .await
        .expect(200);
    put(
        api.addr,
        "/v1/internal/mesh/sign/web",
        &nobody,
        &body("web"),
    )
    .await
    .expect(403);
    put(api.addr, "/v1/internal/mesh/sign/db", &web, &body("db"))
        .await
        .expect(403);
    put(api.addr, "/v1/internal/mesh/sign/web", MGMT, &body("db"))
        .await
        .expect(400);
    put(api.addr, "/v1/internal/mesh/sign/web", &web, "{\"CSR\": 1}")
        .await
        .expect(400);
    put(
        api.addr,
        "/v1/internal/mesh/sign/web",
        &web,
        "{\"CSR\": \"x\", \"More\": 1}",
    )
    .await
    .expect(400);
    // A gateway registration needs write on its name.
    let gw = r#"{"Name": "mesh-gateway", "Lan": "127.0.0.1:1", "Wan": "127.0.0.1:2"}"#;
    put(api.addr, "/v1/internal/mesh/gateway/gw-1", &web, gw)
        .await
        .expect(403);
    put(api.addr, "/v1/internal/mesh/gateway/gw-1", MGMT, gw)
        .await
        .expect(200);
    // Routing is filtered to what the token may read.
    let reg = r#"{"Name": "db", "Port": 5432, "Connect": {"Native": true}}"#;
    put(api.addr, "/v1/agent/service/register", MGMT, reg)
        .await
        .expect(200);
    let full = get(api.addr, "/v1/internal/mesh/routing", MGMT)
        .await
        .expect(200)
        .json();
    assert!(full["Endpoints"]["db"].is_array(), "{full}");
    assert_eq!(full["Gateways"].as_array().unwrap().len(), 1);
    let seen = get(api.addr, "/v1/internal/mesh/routing", &web)
        .await
        .expect(200)
        .json();
    assert!(seen["Endpoints"].get("db").is_none(), "{seen}");
    assert!(seen["Gateways"].as_array().unwrap().is_empty(), "{seen}");
    // Instances: read on their service.
    get(api.addr, "/v1/internal/mesh/instance/db", &web)
        .await
        .expect(403);
    let inst = get(api.addr, "/v1/internal/mesh/instance/db", MGMT)
        .await
        .expect(200)
        .json();
    assert_eq!(inst["Service"]["Name"], "db", "{inst}");
    get(api.addr, "/v1/internal/mesh/instance/nope", MGMT)
        .await
        .expect(404);
    // Moving an instance: write on its service.
    let to = r#"{"Address": "127.0.0.1:5433"}"#;
    put(api.addr, "/v1/internal/mesh/instance/db/address", &web, to)
        .await
        .expect(403);
    put(api.addr, "/v1/internal/mesh/instance/db/address", MGMT, to)
        .await
        .expect(200);
    let _: ServiceName = "db".parse().unwrap();
    api.shutdown().await;
}
