//! A [`Store`] on an etcd v3 cluster, for several servers of one datacenter sharing its state.
//!
//! Layout under the store's prefix `P`:
//! - `P/meta/base`: written once when the prefix is first used; its creation revision is the
//!   base the datacenter's indexes count from (index = etcd revision - base), so the first
//!   write of a fresh datacenter takes index 1 whatever else the cluster holds;
//! - `P/t/<table>/<id>`: one record; its modify index is the key's modify revision, and its
//!   value carries the create index (etcd's own create revision cannot express "deleted and
//!   created again in one transaction");
//! - `P/i/<table>`: written by every transaction that touches the table; its modify revision is
//!   the table index, and watching `P/i/` is how [`Store::wait_table`] wakes (no polling);
//! - `P/meta/leader` and `P/meta/servers/<name>`: who leads, and every server alive with where
//!   it is reached, each on its server's lease (see [`EtcdStore::lead`]).
//!
//! A transaction reads the revisions of every record it touches at one revision, evaluates the
//! check-and-set rules on them, then commits as ONE etcd transaction guarded by those revisions:
//! if another server wrote one of the records in between, nothing is applied and the
//! transaction is evaluated again on fresh revisions. A transaction larger than etcd's limit on
//! operations (`--max-txn-ops`, 128 by default) is refused with
//! [`StoreError::TooManyOperations`], never split.
//!
//! Transient failures (no leader during an election, a member that went away, a time-out) are
//! retried for [`EtcdOptions::retry_for`], so losing one member of three is not visible to
//! callers. A write whose answer was lost is checked before it is retried: every transaction
//! writes a fresh nonce into the index key of its first table, and finding it there means the
//! write was applied. (If another write to that table landed in between, the nonce is gone and
//! the write is evaluated again: an upsert or delete then lands twice with the same effect, and
//! a create-only check-and-set reports a conflict with its own earlier success.) Without a
//! quorum, writes fail with [`StoreError::Etcd`] once `retry_for` has passed.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    TlsOptions, Txn, TxnOp as EtcdOp, TxnOpResponse, WatchOptions,
};
use mesh_core::Index;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::txn::{Effect, stage};
use super::{Listing, Store, StoreError, check_ids};
use crate::record::{ContentHash, Record, TxnOp, Value};
use crate::table::TableName;

/// etcd's default `--max-txn-ops`.
pub const ETCD_DEFAULT_MAX_TXN_OPS: usize = 128;

/// The version byte of an encoded record value.
const FORMAT_VERSION: u8 = 1;
/// version, create index, hash, tag.
const HEADER_LEN: usize = 1 + 8 + 32 + 1;
/// How often a transaction is evaluated again when another server raced it.
const MAX_ATTEMPTS: usize = 64;

/// How to reach the etcd cluster and where the datacenter's keys live.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EtcdOptions {
    /// Client URLs of the cluster's members (`http://127.0.0.1:2379`, ...); the client
    /// balances over them and fails over when one is down.
    pub endpoints: Vec<String>,
    /// The key prefix of this datacenter's state (`mesh/dc1`); several datacenters can share
    /// one cluster under different prefixes.
    pub prefix: String,
    /// The largest number of operations one etcd transaction may hold (the cluster's
    /// `--max-txn-ops`).
    pub max_txn_ops: usize,
    /// How long one request to etcd may take before it fails.
    pub request_timeout: Duration,
    /// How long transient failures are retried before a call fails.
    pub retry_for: Duration,
    /// TLS toward the members (`https://` endpoints); `None`: plain TCP.
    pub tls: Option<EtcdTls>,
}

/// TLS toward etcd: the CA that signed the members' certificates, and the client certificate
/// this server presents when the cluster requires one (`--client-cert-auth`).
#[derive(Clone)]
#[non_exhaustive]
pub struct EtcdTls {
    /// PEM: the CA certificate(s) the members' certificates must chain to.
    pub ca_pem: Vec<u8>,
    /// PEM: this server's client certificate chain and private key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the members' certificates must carry, when it is not the endpoints' host.
    pub domain: Option<String>,
}

