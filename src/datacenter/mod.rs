//! A datacenter's control plane: state, ACLs, intentions, config entries, catalog, CA and
//! replication, behind one API whose every call is authorized by a token.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use mesh_ca::tls::TrustBundle;
use mesh_ca::{Ca, CaOptions, CaState, IntermediateSigner, IssuedLeaf, RootsView, SignerError};
use mesh_core::{
    ConfigEntry, ConfigEntryKind, Datacenter as DatacenterName, Index, NameError, ServiceName,
    SpiffeId, TrustDomain,
};
use mesh_core::{
    MeshGatewayRegistration, ServiceConnect, ServiceDefinition, ServiceInstanceId, ServiceKind,
    SidecarPortRange, sidecar_from_service,
};
use mesh_intentions::acl::{
    Access, Authorizer, AuthorizerContext, GLOBAL_MANAGEMENT_POLICY_ID, Permission, Policy,
    Resource,
};
use mesh_intentions::intention::{
    Action, Intention, IntentionDefault, IntentionSet, SharedIntentions, can_read, can_write,
};
use mesh_replication::{DurableStore, MemoryStore, Store};
use mesh_replication::{
    Forwarder, InProcessTransport, Record, Replicas, ReplicationServer, ReplicationStatus,
    ReplicatorConfig, SecretToken, Transport, TxnOp, Value,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::acl::{
    AclRecords, AclSnapshot, NameIndexRecord, NodeIdentityRecord, PolicyRecord, RoleRecord,
    ServiceIdentityRecord, TokenRecord,
};
use crate::authz;
use crate::catalog::{CatalogEntry, FederationGateway, ServiceEndpoint};
use crate::config::{DatacenterConfig, Storage};
use crate::error::{Operation, during};
use crate::replication::AclReplicationAuthorizer;
use crate::tables::{self, table};
use crate::{Error, ErrorKind, ids};

mod acl;
mod ca;
mod catalog;
mod config_entries;
mod dataplane;
mod intentions;

use crate::{Authorization, Secret};
pub use acl::Acl;
pub use ca::ConnectCa;
pub use catalog::{Catalog, Registered};
pub use config_entries::ConfigEntries;
pub use intentions::{IntentionTarget, Intentions};

/// How long a write made through the primary may take to replicate back before the call
/// reports it (the write itself is done by then).
const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the primary may hold a replication query: short, so that a secondary notices a
/// broken link (and reports its staleness) within seconds.
const REPLICATION_WAIT: Duration = Duration::from_secs(5);

/// How long a watcher's blocking query is held before it is renewed.
const WATCH_WAIT: Duration = Duration::from_secs(60);

/// What a token may be created with.
#[derive(Debug, Clone, Default)]
pub struct TokenSpec {
    /// Free text.
    pub description: String,
    /// Names of the policies to link.
    pub policy_names: Vec<String>,
    /// Names of the roles to link.
    pub role_names: Vec<String>,
    /// Service identities (service names) valid in every datacenter.
    pub service_identities: Vec<String>,
    /// Keep the token in this datacenter only.
    pub local: bool,
    /// The accessor ID to create the token with (a UUID not reserved for built-ins; a taken
    /// one is a [`ErrorKind::Conflict`]). `None`: a new random one. On update it must be `None`
    /// or the token's own.
    pub accessor_id: Option<String>,
    /// The secret to create the token with (a UUID, as in Consul; a taken one is a
    /// [`ErrorKind::Conflict`]). `None`: a new random one. On update it must be `None` or the
    /// token's own.
    pub secret_id: Option<Secret>,
    /// When the token expires: between one minute and 24 hours from now (Consul's
    /// `ExpirationTime` and `ExpirationTTL` bounds). An expired token is refused. On update it
    /// must be `None` or unchanged.
    pub expiration: Option<SystemTime>,
    /// Node identities: node name and the datacenter it is valid in.
    pub node_identities: Vec<(String, DatacenterName)>,
    /// Service identities limited to datacenters (an empty list: every datacenter), beside
    /// the unlimited ones of `service_identities`.
    pub scoped_service_identities: Vec<(String, Vec<DatacenterName>)>,
}

/// What a role is created or replaced with ([`Acl::role_create_with`]).
#[derive(Debug, Clone, Default)]
pub struct RoleSpec {
    /// Unique name: 1 to 256 letters, digits, `-` or `_`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Names of the policies to link.
    pub policy_names: Vec<String>,
    /// Service identities with the datacenters they are valid in (empty: every datacenter).
    pub service_identities: Vec<(String, Vec<DatacenterName>)>,
    /// Node identities: node name and the datacenter it is valid in.
    pub node_identities: Vec<(String, DatacenterName)>,
}

/// What a policy is created or replaced with ([`Acl::policy_create_with`]).
#[derive(Debug, Clone, Default)]
pub struct PolicySpec {
    /// Unique name, by Consul's rule: 1 to 128 characters matching
    /// `^[A-Za-z0-9\-_]+/?[A-Za-z0-9\-_]*$`, not starting with `builtin/`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Rules text (HCL or JSON).
    pub rules: String,
    /// Datacenters the policy applies in (empty: all).
    pub datacenters: Vec<DatacenterName>,
}

/// A record of the intermediate exchange between a secondary and the primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct IntermediateRecord {
    pub(crate) csr: String,
    #[serde(default)]
    pub(crate) cert: Option<String>,
    #[serde(default)]
    pub(crate) error: Option<String>,
}

/// One datacenter. Cheap to clone (a handle).
#[derive(Clone)]
pub struct Datacenter {
    inner: Arc<Inner>,
}

