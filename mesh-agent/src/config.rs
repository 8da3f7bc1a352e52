//! Consul-style agent configuration: HCL or JSON files, as operators write them for Consul,
//! read into typed settings and turned into a [`mesh::DatacenterConfig`].
//!
//! ```
//! use std::path::Path;
//! use mesh_agent::config::{AgentConfig, Format};
//!
//! let hcl = r#"
//! datacenter         = "secondary"
//! primary_datacenter = "primary"
//! node_name          = "server-1"
//! connect { "enabled": true }
//! acl {
//!   enabled = true, default_policy = "deny", enable_token_replication = true
//!   tokens { replication = "2c0e8f1a-5b5e-4c36-9a4b-2f0a1f3e9d11" }
//! }
//! retry_join_wan = ["10.0.0.1:8300"]
//! "#;
//! let cfg = AgentConfig::from_str(hcl, Format::Hcl, Path::new("server.hcl"))?;
//! assert!(!cfg.is_primary());
//! assert_eq!(cfg.http_addr, Some("127.0.0.1:8500".parse()?));
//! assert!(!format!("{cfg:?}").contains("2c0e8f1a"));
//! let dc = cfg.datacenter_config()?;
//! assert_eq!(dc.primary_datacenter.as_str(), "primary");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Files
//!
//! [`AgentConfig::load`] reads the `-config-file` files in order, then each `-config-dir`
//! directory's `*.json` and `*.hcl` files in lexical order (other files and subdirectories are
//! skipped, with a warning for the files). A file ending in `.json` is JSON, `.hcl` is HCL; a
//! `-config-file` with another name is read as JSON, or as HCL when it is not JSON. A file
//! holds at most [`MAX_FILE_SIZE`] bytes of UTF-8 and nests at most [`MAX_DEPTH`] levels.
//!
//! HCL is the version-1 dialect Consul reads: attributes `key = value`, blocks `key { ... }`
//! (also labelled, `a "b" { }` being `a { b { } }`), the JSON-like form the Connect guide
//! writes inside HCL (`connect { "enabled": true }`), several attributes on one line with or
//! without commas, strings with escapes, heredocs, numbers (also `0x` hex), `true`/`false`,
//! lists, objects as values, and `#`, `//`, `/* */` comments. A document whose first token is
//! `{` is read as JSON-like, as HCL 1 reads JSON. Interpolation (`${...}`) is not evaluated.
//!
//! # Merging
//!
//! As in Consul: within a file, a repeated block merges into the earlier one
//! (`acl { enabled = true } acl { default_policy = "deny" }`) and a repeated setting keeps
//! the later value; across files, a value set by a later file wins, blocks merge key by key,
//! and lists (`retry_join_wan`, `primary_gateways`) and service definitions accumulate.
//! Deprecated spellings (`acl_datacenter`, `acl.tokens.master`, `acl_master_token`, top-level
//! `ca_file`, ...) count only where the current spelling is not set in the same file, and are
//! reported as warnings.
//!
//! # Keys
//!
//! Keys are Consul's, matched without regard to ASCII case as Consul does. Three kinds:
//! - read: `datacenter` (default `dc1`), `primary_datacenter` (default: `datacenter`; both
//!   lower-cased as Consul does), `data_dir` (state on disk; none: in memory), `node_name`
//!   (default: the host name), `server`, `bootstrap_expect`, `log_level`, `bind_addr`
//!   (default `0.0.0.0`), `client_addr` (default `127.0.0.1`), `advertise_addr`, `advertise_addr_wan`,
//!   `addresses { http, https }`, `ports { http (8500), https (-1: off), server (8300) }`,
//!   `acl { enabled (false), default_policy, enable_token_replication, tokens { ... } }`,
//!   `connect { enabled, ca_provider, ca_config { ... }, enable_mesh_gateway_wan_federation }`,
//!   `enable_central_service_config` (true), `retry_join_wan`, `primary_gateways`,
//!   `tls { defaults { ... }, https { ... } }`, `service`, `services`; and mesh's own
//!   `storage { etcd { endpoints, prefix (mesh/<datacenter>), state_key_file, lease_ttl (5s),
//!   ca_file, cert_file, key_file } }` (state on etcd, several servers, TLS to etcd with
//!   `https://` endpoints: feature `etcd`);
//! - known Consul settings mesh has no use for (`ui_config`, `encrypt`, `telemetry`,
//!   `ports.grpc`, `tls.internal_rpc`, `acl.down_policy`, ...): accepted, ignored, and
//!   reported as a [`ConfigWarning`] (once per key and file; the inside of an ignored block is
//!   not checked);
//! - anything else: refused with [`ConfigError::UnknownKey`], naming the file, the key and
//!   (with a near spelling) the key that was probably meant. Consul refuses these too.
//!
//! Defaults that differ from what an operator might guess, on purpose:
//! - `acl.default_policy` defaults to `"allow"` when not written, as in Consul, even when
//!   `acl { enabled = true }` is. Write `default_policy = "deny"` for a secure mesh (intentions
//!   then default to deny as well).
//! - `connect.enabled` defaults to `true`, as [`mesh::DatacenterConfig::new`] does (older
//!   Consul versions defaulted to false; the guide sets it explicitly either way). ACLs, on
//!   the other hand, keep Consul's file defaults here (off, then `allow`), although the
//!   library's `DatacenterConfig::new` turns them on with deny: existing files keep their
//!   meaning.
//! - A port of `0` asks the system for a free port (Consul reads 0 as off); a negative port
//!   turns the listener off (`ports.server` cannot be off).
//!
//! Refused although Consul accepts them, because mesh cannot honour them and silently dropping
//! them would weaken what the operator asked for: `connect.ca_provider` other than `consul`;
//! `connect.ca_config.private_key`/`root_cert`; non-empty `http_config.block_endpoints` and
//! `allow_write_http_from`; go-sockaddr templates, several addresses, or unix sockets in
//! address settings; cloud auto-join (`provider=...`) entries.
//!
//! Service definitions (`service`, `services`, as in the guide's `socat.json` and `web.json`)
//! are kept as JSON text of the form `{"service": {...}}`, with their keys as written, for
//! [`mesh::Catalog::register_json`]; they are checked at load time so that a bad file is
//! reported with its name.
//!
//! Tokens are never shown: [`AgentAclTokens`] and [`ServiceSource`] redact them in `Debug`,
//! and no error or warning quotes a token value.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use mesh::core::DatacenterName as Datacenter;
use mesh::intentions::acl::DefaultPolicy;