impl EtcdTls {
    /// Members verified against `ca_pem`, no client certificate.
    pub fn new(ca_pem: Vec<u8>) -> Self {
        Self {
            ca_pem,
            client: None,
            domain: None,
        }
    }

    /// Presents `cert_pem` (with the key `key_pem`) to the members.
    pub fn with_client_identity(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.client = Some((cert_pem, key_pem));
        self
    }

    fn options(&self) -> TlsOptions {
        let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.client {
            t = t.identity(Identity::from_pem(cert, key));
        }
        if let Some(d) = &self.domain {
            t = t.domain_name(d.clone());
        }
        t
    }
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("EtcdTls")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_identity", &self.client.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}

impl EtcdOptions {
    /// Options for `endpoints` and `prefix`, with etcd's default operation limit, a 5-second
    /// request time-out and transient failures retried for 10 seconds.
    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> Self {
        Self {
            endpoints,
            prefix: prefix.into(),
            max_txn_ops: ETCD_DEFAULT_MAX_TXN_OPS,
            request_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// A [`Store`] whose tables live in etcd (see the module docs for the layout).
pub struct EtcdStore {
    inner: Arc<Inner>,
    watcher: JoinHandle<()>,
}

struct Inner {
    client: Client,
    prefix: String,
    base: i64,
    max_txn_ops: usize,
    retry_for: Duration,
    rng: ring::rand::SystemRandom,
    /// The lease this server leads with (0: no fence): every write is guarded by it.
    fence: AtomicI64,
    /// Set once this server's leadership is lost: reads are then served by whichever member
    /// answers, from its own copy, without a quorum (serializable), and may be stale.
    stale: AtomicBool,
    index: AtomicU64,
    tables: Mutex<HashMap<TableName, watch::Sender<Index>>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.inner.prefix)
            .field("index", &self.inner.index.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl EtcdStore {
    /// Connects, reads the table indexes of the prefix and starts watching them. Needs a
    /// tokio runtime.
    pub async fn open(options: EtcdOptions) -> Result<Self, StoreError> {
        let prefix = options.prefix.trim_end_matches('/').to_owned();
        if prefix.is_empty() {
            return Err(StoreError::Etcd("the etcd key prefix is empty".into()));
        }
        let mut connect = ConnectOptions::new()
            .with_timeout(options.request_timeout)
            .with_connect_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(10), options.request_timeout);
        if let Some(tls) = &options.tls {
            connect = connect.with_tls(tls.options());
        }
        let client = Client::connect(&options.endpoints, Some(connect))
            .await
            .map_err(etcd_error)?;
        // The base: created once, by whichever server comes first.
        let base_key = format!("{prefix}/meta/base");
        let txn = Txn::new()
            .when([Compare::create_revision(
                base_key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then([EtcdOp::put(base_key.clone(), "", None)]);
        retry(options.retry_for, || {
            let (mut kv, txn) = (client.kv_client(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await?;
        let got = retry(options.retry_for, || {
            let (mut kv, key) = (client.kv_client(), base_key.clone());
            async move { kv.get(key, None).await }
        })
        .await?;
        let base = got
            .kvs()
            .first()
            .map(|kv| kv.create_revision())
            .ok_or_else(|| StoreError::Etcd("the base key vanished".into()))?;
        let inner = Arc::new(Inner {
            client,
            prefix,
            base,
            max_txn_ops: options.max_txn_ops.max(2),
            retry_for: options.retry_for,
            rng: ring::rand::SystemRandom::new(),
            fence: AtomicI64::new(0),
            stale: AtomicBool::new(false),
            index: AtomicU64::new(0),
            tables: Mutex::new(HashMap::new()),
        });
        let from = inner.resync().await?;
        let watcher = tokio::spawn(watch_indexes(Arc::downgrade(&inner), from));
        Ok(Self { inner, watcher })
    }
}

impl Inner {
    fn record_key(&self, table: &TableName, id: &str) -> String {
        format!("{}/t/{}/{}", self.prefix, table.as_str(), id)
    }

    fn records_prefix(&self, table: &TableName) -> String {
        format!("{}/t/{}/", self.prefix, table.as_str())
    }

    fn index_key(&self, table: &TableName) -> String {
        format!("{}/i/{}", self.prefix, table.as_str())
    }

    fn indexes_prefix(&self) -> String {
        format!("{}/i/", self.prefix)
    }

    fn leader_key(&self) -> String {
        format!("{}/meta/leader", self.prefix)
    }

    fn servers_prefix(&self) -> String {
        format!("{}/meta/servers/", self.prefix)
    }

    /// How records are read: linearizable (through the cluster's quorum) while this server
    /// may lead, serializable (one member's copy) once its leadership is lost.
    fn read_options(&self) -> GetOptions {
        if self.stale.load(Ordering::Acquire) {
            GetOptions::new().with_serializable()
        } else {
            GetOptions::new()
        }
    }

    fn to_index(&self, revision: i64) -> Index {
        Index(u64::try_from(revision - self.base).unwrap_or(0))
    }

    fn sender(&self, table: &TableName) -> watch::Sender<Index> {
        lock(&self.tables)
            .entry(table.clone())
            .or_insert_with(|| watch::Sender::new(Index::ZERO))
            .clone()
    }

    /// Raises the cached index of `table` (never lowers it) and the datacenter index.
    fn observe(&self, table: &TableName, index: Index) {
        self.sender(table).send_if_modified(|cur| {
            let raise = index > *cur;
            if raise {
                *cur = index;
            }
            raise
        });
        self.index.fetch_max(index.0, Ordering::AcqRel);
    }

    /// Runs a call that is safe to repeat, retrying transient failures for `retry_for`.
    async fn retry<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        retry(self.retry_for, call).await
    }

    /// Runs a read, retrying transient failures for `retry_for`.
    async fn read<T, F, Fut>(&self, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut(etcd_client::KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.retry_for;
        // The first retry goes at once: the client balances over the members, so it usually
        // reaches another one.
        let mut delay = Duration::ZERO;
        loop {
            match call(self.client.kv_client()).await {
                Ok(v) => return Ok(v),
                Err(e) if transient(&e) && tokio::time::Instant::now() + delay < deadline => {
                    tracing::debug!(error = %e, "etcd: retrying a read");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).clamp(Duration::from_millis(25), Duration::from_secs(1));
                }
                Err(e) => return Err(etcd_error(e)),
            }
        }
    }

    /// Reads every table index of the prefix; returns the revision to watch from.
    async fn resync(&self) -> Result<i64, StoreError> {
        let prefix = self.indexes_prefix();
        let resp = self
            .read(|mut kv| {
                let prefix = prefix.clone();
                async move { kv.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        for item in resp.kvs() {
            if let Some(table) = item
                .key_str()
                .ok()
                .and_then(|k| k.strip_prefix(&self.indexes_prefix()))
                .and_then(|t| TableName::new(t).ok())
            {
                self.observe(&table, self.to_index(item.mod_revision()));
            }
        }
        Ok(resp.header().map_or(self.base, |h| h.revision()) + 1)
    }

    /// The (create, modify) indexes of each key, read at one revision.
    async fn current(&self, keys: &[String]) -> Result<Vec<Option<(Index, Index)>>, StoreError> {
        let ops: Vec<EtcdOp> = keys.iter().map(|k| EtcdOp::get(k.clone(), None)).collect();
        let resp = self
            .read(|mut kv| {
                let ops = ops.clone();
                async move { kv.txn(Txn::new().and_then(ops)).await }
            })
            .await?;
        let mut out = Vec::with_capacity(keys.len());
        for r in resp.op_responses() {
            let TxnOpResponse::Get(g) = r else {
                return Err(StoreError::Etcd("unexpected response to a read".into()));
            };
            out.push(match g.kvs().first() {
                Some(kv) => {
                    let modify = self.to_index(kv.mod_revision());
                    let create = decode_create(kv.value())?.unwrap_or(modify);
                    Some((create, modify))
                }
                None => None,
            });
        }
        Ok(out)
    }

    async fn commit(&self, ops: Vec<TxnOp>) -> Result<Index, StoreError> {
        check_ids(&ops)?;
        let keys: Vec<(TableName, String)> = ops
            .iter()
            .map(|o| (o.table().clone(), o.id().to_owned()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let tables: BTreeSet<TableName> = keys.iter().map(|(t, _)| t.clone()).collect();
        let size = keys.len() + tables.len();
        if size > self.max_txn_ops {
            return Err(StoreError::TooManyOperations {
                operations: size,
                limit: self.max_txn_ops,
            });
        }
        let etcd_keys: Vec<String> = keys.iter().map(|(t, i)| self.record_key(t, i)).collect();
        let deadline = tokio::time::Instant::now() + self.retry_for;
        // The first retry goes at once: the client balances over the members, so it usually
        // reaches another one.
        let mut delay = Duration::ZERO;
        for _ in 0..MAX_ATTEMPTS {
            let nonce = self.nonce()?;
            let found = self.current(&etcd_keys).await?;
            let by_key: HashMap<(&TableName, &str), Option<(Index, Index)>> = keys
                .iter()
                .map(|(t, i)| (t, i.as_str()))
                .zip(found.iter().copied())
                .collect();
            let effects = stage(ops.clone(), |table, id| {
                Ok(by_key.get(&(table, id)).copied().flatten())
            })?;
            // Guard: every touched record is as read (modify revision 0 = absent).
            let mut compares: Vec<Compare> = etcd_keys
                .iter()
                .zip(&found)
                .map(|(k, f)| {
                    let rev = f.map_or(0, |(_, m)| m.0 as i64 + self.base);
                    Compare::mod_revision(k.clone(), CompareOp::Equal, rev)
                })
                .collect();
            let fence = self.fence.load(Ordering::Acquire);
            if fence != 0 {
                // A deposed leader's writes fail: the leader key must still hold our lease.
                compares.push(Compare::lease(self.leader_key(), CompareOp::Equal, fence));
            }
            let mut writes = Vec::with_capacity(size);
            for ((table, id), effect) in effects {
                let key = self.record_key(&table, &id);
                writes.push(match effect {
                    Effect::Put { value, create } => {
                        EtcdOp::put(key, encode_value(create, &value), None)
                    }
                    Effect::Remove => EtcdOp::delete(key, None),
                });
            }
            for table in &tables {
                writes.push(EtcdOp::put(self.index_key(table), nonce.clone(), None));
            }
            let sent = self
                .client
                .kv_client()
                .txn(Txn::new().when(compares).and_then(writes))
                .await;
            let resp = match sent {
                Ok(resp) => resp,
                Err(e) if transient(&e) && tokio::time::Instant::now() + delay < deadline => {
                    // The answer is lost, not necessarily the write: look for its nonce.
                    tracing::debug!(error = %e, "etcd: a write's answer was lost; checking it");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).clamp(Duration::from_millis(25), Duration::from_secs(1));
                    if let Some(table) = tables.first() {
                        let key = self.index_key(table);
                        let got = self
                            .read(|mut kv| {
                                let key = key.clone();
                                async move { kv.get(key, None).await }
                            })
                            .await?;
                        if let Some(kv) = got
                            .kvs()
                            .first()
                            .filter(|kv| kv.value() == nonce.as_bytes())
                        {
                            let idx = self.to_index(kv.mod_revision());
                            for table in &tables {
                                self.observe(table, idx);
                            }
                            return Ok(idx);
                        }
                    }
                    continue;
                }
                Err(e) => return Err(etcd_error(e)),
            };
            if !resp.succeeded() {
                if fence != 0 && !self.holds(fence).await? {
                    return Err(StoreError::NotLeader);
                }
                // Another server wrote one of the records since the read: evaluate again.
                continue;
            }
            let revision = resp
                .header()
                .map(|h| h.revision())
                .ok_or_else(|| StoreError::Etcd("a transaction answer without header".into()))?;
            let idx = self.to_index(revision);
            for table in &tables {
                self.observe(table, idx);
            }
            return Ok(idx);
        }
        Err(StoreError::Etcd(format!(
            "the transaction lost {MAX_ATTEMPTS} races to other writers in a row"
        )))
    }
}

/// Follows the table index keys from revision `from`; on any failure it reads them again and
/// resumes (a compacted revision is read past the same way).
async fn watch_indexes(inner: std::sync::Weak<Inner>, mut from: i64) {
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(store) = inner.upgrade() else {
            return;
        };
        let prefix = store.indexes_prefix();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify();
        let mut client = store.client.watch_client();
        drop(store);
        match client.watch(prefix.clone(), Some(opts)).await {
            Ok(mut stream) => loop {
                let msg = match stream.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) | Err(_) => break,
                };
                let Some(store) = inner.upgrade() else {
                    return;
                };
                if msg.canceled() || msg.compact_revision() > 0 {
                    // Compacted past `from` (or cancelled): start over from the current state.
                    match store.resync().await {
                        Ok(next) => from = next,
                        Err(e) => {
                            tracing::warn!(error = %e, "etcd: reading the table indexes failed")
                        }
                    }
                    break;
                }
                for event in msg.events() {
                    if event.event_type() != EventType::Put {
                        continue;
                    }
                    let Some(kv) = event.kv() else { continue };
                    if let Some(table) = kv
                        .key_str()
                        .ok()
                        .and_then(|k| k.strip_prefix(&prefix))
                        .and_then(|t| TableName::new(t).ok())
                    {
                        store.observe(&table, store.to_index(kv.mod_revision()));
                    }
                    from = from.max(kv.mod_revision() + 1);
                }
                if let Some(h) = msg.header() {
                    from = from.max(h.revision() + 1);
                }
                delay = Duration::from_millis(100);
            },
            Err(e) => tracing::warn!(error = %e, "etcd: watching the table indexes failed"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        if let Some(store) = inner.upgrade() {
            // Writes made while the watch was down are picked up by reading the indexes again.
            if let Ok(next) = store.resync().await {
                from = from.max(next);
            }
        }
    }
}

impl EtcdStore {
    /// Waits until this server leads the datacenter, then returns its [`Leadership`].
    ///
    /// Leadership is the key `P/meta/leader`, holding `holder` (how this server names itself,
    /// its address say) and attached to an etcd lease of `ttl` that this server keeps alive.
    /// `contact` is where the other servers reach this one (its API address, say), published
    /// for as long as the lease lives and read with [`EtcdStore::leader_contact`].
    /// Whoever creates the key leads; the others wait (a watch on the key, no polling) until it
    /// is deleted: by [`Leadership::resign`], or by etcd when the leader stops keeping its
    /// lease alive (a crash: at most `ttl` later). From the moment this returns, every write
    /// through this store is fenced on the lease: once it is lost, writes fail with
    /// [`StoreError::NotLeader`] instead of racing the new leader.
    pub async fn lead(
        &self,
        holder: &str,
        contact: &str,
        ttl: Duration,
    ) -> Result<Leadership, StoreError> {
        if holder.is_empty() || holder.contains('/') {
            return Err(StoreError::Etcd(format!(
                "a server name must be non-empty and hold no '/': {holder:?}"
            )));
        }
        let inner = &self.inner;
        let ttl_s = i64::try_from(ttl.as_secs().max(2)).unwrap_or(i64::MAX);
        let lease = inner
            .retry(|| {
                let mut leases = inner.client.lease_client();
                async move { leases.grant(ttl_s, None).await }
            })
            .await?
            .id();
        let (lost_tx, lost) = watch::channel(false);
        let keeper = tokio::spawn(keep_alive(
            inner.clone(),
            lease,
            Duration::from_secs(ttl_s as u64),
            lost_tx,
        ));
        // Present as a server of the datacenter for as long as the lease lives, leading or not.
        let presence = format!("{}{holder}", inner.servers_prefix());
        inner
            .retry(|| {
                let mut kv = inner.client.kv_client();
                let (key, value) = (presence.clone(), contact.to_owned());
                let opts = etcd_client::PutOptions::new().with_lease(lease);
                async move { kv.put(key, value, Some(opts)).await }
            })
            .await?;
        let key = inner.leader_key();
        loop {
            if *lost.borrow() {
                keeper.abort();
                return Err(StoreError::NotLeader);
            }
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([EtcdOp::put(
                    key.clone(),
                    holder,
                    Some(etcd_client::PutOptions::new().with_lease(lease)),
                )])
                .or_else([EtcdOp::get(key.clone(), None)]);
            let resp = match inner.client.kv_client().txn(txn).await {
                Ok(resp) => resp,
                Err(e) if transient(&e) => {
                    // A member gone or an election: try again (the lease is kept alive).
                    tracing::debug!(error = %e, "etcd: campaigning again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    keeper.abort();
                    return Err(etcd_error(e));
                }
            };
            if resp.succeeded() {
                inner.fence.store(lease, Ordering::Release);
                tracing::info!(holder, lease, "etcd: this server leads the datacenter");
                return Ok(Leadership {
                    inner: self.inner.clone(),
                    lease,
                    lost,
                    keeper,
                });
            }
            // Someone leads: wait for the key to go, from the revision just read.
            let from = resp.header().map_or(0, |h| h.revision()) + 1;
            let current = resp.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .map(|kv| kv.value_str().unwrap_or("").to_owned()),
                _ => None,
            });
            tracing::info!(
                leader = current.as_deref().unwrap_or("?"),
                "etcd: standing by"
            );
            let mut watcher = inner.client.watch_client();
            let opts = WatchOptions::new().with_start_revision(from);
            if let Ok(mut stream) = watcher.watch(key.clone(), Some(opts)).await {
                while let Ok(Some(msg)) = stream.message().await {
                    if msg.canceled()
                        || msg
                            .events()
                            .iter()
                            .any(|e| e.event_type() == EventType::Delete)
                    {
                        break;
                    }
                }
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Every server of the datacenter that is alive (leading or standing by), as each named
    /// itself, sorted.
    pub async fn servers(&self) -> Result<Vec<String>, StoreError> {
        let prefix = self.inner.servers_prefix();
        let got = self
            .inner
            .read(|mut kv| {
                let prefix = prefix.clone();
                async move { kv.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let mut out: Vec<String> = got
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok()?.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The current leader as it named itself and where it is reached (its `contact`); `None`
    /// when nobody leads.
    pub async fn leader_contact(&self) -> Result<Option<(String, String)>, StoreError> {
        let Some(leader) = self.leader().await? else {
            return Ok(None);
        };
        let key = format!("{}{leader}", self.inner.servers_prefix());
        let contact = self.inner.text_of(key).await?;
        Ok(contact.map(|contact| (leader, contact)))
    }

    /// The current leader as it named itself, `None` when nobody leads.
    pub async fn leader(&self) -> Result<Option<String>, StoreError> {
        self.inner.text_of(self.inner.leader_key()).await
    }
}

/// This server's leadership of its datacenter (see [`EtcdStore::lead`]).
#[derive(Debug)]
pub struct Leadership {
    inner: Arc<Inner>,
    lease: i64,
    lost: watch::Receiver<bool>,
    keeper: JoinHandle<()>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// Becomes `true` when the lease is lost (etcd unreachable for longer than its time to
    /// live, or revoked): this server must stop acting as leader.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Gives leadership up at once (revokes the lease, which deletes the key and wakes the
    /// servers standing by).
    pub async fn resign(self) -> Result<(), StoreError> {
        self.keeper.abort();
        // The fence stays on the revoked lease: this store's writes now fail as NotLeader.
        self.inner
            .client
            .lease_client()
            .revoke(self.lease)
            .await
            .map_err(etcd_error)?;
        Ok(())
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // Not revoked: the lease runs out on its own, as after a crash.
        self.keeper.abort();
    }
}

/// Keeps `lease` alive, a third of its life apart; sets `lost` once it has lapsed.
async fn keep_alive(inner: Arc<Inner>, lease: i64, ttl: Duration, lost: watch::Sender<bool>) {
    let lost = {
        let inner = inner.clone();
        move || {
            // From now on reads come from one member's copy, and may be stale.
            inner.stale.store(true, Ordering::Release);
            let _ = lost.send(true);
        }
    };
    let mut last_ok = tokio::time::Instant::now();
    loop {
        let mut leases = inner.client.lease_client();
        match leases.keep_alive(lease).await {
            Ok((mut keeper, mut answers)) => loop {
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match tokio::time::timeout(ttl / 3, answers.message()).await {
                    Ok(Ok(Some(a))) if a.ttl() > 0 => last_ok = tokio::time::Instant::now(),
                    Ok(Ok(Some(_))) => {
                        // Expired or revoked at etcd.
                        lost();
                        return;
                    }
                    _ => break,
                }
                tokio::time::sleep(ttl / 3).await;
            },
            Err(e) => tracing::warn!(error = %e, "etcd: keeping the leader lease alive failed"),
        }
        if last_ok.elapsed() >= ttl {
            tracing::error!("etcd: the leader lease lapsed; this server no longer leads");
            lost();
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[async_trait]
impl Store for EtcdStore {
    fn index(&self) -> Index {
        Index(self.inner.index.load(Ordering::Acquire))
    }

    fn table_index(&self, table: &TableName) -> Index {
        lock(&self.inner.tables)
            .get(table)
            .map_or(Index::ZERO, |s| *s.borrow())
    }

    async fn get(&self, table: &TableName, id: &str) -> Result<Option<Record>, StoreError> {
        let key = self.inner.record_key(table, id);
        let opts = self.inner.read_options();
        let resp = self
            .inner
            .read(|mut kv| {
                let (key, opts) = (key.clone(), opts.clone());
                async move { kv.get(key, Some(opts)).await }
            })
            .await?;
        resp.kvs()
            .first()
            .map(|kv| decode_record(id, self.inner.to_index(kv.mod_revision()), kv.value()))
            .transpose()
    }

    async fn list(&self, table: &TableName) -> Result<Listing, StoreError> {
        let inner = &self.inner;
        let prefix = inner.records_prefix(table);
        // The records and the table index in one read, at one revision.
        let opts = inner.read_options();
        let ops = [
            EtcdOp::get(prefix.clone(), Some(opts.clone().with_prefix())),
            EtcdOp::get(inner.index_key(table), Some(opts)),
        ];
        let resp = inner
            .read(|mut kv| {
                let ops = ops.clone();
                async move { kv.txn(Txn::new().and_then(ops)).await }
            })
            .await?;
        let mut answers = resp.op_responses().into_iter();
        let (Some(TxnOpResponse::Get(records)), Some(TxnOpResponse::Get(index))) =
            (answers.next(), answers.next())
        else {
            return Err(StoreError::Etcd("unexpected response to a listing".into()));
        };
        let mut out = Vec::with_capacity(records.kvs().len());
        for kv in records.kvs() {
            let id = kv
                .key_str()
                .ok()
                .and_then(|k| k.strip_prefix(&prefix))
                .ok_or_else(|| StoreError::Corrupt("an etcd key that is not UTF-8".into()))?;
            out.push(decode_record(
                id,
                inner.to_index(kv.mod_revision()),
                kv.value(),
            )?);
        }
        let index = index
            .kvs()
            .first()
            .map_or(Index::ZERO, |kv| inner.to_index(kv.mod_revision()));
        inner.observe(table, index);
        Ok(Listing {
            index,
            records: out,
        })
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Index, StoreError> {
        self.inner.commit(ops).await
    }

    async fn wait_table(
        &self,
        table: &TableName,
        after: Index,
        timeout: Duration,
    ) -> Result<Index, StoreError> {
        let mut rx = self.inner.sender(table).subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|i| *i > after)).await;
        drop(waited);
        let current = *rx.borrow();
        Ok(current)
    }
}

impl Inner {
    /// The value of `key` as text (linearizable; `""` when it is not UTF-8), `None` when the
    /// key does not exist.
    async fn text_of(&self, key: String) -> Result<Option<String>, StoreError> {
        let got = self
            .read(|mut kv| {
                let key = key.clone();
                async move { kv.get(key, None).await }
            })
            .await?;
        Ok(got
            .kvs()
            .first()
            .map(|kv| kv.value_str().unwrap_or("").to_owned()))
    }

    /// Whether the leader key is still attached to `lease`.
    async fn holds(&self, lease: i64) -> Result<bool, StoreError> {
        let key = self.leader_key();
        let got = self
            .read(|mut kv| {
                let key = key.clone();
                async move { kv.get(key, None).await }
            })
            .await?;
        Ok(got.kvs().first().is_some_and(|kv| kv.lease() == lease))
    }

    /// A fresh value for the index keys a transaction writes.
    fn nonce(&self) -> Result<String, StoreError> {
        let mut b = [0u8; 16];
        ring::rand::SecureRandom::fill(&self.rng, &mut b)
            .map_err(|_| StoreError::Etcd("the system has no secure random source".into()))?;
        Ok(b.iter().map(|x| format!("{x:02x}")).collect())
    }
}

/// Runs a call that is safe to repeat, retrying transient failures for `retry_for`.
async fn retry<T, F, Fut>(retry_for: Duration, mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + retry_for;
    // The first retry goes at once: the client balances over the members, so it usually
    // reaches another one.
    let mut delay = Duration::ZERO;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && tokio::time::Instant::now() + delay < deadline => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).clamp(Duration::from_millis(25), Duration::from_secs(1));
            }
            Err(e) => return Err(etcd_error(e)),
        }
    }
}

/// Whether a failure may pass on its own: no leader yet, a member gone, a time-out.
fn transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        // Cancelled, Unknown, DeadlineExceeded, Unavailable.
        etcd_client::Error::GRpcStatus(s) => matches!(i32::from(s.code()), 1 | 2 | 4 | 14),
        _ => false,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn etcd_error(e: etcd_client::Error) -> StoreError {
    if transient(&e) {
        // What an operator can act on first; the client's own text after it.
        let detail = match &e {
            etcd_client::Error::GRpcStatus(s) => s.message().to_owned(),
            other => other.to_string(),
        };
        return StoreError::Etcd(format!(
            "no answer from the etcd cluster (is a quorum of its members up and reachable?): \
             {detail}"
        ));
    }
    StoreError::Etcd(e.to_string())
}

/// `[version][create index, 0 = this write][hash][tag][payload]`.
fn encode_value(create: Option<Index>, value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + value.estimated_size());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&create.map_or(0, |c| c.0).to_be_bytes());
    out.extend_from_slice(value.content_hash().as_bytes());
    super::push_value(&mut out, value);
    out
}

/// The create index stored in a value; `None` means "the write that last modified it".
fn decode_create(b: &[u8]) -> Result<Option<Index>, StoreError> {
    if b.len() < HEADER_LEN || b[0] != FORMAT_VERSION {
        return Err(StoreError::Corrupt("etcd record header".into()));
    }
    let mut c = [0u8; 8];
    c.copy_from_slice(&b[1..9]);
    let c = u64::from_be_bytes(c);
    Ok((c != 0).then_some(Index(c)))
}

fn decode_record(id: &str, modify: Index, b: &[u8]) -> Result<Record, StoreError> {
    let create = decode_create(b)?.unwrap_or(modify);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&b[9..41]);
    let value = super::read_value(id, &b[HEADER_LEN - 1..])?;
    Ok(Record {
        id: id.to_owned(),
        value,
        create_index: create,
        modify_index: modify,
        hash: ContentHash(hash),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_bytes_are_typed_errors() {
        let v = Value::json(serde_json::json!({"a": 1}));
        let enc = encode_value(Some(Index(7)), &v);
        let r = decode_record("x", Index(9), &enc).expect("decodes");
        assert_eq!((r.create_index, r.modify_index), (Index(7), Index(9)));
        assert_eq!(r.value, v);
        assert_eq!(r.hash, v.content_hash());
        let enc = encode_value(None, &Value::bytes(&b"\x00raw"[..]));
        let r = decode_record("x", Index(3), &enc).expect("decodes");
        assert_eq!(r.create_index, Index(3));
        for bad in [&b""[..], &b"\x01short"[..], &[2u8; 64][..]] {
            assert!(matches!(
                decode_record("x", Index(1), bad),
                Err(StoreError::Corrupt(_))
            ));
        }
        let mut tag = encode_value(None, &v);
        tag[41] = 9;
        assert!(matches!(
            decode_record("x", Index(1), &tag),
            Err(StoreError::Corrupt(_))
        ));
    }
}
