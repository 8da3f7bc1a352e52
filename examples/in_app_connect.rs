//! The guide's echo call made in-app, with no sidecar: `socat` accepts mTLS itself with
//! `connect::Service` (each caller's identity checked against intentions inside the
//! handshake), and `web` dials its upstream with a `connect::Dialer` through the mesh
//! gateways of both datacenters.
//!
//! ```text
//! cargo run --example in_app_connect
//! ```

#[allow(dead_code)] // shared by both examples; each uses part of it
mod support;

use std::process::ExitCode;

use mesh::connect::Service;
use mesh::core::Upstream;
use mesh::intentions::intention::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::{BoxError, first_steps, gateways_used, service_token, step};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nFAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let g = first_steps().await?;

    step(7, "socat serves mTLS itself: connect::Service, no sidecar");
    let socat_token = service_token(&g, "socat").await?;
    let web_token = service_token(&g, "web").await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Registered with a sidecar stanza so gateways route to it; the "sidecar" is the app.
    g.primary
        .catalog().register_json(
            &(&socat_token).into(),
            &format!(
                r#"{{"name": "socat", "port": {}, "connect": {{"sidecar_service": {{"port": {}}}}}}}"#,
                addr.port(),
                addr.port()
            ),
        )
        .await?;
    let socat = Service::new(&g.primary, &(&socat_token).into(), "socat".parse()?).await?;
    println!("    socat {} accepts on {addr}", socat.spiffe_id());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok((mut tls, peer)) = socat.accept(tcp).await else {
                continue;
            };
            tokio::spawn(async move {
                println!("    socat: accepted {peer}");
                let mut buf = [0u8; 1024];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });

    step(8, "web dials socat in the primary with a connect::Dialer");
    let web = Service::new(&g.secondary, &(&web_token).into(), "web".parse()?).await?;
    let upstream: Upstream = serde_json::from_str(
        r#"{"destination_name": "socat", "datacenter": "primary", "local_bind_port": 8181}"#,
    )?;
    let dialer = web.dialer(&upstream)?;
    println!("    SNI {}", dialer.sni());
    if let Ok(mut s) = dialer.dial().await {
        let _ = s.write_all(b"hello\n").await;
        let mut b = [0u8; 6];
        if let Ok(Ok(_)) =
            tokio::time::timeout(std::time::Duration::from_secs(2), s.read_exact(&mut b)).await
        {
            return Err("allowed before any intention".into());
        }
    }
    println!("    refused before the intention (default deny)");

    step(9, "intention create web socat, then echo");
    g.secondary
        .intentions()
        .create(
            &(&g.management).into(),
            &"web".parse().expect("valid intention target"),
            &"socat".parse().expect("valid intention target"),
            Action::Allow,
        )
        .await?;
    let mut s = dialer.dial().await?;
    s.write_all(b"hello\n").await?;
    let mut b = [0u8; 6];
    s.read_exact(&mut b).await?;
    print!("    {}", String::from_utf8_lossy(&b));
    if &b != b"hello\n" {
        return Err("wrong echo".into());
    }
    println!("    gateways used: {}", gateways_used(&g).join(", "));
    println!("\nThe in-app call passed.");
    g.finish().await;
    Ok(())
}
