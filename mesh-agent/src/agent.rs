//! A running `mesh agent`: one server of its datacenter.
//!
//! It starts the datacenter from the configuration (the primary, or a secondary that reaches
//! its primary's server port through `retry_join_wan`), serves the replication protocol on
//! the server port and the HTTP API on the HTTP (and HTTPS) port, registers the services its
//! configuration files define, re-reads them on `mesh reload` or SIGHUP, and stops on SIGINT
//! or SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh::ca::tls::{ConnectAuthorizer, ExpectedServer, TlsIdentity, TrustBundle};
use mesh::ca::{IssuedLeaf, LeafManager, LeafManagerOptions, LeafSigner, Refusal};
use mesh::core::{ServerId, Sni, SpiffeId};
use mesh::replication_engine::tls::TlsConnector;
use mesh::replication_engine::{
    FramedTransport, ListRequest, RemoteErrorKind, ReplicationServer, SecretToken, ServeConfig,
    TcpConnector, Transport, TransportError,
};
use mesh::{Datacenter, DatacenterConfig, Secret};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};

use crate::config::{AgentConfig, ConfigError};
use crate::http::{AgentInfo, ApiState, HttpConfig};
use crate::metrics::Metrics;

/// How long a secondary may take to reach its primary and get its intermediate signed before
/// start-up fails.
const SECONDARY_START: Duration = Duration::from_secs(30);
/// How long the first probe of the primary may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the agent stopped or could not start. Each variant names what failed and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The configuration is unusable.
    #[error("configuration")]
    Config(#[from] ConfigError),
    /// With state on etcd: this server stopped leading its datacenter (etcd unreachable for
    /// longer than the lease, or another server took over); started again, it stands by.
    #[error("this server no longer leads its datacenter")]
    LeadershipLost,
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what})")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The datacenter could not start.
    #[error("starting datacenter {datacenter}")]
    Start {
        /// The datacenter.
        datacenter: String,
        /// The cause.
        #[source]
        source: mesh::Error,
    },
    /// A secondary has no way to reach its primary.
    #[error(
        "datacenter {0} is a secondary (primary_datacenter differs) but no primary server is \
         configured: set retry_join_wan to the primary's server address (host:port)"
    )]
    NoPrimary(String),
    /// The primary refused this secondary's replication token.
    #[error("the primary at {addr} refused the replication token: {message}")]
    ReplicationToken {
        /// The primary's address.
        addr: String,
        /// What the primary said.
        message: String,
    },
    /// The server at the primary's address is not the primary the configuration names.
    #[error(
        "primary_datacenter is {configured:?}, but the server at {addr} is {}",
        match found { Some(f) => format!("the primary of datacenter {f:?}"), None => "not a primary".to_owned() }
    )]
    WrongPrimary {
        /// The address.
        addr: String,
        /// `primary_datacenter` as configured.
        configured: String,
        /// The primary the server says it is.
        found: Option<String>,
    },
    /// The primary could not be reached.
    #[error("cannot reach the primary's server at {addr}")]
    PrimaryUnreachable {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: TransportError,
    },
    /// The primary's server certificate is not one this secondary trusts.
    #[error(
        "the primary's server at {addr} presented a certificate this secondary does not trust \
         (is tls.internal_rpc.ca_file the primary's mesh root?)"
    )]
    PrimaryUntrusted {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: TransportError,
    },
    /// No certificate the primary presented has the configured root fingerprint.
    #[error(
        "none of the {presented} certificates the server at {addr} presented has the SHA-256 \
         fingerprint of tls.internal_rpc.primary_root_sha256: it is not the primary whose root \
         was fingerprinted (or the fingerprint is not of its active root)"
    )]
    RootFingerprint {
        /// The primary's address.
        addr: String,
        /// How many certificates the server presented.
        presented: usize,
    },
    /// The primary would not sign this secondary's server certificate.
    #[error("the primary at {addr} refused to enroll this server: {message}")]
    Enrollment {
        /// The primary's address.
        addr: String,
        /// What the primary said.
        message: String,
    },
    /// Start-up took too long.
    #[error("{0}")]
    Timeout(String),
    /// A TLS file could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Anything else at run time.
    #[error("{0}")]
    Other(String),
}

/// Where the agent's configuration comes from, so that a reload re-reads the same files.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// `-config-file` arguments, in order.
    pub files: Vec<PathBuf>,
    /// `-config-dir` arguments, in order.
    pub dirs: Vec<PathBuf>,
}

/// Runs the agent until SIGINT/SIGTERM, with configuration read once from `config` (no
/// reload of files: see [`run_from`]).
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    run_with(config, None).await
}

/// Reads the configuration from `sources` and runs the agent until SIGINT/SIGTERM; `mesh
/// reload` and SIGHUP re-read the same sources.
pub async fn run_from(sources: ConfigSources) -> Result<(), AgentError> {
    let config = AgentConfig::load(&sources.files, &sources.dirs)?;
    run_with(config, Some(sources)).await
}

