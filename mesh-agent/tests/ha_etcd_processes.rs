//! Two `mesh agent` servers of one datacenter on a 3-member etcd cluster, as processes: one
//! leads and serves, the other stands by without serving; the leader is killed (SIGKILL) and
//! the standby takes over from the state in etcd (the same CA root, the intention written
//! through the first server), answering `status/leader` with its own address. Two sidecar
//! processes given both servers keep relaying through the failover and then follow the new
//! leader: an intention removed there is enforced by them. A secondary datacenter given both
//! primary servers keeps replicating across the failover.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

#[path = "../../mesh-replication/tests/etcd_cluster/mod.rs"]
mod etcd_cluster;
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// "hello" through web's upstream listener: what came back (empty when refused).
fn echo_through(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.write_all(b"hello\n");
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    got
}

/// Waits (bounded) until `echo_through(port)` gives `want`.
fn wait_echo(port: u16, want: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if echo_through(port) == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: never {want:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// socat echoing behind its sidecar, and web's sidecar with socat as its upstream, both
/// sidecar processes given `servers`; the services registered through `agent`. Returns the
/// processes (stopped on drop) and the port of web's upstream listener.
fn data_plane(dir: &Path, agent: &Agent, servers: &str) -> (Vec<Proc>, u16) {
    let (echo, socat_sidecar, web_sidecar, upstream) =
        (free_port(), free_port(), free_port(), free_port());
    let mut procs = vec![Proc(
        Command::new("socat")
            .arg(format!("TCP-LISTEN:{echo},bind=127.0.0.1,fork,reuseaddr"))
            .arg("EXEC:cat")
            .spawn()
            .expect("socat (apt-get install socat)"),
    )];
    let socat_json = dir.join("socat.json");
    std::fs::write(
        &socat_json,
        format!(
            r#"{{"service": {{"name": "socat", "port": {echo},
                "connect": {{"sidecar_service": {{"port": {socat_sidecar}}}}}}}}}"#
        ),
    )
    .unwrap();
    let web_json = dir.join("web.json");
    std::fs::write(
        &web_json,
        format!(
            r#"{{"service": {{"name": "web", "port": 8080, "connect": {{"sidecar_service": {{
                "port": {web_sidecar}, "proxy": {{"upstreams": [{{"destination_name": "socat",
                "local_bind_port": {upstream}}}]}}}}}}}}}}"#
        ),
    )
    .unwrap();
    for f in [&socat_json, &web_json] {
        let out = cli(agent, &["services", "register", f.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
    }
    for name in ["socat", "web"] {
        let log = std::fs::File::create(dir.join(format!("sidecar-{name}.log"))).unwrap();
        procs.push(Proc(
            Command::new(env!("CARGO_BIN_EXE_mesh"))
                .args([
                    "connect",
                    "proxy",
                    "-sidecar-for",
                    name,
                    "-http-addr",
                    servers,
                ])
                .env("CONSUL_HTTP_TOKEN", MGMT)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        ));
    }
    (procs, upstream)
}

/// Two servers of the primary datacenter on `storage`: `a` started and serving (it leads),
/// `b` started without waiting (it stands by).
fn leader_and_standby(dir: &Path, storage: &str) -> (Agent, Agent) {
    let config = |name: &str| {
        let (http, server) = (free_port(), free_port());
        let hcl = agent_hcl("primary", &dir.join(name), http, server, None, None) + storage;
        (hcl, http, server)
    };
    let (hcl_a, http_a, server_a) = config("a");
    let a = start_agent(dir, "a", &hcl_a, http_a, server_a);
    let (hcl_b, http_b, server_b) = config("b");
    let file_b = dir.join("b.hcl");
    std::fs::write(&file_b, &hcl_b).unwrap();
    let b = spawn_agent(
        dir,
        "b",
        &["-config-file".as_ref(), file_b.as_os_str()],
        http_b,
        server_b,
    );
    (a, b)
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

    let (mut a, mut b) = leader_and_standby(dir.path(), &storage);

    // a leads and serves; b stands by and does not serve.
    let (code, leader) = http_get(a.http, "/v1/status/leader").unwrap();
    assert_eq!(
        (code, leader.trim()),
        (200, format!("\"{}\"", a.server).as_str())
    );
    let out = cli(&a, &["intention", "create", "web", "db"]);
    assert!(out.status.success(), "{out:?}");
    let root = active_root(&a);
    // Both servers are peers: the leader and the one standing by (once it registered).
    let mut want = vec![a.server.to_string(), b.server.to_string()];
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, peers) = http_get(a.http, "/v1/status/peers").unwrap();
        let peers: Vec<String> = serde_json::from_str(&peers).unwrap();
        if peers == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "peers {peers:?}, wanted {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // socat echoing behind its sidecar, web's sidecar with socat as its upstream; both
    // sidecars are given both servers.
    let servers = format!("{},{}", a.http, b.http);
    let (_data_plane, upstream) = data_plane(dir.path(), &a, &servers);
    let out = cli(&a, &["intention", "create", "web", "socat"]);
    assert!(out.status.success(), "{out:?}");
    wait_echo(upstream, "hello\n", "web -> socat through both sidecars");
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
    let (_, peers) = http_get(b.http, "/v1/status/peers").unwrap();
    let peers: Vec<String> = serde_json::from_str(&peers).unwrap();
    assert_eq!(
        peers,
        [b.server.to_string()],
        "a's presence went with its lease"
    );
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

    // The sidecars kept relaying, and follow the new leader: without the intention, default
    // deny refuses web again.
    assert_eq!(echo_through(upstream), "hello\n");
    let out = cli(&b, &["intention", "delete", "web", "socat"]);
    assert!(out.status.success(), "{out:?}");
    wait_echo(
        upstream,
        "",
        "web -> socat once the new leader removed the intention",
    );
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

/// Waits (bounded) until `path` on `agent` answers 200 with a body that satisfies `ok`.
fn wait_for(agent: &Agent, path: &str, what: &str, ok: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = http_get(agent.http, path)
            && ok(&body)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}",
            http_get(agent.http, path)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_secondary_keeps_replicating_across_a_failover_of_the_primary() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(etcd_cluster::EtcdCluster::start(3)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("state.key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    let storage = storage_hcl(&cluster.endpoints(), Some(&key));
    let (mut a, b) = leader_and_standby(dir.path(), &storage);

    // The secondary knows both primary servers; it replicates with the management token.
    let (http_s, server_s) = (free_port(), free_port());
    let hcl_s = agent_hcl(
        "secondary",
        &dir.path().join("s"),
        http_s,
        server_s,
        Some(a.server),
        Some(MGMT),
    )
    .replace(
        &format!("retry_join_wan = [\"{}\"]", a.server),
        &format!("retry_join_wan = [\"{}\", \"{}\"]", a.server, b.server),
    );
    let s = start_agent(dir.path(), "s", &hcl_s, http_s, server_s);
    let intentions = format!("/v1/connect/intentions?token={MGMT}");
    let out = cli(&a, &["intention", "create", "web", "db"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(&s, &intentions, "the first intention replicated", |b| {
        b.contains("\"web\"")
    });

    a.child.kill().unwrap();
    let _ = a.child.wait();
    wait_for(&b, "/v1/status/leader", "b leads", |_| true);
    let out = cli(&b, &["intention", "create", "api", "db"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(
        &s,
        &intentions,
        "replication resumed from the new leader",
        |b| b.contains("\"api\""),
    );
    // A write made in the secondary is forwarded to the new leader too.
    let out = cli(&s, &["intention", "create", "ops", "db"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(
        &b,
        &intentions,
        "the secondary's write reached the new leader",
        |b| b.contains("\"ops\""),
    );
}

#[test]
fn without_an_etcd_quorum_writes_fail_the_leader_steps_down_and_the_data_plane_goes_on() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = rt.block_on(etcd_cluster::EtcdCluster::start(3)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("state.key");
    std::fs::write(&key, "a5".repeat(32)).unwrap();
    let storage = storage_hcl(&cluster.endpoints(), Some(&key));
    let (http, server) = (free_port(), free_port());
    let hcl = agent_hcl("primary", &dir.path().join("a"), http, server, None, None) + &storage;
    let mut a = start_agent(dir.path(), "a", &hcl, http, server);
    let (_data_plane, upstream) = data_plane(dir.path(), &a, &a.http.to_string());
    let out = cli(&a, &["intention", "create", "web", "socat"]);
    assert!(out.status.success(), "{out:?}");
    wait_echo(upstream, "hello\n", "web -> socat");

    // Two of three members down: no quorum. A write is refused, saying why; the leader cannot
    // renew its lease and stops; the sidecars keep relaying from what they hold.
    cluster.kill(0);
    cluster.kill(1);
    let out = cli(&a, &["intention", "create", "api", "socat"]);
    assert!(!out.status.success(), "a write without quorum: {out:?}");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("etcd") || said.contains("lead"), "{said}");
    eprintln!("a write without quorum: {}", said.trim());
    let status = wait_exit(&mut a, Duration::from_secs(60)).expect("the deposed leader stops");
    assert!(!status.success());
    let log = log_lines(&a.log).join("\n");
    assert!(log.contains("no longer leads"), "{log}");
    assert_eq!(echo_through(upstream), "hello\n", "the data plane goes on");

    // Quorum back, the agent started again (as a supervisor would): it leads from the state
    // in etcd, and nothing was lost.
    cluster.restart(0).unwrap();
    cluster.restart(1).unwrap();
    rt.block_on(cluster.wait_ready(Duration::from_secs(60)))
        .unwrap();
    drop(a);
    let a = start_agent(dir.path(), "a-again", &hcl, http, server);
    let out = cli(&a, &["intention", "get", "web", "socat"]);
    assert!(out.status.success(), "{out:?}");
    let out = cli(&a, &["intention", "create", "api", "socat"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(echo_through(upstream), "hello\n");
}
