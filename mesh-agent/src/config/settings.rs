//! The settings files give (each may be unset), how files merge, and the configuration built
//! from them: defaults applied and the rules across settings checked.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use mesh::core::DatacenterName as Datacenter;
use mesh::intentions::acl::DefaultPolicy;

use super::{
    AgentAcl, AgentAclTokens, AgentConfig, AgentLimits, AgentTls, ConfigError, ConfigWarning,
    DEFAULT_HTTP_PORT, DEFAULT_SERVER_PORT, ServerTls, ServiceSource,
};

/// The settings one file (or several merged files) gives: `None` = not set there.
#[derive(Debug, Default)]
pub(super) struct Partial {
    pub(super) datacenter: Option<Datacenter>,
    pub(super) primary_datacenter: Option<Datacenter>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) node_name: Option<String>,
    pub(super) server: Option<bool>,
    pub(super) bootstrap_expect: Option<u32>,
    pub(super) log_level: Option<String>,
    pub(super) bind_addr: Option<IpAddr>,
    pub(super) client_addr: Option<IpAddr>,
    pub(super) advertise_addr: Option<IpAddr>,
    pub(super) advertise_addr_wan: Option<IpAddr>,
    pub(super) http_ip: Option<IpAddr>,
    pub(super) https_ip: Option<IpAddr>,
    pub(super) http_port: Option<i64>,
    pub(super) https_port: Option<i64>,
    pub(super) server_port: Option<i64>,
    pub(super) acl_enabled: Option<bool>,
    pub(super) default_policy: Option<DefaultPolicy>,
    pub(super) token_replication: Option<bool>,
    pub(super) initial_management: Option<String>,
    pub(super) replication: Option<String>,
    pub(super) agent: Option<String>,
    pub(super) default_token: Option<String>,
    pub(super) connect_enabled: Option<bool>,
    pub(super) wan_federation: Option<bool>,
    pub(super) ca: CaPartial,
    pub(super) central_config: Option<bool>,
    pub(super) http_max_conns: Option<usize>,
    pub(super) http_max_blocking_queries: Option<usize>,
    pub(super) retry_join_wan: Vec<String>,
    pub(super) primary_gateways: Vec<String>,
    pub(super) tls_defaults: TlsPartial,
    pub(super) tls_https: TlsPartial,
    pub(super) tls_internal_rpc: TlsPartial,
    pub(super) services: Vec<ServiceSource>,
    /// `storage.etcd`.
    pub(super) etcd: EtcdPartial,
    /// Deprecated spellings: resolved per file, after the file is read, as Consul does.
    pub(super) dep: Deprecated,
    /// The last file that set a key a rule across settings may refuse.
    pub(super) origin_ca: Option<PathBuf>,
    pub(super) origin_primary_gateways: Option<PathBuf>,
    pub(super) origin_wan_federation: Option<PathBuf>,
}

/// `storage.etcd`.
#[derive(Debug, Default)]
pub(super) struct EtcdPartial {
    pub(super) endpoints: Option<Vec<String>>,
    pub(super) prefix: Option<String>,
    pub(super) state_key_file: Option<PathBuf>,
    pub(super) lease_ttl: Option<Duration>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    /// The last file that set any of them.
    pub(super) origin: Option<PathBuf>,
}

/// `connect.ca_config`.
#[derive(Debug, Default)]
pub(super) struct CaPartial {
    pub(super) leaf_cert_ttl: Option<Duration>,
    pub(super) intermediate_cert_ttl: Option<Duration>,
    pub(super) root_cert_ttl: Option<Duration>,
    pub(super) private_key_type: Option<String>,
    pub(super) private_key_bits: Option<u32>,
    pub(super) csr_max_per_second: Option<f64>,
    pub(super) csr_max_concurrent: Option<u32>,
    pub(super) skip_validate: Option<bool>,
    pub(super) disable_cross_signing: Option<bool>,
}