async fn run_with(config: AgentConfig, sources: Option<ConfigSources>) -> Result<(), AgentError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut signals = Signals::new();
    // A server standing by (state on etcd) may wait long before it starts: it still stops
    // when told to.
    let running = tokio::select! {
        r = start(config, sources, stop_rx) => r?,
        () = signals.stop() => {
            tracing::info!("agent stopping before it started");
            stop_tx.send_replace(true);
            return Ok(());
        }
    };
    tracing::info!(
        datacenter = %running.dc.name(),
        http = ?running.http_addr,
        server = %running.server_addr,
        "agent running"
    );
    // With state on etcd, leadership can be lost (etcd unreachable past the lease, another
    // server took over): this server's writes then fail. It goes on answering reads, flagged
    // stale, for as long as etcd does not answer (no server can lead then), and stops once
    // it does, so that its supervisor starts it again to stand by.
    let lost = async {
        match running.dc.leadership_lost() {
            Some(mut lost) => {
                let _ = lost.wait_for(|l| *l).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let deposed = tokio::select! {
        () = signals.serve(Some(running.clone())) => false,
        () = lost => true,
    };
    if deposed {
        tracing::error!(
            "this server no longer leads its datacenter: reads are answered flagged stale and \
             writes refused until etcd answers again"
        );
        tokio::select! {
            () = signals.stop() => {}
            () = etcd_answers(&running.dc) => {
                tracing::error!("etcd answers again: stopping, to stand by");
            }
        }
    }
    tracing::info!("agent stopping");
    stop_tx.send_replace(true);
    running.stopped().await;
    if deposed {
        return Err(AgentError::LeadershipLost);
    }
    Ok(())
}

/// A started agent: its datacenter and the addresses it serves on.
#[derive(Clone)]
pub struct Running {
    /// The datacenter this agent serves.
    pub dc: Datacenter,
    /// The HTTP API address, if served.
    pub http_addr: Option<std::net::SocketAddr>,
    /// The HTTPS API address, if served.
    pub https_addr: Option<std::net::SocketAddr>,
    /// The replication (server) address.
    pub server_addr: std::net::SocketAddr,
    services: Arc<Services>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("dc", &self.dc)
            .field("http_addr", &self.http_addr)
            .field("server_addr", &self.server_addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Re-reads the configuration sources and brings the registered services in line with
    /// them (the guide's `consul reload`).
    pub async fn reload(&self) -> Result<(), String> {
        self.services.reload(&self.dc).await
    }

    async fn stopped(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().await);
        for t in tasks {
            // Each listener task ends once the stop signal is seen; a join error would only
            // mean it panicked, and it is over either way.
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// Starts every part of the agent and returns once it serves. `stop` ends the listeners.
pub async fn start(
    config: AgentConfig,
    sources: Option<ConfigSources>,
    stop: watch::Receiver<bool>,
) -> Result<Running, AgentError> {
    for w in &config.warnings {
        tracing::warn!(warning = %w, "configuration");
    }
    let mut dc_config = config.datacenter_config()?;
    let http_config = http_config(&config);
    // With state on etcd, this server stands by until it leads: its HTTP API forwards to the
    // leader meanwhile, and nothing else of it listens (its server port refuses, so that
    // secondaries and sidecars move on to the leader at once).
    #[cfg(feature = "etcd")]
    let early_http = match &mut dc_config.storage {
        mesh::Storage::Etcd(storage) => Some(stand_by(&config, storage, &http_config).await?),
        _ => None,
    };
    #[cfg(not(feature = "etcd"))]
    let early_http: Option<Option<TcpListener>> = None;
    let server_addr = config.server_addr;
    let server_listener =
        TcpListener::bind(server_addr)
            .await
            .map_err(|source| AgentError::Bind {
                what: "server (replication)",
                addr: server_addr,
                source,
            })?;
    let server_addr = server_listener
        .local_addr()
        .map_err(|e| AgentError::Other(e.to_string()))?;
    // Announced to the other datacenters, which forward `?dc=` requests here.
    let advertised_ip = config
        .advertise_addr_wan
        .or(config.advertise_addr)
        .unwrap_or(server_addr.ip());
    dc_config.server_address = (!advertised_ip.is_unspecified())
        .then(|| SocketAddr::new(advertised_ip, server_addr.port()));
    let mut client_identity: Option<(TlsIdentity, Option<Enrolled>)> = None;
    let mut primary_addrs = None;
    // The operator's own certificate for this server, when given: presented on the server
    // port and to the primary, with the operator's CA as the only trust.
    let operator = if config.server_tls.plaintext {
        None
    } else {
        operator_identity(&config)?
    };
    let dc = if config.is_primary() {
        Datacenter::start_primary(dc_config)
            .await
            .map_err(|source| AgentError::Start {
                datacenter: config.datacenter.to_string(),
                source,
            })?
    } else {
        // Where the primary is reached (its servers, or its gateways), resolved once.
        let targets = primary_targets(&config);
        if targets.is_empty() {
            return Err(AgentError::NoPrimary(config.datacenter.to_string()));
        }
        let primary = PrimaryAddrs {
            text: targets.join(", "),
            addrs: resolve_all(targets).await?,
        };
        let tls = &config.server_tls;
        let identity = match (tls.plaintext, &tls.ca_file, &tls.primary_root_sha256) {
            (true, _, _) => None,
            _ if operator.is_some() => operator.clone(),
            (false, Some(file), _) => Some(primary_trust(file)?),
            (false, None, Some(fingerprint)) => {
                Some(primary_trust_by_fingerprint(&config, &primary, fingerprint).await?)
            }
            (false, None, None) => {
                return Err(AgentError::Tls(
                    "a secondary verifies its primary's server certificate: set \
                     tls.internal_rpc.ca_file to the mesh root (`mesh ca roots -pem` against \
                     the primary), or tls.internal_rpc.primary_root_sha256 to its fingerprint \
                     (`mesh ca roots` prints it), or tls.internal_rpc.insecure_plaintext = true \
                     on every server"
                        .into(),
                ));
            }
        };
        let (dc, leaves) = start_secondary(&config, &primary, dc_config, identity.as_ref()).await?;
        client_identity = identity.map(|i| (i, leaves));
        primary_addrs = Some(primary.addrs);
        dc
    };

    let mut tasks = Vec::new();
    // The replication protocol: secondaries pull from here and forward writes to it.
    let server = dc.replication_server();
    let server_tls = if let Some(identity) = operator {
        let mut cfg = identity
            .server_config_optional_client(Arc::new(ServersOnly))
            .map_err(|e| AgentError::Tls(format!("server port: {e}")))?;
        cfg.alpn_protocols = vec![crate::http::SERVER_PORT_HTTP_ALPN.to_vec()];
        // The client identity toward the primary is the same operator identity.
        keep_until_stop(&mut tasks, &stop, client_identity.take());
        tracing::info!(addr = %server_addr, "the server port speaks TLS with the operator's certificate (tls.internal_rpc.cert_file)");
        Some((Arc::new(cfg), identity))
    } else if config.server_tls.plaintext {
        tracing::warn!(
            addr = %server_addr,
            "tls.internal_rpc.insecure_plaintext: the server port speaks plain TCP, and the \
             tokens and secrets replication carries cross the network readable"
        );
        None
    } else {
        let (leaves, roots) = server_leaves(&dc, &config).await?;
        if let Some((identity, enrolled)) = client_identity.take() {
            // Toward its primary a secondary keeps presenting the leaf it enrolled (renewed
            // with the primary) and, now that its own CA is up, trusts the mesh's roots as
            // they rotate.
            let (no_leaves_tx, no_leaves) = watch::channel(None);
            drop(no_leaves_tx);
            let follow = identity.follow(no_leaves, roots.clone());
            keep_until_stop(&mut tasks, &stop, (follow, identity, enrolled));
        }
        let first = leaves
            .current()
            .ok_or_else(|| AgentError::Tls("no server certificate issued".into()))?;
        let current_roots = roots.borrow().clone();
        // The active root rides after the chain, so that a secondary given only the root's
        // fingerprint finds it.
        let identity = TlsIdentity::with_leaf(&first, &current_roots)
            .map_err(|e| AgentError::Tls(format!("server certificate: {e}")))?
            .presenting_root();
        let mut cfg = identity
            .server_config_optional_client(Arc::new(ServersOnly))
            .map_err(|e| AgentError::Tls(format!("server port: {e}")))?;
        // Replication clients offer no ALPN; other servers forwarding `?dc=` offer HTTP.
        cfg.alpn_protocols = vec![crate::http::SERVER_PORT_HTTP_ALPN.to_vec()];
        let follow = identity.follow(leaves.subscribe(), roots);
        keep_until_stop(&mut tasks, &stop, (leaves, follow, identity.clone()));
        tracing::info!(addr = %server_addr, "the server port speaks TLS with the mesh CA's server identity");
        if config.is_primary() && !config.acl.enabled {
            tracing::warn!(
                addr = %server_addr,
                "ACLs are off: anyone who reaches the server port can enroll as a server of \
                 another datacenter and replicate; turn ACLs on (acl.enabled) to require a \
                 token with operator:write"
            );
        }
        Some((Arc::new(cfg), identity))
    };

    let services = Arc::new(Services {
        sources,
        token: config
            .acl
            .tokens
            .default
            .clone()
            .or_else(|| config.acl.tokens.agent.clone()),
        registered: Mutex::new(BTreeMap::new()),
    });
    services.apply(&dc, &config).await;

    let metrics = Arc::new(Metrics::new());
    let running_services = services.clone();
    let reload_dc = dc.clone();
    let mut state =
        ApiState::new(dc.clone(), http_config, metrics).with_reload(Arc::new(move || {
            let services = running_services.clone();
            let dc = reload_dc.clone();
            Box::pin(async move { services.reload(&dc).await })
        }));
    if let Some(t) = &config.acl.tokens.default {
        state = state.with_default_token(t.clone());
    }
    if let Some(lost) = dc.leadership_lost() {
        state = state.with_leadership(lost);
    }

    // Bound before the agent describes itself, so that it reports the ports it really has.
    let http_listener = match (early_http, config.http_addr) {
        (Some(bound), _) => bound,
        (None, Some(addr)) => Some(bind(addr, "HTTP API").await?),
        (None, None) => None,
    };
    let https_listener = match config.https_addr {
        Some(addr) => {
            let tls = match (&config.tls.cert_file, &config.tls.key_file) {
                (Some(_), Some(_)) => https_config(&config)?,
                _ => mesh_https_config(&dc, &config, stop.clone()).await?,
            };
            Some((tls, bind(addr, "HTTPS API").await?))
        }
        None => None,
    };
    let http_addr = http_listener.as_ref().and_then(|l| l.local_addr().ok());
    let https_addr = https_listener
        .as_ref()
        .and_then(|(_, l)| l.local_addr().ok());
    let info = AgentInfo {
        node_name: config.node_name.clone(),
        advertise_addr: config.advertise_addr.unwrap_or(config.bind_addr),
        server_addr,
        http_addr,
        https_addr,
        config: serde_json::json!({
            "Datacenter": config.datacenter.as_str(),
            "PrimaryDatacenter": config.primary_datacenter.as_str(),
            "NodeName": config.node_name,
            "Server": true,
            "ACLsEnabled": config.acl.enabled,
            "ConnectEnabled": config.connect_enabled,
        }),
        ..AgentInfo::default()
    };
    let mut state = state.with_agent_info(info);
    let handle = match server_tls {
        None => ReplicationServer::spawn_tcp(server, server_listener, None, ServeConfig::default()),
        Some((cfg, identity)) => {
            let primary = primary_addrs
                .take()
                .map(|addrs| (config.primary_datacenter.clone(), addrs));
            let mut federation = crate::http::Federation::new(identity, primary);
            if config.mesh_gateway_wan_federation {
                federation = federation.through_gateways();
            }
            state = state.with_federation(federation);
            let http = crate::http::server_port_http(state.clone(), stop.clone());
            ReplicationServer::spawn_tls_with(
                server,
                server_listener,
                cfg,
                ServeConfig::default(),
                crate::http::SERVER_PORT_HTTP_ALPN.to_vec(),
                http,
            )
        }
    }
    .map_err(|e| AgentError::Other(format!("replication listener: {e}")))?;
    {
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            handle.shutdown().await;
        }));
    }

    let listeners = http_listener
        .map(|l| (None, l, "HTTP API"))
        .into_iter()
        .chain(https_listener.map(|(tls, l)| (Some(tls), l, "HTTPS API")));
    for (tls, l, what) in listeners {
        let state = state.clone();
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::http::serve(l, tls, state, shutdown).await {
                tracing::error!(error = %e, "{what} stopped");
            }
        }));
    }
    Ok(Running {
        dc,
        http_addr,
        https_addr,
        server_addr,
        services,
        tasks: Arc::new(Mutex::new(tasks)),
    })
}

