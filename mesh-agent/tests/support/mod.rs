//! Running `mesh agent` processes for tests, and the Python client py-consul.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // shared by several test crates; failing unwraps fail tests

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The initial management token the test agents start with.
pub const MGMT: &str = "9c8a51c6-3b51-4e0f-9d6f-5f9a0d1c2e70";

/// A free loopback port (bound and released: another process could take it in between, which
/// the agent then reports as a bind error).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `mesh agent` child process, killed on drop.
pub struct Agent {
    pub child: Child,
    pub http: SocketAddr,
    pub server: SocketAddr,
    pub log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration of one datacenter's agent, in Consul's HCL.
pub fn agent_hcl(
    name: &str,
    data_dir: &Path,
    http: u16,
    server: u16,
    primary_server: Option<SocketAddr>,
    replication_token: Option<&str>,
) -> String {
    let mut s = format!(
        r#"datacenter = "{name}"
primary_datacenter = "primary"
data_dir = "{}"
node_name = "{name}-server-1"
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
    initial_management = "{MGMT}"
"#,
        data_dir.display()
    );
    if let Some(t) = replication_token {
        s.push_str(&format!("    replication = \"{t}\"\n"));
    }
    s.push_str("  }\n}\n");
    // The guide's own snippet, as written.
    s.push_str("connect {\n\"enabled\": true\n}\n");
    s.push_str("enable_central_service_config = true\n");
    if let Some(p) = primary_server {
        s.push_str(&format!("retry_join_wan = [\"{p}\"]\n"));
        // The primary's mesh root, saved beside the data dirs when the primary started.
        let ca = data_dir.parent().unwrap().join(PRIMARY_CA);
        s.push_str(&format!(
            "tls {{\n  internal_rpc {{\n    ca_file = \"{}\"\n  }}\n}}\n",
            ca.display()
        ));
    }
    s
}

/// Where [`start_agent`] saves a primary's mesh root (in the test's directory), for the
/// secondaries [`agent_hcl`] configures to trust it.
pub const PRIMARY_CA: &str = "primary-ca.pem";

/// Starts the primary datacenter's agent (data under `<dir>/<name>-data`) on free ports.
pub fn start_primary(dir: &Path, name: &str) -> Agent {
    start_datacenter(dir, name, "primary", None, None)
}

/// Starts an agent of datacenter `dc` on free ports, with its data under `<dir>/<name>-data`;
/// a secondary is given the primary's server address and its replication token.
pub fn start_datacenter(
    dir: &Path,
    name: &str,
    dc: &str,
    primary_server: Option<SocketAddr>,
    replication_token: Option<&str>,
) -> Agent {
    let (http, server) = (free_port(), free_port());
    let hcl = agent_hcl(
        dc,
        &dir.join(format!("{name}-data")),
        http,
        server,
        primary_server,
        replication_token,
    );
    start_agent(dir, name, &hcl, http, server)
}

/// Starts `mesh agent -config-file FILE` and waits until its HTTP API answers.
pub fn start_agent(dir: &Path, name: &str, hcl: &str, http: u16, server: u16) -> Agent {
    let file = dir.join(format!("{name}.hcl"));
    std::fs::write(&file, hcl).unwrap();
    let mut agent = spawn_agent(
        dir,
        name,
        &["-config-file".as_ref(), file.as_os_str()],
        http,
        server,
    );
    wait_http(&mut agent);
    if !hcl.contains("retry_join_wan") {
        // A primary: its root is what secondaries verify its server port against.
        let (status, pem) =
            http_get(agent.http, "/v1/connect/ca/roots?pem=true").expect("the roots answer");
        if status == 200 && pem.contains("BEGIN CERTIFICATE") {
            std::fs::write(dir.join(PRIMARY_CA), pem).unwrap();
        }
    }
    agent
}

/// Spawns `mesh agent ARGS...`, its output in `<dir>/<name>.log`, without waiting for it.
pub fn spawn_agent(
    dir: &Path,
    name: &str,
    args: &[&std::ffi::OsStr],
    http: u16,
    server: u16,
) -> Agent {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mesh"))
        .arg("agent")
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Agent {
        child,
        http: SocketAddr::from(([127, 0, 0, 1], http)),
        server: SocketAddr::from(([127, 0, 0, 1], server)),
        log,
    }
}

/// Waits (bounded) for the agent to exit: `None` if it still runs after `bound`.
pub fn wait_exit(agent: &mut Agent, bound: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(s) = agent.child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Starts an agent from `hcl` that must refuse to start: returns its log once it has exited
/// with a failure (a bound on a hang, not a timing assertion).
pub fn failed_start(dir: &Path, name: &str, hcl: &str) -> String {
    let file = dir.join(format!("{name}.hcl"));
    std::fs::write(&file, hcl).unwrap();
    let mut agent = spawn_agent(
        dir,
        name,
        &["-config-file".as_ref(), file.as_os_str()],
        0,
        0,
    );
    let status =
        wait_exit(&mut agent, Duration::from_secs(30)).expect("the agent exits instead of hanging");
    assert!(!status.success());
    std::fs::read_to_string(&agent.log).unwrap()
}

fn wait_http(agent: &mut Agent) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = agent.child.try_wait().unwrap() {
            panic!(
                "mesh agent exited with {status} before serving:\n{}",
                std::fs::read_to_string(&agent.log).unwrap_or_default()
            );
        }
        if http_get(agent.http, "/v1/status/leader").is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "mesh agent did not serve HTTP within 60 s:\n{}",
        std::fs::read_to_string(&agent.log).unwrap_or_default()
    );
}

