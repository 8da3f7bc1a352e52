//! A datacenter's control plane: state, ACLs, intentions, config entries, catalog, CA and
//! replication, behind one API whose every call is authorized by a token.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use mesh_ca::tls::TrustBundle;
use mesh_ca::{Ca, CaOptions, CaState, IntermediateSigner, IssuedLeaf, RootsView, SignerError};
use mesh_core::catalog::{
    MeshGatewayRegistration, ServiceDefinition, ServiceInstanceId, ServiceKind, SidecarPortRange,
    TokenSecret, sidecar_from_service,
};
use mesh_core::{
    ConfigEntry, Datacenter as DatacenterName, Index, ServiceName, SpiffeId, TrustDomain,
};
use mesh_intentions::acl::{
    Access, Authorizer, AuthorizerContext, GLOBAL_MANAGEMENT_POLICY_ID, Permission, Policy,
    Resource,
};
use mesh_intentions::intention::{
    Action, Intention, IntentionDefault, IntentionSet, SharedIntentions, can_read, can_write,
};
use mesh_replication::store::{DurableStore, MemoryStore, Store};
use mesh_replication::{
    Forwarder, InProcessTransport, Record, Replicas, ReplicationServer, ReplicationStatus,
    ReplicatorConfig, SecretToken, Transport, TxnOp, Value,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::acl::{
    AclRecords, AclSnapshot, NameIndexRecord, PolicyRecord, RoleRecord, ServiceIdentityRecord,
    TokenRecord,
};
use crate::authz;
use crate::catalog::{CatalogEntry, FederationGateway, ServiceEndpoint};
use crate::config::{DatacenterConfig, Storage};
use crate::replication::AclReplicationAuthorizer;
use crate::tables::{self, table};
use crate::{Error, ids};

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
}

/// The answer to "may this client reach this service?" with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Authorization {
    /// Whether the connection is allowed.
    pub authorized: bool,
    /// What decided: the matched intention or the default.
    pub reason: String,
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
    /// Serialises rebuilds of the ACL and intention views: two rebuilds racing could
    /// otherwise publish an older view after a newer one.
    rebuild: tokio::sync::Mutex<()>,
    /// Background publications of global records (by `<table>/<id>`) waiting for the primary;
    /// a newer publication or a removal of the same record replaces the pending one.
    pending: Mutex<std::collections::HashMap<String, JoinHandle<()>>>,
    ca: std::sync::OnceLock<Ca>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
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

