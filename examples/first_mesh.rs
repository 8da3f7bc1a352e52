//! A first mesh, in one file and with no helper: two datacenters, `api` in dc2 accepting
//! mesh mTLS itself, and `web` in dc1 calling it through both datacenters' mesh gateways.
//! ACLs are on with default deny (the library's default), so the call is refused until an
//! intention allows it.
//!
//! ```text
//! cargo run --example first_mesh
//! ```

use std::time::Duration;

use mesh::connect::Service;
use mesh::core::{MeshGatewayMode, ServiceDefinition, Upstream};
use mesh::{Datacenter, DatacenterConfig, MeshGateway, MeshGatewayOptions, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The primary, dc1, with a management token; dc2 replicates from it. (In production the
    // secondary's token holds only the replication rights.)
    let token = Secret::new("a-management-secret");
    let mut config = DatacenterConfig::new("dc1".parse()?, "dc1".parse()?);
    config.acl.tokens.initial_management = Some(token.clone());
    let dc1 = Datacenter::start_primary(config).await?;
    let mut config = DatacenterConfig::new("dc2".parse()?, "dc1".parse()?);
    config.acl.tokens.replication = Some(token.clone());
    let dc2 = Datacenter::start_secondary(config, dc1.in_process_link()).await?;

    // One mesh gateway per datacenter: between datacenters, traffic goes gateway to gateway,
    // routed by SNI without being decrypted.
    let local = "127.0.0.1:0".parse()?;
    let mut gateways = Vec::new();
    for (dc, id) in [(&dc1, "gateway-dc1"), (&dc2, "gateway-dc2")] {
        let opts = MeshGatewayOptions::new("mesh-gateway".parse()?, id, local, local);
        gateways.push(MeshGateway::start(dc, &token, opts).await?);
    }

    // api, in dc2, accepts mTLS itself: each caller's SPIFFE ID is checked against the
    // intentions inside the handshake.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api_def = ServiceDefinition::connect_native("api".parse()?, listener.local_addr()?);
    dc2.catalog().register(&token, &api_def).await?;
    let api = Service::new(&dc2, &token, "api".parse()?).await?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok((mut tls, caller)) = api.accept(tcp).await else {
                continue;
            };
            println!("api: accepted {caller}");
            let mut line = [0u8; 6];
            if tls.read_exact(&mut line).await.is_ok() {
                let _ = tls.write_all(&line).await;
            }
        }
    });

    // web, in dc1, dials api in dc2 through the local gateway.
    let web = Service::new(&dc1, &token, "web".parse()?).await?;
    let mut upstream = Upstream::service("api".parse()?, 9191);
    upstream.datacenter = Some("dc2".parse()?);
    upstream.mesh_gateway.mode = MeshGatewayMode::Local;
    let dialer = web.dialer(&upstream)?;
    println!("web dials {}", dialer.sni());

    // Default deny: refused until an intention allows web -> api.
    if call(&dialer).await.is_ok() {
        return Err("web reached api before any intention allowed it".into());
    }
    println!("refused: no intention allows web -> api yet");
    dc2.intentions()
        .allow(&token, &"web".parse()?, &"api".parse()?)
        .await?;
    let echo = call(&dialer).await?;
    println!("api echoed {:?}", String::from_utf8_lossy(&echo));

    for gateway in gateways {
        gateway.shutdown(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// One call: "hello\n" there and back, or an error if the handshake or the echo fails.
async fn call(dialer: &mesh::connect::Dialer) -> Result<[u8; 6], BoxError> {
    let mut tls = dialer.dial().await?;
    tls.write_all(b"hello\n").await?;
    let mut echo = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(2), tls.read_exact(&mut echo)).await??;
    Ok(echo)
}
