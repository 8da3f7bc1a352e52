//! The HTTP API under load, against a `mesh agent` process on loopback.
//!
//! 1. Requests per second of `GET /v1/connect/intentions/check` and
//!    `POST /v1/agent/connect/authorize`, next to `GET /v1/status/leader` (a handler that does
//!    nothing: the cost of HTTP itself) in the same run, over 32 keep-alive connections.
//! 2. 10,000 blocking `GET /v1/health/connect/socat?index=N` queries held at once: the agent's
//!    memory per watcher (its RSS before and after, against 10,000 idle connections in the same
//!    run), and the time from a registration to each watcher's answer.
//!
//! `cargo bench -p mesh-agent --bench http_api` (`SECONDS=N` per figure, default 3).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that fails should stop loudly

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MGMT: &str = "3f0b5a2e-8c1d-4e6f-9a7b-1c2d3e4f5a6b";
const WATCHERS: usize = 10_000;
const CONNS: usize = 32;

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_agent(dir: &Path) -> (Agent, SocketAddr) {
    let (http, server) = (free_port(), free_port());
    let conf = dir.join("agent.hcl");
    std::fs::write(
        &conf,
        format!(
            r#"datacenter = "primary"
primary_datacenter = "primary"
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
ports {{
  http = {http}
  server = {server}
}}
limits {{
  http_max_conns = {conns}
  http_max_blocking_queries = {conns}
}}
acl {{
  enabled = true
  default_policy = "deny"
  tokens {{
    initial_management = "{MGMT}"
  }}
}}
connect {{
  enabled = true
}}
"#,
            conns = WATCHERS * 2
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args(["agent", "-config-file"])
        .arg(&conf)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], http));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Agent(child), addr)
}

/// One keep-alive HTTP/1.1 connection with a reusable read buffer.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Self {
            s,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends one request and reads the whole answer; returns its status and `X-Consul-Index`.
    async fn call(&mut self, req: &[u8]) -> (u16, u64) {
        self.s.write_all(req).await.unwrap();
        self.buf.clear();
        loop {
            let mut chunk = [0u8; 4096];
            let n = self.s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap().to_owned();
                let status = head[9..12].parse().unwrap();
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                        .unwrap_or_default()
                };
                let len: usize = header("content-length").parse().unwrap_or(0);
                let index = header("x-consul-index").parse().unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    let n = self.s.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed mid-body");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return (status, index);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\nX-Consul-Token: {MGMT}\r\n\r\n").into_bytes()
}

