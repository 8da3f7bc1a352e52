//! Two `mesh agent` servers of one datacenter on a 3-member etcd cluster, as processes: one
//! leads and serves, the other stands by without serving; the leader is killed (SIGKILL) and
//! the standby takes over from the state in etcd (the same CA root, the intention written
//! through the first server), answering `status/leader` with its own address.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

#[path = "../../mesh-replication/tests/etcd_cluster/mod.rs"]
mod etcd_cluster;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

fn storage_hcl(endpoints: &[String], key_file: Option<&Path>) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let key = key_file
        .map(|k| format!("    state_key_file = \"{}\"\n", k.display()))
        .unwrap_or_default();
    format!(
        "storage {{\n  etcd {{\n    endpoints = [{}]\n    prefix = \"mesh/primary\"\n{key}    lease_ttl = \"2s\"\n  }}\n}}\n",
        list.join(", ")
    )
}

fn cli(agent: &Agent, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(args)
        .env("CONSUL_HTTP_ADDR", agent.http.to_string())
        .env("CONSUL_HTTP_TOKEN", MGMT)
        .output()
        .unwrap()
}

fn active_root(agent: &Agent) -> String {
    let (code, body) = http_get(agent.http, "/v1/connect/ca/roots").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["ActiveRootID"].as_str().unwrap().to_owned()
}

#[test]
fn a_standby_agent_takes_over_when_the_leading_agent_is_killed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(etcd_cluster::EtcdCluster::start(3)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The state key, made as an operator makes it.
    let key = dir.path().join("state.key");
    let out = Command::new("openssl")
        .args(["rand", "-hex", "32"])
        .output()
        .unwrap();
    std::fs::write(&key, &out.stdout).unwrap();
    let storage = storage_hcl(&cluster.endpoints(), Some(&key));

    let (http_a, server_a) = (free_port(), free_port());
    let hcl_a = agent_hcl(
        "primary",
        &dir.path().join("a"),
        http_a,
        server_a,
        None,
        None,
    ) + &storage;
    let mut a = start_agent(dir.path(), "a", &hcl_a, http_a, server_a);
    let (http_b, server_b) = (free_port(), free_port());
    let hcl_b = agent_hcl(
        "primary",
        &dir.path().join("b"),
        http_b,
        server_b,
        None,
        None,
    ) + &storage;
    std::fs::write(dir.path().join("b.hcl"), &hcl_b).unwrap();
    let file_b = dir.path().join("b.hcl");
    let mut b = spawn_agent(
        dir.path(),
        "b",
        &["-config-file".as_ref(), file_b.as_os_str()],
        http_b,
        server_b,
    );

    // a leads and serves; b stands by and does not serve.
    let (code, leader) = http_get(a.http, "/v1/status/leader").unwrap();
    assert_eq!(
        (code, leader.trim()),
        (200, format!("\"{}\"", a.server).as_str())
    );
    let out = cli(&a, &["intention", "create", "web", "db"]);
    assert!(out.status.success(), "{out:?}");
    let root = active_root(&a);
    std::thread::sleep(Duration::from_millis(500));
    assert!(b.child.try_wait().unwrap().is_none(), "b keeps standing by");
    assert!(
        http_get(b.http, "/v1/status/leader").is_none(),
        "a standby serves nothing"
    );

    // a is killed; b takes over from the state in etcd.
    a.child.kill().unwrap();
    let _ = a.child.wait();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(60);
    while http_get(b.http, "/v1/status/leader").is_none() {
        assert!(
            b.child.try_wait().unwrap().is_none(),
            "b exited: {:?}",
            log_lines(&b.log)
        );
        assert!(
            Instant::now() < deadline,
            "b never served: {:?}",
            log_lines(&b.log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "b serves {:?} after a was killed (lease 2s)",
        killed.elapsed()
    );
    let (_, leader) = http_get(b.http, "/v1/status/leader").unwrap();
    assert_eq!(leader.trim(), format!("\"{}\"", b.server));
    assert_eq!(
        active_root(&b),
        root,
        "the same CA: loaded, not bootstrapped again"
    );
    let out = cli(&b, &["intention", "get", "web", "db"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("allow"),
        "{out:?}"
    );
    let out = cli(&b, &["intention", "create", "api", "db"]);
    assert!(out.status.success(), "{out:?}");
    let standby_log = log_lines(&b.log).join("\n");
    assert!(standby_log.contains("standing by"), "{standby_log}");
    drop(b);
}

#[test]
fn state_on_etcd_without_a_state_key_does_not_start() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(etcd_cluster::EtcdCluster::start(1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (http, server) = (free_port(), free_port());
    let hcl = agent_hcl("primary", &dir.path().join("a"), http, server, None, None)
        + &storage_hcl(&cluster.endpoints(), None);
    let text = failed_start(dir.path(), "a", &hcl);
    assert!(text.contains("storage.etcd.state_key_file"), "{text}");
}
