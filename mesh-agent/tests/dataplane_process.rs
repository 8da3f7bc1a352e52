//! An application in its own process, with in-app Connect through a `mesh agent` process's
//! HTTP API: a CA root rotation made through the API under traffic fails no handshake, the
//! application rides out its agent being killed, and catches up with a change made while it
//! was away once the agent is back on the same data dir.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod dataplane_common;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dataplane_common::{echo, eventually};
use mesh::Secret;
use mesh::ca::LeafManagerOptions;
use mesh::client::{Body, Client, ClientConfig};
use mesh::connect::Service;
use mesh::core::Upstream;
use mesh::dataplane::{AgentControlPlane, AgentOptions};
use support::MGMT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn api(addr: std::net::SocketAddr) -> Client {
    Client::new(ClientConfig {
        addr: addr.to_string(),
        token: Some(MGMT.into()),
        ..ClientConfig::default()
    })
    .unwrap()
}

async fn put(client: &Client, path: &str, body: serde_json::Value) {
    client.put(path, Some(Body::from(body))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_follows_its_agent_through_rotation_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = support::start_primary(dir.path(), "primary");
    let (http, server) = (agent.http, agent.server);
    let client = api(http);
    let token = Secret::new(MGMT);

    // payments: Connect-native, echoing; web dials it. Both in this process, on the agent.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    put(
        &client,
        "/v1/agent/service/register",
        serde_json::json!({"Name": "payments", "Address": "127.0.0.1", "Port": addr.port(),
            "Connect": {"Native": true}}),
    )
    .await;
    let cp = AgentControlPlane::connect(
        AgentOptions::new([http.to_string()], token.clone()).wait(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let fast = || LeafManagerOptions {
        root_change_jitter: Duration::from_millis(500),
        ..LeafManagerOptions::default()
    };
    let payments = Arc::new(
        Service::with_leaf_options(&cp, &token, "payments".parse().unwrap(), fast())
            .await
            .unwrap(),
    );
    let acceptor = payments.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok((mut tls, _)) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let web = Service::with_leaf_options(&cp, &token, "web".parse().unwrap(), fast())
        .await
        .unwrap();
    let dialer = Arc::new(
        web.dialer(&Upstream::service("payments".parse().unwrap(), 0))
            .unwrap(),
    );
    assert!(!echo(&dialer).await, "default deny before any intention");
    put(
        &client,
        "/v1/connect/intentions/exact?source=web&destination=payments",
        serde_json::json!({"Action": "allow"}),
    )
    .await;
    eventually("allowed", || echo(&dialer)).await;

    // A root rotation through the API, under traffic: no failed handshake.
    let old_root = web.leaf().unwrap().issued.root_id.clone();
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let traffic = {
        let (d, n, f) = (dialer.clone(), done.clone(), failed.clone());
        tokio::spawn(async move {
            loop {
                if !echo(&d).await {
                    f.fetch_add(1, Ordering::Relaxed);
                }
                n.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    put(
        &client,
        "/v1/connect/ca/configuration",
        serde_json::json!({"Provider": "consul", "Config": {}}),
    )
    .await;
    eventually("both services on a leaf of the new root", || async {
        let w = web.leaf().unwrap().issued.root_id.clone();
        let p = payments.leaf().unwrap().issued.root_id.clone();
        w != old_root && w == p
    })
    .await;
    let target = done.load(Ordering::Relaxed) + 20;
    eventually("traffic on the new leaves", || async {
        done.load(Ordering::Relaxed) >= target
    })
    .await;
    traffic.abort();
    let n = done.load(Ordering::Relaxed);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed handshakes out of {n}"
    );

    // The agent dies: the application keeps serving from what it holds.
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    for _ in 0..5 {
        assert!(echo(&dialer).await, "served while the agent is down");
    }
    // Back on the same data dir and ports, with the intention now denying: the application
    // catches up by itself.
    drop(agent);
    let hcl = std::fs::read_to_string(dir.path().join("primary.hcl")).unwrap();
    let _agent = support::start_agent(
        dir.path(),
        "primary-again",
        &hcl,
        http.port(),
        server.port(),
    );
    put(
        &client,
        "/v1/connect/intentions/exact?source=web&destination=payments",
        serde_json::json!({"Action": "deny"}),
    )
    .await;
    eventually("the deny reaches the application", || async {
        !echo(&dialer).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_reaches_its_agent_over_https_with_a_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (http, server, https) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let hcl = support::agent_hcl(
        "primary",
        &dir.path().join("data"),
        http,
        server,
        None,
        None,
    )
    .replace(
        &format!("  server = {server}\n"),
        &format!("  server = {server}\n  https = {https}\n"),
    );
    let _agent = support::start_agent(dir.path(), "primary", &hcl, http, server);
    // The agent's HTTPS certificate chains to the mesh root the primary saved.
    let ca = dir.path().join(support::PRIMARY_CA);
    let token = Secret::new(MGMT);
    let https_addr = format!("https://127.0.0.1:{https}");
    let cp = AgentControlPlane::connect(
        AgentOptions::new([https_addr.clone()], token.clone()).ca_file(&ca),
    )
    .await
    .unwrap();
    let svc = Service::new(&cp, &token, "payments".parse().unwrap())
        .await
        .unwrap();
    assert!(svc.leaf().is_some());
    // Without the CA file the client refuses to start (no system trust store is consulted).
    let refused = AgentControlPlane::connect(AgentOptions::new([https_addr], token)).await;
    assert!(refused.is_err());
}
