//! The data plane in and out of process, side by side in one run, on loopback:
//!
//! 1. A 64-byte echo on an open connection, and a new connection (connect, the sidecars'
//!    mTLS handshake, one echo, close), over
//!    - a direct TCP connection to the echo server (the baseline);
//!    - in-process sidecars: a `Datacenter` in this process, web's and echo's `Sidecar`s on
//!      it (ACLs default deny, an intention allows web to echo);
//!    - out-of-process sidecars: a `mesh agent` process, the services registered over HTTP,
//!      one `mesh connect proxy -sidecar-for ID` process per sidecar, in one datacenter;
//!    - the same through mesh gateways: web's sidecars in a second agent's datacenter
//!      (`secondary`, replicating from the first), echo's in the first; `proxy-defaults` with
//!      `MeshGateway` `local` (central config on) sends web sidecar -> secondary's gateway ->
//!      primary's gateway -> echo sidecar, and one upstream with its own mode `remote` goes
//!      web sidecar -> primary's gateway -> echo sidecar. Each gateway is a
//!      `mesh connect gateway` process. (Inside one datacenter a sidecar dials the other
//!      sidecar directly whatever the mode: mesh gateways carry traffic between
//!      datacenters.) Before measuring, the bench checks in `/proc/net/tcp` that each path
//!      holds connections to exactly the gateways it should.
//! 2. One intention decision (`IntentionSource::authorize`) with 100 intentions on the
//!    destination, from the in-process `Datacenter` and from an `AgentControlPlane`'s cache
//!    (the agent's intentions followed by a blocking query: no network on the decision).
//!
//! It ends with a table of medians from one more pass, the paths taking turns one operation
//! each, as ratios to direct TCP (and the client cache's decision to the in-process one).
//! Every process it starts is killed when the bench ends, fails or panics.
//!
//! `cargo bench -p mesh-agent --bench dataplane` (about 3 s per figure; `-- --test` runs each
//! figure once).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that fails should stop loudly

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mesh::core::{ServiceName, SpiffeId};
use mesh::dataplane::{AgentControlPlane, AgentOptions, ControlPlane, IntentionSource};
use mesh::intentions::acl::DefaultPolicy;
use mesh::intentions::intention::Action;
use mesh::{Datacenter, DatacenterConfig, Secret, Sidecar, SidecarOptions, TokenSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// The initial management token of both setups.
const MGMT: &str = "5d1e7c2a-9b3f-4a8e-b6d0-2f4c8a1e3b57";
/// The echoed message.
const MSG: usize = 64;
/// Intentions on the destination `echo`: web's allow and 99 others' deny.
const INTENTIONS: usize = 100;
/// The longest wait for anything to become ready.
const READY: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Processes

/// A `mesh` child process, its output in a log file. Killed on drop; on a panic its log's
/// tail is printed.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesh"));
        cmd.args(args)
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("CONSUL_HTTP_TOKEN")
            .env_remove("CONSUL_HTTP_TOKEN_FILE")
            .env_remove("CONSUL_CACERT")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// Panics with the log if the process has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited with {status}:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let exited = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            let state = match exited {
                Some(status) => format!("had already exited: {status}"),
                None => "was running".to_owned(),
            };
            eprintln!("===== {} ({state}; last lines) =====\n{tail}", self.name);
        }
    }
}

/// Every process started, killed in reverse order of start on drop.
#[derive(Default)]
struct Procs(Vec<Proc>);

impl Procs {
    fn start(&mut self, dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) {
        self.0.push(Proc::spawn(dir, name, args, env));
    }

    fn assert_running(&mut self) {
        for p in &mut self.0 {
            p.assert_running();
        }
    }