mod decode;
mod error;
mod hcl;
mod json;
mod keys;
mod settings;
mod syntax;
#[cfg(test)]
mod tests;
mod values;

pub use error::{ConfigError, ConfigWarning, Position};

use decode::Doc;
use settings::{Partial, build};
use syntax::{ParseError, ParseErrorKind};

/// The largest configuration file read, in bytes (1 MiB).
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// The deepest nesting of blocks, objects and lists in a file (the file's top level is 0).
pub const MAX_DEPTH: usize = 64;

/// Consul's default HTTP API port.
pub const DEFAULT_HTTP_PORT: u16 = 8500;

/// Consul's default server (RPC) port, where mesh serves replication.
pub const DEFAULT_SERVER_PORT: u16 = 8300;

/// The syntax of a configuration document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON: one object.
    Json,
    /// HCL version 1, as Consul reads it.
    Hcl,
}

impl Format {
    /// The format a file name implies: `.json` or `.hcl`; `None` for any other name.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Some(Self::Json),
            Some("hcl") => Some(Self::Hcl),
            _ => None,
        }
    }
}

/// Bounds of the agent's listeners (`limits { ... }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentLimits {
    /// Most HTTP connections served at once.
    pub http_max_conns: Option<usize>,
    /// Most blocking queries held at once (then 429).
    pub http_max_blocking_queries: Option<usize>,
}