fn send(method: &str, path: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nX-Consul-Token: {MGMT}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Requests per second of `req` over `CONNS` connections for `secs`.
async fn rate(addr: SocketAddr, req: Vec<u8>, secs: f64) -> f64 {
    let req = Arc::new(req);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let (req, done, stop) = (req.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            while !stop.load(Ordering::Relaxed) {
                let (status, _) = c.call(&req).await;
                assert_eq!(status, 200);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm-up, then the measured window.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let n = done.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / elapsed
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Waits until the agent's RSS stops moving, and returns it.
async fn settled_rss(pid: u32) -> u64 {
    let mut last = rss_kib(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_kib(pid);
        if now.abs_diff(last) < 256 {
            return now;
        }
        last = now;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: f64 = std::env::var("SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let dir = tempfile::tempdir().unwrap();
    let (agent, addr) = start_agent(dir.path());
    let pid = agent.0.id();
    let mut c = Conn::open(addr).await;
    let (s, _) = c
        .call(&send(
            "PUT",
            "/v1/connect/intentions/exact?source=web&destination=socat",
            r#"{"SourceType":"consul","Action":"allow"}"#,
        ))
        .await;
    assert_eq!(s, 200);
    let (s, _) = c.call(&get("/v1/agent/connect/ca/roots")).await;
    assert_eq!(s, 200);
    let td = {
        // The trust domain, for a client certificate URI of the authorize call.
        c.s.write_all(&get("/v1/connect/ca/roots")).await.unwrap();
        let mut text = String::new();
        let mut chunk = [0u8; 65536];
        while !text.contains("TrustDomain") || !text.ends_with(']') && !text.ends_with('}') {
            let n = c.s.read(&mut chunk).await.unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
        let body = text.split_once("\r\n\r\n").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["TrustDomain"].as_str().unwrap().to_owned()
    };
    let authorize = send(
        "POST",
        "/v1/agent/connect/authorize",
        &format!(
            r#"{{"Target":"socat","ClientCertURI":"spiffe://{td}/ns/default/dc/primary/svc/web"}}"#
        ),
    );

    println!(
        "HTTP API, {CONNS} keep-alive connections, {secs} s per figure, 2 cores shared by agent and load"
    );
    let base = rate(addr, get("/v1/status/leader"), secs).await;
    let check = rate(
        addr,
        get("/v1/connect/intentions/check?source=web&destination=socat"),
        secs,
    )
    .await;
    let auth = rate(addr, authorize, secs).await;
    println!("{:<40} {:>10} {:>8}", "endpoint", "req/s", "ratio");
    println!(
        "{:<40} {:>10.0} {:>8.2}",
        "GET status/leader (baseline)", base, 1.0
    );
    println!(
        "{:<40} {:>10.0} {:>8.2}",
        "GET connect/intentions/check",
        check,
        check / base
    );
    println!(
        "{:<40} {:>10.0} {:>8.2}",
        "POST agent/connect/authorize",
        auth,
        auth / base
    );

    // Memory: idle connections first (the baseline), then blocking queries.
    let before = settled_rss(pid).await;
    let mut idle = Vec::with_capacity(WATCHERS);
    for _ in 0..WATCHERS {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let with_idle = settled_rss(pid).await;
    drop(idle);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_idle = settled_rss(pid).await;

    // A keep-alive connection idle this long has been closed by the server: open new ones.
    let mut c = Conn::open(addr).await;
    let (_, index) = c.call(&get("/v1/health/connect/socat")).await;
    let started = Arc::new(AtomicU64::new(0));
    let mut watchers = Vec::with_capacity(WATCHERS);
    for _ in 0..WATCHERS {
        let started = started.clone();
        let req = get(&format!("/v1/health/connect/socat?index={index}&wait=5m"));
        let mut conn = Conn::open(addr).await;
        watchers.push(tokio::spawn(async move {
            conn.s.write_all(&req).await.unwrap();
            started.fetch_add(1, Ordering::Relaxed);
            // The answer, once the registration wakes the query.
            let mut chunk = [0u8; 4096];
            let n = conn.s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            assert!(
                chunk.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&chunk[..n])
            );
            Instant::now()
        }));
    }
    while started.load(Ordering::Relaxed) < WATCHERS as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let with_watchers = settled_rss(pid).await;
    let mut c = Conn::open(addr).await;
    let write = Instant::now();
    let (s, _) = c
        .call(&send(
            "PUT",
            "/v1/agent/service/register",
            r#"{"Name":"socat","Port":8181,"Connect":{"SidecarService":{}}}"#,
        ))
        .await;
    assert_eq!(s, 200);
    let mut wakes = Vec::with_capacity(WATCHERS);
    for w in watchers {
        wakes.push(w.await.unwrap().saturating_duration_since(write));
    }
    wakes.sort();
    let kib = |a: u64, b: u64| b.saturating_sub(a) as f64 * 1024.0 / WATCHERS as f64;
    println!();
    println!("{WATCHERS} connections held open (agent RSS, bytes per connection):");
    println!(
        "  idle connection (baseline)      {:>8.0} B",
        kib(before, with_idle)
    );
    println!(
        "  blocking health/connect query   {:>8.0} B  ({:.2}x the idle connection)",
        kib(after_idle, with_watchers),
        kib(after_idle, with_watchers) / kib(before, with_idle).max(1.0)
    );
    println!(
        "registration -> answer of each of the {WATCHERS} watchers: p50 {:?}, p99 {:?}, last {:?}",
        percentile(&wakes, 0.5),
        percentile(&wakes, 0.99),
        wakes[wakes.len() - 1]
    );
    drop(agent);
}
