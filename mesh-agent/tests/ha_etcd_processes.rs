//! `mesh agent` servers of one datacenter on a 3-member etcd cluster, as processes. Three
//! servers: one leads, the others stand by and serve every request by forwarding it to the
//! leader; the leader is killed (SIGKILL) under a write load spread over all three, and a
//! standby takes over from the state in etcd (the same single CA root, every acknowledged
//! write), answering `status/leader` with its own address. Two sidecar processes given every
//! server keep relaying through the failover and then follow the new leader. A secondary
//! datacenter given both primary servers keeps replicating across the failover. Without an
//! etcd quorum, writes are refused, reads are served flagged stale, and the data plane goes
//! on; with the quorum back, everything converges.
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
/// `b` started after it (it stands by, forwarding to `a`).
fn leader_and_standby(dir: &Path, storage: &str) -> (Agent, Agent) {
    let mut servers = servers_of_one_datacenter(dir, storage, 2);
    let b = servers.pop().unwrap();
    (servers.pop().unwrap(), b)
}

/// `n` servers of the primary datacenter on `storage`, started one after the other: the
/// first leads, the others stand by.
fn servers_of_one_datacenter(dir: &Path, storage: &str, n: usize) -> Vec<Agent> {
    (0..n)
        .map(|i| {
            let name = format!("server{i}");
            let (http, server) = (free_port(), free_port());
            let hcl = agent_hcl("primary", &dir.join(&name), http, server, None, None) + storage;
            start_agent(dir, &name, &hcl, http, server)
        })
        .collect()
}

/// One HTTP/1.1 request with the management token (see [`http_request`]).
fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Option<(u16, String, String)> {
    http_request(addr, method, path, Some(MGMT), body)
}

