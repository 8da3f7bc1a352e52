//! `mesh connect proxy|envoy|gateway`: a sidecar or a mesh gateway in its own process,
//! driven by an agent's HTTP API, until SIGINT or SIGTERM.
//!
//! - `mesh connect proxy -sidecar-for ID` (also `mesh connect envoy -sidecar-for ID`, the
//!   guide's line): the sidecar of the registered service instance `ID`, listening where its
//!   `<ID>-sidecar-proxy` registration says. On stop it drains; the registration stays (it
//!   belongs to the service's definition).
//! - `mesh connect envoy -mesh-gateway -register -service-name NAME -address LAN
//!   -wan-address WAN` (also `mesh connect gateway …`): a mesh gateway listening on `LAN`
//!   and `WAN`, registered under `-proxy-id` (default: `NAME-<LAN port>`). On stop it
//!   deregisters, then drains.
//!
//! A sidecar holds at most `-max-connections` connections at once (1024 by default); over
//! it, new ones are closed on accept, counted and logged.
//!
//! `-http-addr` may be repeated (or hold a comma-separated list): the process fails over
//! between the servers and keeps serving what it knows while none answers.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use mesh::Secret;
use mesh::core::ServiceName;
use mesh::dataplane::{AgentControlPlane, AgentOptions};

use mesh::{MeshGateway, MeshGatewayOptions, Sidecar, SidecarOptions};

use crate::cli::agent::long_running;
use crate::cli::flags::HttpFlags;
use crate::cli::{Doing, Failure, eprint_line};

/// How long live connections may finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(10);

/// The flags of `mesh connect proxy|envoy|gateway`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Run the sidecar of this registered service instance ID
    #[arg(long = "sidecar-for", value_name = "ID")]
    sidecar_for: Option<String>,
    /// Run a mesh gateway
    #[arg(long = "mesh-gateway")]
    mesh_gateway: bool,
    /// Register the gateway (and deregister it on stop)
    #[arg(long)]
    register: bool,
    /// The gateway's service name
    #[arg(
        long = "service-name",
        value_name = "NAME",
        default_value = "mesh-gateway"
    )]
    service_name: String,
    /// The gateway's instance ID (default: <service-name>-<LAN port>)
    #[arg(long = "proxy-id", value_name = "ID")]
    proxy_id: Option<String>,
    /// The gateway's LAN address, host:port (where this datacenter's sidecars reach it)
    #[arg(long, value_name = "ADDR")]
    address: Option<String>,
    /// The gateway's WAN address, host:port (where other datacenters' gateways reach it)
    #[arg(long = "wan-address", value_name = "ADDR")]
    wan_address: Option<String>,
    /// A sidecar's cap on connections held at once (over it, new ones are closed on accept)
    #[arg(long = "max-connections", value_name = "N", default_value_t = mesh::DEFAULT_SIDECAR_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Log level: trace, debug, info, warn, err (RUST_LOG, when set, wins)
    #[arg(long = "log-level", value_name = "LEVEL", default_value = "info")]
    log_level: String,
}

/// What the flags ask for.
enum Role {
    Sidecar {
        id: String,
        max_connections: usize,
    },
    Gateway {
        name: ServiceName,
        id: String,
        lan: SocketAddr,
        wan: SocketAddr,
    },
}

impl ProxyArgs {
    fn role(&self, gateway_implied: bool) -> Result<Role, Failure> {
        let gateway = self.mesh_gateway || gateway_implied;
        match (&self.sidecar_for, gateway) {
            (Some(_), true) => Err(Failure::usage(
                "-sidecar-for and -mesh-gateway cannot be combined",
            )),
            (Some(id), false) if id.trim().is_empty() => {
                Err(Failure::usage("-sidecar-for needs a service ID"))
            }
            (Some(id), false) => Ok(Role::Sidecar {
                id: id.clone(),
                max_connections: self.max_connections,
            }),
            (None, false) => Err(Failure::usage(
                "one of -sidecar-for or -mesh-gateway is required",
            )),
            (None, true) => {
                if !self.register {
                    return Err(Failure::usage(
                        "a mesh gateway needs -register (mesh gateways register themselves)",
                    ));
                }
                let name: ServiceName = self
                    .service_name
                    .parse()
                    .map_err(|e| Failure::new("reading -service-name", e))?;
                let lan = resolve("-address", self.address.as_deref())?;
                let wan = match self.wan_address.as_deref() {
                    Some(w) => resolve("-wan-address", Some(w))?,
                    None => lan,
                };
                let id = self
                    .proxy_id
                    .clone()
                    .unwrap_or_else(|| format!("{name}-{}", lan.port()));
                Ok(Role::Gateway { name, id, lan, wan })
            }
        }
    }

