//! The guide "Connecting Services Across Datacenters", step by step, in one process over real
//! sockets and real TLS: two datacenters with ACLs default-deny, the CA, gateway policy and
//! tokens, two mesh gateways per datacenter, `proxy-defaults` with mode `local`, an echo
//! service `socat` in the primary, `web` in the secondary with upstream `socat` on 8181, the
//! connection refused before the intention exists, `intention create web socat` made in the
//! secondary, and "hello" echoed back through both datacenters' gateways.
//!
//! ```text
//! cargo run --example two_dc_mesh                 # walk the guide, exit 0 when every step passed
//! cargo run --example two_dc_mesh -- --serve      # then stay up: `nc 127.0.0.1 8181`
//! cargo run --example two_dc_mesh -- --port 9191  # another local port for the upstream
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use mesh::intentions::acl::DefaultPolicy;
use mesh::intentions::intention::Action;
use mesh::sni::GatewayConfig;
use mesh::{Datacenter, DatacenterConfig, MeshGateway, Sidecar, SidecarOptions, TokenSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The guide's mesh-gateway-policy.json, as written (three JSON objects one after another).
const GATEWAY_POLICY: &str = r#"{
"node_prefix": {
"": {
"policy": "read"
}
}
}
{
"service_prefix": {
"": {
"policy": "read"
}
}
}
{
"service": {
"mesh-gateway": {
"policy": "write"
}
}
}
"#;

/// The guide's replication token policy.
const REPLICATION_POLICY: &str = r#"{
"acl": "write",
"operator": "write",
"service_prefix": {
"" : {
"policy": "read"
}
}
}"#;

const PROXY_DEFAULTS: &str = r#"{
"Kind": "proxy-defaults",
"Name": "global",
"MeshGateway": "local"
}"#;