/// The agent's settings, read from Consul-style configuration files.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// This datacenter (`datacenter`, default `dc1`).
    pub datacenter: Datacenter,
    /// The primary datacenter (`primary_datacenter`, or the deprecated `acl_datacenter`;
    /// default: `datacenter`).
    pub primary_datacenter: Datacenter,
    /// Where state is kept (`data_dir`); `None`: in memory (unless `etcd` is set).
    pub data_dir: Option<PathBuf>,
    /// `storage.etcd` (mesh's own block): the datacenter's state on an etcd cluster, shared
    /// by several servers of which one leads and the others stand by.
    pub etcd: Option<AgentEtcd>,
    /// This node's name (`node_name`, default: the host name).
    pub node_name: String,
    /// `server` (every mesh agent is a server; kept for the record).
    pub server: bool,
    /// `bootstrap_expect` (accepted; mesh does not wait for peers).
    pub bootstrap_expect: u32,
    /// `log_level`, lower-cased as `tracing` spells levels: `trace`, `debug`, `info` (the
    /// default), `warn`, `error` or `off` (Consul's `err` and `warning` are mapped).
    pub log_level: String,
    /// `bind_addr` (default `0.0.0.0`): the server port listens here.
    pub bind_addr: IpAddr,
    /// `client_addr` (default `127.0.0.1`): the HTTP API listens here unless
    /// `addresses.http` says otherwise.
    pub client_addr: IpAddr,
    /// `advertise_addr`, if set (never an unspecified address).
    pub advertise_addr: Option<IpAddr>,
    /// `advertise_addr_wan`, if set: where the other datacenters reach this server's server
    /// port (announced in the datacenters table; else `advertise_addr`, else `bind_addr`).
    pub advertise_addr_wan: Option<IpAddr>,
    /// `addresses.http` (or `client_addr`) and `ports.http` (default 8500); `None` when the
    /// port is negative (Consul's -1). Port 0: the system chooses.
    pub http_addr: Option<SocketAddr>,
    /// `addresses.https` (or `client_addr`) and `ports.https`; `None` unless the port is set
    /// to 0 or more (Consul's default -1: off).
    pub https_addr: Option<SocketAddr>,
    /// `bind_addr` and `ports.server` (default 8300): where secondaries reach this server.
    pub server_addr: SocketAddr,
    /// The `acl` block.
    pub acl: AgentAcl,
    /// `connect.enabled` (default true).
    pub connect_enabled: bool,
    /// `connect.ca_config`, on top of the CA defaults, checked with Consul's rules.
    pub ca_config: mesh::ca::CaConfig,
    /// `connect.enable_mesh_gateway_wan_federation` (requires `connect.enabled`).
    pub mesh_gateway_wan_federation: bool,
    /// `enable_central_service_config` (default true).
    pub central_service_config: bool,
    /// `limits { http_max_conns, http_max_blocking_queries }` (mesh's own bounds of the HTTP
    /// API; unset keeps the defaults of [`crate::http::HttpConfig`]).
    pub limits: AgentLimits,
    /// `retry_join_wan` (and the deprecated `start_join_wan`): `host:port` of the primary's
    /// servers, how a secondary reaches the primary's server port. Entries as written.
    pub retry_join_wan: Vec<String>,
    /// `primary_gateways`: `host:port` of the primary's mesh gateways (secondaries only).
    pub primary_gateways: Vec<String>,
    /// TLS for the HTTPS API: `tls.https`, falling back to `tls.defaults`.
    pub tls: AgentTls,
    /// TLS of the server port (replication and forwarded writes between datacenters):
    /// `tls.internal_rpc`, falling back to `tls.defaults` for the CA file.
    pub server_tls: ServerTls,
    /// Service definitions (`service`, `services`), in file order.
    pub services: Vec<ServiceSource>,
    /// What was read but has no effect (also logged by [`AgentConfig::load`]).
    pub warnings: Vec<ConfigWarning>,
}

/// `storage { etcd { endpoints, prefix, state_key_file, lease_ttl, ca_file, cert_file,
/// key_file } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEtcd {
    /// Client URLs of the cluster's members (`http://10.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// The key prefix of this datacenter's state (default `mesh/<datacenter>`).
    pub prefix: String,
    /// The file holding the state key (64 hex digits) that seals the CA's private keys;
    /// required with Connect on.
    pub state_key_file: Option<PathBuf>,
    /// The leader's lease: a standby takes over at most this long after the leader stops
    /// (default 5s).
    pub lease_ttl: std::time::Duration,
    /// TLS to etcd (`https://` endpoints): the CA that signed the members' certificates.
    pub ca_file: Option<PathBuf>,
    /// The client certificate presented to etcd (`--client-cert-auth`), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
}