/// A secondary: enrolls with the primary (over a connection that verifies the primary's
/// certificate) and probes it, so that an untrusted or wrong primary, or a refused
/// replication token, fails start-up within seconds with its cause; then starts. With TLS,
/// returns the enrolled leaf's manager, which the caller keeps for as long as the agent runs.
async fn start_secondary(
    config: &AgentConfig,
    primary: &PrimaryAddrs,
    dc_config: DatacenterConfig,
    client_identity: Option<&TlsIdentity>,
) -> Result<(Datacenter, Option<Enrolled>), AgentError> {
    let name = config.datacenter.to_string();
    let addr_text = primary.text.clone();
    let tcp = TcpConnector::any_of(primary.addrs.clone())
        .ok_or_else(|| AgentError::NoPrimary(name.clone()))?;
    let token = SecretToken::new(config.acl.tokens.replication.clone().unwrap_or_default());
    let (transport, enrolled): (Arc<dyn Transport>, _) = match client_identity {
        None => {
            tracing::warn!(
                primary = %addr_text,
                "tls.internal_rpc.insecure_plaintext: replication and forwarded writes, tokens \
                 included, cross the network to the primary in plain TCP"
            );
            (Arc::new(FramedTransport::new(tcp)), None)
        }
        Some(identity) => {
            let primary = config.primary_datacenter.clone();
            let td = identity.bundle().trust_domain().clone();
            let expected = ExpectedServer::id(SpiffeId::Server(ServerId::new(td, primary.clone())));
            let cfg = identity
                .client_config(expected)
                .map_err(|e| AgentError::Tls(format!("server port client: {e}")))?;
            let sni = Sni::server(
                None,
                primary,
                "consul"
                    .parse()
                    .map_err(|e| AgentError::Other(format!("the servers' SNI domain: {e}")))?,
            );
            let connector = TlsConnector::new(tcp, Arc::new(cfg), &sni)
                .map_err(|e| AgentError::Tls(e.to_string()))?;
            let transport: Arc<dyn Transport> = Arc::new(FramedTransport::new(connector));
            if identity.local_id().is_some() {
                // The operator's certificate: nothing to enroll for.
                (transport, None)
            } else {
                let enrolled = enroll(config, identity, transport.clone(), token.clone())
                    .await
                    .map_err(|e| classify(e, config, &addr_text))?;
                (transport, Some(enrolled))
            }
        }
    };
    let probe = transport.list(ListRequest {
        token,
        table: mesh::tables::lookup(mesh::tables::DATACENTERS)
            .ok_or_else(|| AgentError::Other("the datacenters table is unknown".into()))?,
        min_index: mesh::core::Index::ZERO,
        wait: Duration::ZERO,
    });
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Err(_) => {
            return Err(AgentError::Timeout(format!(
                "the primary's server at {addr_text} did not answer within {PROBE_TIMEOUT:?}"
            )));
        }
        Ok(Err(e)) => return Err(classify(Failure::Transport(e), config, &addr_text)),
        // Whether it is the primary the configuration names, Datacenter::start_secondary
        // checks on its own probe.
        Ok(Ok(_)) => {}
    }
    match tokio::time::timeout(
        SECONDARY_START,
        Datacenter::start_secondary(dc_config, transport),
    )
    .await
    {
        Ok(Ok(dc)) => Ok((dc, enrolled)),
        Ok(Err(source)) => match source.kind() {
            mesh::ErrorKind::WrongPrimary { configured, found } => Err(AgentError::WrongPrimary {
                addr: addr_text,
                configured: configured.clone(),
                found: found.clone(),
            }),
            mesh::ErrorKind::ReplicationTokenRefused(message) => {
                Err(AgentError::ReplicationToken {
                    addr: addr_text,
                    message: message.clone(),
                })
            }
            _ => Err(AgentError::Start {
                datacenter: name,
                source,
            }),
        },
        Err(_) => Err(AgentError::Timeout(format!(
            "secondary {name} did not finish starting within {SECONDARY_START:?} (waiting for the \
             primary at {addr_text} to sign its intermediate: does the replication token hold \
             operator:write?)"
        ))),
    }
}

