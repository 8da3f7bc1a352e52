//! In-app Connect through a running agent: an application that accepts as `payments` and
//! dials it as `web`, each with its own mTLS identity, with no control plane in the process.
//!
//! Everything comes from the agent's HTTP API: the CA roots, the leaf certificates (signed
//! from CSRs; the private keys never leave this process), the intentions of `payments` and
//! where `payments` is. Start an agent and allow the pair first (see the README's "Run it as
//! processes"):
//!
//! ```sh
//! mesh agent -config-file testdata/guide/agents/primary.hcl &
//! export CONSUL_HTTP_ADDR=127.0.0.1:8500 CONSUL_HTTP_TOKEN=b1gs33cr3-0000-4000-8000-000000000001
//! mesh intention create web payments
//! cargo run --example agent_connect
//! ```
//!
//! `CONSUL_HTTP_ADDR` may list several servers, comma-separated (requests fail over between
//! them); `CONSUL_CACERT` names the CA file of an HTTPS agent. The token needs
//! `service:write` on `payments` and `web`.

use std::sync::Arc;

use mesh::Secret;
use mesh::client::ClientConfig;
use mesh::connect::Service;
use mesh::core::Upstream;
use mesh::dataplane::{AgentControlPlane, AgentOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let env = ClientConfig::from_env()?;
    let token = Secret::new(env.token.clone().unwrap_or_default());
    let servers: Vec<String> = env
        .addr
        .split(',')
        .map(str::trim)
        .map(String::from)
        .collect();
    let mut opts = AgentOptions::new(servers, token.clone());
    if let Some(ca) = env.ca_file.clone() {
        opts = opts.ca_file(ca);
    }
    let cp = AgentControlPlane::connect(opts).await?;
    println!(
        "connected to datacenter {} via {}",
        mesh::dataplane::ControlPlane::datacenter(&*cp),
        cp.current_server()
    );

    // payments: a Connect-native service, registered at the address it listens on.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let client = mesh::client::Client::new(env)?;
    let registration = serde_json::json!({
        "Name": "payments",
        "ID": "payments-example",
        "Address": addr.ip().to_string(),
        "Port": addr.port(),
        "Connect": {"Native": true},
    });
    client
        .put("/v1/agent/service/register", Some(registration.into()))
        .await?;
    let payments = Arc::new(Service::new(&cp, &token, "payments".parse()?).await?);
    println!("payments: {} listening on {addr}", payments.spiffe_id());
    let server = payments.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                match server.accept(tcp).await {
                    Ok((mut tls, caller)) => {
                        let mut buf = [0u8; 1024];
                        if let Ok(n) = tls.read(&mut buf).await {
                            let _ = tls.write_all(&buf[..n]).await;
                            let _ = tls.shutdown().await;
                        }
                        println!("payments: served {caller}");
                    }
                    Err(e) => println!("payments: refused a caller: {e}"),
                }
            });
        }
    });

    // web: dials payments through the mesh (mTLS, SNI, intentions checked by payments).
    let web = Service::new(&cp, &token, "web".parse()?).await?;
    let dialer = web.dialer(&Upstream::service("payments".parse()?, 0))?;
    let outcome = async {
        let mut tls = dialer.dial().await?;
        tls.write_all(b"hello").await?;
        let mut reply = Vec::new();
        tls.read_to_end(&mut reply).await?;
        Ok::<_, Box<dyn std::error::Error>>(reply)
    }
    .await;
    client
        .put("/v1/agent/service/deregister/payments-example", None)
        .await?;
    match outcome {
        Ok(reply) if reply == b"hello" => {
            println!("web -> payments: {}", String::from_utf8_lossy(&reply));
            Ok(())
        }
        Ok(reply) => Err(format!("unexpected reply {reply:?}").into()),
        Err(e) => Err(format!(
            "web -> payments failed: {}\n(is there an intention allowing it? `mesh intention create web payments`)",
            mesh::core::error_chain(e.as_ref())
        )
        .into()),
    }
}