/// The `acl` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAcl {
    /// `acl.enabled` (default false: every call is allowed).
    pub enabled: bool,
    /// `acl.default_policy` (default `allow`, as in Consul: write `"deny"` for a secure
    /// mesh). Also the default intention decision.
    pub default_policy: DefaultPolicy,
    /// `acl.enable_token_replication` (default false).
    pub enable_token_replication: bool,
    /// `acl.tokens`.
    pub tokens: AgentAclTokens,
}

/// `acl.tokens`. Secrets: `Debug` shows only whether each is set. An empty string is unset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AgentAclTokens {
    /// `initial_management` (alias `master`, deprecated `acl_master_token`): the management
    /// token created in the primary at first start.
    pub initial_management: Option<String>,
    /// `replication` (deprecated `acl_replication_token`): a secondary's token for the primary.
    pub replication: Option<String>,
    /// `agent` (deprecated `acl_agent_token`): the agent's own token.
    pub agent: Option<String>,
    /// `default` (deprecated `acl_token`): the token for requests that carry none.
    pub default: Option<String>,
}

impl fmt::Debug for AgentAclTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("AgentAclTokens")
            .field("initial_management", &redact(&self.initial_management))
            .field("replication", &redact(&self.replication))
            .field("agent", &redact(&self.agent))
            .field("default", &redact(&self.default))
            .finish()
    }
}

/// How the server port is secured. It speaks TLS with certificates from the mesh CA for the
/// server identity `spiffe://<trust domain>/agent/server/dc/<datacenter>`, renewed
/// underneath; a secondary verifies its primary's against `ca_file` and, once its own CA is
/// up, presents its own (mTLS). Plain TCP only when asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerTls {
    /// `tls.internal_rpc.ca_file` (else `tls.defaults.ca_file`): in a secondary, the CA the
    /// primary's server certificate must chain to (the mesh root).
    pub ca_file: Option<PathBuf>,
    /// `tls.internal_rpc.insecure_plaintext`: plain TCP instead (secrets then cross the
    /// network readable; logged as a warning at every start).
    pub plaintext: bool,
    /// `tls.internal_rpc.cert_file` and `key_file` (PEM; the key PKCS#8): the operator's own
    /// certificate for this server, instead of one from the mesh CA. It must name this
    /// server's identity `spiffe://<trust domain>/agent/server/dc/<dc>` as a URI SAN, and
    /// `ca_file` must then be the operator's CA, which every server's certificate chains to.
    pub cert_file: Option<PathBuf>,
    /// See `cert_file`.
    pub key_file: Option<PathBuf>,
    /// `tls.internal_rpc.primary_root_sha256`: in a secondary without a CA file, the SHA-256
    /// fingerprint of the primary's mesh root (`mesh ca roots` prints it). The root is taken
    /// from the chain the primary presents only if its fingerprint is this one.
    pub primary_root_sha256: Option<[u8; 32]>,
}

/// TLS files and checks for the HTTPS API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTls {
    /// `ca_file`: the CA that client certificates must chain to.
    pub ca_file: Option<PathBuf>,
    /// `cert_file`: the server certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// `key_file`: the server key (PEM).
    pub key_file: Option<PathBuf>,
    /// `verify_incoming`: require client certificates.
    pub verify_incoming: bool,
    /// `verify_outgoing`: verify the servers this agent dials.
    pub verify_outgoing: bool,
}

/// One service definition from a configuration file.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceSource {
    /// The file that defines it.
    pub file: PathBuf,
    /// `{"service": {...}}`, for [`mesh::Catalog::register_json`]. May hold a token:
    /// `Debug` does not show it.
    pub json: String,
}

impl fmt::Debug for ServiceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceSource")
            .field("file", &self.file)
            .field(
                "json",
                &format_args!("<{} bytes, not shown>", self.json.len()),
            )
            .finish()
    }
}