struct Inner {
    config: DatacenterConfig,
    store: Arc<dyn Store>,
    forwarder: Forwarder,
    replicas: Option<Replicas>,
    server: Arc<ReplicationServer>,
    acl: Arc<ArcSwap<AclSnapshot>>,
    intentions: Arc<SharedIntentions>,
    /// The intentions table index the shared set was last built from.
    intentions_built: std::sync::atomic::AtomicU64,
    /// Serialises rebuilds of the ACL and intention views: two rebuilds racing could
    /// otherwise publish an older view after a newer one.
    rebuild: tokio::sync::Mutex<()>,
    /// Serialises ACL bootstraps: of two concurrent ones exactly one succeeds.
    bootstrap: tokio::sync::Mutex<()>,
    /// Background publications of global records (by `<table>/<id>`) waiting for the primary;
    /// a newer publication or a removal of the same record replaces the pending one.
    pending: Mutex<std::collections::HashMap<String, JoinHandle<()>>>,
    ca: Arc<std::sync::OnceLock<Ca>>,
    /// The routing view served to the data plane, started on first use.
    routing: tokio::sync::OnceCell<watch::Receiver<Arc<crate::dataplane::Routing>>>,
    routing_tx: std::sync::OnceLock<watch::Sender<Arc<crate::dataplane::Routing>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// With state on etcd: this server's leadership (given up on shutdown).
    #[cfg(feature = "etcd")]
    leadership: Mutex<Option<mesh_replication::Leadership>>,
    /// With state on etcd: the store, for what only etcd knows (the servers present).
    #[cfg(feature = "etcd")]
    etcd: Option<Arc<mesh_replication::EtcdStore>>,
    /// `true` once leadership is lost; `None` when the storage has no leader (one server).
    lost: Option<watch::Receiver<bool>>,
}

impl std::fmt::Debug for Datacenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datacenter")
            .field("name", &self.inner.config.name)
            .field("primary", &self.inner.config.is_primary())
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.get_mut() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
        if let Ok(pending) = self.pending.get_mut() {
            for (_, t) in pending.drain() {
                t.abort();
            }
        }
    }
}

/// Asks the primary for its datacenters list once, with the replication token: a refused
/// token, or a server that is not the primary `config.primary_datacenter` names, fails
/// start-up here, naming the cause. A primary that does not answer does not: the secondary
/// starts from what it holds and catches up when the primary is back. `Ok(false)` says the
/// primary did not answer.
async fn probe_primary(config: &DatacenterConfig, primary: &dyn Transport) -> Result<bool, Error> {
    let req = mesh_replication::ListRequest {
        token: SecretToken::new(replication_secret(config)),
        table: table(tables::DATACENTERS),
        min_index: Index::ZERO,
        wait: Duration::ZERO,
    };
    let listing = match tokio::time::timeout(PROBE_TIMEOUT, primary.list(req)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) if e.is_denied() => {
            return Err(ErrorKind::ReplicationTokenRefused(mesh_core::error_chain(&e)).into());
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %mesh_core::error_chain(&e), "the primary did not answer the start-up probe; starting from local state");
            return Ok(false);
        }
        Err(_) => {
            tracing::warn!(timeout = ?PROBE_TIMEOUT, "the primary did not answer the start-up probe in time; starting from local state");
            return Ok(false);
        }
    };
    let primaries: Vec<String> = listing
        .records
        .iter()
        .filter_map(|r| {
            let v = r.value.as_json()?;
            v.get("Primary")?.as_bool()?.then(|| r.id.clone())
        })
        .collect();
    if !primaries
        .iter()
        .any(|p| p == config.primary_datacenter.as_str())
    {
        return Err(Error::from(ErrorKind::WrongPrimary {
            configured: config.primary_datacenter.to_string(),
            found: primaries.first().cloned(),
        }));
    }
    Ok(true)
}