    /// Polls `ready` every 50 ms until it holds, failing if a process exits or `READY` passes.
    fn wait(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + READY;
        loop {
            if ready() {
                return;
            }
            self.assert_running();
            assert!(Instant::now() < deadline, "not within {READY:?}: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        while let Some(p) = self.0.pop() {
            drop(p);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Plain blocking HTTP and TCP helpers

/// Distinct free loopback ports (bound together, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    assert_eq!(ports.iter().collect::<BTreeSet<_>>().len(), n);
    ports
}

/// One HTTP/1.1 request with `X-Consul-Token`; the status and body, `None` if nothing answers.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nX-Consul-Token: {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A request that must answer 200; its body as JSON (`null` when empty or not JSON).
fn ok(addr: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> serde_json::Value {
    match http(addr, method, path, token, body) {
        Some((200, b)) => serde_json::from_str(&b).unwrap_or(serde_json::Value::Null),
        other => panic!("{method} {path} on {addr}: {other:?}"),
    }
}

/// Whether a 64-byte echo through a new connection to `addr` comes back (within 5 s).
fn echoes(addr: SocketAddr) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let msg = [9u8; MSG];
    let mut back = [0u8; MSG];
    s.write_all(&msg).is_ok() && s.read_exact(&mut back).is_ok() && back == msg
}

/// Established TCP connections (client ends) to loopback `port`, from `/proc/net/tcp`.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[3] == "01"
                && f[2]
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
        .count()
}

// ---------------------------------------------------------------------------------------
// The out-of-process mesh: two agents, four sidecars, two gateways

/// An agent's configuration.
fn agent_hcl(dc: &str, http: u16, server: u16, extra: &str) -> String {
    format!(
        r#"datacenter = "{dc}"
primary_datacenter = "primary"
node_name = "{dc}-server-1"
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
ports {{
  http = {http}
  server = {server}
}}
acl {{
  enabled = true
  default_policy = "deny"
  enable_token_replication = true
  tokens {{
{extra}  }}
}}
connect {{
  enabled = true
}}
enable_central_service_config = true
"#
    )
}

struct OutOfProcess {
    /// The primary agent's HTTP API.
    primary: SocketAddr,
    /// echo's token (service identity `echo`).
    echo_token: String,
    /// web's upstream listener next to its sidecar, in the primary (same datacenter).
    sidecars: SocketAddr,
    /// web's upstream in the secondary with mode `remote`: through the primary's gateway.
    one_gateway: SocketAddr,
    /// web's upstream in the secondary with mode `local` (proxy-defaults): both gateways.
    two_gateways: SocketAddr,
    /// Gateway ports: primary LAN, primary WAN, secondary LAN, secondary WAN.
    gateway_ports: [u16; 4],
    procs: Procs,
}

fn service_token(api: SocketAddr, name: &str) -> String {
    let body = serde_json::json!({
        "Description": format!("{name} service token"),
        "ServiceIdentities": [{"ServiceName": name}],
    });
    let t = ok(api, "PUT", "/v1/acl/token", MGMT, &body.to_string());
    t["SecretID"].as_str().unwrap().to_owned()
}

fn register(api: SocketAddr, def: serde_json::Value) {
    ok(
        api,
        "PUT",
        "/v1/agent/service/register",
        MGMT,
        &def.to_string(),
    );
}

fn start_out_of_process(dir: &Path, echo_port: u16) -> OutOfProcess {
    let p = free_ports(15);
    let (p_http, p_server, s_http, s_server) = (p[0], p[1], p[2], p[3]);
    let (echo_sc, web_sc, web2_sc, web3_sc) = (p[4], p[5], p[6], p[7]);
    let (up_direct, up_local, up_remote) = (p[8], p[9], p[10]);
    let gateway_ports = [p[11], p[12], p[13], p[14]];
    let primary = SocketAddr::from(([127, 0, 0, 1], p_http));
    let secondary = SocketAddr::from(([127, 0, 0, 1], s_http));
    let mut procs = Procs::default();

    // --- The primary's agent, and its CA.
    let conf = dir.join("primary.hcl");
    let mgmt = format!("    initial_management = \"{MGMT}\"\n");
    std::fs::write(&conf, agent_hcl("primary", p_http, p_server, &mgmt)).unwrap();
    procs.start(
        dir,
        "agent-primary",
        &["agent", "-config-file", conf.to_str().unwrap()],
        &[],
    );
    procs.wait("the primary's agent serves its CA roots", || {
        matches!(
            http(primary, "GET", "/v1/agent/connect/ca/roots", MGMT, ""),
            Some((200, _))
        )
    });

    // --- The replication token, then the secondary's agent replicating with it.
    let rules =
        r#"{"acl": "write", "operator": "write", "service_prefix": {"": {"policy": "read"}}}"#;
    let body = serde_json::json!({"Name": "replication", "Rules": rules});
    ok(primary, "PUT", "/v1/acl/policy", MGMT, &body.to_string());
    let body =
        serde_json::json!({"Description": "replication", "Policies": [{"Name": "replication"}]});
    let t = ok(primary, "PUT", "/v1/acl/token", MGMT, &body.to_string());
    let replication = t["SecretID"].as_str().unwrap().to_owned();
    let conf = dir.join("secondary.hcl");
    let mut hcl = agent_hcl(
        "secondary",
        s_http,
        s_server,
        &format!("    replication = \"{replication}\"\n"),
    );
    hcl.push_str(&format!("retry_join_wan = [\"127.0.0.1:{p_server}\"]\n"));
    // The secondary verifies the primary's server port against the mesh root.
    let root = match http(primary, "GET", "/v1/connect/ca/roots?pem=true", MGMT, "") {
        Some((200, pem)) if pem.contains("BEGIN CERTIFICATE") => pem,
        other => panic!("the primary's root as PEM: {other:?}"),
    };
    let ca_file = dir.join("primary-ca.pem");
    std::fs::write(&ca_file, root).unwrap();
    hcl.push_str(&format!(
        "tls {{\n  internal_rpc {{\n    ca_file = \"{}\"\n  }}\n}}\n",
        ca_file.display()
    ));
    std::fs::write(&conf, hcl).unwrap();
    procs.start(
        dir,
        "agent-secondary",
        &["agent", "-config-file", conf.to_str().unwrap()],
        &[],
    );
    procs.wait(
        "the secondary's agent answers with the replicated management token and has its CA",
        || {
            matches!(
                http(secondary, "GET", "/v1/acl/token/self", MGMT, ""),
                Some((200, _))
            ) && matches!(
                http(secondary, "GET", "/v1/agent/connect/ca/roots", MGMT, ""),
                Some((200, _))
            )
        },
    );

    // --- Tokens, proxy-defaults, intentions: written in the primary.
    let echo_token = service_token(primary, "echo");
    let web_token = service_token(primary, "web");
    procs.wait("web's token replicated to the secondary", || {
        matches!(
            http(secondary, "GET", "/v1/acl/token/self", &web_token, ""),
            Some((200, _))
        )
    });
    let defaults = serde_json::json!({
        "Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "local"}
    });
    ok(primary, "PUT", "/v1/config", MGMT, &defaults.to_string());
    let allow = serde_json::json!({"Action": "allow"}).to_string();
    let deny = serde_json::json!({"Action": "deny"}).to_string();
    ok(
        primary,
        "PUT",
        "/v1/connect/intentions/exact?source=web&destination=echo",
        MGMT,
        &allow,
    );
    for i in 1..INTENTIONS {
        ok(
            primary,
            "PUT",
            &format!("/v1/connect/intentions/exact?source=svc-{i}&destination=echo"),
            MGMT,
            &deny,
        );
    }

    // --- Registrations: echo and web in the primary, two web instances in the secondary.
    register(
        primary,
        serde_json::json!({
            "name": "echo", "address": "127.0.0.1", "port": echo_port,
            "connect": {"sidecar_service": {"port": echo_sc}}
        }),
    );
    register(
        primary,
        serde_json::json!({
            "name": "web", "address": "127.0.0.1", "port": 8080,
            "connect": {"sidecar_service": {"port": web_sc, "proxy": {"upstreams": [
                {"destination_name": "echo", "local_bind_port": up_direct}
            ]}}}
        }),
    );
    register(
        secondary,
        serde_json::json!({
            "name": "web", "address": "127.0.0.1", "port": 8080,
            "connect": {"sidecar_service": {"port": web2_sc, "proxy": {"upstreams": [
                {"destination_name": "echo", "datacenter": "primary", "local_bind_port": up_local}
            ]}}}
        }),
    );
    register(
        secondary,
        serde_json::json!({
            "id": "web-remote", "name": "web", "address": "127.0.0.1", "port": 8080,
            "connect": {"sidecar_service": {"port": web3_sc, "proxy": {"upstreams": [
                {"destination_name": "echo", "datacenter": "primary",
                 "local_bind_port": up_remote, "mesh_gateway": {"mode": "remote"}}
            ]}}}
        }),
    );

    // --- One gateway per datacenter, then the sidecars.
    let [p_lan, p_wan, s_lan, s_wan] = gateway_ports;
    for (dc, api, lan, wan) in [
        ("primary", primary, p_lan, p_wan),
        ("secondary", secondary, s_lan, s_wan),
    ] {
        let id = format!("gateway-{dc}");
        let (lan, wan) = (format!("127.0.0.1:{lan}"), format!("127.0.0.1:{wan}"));
        let api = api.to_string();
        procs.start(
            dir,
            &id,
            &[
                "connect",
                "gateway",
                "-register",
                "-service-name",
                "mesh-gateway",
                "-proxy-id",
                &id,
                "-address",
                &lan,
                "-wan-address",
                &wan,
            ],
            &[("CONSUL_HTTP_ADDR", &api), ("CONSUL_HTTP_TOKEN", MGMT)],
        );
    }
    // echo's sidecar and the gateways listen before web's sidecars dial them: a sidecar
    // holds off an endpoint that refused a connect for 5 s, even its only one.
    let (p_api, s_api) = (primary.to_string(), secondary.to_string());
    let sidecar = |procs: &mut Procs, name: &str, id: &str, api: &str, token: &str| {
        procs.start(
            dir,
            name,
            &["connect", "proxy", "-sidecar-for", id],
            &[("CONSUL_HTTP_ADDR", api), ("CONSUL_HTTP_TOKEN", token)],
        );
    };
    sidecar(&mut procs, "sidecar-echo", "echo", &p_api, &echo_token);
    for port in [echo_sc, p_lan, p_wan, s_lan, s_wan] {
        procs.wait(&format!("a listener on port {port}"), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }
    sidecar(&mut procs, "sidecar-web-primary", "web", &p_api, &web_token);
    sidecar(
        &mut procs,
        "sidecar-web-secondary",
        "web",
        &s_api,
        &web_token,
    );
    sidecar(
        &mut procs,
        "sidecar-web-remote",
        "web-remote",
        &s_api,
        &web_token,
    );
    let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
    for (what, port) in [
        ("echo through the sidecars", up_direct),
        ("echo through one gateway", up_remote),
        ("echo through two gateways", up_local),
    ] {
        procs.wait(what, || echoes(at(port)));
    }
    OutOfProcess {
        primary,
        echo_token,
        sidecars: at(up_direct),
        one_gateway: at(up_remote),
        two_gateways: at(up_local),
        gateway_ports,
        procs,
    }
}

// ---------------------------------------------------------------------------------------
// The in-process mesh

struct InProcess {
    dc: Datacenter,
    upstream: SocketAddr,
    _sidecars: (Sidecar, Sidecar),
}

async fn start_in_process(echo_port: u16) -> InProcess {
    let mut config = DatacenterConfig::new("primary".parse().unwrap(), "primary".parse().unwrap());
    config.acl.enabled = true;
    config.acl.default_policy = DefaultPolicy::Deny;
    config.acl.tokens.initial_management = Some(MGMT.into());
    let dc = Datacenter::start_primary(config).await.unwrap();
    let mgmt = Secret::new(MGMT);
    let token = |name: &str| TokenSpec {
        description: format!("{name} service token"),
        service_identities: vec![name.to_owned()],
        ..TokenSpec::default()
    };
    let echo_token = Secret::new(
        dc.acl()
            .token_create(&mgmt, token("echo"))
            .await
            .unwrap()
            .secret_id,
    );
    let web_token = Secret::new(
        dc.acl()
            .token_create(&mgmt, token("web"))
            .await
            .unwrap()
            .secret_id,
    );
    let echo_target = "echo".parse().unwrap();
    dc.intentions()
        .create(&mgmt, &"web".parse().unwrap(), &echo_target, Action::Allow)
        .await
        .unwrap();
    for i in 1..INTENTIONS {
        dc.intentions()
            .create(
                &mgmt,
                &format!("svc-{i}").parse().unwrap(),
                &echo_target,
                Action::Deny,
            )
            .await
            .unwrap();
    }
    let upstream_port = free_ports(1)[0];
    dc.catalog()
        .register_json(
            &echo_token,
            &serde_json::json!({
                "name": "echo", "port": echo_port, "connect": {"sidecar_service": {}}
            })
            .to_string(),
        )
        .await
        .unwrap();
    dc.catalog()
        .register_json(
            &web_token,
            &serde_json::json!({
                "name": "web", "port": 8080,
                "connect": {"sidecar_service": {"proxy": {"upstreams": [
                    {"destination_name": "echo", "local_bind_port": upstream_port}
                ]}}}
            })
            .to_string(),
        )
        .await
        .unwrap();
    let any = SidecarOptions::default().public_bind("127.0.0.1:0".parse().unwrap());
    let echo = Sidecar::start(&dc, &echo_token, "echo", any.clone())
        .await
        .unwrap();
    let web = Sidecar::start(&dc, &web_token, "web", any).await.unwrap();
    let upstream = web.upstreams()[0].1;
    InProcess {
        dc,
        upstream,
        _sidecars: (echo, web),
    }
}

// ---------------------------------------------------------------------------------------
// The measured operations

async fn echo_server(listener: TcpListener) {
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

async fn open(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

async fn ping(s: &mut TcpStream, buf: &mut [u8; MSG]) {
    s.write_all(&buf[..]).await.expect("write");
    s.read_exact(&mut buf[..]).await.expect("read");
}

async fn connect_and_ping(addr: SocketAddr) {
    let mut s = open(addr).await;
    ping(&mut s, &mut [7u8; MSG]).await;
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The time of one decision: the median over batches of 10,000.
fn decision_time(src: &dyn IntentionSource, client: &SpiffeId, batches: usize) -> Duration {
    const N: u32 = 10_000;
    let v = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..N {
                std::hint::black_box(src.authorize(std::hint::black_box(client)));
            }
            t.elapsed() / N
        })
        .collect();
    median(v)
}

fn web_id(trust_domain: impl std::fmt::Display) -> SpiffeId {
    format!("spiffe://{trust_domain}/ns/default/dc/primary/svc/web")
        .parse()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let quick = std::env::args().any(|a| a == "--test");
    // The servers of this process (the echo server, the in-process datacenter and sidecars,
    // the agent client) on a multi-thread runtime; the measuring client on a current-thread
    // runtime of the main thread, which waits for its sockets itself.
    let rt = Runtime::new().expect("runtime");
    let cli = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let dir = tempfile::tempdir().unwrap();

    // Direct: the echo server every path ends at.
    let echo_listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let direct = echo_listener.local_addr().unwrap();
    rt.spawn(echo_server(echo_listener));

    let started = Instant::now();
    let mut oop = start_out_of_process(dir.path(), direct.port());
    let inproc = rt.block_on(start_in_process(direct.port()));
    oop.procs.wait("echo through the in-process sidecars", || {
        echoes(inproc.upstream)
    });
    println!(
        "set-up (2 agents, 2 gateways, 4 sidecar processes, in-process datacenter): {:.1?}",
        started.elapsed()
    );

    // The open connections, one per path, each checked to use the gateways it should.
    let [p_lan, p_wan, s_lan, s_wan] = oop.gateway_ports;
    let gateway_conns = |what: &str, want: [usize; 4]| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = oop.gateway_ports.map(established_to);
            if now == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: connections to the gateways' ports {p_lan}/{p_wan}/{s_lan}/{s_wan} \
                 (primary LAN/WAN, secondary LAN/WAN) are {now:?}, not {want:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut d = cli.block_on(open(direct));
    let mut m_in = cli.block_on(open(inproc.upstream));
    let mut m_sc = cli.block_on(open(oop.sidecars));
    let mut buf = [7u8; MSG];
    cli.block_on(ping(&mut m_sc, &mut buf));
    gateway_conns("sidecars in one datacenter", [0, 0, 0, 0]);
    let mut m_g1 = cli.block_on(open(oop.one_gateway));
    cli.block_on(ping(&mut m_g1, &mut buf));
    gateway_conns("+ the path through the primary's gateway", [0, 1, 0, 0]);
    let mut m_g2 = cli.block_on(open(oop.two_gateways));
    cli.block_on(ping(&mut m_g2, &mut buf));
    gateway_conns("+ the path through both gateways", [0, 2, 1, 0]);
    println!(
        "paths checked: no gateway in one datacenter; mode remote: the primary's gateway; mode local: both"
    );

    // The decision sources: the in-process datacenter's, and a client cache of the agent's.
    let echo: ServiceName = "echo".parse().unwrap();
    let in_src = rt
        .block_on(ControlPlane::intentions(
            &inproc.dc,
            &Secret::new(MGMT),
            &echo,
        ))
        .unwrap();
    let in_client = web_id(inproc.dc.trust_domain().unwrap());
    let (agent_cp, agent_src, agent_client) = rt.block_on(async {
        let token = Secret::new(oop.echo_token.clone());
        let cp = AgentControlPlane::connect(AgentOptions::new([oop.primary.to_string()], token))
            .await
            .unwrap();
        let src = cp
            .intentions(&Secret::new(oop.echo_token.clone()), &echo)
            .await
            .unwrap();
        let td = cp.roots().await.unwrap().borrow().trust_domain().unwrap();
        (cp, src, web_id(td))
    });
    // Both hold the 100 intentions: web allowed by its own, svc-99 denied by its own.
    let other =
        |id: &SpiffeId| -> SpiffeId { id.to_string().replace("/web", "/svc-99").parse().unwrap() };
    for (a, b) in [
        (
            in_src.authorize(&in_client),
            agent_src.authorize(&agent_client),
        ),
        (
            in_src.authorize(&other(&in_client)),
            agent_src.authorize(&other(&agent_client)),
        ),
    ] {
        assert_eq!(a, b, "the same decision and reason in and out of process");
    }
    assert!(in_src.authorize(&in_client).authorized);
    assert!(!in_src.authorize(&other(&in_client)).authorized);

    let mut g = c.benchmark_group("dataplane_echo_rtt_64B");
    g.bench_function("direct_tcp", |b| {
        b.iter(|| cli.block_on(ping(&mut d, &mut buf)))
    });
    g.bench_function("in_process_sidecars", |b| {
        b.iter(|| cli.block_on(ping(&mut m_in, &mut buf)))
    });
    g.bench_function("agent_sidecar_processes", |b| {
        b.iter(|| cli.block_on(ping(&mut m_sc, &mut buf)))
    });
    g.bench_function("agent_sidecars_one_gateway", |b| {
        b.iter(|| cli.block_on(ping(&mut m_g1, &mut buf)))
    });
    g.bench_function("agent_sidecars_two_gateways", |b| {
        b.iter(|| cli.block_on(ping(&mut m_g2, &mut buf)))
    });
    g.finish();

    let paths = [
        ("direct_tcp", direct),
        ("in_process_sidecars", inproc.upstream),
        ("agent_sidecar_processes", oop.sidecars),
        ("agent_sidecars_one_gateway", oop.one_gateway),
        ("agent_sidecars_two_gateways", oop.two_gateways),
    ];
    let mut g = c.benchmark_group("dataplane_new_connection_mtls_echo");
    g.sample_size(20);
    for (name, addr) in paths {
        g.bench_function(name, |b| b.iter(|| cli.block_on(connect_and_ping(addr))));
    }
    g.finish();

    let mut g = c.benchmark_group("dataplane_intention_decision_100");
    g.bench_function("in_process_datacenter", |b| {
        b.iter(|| in_src.authorize(std::hint::black_box(&in_client)))
    });
    g.bench_function("agent_client_cache", |b| {
        b.iter(|| agent_src.authorize(std::hint::black_box(&agent_client)))
    });
    g.finish();

    // The same figures side by side, from one more pass in this run: per figure, the paths
    // take turns, one operation each, so that a change in the machine's load falls on all.
    let n = if quick { 5 } else { 300 };
    let timed = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    let mut rtt_samples: [Vec<Duration>; 5] = Default::default();
    let mut conn_samples: [Vec<Duration>; 5] = Default::default();
    for _ in 0..n {
        let streams = [&mut d, &mut m_in, &mut m_sc, &mut m_g1, &mut m_g2];
        for (i, s) in streams.into_iter().enumerate() {
            rtt_samples[i].push(timed(&mut || cli.block_on(ping(s, &mut buf))));
        }
    }
    for _ in 0..n {
        for (i, (_, addr)) in paths.iter().enumerate() {
            conn_samples[i].push(timed(&mut || cli.block_on(connect_and_ping(*addr))));
        }
    }
    let rtt = rtt_samples.map(median);
    let conn = conn_samples.map(median);
    let batches = if quick { 3 } else { 31 };
    let dec_in = decision_time(in_src.as_ref(), &in_client, batches);
    let dec_agent = decision_time(agent_src.as_ref(), &agent_client, batches);
    let ratio = |x: Duration, base: Duration| x.as_secs_f64() / base.as_secs_f64();
    let rows = [
        "direct TCP",
        "in-process sidecars",
        "sidecar processes (mesh agent)",
        "  + 1 gateway process (remote)",
        "  + 2 gateway processes (local)",
    ];
    println!(
        "\nmedian of {n} in this run             echo 64 B  vs direct   new conn + echo  vs direct"
    );
    for (i, row) in rows.iter().enumerate() {
        println!(
            "{row:<34} {:>10.1?}  {:>7.2}x  {:>15.1?}  {:>7.2}x",
            rtt[i],
            ratio(rtt[i], rtt[0]),
            conn[i],
            ratio(conn[i], conn[0])
        );
    }
    println!(
        "intention decision ({INTENTIONS} intentions): in-process {dec_in:.1?}, agent client cache \
         {dec_agent:.1?} ({:.2}x)",
        ratio(dec_agent, dec_in)
    );
    drop((d, m_in, m_sc, m_g1, m_g2));
    drop((agent_src, agent_cp));
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
