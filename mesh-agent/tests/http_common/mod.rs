//! Shared setup of the HTTP API tests: a primary datacenter with ACLs default-deny and a
//! management token, its API served on 127.0.0.1:0, and a plain HTTP/1.1 client over a
//! real socket (one request per connection).

#![allow(dead_code)] // each test file uses part of these helpers
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh::intentions::acl::DefaultPolicy;
use mesh::{Datacenter, DatacenterConfig};
use mesh_agent::http::{AgentInfo, ApiState, HttpConfig, serve};
use mesh_agent::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The management token of every test datacenter.
pub(crate) const MGMT: &str = "11111111-aaaa-4bbb-8ccc-000000000001";

/// The longest one request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A running API.
pub(crate) struct Api {
    pub(crate) dc: Datacenter,
    pub(crate) addr: SocketAddr,
    pub(crate) metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Api {
    /// Stops the server and waits for `serve` to return.
    pub(crate) async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("serve returns after shutdown")
                .unwrap()
                .unwrap();
        }
    }
}

/// A primary datacenter named `name` with ACLs on, default deny, and [`MGMT`].
pub(crate) async fn datacenter(name: &str) -> Datacenter {
    let mut c = DatacenterConfig::new(name.parse().unwrap(), name.parse().unwrap());
    c.acl.enabled = true;
    c.acl.default_policy = DefaultPolicy::Deny;
    c.acl.tokens.initial_management = Some(MGMT.into());
    Datacenter::start_primary(c).await.unwrap()
}

/// Serves `state` on 127.0.0.1:0.
pub(crate) async fn serve_state(dc: Datacenter, state: ApiState) -> Api {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = state.metrics().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, None, state, async move {
        let _ = rx.await;
    }));
    Api {
        dc,
        addr,
        metrics,
        stop: Some(tx),
        task: Some(task),
    }
}

/// The agent info the tests use.
pub(crate) fn agent_info() -> AgentInfo {
    AgentInfo {
        node_name: "node-1".into(),
        node_id: "6e3c3ad4-5ea4-4ab6-8cf5-6e3a6b7c1a01".into(),
        server_addr: "127.0.0.1:8300".parse().unwrap(),
        ..AgentInfo::default()
    }
}

/// A primary datacenter `primary` and its API with `cfg`.
pub(crate) async fn start_with(cfg: HttpConfig) -> Api {
    let dc = datacenter("primary").await;
    let state =
        ApiState::new(dc.clone(), cfg, Arc::new(Metrics::new())).with_agent_info(agent_info());
    serve_state(dc, state).await
}

/// A primary datacenter `primary` and its API with the default limits.
pub(crate) async fn start() -> Api {
    start_with(HttpConfig::default()).await
}

/// An answer.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Resp {
    /// A header's value (case-insensitive name).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// `X-Consul-Index` as a number.
    pub(crate) fn index(&self) -> u64 {
        self.header("X-Consul-Index")
            .expect("X-Consul-Index")
            .parse()
            .unwrap()
    }

    /// Asserts the status, showing the body otherwise.
    #[track_caller]
    pub(crate) fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "body: {:?}", self.body);
        self
    }
}

/// Sends one raw request (written as given) and reads the whole answer.
pub(crate) async fn raw(addr: SocketAddr, request: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(REQUEST_TIMEOUT, s.read_to_end(&mut buf))
        .await
        .expect("answer within the time-out")
        .unwrap();
    parse_response(&buf)
}

/// Parses an HTTP/1.1 answer (content-length or chunked body, or up to the end).
pub(crate) fn parse_response(buf: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(buf);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        match headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            Some((_, n)) => rest[..n.parse::<usize>().unwrap().min(rest.len())].to_owned(),
            None => rest.to_owned(),
        }
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// Sends `method path` with an optional `X-Consul-Token` and body.
pub(crate) async fn req(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Resp {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        r.push_str(&format!("X-Consul-Token: {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    r.push_str(body);
    raw(addr, r.as_bytes()).await
}

/// GET with a token.
pub(crate) async fn get(addr: SocketAddr, path: &str, token: &str) -> Resp {
    req(addr, "GET", path, Some(token), None).await
}

/// PUT with a token and a body.
pub(crate) async fn put(addr: SocketAddr, path: &str, token: &str, body: &str) -> Resp {
    req(addr, "PUT", path, Some(token), Some(body)).await
}

/// DELETE with a token.
pub(crate) async fn delete(addr: SocketAddr, path: &str, token: &str) -> Resp {
    req(addr, "DELETE", path, Some(token), None).await
}

/// Runs curl with `args` (plus `-s -S -i`) against the API; returns the parsed answer.
pub(crate) fn curl(args: &[&str]) -> Resp {
    let out = std::process::Command::new("curl")
        .args(["-s", "-S", "-i", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_response(&out.stdout)
}

/// Creates a policy and a token holding it; returns (accessor, secret).
pub(crate) async fn token_with_rules(
    addr: SocketAddr,
    name: &str,
    rules: &str,
) -> (String, String) {
    let body = serde_json::json!({"Name": name, "Rules": rules}).to_string();
    put(addr, "/v1/acl/policy", MGMT, &body).await.expect(200);
    let body = serde_json::json!({"Description": name, "Policies": [{"Name": name}]}).to_string();
    let t = put(addr, "/v1/acl/token", MGMT, &body)
        .await
        .expect(200)
        .json();
    (
        t["AccessorID"].as_str().unwrap().to_owned(),
        t["SecretID"].as_str().unwrap().to_owned(),
    )
}
