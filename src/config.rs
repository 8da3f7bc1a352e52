//! The configuration of one datacenter, mirroring Consul's agent options.

use std::path::PathBuf;

use mesh_core::{Datacenter, TokenSecret};
use mesh_intentions::acl::DefaultPolicy;

/// How a datacenter is configured (Consul's `datacenter`, `primary_datacenter`, `acl`,
/// `connect`, `enable_central_service_config` and `data_dir` options).
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// The key that encrypts the CA's private keys in the state store (AES-256-GCM). Required
    /// with `Storage::Etcd` (feature `etcd`), where the state leaves this machine; optional
    /// elsewhere. Without it the CA state is stored as the store keeps it (a private
    /// `Storage::Dir` on this server's disk).
    pub state_key: Option<StateKey>,
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
            state_key: None,
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
#[non_exhaustive]
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
#[non_exhaustive]
pub struct AclTokens {
    /// The management token created in the primary at first start
    /// (`initial_management`); ignored in secondaries.
    pub initial_management: Option<TokenSecret>,
    /// The token a secondary uses to replicate from, and forward writes to, the primary.
    pub replication: Option<TokenSecret>,
}

/// Connect settings (`connect { enabled, ca_config }`).
#[derive(Debug, Clone)]
#[non_exhaustive]
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
#[non_exhaustive]
pub enum Storage {
    /// In memory: gone when the process ends (examples, tests).
    #[default]
    Memory,
    /// On disk under this directory: survives restarts and crashes.
    Dir(PathBuf),
    /// On an etcd cluster (feature `etcd`), shared by every server of the datacenter: one
    /// leads (CA, replication from the primary, every write), the others stand by and take
    /// over within the lease's time to live when it stops.
    #[cfg(feature = "etcd")]
    Etcd(Box<EtcdStorage>),
}

/// A datacenter's state on etcd, and this server's part in leading it.
#[cfg(feature = "etcd")]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EtcdStorage {
    /// The cluster and the key prefix of this datacenter.
    pub options: mesh_replication::EtcdOptions,
    /// How this server names itself to the others (its address): what `status/leader`
    /// answers while it leads.
    pub server_name: String,
    /// The lease a leader keeps alive: a standby takes over at most this long after the
    /// leader stops.
    pub lease_ttl: std::time::Duration,
    /// Where the other servers reach this one while it leads (its API address, say), as
    /// [`EtcdStorage::leader_contact`] gives it to them; `None`: the server name.
    pub contact: Option<String>,
    /// The store, opened once, and the leadership won by [`EtcdStorage::wait_to_lead`] until
    /// a datacenter takes it over. Shared by clones.
    campaign: std::sync::Arc<Campaign>,
}

/// What [`EtcdStorage`]'s clones share.
#[cfg(feature = "etcd")]
#[derive(Debug, Default)]
struct Campaign {
    store: tokio::sync::OnceCell<std::sync::Arc<mesh_replication::EtcdStore>>,
    won: std::sync::Mutex<Option<mesh_replication::Leadership>>,
}

#[cfg(feature = "etcd")]
impl EtcdStorage {
    /// State under `options`, this server named `server_name`, with a 5-second lease.
    pub fn new(options: mesh_replication::EtcdOptions, server_name: impl Into<String>) -> Self {
        Self {
            options,
            server_name: server_name.into(),
            lease_ttl: std::time::Duration::from_secs(5),
            contact: None,
            campaign: std::sync::Arc::default(),
        }
    }

    /// The store, connected on first use.
    pub(crate) async fn store(
        &self,
    ) -> Result<std::sync::Arc<mesh_replication::EtcdStore>, crate::Error> {
        let store = self
            .campaign
            .store
            .get_or_try_init(|| async {
                mesh_replication::EtcdStore::open(self.options.clone())
                    .await
                    .map(std::sync::Arc::new)
            })
            .await?;
        Ok(store.clone())
    }

    /// Waits until this server leads the datacenter (standing by while another one does), so
    /// that a program can serve as a standby meanwhile, forwarding to the leader it finds with
    /// [`EtcdStorage::leader_contact`]. The next `Datacenter::start_*` with this storage (or a
    /// clone) starts with the leadership won here instead of campaigning itself.
    pub async fn wait_to_lead(&self) -> Result<(), crate::Error> {
        let won = self.lead_now(&*self.store().await?).await?;
        *self.won() = Some(won);
        Ok(())
    }

    /// Waits until this server leads, on `store`.
    async fn lead_now(
        &self,
        store: &mesh_replication::EtcdStore,
    ) -> Result<mesh_replication::Leadership, crate::Error> {
        tracing::info!(server = %self.server_name, "waiting to lead the datacenter");
        let contact = self.contact.as_deref().unwrap_or(&self.server_name);
        Ok(store
            .lead(&self.server_name, contact, self.lease_ttl)
            .await?)
    }

    fn won(&self) -> std::sync::MutexGuard<'_, Option<mesh_replication::Leadership>> {
        self.campaign
            .won
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The leadership [`EtcdStorage::wait_to_lead`] won, or, when it was not called, the
    /// leadership this call waits for.
    pub(crate) async fn take_leadership(
        &self,
    ) -> Result<
        (
            std::sync::Arc<mesh_replication::EtcdStore>,
            mesh_replication::Leadership,
        ),
        crate::Error,
    > {
        let store = self.store().await?;
        let won = self.won().take();
        let won = match won {
            Some(w) => w,
            None => self.lead_now(&store).await?,
        };
        Ok((store, won))
    }

    /// The server that leads the datacenter now, as it named itself, and where it is reached
    /// (its `contact`); `None` while no server leads.
    pub async fn leader_contact(&self) -> Result<Option<(String, String)>, crate::Error> {
        Ok(self.store().await?.leader_contact().await?)
    }
}

/// A 256-bit key that encrypts the CA's private keys where the state store keeps them. `Debug`
/// never shows it.
#[derive(Clone)]
pub struct StateKey([u8; 32]);

impl StateKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key from 64 hexadecimal digits (surrounding white space ignored), as a key file holds
    /// it (`openssl rand -hex 32`).
    pub fn from_hex(text: &str) -> Result<Self, StateKeyError> {
        let text = text.trim();
        if text.len() != 64 || !text.is_ascii() {
            return Err(StateKeyError { len: text.len() });
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| StateKeyError { len: text.len() })?;
        }
        Ok(Self(out))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(<redacted>)")
    }
}

/// A state key that is not 64 hexadecimal digits.
#[derive(Debug, thiserror::Error)]
#[error("a state key is 64 hexadecimal digits (32 bytes); found {len} characters or a non-hex one")]
pub struct StateKeyError {
    len: usize,
}
