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

#[allow(dead_code)] // shared by both examples; each uses part of it
mod support;

use std::process::ExitCode;

use mesh::intentions::intention::Action;
use mesh::{Sidecar, SidecarOptions};
use tokio::net::TcpListener;

use support::{BoxError, echo_once, echo_server, first_steps, gateways_used, service_token, step};

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

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
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

async fn run(args: Args) -> Result<(), BoxError> {
    let g = first_steps().await?;

    step(
        7,
        "Register socat (echo) in the primary and web in the secondary, with sidecars",
    );
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let echo_port = echo.local_addr()?.port();
    tokio::spawn(echo_server(echo));
    let socat_token = service_token(&g, "socat").await?;
    let web_token = service_token(&g, "web").await?;
    let socat_json = format!(
        r#"{{"service": {{"name": "socat", "port": {echo_port}, "token": "{}", "connect": {{"sidecar_service": {{}} }} }} }}"#,
        socat_token
    );
    g.primary
        .catalog()
        .register_json(&"".into(), &socat_json)
        .await?;
    let web_json = format!(
        r#"{{"service": {{"name": "web", "port": 8080, "token": "{}",
            "connect": {{"sidecar_service": {{"proxy": {{"upstreams": [{{
              "destination_name": "socat", "datacenter": "primary", "local_bind_port": {} }}]}}}}}}}}}}"#,
        web_token, args.port
    );
    g.secondary
        .catalog()
        .register_json(&"".into(), &web_json)
        .await?;
    let any = SidecarOptions::default().public_bind("127.0.0.1:0".parse()?);
    let socat_sidecar =
        Sidecar::start(&g.primary, &(&socat_token).into(), "socat", any.clone()).await?;
    let web_sidecar = Sidecar::start(&g.secondary, &(&web_token).into(), "web", any).await?;
    println!(
        "    socat on 127.0.0.1:{echo_port}, its sidecar on {}",
        socat_sidecar.public_addr()
    );
    let (sni, upstream) = web_sidecar.upstreams()[0].clone();
    println!("    web's upstream socat on {upstream} (SNI {sni})");

    step(8, "Before any intention: default deny refuses web -> socat");
    match echo_once(upstream, b"hello\n").await {
        Ok(reply) if reply == b"hello\n" => {
            return Err("the connection was allowed without an intention".into());
        }
        _ => println!(
            "    refused: {}",
            g.secondary
                .intentions()
                .authorize(web_sidecar.service().spiffe_id(), &"socat".parse()?)
                .reason
        ),
    }

    step(
        9,
        "consul intention create web socat (made in the secondary, forwarded to the primary)",
    );
    g.secondary
        .intentions()
        .create(
            &(&g.management).into(),
            &"web".parse().expect("valid intention target"),
            &"socat".parse().expect("valid intention target"),
            Action::Allow,
        )
        .await?;
    let decision = g
        .primary
        .intentions()
        .authorize(web_sidecar.service().spiffe_id(), &"socat".parse()?);
    println!("    primary says: {}", decision.reason);

    step(
        10,
        &format!("Test the connection: nc 127.0.0.1 {}", upstream.port()),
    );
    for line in [&b"hello\n"[..], b"echo\n"] {
        let reply = echo_once(upstream, line).await?;
        if reply != line {
            return Err(format!("expected {line:?} back, got {reply:?}").into());
        }
        print!("    {}", String::from_utf8_lossy(&reply));
    }
    let through = gateways_used(&g);
    println!("    gateways that carried traffic: {}", through.join(", "));
    if !through.iter().any(|g| g.contains("secondary"))
        || !through.iter().any(|g| g.contains("primary"))
    {
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
    g.finish().await;
    Ok(())
}
