//! Shared setup of the mesh integration tests: two datacenters with ACLs default-deny (a
//! management token, a replication token, gateway tokens), mesh gateways, an echo service
//! `socat` in the primary and `web` in the secondary with an upstream to it, and bounded
//! wait helpers. Everything binds 127.0.0.0/8 with OS-assigned ports.

// Each test file uses part of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh::intentions::acl::DefaultPolicy;
use mesh::intentions::intention::Action;
use mesh::replication_engine::{InProcessTransport, Transport};
use mesh::sni::ListenerKind;
use mesh::{
    Datacenter, DatacenterConfig, MeshGateway, MeshGatewayOptions, Sidecar, SidecarOptions,
    TokenSpec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest one test may run.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(40);

/// The longest a wait for replication or a route rebuild may take.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// How often the bounded waits poll.
pub(crate) const POLL: Duration = Duration::from_millis(10);

/// The longest an echo reply may take.
pub(crate) const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

/// The guide's mesh-gateway-policy.json, as written (three JSON objects one after another).
pub(crate) const GATEWAY_POLICY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/guide/mesh-gateway-policy.json"
));

/// The guide's replication token policy.
pub(crate) const REPLICATION_POLICY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/guide/replication-policy.json"
));

/// `proxy-defaults` with a mesh-gateway mode (`local`, `remote`, `none`).
pub(crate) fn proxy_defaults(mode: &str) -> String {
    format!(
        r#"{{"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {{"Mode": "{mode}"}}}}"#
    )
}

/// Runs a test body, failing it when it takes longer than [`TEST_TIMEOUT`].
pub(crate) async fn bounded<F: Future>(body: F) -> F::Output {
    match tokio::time::timeout(TEST_TIMEOUT, body).await {
        Ok(out) => out,
        Err(_) => panic!("the test did not finish within {TEST_TIMEOUT:?}"),
    }
}