/// Locks a mutex whose data stays consistent even if a holder panicked (plain maps).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Datacenter {
    /// Starts the primary datacenter: opens its state, bootstraps ACLs (the global-management
    /// policy and the `initial_management` token) and, with Connect on, the CA root.
    pub async fn start_primary(config: DatacenterConfig) -> Result<Self, Error> {
        if !config.is_primary() {
            return Err(Error::Config(format!(
                "{} is not the primary datacenter ({}): use start_secondary",
                config.name, config.primary_datacenter
            )));
        }
        Self::start(config, None).await
    }

    /// Starts a secondary datacenter that replicates from, and forwards writes to, the primary
    /// through `primary`. With Connect on, it waits until the primary has signed its
    /// intermediate.
    pub async fn start_secondary(
        config: DatacenterConfig,
        primary: Arc<dyn Transport>,
    ) -> Result<Self, Error> {
        if config.is_primary() {
            return Err(Error::Config(format!(
                "{} is the primary datacenter: use start_primary",
                config.name
            )));
        }
        Self::start(config, Some(primary)).await
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
        let store: Arc<dyn Store> = match &config.storage {
            Storage::Memory => Arc::new(MemoryStore::new()),
            Storage::Dir(dir) => {
                create_private_dir(dir)?;
                Arc::new(DurableStore::open(dir.join("state.redb")).await?)
            }
        };
        let registry = tables::registry();
        let acl = Arc::new(ArcSwap::from_pointee(AclSnapshot::default()));
        let repl_authz = Arc::new(AclReplicationAuthorizer::new(
            acl.clone(),
            config.acl.clone(),
            config.name.clone(),
        ));
        let server = Arc::new(ReplicationServer::new(
            registry.clone(),
            store.clone(),
            repl_authz.clone(),
        ));
        let (forwarder, replicas) = match &primary {
            None => (
                Forwarder::primary(registry.clone(), store.clone(), repl_authz),
                None,
            ),
            Some(link) => {
                let token =
                    SecretToken::new(config.acl.tokens.replication.clone().unwrap_or_default());
                let mut rc = ReplicatorConfig::new(token);
                rc.wait = REPLICATION_WAIT;
                rc.check = Some(Arc::new(ReplicatedRecordCheck));
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
            rebuild: tokio::sync::Mutex::new(()),
            pending: Mutex::new(std::collections::HashMap::new()),
            ca: std::sync::OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
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

    /// This datacenter's name.
    pub fn name(&self) -> &DatacenterName {
        &self.inner.config.name
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

    // ---- ACL -------------------------------------------------------------------------

    /// Resolves a token secret to its authorizer. The empty secret is the anonymous token.
    pub fn authorizer(&self, secret: &str) -> Result<Authorizer, Error> {
        self.inner.authorizer(secret)
    }

    /// Creates a policy from rules text (HCL or JSON; several JSON objects one after another
    /// are read as their union). Needs `acl:write`. Names are unique: the policy and its name
    /// are written in one transaction that fails if the name is taken, so of two concurrent
    /// creations with one name exactly one succeeds.
    pub async fn acl_policy_create(
        &self,
        token: &str,
        name: &str,
        description: &str,
        rules: &str,
    ) -> Result<PolicyRecord, Error> {
        self.require(token, acl_write(), None)?;
        check_acl_name("policy", name)?;
        // Parse now so a bad policy is refused with its position, before anything is written.
        let record = PolicyRecord {
            id: ids::uuid()?,
            name: name.to_owned(),
            description: description.to_owned(),
            rules: rules.to_owned(),
            datacenters: Vec::new(),
        };
        record.to_policy()?;
        let ops = vec![
            upsert_cas(
                tables::ACL_POLICIES,
                &record.id,
                json(&record)?,
                Index::ZERO,
            ),
            name_claim(tables::ACL_POLICY_NAMES, name, &record.id)?,
        ];
        self.global_txn(token, tables::ACL_POLICIES, ops)
            .await
            .map_err(|e| conflict_as(e, format!("policy {name:?}")))?;
        tracing::info!(policy = %record.id, name, "ACL policy created");
        Ok(record)
    }

    /// Creates a policy from a rules file on disk (`-rules @file`).
    pub async fn acl_policy_create_from_file(
        &self,
        token: &str,
        name: &str,
        description: &str,
        path: &std::path::Path,
    ) -> Result<PolicyRecord, Error> {
        let rules = std::fs::read_to_string(path)?;
        self.acl_policy_create(token, name, description, &rules)
            .await
    }

    /// A policy by id, as stored.
    pub async fn acl_policy_read(&self, id: &str) -> Result<PolicyRecord, Error> {
        self.stored(tables::ACL_POLICIES, id, "policy").await
    }

    /// A policy by name, as stored.
    pub async fn acl_policy_read_by_name(&self, name: &str) -> Result<PolicyRecord, Error> {
        match self.name_owner(tables::ACL_POLICY_NAMES, name).await? {
            Some(id) => self.acl_policy_read(&id).await,
            None => Err(Error::NotFound(format!("policy {name:?}"))),
        }
    }

    /// Replaces a policy's name, description and rules. Needs `acl:write`. The built-in
    /// policies cannot be changed. A new name must be free, as on creation.
    pub async fn acl_policy_update(
        &self,
        token: &str,
        id: &str,
        name: &str,
        description: &str,
        rules: &str,
    ) -> Result<PolicyRecord, Error> {
        self.require(token, acl_write(), None)?;
        check_acl_name("policy", name)?;
        let old = self.acl_policy_read(id).await?;
        let record = PolicyRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            rules: rules.to_owned(),
            datacenters: old.datacenters.clone(),
        };
        record.to_policy()?;
        let mut ops = vec![upsert(tables::ACL_POLICIES, id, json(&record)?)];
        if old.name != name {
            ops.push(name_claim(tables::ACL_POLICY_NAMES, name, id)?);
            ops.push(delete(tables::ACL_POLICY_NAMES, &old.name));
        }
        self.global_txn(token, tables::ACL_POLICIES, ops)
            .await
            .map_err(|e| conflict_as(e, format!("policy {name:?}")))?;
        Ok(record)
    }

    /// Deletes a policy; tokens and roles that link it lose its rules at once. Needs
    /// `acl:write`. The built-in policies cannot be deleted.
    pub async fn acl_policy_delete(&self, token: &str, id: &str) -> Result<(), Error> {
        self.require(token, acl_write(), None)?;
        let old = self.acl_policy_read(id).await?;
        let mut ops = vec![delete(tables::ACL_POLICIES, id)];
        if self.name_owner(tables::ACL_POLICY_NAMES, &old.name).await? == Some(id.to_owned()) {
            ops.push(delete(tables::ACL_POLICY_NAMES, &old.name));
        }
        self.global_txn(token, tables::ACL_POLICIES, ops).await?;
        tracing::info!(policy = %id, name = %old.name, "ACL policy deleted");
        Ok(())
    }

    /// Creates a role linking policies by name. Needs `acl:write`. Names are unique, as for
    /// policies.
    pub async fn acl_role_create(
        &self,
        token: &str,
        name: &str,
        policy_names: &[&str],
        service_identities: &[&str],
    ) -> Result<RoleRecord, Error> {
        self.require(token, acl_write(), None)?;
        check_acl_name("role", name)?;
        let record = self.role_record(ids::uuid()?, name, policy_names, service_identities)?;
        let ops = vec![
            upsert_cas(tables::ACL_ROLES, &record.id, json(&record)?, Index::ZERO),
            name_claim(tables::ACL_ROLE_NAMES, name, &record.id)?,
        ];
        self.global_txn(token, tables::ACL_ROLES, ops)
            .await
            .map_err(|e| conflict_as(e, format!("role {name:?}")))?;
        Ok(record)
    }

    /// A role by id, as stored.
    pub async fn acl_role_read(&self, id: &str) -> Result<RoleRecord, Error> {
        self.stored(tables::ACL_ROLES, id, "role").await
    }

    /// Replaces a role's name, policies and service identities. Needs `acl:write`.
    pub async fn acl_role_update(
        &self,
        token: &str,
        id: &str,
        name: &str,
        policy_names: &[&str],
        service_identities: &[&str],
    ) -> Result<RoleRecord, Error> {
        self.require(token, acl_write(), None)?;
        check_acl_name("role", name)?;
        let old = self.acl_role_read(id).await?;
        let record = self.role_record(id.to_owned(), name, policy_names, service_identities)?;
        let mut ops = vec![upsert(tables::ACL_ROLES, id, json(&record)?)];
        if old.name != name {
            ops.push(name_claim(tables::ACL_ROLE_NAMES, name, id)?);
            ops.push(delete(tables::ACL_ROLE_NAMES, &old.name));
        }
        self.global_txn(token, tables::ACL_ROLES, ops)
            .await
            .map_err(|e| conflict_as(e, format!("role {name:?}")))?;
        Ok(record)
    }

    /// Deletes a role. Needs `acl:write`.
    pub async fn acl_role_delete(&self, token: &str, id: &str) -> Result<(), Error> {
        self.require(token, acl_write(), None)?;
        let old = self.acl_role_read(id).await?;
        let mut ops = vec![delete(tables::ACL_ROLES, id)];
        if self.name_owner(tables::ACL_ROLE_NAMES, &old.name).await? == Some(id.to_owned()) {
            ops.push(delete(tables::ACL_ROLE_NAMES, &old.name));
        }
        self.global_txn(token, tables::ACL_ROLES, ops).await?;
        Ok(())
    }

    fn role_record(
        &self,
        id: String,
        name: &str,
        policy_names: &[&str],
        service_identities: &[&str],
    ) -> Result<RoleRecord, Error> {
        let snap = self.inner.acl.load();
        let record = RoleRecord {
            id,
            name: name.to_owned(),
            description: String::new(),
            policies: policy_ids(&snap, policy_names.iter().copied())?,
            service_identities: service_identities
                .iter()
                .map(|s| ServiceIdentityRecord {
                    service_name: (*s).to_owned(),
                    datacenters: Vec::new(),
                })
                .collect(),
            node_identities: Vec::new(),
        };
        record.to_role()?;
        Ok(record)
    }

    /// Creates a token; the returned record holds its secret. Needs `acl:write`. A local token
    /// stays in this datacenter; a global one is written in the primary and replicated.
    pub async fn acl_token_create(
        &self,
        token: &str,
        spec: TokenSpec,
    ) -> Result<TokenRecord, Error> {
        self.require(token, acl_write(), None)?;
        let record = self.token_record(ids::uuid()?, ids::uuid()?, spec)?;
        self.store_token(token, &record, Some(Index::ZERO)).await?;
        tracing::info!(accessor = %record.accessor_id, local = record.local, "ACL token created");
        Ok(record)
    }

    /// A token by accessor id, as stored (global or local to this datacenter).
    pub async fn acl_token_read(&self, accessor: &str) -> Result<TokenRecord, Error> {
        let global = table(tables::ACL_TOKENS);
        let local = table(tables::ACL_LOCAL_TOKENS);
        for t in [&global, &local] {
            if let Some(rec) = self.inner.store.get(t, accessor).await? {
                return decode::<TokenRecord>(&rec).ok_or_else(|| {
                    Error::invalid_msg(format!("stored token {accessor} does not decode"))
                });
            }
        }
        Err(Error::NotFound(format!("token {accessor:?}")))
    }

    /// Replaces a token's description, policies, roles and service identities; its secret and
    /// its locality stay. Needs `acl:write`.
    pub async fn acl_token_update(
        &self,
        token: &str,
        accessor: &str,
        spec: TokenSpec,
    ) -> Result<TokenRecord, Error> {
        self.require(token, acl_write(), None)?;
        let old = self.acl_token_read(accessor).await?;
        if spec.local != old.local {
            return Err(Error::invalid_msg(
                "a token's locality cannot change: create a new token",
            ));
        }
        let mut record = self.token_record(old.accessor_id.clone(), old.secret_id.clone(), spec)?;
        record.expiration_time = old.expiration_time;
        self.store_token(token, &record, None).await?;
        Ok(record)
    }

    /// Deletes a token: its secret is refused here at once and in every other datacenter
    /// once the deletion has replicated there. Needs `acl:write`.
    pub async fn acl_token_delete(&self, token: &str, accessor: &str) -> Result<(), Error> {
        self.require(token, acl_write(), None)?;
        let old = self.acl_token_read(accessor).await?;
        if old.local {
            self.inner
                .store
                .delete(&table(tables::ACL_LOCAL_TOKENS), accessor, None)
                .await?;
            self.inner.rebuild_acl().await?;
        } else {
            self.delete_global(token, tables::ACL_TOKENS, accessor)
                .await?;
        }
        tracing::info!(accessor, "ACL token deleted");
        Ok(())
    }

    fn token_record(
        &self,
        accessor_id: String,
        secret_id: String,
        spec: TokenSpec,
    ) -> Result<TokenRecord, Error> {
        let snap = self.inner.acl.load();
        let roles = spec
            .role_names
            .iter()
            .map(|n| {
                snap.role_by_name(n)
                    .map(|r| r.id().to_string())
                    .ok_or_else(|| Error::NotFound(format!("role {n:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let record = TokenRecord {
            accessor_id,
            secret_id,
            description: spec.description,
            policies: policy_ids(&snap, spec.policy_names.iter().map(String::as_str))?,
            roles,
            service_identities: spec
                .service_identities
                .iter()
                .map(|s| ServiceIdentityRecord {
                    service_name: s.clone(),
                    datacenters: Vec::new(),
                })
                .collect(),
            node_identities: Vec::new(),
            local: spec.local,
            expiration_time: None,
        };
        record.to_token()?;
        Ok(record)
    }

    async fn store_token(
        &self,
        token: &str,
        record: &TokenRecord,
        cas: Option<Index>,
    ) -> Result<(), Error> {
        if record.local {
            let op = TxnOp::Upsert {
                table: table(tables::ACL_LOCAL_TOKENS),
                id: record.accessor_id.clone(),
                value: json(record)?,
                cas,
            };
            // The same checks a global write gets, made here: the table is local.
            authz::decode(&op).map_err(refused)?;
            self.inner.store.txn(vec![op]).await?;
            self.inner.rebuild_acl().await?;
        } else {
            self.write_global(
                token,
                tables::ACL_TOKENS,
                &record.accessor_id,
                json(record)?,
                cas,
            )
            .await?;
        }
        Ok(())
    }

    async fn stored<T: for<'de> Deserialize<'de>>(
        &self,
        t: &'static str,
        id: &str,
        what: &str,
    ) -> Result<T, Error> {
        let rec = self
            .inner
            .store
            .get(&table(t), id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{what} {id:?}")))?;
        decode(&rec)
            .ok_or_else(|| Error::invalid_msg(format!("stored {what} {id} does not decode")))
    }

    /// The id that holds `name` in a unique-name index.
    async fn name_owner(&self, t: &'static str, name: &str) -> Result<Option<String>, Error> {
        Ok(self
            .inner
            .store
            .get(&table(t), name)
            .await?
            .and_then(|r| decode::<NameIndexRecord>(&r))
            .map(|r| r.id))
    }

    // ---- catalog ---------------------------------------------------------------------

    /// Registers a service from Consul's JSON (`socat.json`, `web.json`), and its sidecar
    /// when it has a `connect.sidecar_service` stanza (port picked from 21000-21255 when none
    /// is given). Needs `service:write` on the service (and on its sidecar). The token is the
    /// call's, or the registration's own `token` when the call has none.
    pub async fn register_service(
        &self,
        token: &str,
        definition_json: &str,
    ) -> Result<Registered, Error> {
        let def = ServiceDefinition::from_json(definition_json).map_err(Error::invalid)?;
        def.validate().map_err(Error::invalid)?;
        let token = if token.is_empty() {
            def.token
                .as_ref()
                .map(TokenSecret::expose_secret)
                .unwrap_or("")
        } else {
            token
        };
        let name = def
            .name
            .clone()
            .ok_or_else(|| Error::invalid_msg("service registration has no name"))?;
        let id = def
            .instance_id()
            .ok_or_else(|| Error::invalid_msg("service registration has no ID or name"))?;
        self.require_registration(token, &def, &id).await?;
        let mut service = def.clone();
        service.token = None;
        let mut ops = Vec::new();
        let sidecar =
            match sidecar_from_service(&def, def.token.as_ref()).map_err(Error::invalid)? {
                None => None,
                Some(mut sc) => {
                    // The sidecar is a registration of its own: its name, the instance id it
                    // takes, and the service it proxies (the parent) are all checked.
                    let sc_id = sc.id().clone();
                    self.require_registration(token, sc.service(), &sc_id)
                        .await?;
                    let listing = self.inner.store.list(&table(tables::CATALOG)).await?;
                    let ports: Vec<(String, u16)> = listing
                        .records
                        .iter()
                        .filter_map(|r| {
                            decode::<CatalogEntry>(r).map(|e| (r.id.clone(), e.service.port))
                        })
                        .collect();
                    sc.assign_port(
                        &SidecarPortRange::default(),
                        ports.iter().map(|(i, p)| (i.as_str(), *p)),
                    )
                    .map_err(Error::invalid)?;
                    sc.ensure_default_checks();
                    let sc_id = sc.id().clone();
                    let (sc_def, _checks, _token) = sc.into_parts();
                    let entry = CatalogEntry {
                        lan: lan_addr(&sc_def),
                        service: sc_def,
                        down: false,
                    };
                    ops.push(upsert(tables::CATALOG, sc_id.as_str(), json(&entry)?));
                    Some(entry)
                }
            };
        service.connect = None;
        let entry = CatalogEntry {
            lan: lan_addr(&service),
            service,
            down: false,
        };
        ops.push(upsert(tables::CATALOG, id.as_str(), json(&entry)?));
        self.inner.store.txn(ops).await?;
        if let Some(sc) = &sidecar
            && let (Some(sc_id), Some(address)) = (sc.service.id.as_ref(), sc.lan)
        {
            {
                let ep = ServiceEndpoint {
                    datacenter: self.name().clone(),
                    service: name.clone(),
                    address,
                };
                let ep_id = self.global_id(name.as_str(), sc_id.as_str());
                self.publish_global(token, tables::ENDPOINTS, &ep_id, Some(json(&ep)?))
                    .await?;
            }
        }
        tracing::info!(service = %name, id = %id, sidecar = sidecar.is_some(), "service registered");
        Ok(Registered {
            id,
            service: entry,
            sidecar,
        })
    }

    /// What registering `def` under `id` needs, as Consul defines it: `service:write` on the
    /// registration's name; when `id` is already registered, `service:write` on the service
    /// that holds it (a token may not take over another service's instance); for a
    /// `connect-proxy`, `service:write` on the service it proxies (a token may not divert
    /// another service's traffic).
    async fn require_registration(
        &self,
        token: &str,
        def: &ServiceDefinition,
        id: &ServiceInstanceId,
    ) -> Result<(), Error> {
        let name = def
            .name
            .as_ref()
            .ok_or_else(|| Error::invalid_msg("service registration has no name"))?;
        self.require(token, service_write(), Some(name.as_str()))?;
        if let Some(rec) = self
            .inner
            .store
            .get(&table(tables::CATALOG), id.as_str())
            .await?
        {
            // An entry that does not decode belongs to nobody we can name: only a token
            // with write on every service may replace it.
            let owner = decode::<CatalogEntry>(&rec)
                .and_then(|e| e.name().map(|n| n.as_str().to_owned()))
                .unwrap_or_else(|| "*".to_owned());
            if owner != name.as_str() {
                self.require(token, service_write(), Some(&owner))?;
            }
        }
        if def.kind == ServiceKind::ConnectProxy {
            let dest = def
                .proxy
                .as_ref()
                .and_then(|p| p.destination_service_name.as_ref())
                .ok_or_else(|| {
                    Error::invalid_msg("a connect-proxy registration names its destination service")
                })?;
            self.require(token, service_write(), Some(dest.as_str()))?;
        }
        Ok(())
    }

    /// Registers a mesh gateway instance with its LAN and WAN addresses; other datacenters
    /// learn its WAN address through the primary. Needs `service:write` on the gateway's name.
    pub async fn register_mesh_gateway(
        &self,
        token: &str,
        name: &ServiceName,
        id: &str,
        lan: SocketAddr,
        wan: SocketAddr,
    ) -> Result<FederationGateway, Error> {
        self.require(token, service_write(), Some(name.as_str()))?;
        let mut def = MeshGatewayRegistration::new(
            Some(name.clone()),
            Some(host_port(lan)),
            Some(host_port(wan)),
        )
        .map_err(Error::invalid)?
        .into_definition();
        def.id = Some(ServiceInstanceId::new(id).map_err(Error::invalid)?);
        let instance = ServiceInstanceId::new(id).map_err(Error::invalid)?;
        self.require_registration(token, &def, &instance).await?;
        let reg = MeshGatewayRegistration::from_definition(def).map_err(Error::invalid)?;
        let entry = CatalogEntry {
            lan: Some(lan),
            service: reg.into_definition(),
            down: false,
        };
        self.write_local(tables::CATALOG, id, json(&entry)?, None)
            .await?;
        let fed = FederationGateway {
            datacenter: self.name().clone(),
            service: name.clone(),
            id: id.to_owned(),
            wan,
            lan,
        };
        let fed_id = self.global_id(name.as_str(), id);
        self.publish_global(token, tables::FEDERATION, &fed_id, Some(json(&fed)?))
            .await?;
        tracing::info!(gateway = %name, id, %lan, %wan, "mesh gateway registered");
        Ok(fed)
    }

    /// Removes an instance from the local catalog (and a gateway from the federation).
    pub async fn deregister(&self, token: &str, id: &str) -> Result<(), Error> {
        let Some(rec) = self.inner.store.get(&table(tables::CATALOG), id).await? else {
            return Err(Error::NotFound(format!("service instance {id:?}")));
        };
        let entry: CatalogEntry =
            decode(&rec).ok_or_else(|| Error::invalid_msg("corrupt catalog record"))?;
        let name = entry
            .name()
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        self.require(token, service_write(), Some(&name))?;
        self.inner
            .store
            .delete(&table(tables::CATALOG), id, None)
            .await?;
        match entry.service.kind {
            ServiceKind::MeshGateway => {
                let fed_id = self.global_id(&name, id);
                self.publish_global(token, tables::FEDERATION, &fed_id, None)
                    .await?
            }
            ServiceKind::ConnectProxy => {
                let dest = entry
                    .service
                    .proxy
                    .as_ref()
                    .and_then(|p| p.destination_service_name.as_ref())
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default();
                let ep_id = self.global_id(&dest, id);
                self.publish_global(token, tables::ENDPOINTS, &ep_id, None)
                    .await?
            }
            _ => {}
        }
        Ok(())
    }

    /// Moves an instance to `addr` (a sidecar bound elsewhere than registered). Needs
    /// `service:write` on the instance's service.
    pub async fn set_instance_address(
        &self,
        token: &str,
        id: &str,
        addr: SocketAddr,
    ) -> Result<(), Error> {
        let Some(rec) = self.inner.store.get(&table(tables::CATALOG), id).await? else {
            return Err(Error::NotFound(format!("service instance {id:?}")));
        };
        let mut entry: CatalogEntry =
            decode(&rec).ok_or_else(|| Error::invalid_msg("corrupt catalog record"))?;
        let name = entry
            .name()
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        self.require(token, service_write(), Some(&name))?;
        entry.lan = Some(addr);
        entry.service.port = addr.port();
        self.inner
            .store
            .upsert(
                &table(tables::CATALOG),
                id,
                json(&entry)?,
                Some(rec.modify_index),
            )
            .await?;
        let dest = entry
            .service
            .proxy
            .as_ref()
            .and_then(|p| p.destination_service_name.clone());
        if let (ServiceKind::ConnectProxy, Some(service)) = (entry.service.kind, dest) {
            let ep = ServiceEndpoint {
                datacenter: self.name().clone(),
                service,
                address: addr,
            };
            let ep_id = self.global_id(ep.service.as_str(), id);
            self.publish_global(token, tables::ENDPOINTS, &ep_id, Some(json(&ep)?))
                .await?;
        }
        Ok(())
    }

    /// Every instance of the local catalog.
    pub async fn catalog(&self) -> Result<Vec<CatalogEntry>, Error> {
        let listing = self.inner.store.list(&table(tables::CATALOG)).await?;
        Ok(listing.records.iter().filter_map(decode).collect())
    }

    /// The LAN addresses of the sidecars of `service` in this datacenter (where mTLS
    /// connections to the service land).
    pub async fn sidecar_addresses(&self, service: &ServiceName) -> Result<Vec<SocketAddr>, Error> {
        Ok(self
            .catalog()
            .await?
            .into_iter()
            .filter(|e| {
                !e.down
                    && e.service.kind == ServiceKind::ConnectProxy
                    && e.service
                        .proxy
                        .as_ref()
                        .and_then(|p| p.destination_service_name.as_ref())
                        == Some(service)
            })
            .filter_map(|e| e.lan)
            .collect())
    }

    /// The sidecar addresses of `service` in another datacenter (for mesh-gateway mode `none`).
    pub async fn remote_endpoints(
        &self,
        datacenter: &DatacenterName,
        service: &ServiceName,
    ) -> Result<Vec<SocketAddr>, Error> {
        let listing = self.inner.store.list(&table(tables::ENDPOINTS)).await?;
        Ok(listing
            .records
            .iter()
            .filter_map(decode::<ServiceEndpoint>)
            .filter(|e| &e.datacenter == datacenter && &e.service == service)
            .map(|e| e.address)
            .collect())
    }

    /// The mesh gateways of every datacenter, as the federation table knows them.
    pub async fn federation(&self) -> Result<Vec<FederationGateway>, Error> {
        let listing = self.inner.store.list(&table(tables::FEDERATION)).await?;
        Ok(listing.records.iter().filter_map(decode).collect())
    }

    /// Blocks until the catalog or the federation table changes past `after`, or `timeout`.
    pub async fn wait_routing_change(
        &self,
        after: Index,
        timeout: Duration,
    ) -> Result<Index, Error> {
        let cat = table(tables::CATALOG);
        let fed = table(tables::FEDERATION);
        let store = &self.inner.store;
        let current = store.table_index(&cat).max(store.table_index(&fed));
        if current > after {
            return Ok(current);
        }
        tokio::select! {
            r = store.wait_table(&cat, after, timeout) => r?,
            r = store.wait_table(&fed, after, timeout) => r?,
        };
        Ok(store.table_index(&cat).max(store.table_index(&fed)))
    }

    // ---- config entries --------------------------------------------------------------

    /// Writes a config entry from Consul's JSON (`proxy-defaults.json` as the guide writes it).
    /// `proxy-defaults` needs `mesh:write` (which falls back to `operator:write`);
    /// `service-defaults` needs `service:write` on its service.
    pub async fn config_write(&self, token: &str, entry_json: &str) -> Result<ConfigEntry, Error> {
        let entry = ConfigEntry::from_json_validated(entry_json).map_err(Error::invalid)?;
        match &entry {
            ConfigEntry::ProxyDefaults(_) => self.require(token, mesh_write(), None)?,
            _ => self.require(token, service_write(), Some(entry.name()))?,
        }
        let id = authz::config_entry_id(entry.kind().as_str(), entry.name());
        let value = serde_json::from_str(&entry.to_json()).map_err(Error::invalid)?;
        self.write_global(token, tables::CONFIG_ENTRIES, &id, Value::json(value), None)
            .await?;
        Ok(entry)
    }

    /// A config entry by kind and name.
    pub async fn config_get(&self, kind: &str, name: &str) -> Result<Option<ConfigEntry>, Error> {
        let rec = self
            .inner
            .store
            .get(
                &table(tables::CONFIG_ENTRIES),
                &authz::config_entry_id(kind, name),
            )
            .await?;
        rec.and_then(|r| r.value.as_json().map(|v| v.to_string()))
            .map(|s| ConfigEntry::from_json(&s).map_err(Error::invalid))
            .transpose()
    }

    // ---- intentions ------------------------------------------------------------------

    /// Creates or replaces the intention `source -> destination`. Needs `intentions:write` on
    /// the destination. Written in the primary (forwarded from a secondary) and visible here
    /// when the call returns.
    pub async fn intention_create(
        &self,
        token: &str,
        source: &str,
        destination: &str,
        action: Action,
    ) -> Result<Intention, Error> {
        let mut ixn = Intention::new(source, destination, action);
        ixn.source_type = "consul".into();
        ixn.normalize();
        ixn.validate().map_err(Error::invalid)?;
        ixn.update_precedence();
        let authz = self.authorizer(token)?;
        can_write(&authz, &ixn)?;
        let value = serde_json::to_value(&ixn).map_err(Error::invalid)?;
        self.write_global(
            token,
            tables::INTENTIONS,
            &authz::intention_id(source, destination),
            Value::json(value),
            None,
        )
        .await?;
        tracing::info!(
            source,
            destination,
            action = action.as_str(),
            "intention written"
        );
        Ok(ixn)
    }

    /// Deletes the intention `source -> destination` (idempotent). Needs `intentions:write`
    /// on the destination.
    pub async fn intention_delete(
        &self,
        token: &str,
        source: &str,
        destination: &str,
    ) -> Result<(), Error> {
        let ixn = Intention::new(source, destination, Action::Deny);
        let authz = self.authorizer(token)?;
        can_write(&authz, &ixn)?;
        self.delete_global(
            token,
            tables::INTENTIONS,
            &authz::intention_id(source, destination),
        )
        .await
    }

    /// The intentions the token may read.
    pub async fn intentions(&self, token: &str) -> Result<Vec<Intention>, Error> {
        let authz = self.authorizer(token)?;
        let listing = self.inner.store.list(&table(tables::INTENTIONS)).await?;
        Ok(listing
            .records
            .iter()
            .filter_map(decode::<Intention>)
            .filter(|i| can_read(&authz, i).is_ok())
            .collect())
    }

    /// Rebuilds the enforced ACL and intention views from what the store holds now. They
    /// follow the store by themselves within moments of a change; this is for a caller that
    /// wrote around the API (through [`Datacenter::replication_server`]) and must see the
    /// result at once.
    pub async fn refresh_views(&self) -> Result<(), Error> {
        self.inner.rebuild_acl().await?;
        self.inner.rebuild_intentions().await
    }

    /// The current intentions snapshot, shared with the data plane.
    pub fn shared_intentions(&self) -> Arc<SharedIntentions> {
        self.inner.intentions.clone()
    }

    /// The decision used when no intention matches: from the ACL default policy (deny when
    /// ACLs default to deny; allow when ACLs are off).
    pub fn intention_default(&self) -> IntentionDefault {
        let acl = &self.inner.config.acl;
        IntentionDefault::new(acl.enabled.then_some(acl.default_policy), None)
    }

    /// May `client` open a connection to `target`? Refuses identities of another trust domain
    /// or that are not services (stricter than Consul, which checks neither).
    pub fn authorize(&self, client: &SpiffeId, target: &ServiceName) -> Authorization {
        authorize_with(
            &self.inner.intentions,
            self.intention_default(),
            self.trust_domain().as_ref(),
            client,
            target,
        )
    }

    // ---- CA --------------------------------------------------------------------------

    /// The CA, when Connect is on.
    pub fn ca(&self) -> Result<&Ca, Error> {
        self.inner.ca.get().ok_or(Error::ConnectDisabled)
    }

    /// The trust domain, once the CA knows it.
    pub fn trust_domain(&self) -> Option<TrustDomain> {
        self.inner.ca.get().map(|ca| ca.trust_domain().clone())
    }

    /// The current roots list.
    pub fn roots(&self) -> Result<Arc<RootsView>, Error> {
        Ok(self.ca()?.roots())
    }

    /// A watch of the roots list (follows rotations; in a secondary, the primary's roots
    /// with this datacenter's intermediate).
    pub fn subscribe_roots(&self) -> Result<watch::Receiver<Arc<RootsView>>, Error> {
        Ok(self.ca()?.subscribe_roots())
    }

    /// The mesh roots as rustls trusts them.
    pub fn trust_bundle(&self) -> Result<TrustBundle, Error> {
        Ok(TrustBundle::from_roots(self.roots()?.as_ref())?)
    }

    /// Signs a leaf CSR (PEM). A service identity needs `service:write` on the service; a mesh
    /// gateway identity `mesh:write`; anything else is refused.
    pub async fn sign_leaf(&self, token: &str, csr_pem: &str) -> Result<IssuedLeaf, Error> {
        Ok(self.sign_leaf_typed(token, csr_pem).await?)
    }

    /// [`Datacenter::sign_leaf`] with the CA's own error type (what a leaf manager expects).
    pub(crate) async fn sign_leaf_typed(
        &self,
        token: &str,
        csr_pem: &str,
    ) -> Result<IssuedLeaf, mesh_ca::SignError> {
        let ca = self.ca().map_err(|_| mesh_ca::SignError::NotInitialized)?;
        let authz = self.authorizer(token).map_err(|e| e.to_string());
        let check = move |id: &SpiffeId| -> Result<(), mesh_ca::Refusal> {
            let authz = authz
                .as_ref()
                .map_err(|e| mesh_ca::Refusal::new(e.clone()))?;
            let (d, what, name) = match id {
                SpiffeId::Service(s) => (
                    authz.service_write(s.service().as_str()),
                    "service:write",
                    s.service().to_string(),
                ),
                SpiffeId::MeshGateway(_) => (authz.mesh_write(), "mesh:write", String::new()),
                _ => {
                    return Err(mesh_ca::Refusal::new(
                        "only service and mesh-gateway identities are signed here",
                    ));
                }
            };
            if d.is_allowed() {
                Ok(())
            } else {
                Err(mesh_ca::Refusal::new(format!(
                    "token lacks permission '{what}' on {name:?} (decided by {})",
                    d.decided_by()
                )))
            }
        };
        ca.sign_leaf_pem(csr_pem, &check).await
    }

    /// Rotates the CA root (primary only). Needs `operator:write`.
    pub async fn ca_rotate(&self, token: &str) -> Result<(), Error> {
        self.require(token, operator_write(), None)?;
        if !self.is_primary() {
            return Err(Error::Config(
                "roots rotate in the primary datacenter".into(),
            ));
        }
        let ca = self.ca()?;
        ca.rotate().await?;
        self.save_ca_state(ca).await?;
        Ok(())
    }

    // ---- internals -------------------------------------------------------------------

    fn require(&self, token: &str, perm: Permission, name: Option<&str>) -> Result<(), Error> {
        let authz = self.authorizer(token)?;
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
        token: &str,
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
        token: &str,
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
            Err(Error::Forward(mesh_replication::WriteError::Forward(e)))
                if !matches!(e, mesh_replication::TransportError::Remote(_)) =>
            {
                tracing::warn!(table = t, id, error = %e, "primary unreachable; publishing in the background");
                let weak = Arc::downgrade(&self.inner);
                let (token, id) = (token.to_owned(), id.to_owned());
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
        token: &str,
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

    async fn delete_global(&self, token: &str, t: &'static str, id: &str) -> Result<(), Error> {
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
        token: &str,
        t: &'static str,
        ops: Vec<TxnOp>,
    ) -> Result<Index, Error> {
        let receipt = self
            .inner
            .forwarder
            .write(&SecretToken::new(token), ops)
            .await?;
        if receipt.forwarded
            && let Some(replicas) = &self.inner.replicas
        {
            replicas
                .wait_for_index(&table(t), receipt.index, READ_YOUR_WRITES_TIMEOUT)
                .await?;
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

    async fn start_primary_ca(&self) -> Result<Ca, Error> {
        let inner = &self.inner;
        let opts =
            CaOptions::new(inner.config.name.clone()).with_config(inner.config.connect.ca.clone());
        let existing = inner.store.get(&table(tables::CA_STATE), "state").await?;
        let ca = match existing.as_ref().and_then(|r| r.value.as_json()) {
            Some(v) => Ca::load(opts, CaState::from_json(&v.to_string())?)?,
            None => Ca::bootstrap_primary(opts).await?,
        };
        self.save_ca_state(&ca).await?;
        self.spawn_intermediate_signer(ca.clone());
        tracing::info!(trust_domain = %ca.trust_domain(), "CA ready (primary)");
        Ok(ca)
    }

    async fn start_secondary_ca(&self) -> Result<Ca, Error> {
        let inner = &self.inner;
        let opts =
            CaOptions::new(inner.config.name.clone()).with_config(inner.config.connect.ca.clone());
        let existing = inner.store.get(&table(tables::CA_STATE), "state").await?;
        // A weak handle: the renewal task must not keep the datacenter alive.
        let signer = Arc::new(ReplicatedSigner {
            dc: Arc::downgrade(&self.inner),
        });
        let ca = match existing.as_ref().and_then(|r| r.value.as_json()) {
            Some(v) => Ca::load(opts, CaState::from_json(&v.to_string())?)?,
            None => Ca::init_secondary(opts, signer.as_ref()).await?,
        };
        self.save_ca_state(&ca).await?;
        let renew = ca.clone();
        let task = tokio::spawn(async move {
            renew.run_secondary(signer, Duration::from_secs(3600)).await;
        });
        inner.push_task(task);
        tracing::info!(trust_domain = %ca.trust_domain(), "CA ready (secondary intermediate signed by the primary)");
        Ok(ca)
    }

    async fn save_ca_state(&self, ca: &Ca) -> Result<(), Error> {
        let state = ca.export_state().to_json()?;
        let value = serde_json::from_str(&state).map_err(Error::invalid)?;
        self.write_local(tables::CA_STATE, "state", Value::json(value), None)
            .await?;
        Ok(())
    }

    /// Primary: publishes every roots list to the global table secondaries replicate.
    fn spawn_roots_publisher(&self, ca: Ca) {
        let weak = Arc::downgrade(&self.inner);
        let mut rx = ca.subscribe_roots();
        let task = tokio::spawn(async move {
            loop {
                let view = rx.borrow_and_update().clone();
                {
                    let Some(inner) = weak.upgrade() else { return };
                    match serde_json::to_value(view.as_ref()) {
                        Ok(v) => {
                            if let Err(e) = inner
                                .store
                                .upsert(&table(tables::CA_ROOTS), "roots", Value::json(v), None)
                                .await
                            {
                                tracing::warn!(error = %e, "publishing CA roots failed");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "encoding CA roots failed"),
                    }
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        self.inner.push_task(task);
    }

    /// Primary: signs every pending intermediate request that arrives through replication.
    fn spawn_intermediate_signer(&self, ca: Ca) {
        let store = self.inner.store.clone();
        let task = tokio::spawn(async move {
            let t = table(tables::CA_INTERMEDIATES);
            loop {
                let listing = match store.list(&t).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading intermediate requests failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                for rec in &listing.records {
                    let Some(mut req) = decode::<IntermediateRecord>(rec) else {
                        continue;
                    };
                    if req.cert.is_some() || req.error.is_some() {
                        continue;
                    }
                    match ca.sign_intermediate(&req.csr).await {
                        Ok(cert) => req.cert = Some(cert),
                        Err(e) => {
                            tracing::warn!(datacenter = %rec.id, error = %e, "intermediate request refused");
                            req.error = Some(e.to_string());
                        }
                    }
                    let Ok(v) = serde_json::to_value(&req) else {
                        continue;
                    };
                    // CAS on the request's index: a newer request from the same datacenter wins.
                    if let Err(e) = store
                        .upsert(&t, &rec.id, Value::json(v), Some(rec.modify_index))
                        .await
                    {
                        tracing::debug!(datacenter = %rec.id, error = %e, "intermediate answer superseded");
                    }
                }
                if let Err(e) = store.wait_table(&t, listing.index, WATCH_WAIT).await {
                    tracing::warn!(error = %e, "waiting for intermediate requests failed");
                }
            }
        });
        self.inner.push_task(task);
    }
}

/// A registered service, with the sidecar derived from it.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The instance id.
    pub id: ServiceInstanceId,
    /// The catalog entry of the service.
    pub service: CatalogEntry,
    /// The catalog entry of its sidecar, if it has one.
    pub sidecar: Option<CatalogEntry>,
}

/// What a secondary accepts from the primary: every record decodes and validates as a write
/// would (the CA tables, written by the primary's CA itself, decode as what they are).
struct ReplicatedRecordCheck;

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
            other => authz::decode_record(other, id, Some(value))
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

/// The secondary's side of intermediate signing: the request is a forwarded write to the
/// primary, the answer comes back by replication.
struct ReplicatedSigner {
    dc: std::sync::Weak<Inner>,
}

impl ReplicatedSigner {
    fn dc(&self) -> Result<Datacenter, SignerError> {
        self.dc
            .upgrade()
            .map(|inner| Datacenter { inner })
            .ok_or_else(|| "the datacenter has stopped".into())
    }
}

#[async_trait::async_trait]
impl IntermediateSigner for ReplicatedSigner {
    async fn primary_roots(&self) -> Result<RootsView, SignerError> {
        let store = self.dc()?.inner.store.clone();
        let t = table(tables::CA_ROOTS);
        let mut seen = Index::ZERO;
        loop {
            if let Some(rec) = store.get(&t, "roots").await.map_err(signer_err)?
                && let Some(v) = rec.value.as_json()
            {
                return serde_json::from_value(v.clone()).map_err(signer_err);
            }
            seen = store
                .wait_table(&t, seen, WATCH_WAIT)
                .await
                .map_err(signer_err)?;
        }
    }

    async fn sign_intermediate(&self, csr_pem: &str) -> Result<String, SignerError> {
        let dc = &self.dc()?;
        let token = dc
            .inner
            .config
            .acl
            .tokens
            .replication
            .clone()
            .unwrap_or_default();
        let req = IntermediateRecord {
            csr: csr_pem.to_owned(),
            cert: None,
            error: None,
        };
        let value = serde_json::to_value(&req).map_err(signer_err)?;
        dc.write_global(
            &token,
            tables::CA_INTERMEDIATES,
            dc.name().as_str(),
            Value::json(value),
            None,
        )
        .await
        .map_err(signer_err)?;
        let store = &dc.inner.store;
        let t = table(tables::CA_INTERMEDIATES);
        let mut seen = Index::ZERO;
        loop {
            if let Some(rec) = store
                .get(&t, dc.name().as_str())
                .await
                .map_err(signer_err)?
                && let Some(ans) = decode::<IntermediateRecord>(&rec).filter(|a| a.csr == csr_pem)
            {
                if let Some(cert) = ans.cert {
                    return Ok(cert);
                }
                if let Some(e) = ans.error {
                    return Err(format!("primary refused the intermediate: {e}").into());
                }
            }
            seen = store
                .wait_table(&t, seen, WATCH_WAIT)
                .await
                .map_err(signer_err)?;
        }
    }
}

fn signer_err(e: impl std::fmt::Display) -> SignerError {
    e.to_string().into()
}

impl Inner {
    fn push_task(&self, task: JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task);
        }
    }

    fn authorizer(&self, secret: &str) -> Result<Authorizer, Error> {
        if !self.config.acl.enabled {
            return Ok(Authorizer::acls_disabled());
        }
        let snap = self.acl.load();
        let token = snap.token(secret).ok_or(Error::AclNotFound)?;
        if token.is_expired(crate::acl::now()) {
            return Err(Error::AclNotFound);
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
            && self.acl.load().token(secret).is_none()
        {
            {
                let rec = TokenRecord {
                    accessor_id: ids::uuid()?,
                    secret_id: secret.clone(),
                    description: "Initial Management Token".into(),
                    policies: vec![GLOBAL_MANAGEMENT_POLICY_ID.to_owned()],
                    roles: Vec::new(),
                    service_identities: Vec::new(),
                    node_identities: Vec::new(),
                    local: false,
                    expiration_time: None,
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

/// The intention check shared by the API and the data plane.
pub(crate) fn authorize_with(
    intentions: &SharedIntentions,
    default: IntentionDefault,
    trust_domain: Option<&TrustDomain>,
    client: &SpiffeId,
    target: &ServiceName,
) -> Authorization {
    let Some(svc) = client.as_service() else {
        return Authorization {
            authorized: false,
            reason: "ClientCertURI not a valid Service identifier".into(),
        };
    };
    if trust_domain.is_some_and(|td| svc.trust_domain() != td) {
        return Authorization {
            authorized: false,
            reason: format!(
                "client trust domain {} is not this mesh's",
                svc.trust_domain()
            ),
        };
    }
    let set = intentions.load();
    let d = set.decide(svc.service().as_str(), target.as_str(), default);
    Authorization {
        authorized: d.is_allowed(),
        reason: d.to_string(),
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
                .ok_or_else(|| Error::NotFound(format!("policy {n:?}")))
        })
        .collect()
}

fn json<T: Serialize>(v: &T) -> Result<Value, Error> {
    Ok(Value::json(
        serde_json::to_value(v).map_err(Error::invalid)?,
    ))
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
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_msg(format!(
            "invalid {what} name {name:?}: 1 to 128 letters, digits, '-' or '_'"
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

/// A check-and-set conflict reported as a name conflict.
fn conflict_as(e: Error, what: String) -> Error {
    let cas = match &e {
        Error::Store(mesh_replication::StoreError::CasConflict { .. }) => true,
        Error::Forward(mesh_replication::WriteError::Local(
            mesh_replication::StoreError::CasConflict { .. },
        )) => true,
        Error::Forward(mesh_replication::WriteError::Forward(
            mesh_replication::TransportError::Remote(r),
        )) => r.kind == mesh_replication::RemoteErrorKind::CasConflict,
        _ => false,
    };
    if cas { Error::Conflict(what) } else { e }
}

/// An operation refused by [`authz`] as an API error.
fn refused(r: authz::Refusal) -> Error {
    match r {
        authz::Refusal::Invalid(m) => Error::invalid_msg(m),
        authz::Refusal::Denied(m) => Error::Forward(mesh_replication::WriteError::Denied(
            mesh_replication::Denied::new(m),
        )),
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

fn host_port(a: SocketAddr) -> mesh_core::catalog::HostPort {
    mesh_core::catalog::HostPort::new(mesh_core::catalog::Host::Ip(a.ip()), a.port())
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