/// `tls.defaults` or `tls.https`.
#[derive(Debug, Default)]
pub(super) struct TlsPartial {
    pub(super) ca_file: Option<PathBuf>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) verify_incoming: Option<bool>,
    pub(super) verify_outgoing: Option<bool>,
    /// `tls.internal_rpc.insecure_plaintext` (mesh's own key).
    pub(super) plaintext: Option<bool>,
    /// `tls.internal_rpc.primary_root_sha256` (mesh's own key).
    pub(super) primary_root_sha256: Option<[u8; 32]>,
}

#[derive(Debug, Default)]
pub(super) struct Deprecated {
    pub(super) acl_datacenter: Option<Datacenter>,
    pub(super) acl_default_policy: Option<DefaultPolicy>,
    pub(super) tokens_master: Option<String>,
    pub(super) acl_master_token: Option<String>,
    pub(super) acl_replication_token: Option<String>,
    pub(super) acl_token: Option<String>,
    pub(super) acl_agent_token: Option<String>,
    pub(super) enable_acl_replication: Option<bool>,
    pub(super) tls: TlsPartial,
    pub(super) verify_incoming_https: Option<bool>,
    pub(super) start_join_wan: Vec<String>,
}

macro_rules! later_wins {
    ($self:ident, $later:ident; $($field:ident).+) => {
        if $later.$($field).+.is_some() {
            $self.$($field).+ = $later.$($field).+;
        }
    };
}

impl Partial {
    /// Merges a later file into this one: a value set later wins, lists and services
    /// accumulate (Consul's merge rules).
    pub(super) fn merge(&mut self, mut later: Partial) {
        later_wins!(self, later; datacenter);
        later_wins!(self, later; primary_datacenter);
        later_wins!(self, later; data_dir);
        later_wins!(self, later; etcd.endpoints);
        later_wins!(self, later; etcd.prefix);
        later_wins!(self, later; etcd.state_key_file);
        later_wins!(self, later; etcd.lease_ttl);
        later_wins!(self, later; etcd.ca_file);
        later_wins!(self, later; etcd.cert_file);
        later_wins!(self, later; etcd.key_file);
        later_wins!(self, later; etcd.origin);
        later_wins!(self, later; node_name);
        later_wins!(self, later; server);
        later_wins!(self, later; bootstrap_expect);
        later_wins!(self, later; log_level);
        later_wins!(self, later; bind_addr);
        later_wins!(self, later; client_addr);
        later_wins!(self, later; advertise_addr);
        later_wins!(self, later; advertise_addr_wan);
        later_wins!(self, later; http_ip);
        later_wins!(self, later; https_ip);
        later_wins!(self, later; http_port);
        later_wins!(self, later; https_port);
        later_wins!(self, later; server_port);
        later_wins!(self, later; acl_enabled);
        later_wins!(self, later; default_policy);
        later_wins!(self, later; token_replication);
        later_wins!(self, later; initial_management);
        later_wins!(self, later; replication);
        later_wins!(self, later; agent);
        later_wins!(self, later; default_token);
        later_wins!(self, later; connect_enabled);
        later_wins!(self, later; wan_federation);
        later_wins!(self, later; ca.leaf_cert_ttl);
        later_wins!(self, later; ca.intermediate_cert_ttl);
        later_wins!(self, later; ca.root_cert_ttl);
        later_wins!(self, later; ca.private_key_type);
        later_wins!(self, later; ca.private_key_bits);
        later_wins!(self, later; ca.csr_max_per_second);
        later_wins!(self, later; ca.csr_max_concurrent);
        later_wins!(self, later; ca.skip_validate);
        later_wins!(self, later; ca.disable_cross_signing);
        later_wins!(self, later; central_config);
        later_wins!(self, later; http_max_conns);
        later_wins!(self, later; http_max_blocking_queries);
        self.retry_join_wan.append(&mut later.retry_join_wan);
        self.primary_gateways.append(&mut later.primary_gateways);
        self.tls_defaults.merge(later.tls_defaults);
        self.tls_https.merge(later.tls_https);
        self.tls_internal_rpc.merge(later.tls_internal_rpc);
        self.services.append(&mut later.services);
        later_wins!(self, later; origin_ca);
        later_wins!(self, later; origin_primary_gateways);
        later_wins!(self, later; origin_wan_federation);
    }