/// How long the start-up probe of the primary may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Locks a mutex whose data stays consistent even if a holder panicked (plain maps).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Datacenter {
    /// Starts the primary datacenter: opens its state, bootstraps ACLs (the global-management
    /// policy and the `initial_management` token) and, with Connect on, the CA root.
    ///
    /// ```
    /// use mesh::{Datacenter, DatacenterConfig, Secret};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let mut config = DatacenterConfig::new("primary".parse()?, "primary".parse()?);
    /// config.acl.enabled = true;
    /// config.acl.tokens.initial_management = Some("a-management-secret".into());
    /// let dc = Datacenter::start_primary(config).await?;
    /// assert!(dc.is_primary());
    /// assert!(dc.trust_domain().is_some(), "Connect is on by default: the CA has its root");
    /// // The management token resolves; an unknown secret does not.
    /// assert!(dc.acl().authorizer(&Secret::new("a-management-secret")).is_ok());
    /// assert!(dc.acl().authorizer(&Secret::new("guess")).is_err());
    /// dc.shutdown(std::time::Duration::from_secs(5)).await?;
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start_primary(config: DatacenterConfig) -> Result<Self, Error> {
        let op = Operation::new("datacenter start", &config.name);
        during(op, async {
            if !config.is_primary() {
                return Err(Error::from(ErrorKind::Config(format!(
                    "{} is not the primary datacenter ({}): use start_secondary",
                    config.name, config.primary_datacenter
                ))));
            }
            Self::start(config, None).await
        })
        .await
    }

    /// Starts a secondary datacenter that replicates from, and forwards writes to, the primary
    /// through `primary`. With Connect on, it waits until the primary has signed its
    /// intermediate.
    ///
    /// `primary` is [`Datacenter::in_process_link`] of a primary in this process, or a
    /// transport to its server port (`mesh agent` builds one over mTLS).
    ///
    /// ```
    /// use mesh::{Datacenter, DatacenterConfig, Secret};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let mut config = DatacenterConfig::new("dc1".parse()?, "dc1".parse()?);
    /// config.acl.tokens.initial_management = Some("a-management-secret".into());
    /// let primary = Datacenter::start_primary(config).await?;
    /// let token = Secret::new("a-management-secret");
    /// // The secondary replicates with a token of the primary's (here the management token;
    /// // in production one with only the replication rights).
    /// let mut config = DatacenterConfig::new("dc2".parse()?, "dc1".parse()?);
    /// config.acl.tokens.replication = Some(token.clone());
    /// let secondary = Datacenter::start_secondary(config, primary.in_process_link()).await?;
    /// // One mesh: the secondary's CA chains to the primary's root.
    /// assert_eq!(secondary.trust_domain(), primary.trust_domain());
    /// // A write made in the secondary is forwarded to the primary, and readable here when the
    /// // call returns.
    /// let (web, db) = ("web".parse()?, "db".parse()?);
    /// secondary.intentions().deny(&token, &web, &db).await?;
    /// assert_eq!(secondary.intentions().list(&token).await?.len(), 1);
    /// assert_eq!(primary.intentions().list(&token).await?.len(), 1);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start_secondary(
        config: DatacenterConfig,
        primary: Arc<dyn Transport>,
    ) -> Result<Self, Error> {
        let op = Operation::new("datacenter start", &config.name);
        during(op, async {
            if config.is_primary() {
                return Err(Error::from(ErrorKind::Config(format!(
                    "{} is the primary datacenter: use start_primary",
                    config.name
                ))));
            }
            let reached = probe_primary(&config, &*primary).await?;
            let dc = Self::start(config, Some(primary)).await?;
            if reached {
                dc.first_acl_round().await;
            }
            Ok(dc)
        })
        .await
    }

    /// Waits (bounded) until the ACL tables have replicated once, so that a secondary knows
    /// the global tokens when `start_secondary` returns; on time-out it goes on with what it
    /// has (the replicators keep trying).
    async fn first_acl_round(&self) {
        let Some(replicas) = &self.inner.replicas else {
            return;
        };
        let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES_TIMEOUT;
        for t in [tables::ACL_POLICIES, tables::ACL_ROLES, tables::ACL_TOKENS] {
            let Some(handle) = replicas.get(&table(t)) else {
                continue;
            };
            let mut status = handle.subscribe();
            let first = tokio::time::timeout_at(deadline, status.wait_for(|s| s.rounds > 0));
            if first.await.is_err() {
                tracing::warn!(
                    table = t,
                    "the first replication round did not finish in time; starting with the local copy"
                );
                return;
            }
        }
        if let Err(e) = self.inner.rebuild_acl().await {
            tracing::warn!(error = %e, "rebuilding the ACL view after the first round failed");
        }
    }

    /// An in-process link to this datacenter's replication server, for a secondary in the
    /// same process.
    pub fn in_process_link(&self) -> Arc<dyn Transport> {
        Arc::new(InProcessTransport::new(self.inner.server.clone()))
    }

    /// The server that answers secondaries (serve it over TCP with
    /// [`ReplicationServer::spawn_tcp`]).
    pub fn replication_server(&self) -> Arc<ReplicationServer> {
        self.inner.server.clone()
    }

    async fn start(
        config: DatacenterConfig,
        primary: Option<Arc<dyn Transport>>,
    ) -> Result<Self, Error> {
        #[cfg(feature = "etcd")]
        let mut leadership = None;
        #[cfg(feature = "etcd")]
        let mut etcd_store = None;
        let store: Arc<dyn Store> = match &config.storage {
            Storage::Memory => Arc::new(MemoryStore::new()),
            Storage::Dir(dir) => {
                create_private_dir(dir)?;
                Arc::new(DurableStore::open(dir.join("state.redb")).await?)
            }
            #[cfg(feature = "etcd")]
            Storage::Etcd(etcd) => {
                if config.state_key.is_none() && config.connect.enabled {
                    return Err(Error::from(ErrorKind::Config(
                        "state on etcd needs a state_key: the CA's private keys are never \
                         stored there in the clear"
                            .into(),
                    )));
                }
                // Blocks while another server leads: this one stands by.
                let (store, lead) = etcd.take_leadership().await?;
                leadership = Some(lead);
                etcd_store = Some(store.clone());
                store
            }
        };
        #[cfg(feature = "etcd")]
        let lost = leadership.as_ref().map(|l| l.lost());
        #[cfg(not(feature = "etcd"))]
        let lost = None;
        let registry = tables::registry();
        let acl = Arc::new(ArcSwap::from_pointee(AclSnapshot::default()));
        let repl_authz = Arc::new(AclReplicationAuthorizer::new(
            acl.clone(),
            config.acl.clone(),
            config.name.clone(),
        ));
        let ca_cell: Arc<std::sync::OnceLock<Ca>> = Arc::new(std::sync::OnceLock::new());
        let mut server =
            ReplicationServer::new(registry.clone(), store.clone(), repl_authz.clone());
        if primary.is_none() {
            // The primary signs the server certificates of secondaries that enroll.
            server = server.with_enroller(Arc::new(ca::PeerServerEnroller(ca_cell.clone())));
        }
        let server = Arc::new(server);
        let (forwarder, replicas) = match &primary {
            None => (
                Forwarder::primary(registry.clone(), store.clone(), repl_authz),
                None,
            ),
            Some(link) => {
                let token = SecretToken::new(replication_secret(&config));
                let mut rc = ReplicatorConfig::new(token);
                rc.wait = REPLICATION_WAIT;
                rc.check = Some(Arc::new(ReplicatedRecordCheck {
                    primary: config.primary_datacenter.clone(),
                }));
                let replicas = Replicas::spawn(&registry, store.clone(), link.clone(), rc);
                (
                    Forwarder::secondary(registry.clone(), store.clone(), repl_authz, link.clone()),
                    Some(replicas),
                )
            }
        };
        let inner = Inner {
            config,
            store,
            forwarder,
            replicas,
            server,
            acl,
            intentions: Arc::new(SharedIntentions::default()),
            intentions_built: std::sync::atomic::AtomicU64::new(0),
            rebuild: tokio::sync::Mutex::new(()),
            bootstrap: tokio::sync::Mutex::new(()),
            pending: Mutex::new(std::collections::HashMap::new()),
            ca: ca_cell,
            routing: tokio::sync::OnceCell::new(),
            routing_tx: std::sync::OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
            #[cfg(feature = "etcd")]
            leadership: Mutex::new(leadership),
            #[cfg(feature = "etcd")]
            etcd: etcd_store,
            lost,
        };
        inner.rebuild_acl().await?;
        inner.rebuild_intentions().await?;
        if inner.config.is_primary() {
            inner.bootstrap_acl().await?;
        }
        let dc = Datacenter {
            inner: Arc::new(inner),
        };
        dc.spawn_watchers();
        if let Err(e) = dc.announce().await {
            // Only `catalog/datacenters` lists depend on it: worth a warning, not a failure.
            tracing::warn!(error = %e, "announcing this datacenter to the primary failed");
        }
        if dc.inner.config.connect.enabled {
            let ca = if dc.inner.config.is_primary() {
                dc.start_primary_ca().await?
            } else {
                dc.start_secondary_ca().await?
            };
            // Set once, here, before the handle is returned.
            let _ = dc.inner.ca.set(ca.clone());
            if dc.is_primary() {
                dc.spawn_roots_publisher(ca);
            }
        }
        tracing::info!(
            datacenter = %dc.inner.config.name,
            primary = dc.inner.config.is_primary(),
            connect = dc.inner.config.connect.enabled,
            acl = dc.inner.config.acl.enabled,
            "datacenter started"
        );
        Ok(dc)
    }

    /// Writes this datacenter's record: the primary in its own store, a secondary through the
    /// primary (with the replication token; in the background while the primary is away).
    async fn announce(&self) -> Result<(), Error> {
        let rec = crate::catalog::DatacenterRecord::new(self.name().clone(), self.is_primary())
            .with_server(self.inner.config.server_address);
        if self.is_primary() {
            self.inner
                .store
                .upsert(
                    &table(tables::DATACENTERS),
                    self.name().as_str(),
                    json(&rec)?,
                    None,
                )
                .await?;
            return Ok(());
        }
        let token = self.inner.replication_token();
        self.publish_global(
            &token,
            tables::DATACENTERS,
            self.name().as_str(),
            Some(json(&rec)?),
        )
        .await
    }

    /// ACL policies, roles and tokens.
    pub fn acl(&self) -> Acl<'_> {
        Acl { dc: self }
    }

    /// The catalog: registrations and the addresses the data plane routes to.
    pub fn catalog(&self) -> Catalog<'_> {
        Catalog { dc: self }
    }

    /// Intentions, and the decision the data plane enforces.
    pub fn intentions(&self) -> Intentions<'_> {
        Intentions { dc: self }
    }

    /// Config entries (`proxy-defaults`, `service-defaults`).
    pub fn config_entries(&self) -> ConfigEntries<'_> {
        ConfigEntries { dc: self }
    }

    /// The Connect CA: roots, leaf signing, rotation.
    pub fn connect_ca(&self) -> ConnectCa<'_> {
        ConnectCa { dc: self }
    }

    /// This datacenter's name.
    pub fn name(&self) -> &DatacenterName {
        &self.inner.config.name
    }

    /// With state on etcd: becomes `true` when this server's leadership is lost (etcd
    /// unreachable for longer than the lease, or another server took over). Its writes then
    /// fail and its reads of the store may be stale; a program should stop writing and, once
    /// etcd answers again, start again to stand by. `None` when the storage has no leader (one
    /// server).
    pub fn leadership_lost(&self) -> Option<watch::Receiver<bool>> {
        self.inner.lost.clone()
    }

    /// With state on etcd: every server of this datacenter that is alive, leading or standing
    /// by, as each names itself (`EtcdStorage::server_name`). `None` with one server's storage.
    pub async fn servers(&self) -> Result<Option<Vec<String>>, Error> {
        #[cfg(feature = "etcd")]
        if let Some(etcd) = &self.inner.etcd {
            return Ok(Some(etcd.servers().await?));
        }
        Ok(None)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &DatacenterConfig {
        &self.inner.config
    }

    /// Whether this is the primary.
    pub fn is_primary(&self) -> bool {
        self.inner.config.is_primary()
    }

    /// The state store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The replication status of every global table (empty in the primary).
    pub fn replication_status(&self) -> Vec<ReplicationStatus> {
        self.inner
            .replicas
            .as_ref()
            .map(Replicas::statuses)
            .unwrap_or_default()
    }

    /// Waits until this datacenter's copy of the global table `table` (a name of
    /// [`tables`], such as `tables::INTENTIONS`) reflects the primary's `index`
    /// of it (the modify index of a record written there): after it, reads here see that
    /// write. Returns at once in the primary. Every write through this API already waits for
    /// the tables it touched before returning; this is for writes made elsewhere (another
    /// process, the primary's own API). Fails after `timeout`, saying how far the copy got.
    pub async fn wait_replicated(
        &self,
        table: &str,
        index: Index,
        timeout: Duration,
    ) -> Result<(), Error> {
        let name =
            tables::lookup(table).ok_or_else(|| ErrorKind::NotFound(format!("table {table:?}")))?;
        let Some(replicas) = &self.inner.replicas else {
            return Ok(());
        };
        replicas.wait_for_index(&name, index, timeout).await?;
        Ok(())
    }

    /// Stops this datacenter and waits, at most `deadline`, until everything it runs in the
    /// background has ended: replicators, watchers, the routing view, pending publications.
    /// Once it returns `Ok` and no other handle is left (clones, components built on it, a
    /// secondary's in-process link to this primary), its store is closed and the same data
    /// dir can be opened again at once.
    ///
    /// Dropping the last handle stops the same tasks without waiting: the store closes moments
    /// later. Handles that remain after `shutdown` see a datacenter whose views no longer
    /// follow the store.
    pub async fn shutdown(self, deadline: Duration) -> Result<(), Error> {
        let until = tokio::time::Instant::now() + deadline;
        let replicas_done = match &self.inner.replicas {
            Some(r) => r.stop_all(deadline).await,
            None => true,
        };
        let mut tasks: Vec<JoinHandle<()>> = lock(&self.inner.tasks).drain(..).collect();
        tasks.extend(lock(&self.inner.pending).drain().map(|(_, t)| t));
        for t in &tasks {
            t.abort();
        }
        let mut left = 0usize;
        for t in tasks {
            let rest = until.saturating_duration_since(tokio::time::Instant::now());
            if tokio::time::timeout(rest, t).await.is_err() {
                left += 1;
            }
        }
        #[cfg(feature = "etcd")]
        {
            let lead = lock(&self.inner.leadership).take();
            if let Some(lead) = lead
                && let Err(e) = lead.resign().await
            {
                tracing::warn!(error = %e, "giving up leadership failed; it lapses with its lease");
            }
        }
        let others = Arc::strong_count(&self.inner) - 1;
        drop(self);
        if !replicas_done || left > 0 {
            return Err(Error::from(ErrorKind::Config(format!(
                "shutdown deadline of {deadline:?} passed with {} background tasks still running",
                left + usize::from(!replicas_done)
            ))));
        }
        if others > 0 {
            tracing::info!(
                others,
                "datacenter stopped; its store closes when the other handles are dropped"
            );
        }
        Ok(())
    }

    // ---- internals -------------------------------------------------------------------

    fn require(&self, token: &Secret, perm: Permission, name: Option<&str>) -> Result<(), Error> {
        let authz = self.inner.authorizer(token.expose_secret())?;
        let d = authz
            .check(
                perm.resource,
                perm.access,
                name.unwrap_or(""),
                AuthorizerContext::default(),
            )
            .map_err(Error::invalid)?;
        authz
            .require(d, perm, name)
            .map(|_| ())
            .map_err(Error::from)
    }

    async fn write_global(
        &self,
        token: &Secret,
        t: &'static str,
        id: &str,
        value: Value,
        cas: Option<Index>,
    ) -> Result<Index, Error> {
        self.global_txn(
            token,
            t,
            vec![TxnOp::Upsert {
                table: table(t),
                id: id.to_owned(),
                value,
                cas,
            }],
        )
        .await
    }

    /// Publishes (`Some`) or removes (`None`) a global record that describes a local object (a
    /// gateway, a sidecar). Local registration must not depend on the primary: when the
    /// primary cannot be reached the change is made in the background, retried with backoff
    /// until it lands; a later change of the same record replaces a pending one, so an older
    /// value never lands after a newer one. A refusal by the primary is returned as is.
    async fn publish_global(
        &self,
        token: &Secret,
        t: &'static str,
        id: &str,
        value: Option<Value>,
    ) -> Result<(), Error> {
        let key = format!("{t}/{id}");
        if let Some(old) = lock(&self.inner.pending).remove(&key) {
            old.abort();
        }
        match self.apply_global(token, t, id, value.clone()).await {
            Ok(()) => Ok(()),
            // Only a primary that did not answer is waited for; an answer (a refusal, an
            // invalid record) is the caller's to see.
            Err(err)
                if matches!(err.kind(), ErrorKind::Forward(mesh_replication::WriteError::Forward(e))
                    if !matches!(e, mesh_replication::TransportError::Remote(_))) =>
            {
                tracing::warn!(table = t, id, error = %err, "primary unreachable; publishing in the background");
                let weak = Arc::downgrade(&self.inner);
                let (token, id) = (token.clone(), id.to_owned());
                let task = tokio::spawn(async move {
                    let mut delay = Duration::from_millis(200);
                    loop {
                        tokio::time::sleep(delay).await;
                        let Some(inner) = weak.upgrade() else { return };
                        let dc = Datacenter { inner };
                        match dc.apply_global(&token, t, &id, value.clone()).await {
                            Ok(()) => {
                                tracing::info!(
                                    table = t,
                                    id,
                                    "published after the primary came back"
                                );
                                return;
                            }
                            Err(e) => {
                                tracing::debug!(table = t, id, error = %e, "publishing still failing")
                            }
                        }
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                });
                lock(&self.inner.pending).insert(key, task);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn apply_global(
        &self,
        token: &Secret,
        t: &'static str,
        id: &str,
        value: Option<Value>,
    ) -> Result<(), Error> {
        match value {
            Some(v) => self.write_global(token, t, id, v, None).await.map(|_| ()),
            None => self.delete_global(token, t, id).await,
        }
    }

    /// The id of a global record about a local instance: `<datacenter>/<service>/<instance>`,
    /// so the primary can check `service:write` on the service it names.
    fn global_id(&self, service: &str, instance: &str) -> String {
        authz::instance_record_id(self.name().as_str(), service, instance)
    }

    async fn delete_global(&self, token: &Secret, t: &'static str, id: &str) -> Result<(), Error> {
        self.global_txn(
            token,
            t,
            vec![TxnOp::Delete {
                table: table(t),
                id: id.to_owned(),
                cas: None,
            }],
        )
        .await
        .map(|_| ())
    }

    async fn global_txn(
        &self,
        token: &Secret,
        t: &'static str,
        ops: Vec<TxnOp>,
    ) -> Result<Index, Error> {
        // Every table the transaction touches replicates on its own: read-your-writes waits
        // for each of them, not only the main one.
        let mut touched: Vec<mesh_replication::TableName> = Vec::new();
        for op in &ops {
            if !touched.contains(op.table()) {
                touched.push(op.table().clone());
            }
        }
        let receipt = self
            .inner
            .forwarder
            .write(&SecretToken::from(token), ops)
            .await?;
        if receipt.forwarded
            && let Some(replicas) = &self.inner.replicas
        {
            for tbl in &touched {
                replicas
                    .wait_for_index(tbl, receipt.index, READ_YOUR_WRITES_TIMEOUT)
                    .await?;
            }
        }
        // Local views (ACL, intentions) follow the table; make the caller's next call see it.
        self.inner.refresh(t).await?;
        Ok(receipt.index)
    }

    async fn write_local(
        &self,
        t: &'static str,
        id: &str,
        value: Value,
        cas: Option<Index>,
    ) -> Result<Index, Error> {
        Ok(self.inner.store.upsert(&table(t), id, value, cas).await?)
    }

    fn spawn_watchers(&self) {
        // A record the primary holds but this datacenter refused changes no local table:
        // follow the replicator's list of refusals too.
        if let Some(replicas) = &self.inner.replicas
            && let Some(handle) = replicas.get(&table(tables::INTENTIONS))
        {
            let mut rx = handle.subscribe();
            let weak = Arc::downgrade(&self.inner);
            let task = tokio::spawn(async move {
                let mut seen = rx.borrow_and_update().refused.clone();
                while rx.changed().await.is_ok() {
                    let now = rx.borrow_and_update().refused.clone();
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    let Some(inner) = weak.upgrade() else { return };
                    if let Err(e) = inner.refresh(tables::INTENTIONS).await {
                        tracing::warn!(error = %e, "intention rebuild failed");
                    }
                }
            });
            self.inner.push_task(task);
        }
        for t in [
            tables::ACL_POLICIES,
            tables::ACL_POLICY_NAMES,
            tables::ACL_ROLES,
            tables::ACL_ROLE_NAMES,
            tables::ACL_TOKENS,
            tables::ACL_LOCAL_TOKENS,
            tables::INTENTIONS,
        ] {
            let weak = Arc::downgrade(&self.inner);
            let store = self.inner.store.clone();
            let task = tokio::spawn(async move {
                let name = table(t);
                let mut seen = Index::ZERO;
                loop {
                    let idx = match store.wait_table(&name, seen, WATCH_WAIT).await {
                        Ok(i) => i,
                        Err(e) => {
                            tracing::warn!(table = t, error = %e, "watch failed");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    };
                    if idx <= seen {
                        continue;
                    }
                    seen = idx;
                    let Some(inner) = weak.upgrade() else { return };
                    if let Err(e) = inner.refresh(t).await {
                        tracing::warn!(table = t, error = %e, "rebuild failed");
                    }
                }
            });
            self.inner.push_task(task);
        }
    }
}

/// What a secondary accepts from the primary: every record decodes and validates as a write
/// would (the CA tables, written by the primary's CA itself, decode as what they are).
struct ReplicatedRecordCheck {
    /// The primary's name: the one datacenter whose own record says `primary`.
    primary: DatacenterName,
}

impl mesh_replication::RecordCheck for ReplicatedRecordCheck {
    fn check(
        &self,
        t: &mesh_replication::TableName,
        id: &str,
        value: &Value,
    ) -> Result<(), String> {
        let v = || {
            value
                .as_json()
                .ok_or_else(|| "value is not JSON".to_owned())
        };
        match t.as_str() {
            tables::CA_ROOTS => serde_json::from_value::<RootsView>(v()?.clone())
                .map(|_| ())
                .map_err(|e| format!("roots do not decode: {e}")),
            tables::CA_INTERMEDIATES => serde_json::from_value::<IntermediateRecord>(v()?.clone())
                .map(|_| ())
                .map_err(|e| format!("intermediate record does not decode: {e}")),
            // The primary announces itself as the primary: the one record no API write may
            // make, and the one that must arrive by replication.
            tables::DATACENTERS if id == self.primary.as_str() => {
                let rec: crate::catalog::DatacenterRecord = serde_json::from_value(v()?.clone())
                    .map_err(|e| format!("datacenter record does not decode: {e}"))?;
                if rec.name != self.primary || !rec.primary {
                    return Err(format!(
                        "record datacenters/{id} must name {} as the primary",
                        self.primary
                    ));
                }
                Ok(())
            }
            other => authz::decode_record(other, id, Some(value))
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

impl Inner {
    /// The token this datacenter replicates and publishes with (anonymous when none is
    /// configured).
    fn replication_token(&self) -> Secret {
        self.config
            .acl
            .tokens
            .replication
            .clone()
            .unwrap_or_default()
    }

    fn push_task(&self, task: JoinHandle<()>) {
        // The list stays consistent even if a holder panicked: never drop a handle (its task
        // would outlive the datacenter).
        lock(&self.tasks).push(task);
    }

    fn authorizer(&self, secret: &str) -> Result<Authorizer, Error> {
        if !self.config.acl.enabled {
            return Ok(Authorizer::acls_disabled());
        }
        let snap = self.acl.load();
        let token = snap.token(secret).ok_or(ErrorKind::AclNotFound)?;
        if token.is_expired(crate::acl::now()) {
            return Err(ErrorKind::AclNotFound.into());
        }
        Ok(snap.authorizer(&token, self.config.acl.default_policy, &self.config.name))
    }

    async fn refresh(&self, t: &str) -> Result<(), Error> {
        match t {
            tables::ACL_POLICIES
            | tables::ACL_POLICY_NAMES
            | tables::ACL_ROLES
            | tables::ACL_ROLE_NAMES
            | tables::ACL_TOKENS
            | tables::ACL_LOCAL_TOKENS => self.rebuild_acl().await,
            tables::INTENTIONS => self.rebuild_intentions().await,
            _ => Ok(()),
        }
    }

    async fn rebuild_acl(&self) -> Result<(), Error> {
        let _one_at_a_time = self.rebuild.lock().await;
        let s = &self.store;
        let policies = s.list(&table(tables::ACL_POLICIES)).await?;
        let policy_names = s.list(&table(tables::ACL_POLICY_NAMES)).await?;
        let roles = s.list(&table(tables::ACL_ROLES)).await?;
        let role_names = s.list(&table(tables::ACL_ROLE_NAMES)).await?;
        let global = s.list(&table(tables::ACL_TOKENS)).await?;
        let local = s.list(&table(tables::ACL_LOCAL_TOKENS)).await?;
        let prev = self.acl.load_full();
        let snap = AclSnapshot::rebuild(
            &prev,
            AclRecords {
                policies: &policies.records,
                policy_names: &policy_names.records,
                roles: &roles.records,
                role_names: &role_names.records,
                global_tokens: &global.records,
                local_tokens: &local.records,
            },
        );
        self.acl.store(Arc::new(snap));
        Ok(())
    }

    /// Rebuilds the intention view. Never fails as a whole: a stored intention that does not
    /// decode, validate or sit under its own id is left out, logged, and its destination
    /// fails closed (every connection to it is refused) until the record is fixed or deleted;
    /// a record whose destination cannot be told closes every destination.
    async fn rebuild_intentions(&self) -> Result<(), Error> {
        let _one_at_a_time = self.rebuild.lock().await;
        let built_at = self.store.table_index(&table(tables::INTENTIONS));
        let listing = self.store.list(&table(tables::INTENTIONS)).await?;
        let mut good = Vec::with_capacity(listing.records.len());
        let mut closed: Vec<String> = Vec::new();
        for rec in &listing.records {
            match authz::decode_record(tables::INTENTIONS, &rec.id, Some(&rec.value)) {
                Ok(authz::Write::Intention {
                    value: Some(ixn), ..
                }) => good.push(*ixn),
                Ok(_) => closed.push("*".into()),
                Err(e) => {
                    let dest = rec.id.split_once('/').map_or("*", |(d, _)| d).to_owned();
                    tracing::error!(
                        id = %rec.id,
                        error = %e,
                        destination = %dest,
                        "stored intention is invalid: connections to its destination are refused"
                    );
                    closed.push(dest);
                }
            }
        }
        if let Some(replicas) = &self.replicas {
            for (id, reason) in replicas.refused(&table(tables::INTENTIONS)) {
                let dest = id.split_once('/').map_or("*", |(d, _)| d).to_owned();
                tracing::error!(%id, %reason, destination = %dest, "replicated intention refused: connections to its destination are refused");
                closed.push(dest);
            }
        }
        let set = match IntentionSet::build(good) {
            Ok(set) => set,
            Err(e) => {
                tracing::error!(error = %e, "intentions do not index: every connection is refused");
                closed.push("*".into());
                IntentionSet::empty()
            }
        };
        self.intentions.store(set.with_closed_destinations(closed));
        self.intentions_built
            .fetch_max(built_at.0, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Primary: gives every stored policy and role whose name the unique-name index does
    /// not hold yet (state written before the index existed) its entry. Idempotent; of two
    /// objects with one name, the one with the smallest id keeps it.
    async fn index_names(&self) -> Result<(), Error> {
        for (objects, index) in [
            (tables::ACL_POLICIES, tables::ACL_POLICY_NAMES),
            (tables::ACL_ROLES, tables::ACL_ROLE_NAMES),
        ] {
            let listing = self.store.list(&table(objects)).await?;
            let mut claimed = std::collections::HashSet::new();
            let mut named: Vec<(String, String)> = listing
                .records
                .iter()
                .filter_map(|r| {
                    let v = r.value.as_json()?;
                    let name = v.get("Name")?.as_str()?.to_owned();
                    Some((name, r.id.clone()))
                })
                .collect();
            named.sort();
            for (name, id) in named {
                if !claimed.insert(name.clone()) {
                    tracing::warn!(table = objects, %name, %id, "a second object holds this name; it keeps it only by id");
                    continue;
                }
                let t = table(index);
                if self.store.get(&t, &name).await?.is_none() {
                    self.store
                        .upsert(&t, &name, json(&NameIndexRecord { id })?, Some(Index::ZERO))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The global-management policy and the initial management token (primary only).
    async fn bootstrap_acl(&self) -> Result<(), Error> {
        if !self.config.acl.enabled {
            return Ok(());
        }
        let builtin = Policy::global_management();
        let policies = table(tables::ACL_POLICIES);
        if self
            .store
            .get(&policies, GLOBAL_MANAGEMENT_POLICY_ID)
            .await?
            .is_none()
        {
            let rec = PolicyRecord {
                id: GLOBAL_MANAGEMENT_POLICY_ID.to_owned(),
                name: builtin.name().to_owned(),
                description: builtin.description().to_owned(),
                rules: builtin.rules().to_json(),
                datacenters: Vec::new(),
            };
            self.store
                .upsert(&policies, &rec.id, json(&rec)?, Some(Index::ZERO))
                .await?;
        }
        self.index_names().await?;
        if let Some(secret) = &self.config.acl.tokens.initial_management
            && self.acl.load().token(secret.expose_secret()).is_none()
        {
            {
                let rec = TokenRecord {
                    accessor_id: ids::uuid()?,
                    secret_id: secret.expose_secret().to_owned(),
                    description: "Initial Management Token".into(),
                    policies: vec![GLOBAL_MANAGEMENT_POLICY_ID.to_owned()],
                    roles: Vec::new(),
                    service_identities: Vec::new(),
                    node_identities: Vec::new(),
                    local: false,
                    expiration_time: None,
                    create_time: Some(crate::acl::unix_now()),
                };
                self.store
                    .upsert(
                        &table(tables::ACL_TOKENS),
                        &rec.accessor_id,
                        json(&rec)?,
                        Some(Index::ZERO),
                    )
                    .await?;
            }
        }
        self.rebuild_acl().await
    }
}

fn policy_ids<'a>(
    snap: &AclSnapshot,
    names: impl Iterator<Item = &'a str>,
) -> Result<Vec<String>, Error> {
    names
        .map(|n| {
            snap.policy_by_name(n)
                .map(|p| p.id().to_string())
                .ok_or_else(|| ErrorKind::NotFound(format!("policy {n:?}")).into())
        })
        .collect()
}

fn json<T: Serialize>(v: &T) -> Result<Value, Error> {
    Ok(Value::json(serde_json::to_value(v).map_err(|e| {
        ErrorKind::Corrupt(format!("a record does not encode: {e}"))
    })?))
}

fn decode<T: for<'de> Deserialize<'de>>(rec: &Record) -> Option<T> {
    let v = rec.value.as_json()?;
    match serde_json::from_value(v.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(id = %rec.id, error = %e, "record does not decode; skipped");
            None
        }
    }
}

/// A policy or role name: Consul's rule, 1-128 of `[A-Za-z0-9_-]`.
fn check_acl_name(what: &str, name: &str) -> Result<(), Error> {
    if what == "policy" {
        return check_policy_name(name);
    }
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_msg(format!(
            "invalid {what} name {name:?}: 1 to 256 letters, digits, '-' or '_'"
        )))
    }
}

/// Consul's policy name rule: 1 to 128 characters matching
/// `^[A-Za-z0-9\-_]+/?[A-Za-z0-9\-_]*$`, not prefixed with `/` or `builtin/`.
fn check_policy_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > 128 {
        return Err(Error::invalid_msg(format!(
            "invalid policy name {name:?}: length must be greater than 0 and at most 128"
        )));
    }
    if name.starts_with('/') || name.starts_with("builtin/") {
        return Err(Error::invalid_msg(format!(
            "invalid policy name {name:?}: names cannot be prefixed with '/' or 'builtin/'"
        )));
    }
    let ok_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let ok = match name.split_once('/') {
        None => name.bytes().all(ok_byte),
        Some((head, tail)) => {
            !head.is_empty() && head.bytes().all(ok_byte) && tail.bytes().all(ok_byte)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_msg(format!(
            "invalid policy name {name:?}: only letters, digits, a single '/', '-' and '_' are allowed"
        )))
    }
}

/// Claims `name` in a unique-name index for `id`: fails if the name is taken.
fn name_claim(t: &'static str, name: &str, id: &str) -> Result<TxnOp, Error> {
    Ok(upsert_cas(
        t,
        name,
        json(&NameIndexRecord { id: id.to_owned() })?,
        Index::ZERO,
    ))
}

/// The replication token's secret as configured; empty (anonymous) when none is.
fn replication_secret(config: &DatacenterConfig) -> String {
    config
        .acl
        .tokens
        .replication
        .as_ref()
        .map(|s| s.expose_secret().to_owned())
        .unwrap_or_default()
}

/// A check-and-set conflict reported as a name conflict.
fn conflict_as(e: Error, what: String) -> Error {
    let cas = match e.kind() {
        ErrorKind::Store(mesh_replication::StoreError::CasConflict { .. }) => true,
        ErrorKind::Forward(mesh_replication::WriteError::Local(
            mesh_replication::StoreError::CasConflict { .. },
        )) => true,
        ErrorKind::Forward(mesh_replication::WriteError::Forward(
            mesh_replication::TransportError::Remote(r),
        )) => r.kind == mesh_replication::RemoteErrorKind::CasConflict,
        _ => false,
    };
    if cas {
        ErrorKind::Conflict(what).into()
    } else {
        e
    }
}

/// An operation refused by [`authz`] as an API error.
fn refused(r: authz::Refusal) -> Error {
    match r {
        authz::Refusal::Invalid(m) => Error::invalid_msg(m),
        authz::Refusal::Denied(m) => ErrorKind::Forward(mesh_replication::WriteError::Denied(
            mesh_replication::Denied::new(m),
        ))
        .into(),
    }
}

fn upsert_cas(t: &'static str, id: &str, value: Value, cas: Index) -> TxnOp {
    TxnOp::Upsert {
        table: table(t),
        id: id.to_owned(),
        value,
        cas: Some(cas),
    }
}

fn delete(t: &'static str, id: &str) -> TxnOp {
    TxnOp::Delete {
        table: table(t),
        id: id.to_owned(),
        cas: None,
    }
}

fn upsert(t: &'static str, id: &str, value: Value) -> TxnOp {
    TxnOp::Upsert {
        table: table(t),
        id: id.to_owned(),
        value,
        cas: None,
    }
}

fn lan_addr(def: &ServiceDefinition) -> Option<SocketAddr> {
    let ip = def
        .address
        .as_ref()
        .and_then(|h| h.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    (def.port != 0).then_some(SocketAddr::new(ip, def.port))
}

fn host_port(a: SocketAddr) -> mesh_core::HostPort {
    mesh_core::HostPort::new(mesh_core::Host::Ip(a.ip()), a.port())
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn acl_write() -> Permission {
    Permission {
        resource: Resource::Acl,
        access: Access::Write,
    }
}
fn service_write() -> Permission {
    Permission {
        resource: Resource::Service,
        access: Access::Write,
    }
}
fn mesh_write() -> Permission {
    Permission {
        resource: Resource::Mesh,
        access: Access::Write,
    }
}
fn operator_write() -> Permission {
    Permission {
        resource: Resource::Operator,
        access: Access::Write,
    }
}
