//! The configuration of one datacenter, mirroring Consul's agent options.

use std::path::PathBuf;

use mesh_core::{Datacenter, TokenSecret};
use mesh_intentions::acl::DefaultPolicy;

/// How a datacenter is configured (Consul's `datacenter`, `primary_datacenter`, `acl`,
/// `connect`, `enable_central_service_config` and `data_dir` options).
#[derive(Debug, Clone)]
pub struct DatacenterConfig {
    /// This datacenter's name.
    pub name: Datacenter,
    /// The datacenter that owns global state (ACLs, intentions, config entries, CA roots).
    pub primary_datacenter: Datacenter,
    /// ACL settings.
    pub acl: AclConfig,
    /// Connect (CA and mTLS) settings.
    pub connect: ConnectConfig,
    /// Whether proxies take their settings from config entries (`proxy-defaults`,
    /// `service-defaults`). When off, only the mode written on an upstream counts.
    pub enable_central_service_config: bool,
    /// Where the datacenter keeps its state.
    pub storage: Storage,
    /// Where this datacenter's servers accept the other datacenters' servers (mTLS, the
    /// server port), as they reach it: announced in this datacenter's record, so that the
    /// others can forward requests here. `None` announces no address.
    pub server_address: Option<std::net::SocketAddr>,
}

impl DatacenterConfig {
    /// A datacenter with ACLs on and default deny, Connect on, central config on, in memory.
    ///
    /// ACLs differ from Consul's defaults (off, and allow when on): a mesh whose intentions
    /// default to allow lets every service reach every other until someone writes a deny, and
    /// a library default is what most programs ship with. Give the first token in
    /// `acl.tokens.initial_management` (or bootstrap one); set `acl.enabled = false` or
    /// `acl.default_policy = DefaultPolicy::Allow` only on purpose.
    pub fn new(name: Datacenter, primary_datacenter: Datacenter) -> Self {
        Self {
            name,
            primary_datacenter,
            acl: AclConfig::default(),
            connect: ConnectConfig::default(),
            enable_central_service_config: true,
            storage: Storage::Memory,
            server_address: None,
        }
    }

    /// Whether this is the primary datacenter.
    pub fn is_primary(&self) -> bool {
        self.name == self.primary_datacenter
    }
}

/// ACL settings (`acl { enabled, default_policy, tokens { ... } }`). The default is on, with
/// default deny (see [`DatacenterConfig::new`] for why this differs from Consul).
#[derive(Debug, Clone)]
pub struct AclConfig {
    /// Whether ACLs are enforced. Off: every call is allowed and intentions default to allow.
    pub enabled: bool,
    /// What an unmatched check answers; also the default intention decision. Deny by
    /// default.
    pub default_policy: DefaultPolicy,
    /// Tokens this datacenter knows from its configuration.
    pub tokens: AclTokens,
}

impl Default for AclConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_policy: DefaultPolicy::Deny,
            tokens: AclTokens::default(),
        }
    }
}

/// Tokens from configuration (`acl.tokens`). Secrets: `Debug` never shows them.
#[derive(Debug, Clone, Default)]
pub struct AclTokens {
    /// The management token created in the primary at first start
    /// (`initial_management`); ignored in secondaries.
    pub initial_management: Option<TokenSecret>,
    /// The token a secondary uses to replicate from, and forward writes to, the primary.
    pub replication: Option<TokenSecret>,
}

/// Connect settings (`connect { enabled, ca_config }`).
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Whether the CA runs and leaves can be signed.
    pub enabled: bool,
    /// The CA's TTLs, key type and limits.
    pub ca: mesh_ca::CaConfig,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ca: mesh_ca::CaConfig::default(),
        }
    }
}

/// Where a datacenter keeps its state.
#[derive(Debug, Clone, Default)]
pub enum Storage {
    /// In memory: gone when the process ends (examples, tests).
    #[default]
    Memory,
    /// On disk under this directory: survives restarts and crashes.
    Dir(PathBuf),
}