    /// Applies this file's deprecated spellings where the current spelling is not set in the
    /// same file (Consul's `applyDeprecatedConfig`).
    pub(super) fn resolve_deprecated(&mut self) {
        let dep = std::mem::take(&mut self.dep);
        if self.initial_management.is_none() {
            self.initial_management = dep.tokens_master.or(dep.acl_master_token);
        }
        if self.agent.is_none() {
            self.agent = dep.acl_agent_token;
        }
        if self.default_token.is_none() {
            self.default_token = dep.acl_token;
        }
        if dep.acl_replication_token.is_some() {
            if self.replication.is_none() {
                self.replication = dep.acl_replication_token;
            }
            self.token_replication = Some(true);
        }
        if self.token_replication.is_none() {
            self.token_replication = dep.enable_acl_replication;
        }
        if dep.acl_datacenter.is_some() {
            if self.primary_datacenter.is_none() {
                self.primary_datacenter = dep.acl_datacenter;
            }
            // Consul: `acl_datacenter` implicitly enables ACLs.
            self.acl_enabled = Some(true);
        }
        if self.default_policy.is_none() {
            self.default_policy = dep.acl_default_policy;
        }
        let mut tls = dep.tls;
        tls.merge(std::mem::take(&mut self.tls_defaults));
        self.tls_defaults = tls;
        if self.tls_https.verify_incoming.is_none() {
            self.tls_https.verify_incoming = dep.verify_incoming_https;
        }
        self.retry_join_wan.extend(dep.start_join_wan);
    }
}

impl TlsPartial {
    fn merge(&mut self, later: TlsPartial) {
        later_wins!(self, later; ca_file);
        later_wins!(self, later; cert_file);
        later_wins!(self, later; key_file);
        later_wins!(self, later; verify_incoming);
        later_wins!(self, later; verify_outgoing);
        later_wins!(self, later; plaintext);
        later_wins!(self, later; primary_root_sha256);
    }
}

/// The host name, read once (Consul's default `node_name`).
fn hostname() -> Option<String> {
    static HOSTNAME: OnceLock<Option<String>> = OnceLock::new();
    HOSTNAME
        .get_or_init(|| {
            ["/proc/sys/kernel/hostname", "/etc/hostname"]
                .iter()
                .filter_map(|f| std::fs::read_to_string(f).ok())
                .chain(std::env::var("HOSTNAME").ok())
                .map(|s| s.trim().to_owned())
                .find(|s| !s.is_empty())
        })
        .clone()
}

