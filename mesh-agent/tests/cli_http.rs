//! The `mesh` binary, run as a subprocess the way an operator runs it, against a real HTTP
//! API server (`mesh_agent::http::serve`) in front of a real in-process primary datacenter
//! with ACLs on and default deny: the guide's commands, exit codes, errors, the
//! environment variables, and HTTPS with a CA file.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;

use mesh::intentions::acl::DefaultPolicy;
use mesh::{Datacenter, DatacenterConfig};
use mesh_agent::http::{ApiState, HttpConfig, serve};
use mesh_agent::metrics::Metrics;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The initial management token of the test datacenter.
const MGMT: &str = "5b7e3f0a-2c4d-4e8f-9a1b-3c5d7e9f1a2b";
/// A well-formed secret no token has.
const UNKNOWN: &str = "0b0b0b0b-1111-4222-8333-444444444444";

/// The guide's files, as the guide names them.
const GUIDE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/guide");

/// A primary datacenter and its HTTP API (and an HTTPS API whose certificate, signed by the
/// mesh CA, names `localhost`), on a thread of their own; stopped on drop.
struct Server {
    http: SocketAddr,
    https: SocketAddr,
    roots_pem: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut config =
                    DatacenterConfig::new("primary".parse().unwrap(), "primary".parse().unwrap());
                config.acl.enabled = true;
                config.acl.default_policy = DefaultPolicy::Deny;
                config.acl.tokens.initial_management = Some(MGMT.into());
                let dc = Datacenter::start_primary(config).await.unwrap();
                let roots_pem = dc.connect_ca().roots().unwrap().roots_pem();
                let tls = https_config(&dc).await;
                let state =
                    ApiState::new(dc.clone(), HttpConfig::default(), Arc::new(Metrics::new()));
                let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
                let mut addrs = Vec::new();
                for tls in [None, Some(tls)] {
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    addrs.push(listener.local_addr().unwrap());
                    let mut stop = shutdown_rx.clone();
                    let state = state.clone();
                    tokio::spawn(async move {
                        let shutdown = async move {
                            let _ = stop.wait_for(|s| *s).await;
                        };
                        serve(listener, tls, state, shutdown).await.unwrap();
                    });
                }
                ready_tx.send((addrs[0], addrs[1], roots_pem)).unwrap();
                let _ = stop_rx.await;
                shutdown_tx.send_replace(true);
                drop(dc);
            });
        });
        let (http, https, roots_pem) = ready_rx.recv().unwrap();
        Self {
            http,
            https,
            roots_pem,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn addr(&self) -> String {
        self.http.to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A server certificate from the mesh CA for `localhost` (a service leaf with an extra DNS
/// name), and its key.
async fn https_config(dc: &Datacenter) -> Arc<rustls::ServerConfig> {
    let td = dc.trust_domain().unwrap();
    let id: mesh::core::SpiffeId = format!("spiffe://{td}/ns/default/dc/primary/svc/mesh-http")
        .parse()
        .unwrap();
    let req = mesh::ca::new_leaf_request(&id, &["localhost"]).unwrap();
    let leaf = dc
        .connect_ca()
        .sign_leaf(&MGMT.into(), &req.csr_pem)
        .await
        .unwrap();
    let mut chain = vec![leaf.cert.clone()];
    chain.extend(leaf.chain.iter().cloned());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(req.key.to_pkcs8_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// What one run of `mesh` did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `mesh args…` in `dir` with only `env` of the CONSUL_* variables (and RUST_LOG) set.
fn mesh_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesh"));
    cmd.args(args).current_dir(dir);
    for var in [
        "CONSUL_HTTP_ADDR",
        "CONSUL_HTTP_TOKEN",
        "CONSUL_HTTP_TOKEN_FILE",
        "CONSUL_CACERT",
        "CONSUL_HTTP_SSL",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A directory holding the guide's files (mesh-gateway-policy.json, proxy-defaults.json) and
/// the guide's socat.json with a real token.
fn guide_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["mesh-gateway-policy.json", "proxy-defaults.json"] {
        std::fs::copy(PathBuf::from(GUIDE_DIR).join(f), dir.path().join(f)).unwrap();
    }
    let socat = format!(
        "{{\n\"service\": {{\n\"name\": \"socat\",\n\"port\": 8181,\n\"token\": \"{MGMT}\",\n\"connect\": {{\"sidecar_service\": {{}} }}\n}}\n}}\n"
    );
    std::fs::write(dir.path().join("socat.json"), socat).unwrap();
    dir
}

/// `mesh` against `server` with `-http-addr` and the management token as flags.
fn mesh(server: &Server, dir: &Path, args: &[&str]) -> Run {
    let addr = format!("-http-addr={}", server.addr());
    let token = format!("-token={MGMT}");
    let mut all: Vec<&str> = args.to_vec();
    all.push(&addr);
    all.push(&token);
    mesh_in(dir, &all, &[])
}

fn ok(run: &Run) -> &str {
    assert_eq!(run.code, 0, "{run:#?}");
    &run.stdout
}

/// The value of a `Key:   value` line.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
}

#[test]
fn the_guides_commands_through_the_binary() {
    let server = Server::start();
    let dir = guide_dir();
    let dir = dir.path();

    // $ consul acl policy create -name mesh-gateway -rules @mesh-gateway-policy.json
    let run = mesh(
        &server,
        dir,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "mesh-gateway",
            "-rules",
            "@mesh-gateway-policy.json",
        ],
    );
    let out = ok(&run);
    assert_eq!(field(out, "Name"), Some("mesh-gateway"), "{out}");
    assert_eq!(field(out, "ID").map(str::len), Some(36), "{out}");
    assert!(
        out.contains("\"node_prefix\""),
        "the rules as written: {out}"
    );

    // $ consul acl token create -description "mesh-gateway primary datacenter token" -policy-name mesh-gateway
    let run = mesh(
        &server,
        dir,
        &[
            "acl",
            "token",
            "create",
            "-description",
            "mesh-gateway primary datacenter token",
            "-policy-name",
            "mesh-gateway",
        ],
    );
    let out = ok(&run);
    assert_eq!(
        field(out, "Description"),
        Some("mesh-gateway primary datacenter token")
    );
    assert_eq!(field(out, "Local"), Some("false"));
    assert!(field(out, "Create Time").is_some(), "{out}");
    assert!(out.contains("Policies:\n"), "{out}");
    assert!(out.contains(" - mesh-gateway\n"), "{out}");
    let secret = field(out, "SecretID").unwrap().to_owned();
    let accessor = field(out, "AccessorID").unwrap().to_owned();
    assert_eq!(secret.len(), 36, "{out}");
    // The secret works: it reads itself back.
    let run = mesh_in(
        dir,
        &[
            "acl",
            "token",
            "read",
            "-self",
            &format!("-http-addr={}", server.addr()),
            "-token",
            &secret,
        ],
        &[],
    );
    assert_eq!(field(ok(&run), "AccessorID"), Some(accessor.as_str()));

    // $ consul config write proxy-defaults.json
    let run = mesh(&server, dir, &["config", "write", "proxy-defaults.json"]);
    assert_eq!(
        ok(&run).trim(),
        "Config entry written: proxy-defaults/global"
    );
    let run = mesh(
        &server,
        dir,
        &[
            "config",
            "read",
            "-kind",
            "proxy-defaults",
            "-name",
            "global",
        ],
    );
    let out = ok(&run);
    assert!(
        out.contains("\"Kind\": \"proxy-defaults\"") && out.contains("MeshGateway"),
        "{out}"
    );

    // The guide's socat.json (as `consul services register` reads a service file).
    let run = mesh(&server, dir, &["services", "register", "socat.json"]);
    assert_eq!(ok(&run).trim(), "Registered service: socat");

    // Default deny: web may not reach socat until an intention says so.
    let run = mesh(&server, dir, &["intention", "check", "web", "socat"]);
    assert_eq!((run.code, run.stdout.trim()), (2, "Denied"), "{run:#?}");

    // $ consul intention create web socat
    let run = mesh(&server, dir, &["intention", "create", "web", "socat"]);
    assert_eq!(ok(&run).trim(), "Created: web => socat (allow)");
    let run = mesh(&server, dir, &["intention", "check", "web", "socat"]);
    assert_eq!((run.code, run.stdout.trim()), (0, "Allowed"), "{run:#?}");
    // A second create is refused without -replace, accepted with it.
    let run = mesh(&server, dir, &["intention", "create", "web", "socat"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("already exists"), "{run:#?}");
    let run = mesh(
        &server,
        dir,
        &["intention", "create", "-deny", "-replace", "web", "socat"],
    );
    assert_eq!(ok(&run).trim(), "Created: web => socat (deny)");
    let run = mesh(&server, dir, &["intention", "check", "web", "socat"]);
    assert_eq!(run.code, 2, "{run:#?}");

    // The CA's roots.
    let run = mesh(&server, dir, &["ca", "roots"]);
    let out = ok(&run);
    assert!(
        field(out, "Trust Domain").is_some_and(|td| td.ends_with(".consul")),
        "{out}"
    );
    assert_eq!(field(out, "Active"), Some("true"), "{out}");
    let run = mesh(&server, dir, &["ca", "roots", "-pem"]);
    assert!(ok(&run).contains("-----BEGIN CERTIFICATE-----"), "{run:#?}");
}

#[test]
fn exit_codes_and_errors() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let addr = format!("-http-addr={}", server.addr());

    // A token the server does not know: 1, and the server's 403 text on stderr.
    let run = mesh_in(
        dir,
        &["acl", "policy", "list", &addr, &format!("-token={UNKNOWN}")],
        &[],
    );
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(
        run.stderr
            .starts_with("Error listing policies: GET /v1/acl/policies"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("403"), "{run:#?}");
    assert!(run.stderr.contains("ACL not found"), "{run:#?}");
    assert!(
        !run.stderr.contains(UNKNOWN),
        "the secret stays out of errors"
    );

    // No token at all under default deny: the anonymous token lacks permission.
    let run = mesh_in(dir, &["acl", "policy", "list", &addr], &[]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("Permission denied"), "{run:#?}");

    // Unknown commands, usage errors, help.
    for args in [
        &["bogus"][..],
        &["acl", "policy", "create"],
        &["intention", "check", "web"],
        &["acl", "policy", "read", "-id", "x", "-name", "y"],
    ] {
        let run = mesh_in(dir, args, &[]);
        assert_eq!(run.code, 1, "{args:?}: {run:#?}");
        assert!(!run.stderr.is_empty(), "{args:?}: {run:#?}");
    }
    for args in [
        &["--help"][..],
        &["-help"],
        &["acl", "token", "create", "-help"],
        &["intention", "check", "-h"],
    ] {
        let run = mesh_in(dir, args, &[]);
        assert_eq!(run.code, 0, "{args:?}: {run:#?}");
        assert!(run.stdout.contains("Usage: mesh"), "{args:?}: {run:#?}");
    }

    // Nothing listening: 1, naming the address.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let run = mesh_in(dir, &["members", &format!("-http-addr={closed_addr}")], &[]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains(&format!("connecting to {closed_addr}")),
        "{run:#?}"
    );

    // A missing rules file.
    let run = mesh_in(
        dir,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "x",
            "-rules",
            "@nope.hcl",
            &addr,
        ],
        &[],
    );
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr
            .starts_with("Error reading rules from nope.hcl: "),
        "{run:#?}"
    );
}

#[test]
fn the_environment_instead_of_flags() {
    let server = Server::start();
    let dir = guide_dir();
    let dir = dir.path();
    let addr = server.addr();
    let env = [
        ("CONSUL_HTTP_ADDR", addr.as_str()),
        ("CONSUL_HTTP_TOKEN", MGMT),
    ];

    let run = mesh_in(
        dir,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "mesh-gateway",
            "-rules",
            "@mesh-gateway-policy.json",
        ],
        &env,
    );
    assert_eq!(field(ok(&run), "Name"), Some("mesh-gateway"));
    let run = mesh_in(dir, &["acl", "policy", "list"], &env);
    let out = ok(&run);
    assert!(out.contains("mesh-gateway:\n"), "{out}");
    assert!(out.contains("global-management:\n"), "{out}");

    // A flag wins over the variable: a wrong token flag fails although the variable is good.
    let run = mesh_in(dir, &["acl", "policy", "list", "-token", UNKNOWN], &env);
    assert_eq!(run.code, 1, "{run:#?}");

    // CONSUL_HTTP_TOKEN_FILE.
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{MGMT}\n")).unwrap();
    let run = mesh_in(
        dir,
        &["acl", "token", "list"],
        &[
            ("CONSUL_HTTP_ADDR", addr.as_str()),
            ("CONSUL_HTTP_TOKEN_FILE", token_file.to_str().unwrap()),
        ],
    );
    assert!(ok(&run).contains("AccessorID:"), "{run:#?}");
    // -token-file.
    let run = mesh_in(
        dir,
        &[
            "acl",
            "token",
            "list",
            "-token-file",
            token_file.to_str().unwrap(),
        ],
        &[("CONSUL_HTTP_ADDR", addr.as_str())],
    );
    assert!(ok(&run).contains("AccessorID:"), "{run:#?}");
}