/// The server address `agent` says leads (`""` while none does), as it answers.
fn leader_of(agent: &Agent) -> Option<String> {
    match http_get(agent.http, "/v1/status/leader") {
        Some((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

fn active_root(agent: &Agent) -> String {
    let (code, body) = http_get(agent.http, "/v1/connect/ca/roots").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["Roots"].as_array().map(Vec::len),
        Some(1),
        "one root, never a second one bootstrapped: {body}"
    );
    v["ActiveRootID"].as_str().unwrap().to_owned()
}

/// The sources of every intention toward `db`, read through `agent`.
fn sources_to_db(agent: &Agent) -> std::collections::BTreeSet<String> {
    let (code, _, body) = request(agent.http, "GET", "/v1/connect/intentions", "").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    v.iter()
        .filter(|i| i["DestinationName"] == "db")
        .filter_map(|i| i["SourceName"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn every_server_serves_and_a_standby_takes_over_under_a_write_load_when_the_leader_is_killed() {
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

    let mut servers = servers_of_one_datacenter(dir.path(), &storage, 3);

    // The first leads; every server answers, the standbys by forwarding to it.
    let leader = servers[0].server.to_string();
    for s in &servers {
        assert_eq!(leader_of(s).as_deref(), Some(leader.as_str()));
    }
    let out = cli(&servers[1], &["intention", "create", "web", "db"]);
    assert!(out.status.success(), "a write through a standby: {out:?}");
    // A blocking query through a standby is held by the leader and answers with the index
    // of the write that ended it.
    let (_, head, _) = request(servers[1].http, "GET", "/v1/connect/intentions", "").unwrap();
    let index_of = |head: &str| -> u64 {
        head.lines()
            .find_map(|l| l.strip_prefix("x-consul-index: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let seen = index_of(&head);
    let blocked = {
        let addr = servers[2].http;
        std::thread::spawn(move || {
            request(
                addr,
                "GET",
                &format!("/v1/connect/intentions?index={seen}&wait=60s"),
                "",
            )
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = cli(&servers[0], &["intention", "create", "api", "db"]);
    assert!(out.status.success(), "{out:?}");
    let (code, head, body) = blocked.join().unwrap().unwrap();
    assert_eq!(code, 200);
    assert!(index_of(&head) > seen, "{head}");
    assert!(body.contains("\"api\""), "{body}");
    // A request a standby already forwarded is not forwarded again (no loop while leadership
    // changes hands).
    let mut s = TcpStream::connect(servers[1].http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nX-Mesh-Forwarded-By: elsewhere\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(answer.ends_with("No cluster leader"), "{answer}");
    let root = active_root(&servers[2]);
    // Every server is a peer, leading or standing by.
    let mut want: Vec<String> = servers.iter().map(|s| s.server.to_string()).collect();
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, peers) = http_get(servers[1].http, "/v1/status/peers").unwrap();
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
    // sidecars are given every server.
    let all: Vec<String> = servers.iter().map(|s| s.http.to_string()).collect();
    let (_data_plane, upstream) = data_plane(dir.path(), &servers[0], &all.join(","));
    let out = cli(&servers[2], &["intention", "create", "web", "socat"]);
    assert!(out.status.success(), "{out:?}");
    wait_echo(upstream, "hello\n", "web -> socat through both sidecars");

    // A write load spread over the three servers: each write goes to the next server, and a
    // failed one is counted and moves on. What was acknowledged is kept.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    // Failed writes, by the server they went to.
    let failed = std::sync::Arc::new(std::sync::Mutex::new([0u32; 3]));
    let load = {
        let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
        let addrs: Vec<_> = servers.iter().map(|s| s.http).collect();
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let source = format!("load-{i}");
                let path = format!("/v1/connect/intentions/exact?source={source}&destination=db");
                let addr = addrs[i % addrs.len()];
                match request(addr, "PUT", &path, r#"{"Action":"allow"}"#) {
                    Some((200, _, _)) => acked.lock().unwrap().push(source),
                    _ => {
                        failed.lock().unwrap()[i % addrs.len()] += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                i += 1;
            }
        })
    };
    let acked_len = || acked.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_len() < 30 {
        assert!(
            Instant::now() < deadline,
            "the write load does not go through"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The leader is killed under the load; a standby takes over from the state in etcd.
    let mut first = servers.remove(0);
    first.child.kill().unwrap();
    let _ = first.child.wait();
    let killed = Instant::now();
    let before = acked_len();
    let deadline = killed + Duration::from_secs(60);
    let new_leader = loop {
        let led: Vec<usize> = (0..servers.len())
            .filter(|&i| leader_of(&servers[i]) == Some(servers[i].server.to_string()))
            .collect();
        if let [i] = led[..] {
            break i;
        }
        for s in &mut servers {
            assert!(
                s.child.try_wait().unwrap().is_none(),
                "a server exited: {:?}",
                log_lines(&s.log)
            );
        }
        assert!(Instant::now() < deadline, "no server leads");
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = killed.elapsed();
    // The load goes on through both remaining servers.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_len() < before + 30 {
        assert!(Instant::now() < deadline, "the load did not resume");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    let failed = *failed.lock().unwrap();
    eprintln!(
        "a new leader serves {took:?} after the leader was killed (lease 2s); {} writes \
         acknowledged; failed: {} sent to the killed server, {} to the others while no \
         server led",
        acked_len(),
        failed[0],
        failed[1] + failed[2]
    );

    // Nothing acknowledged is lost, whichever server is asked; the same CA, one root.
    let acked: std::collections::BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    for s in &servers {
        let have = sources_to_db(s);
        let lost: Vec<&String> = acked.difference(&have).collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
        assert!(have.contains("web"));
        assert_eq!(
            active_root(s),
            root,
            "the same CA: loaded, not bootstrapped again"
        );
        assert_eq!(
            leader_of(s),
            Some(servers[new_leader].server.to_string()),
            "every server names the new leader"
        );
    }
    let (_, peers) = http_get(servers[0].http, "/v1/status/peers").unwrap();
    let mut peers: Vec<String> = serde_json::from_str(&peers).unwrap();
    peers.sort();
    let mut want: Vec<String> = servers.iter().map(|s| s.server.to_string()).collect();
    want.sort();
    assert_eq!(
        peers, want,
        "the killed server's presence went with its lease"
    );
    let standby_log = log_lines(&servers[new_leader].log).join("\n");
    assert!(standby_log.contains("standing by"), "{standby_log}");

    // The sidecars kept relaying, and follow the new leader: without the intention, default
    // deny refuses web again.
    assert_eq!(echo_through(upstream), "hello\n");
    let other = 1 - new_leader;
    let out = cli(&servers[other], &["intention", "delete", "web", "socat"]);
    assert!(out.status.success(), "{out:?}");
    wait_echo(
        upstream,
        "",
        "web -> socat once the intention was removed through a standby",
    );

    // A standby told to stop (SIGTERM) stops cleanly, although it never led.
    let pid = servers[other].child.id().to_string();
    let out = Command::new("kill").args(["-TERM", &pid]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = wait_exit(&mut servers[other], Duration::from_secs(30)).expect("it stops");
    assert!(
        status.success(),
        "{status:?}: {:?}",
        log_lines(&servers[other].log)
    );
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

#[test]
fn over_tls_to_etcd_with_a_client_certificate_the_agent_serves_and_without_one_it_does_not_start() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt
        .block_on(etcd_cluster::EtcdCluster::start_tls(1))
        .unwrap();
    let files = cluster.tls_files().unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("state.key");
    std::fs::write(&key, "c3".repeat(32)).unwrap();
    let tls = format!(
        "    ca_file = \"{}\"\n    cert_file = \"{}\"\n    key_file = \"{}\"\n",
        files.ca.display(),
        files.client_cert.display(),
        files.client_key.display()
    );
    let storage = storage_hcl(&cluster.endpoints(), Some(&key));
    let with_tls = storage.replacen("    lease_ttl", &format!("{tls}    lease_ttl"), 1);
    let (http, server) = (free_port(), free_port());
    let hcl = agent_hcl("primary", &dir.path().join("a"), http, server, None, None) + &with_tls;
    let a = start_agent(dir.path(), "a", &hcl, http, server);
    let out = cli(&a, &["intention", "create", "web", "db"]);
    assert!(out.status.success(), "{out:?}");
    // What etcd holds, read back over TLS: the intention, and no private key in the clear.
    let keys = cluster.dump("mesh/primary/").unwrap();
    assert!(keys.iter().any(|(k, _)| k.contains("/t/intentions/")));
    assert!(
        !keys
            .iter()
            .any(|(_, v)| String::from_utf8_lossy(v).contains("PRIVATE KEY"))
    );
    drop(a);

    // Without the client certificate the cluster refuses the server, which says so.
    let no_client = storage.replacen(
        "    lease_ttl",
        &format!("    ca_file = \"{}\"\n    lease_ttl", files.ca.display()),
        1,
    );
    let (http, server) = (free_port(), free_port());
    let hcl = agent_hcl("primary", &dir.path().join("b"), http, server, None, None) + &no_client;
    let text = failed_start(dir.path(), "b", &hcl);
    assert!(text.contains("etcd"), "{text}");
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
    let b_addr = format!("\"{}\"", b.server);
    wait_for(&b, "/v1/status/leader", "b leads", |body| {
        body.trim() == b_addr
    });
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
fn without_an_etcd_quorum_writes_fail_reads_are_served_stale_and_the_data_plane_goes_on() {
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

    // One of three members down: nothing visible.
    cluster.kill(0);
    let out = cli(&a, &["intention", "create", "one-down", "socat"]);
    assert!(out.status.success(), "{out:?}");
    assert!(leader_of(&a) == Some(a.server.to_string()));

    // Two of three members down: no quorum. A write is refused, saying why; the leader cannot
    // renew its lease and steps down, but goes on answering reads, flagged stale; the
    // sidecars keep relaying from what they hold.
    cluster.kill(1);
    let out = cli(&a, &["intention", "create", "api", "socat"]);
    assert!(!out.status.success(), "a write without quorum: {out:?}");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("etcd") || said.contains("leader"), "{said}");
    eprintln!("a write without quorum: {}", said.trim());
    let deadline = Instant::now() + Duration::from_secs(60);
    let (head, body) = loop {
        match request(a.http, "GET", "/v1/connect/intentions", "") {
            Some((200, head, body)) if head.contains("x-consul-knownleader: false") => {
                break (head, body);
            }
            other => assert!(
                Instant::now() < deadline,
                "never a stale read: {other:?} {:?}",
                log_lines(&a.log)
            ),
        }
        assert!(
            a.child.try_wait().unwrap().is_none(),
            "{:?}",
            log_lines(&a.log)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        body.contains("\"socat\""),
        "the stale read holds the state: {body}"
    );
    assert!(head.contains("x-consul-lastcontact:"), "{head}");
    assert_eq!(leader_of(&a).as_deref(), Some(""), "no leader known");
    let (code, _, said) = request(
        a.http,
        "PUT",
        "/v1/connect/intentions/exact?source=ops&destination=socat",
        r#"{"Action":"allow"}"#,
    )
    .unwrap();
    assert_eq!((code, said.trim()), (500, "No cluster leader"));
    let log = log_lines(&a.log).join("\n");
    assert!(log.contains("no longer leads"), "{log}");
    assert_eq!(echo_through(upstream), "hello\n", "the data plane goes on");

    // Quorum back: the deposed server stops, to stand by; started again (as a supervisor
    // would), it leads from the state in etcd, and nothing was lost.
    cluster.restart(0).unwrap();
    cluster.restart(1).unwrap();
    rt.block_on(cluster.wait_ready(Duration::from_secs(60)))
        .unwrap();
    let status = wait_exit(&mut a, Duration::from_secs(60)).expect("the deposed server stops");
    assert!(!status.success());
    let log = log_lines(&a.log).join("\n");
    assert!(log.contains("etcd answers again"), "{log}");
    drop(a);
    let a = start_agent(dir.path(), "a-again", &hcl, http, server);
    for source in ["web", "one-down"] {
        let out = cli(&a, &["intention", "get", source, "socat"]);
        assert!(out.status.success(), "{out:?}");
    }
    let out = cli(&a, &["intention", "get", "ops", "socat"]);
    assert!(
        !out.status.success(),
        "the refused write was not applied: {out:?}"
    );
    let out = cli(&a, &["intention", "create", "api", "socat"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(echo_through(upstream), "hello\n");
}

/// The authority key identifier of the leaf `agent` issues for `web`: which intermediate
/// signed it, as `openssl` reads it.
fn leaf_issuer_key(dir: &Path, agent: &Agent) -> String {
    let (code, _, body) = request(agent.http, "GET", "/v1/agent/connect/ca/leaf/web", "").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let pem = dir.join("leaf.pem");
    std::fs::write(&pem, v["CertPEM"].as_str().unwrap()).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "authorityKeyIdentifier", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let key = text.lines().last().unwrap_or_default().trim().to_owned();
    assert!(!key.is_empty(), "{text}");
    key
}

#[test]
fn a_secondary_datacenter_on_etcd_fails_over_and_resumes_replicating_with_the_same_intermediate() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(etcd_cluster::EtcdCluster::start(1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("state.key");
    std::fs::write(&key, "e7".repeat(32)).unwrap();
    let primary = start_primary(dir.path(), "p");

    // Two servers of the secondary, sharing its state in etcd (its own prefix).
    let storage =
        storage_hcl(&cluster.endpoints(), Some(&key)).replace("mesh/primary", "mesh/secondary");
    let secondary = |name: &str| {
        let (http, server) = (free_port(), free_port());
        let hcl = agent_hcl(
            "secondary",
            &dir.path().join(name),
            http,
            server,
            Some(primary.server),
            Some(MGMT),
        ) + &storage;
        start_agent(dir.path(), name, &hcl, http, server)
    };
    let mut s1 = secondary("s1");
    let s2 = secondary("s2");
    assert_eq!(leader_of(&s2), Some(s1.server.to_string()));

    let intentions = format!("/v1/connect/intentions?token={MGMT}");
    let out = cli(&primary, &["intention", "create", "web", "db"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(
        &s2,
        &intentions,
        "replicated, read through the standby",
        |b| b.contains("\"web\""),
    );
    let issuer = leaf_issuer_key(dir.path(), &s1);

    // The secondary's leader is killed; its standby takes over from what etcd holds.
    s1.child.kill().unwrap();
    let _ = s1.child.wait();
    let s2_addr = format!("\"{}\"", s2.server);
    wait_for(&s2, "/v1/status/leader", "s2 leads", |body| {
        body.trim() == s2_addr
    });
    // The same intermediate: loaded from etcd, not signed again by the primary.
    assert_eq!(leaf_issuer_key(dir.path(), &s2), issuer);
    let log = log_lines(&s2.log).join("\n");
    assert!(log.contains("standing by"), "{log}");
    // Replication resumes: a write on the primary reaches the new leader, and a write made
    // through it is forwarded to the primary.
    let out = cli(&primary, &["intention", "create", "api", "db"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(
        &s2,
        &intentions,
        "replication resumed on the new leader",
        |b| b.contains("\"api\""),
    );
    let out = cli(&s2, &["intention", "create", "ops", "db"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(
        &primary,
        &intentions,
        "the secondary's write reached the primary",
        |b| b.contains("\"ops\""),
    );
}

#[test]
fn a_standby_passes_the_leaders_refusals_on_and_cuts_clients_that_never_finish_a_request() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(etcd_cluster::EtcdCluster::start(1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("state.key");
    std::fs::write(&key, "d4".repeat(32)).unwrap();
    let storage = storage_hcl(&cluster.endpoints(), Some(&key));
    let (leader, standby) = leader_and_standby(dir.path(), &storage);
    assert_eq!(leader_of(&standby), Some(leader.server.to_string()));

    // A write without a token, and one with a token nobody issued: the leader refuses both,
    // and the standby returns the refusal as it came.
    let put = |token: Option<&str>| {
        let mut s = TcpStream::connect(standby.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let token = token
            .map(|t| format!("X-Consul-Token: {t}\r\n"))
            .unwrap_or_default();
        let body = r#"{"Action":"allow"}"#;
        write!(
            s,
            "PUT /v1/connect/intentions/exact?source=x&destination=db HTTP/1.1\r\nHost: a\r\n\
             {token}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    let anonymous = put(None);
    assert!(anonymous.starts_with("HTTP/1.1 403"), "{anonymous}");
    assert!(anonymous.contains("Permission denied"), "{anonymous}");
    let unknown = put(Some("00000000-0000-4000-8000-00000000dead"));
    assert!(unknown.starts_with("HTTP/1.1 403"), "{unknown}");
    assert!(unknown.ends_with("ACL not found"), "{unknown}");
    let out = cli(&leader, &["intention", "get", "x", "db"]);
    assert!(!out.status.success(), "nothing was written: {out:?}");

    // A length past the limit, with no body behind it: the leader's 413 comes back at once,
    // and the standby holds no body meanwhile.
    let mut s = TcpStream::connect(standby.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "PUT /v1/config HTTP/1.1\r\nHost: a\r\nX-Consul-Token: {MGMT}\r\n\
         Content-Length: 1073741824\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");

    // Headers begun and never finished: the standby closes the connection (its header
    // time-out); the bound here only keeps a failure from hanging the test.
    let mut slow = TcpStream::connect(standby.http).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    slow.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let ended = slow.read_to_end(&mut rest);
    assert!(
        ended.is_ok(),
        "the connection was not closed within 60 s: {ended:?}"
    );
    // And the standby still serves.
    assert_eq!(leader_of(&standby), Some(leader.server.to_string()));
}
