//! The part of the guide both examples share: two datacenters with ACLs default-deny, the
//! CA, the replication and gateway tokens, two mesh gateways per datacenter, and
//! `proxy-defaults` with mode `local`; plus small helpers (echo server, echo client).

use std::net::SocketAddr;
use std::time::Duration;

use mesh::intentions::acl::DefaultPolicy;

use mesh::{Datacenter, DatacenterConfig, MeshGateway, MeshGatewayOptions, TokenSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Any error, for the examples.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The guide's mesh-gateway-policy.json, as written (three JSON objects one after another).
const GATEWAY_POLICY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/guide/mesh-gateway-policy.json"
);

/// The guide's replication token policy.
const REPLICATION_POLICY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/guide/replication-policy.json"
));

/// The guide's proxy-defaults.json.
const PROXY_DEFAULTS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/guide/proxy-defaults.json"
));

/// The two datacenters of the guide after its first steps.
pub(crate) struct Guide {
    /// The primary datacenter.
    pub(crate) primary: Datacenter,
    /// The secondary datacenter.
    pub(crate) secondary: Datacenter,
    /// The management token's secret.
    pub(crate) management: String,
    /// Two gateways per datacenter.
    pub(crate) gateways: Vec<MeshGateway>,
}

impl Guide {
    /// Stops the gateways.
    pub(crate) async fn finish(self) {
        for gw in self.gateways {
            gw.shutdown(Duration::from_secs(1)).await;
        }
    }
}

/// Prints a numbered step.
pub(crate) fn step(n: u32, what: &str) {
    println!("\n[{n}] {what}");
}

/// Steps 1-6 of the guide.
pub(crate) async fn first_steps() -> Result<Guide, BoxError> {
    let management = mesh_secret();

    step(
        1,
        "Enable Connect in the primary datacenter (ACLs on, default deny)",
    );
    let mut pc = DatacenterConfig::new("primary".parse()?, "primary".parse()?);
    pc.acl.enabled = true;
    pc.acl.default_policy = DefaultPolicy::Deny;
    pc.acl.tokens.initial_management = Some((&management).into());
    let primary = Datacenter::start_primary(pc).await?;
    let roots = primary.connect_ca().roots()?;
    println!("    CA bootstrapped: trust domain {}", roots.trust_domain);
    println!("    active root {}", roots.active_root_id);

    step(
        2,
        "ACL replication token (acl, operator write; service_prefix \"\" read)",
    );
    primary
        .acl()
        .policy_create(
            &(&management).into(),
            "replication",
            "ACL replication",
            REPLICATION_POLICY,
        )
        .await?;
    let replication = primary
        .acl()
        .token_create(
            &(&management).into(),
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
    sc.acl.tokens.replication = Some((&replication.secret_id).into());
    let secondary = tokio::time::timeout(
        Duration::from_secs(30),
        Datacenter::start_secondary(sc, primary.in_process_link()),
    )
    .await
    .map_err(|_| "the secondary did not get its intermediate in 30 s")??;
    let sroots = secondary.connect_ca().roots()?;
    println!(
        "    secondary intermediate signed by the primary (same trust domain: {})",
        sroots.trust_domain == roots.trust_domain
    );

    step(
        4,
        "Gateway policy from mesh-gateway-policy.json, and a token per gateway",
    );
    primary
        .acl()
        .policy_create_from_file(
            &(&management).into(),
            "mesh-gateway",
            "",
            std::path::Path::new(GATEWAY_POLICY_FILE),
        )
        .await?;
    let mut gw_tokens = Vec::new();
    for dc in ["primary", "secondary"] {
        let t = primary
            .acl()
            .token_create(
                &(&management).into(),
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
    let gw_name: mesh::core::ServiceName = "mesh-gateway".parse()?;
    let mut gateways = Vec::new();
    for (dc, token, octet) in [(&primary, &gw_tokens[0], 1), (&secondary, &gw_tokens[1], 2)] {
        for i in 1..=2u8 {
            let id = format!("gateway-{}-{i}", dc.name());
            let lan: SocketAddr = "127.0.0.1:0".parse()?;
            let wan: SocketAddr = format!("127.0.{octet}.{i}:0").parse()?;
            let gw = MeshGateway::start(
                dc,
                &token.into(),
                MeshGatewayOptions::new(gw_name.clone(), id.clone(), lan, wan),
            )
            .await?;
            println!("    {id}: LAN {} WAN {}", gw.lan_addr(), gw.wan_addr());
            gateways.push(gw);
        }
    }

    step(
        6,
        "proxy-defaults: MeshGateway local (written in the secondary, stored by the primary)",
    );
    secondary
        .config_entries()
        .write_json(&(&management).into(), PROXY_DEFAULTS)
        .await?;
    println!("    {PROXY_DEFAULTS}");
    Ok(Guide {
        primary,
        secondary,
        management,
        gateways,
    })
}

/// Creates a token holding the service identity of `name` and waits until `also` has it.
pub(crate) async fn service_token(g: &Guide, name: &str) -> Result<String, BoxError> {
    let t = g
        .primary
        .acl()
        .token_create(
            &(&g.management).into(),
            TokenSpec {
                description: format!("{name} service token"),
                service_identities: vec![name.to_owned()],
                ..TokenSpec::default()
            },
        )
        .await?;
    wait_token(&g.secondary, &t.secret_id).await?;
    Ok(t.secret_id)
}

/// Ids of the gateways that accepted at least one connection.
pub(crate) fn gateways_used(g: &Guide) -> Vec<String> {
    g.gateways
        .iter()
        .filter(|gw| accepted(gw) > 0)
        .map(|gw| gw.id().to_owned())
        .collect()
}

pub(crate) fn accepted(g: &MeshGateway) -> u64 {
    let s = g.stats();
    s.listener(mesh::sni::ListenerKind::Lan).accepted
        + s.listener(mesh::sni::ListenerKind::Wan).accepted
}

/// A fresh random secret for the management token of this run.
pub(crate) fn mesh_secret() -> String {
    use std::fmt::Write;
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("system random source");
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

pub(crate) async fn wait_token(dc: &Datacenter, secret: &str) -> Result<(), BoxError> {
    for _ in 0..500 {
        if dc.acl().authorizer(&secret.into()).is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!("a token did not replicate to {}", dc.name()).into())
}

pub(crate) async fn echo_server(listener: TcpListener) {
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

/// Sends `line`, reads as many bytes back (or fails on close/time-out).
pub(crate) async fn echo_once(addr: SocketAddr, line: &[u8]) -> Result<Vec<u8>, BoxError> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(line).await?;
    let mut buf = vec![0u8; line.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await??;
    Ok(buf)
}