    /// The servers to reach: every `-http-addr` (comma-separated lists too), else the
    /// environment's or the default.
    fn agent_options(&self) -> Result<AgentOptions, Failure> {
        let config = self
            .http
            .client_config(|name| std::env::var(name).ok())
            .doing("configuring the HTTP client")?;
        let servers: Vec<String> = config
            .addr
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let token = Secret::new(config.token.unwrap_or_default());
        let mut opts = AgentOptions::new(servers, token);
        if let Some(ca) = config.ca_file {
            opts = opts.ca_file(ca);
        }
        Ok(opts)
    }
}

fn resolve(flag: &str, addr: Option<&str>) -> Result<SocketAddr, Failure> {
    let addr = addr.ok_or_else(|| Failure::usage(format!("{flag} is required")))?;
    addr.to_socket_addrs()
        .map_err(|e| Failure::new(format!("reading {flag} {addr:?}"), e))?
        .next()
        .ok_or_else(|| Failure::usage(format!("{flag} {addr:?} resolves to no address")))
}

/// Runs the command; returns the exit code. `gateway_implied` for `mesh connect gateway`.
pub(crate) fn run(args: ProxyArgs, gateway_implied: bool) -> i32 {
    match run_proxy(args, gateway_implied) {
        Ok(()) => 0,
        Err(failure) => {
            eprint_line(&failure.message());
            1
        }
    }
}

fn run_proxy(args: ProxyArgs, gateway_implied: bool) -> Result<(), Failure> {
    let role = args.role(gateway_implied)?;
    let opts = args.agent_options()?;
    let runtime = long_running("mesh-proxy", Some(&args.log_level))?;
    runtime.block_on(serve(role, opts))
}

async fn serve(role: Role, opts: AgentOptions) -> Result<(), Failure> {
    let token = opts.token.clone();
    let cp: Arc<AgentControlPlane> = AgentControlPlane::connect(opts)
        .await
        .doing("connecting to the agent")?;
    match role {
        Role::Sidecar {
            id,
            max_connections,
        } => {
            let opts = SidecarOptions::default().max_connections(max_connections);
            let sidecar = Sidecar::start(&cp, &token, &id, opts)
                .await
                .doing(&format!("starting the sidecar of {id}"))?;
            let upstreams: Vec<String> = sidecar
                .upstreams()
                .iter()
                .map(|(sni, addr)| format!("{addr} -> {sni}"))
                .collect();
            eprint_line(&format!(
                "==> sidecar of {id} running: public mTLS listener {}, upstreams [{}]",
                sidecar.public_addr(),
                upstreams.join(", ")
            ));
            stop_signal().await?;
            let cut = sidecar.shutdown(DRAIN).await;
            tracing::info!(service = %id, cut, "sidecar stopped");
        }
        Role::Gateway { name, id, lan, wan } => {
            let gw = MeshGateway::start(
                &cp,
                &token,
                MeshGatewayOptions::new(name.clone(), id.clone(), lan, wan),
            )
            .await
            .doing(&format!("starting mesh gateway {id}"))?;
            eprint_line(&format!(
                "==> mesh gateway {id} ({name}) running: LAN {}, WAN {}",
                gw.lan_addr(),
                gw.wan_addr()
            ));
            stop_signal().await?;
            let report = gw.shutdown(DRAIN).await;
            tracing::info!(gateway = %id, ?report, "mesh gateway stopped");
        }
    }
    Ok(())
}

/// Waits for SIGINT or SIGTERM.
async fn stop_signal() -> Result<(), Failure> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::new("installing the signal handler", e))?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(|e| Failure::new("waiting for a signal", e))?,
        _ = term.recv() => {}
    }
    eprint_line("==> stopping");
    Ok(())
}