/// Applies defaults to the merged settings and checks the rules across settings.
pub(super) fn build(p: Partial, warnings: Vec<ConfigWarning>) -> Result<AgentConfig, ConfigError> {
    let datacenter = match p.datacenter {
        Some(dc) => dc,
        None => Datacenter::new("dc1").map_err(|e| ConfigError::Missing {
            key: "datacenter".to_owned(),
            reason: e.to_string(),
        })?,
    };
    let primary_datacenter = p.primary_datacenter.unwrap_or_else(|| datacenter.clone());
    let node_name = match p.node_name.or_else(hostname) {
        Some(n) => n,
        None => {
            return Err(ConfigError::Missing {
                key: "node_name".to_owned(),
                reason: "the host name cannot be read to default it".to_owned(),
            });
        }
    };
    let bind_addr = p.bind_addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let client_addr = p.client_addr.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let listen = |ip: Option<IpAddr>, port: i64| {
        u16::try_from(port)
            .ok()
            .map(|port| SocketAddr::new(ip.unwrap_or(client_addr), port))
    };
    let http_addr = listen(
        p.http_ip,
        p.http_port.unwrap_or(i64::from(DEFAULT_HTTP_PORT)),
    );
    let https_addr = listen(p.https_ip, p.https_port.unwrap_or(-1));
    let server_port = p
        .server_port
        .and_then(|n| u16::try_from(n).ok())
        .unwrap_or(DEFAULT_SERVER_PORT);
    let server_addr = SocketAddr::new(bind_addr, server_port);

    let nonempty = |t: Option<String>| t.filter(|s| !s.is_empty());
    let acl = AgentAcl {
        enabled: p.acl_enabled.unwrap_or(false),
        default_policy: p.default_policy.unwrap_or(DefaultPolicy::Allow),
        enable_token_replication: p.token_replication.unwrap_or(false),
        tokens: AgentAclTokens {
            initial_management: nonempty(p.initial_management),
            replication: nonempty(p.replication),
            agent: nonempty(p.agent),
            default: nonempty(p.default_token),
        },
    };

    let connect_enabled = p.connect_enabled.unwrap_or(true);
    let mut ca = mesh::ca::CaConfig::default();
    let c = p.ca;
    if let Some(v) = c.leaf_cert_ttl {
        ca.leaf_cert_ttl = v;
    }
    if let Some(v) = c.intermediate_cert_ttl {
        ca.intermediate_cert_ttl = v;
    }
    if let Some(v) = c.root_cert_ttl {
        ca.root_cert_ttl = v;
    }
    if let Some(v) = c.private_key_type {
        ca.private_key_type = v;
    }
    if let Some(v) = c.private_key_bits {
        ca.private_key_bits = v;
    }
    if let Some(v) = c.csr_max_per_second {
        ca.csr_max_per_second = v;
    }
    if let Some(v) = c.csr_max_concurrent {
        ca.csr_max_concurrent = v;
    }
    if let Some(v) = c.skip_validate {
        ca.skip_validate = v;
    }
    if let Some(v) = c.disable_cross_signing {
        ca.disable_cross_signing = v;
    }
    if let Err(source) = ca.validate().and_then(|()| ca.key_spec().map(|_| ())) {
        return Err(ConfigError::Ca {
            path: p.origin_ca.unwrap_or_default(),
            source,
        });
    }

    let mesh_gateway_wan_federation = p.wan_federation.unwrap_or(false);
    if mesh_gateway_wan_federation && !connect_enabled {
        return Err(ConfigError::InvalidValue {
            path: p.origin_wan_federation.unwrap_or_default(),
            key: "connect.enable_mesh_gateway_wan_federation".to_owned(),
            message: "'connect.enable_mesh_gateway_wan_federation=true' requires \
                      'connect.enabled=true'"
                .to_owned(),
            position: None,
        });
    }
    if !p.primary_gateways.is_empty() && datacenter == primary_datacenter {
        return Err(ConfigError::InvalidValue {
            path: p.origin_primary_gateways.unwrap_or_default(),
            key: "primary_gateways".to_owned(),
            message: "'primary_gateways' should only be configured in a secondary datacenter"
                .to_owned(),
            position: None,
        });
    }

    let server_tls = ServerTls {
        ca_file: p
            .tls_internal_rpc
            .ca_file
            .clone()
            .or_else(|| p.tls_defaults.ca_file.clone()),
        plaintext: p.tls_internal_rpc.plaintext.unwrap_or(false),
        primary_root_sha256: p.tls_internal_rpc.primary_root_sha256,
        // Only the server port's own keys: a `tls.defaults` certificate is the HTTPS API's.
        cert_file: p.tls_internal_rpc.cert_file.clone(),
        key_file: p.tls_internal_rpc.key_file.clone(),
    };
    let (d, h) = (p.tls_defaults, p.tls_https);
    let tls = AgentTls {
        ca_file: h.ca_file.or(d.ca_file),
        cert_file: h.cert_file.or(d.cert_file),
        key_file: h.key_file.or(d.key_file),
        verify_incoming: h.verify_incoming.or(d.verify_incoming).unwrap_or(false),
        verify_outgoing: h.verify_outgoing.or(d.verify_outgoing).unwrap_or(false),
    };
    check_tls(&tls)?;
    if https_addr.is_some() && tls.cert_file.is_none() && !connect_enabled {
        return Err(ConfigError::Missing {
            key: "tls.defaults.cert_file".to_owned(),
            reason: "ports.https turns the HTTPS API on, and with Connect off there is no mesh \
                     CA to issue its certificate (key_file is needed too)"
                .to_owned(),
        });
    }

    let etcd = match p.etcd.endpoints {
        None => None,
        Some(endpoints) => {
            let origin = p.etcd.origin.clone().unwrap_or_default();
            let invalid = |key: &str, message: &str| ConfigError::InvalidValue {
                path: origin.clone(),
                key: key.to_owned(),
                message: message.to_owned(),
                position: None,
            };
            if endpoints.is_empty() {
                return Err(invalid(
                    "storage.etcd.endpoints",
                    "name at least one member of the etcd cluster",
                ));
            }
            let https = endpoints.iter().any(|e| e.starts_with("https://"));
            if https != p.etcd.ca_file.is_some() {
                return Err(invalid(
                    "storage.etcd.ca_file",
                    "TLS to etcd takes https:// endpoints and the CA that signed the members' \
                     certificates (ca_file); give both or neither",
                ));
            }
            if p.etcd.cert_file.is_some() != p.etcd.key_file.is_some() {
                return Err(invalid(
                    "storage.etcd.cert_file",
                    "a client certificate (cert_file) goes with its key (key_file)",
                ));
            }
            if p.etcd.cert_file.is_some() && p.etcd.ca_file.is_none() {
                return Err(invalid(
                    "storage.etcd.cert_file",
                    "a client certificate is presented over TLS: set ca_file and https:// \
                     endpoints",
                ));
            }
            if p.etcd.state_key_file.is_none() && connect_enabled {
                return Err(ConfigError::Missing {
                    key: "storage.etcd.state_key_file".to_owned(),
                    reason: "the CA's private keys are sealed with this key before they are \
                             stored in etcd (64 hex digits: openssl rand -hex 32)"
                        .to_owned(),
                });
            }
            Some(super::AgentEtcd {
                endpoints,
                prefix: p
                    .etcd
                    .prefix
                    .unwrap_or_else(|| format!("mesh/{datacenter}")),
                state_key_file: p.etcd.state_key_file,
                lease_ttl: p.etcd.lease_ttl.unwrap_or(Duration::from_secs(5)),
                ca_file: p.etcd.ca_file,
                cert_file: p.etcd.cert_file,
                key_file: p.etcd.key_file,
            })
        }
    };

    Ok(AgentConfig {
        datacenter,
        primary_datacenter,
        data_dir: p.data_dir,
        etcd,
        node_name,
        server: p.server.unwrap_or(false),
        bootstrap_expect: p.bootstrap_expect.unwrap_or(0),
        log_level: p.log_level.unwrap_or_else(|| "info".to_owned()),
        bind_addr,
        client_addr,
        advertise_addr: p.advertise_addr,
        advertise_addr_wan: p.advertise_addr_wan,
        http_addr,
        https_addr,
        server_addr,
        acl,
        connect_enabled,
        ca_config: ca,
        mesh_gateway_wan_federation,
        central_service_config: p.central_config.unwrap_or(true),
        limits: AgentLimits {
            http_max_conns: p.http_max_conns,
            http_max_blocking_queries: p.http_max_blocking_queries,
        },
        retry_join_wan: p.retry_join_wan,
        primary_gateways: p.primary_gateways,
        tls,
        server_tls,
        services: p.services,
        warnings,
    })
}

fn check_tls(tls: &AgentTls) -> Result<(), ConfigError> {
    let missing = |key: &str, reason: &str| ConfigError::Missing {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => {
            return Err(missing(
                "tls.defaults.key_file",
                "tls.defaults.cert_file is set",
            ));
        }
        (None, Some(_)) => {
            return Err(missing(
                "tls.defaults.cert_file",
                "tls.defaults.key_file is set",
            ));
        }
        // HTTPS without files: the agent serves a certificate from the mesh CA.
        _ => {}
    }
    if tls.ca_file.is_none() {
        let needs = if tls.verify_incoming {
            Some("verify_incoming")
        } else if tls.verify_outgoing {
            Some("verify_outgoing")
        } else {
            None
        };
        if let Some(which) = needs {
            return Err(missing(
                "tls.defaults.ca_file",
                &format!("tls.defaults.{which} is true (ca_path is not supported)"),
            ));
        }
    }
    Ok(())
}
