//! The configuration of one datacenter, mirroring Consul's agent options.

use std::path::PathBuf;

use mesh_core::Datacenter;
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
    /// A datacenter with Consul's defaults: ACLs off, Connect on, central config on, in memory.
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

/// ACL settings (`acl { enabled, default_policy, tokens { ... } }`).
#[derive(Debug, Clone)]
pub struct AclConfig {
    /// Whether ACLs are enforced. Off: every call is allowed and intentions default to allow.
    pub enabled: bool,
    /// What an unmatched check answers; also the default intention decision.
    pub default_policy: DefaultPolicy,
    /// Tokens this datacenter knows from its configuration.
    pub tokens: AclTokens,
}

impl Default for AclConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            default_policy: DefaultPolicy::Allow,
            tokens: AclTokens::default(),
        }
    }
}

/// Tokens from configuration (`acl.tokens`). Secrets: never logged.
#[derive(Clone, Default)]
pub struct AclTokens {
    /// The management token created in the primary at first start
    /// (`initial_management`); ignored in secondaries.
    pub initial_management: Option<String>,
    /// The token a secondary uses to replicate from, and forward writes to, the primary.
    pub replication: Option<String>,
}

impl std::fmt::Debug for AclTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("AclTokens")
            .field("initial_management", &redact(&self.initial_management))
            .field("replication", &redact(&self.replication))
            .finish()
    }
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