/// Why the first exchange with the primary failed.
enum Failure {
    /// The request failed on the way or the primary refused it.
    Transport(TransportError),
    /// Nothing came back in time.
    Timeout,
}

/// Says what a failed first exchange with the primary means for the operator.
fn classify(failure: Failure, config: &AgentConfig, addr_text: &str) -> AgentError {
    let addr = addr_text.to_owned();
    let e = match failure {
        Failure::Timeout => {
            return AgentError::Timeout(format!(
                "the primary's server at {addr_text} did not answer within {PROBE_TIMEOUT:?}"
            ));
        }
        Failure::Transport(e) => e,
    };
    match e {
        TransportError::Remote(r) if r.kind == RemoteErrorKind::Denied => {
            AgentError::ReplicationToken {
                addr,
                message: r.message,
            }
        }
        TransportError::Remote(r) => AgentError::Enrollment {
            addr,
            message: r.message,
        },
        TransportError::Tls(e) => {
            // A server of another datacenter of this mesh answered: the configuration names
            // the wrong primary, which is what to say.
            if let Some(mesh::ca::tls::PeerRefusal::WrongSpiffeId {
                got: SpiffeId::Server(found),
                ..
            }) = mesh::ca::tls::classify_io(&e)
            {
                return AgentError::WrongPrimary {
                    addr,
                    configured: config.primary_datacenter.to_string(),
                    found: Some(found.datacenter().to_string()),
                };
            }
            AgentError::PrimaryUntrusted {
                addr,
                source: TransportError::Tls(e),
            }
        }
        source => AgentError::PrimaryUnreachable { addr, source },
    }
}

/// A secondary's server identity as the primary signed it: the manager that renews it with
/// the primary, and the task that installs each renewal in the client identity.
struct Enrolled {
    _leaves: LeafManager,
    follow: tokio::task::JoinHandle<()>,
}

impl Drop for Enrolled {
    fn drop(&mut self) {
        self.follow.abort();
    }
}