impl AgentConfig {
    /// Reads and merges the `files` in order, then the `*.json` and `*.hcl` files of each of
    /// the `dirs` in lexical order (see the module docs), and checks the result. Warnings are
    /// logged at `warn` level and kept in [`AgentConfig::warnings`].
    ///
    /// Refuses: an unreadable file or directory, a file larger than [`MAX_FILE_SIZE`] or not
    /// UTF-8, bad syntax, nesting deeper than [`MAX_DEPTH`], unknown keys, values of the wrong
    /// type or refused, service definitions mesh would refuse, and settings that contradict
    /// each other. No files at all gives the defaults.
    pub fn load(files: &[PathBuf], dirs: &[PathBuf]) -> Result<Self, ConfigError> {
        let mut merged = Partial::default();
        let mut warnings = Vec::new();
        for file in files {
            let text = read_file(file)?;
            let (p, w) = decode_text(&text, Format::from_path(file), file)?;
            merged.merge(p);
            warnings.extend(w);
        }
        for dir in dirs {
            for (file, format) in dir_files(dir, &mut warnings)? {
                let text = read_file(&file)?;
                let (p, w) = decode_text(&text, Some(format), &file)?;
                merged.merge(p);
                warnings.extend(w);
            }
        }
        let cfg = build(merged, warnings)?;
        for w in &cfg.warnings {
            tracing::warn!("{w}");
        }
        Ok(cfg)
    }

    /// Reads one document, as [`AgentConfig::load`] reads one file; `origin` names it in
    /// errors and in [`ServiceSource::file`]. Does not log the warnings. Never panics.
    pub fn from_str(text: &str, format: Format, origin: &Path) -> Result<Self, ConfigError> {
        if text.len() as u64 > MAX_FILE_SIZE {
            return Err(ConfigError::TooLarge {
                path: origin.to_path_buf(),
                size: text.len() as u64,
                max: MAX_FILE_SIZE,
            });
        }
        let (p, warnings) = decode_text(text, Some(format), origin)?;
        build(p, warnings)
    }

    /// The library configuration of this datacenter: name and primary, ACLs (enabled,
    /// default policy, initial management and replication tokens), Connect (enabled, CA
    /// settings), central service config, and storage (`data_dir`, or memory when unset).
    ///
    /// `acl.enable_token_replication`, `acl.tokens.agent` and `acl.tokens.default` have no
    /// place in [`mesh::DatacenterConfig`]: the agent uses them from [`AgentConfig::acl`].
    pub fn datacenter_config(&self) -> Result<mesh::DatacenterConfig, ConfigError> {
        let mut c =
            mesh::DatacenterConfig::new(self.datacenter.clone(), self.primary_datacenter.clone());
        c.acl.enabled = self.acl.enabled;
        c.acl.default_policy = self.acl.default_policy;
        c.acl.tokens.initial_management =
            self.acl.tokens.initial_management.as_ref().map(Into::into);
        c.acl.tokens.replication = self.acl.tokens.replication.as_ref().map(Into::into);
        c.connect.enabled = self.connect_enabled;
        c.connect.ca = self.ca_config.clone();
        c.enable_central_service_config = self.central_service_config;
        c.storage = match &self.data_dir {
            Some(dir) => mesh::Storage::Dir(dir.clone()),
            None => mesh::Storage::Memory,
        };
        if let Some(etcd) = &self.etcd {
            self.etcd_storage(&mut c, etcd)?;
        }
        Ok(c)
    }

    /// State on etcd: the store, this server's name (its server address) and the state key.
    #[cfg(feature = "etcd")]
    fn etcd_storage(
        &self,
        c: &mut mesh::DatacenterConfig,
        etcd: &AgentEtcd,
    ) -> Result<(), ConfigError> {
        let mut opts =
            mesh::replication_engine::EtcdOptions::new(etcd.endpoints.clone(), etcd.prefix.clone());
        if let Some(ca) = &etcd.ca_file {
            let mut tls = mesh::replication_engine::EtcdTls::new(read_file(ca)?.into_bytes());
            if let (Some(cert), Some(key)) = (&etcd.cert_file, &etcd.key_file) {
                tls = tls.with_client_identity(
                    read_file(cert)?.into_bytes(),
                    read_file(key)?.into_bytes(),
                );
            }
            opts.tls = Some(tls);
        }
        let mut storage = mesh::EtcdStorage::new(opts, self.server_addr.to_string());
        storage.lease_ttl = etcd.lease_ttl;
        c.storage = mesh::Storage::Etcd(Box::new(storage));
        if let Some(path) = &etcd.state_key_file {
            let text = read_file(path)?;
            let key = mesh::StateKey::from_hex(&text).map_err(|e| ConfigError::InvalidValue {
                path: path.clone(),
                key: "storage.etcd.state_key_file".to_owned(),
                message: e.to_string(),
                position: None,
            })?;
            c.state_key = Some(key);
        }
        Ok(())
    }