/// A plain HTTP/1.1 GET; the status line and body, or `None` when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    exchange(addr, "GET", path, None, "", Duration::from_secs(5)).map(|(s, _, b)| (s, b))
}

/// One HTTP/1.1 request, with `token` as `X-Consul-Token` when given: the status, the headers
/// (lower-cased) and the body; `None` when nothing answers within 30 s.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Option<(u16, String, String)> {
    exchange(addr, method, path, token, body, Duration::from_secs(30))
}

fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
    read_timeout: Duration,
) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(read_timeout)).ok()?;
    let token = token
        .map(|t| format!("X-Consul-Token: {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{token}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((status, head.to_ascii_lowercase(), body.to_owned()))
}

/// A Python interpreter with py-consul 1.8.0: `MESH_PYTHON` when set (CI makes a venv), else
/// a venv this test makes under the target directory with `pip install py-consul==1.8.0`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MESH_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("py-consul-1.8.0");
    let py = venv.join("bin/python");
    let lock = venv.with_extension("lock");
    // One test process at a time sets the venv up.
    let _guard = FileLock::take(&lock);
    if !has_py_consul(&py) {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "python3 -m venv failed: install python3 and python3-venv"
        );
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "py-consul==1.8.0"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "pip install py-consul==1.8.0 failed");
    }
    assert!(
        has_py_consul(&py),
        "py-consul does not import in {}",
        venv.display()
    );
    py
}

fn has_py_consul(py: &Path) -> bool {
    Command::new(py)
        .args(["-c", "import consul"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A lock file held while the venv is made.
struct FileLock(PathBuf);

impl FileLock {
    fn take(path: &Path) -> Self {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(_) => return Self(path.to_owned()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => panic!("lock {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the py-consul script `phase` with `env`; returns its stdout, panicking with its
/// output when it fails.
pub fn run_py(script: &str, phase: &str, env: &[(&str, String)]) -> String {
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(phase);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "py-consul phase {phase} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The last line of `text`.
pub fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

/// Reads lines of a log file (for a failing test's message).
pub fn log_lines(path: &Path) -> Vec<String> {
    std::fs::File::open(path)
        .map(|f| BufReader::new(f).lines().map_while(Result::ok).collect())
        .unwrap_or_default()
}