/// Enrolls this secondary's server with the primary: a key made here, a CSR for
/// `spiffe://<td>/agent/server/dc/<this dc>` sent with the replication token over a connection
/// that verified the primary's certificate, and the leaf that comes back installed in
/// `identity`, so that every later connection to the primary is mTLS. The leaf is renewed the
/// same way (then over mTLS) in the 60-90% window of its life.
async fn enroll(
    config: &AgentConfig,
    identity: &TlsIdentity,
    transport: Arc<dyn Transport>,
    token: SecretToken,
) -> Result<Enrolled, Failure> {
    let td = identity.bundle().trust_domain().clone();
    let id = SpiffeId::Server(ServerId::new(td.clone(), config.datacenter.clone()));
    let signer = Arc::new(EnrollSigner {
        transport,
        token,
        failure: std::sync::Mutex::new(None),
        failed: tokio::sync::Notify::new(),
    });
    // The enrolled leaf is re-issued on its schedule, not on root changes (the primary signs
    // it with whatever root is active).
    let (roots_tx, roots) = watch::channel(Arc::new(mesh::ca::RootsView {
        active_root_id: String::new(),
        trust_domain: td.to_string(),
        roots: Vec::new(),
        index: 0,
    }));
    drop(roots_tx);
    let opts = LeafManagerOptions {
        extra_dns: vec![
            config.node_name.clone(),
            format!("server.{}.consul", config.datacenter),
        ],
        ..LeafManagerOptions::default()
    };
    let leaves = LeafManager::spawn(id, signer.clone(), roots, opts);
    tokio::select! {
        leaf = leaves.ready() => {
            if leaf.is_none() {
                return Err(Failure::Timeout);
            }
        }
        () = signer.failed.notified() => {
            let failure = signer.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            return Err(failure.map_or(Failure::Timeout, Failure::Transport));
        }
        () = tokio::time::sleep(PROBE_TIMEOUT) => return Err(Failure::Timeout),
    }
    let mut rx = leaves.subscribe();
    let installed = identity.clone();
    let install = move |l: &Option<Arc<mesh::ca::LeafCert>>| {
        if let Some(l) = l
            && let Err(e) = installed.set_leaf(l)
        {
            tracing::error!(error = %e, "enrolled server certificate refused by rustls");
        }
    };
    install(&rx.borrow_and_update());
    let follow = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            install(&rx.borrow_and_update());
        }
    });
    tracing::info!(datacenter = %config.datacenter, "enrolled with the primary: replication runs over mTLS");
    Ok(Enrolled {
        _leaves: leaves,
        follow,
    })
}

/// Signs this secondary's server identity by enrolling with the primary.
struct EnrollSigner {
    transport: Arc<dyn Transport>,
    token: SecretToken,
    /// The first failure, for start-up to report (later ones are only logged).
    failure: std::sync::Mutex<Option<TransportError>>,
    failed: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl LeafSigner for EnrollSigner {
    async fn sign(&self, csr_pem: &str) -> Result<IssuedLeaf, mesh::ca::SignError> {
        let req = mesh::replication_engine::EnrollRequest {
            token: self.token.clone(),
            csr_pem: csr_pem.to_owned(),
        };
        match self.transport.enroll(req).await {
            Ok(chain) => IssuedLeaf::from_pem(&chain, String::new()).map_err(|e| {
                mesh::ca::SignError::Unavailable(format!("enrolled certificate: {e}"))
            }),
            Err(e) => {
                let text = mesh::core::error_chain(&e);
                let mut slot = self
                    .failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if slot.is_none() {
                    *slot = Some(e);
                    self.failed.notify_one();
                }
                Err(mesh::ca::SignError::Unavailable(format!(
                    "enrollment with the primary: {text}"
                )))
            }
        }
    }
}

/// The HTTP API's limits from the configuration.
fn http_config(config: &AgentConfig) -> HttpConfig {
    let mut http_config = HttpConfig::default();
    if let Some(n) = config.limits.http_max_conns {
        http_config.max_connections = n;
    }
    if let Some(n) = config.limits.http_max_blocking_queries {
        http_config.max_blocking_queries = n;
    }
    http_config
}

/// State on etcd: binds the HTTP API, publishes its address as where the other servers reach
/// this one while it leads, and serves it as a standby (every request forwarded to the
/// leader) until this server leads. Returns the HTTP listener, for the full API.
#[cfg(feature = "etcd")]
async fn stand_by(
    config: &AgentConfig,
    storage: &mut mesh::EtcdStorage,
    http_config: &HttpConfig,
) -> Result<Option<TcpListener>, AgentError> {
    let listener = match config.http_addr {
        Some(addr) => Some(bind(addr, "HTTP API").await?),
        None => None,
    };
    if let Some(l) = &listener {
        let bound = l
            .local_addr()
            .map_err(|e| AgentError::Other(e.to_string()))?;
        let ip = [
            Some(bound.ip()),
            config.advertise_addr,
            Some(config.bind_addr),
        ]
        .into_iter()
        .flatten()
        .find(|ip| !ip.is_unspecified())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        storage.contact = Some(format!("http://{}", SocketAddr::new(ip, bound.port())));
    }
    let started = |source| AgentError::Start {
        datacenter: config.datacenter.to_string(),
        source,
    };
    match &listener {
        None => storage.wait_to_lead().await.map_err(started)?,
        Some(l) => {
            tracing::info!(
                http = ?l.local_addr().ok(),
                "standing by: the HTTP API forwards to the leading server"
            );
            let serving = crate::http::serve_standby(l, storage.clone(), http_config.clone());
            tokio::select! {
                r = storage.wait_to_lead() => r.map_err(started)?,
                r = serving => {
                    return Err(AgentError::Other(format!(
                        "the HTTP API stopped while standing by: {}",
                        r.err().map_or_else(|| "closed".to_owned(), |e| e.to_string())
                    )));
                }
            }
        }
    }
    Ok(listener)
}

async fn bind(addr: std::net::SocketAddr, what: &'static str) -> Result<TcpListener, AgentError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Bind { what, addr, source })
}

/// Where a secondary reaches its primary: the configured addresses as written (for messages)
/// and as resolved.
struct PrimaryAddrs {
    text: String,
    addrs: Vec<SocketAddr>,
}

/// Where a secondary reaches its primary's servers: through the primary's mesh gateways
/// (`primary_gateways`, by the server SNI) when they are given, else directly
/// (`retry_join_wan`).
fn primary_targets(config: &AgentConfig) -> &[String] {
    if config.primary_gateways.is_empty() {
        &config.retry_join_wan
    } else {
        &config.primary_gateways
    }
}

async fn resolve_all(addrs: &[String]) -> Result<Vec<SocketAddr>, AgentError> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        out.push(resolve(a).await?);
    }
    Ok(out)
}

async fn resolve(addr: &str) -> Result<std::net::SocketAddr, AgentError> {
    // Consul's default server port when none is given.
    let with_port = if addr.contains(':') {
        addr.to_owned()
    } else {
        format!("{addr}:8300")
    };
    tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| AgentError::Other(format!("resolving {addr}: {e}")))?
        .next()
        .ok_or_else(|| AgentError::Other(format!("{addr} resolves to no address")))
}