struct Args {
    serve: bool,
    port: u16,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        serve: false,
        port: 8181,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--serve" => args.serve = true,
            "--port" => {
                let v = it.next().ok_or("--port needs a value")?;
                args.port = v.parse().map_err(|_| format!("bad port {v:?}"))?;
            }
            "-h" | "--help" => {
                println!(
                    "two_dc_mesh: walks the mesh-gateway guide in one process\n\n\
                     --serve      stay up after the walk, so `nc 127.0.0.1 PORT` reaches socat\n\
                     --port PORT  web's local upstream port for socat (default 8181)"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

fn step(n: u32, what: &str) {
    println!("\n[{n}] {what}");
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nFAILED: {e}");
            let mut src = std::error::Error::source(e.as_ref());
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn run(args: Args) -> Result<(), BoxError> {
    let management = mesh_secret();

    step(1, "Enable Connect in the primary datacenter (ACLs on, default deny)");
    let mut pc = DatacenterConfig::new("primary".parse()?, "primary".parse()?);
    pc.acl.enabled = true;
    pc.acl.default_policy = DefaultPolicy::Deny;
    pc.acl.tokens.initial_management = Some(management.clone());
    let primary = Datacenter::start_primary(pc).await?;
    let roots = primary.roots()?;
    println!("    CA bootstrapped: trust domain {}", roots.trust_domain);
    println!("    active root {}", roots.active_root_id);

    step(2, "ACL replication token (acl, operator write; service_prefix \"\" read)");
    primary
        .acl_policy_create(&management, "replication", "ACL replication", REPLICATION_POLICY)
        .await?;
    let replication = primary
        .acl_token_create(
            &management,
            TokenSpec {
                description: "replication token".into(),
                policy_names: vec!["replication".into()],
                ..TokenSpec::default()
            },
        )
        .await?;
    println!("    replication token {}", replication.accessor_id);

    step(3, "Enable Connect in the secondary datacenter");
    let mut sc = DatacenterConfig::new("secondary".parse()?, "primary".parse()?);
    sc.acl.enabled = true;
    sc.acl.default_policy = DefaultPolicy::Deny;
    sc.acl.tokens.replication = Some(replication.secret_id.clone());
    let secondary = tokio::time::timeout(
        Duration::from_secs(30),
        Datacenter::start_secondary(sc, primary.in_process_link()),
    )
    .await
    .map_err(|_| "the secondary did not get its intermediate in 30 s")??;
    let sroots = secondary.roots()?;
    println!(
        "    secondary intermediate signed by the primary (same trust domain: {})",
        sroots.trust_domain == roots.trust_domain
    );

    step(4, "Gateway policy from mesh-gateway-policy.json, and a token per gateway");
    let dir = std::env::temp_dir().join(format!("mesh-guide-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let policy_file = dir.join("mesh-gateway-policy.json");
    std::fs::write(&policy_file, GATEWAY_POLICY)?;
    primary
        .acl_policy_create_from_file(&management, "mesh-gateway", "", &policy_file)
        .await?;
    let mut gw_tokens = Vec::new();
    for dc in ["primary", "secondary"] {
        let t = primary
            .acl_token_create(
                &management,
                TokenSpec {
                    description: format!("mesh-gateway {dc} datacenter token"),
                    policy_names: vec!["mesh-gateway".into()],
                    ..TokenSpec::default()
                },
            )
            .await?;
        println!("    token for the {dc} gateways: {}", t.accessor_id);
        gw_tokens.push(t.secret_id);
    }
    wait_token(&secondary, &gw_tokens[1]).await?;

    step(5, "Deploy two mesh gateways in each datacenter");
    let gw_name = "mesh-gateway".parse()?;
    let mut gateways = Vec::new();
    for (dc, token, octet) in [(&primary, &gw_tokens[0], 1), (&secondary, &gw_tokens[1], 2)] {
        for i in 1..=2u8 {
            let id = format!("gateway-{}-{i}", dc.name());
            let lan: SocketAddr = "127.0.0.1:0".parse()?;
            let wan: SocketAddr = format!("127.0.{octet}.{i}:0").parse()?;
            let gw = MeshGateway::start(dc, token, &gw_name, &id, lan, wan, GatewayConfig::default()).await?;
            println!("    {id}: LAN {} WAN {}", gw.lan_addr(), gw.wan_addr());
            gateways.push(gw);
        }
    }

    step(6, "proxy-defaults: MeshGateway local (written in the secondary, stored by the primary)");
    secondary.config_write(&management, PROXY_DEFAULTS).await?;
    println!("    {PROXY_DEFAULTS}");

    step(7, "Register socat (echo) in the primary and web in the secondary, with sidecars");
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let echo_port = echo.local_addr()?.port();
    tokio::spawn(echo_server(echo));
    let service_token = |name: &str| TokenSpec {
        description: format!("{name} service token"),
        service_identities: vec![name.to_owned()],
        ..TokenSpec::default()
    };
    let socat_token = primary.acl_token_create(&management, service_token("socat")).await?;
    let web_token = primary.acl_token_create(&management, service_token("web")).await?;
    wait_token(&secondary, &web_token.secret_id).await?;
    let socat_json = format!(
        r#"{{"service": {{"name": "socat", "port": {echo_port}, "token": "{}", "connect": {{"sidecar_service": {{}} }} }} }}"#,
        socat_token.secret_id
    );
    primary.register_service("", &socat_json).await?;
    let web_json = format!(
        r#"{{"service": {{"name": "web", "port": 8080, "token": "{}",
            "connect": {{"sidecar_service": {{"proxy": {{"upstreams": [{{
              "destination_name": "socat", "datacenter": "primary", "local_bind_port": {} }}]}}}}}}}}}}"#,
        web_token.secret_id, args.port
    );
    secondary.register_service("", &web_json).await?;
    let any = SidecarOptions {
        public_bind: Some("127.0.0.1:0".parse()?),
    };
    let socat_sidecar = Sidecar::start(&primary, &socat_token.secret_id, "socat", any.clone()).await?;
    let web_sidecar = Sidecar::start(&secondary, &web_token.secret_id, "web", any).await?;
    println!("    socat on 127.0.0.1:{echo_port}, its sidecar on {}", socat_sidecar.public_addr());
    let (sni, upstream) = web_sidecar.upstreams()[0].clone();
    println!("    web's upstream socat on {upstream} (SNI {sni})");

    step(8, "Before any intention: default deny refuses web -> socat");
    match echo_once(upstream, b"hello\n").await {
        Ok(reply) if reply == b"hello\n" => {
            return Err("the connection was allowed without an intention".into());
        }
        _ => println!("    refused: {}", secondary.authorize(web_sidecar.service().spiffe_id(), &"socat".parse()?).reason),
    }

    step(9, "consul intention create web socat (made in the secondary, forwarded to the primary)");
    secondary
        .intention_create(&management, "web", "socat", Action::Allow)
        .await?;
    let decision = primary.authorize(web_sidecar.service().spiffe_id(), &"socat".parse()?);
    println!("    primary says: {}", decision.reason);

    step(10, &format!("Test the connection: nc 127.0.0.1 {}", upstream.port()));
    for line in [&b"hello\n"[..], b"echo\n"] {
        let reply = echo_once(upstream, line).await?;
        if reply != line {
            return Err(format!("expected {line:?} back, got {reply:?}").into());
        }
        print!("    {}", String::from_utf8_lossy(&reply));
    }
    let through: Vec<String> = gateways
        .iter()
        .filter(|g| g.stats().active() > 0 || g.stats().refused().total() > 0 || accepted(g) > 0)
        .map(|g| g.id().to_owned())
        .collect();
    println!("    gateways that carried traffic: {}", through.join(", "));
    if !through.iter().any(|g| g.contains("secondary")) || !through.iter().any(|g| g.contains("primary")) {
        return Err("the echo did not pass through both datacenters' gateways".into());
    }
    println!("\nEvery step of the guide passed.");

    if args.serve {
        println!(
            "\nServing. Try: nc 127.0.0.1 {} (Ctrl-C to stop)",
            upstream.port()
        );
        tokio::signal::ctrl_c().await?;
    }
    for g in gateways {
        g.shutdown(Duration::from_secs(1)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn accepted(g: &MeshGateway) -> u64 {
    let s = g.stats();
    s.listener(mesh::sni::ListenerKind::Lan).accepted + s.listener(mesh::sni::ListenerKind::Wan).accepted
}

/// A fresh random secret for the management token of this run.
fn mesh_secret() -> String {
    use std::fmt::Write;
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("system random source");
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

async fn wait_token(dc: &Datacenter, secret: &str) -> Result<(), BoxError> {
    for _ in 0..500 {
        if dc.authorizer(secret).is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!("a token did not replicate to {}", dc.name()).into())
}

async fn echo_server(listener: TcpListener) {
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

/// Sends `line`, reads as many bytes back (or fails on close/time-out).
async fn echo_once(addr: SocketAddr, line: &[u8]) -> Result<Vec<u8>, BoxError> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(line).await?;
    let mut buf = vec![0u8; line.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await??;
    Ok(buf)
}