/// Polls `check` every [`POLL`] until it holds, for at most [`WAIT`]; panics naming `what`.
pub(crate) async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends the mesh's logs to the test output, filtered by `RUST_LOG` (nothing when unset).
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// A fresh random secret (hex of 16 random bytes).
pub(crate) fn secret() -> String {
    use std::fmt::Write;
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("system random source");
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// A port that was free a moment ago on 127.0.0.1 (for a `local_bind_port`, which the
/// registration must name before the sidecar binds it).
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// A datacenter configuration with ACLs on and default deny.
pub(crate) fn config(name: &str, primary: &str) -> DatacenterConfig {
    let mut c = DatacenterConfig::new(
        name.parse().expect("datacenter name"),
        primary.parse().expect("datacenter name"),
    );
    c.acl.enabled = true;
    c.acl.default_policy = DefaultPolicy::Deny;
    c
}

/// Starts an echo server on 127.0.0.1 (what `socat -v tcp-l:PORT,fork exec:"/bin/cat"` is in
/// the guide) and returns its address.
pub(crate) async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Opens one connection to `addr`, sends `line` and reads as many bytes back.
pub(crate) async fn echo_once(addr: SocketAddr, line: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    echo_on(&mut s, line).await
}

/// Sends `line` on an open connection and reads as many bytes back (fails on close or after
/// [`ECHO_TIMEOUT`]).
pub(crate) async fn echo_on(s: &mut TcpStream, line: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(line).await?;
    let mut buf = vec![0u8; line.len()];
    match tokio::time::timeout(ECHO_TIMEOUT, s.read_exact(&mut buf)).await {
        Ok(r) => r.map(|_| buf),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Whether one echo through `addr` comes back intact.
pub(crate) async fn echo_ok(addr: SocketAddr) -> bool {
    matches!(echo_once(addr, b"hello\n").await, Ok(r) if r == b"hello\n")
}

/// Connections accepted by `gws` on listeners of `kind`.
pub(crate) fn accepted(gws: &[MeshGateway], kind: ListenerKind) -> u64 {
    gws.iter().map(|g| g.stats().listener(kind).accepted).sum()
}

/// Connections accepted by one gateway on both its listeners.
pub(crate) fn accepted_by(gw: &MeshGateway) -> u64 {
    let s = gw.stats();
    s.lan.accepted + s.wan.accepted
}

/// The addresses a gateway routes `sni` to now (empty when it has no route).
pub(crate) fn routed_to(gw: &MeshGateway, sni: &str) -> Vec<SocketAddr> {
    match gw.sni_gateway().routes().load().route(Some(sni)) {
        Ok(r) => r.pool().addrs().collect(),
        Err(_) => Vec::new(),
    }
}

fn sorted(mut v: Vec<SocketAddr>) -> Vec<SocketAddr> {
    v.sort();
    v
}

/// Two datacenters of the guide, with their gateways.
pub(crate) struct Mesh {
    /// The primary datacenter (`primary`).
    pub(crate) primary: Datacenter,
    /// The secondary datacenter (`secondary`), replicating through `link`.
    pub(crate) secondary: Datacenter,
    /// The management token's secret.
    pub(crate) mgmt: String,
    /// The replication token's secret.
    pub(crate) replication: String,
    /// The gateway tokens (primary's, secondary's).
    pub(crate) gateway_tokens: [String; 2],
    /// The primary's gateways.
    pub(crate) primary_gateways: Vec<MeshGateway>,
    /// The secondary's gateways.
    pub(crate) secondary_gateways: Vec<MeshGateway>,
    /// The secondary's link to the primary (cut it to simulate the primary going away).
    pub(crate) link: Arc<InProcessTransport>,
}

/// The two services of the guide, deployed.
pub(crate) struct Apps {
    /// socat's service token.
    pub(crate) socat_token: String,
    /// web's service token.
    pub(crate) web_token: String,
    /// The echo server (socat's application).
    pub(crate) echo: SocketAddr,
    /// socat's sidecar, in the primary.
    pub(crate) socat_sidecar: Sidecar,
    /// web's sidecar, in the secondary.
    pub(crate) web_sidecar: Sidecar,
    /// web's local listener for the upstream socat.
    pub(crate) upstream: SocketAddr,
    /// The SNI web's sidecar sends for socat.
    pub(crate) sni: String,
}

impl Mesh {
    /// Starts the primary and the secondary (ACLs default deny, Connect on), the policies and
    /// tokens of the guide, and `gateways_per_dc` mesh gateways in each datacenter. WAN
    /// addresses are 127.0.1.x (primary) and 127.0.2.x (secondary).
    pub(crate) async fn start(gateways_per_dc: u8) -> Mesh {
        init_tracing();
        let mgmt = secret();
        let mut pc = config("primary", "primary");
        pc.acl.tokens.initial_management = Some((&mgmt).into());
        let primary = Datacenter::start_primary(pc).await.expect("primary starts");
        primary
            .acl()
            .policy_create(
                &(&mgmt).into(),
                "replication",
                "ACL replication",
                REPLICATION_POLICY,
            )
            .await
            .expect("replication policy");
        let replication = primary
            .acl()
            .token_create(
                &(&mgmt).into(),
                TokenSpec {
                    description: "replication token".into(),
                    policy_names: vec!["replication".into()],
                    ..TokenSpec::default()
                },
            )
            .await
            .expect("replication token")
            .secret_id;
        let link = Arc::new(InProcessTransport::new(primary.replication_server()));
        let mut sc = config("secondary", "primary");
        sc.acl.tokens.replication = Some((&replication).into());
        let transport: Arc<dyn Transport> = link.clone();
        let secondary = match tokio::time::timeout(
            WAIT * 2,
            Datacenter::start_secondary(sc, transport),
        )
        .await
        {
            Ok(r) => r.expect("secondary starts"),
            Err(_) => panic!("the secondary did not start within {:?}", WAIT * 2),
        };
        primary
            .acl()
            .policy_create(&(&mgmt).into(), "mesh-gateway", "", GATEWAY_POLICY)
            .await
            .expect("gateway policy");
        let mut gateway_tokens = Vec::new();
        for dc in ["primary", "secondary"] {
            let t = primary
                .acl()
                .token_create(
                    &(&mgmt).into(),
                    TokenSpec {
                        description: format!("mesh-gateway {dc} datacenter token"),
                        policy_names: vec!["mesh-gateway".into()],
                        ..TokenSpec::default()
                    },
                )
                .await
                .expect("gateway token");
            gateway_tokens.push(t.secret_id);
        }
        let gateway_tokens: [String; 2] = [gateway_tokens[0].clone(), gateway_tokens[1].clone()];
        wait_token(&secondary, &gateway_tokens[1]).await;
        wait_token(&secondary, &mgmt).await;
        let mut mesh = Mesh {
            primary,
            secondary,
            mgmt,
            replication,
            gateway_tokens,
            primary_gateways: Vec::new(),
            secondary_gateways: Vec::new(),
            link,
        };
        for i in 1..=gateways_per_dc {
            let gw = mesh.start_gateway(true, i).await;
            mesh.primary_gateways.push(gw);
            let gw = mesh.start_gateway(false, i).await;
            mesh.secondary_gateways.push(gw);
        }
        mesh
    }

    /// Starts gateway number `i` of the primary (`true`) or the secondary.
    pub(crate) async fn start_gateway(&self, in_primary: bool, i: u8) -> MeshGateway {
        let (dc, token, octet) = if in_primary {
            (&self.primary, &self.gateway_tokens[0], 1)
        } else {
            (&self.secondary, &self.gateway_tokens[1], 2)
        };
        let id = format!("gateway-{}-{i}", dc.name());
        let lan: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let wan: SocketAddr = format!("127.0.{octet}.{i}:0").parse().expect("address");
        MeshGateway::start(
            dc,
            &token.into(),
            MeshGatewayOptions::new(
                "mesh-gateway".parse().expect("service name"),
                id.clone(),
                lan,
                wan,
            ),
        )
        .await
        .expect("mesh gateway starts")
    }

    /// Writes `proxy-defaults` with `mode` in the secondary (forwarded to the primary).
    pub(crate) async fn set_mode(&self, mode: &str) {
        self.secondary
            .config_entries()
            .write_json(&(&self.mgmt).into(), &proxy_defaults(mode))
            .await
            .expect("proxy-defaults written");
    }

    /// A global token holding the service identity `name`, visible in both datacenters.
    pub(crate) async fn service_token(&self, name: &str) -> String {
        let t = self
            .primary
            .acl()
            .token_create(
                &(&self.mgmt).into(),
                TokenSpec {
                    description: format!("{name} service token"),
                    service_identities: vec![name.to_owned()],
                    ..TokenSpec::default()
                },
            )
            .await
            .expect("service token")
            .secret_id;
        wait_token(&self.secondary, &t).await;
        t
    }

    /// A global token with one policy made of `rules`, visible in both datacenters.
    pub(crate) async fn policy_token(&self, policy: &str, rules: &str) -> String {
        self.primary
            .acl()
            .policy_create(&(&self.mgmt).into(), policy, "", rules)
            .await
            .expect("policy created");
        let t = self
            .primary
            .acl()
            .token_create(
                &(&self.mgmt).into(),
                TokenSpec {
                    description: format!("{policy} token"),
                    policy_names: vec![policy.to_owned()],
                    ..TokenSpec::default()
                },
            )
            .await
            .expect("token created")
            .secret_id;
        wait_token(&self.secondary, &t).await;
        t
    }

    /// Creates the intention `web -> socat` (allow) in the secondary and waits until the
    /// primary, whose socat sidecar decides, applies it.
    pub(crate) async fn allow_web_to_socat(&self) {
        self.secondary
            .intentions()
            .create(
                &(&self.mgmt).into(),
                &"web".parse().expect("valid intention target"),
                &"socat".parse().expect("valid intention target"),
                Action::Allow,
            )
            .await
            .expect("intention created");
        self.wait_decision("web", "socat", true).await;
    }

    /// Waits until both datacenters decide `source -> destination` as `allowed`.
    pub(crate) async fn wait_decision(&self, source: &str, destination: &str, allowed: bool) {
        let td = self.primary.trust_domain().expect("trust domain");
        let id: mesh::core::SpiffeId =
            format!("spiffe://{td}/ns/default/dc/secondary/svc/{source}")
                .parse()
                .expect("SPIFFE ID");
        let dest: mesh::core::ServiceName = destination.parse().expect("service name");
        wait_until(
            &format!("{source} -> {destination} to be decided allowed={allowed}"),
            || {
                let ok = self.primary.intentions().authorize(&id, &dest).authorized == allowed
                    && self.secondary.intentions().authorize(&id, &dest).authorized == allowed;
                async move { ok }
            },
        )
        .await;
    }

    /// Registers `socat` (an echo server) in the primary and `web` in the secondary with an
    /// upstream to socat in the primary (`upstream_mode` written on the upstream, if any),
    /// starts both sidecars and waits until every route leads to them.
    pub(crate) async fn deploy(&self, upstream_mode: Option<&str>) -> Apps {
        let socat_token = self.service_token("socat").await;
        let web_token = self.service_token("web").await;
        let echo = echo_server().await;
        let socat_json = format!(
            r#"{{"service": {{"name": "socat", "port": {}, "token": "{socat_token}",
                "connect": {{"sidecar_service": {{}} }} }} }}"#,
            echo.port()
        );
        self.primary
            .catalog()
            .register_json(&"".into(), &socat_json)
            .await
            .expect("socat registered");
        let mode = upstream_mode
            .map(|m| format!(r#", "mesh_gateway": {{"mode": "{m}"}}"#))
            .unwrap_or_default();
        let web_json = format!(
            r#"{{"service": {{"name": "web", "port": 8080, "token": "{web_token}",
                "connect": {{"sidecar_service": {{"proxy": {{"upstreams": [{{
                "destination_name": "socat", "datacenter": "primary",
                "local_bind_port": {}{mode} }}]}}}}}}}}}}"#,
            free_port()
        );
        self.secondary
            .catalog()
            .register_json(&"".into(), &web_json)
            .await
            .expect("web registered");
        let any = SidecarOptions::default().public_bind("127.0.0.1:0".parse().expect("address"));
        let socat_sidecar =
            Sidecar::start(&self.primary, &(&socat_token).into(), "socat", any.clone())
                .await
                .expect("socat sidecar starts");
        let web_sidecar = Sidecar::start(&self.secondary, &(&web_token).into(), "web", any)
            .await
            .expect("web sidecar starts");
        let (sni, upstream) = web_sidecar.upstreams()[0].clone();
        let apps = Apps {
            socat_token,
            web_token,
            echo,
            socat_sidecar,
            web_sidecar,
            upstream,
            sni,
        };
        self.wait_routes(&apps).await;
        apps
    }

    /// Waits until every path to socat is known where it is used: the primary's gateways
    /// route socat's SNI to its sidecar, the secondary's gateways route it to the primary's
    /// gateways, and the secondary knows the primary's gateways and socat's sidecar address.
    pub(crate) async fn wait_routes(&self, apps: &Apps) {
        let socat = vec![apps.socat_sidecar.public_addr()];
        let wans = sorted(
            self.primary_gateways
                .iter()
                .map(MeshGateway::wan_addr)
                .collect(),
        );
        let lans = sorted(
            self.secondary_gateways
                .iter()
                .map(MeshGateway::lan_addr)
                .collect(),
        );
        let primary_dc: mesh::core::DatacenterName = "primary".parse().expect("datacenter");
        let socat_name: mesh::core::ServiceName = "socat".parse().expect("service name");
        wait_until("the routes to socat", || {
            let (socat, wans, lans) = (socat.clone(), wans.clone(), lans.clone());
            let (primary_dc, socat_name) = (primary_dc.clone(), socat_name.clone());
            async move {
                let primary_ok = self
                    .primary_gateways
                    .iter()
                    .all(|g| routed_to(g, &apps.sni) == socat);
                let secondary_ok = self
                    .secondary_gateways
                    .iter()
                    .all(|g| sorted(routed_to(g, &apps.sni)) == wans);
                let fed = self
                    .secondary
                    .catalog()
                    .federation()
                    .await
                    .unwrap_or_default();
                let fed_wans = sorted(
                    fed.iter()
                        .filter(|g| g.datacenter == primary_dc)
                        .map(|g| g.wan)
                        .collect(),
                );
                let local_lans = sorted(
                    fed.iter()
                        .filter(|g| g.datacenter.as_str() == "secondary")
                        .map(|g| g.lan)
                        .collect(),
                );
                let endpoints = self
                    .secondary
                    .catalog()
                    .remote_endpoints(&primary_dc, &socat_name)
                    .await
                    .unwrap_or_default();
                primary_ok
                    && secondary_ok
                    && fed_wans == wans
                    && local_lans == lans
                    && endpoints == socat
            }
        })
        .await;
    }
}

/// Waits until `dc` resolves the token `secret` (it replicated); on time-out the panic
/// message shows where replication of the ACL tables stands.
pub(crate) async fn wait_token(dc: &Datacenter, secret: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while dc.acl().authorizer(&secret.into()).is_err() {
        if tokio::time::Instant::now() >= deadline {
            let mut state = String::new();
            for s in dc.replication_status() {
                if s.table.as_str().starts_with("acl-") {
                    let local = dc.store().table_index(&s.table);
                    let records = dc.store().list(&s.table).await.map(|l| l.records.len());
                    state.push_str(&format!(
                        "\n  {}: local index {local:?}, {records:?} records, status {s:?}",
                        s.table
                    ));
                }
            }
            panic!(
                "timed out after {WAIT:?} waiting for a token to replicate to {}:{state}",
                dc.name()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