fn https_config(config: &AgentConfig) -> Result<Arc<rustls::ServerConfig>, AgentError> {
    let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) else {
        return Err(AgentError::Tls(
            "ports.https is set: tls.defaults.cert_file and key_file are needed".into(),
        ));
    };
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| AgentError::Tls(format!("reading {}: {e}", p.display())))
    };
    let certs = rustls::pki_types::pem::PemObject::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<rustls::pki_types::CertificateDer<'static>>, _>>()
        .map_err(|e| AgentError::Tls(format!("{}: {e}", cert.display())))?;
    let key_der = <rustls::pki_types::PrivateKeyDer<'static> as rustls::pki_types::pem::PemObject>::from_pem_slice(&read(key)?)
        .map_err(|e| AgentError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Tls(e.to_string()))?;
    let builder = if config.tls.verify_incoming {
        let Some(ca) = &config.tls.ca_file else {
            return Err(AgentError::Tls(
                "verify_incoming needs tls.defaults.ca_file".into(),
            ));
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&read(ca)?) {
            let c: rustls::pki_types::CertificateDer<'static> =
                c.map_err(|e| AgentError::Tls(format!("{}: {e}", ca.display())))?;
            roots
                .add(c)
                .map_err(|e| AgentError::Tls(format!("{}: {e}", ca.display())))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| AgentError::Tls(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder
        .with_single_cert(certs, key_der)
        .map_err(|e| AgentError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// HTTPS with a certificate from the mesh CA, for the agent's own identity
/// (`spiffe://<td>/agent/client/dc/<dc>/id/<node>`, with `localhost`, `127.0.0.1`, `::1` and the
/// node name as names), renewed at half its life for as long as the agent runs. Clients trust
/// the mesh root (`mesh ca roots -pem`, or `/v1/connect/ca/roots`).
async fn mesh_https_config(
    dc: &Datacenter,
    config: &AgentConfig,
    mut stop: watch::Receiver<bool>,
) -> Result<Arc<rustls::ServerConfig>, AgentError> {
    let no_files = || {
        AgentError::Tls(
            "ports.https is set without tls.defaults.cert_file and key_file, and Connect is off: \
             there is no mesh CA to issue the HTTPS certificate"
                .into(),
        )
    };
    let td = dc.trust_domain().ok_or_else(no_files)?;
    let node: mesh::core::NodeName = config
        .node_name
        .parse()
        .map_err(|e| AgentError::Tls(format!("node_name {:?}: {e}", config.node_name)))?;
    let id: mesh::core::SpiffeId = mesh::core::AgentId::new(td, dc.name().clone(), node).into();
    let resolver = Arc::new(SwappedCert::default());
    let first = issue_agent_cert(dc, &id, &config.node_name).await?;
    let mut renew_at = first.1;
    resolver.0.store(Arc::new(Some(first.0)));
    let (dc2, name, r2) = (dc.clone(), config.node_name.clone(), resolver.clone());
    tokio::spawn(async move {
        loop {
            let wait = renew_at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
                .max(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match issue_agent_cert(&dc2, &id, &name).await {
                Ok((cert, next)) => {
                    r2.0.store(Arc::new(Some(cert)));
                    renew_at = next;
                    tracing::info!("HTTPS certificate renewed from the mesh CA");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the HTTPS certificate failed; retrying");
                    renew_at = std::time::SystemTime::now() + Duration::from_secs(30);
                }
            }
        }
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Issues the agent's HTTPS certificate; returns it and when to renew it (half its life).
async fn issue_agent_cert(
    dc: &Datacenter,
    id: &mesh::core::SpiffeId,
    node_name: &str,
) -> Result<(Arc<rustls::sign::CertifiedKey>, std::time::SystemTime), AgentError> {
    let tls = |e: &dyn std::fmt::Display| AgentError::Tls(format!("HTTPS certificate: {e}"));
    let ca = dc.connect_ca().ca().map_err(|e| tls(&e))?;
    let req = mesh::ca::new_leaf_request(id, &[node_name]).map_err(|e| tls(&e))?;
    // The agent signs its own identity through its datacenter's CA: no token is involved.
    let allow = |_: &mesh::core::SpiffeId| -> Result<(), mesh::ca::Refusal> { Ok(()) };
    let issued = ca
        .sign_leaf_pem(&req.csr_pem, &allow)
        .await
        .map_err(|e| tls(&e))?;
    let mut chain = vec![issued.cert.clone()];
    chain.extend(issued.chain.iter().cloned());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(req.key.to_pkcs8_der());
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| tls(&e))?;
    let after = std::time::SystemTime::from(issued.valid_after);
    let before = std::time::SystemTime::from(issued.valid_before);
    let half = before.duration_since(after).unwrap_or_default() / 2;
    Ok((
        Arc::new(rustls::sign::CertifiedKey::new(chain, signing)),
        after + half,
    ))
}

/// Who may present a client certificate on the server port: servers of the mesh only (a
/// client without one is let through the handshake and authorized by its token alone).
struct ServersOnly;

impl ConnectAuthorizer for ServersOnly {
    fn authorize(&self, peer: &SpiffeId) -> Result<(), Refusal> {
        match peer {
            SpiffeId::Server(_) => Ok(()),
            other => Err(Refusal::new(format!("{other} is not a server of the mesh"))),
        }
    }
}

/// Signs this agent's server identity with its own datacenter's CA (no token involved: the
/// agent is the server).
struct ServerSigner(Datacenter);

#[async_trait::async_trait]
impl LeafSigner for ServerSigner {
    async fn sign(&self, csr_pem: &str) -> Result<IssuedLeaf, mesh::ca::SignError> {
        let ca = self
            .0
            .connect_ca()
            .ca()
            .map_err(|e| mesh::ca::SignError::Unavailable(e.to_string()))?;
        let servers_only = |id: &SpiffeId| match id {
            SpiffeId::Server(_) => Ok(()),
            other => Err(Refusal::new(format!("{other} is not a server identity"))),
        };
        ca.sign_leaf_pem(csr_pem, &servers_only).await
    }
}

/// This agent's server identity (`spiffe://<td>/agent/server/dc/<dc>`, with the node name and
/// `server.<dc>.consul` as DNS names): a leaf manager keeping it fresh, and the roots it
/// follows. Returns once the first leaf is issued.
async fn server_leaves(
    dc: &Datacenter,
    config: &AgentConfig,
) -> Result<(LeafManager, watch::Receiver<Arc<mesh::ca::RootsView>>), AgentError> {
    let tls = |e: &dyn std::fmt::Display| AgentError::Tls(format!("server certificate: {e}"));
    let td = dc
        .trust_domain()
        .ok_or_else(|| tls(&"Connect is off: no mesh CA to issue the server port's certificate"))?;
    let id = SpiffeId::Server(ServerId::new(td, dc.name().clone()));
    let roots = dc.connect_ca().subscribe_roots().map_err(|e| tls(&e))?;
    let opts = LeafManagerOptions {
        extra_dns: vec![
            config.node_name.clone(),
            format!("server.{}.consul", dc.name()),
        ],
        ..LeafManagerOptions::default()
    };
    let leaves = LeafManager::spawn(id, Arc::new(ServerSigner(dc.clone())), roots.clone(), opts);
    tokio::time::timeout(Duration::from_secs(30), leaves.ready())
        .await
        .map_err(|_| tls(&"no server certificate within 30 s"))?
        .ok_or_else(|| tls(&"the server certificate manager stopped"))?;
    Ok((leaves, roots))
}

/// The trust a secondary gives its primary's server port: the mesh root(s) in `file`, whose
/// trust domain the primary's identity must be in.
fn primary_trust(file: &std::path::Path) -> Result<TlsIdentity, AgentError> {
    let pem = std::fs::read_to_string(file).map_err(|e| {
        AgentError::Tls(format!("tls.internal_rpc.ca_file {}: {e}", file.display()))
    })?;
    trust_from_pem(
        &pem,
        &format!("tls.internal_rpc.ca_file {}", file.display()),
    )
}

/// A client identity trusting the mesh root(s) in `pem`; `what` names where they came from.
fn trust_from_pem(pem: &str, what: &str) -> Result<TlsIdentity, AgentError> {
    let tls = |e: &dyn std::fmt::Display| AgentError::Tls(format!("{what}: {e}"));
    let certs = mesh::ca::x509::certs_from_pem(pem).map_err(|e| tls(&e))?;
    let first = certs
        .first()
        .ok_or_else(|| tls(&"no certificate in the file"))?;
    let info = mesh::ca::x509::CertInfo::parse(first).map_err(|e| tls(&e))?;
    let td: mesh::core::TrustDomain = info
        .uris
        .iter()
        .find_map(|u| {
            let rest = u.strip_prefix("spiffe://")?;
            rest.split('/').next()?.parse().ok()
        })
        .ok_or_else(|| tls(&"the certificate names no SPIFFE trust domain: is it a mesh root?"))?;
    let bundle = TrustBundle::from_certs(td, certs).map_err(|e| tls(&e))?;
    Ok(TlsIdentity::new(bundle))
}

/// The operator's certificate for this server (`tls.internal_rpc.cert_file`, `key_file`),
/// trusting the operator's CA (`tls.internal_rpc.ca_file`) alone. The certificate must name
/// this server's SPIFFE identity; its trust domain is the one every server's must be in.
fn operator_identity(config: &AgentConfig) -> Result<Option<TlsIdentity>, AgentError> {
    let tls = &config.server_tls;
    let (cert_file, key_file) = match (&tls.cert_file, &tls.key_file) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => {
            return Err(AgentError::Tls(
                "tls.internal_rpc.cert_file and key_file go together".into(),
            ));
        }
    };
    let err = |what: &str, e: &dyn std::fmt::Display| AgentError::Tls(format!("{what}: {e}"));
    let Some(ca_file) = &tls.ca_file else {
        return Err(AgentError::Tls(
            "tls.internal_rpc.cert_file needs tls.internal_rpc.ca_file: the operator's CA, \
             which the other servers' certificates chain to"
                .into(),
        ));
    };
    let cert_what = format!("tls.internal_rpc.cert_file {}", cert_file.display());
    let chain = std::fs::read_to_string(cert_file).map_err(|e| err(&cert_what, &e))?;
    let issued = IssuedLeaf::from_pem(&chain, String::new()).map_err(|e| err(&cert_what, &e))?;
    let key_what = format!("tls.internal_rpc.key_file {}", key_file.display());
    let key_pem = std::fs::read_to_string(key_file).map_err(|e| err(&key_what, &e))?;
    let key = mesh::ca::PrivateKey::from_pkcs8_pem(&key_pem)
        .map_err(|e| err(&format!("{key_what} (a PKCS#8 PEM key is needed)"), &e))?;
    let td = match &issued.spiffe_id {
        SpiffeId::Server(s) if s.datacenter() == &config.datacenter => s.trust_domain().clone(),
        other => {
            return Err(err(
                &cert_what,
                &format!(
                    "names {other}, not this server's identity \
                     spiffe://<trust domain>/agent/server/dc/{}",
                    config.datacenter
                ),
            ));
        }
    };
    let ca_what = format!("tls.internal_rpc.ca_file {}", ca_file.display());
    let ca_pem = std::fs::read_to_string(ca_file).map_err(|e| err(&ca_what, &e))?;
    let roots = mesh::ca::x509::certs_from_pem(&ca_pem).map_err(|e| err(&ca_what, &e))?;
    let bundle = TrustBundle::from_certs(td, roots).map_err(|e| err(&ca_what, &e))?;
    let identity = TlsIdentity::new(bundle);
    identity
        .set_leaf(&mesh::ca::LeafCert::new(issued, key))
        .map_err(|e| err(&format!("{cert_what} with {key_what}"), &e))?;
    Ok(Some(identity))
}

/// The trust a secondary gives its primary when it was given the SHA-256 fingerprint of the
/// primary's mesh root instead of the root itself: one handshake with the primary that is cut
/// as soon as the server's chain is seen (nothing is sent on it, no token), the certificate
/// of that chain whose fingerprint matches taken as the root, and from there everything as
/// with [`primary_trust`]: the next connections verify the primary against that root.
async fn primary_trust_by_fingerprint(
    config: &AgentConfig,
    primary: &PrimaryAddrs,
    fingerprint: &[u8; 32],
) -> Result<TlsIdentity, AgentError> {
    let (addr_text, addrs) = (primary.text.clone(), &primary.addrs);
    let capture = Arc::new(ChainCapture::default());
    let cfg = rustls::ClientConfig::builder_with_provider(mesh::ca::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let look = async {
        let tcp = tokio::net::TcpStream::connect(addrs.as_slice()).await?;
        let name = rustls::pki_types::ServerName::try_from(format!(
            "server.{}.consul",
            config.primary_datacenter
        ))
        .map_err(std::io::Error::other)?;
        // Ends in the verifier's refusal, by design.
        let _ = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await;
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, look).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(AgentError::PrimaryUnreachable {
                addr: addr_text,
                source: TransportError::Unreachable(e),
            });
        }
        Err(_) => {
            return Err(AgentError::Timeout(format!(
                "the primary's server at {addr_text} did not answer within {PROBE_TIMEOUT:?}"
            )));
        }
    }
    let chain = capture
        .chain
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .unwrap_or_default();
    let root = chain
        .iter()
        .find(|c| ring::digest::digest(&ring::digest::SHA256, c.as_ref()).as_ref() == fingerprint)
        .ok_or_else(|| AgentError::RootFingerprint {
            addr: addr_text.clone(),
            presented: chain.len(),
        })?;
    let pem = mesh::ca::x509::cert_pem(root);
    tracing::info!(primary = %addr_text, "the primary's mesh root matches the configured fingerprint");
    trust_from_pem(&pem, "tls.internal_rpc.primary_root_sha256")
}

/// Records the certificate chain a server presents and refuses it, so that the handshake
/// ends before anything is sent.
#[derive(Debug, Default)]
struct ChainCapture {
    chain: std::sync::Mutex<Option<Vec<rustls::pki_types::CertificateDer<'static>>>>,
}

impl rustls::client::danger::ServerCertVerifier for ChainCapture {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let mut all = vec![end_entity.clone().into_owned()];
        all.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self
            .chain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(all);
        Err(rustls::Error::General(
            "chain recorded to look up the root fingerprint".into(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("never trusted".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("never trusted".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        mesh::ca::tls::crypto_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Keeps `held` alive until the agent stops.
fn keep_until_stop<T: Send + 'static>(
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    stop: &watch::Receiver<bool>,
    held: T,
) {
    let mut stop = stop.clone();
    tasks.push(tokio::spawn(async move {
        let _held = held;
        let _ = stop.wait_for(|s| *s).await;
    }));
}

/// A server certificate that renewal swaps underneath live listeners.
#[derive(Default)]
struct SwappedCert(arc_swap::ArcSwap<Option<Arc<rustls::sign::CertifiedKey>>>);

impl std::fmt::Debug for SwappedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SwappedCert")
    }
}

impl rustls::server::ResolvesServerCert for SwappedCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.load().as_ref().clone()
    }
}

/// The services the configuration defines, and which of them this agent registered.
struct Services {
    sources: Option<ConfigSources>,
    /// The token for a registration that carries none.
    token: Option<String>,
    /// Instance id -> the definition text it was registered from.
    registered: Mutex<BTreeMap<String, String>>,
}

impl Services {
    async fn reload(&self, dc: &Datacenter) -> Result<(), String> {
        let Some(sources) = &self.sources else {
            return Err("this agent was started without configuration files to re-read".into());
        };
        let config =
            AgentConfig::load(&sources.files, &sources.dirs).map_err(|e| crate::error_chain(&e))?;
        self.apply(dc, &config).await;
        Ok(())
    }

    /// Registers what the configuration defines and is not registered as written, and
    /// deregisters what an earlier configuration registered and this one no longer defines.
    async fn apply(&self, dc: &Datacenter, config: &AgentConfig) {
        let mut registered = self.registered.lock().await;
        let mut seen = BTreeMap::new();
        for source in &config.services {
            let has_token = serde_json::from_str::<serde_json::Value>(&source.json)
                .ok()
                .is_some_and(|v| {
                    let inner = v.get("service").or_else(|| v.get("Service")).unwrap_or(&v);
                    inner.get("token").or_else(|| inner.get("Token")).is_some()
                });
            let token = Secret::new(if has_token {
                ""
            } else {
                self.token.as_deref().unwrap_or("")
            });
            let id = match dc.catalog().register_json(&token, &source.json).await {
                Ok(r) => r.id.to_string(),
                Err(e) => {
                    tracing::error!(
                        file = %source.file.display(),
                        error = %crate::error_chain(&e),
                        "service from the configuration not registered"
                    );
                    continue;
                }
            };
            tracing::info!(file = %source.file.display(), %id, "service registered from the configuration");
            seen.insert(id, source.json.clone());
        }
        for (id, json) in registered.iter() {
            if seen.contains_key(id) {
                continue;
            }
            let token = Secret::new(self.token.as_deref().unwrap_or(""));
            match dc.catalog().deregister(&token, id).await {
                Ok(()) => {
                    tracing::info!(%id, "service no longer in the configuration: deregistered")
                }
                Err(e) => {
                    tracing::warn!(%id, error = %crate::error_chain(&e), json = json.len(), "deregistering a removed service failed")
                }
            }
        }
        *registered = seen;
    }
}

/// Waits until the datacenter's etcd cluster answers a linearizable read (it has a quorum
/// again), trying every second.
async fn etcd_answers(dc: &Datacenter) {
    loop {
        match dc.servers().await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "etcd does not answer yet"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The signals the agent heeds, installed once for its whole life (a signal between two
/// waits is not lost): SIGTERM and SIGINT stop it, SIGHUP reloads its configuration.
struct Signals {
    #[cfg(unix)]
    unix: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let unix = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(term), Ok(int), Ok(hup)) => Some([term, int, hup]),
                _ => None,
            };
            Self { unix }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Returns on SIGTERM or SIGINT; SIGHUP is ignored (the agent is not serving from its
    /// configuration: it is starting, standing by, or deposed).
    async fn stop(&mut self) {
        self.serve(None).await;
    }

    /// Returns on SIGTERM or SIGINT; on each SIGHUP reloads `running`'s configuration.
    async fn serve(&mut self, running: Option<Running>) {
        #[cfg(unix)]
        if let Some([term, int, hup]) = &mut self.unix {
            loop {
                tokio::select! {
                    _ = term.recv() => return,
                    _ = int.recv() => return,
                    _ = hup.recv() => match &running {
                        None => tracing::info!("SIGHUP ignored: nothing to reload now"),
                        Some(running) => match running.reload().await {
                            Ok(()) => tracing::info!("configuration reloaded (SIGHUP)"),
                            Err(e) => tracing::error!(error = %e, "reload failed"),
                        },
                    },
                }
            }
        }
        let _ = running;
        let _ = tokio::signal::ctrl_c().await;
    }
}