    #[cfg(not(feature = "etcd"))]
    fn etcd_storage(
        &self,
        _c: &mut mesh::DatacenterConfig,
        _etcd: &AgentEtcd,
    ) -> Result<(), ConfigError> {
        Err(ConfigError::Missing {
            key: "storage.etcd".to_owned(),
            reason: "this mesh was built without etcd support (build mesh-agent with \
                     --features etcd)"
                .to_owned(),
        })
    }

    /// Whether this is the primary datacenter (`datacenter` equals `primary_datacenter`).
    pub fn is_primary(&self) -> bool {
        self.datacenter == self.primary_datacenter
    }
}

/// Reads a file of at most [`MAX_FILE_SIZE`] bytes of UTF-8.
fn read_file(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    // Read one byte past the limit, so that a file growing after a size check is caught too.
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        let size = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64);
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            size: size.max(bytes.len() as u64),
            max: MAX_FILE_SIZE,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]);
        let p = error::position_at(&prefix, valid);
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line: p.line,
            column: p.column,
            message: "not UTF-8 text".to_owned(),
        }
    })
}

/// The `*.json` and `*.hcl` files of a config dir, in lexical order.
fn dir_files(
    dir: &Path,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Vec<(PathBuf, Format)>, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let path = entry.path();
        // Follows symbolic links, as Consul does; subdirectories are skipped.
        let meta = std::fs::metadata(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            continue;
        }
        match Format::from_path(&path) {
            Some(format) => names.push((entry.file_name(), path, format)),
            None => warnings.push(ConfigWarning {
                file: path,
                key: None,
                position: None,
                message: "skipped: a config dir holds .json and .hcl files".to_owned(),
            }),
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(names.into_iter().map(|(_, p, f)| (p, f)).collect())
}

/// Parses and decodes one document. `None` format: JSON, or HCL when it is not JSON.
fn decode_text(
    text: &str,
    format: Option<Format>,
    path: &Path,
) -> Result<(Partial, Vec<ConfigWarning>), ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (root, json) = match format {
        Some(Format::Json) => match json::parse(text) {
            Ok(root) => (root, true),
            Err(e) => {
                let mut err = parse_error(e, text, path);
                // Consul's guide prints HCL snippets as ```json: say what would work.
                if let ConfigError::Syntax { message, .. } = &mut err
                    && hcl::parse(text).is_ok()
                {
                    message.push_str(" (this is HCL: name the file .hcl)");
                }
                return Err(err);
            }
        },
        Some(Format::Hcl) => (
            hcl::parse(text).map_err(|e| parse_error(e, text, path))?,
            false,
        ),
        None => match json::parse(text) {
            Ok(root) => (root, true),
            Err(json_err) => match hcl::parse(text) {
                Ok(root) => (root, false),
                // Report the error of the syntax the text looks like.
                Err(hcl_err) if !text.trim_start().starts_with('{') => {
                    return Err(parse_error(hcl_err, text, path));
                }
                Err(_) => return Err(parse_error(json_err, text, path)),
            },
        },
    };
    Doc::new(path, text, json).decode(&root)
}

fn parse_error(e: ParseError, text: &str, path: &Path) -> ConfigError {
    let p = error::position_at(text, e.offset);
    match e.kind {
        ParseErrorKind::Syntax(message) => ConfigError::Syntax {
            path: path.to_path_buf(),
            line: p.line,
            column: p.column,
            message,
        },
        ParseErrorKind::TooDeep => ConfigError::TooDeep {
            path: path.to_path_buf(),
            line: p.line,
            column: p.column,
            max: MAX_DEPTH,
        },
    }
}