#[test]
fn https_with_a_ca_file() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ca = dir.join("roots.pem");
    std::fs::write(&ca, &server.roots_pem).unwrap();
    let https = format!("https://localhost:{}", server.https.port());

    let run = mesh_in(
        dir,
        &[
            "ca",
            "roots",
            "-http-addr",
            &https,
            "-ca-file",
            ca.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(field(ok(&run), "Active"), Some("true"), "{run:#?}");

    // The same through CONSUL_HTTP_ADDR and CONSUL_CACERT.
    let run = mesh_in(
        dir,
        &["ca", "roots"],
        &[
            ("CONSUL_HTTP_ADDR", https.as_str()),
            ("CONSUL_CACERT", ca.to_str().unwrap()),
        ],
    );
    ok(&run);

    // No CA file: refused before connecting.
    let run = mesh_in(dir, &["ca", "roots", "-http-addr", &https], &[]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("no CA file"), "{run:#?}");

    // A name the certificate does not carry: the handshake fails.
    let by_ip = format!("https://127.0.0.1:{}", server.https.port());
    let run = mesh_in(
        dir,
        &[
            "ca",
            "roots",
            "-http-addr",
            &by_ip,
            "-ca-file",
            ca.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("TLS handshake"), "{run:#?}");
}

#[test]
fn the_other_commands() {
    let server = Server::start();
    let dir = guide_dir();
    let dir = dir.path();

    // Policies: read by name and by ID prefix, update, delete.
    let run = mesh(
        &server,
        dir,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "p1",
            "-rules",
            "operator = \"read\"",
        ],
    );
    let id = field(ok(&run), "ID").unwrap().to_owned();
    let run = mesh(&server, dir, &["acl", "policy", "read", "-name", "p1"]);
    assert_eq!(field(ok(&run), "ID"), Some(id.as_str()));
    let run = mesh(&server, dir, &["acl", "policy", "read", "-id", &id[..8]]);
    assert_eq!(field(ok(&run), "Name"), Some("p1"));
    let run = mesh(
        &server,
        dir,
        &[
            "acl",
            "policy",
            "update",
            "-id",
            &id,
            "-description",
            "now described",
        ],
    );
    let out = ok(&run);
    assert_eq!(field(out, "Description"), Some("now described"));
    assert!(out.contains("operator = \"read\""), "rules kept: {out}");
    let run = mesh(
        &server,
        dir,
        &["acl", "policy", "read", "-id", &id, "-format=json"],
    );
    let json: serde_json::Value = serde_json::from_str(ok(&run)).unwrap();
    assert_eq!(json["Description"], "now described");

    // Roles and tokens linking them.
    let run = mesh(
        &server,
        dir,
        &["acl", "role", "create", "-name", "r1", "-policy-name", "p1"],
    );
    let out = ok(&run);
    assert!(out.contains(" - p1\n"), "{out}");
    let run = mesh(&server, dir, &["acl", "role", "list"]);
    assert!(ok(&run).contains("r1:\n"), "{run:#?}");
    let run = mesh(
        &server,
        dir,
        &[
            "acl",
            "token",
            "create",
            "-description",
            "t1",
            "-role-name",
            "r1",
            "-service-identity",
            "web",
        ],
    );
    let out = ok(&run);
    let accessor = field(out, "AccessorID").unwrap().to_owned();
    assert!(out.contains("Roles:\n"), "{out}");
    assert!(out.contains("   web (Datacenters: all)\n"), "{out}");
    let run = mesh(
        &server,
        dir,
        &[
            "acl",
            "token",
            "update",
            "-id",
            &accessor,
            "-append-policy-name",
            "p1",
        ],
    );
    assert!(ok(&run).contains(" - p1\n"), "{run:#?}");
    let run = mesh(
        &server,
        dir,
        &["acl", "token", "read", "-id", &accessor[..8]],
    );
    assert_eq!(field(ok(&run), "Description"), Some("t1"));
    let run = mesh(&server, dir, &["acl", "token", "delete", "-id", &accessor]);
    assert_eq!(
        ok(&run).trim(),
        format!("Token {accessor:?} deleted successfully")
    );
    let run = mesh(&server, dir, &["acl", "role", "delete", "-name", "r1"]);
    assert!(ok(&run).contains("deleted successfully"), "{run:#?}");
    let run = mesh(&server, dir, &["acl", "policy", "delete", "-name", "p1"]);
    assert_eq!(
        ok(&run).trim(),
        format!("Policy {id:?} deleted successfully")
    );
    let run = mesh(&server, dir, &["acl", "policy", "read", "-name", "p1"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("404"), "{run:#?}");

    // Config entries.
    ok(&mesh(
        &server,
        dir,
        &["config", "write", "proxy-defaults.json"],
    ));
    let run = mesh(&server, dir, &["config", "list", "-kind", "proxy-defaults"]);
    assert_eq!(ok(&run).trim(), "global");
    let run = mesh(
        &server,
        dir,
        &[
            "config",
            "delete",
            "-kind",
            "proxy-defaults",
            "-name",
            "global",
        ],
    );
    assert_eq!(
        ok(&run).trim(),
        "Config entry deleted: proxy-defaults/global"
    );

    // Intentions: get, list, match, delete.
    ok(&mesh(
        &server,
        dir,
        &["intention", "create", "-deny", "web", "db"],
    ));
    let run = mesh(&server, dir, &["intention", "get", "web", "db"]);
    let out = ok(&run);
    assert_eq!(field(out, "Source"), Some("web"));
    assert_eq!(field(out, "Action"), Some("deny"));
    let run = mesh(&server, dir, &["intention", "list"]);
    assert!(ok(&run).starts_with("ID"), "{run:#?}");
    let run = mesh(&server, dir, &["intention", "match", "db"]);
    assert_eq!(ok(&run).trim(), "web => db (deny)");
    let run = mesh(&server, dir, &["intention", "match", "-source", "web"]);
    assert_eq!(ok(&run).trim(), "web => db (deny)");
    let run = mesh(&server, dir, &["intention", "delete", "web", "db"]);
    assert_eq!(ok(&run).trim(), "Intention deleted.");

    // Services: register from flags, deregister by ID and from the file.
    let run = mesh(
        &server,
        dir,
        &["services", "register", "-name", "web", "-port", "8080"],
    );
    assert_eq!(ok(&run).trim(), "Registered service: web");
    let run = mesh(&server, dir, &["services", "deregister", "-id", "web"]);
    assert_eq!(ok(&run).trim(), "Deregistered service: web");
    ok(&mesh(&server, dir, &["services", "register", "socat.json"]));
    let run = mesh(&server, dir, &["services", "deregister", "socat.json"]);
    assert_eq!(ok(&run).trim(), "Deregistered service: socat");
    // A service file in HCL, read as the agent reads its service files.
    std::fs::write(
        dir.join("web.hcl"),
        "service {\n  name = \"web\"\n  port = 8080\n  connect { sidecar_service {} }\n}\n",
    )
    .unwrap();
    let run = mesh(&server, dir, &["services", "register", "web.hcl"]);
    assert_eq!(ok(&run).trim(), "Registered service: web");

    // The CA configuration.
    let run = mesh(&server, dir, &["connect", "ca", "get-config"]);
    let config: serde_json::Value = serde_json::from_str(ok(&run)).unwrap();
    assert_eq!(config["Provider"], "consul", "{config}");

    // Members and peers.
    let run = mesh(&server, dir, &["members"]);
    assert!(ok(&run).starts_with("Node "), "{run:#?}");
    let run = mesh(&server, dir, &["operator", "raft", "list-peers"]);
    assert!(ok(&run).contains("leader"), "{run:#?}");
}

#[test]
fn leave_prints_the_servers_answer() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // The server decides whether an agent may be told to leave over HTTP; either way the
    // command reports what it said.
    let run = mesh(&server, dir.path(), &["leave"]);
    match run.code {
        0 => assert_eq!(run.stdout.trim(), "Graceful leave complete"),
        1 => assert!(
            run.stderr
                .starts_with("Error leaving cluster: PUT /v1/agent/leave"),
            "{run:#?}"
        ),
        _ => panic!("{run:#?}"),
    }
}

#[test]
fn an_agent_that_cannot_start_exits_1_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let run = mesh_in(dir.path(), &["agent", "-config-file", "missing.hcl"], &[]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.starts_with("Error loading configuration: ")
            && run.stderr.contains("missing.hcl"),
        "{run:#?}"
    );
    std::fs::write(dir.path().join("bad.hcl"), "datacenter = ").unwrap();
    let run = mesh_in(dir.path(), &["agent", "-config-file=bad.hcl"], &[]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.starts_with("Error loading configuration: "),
        "{run:#?}"
    );
    std::fs::write(dir.path().join("ok.hcl"), "datacenter = \"dc1\"\n").unwrap();
    let run = mesh_in(
        dir.path(),
        &["agent", "-config-file=ok.hcl", "-log-level", "loud"],
        &[],
    );
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("Invalid log level: \"loud\""),
        "{run:#?}"
    );
}
