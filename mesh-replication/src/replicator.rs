//! Replicators: one task per global table that keeps a secondary's copy in step with the
//! primary, and the status each one reports.

use mesh_core::error_chain;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh_core::Index;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::auth::SecretToken;
use crate::diff::diff;
use crate::record::{TxnOp, Value};
use crate::store::{Store, StoreError};
use crate::table::{TableName, TableRegistry};
use crate::transport::{CompleteListing, ListRequest, Transport, TransportError};

/// The local table where each replicator persists the remote index it has fully applied
/// (one record per replicated table, id = table name, JSON `{"remote_index": n}`).
pub const STATE_TABLE: &str = "mesh.replication-state";

/// A token bucket for replication rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Rounds per second in the long run.
    pub per_second: f64,
    /// Rounds allowed back to back.
    pub burst: u32,
}

impl Default for RateLimit {
    /// 100 rounds/s, burst 100 (Consul uses 1/s, burst 5).
    fn default() -> Self {
        Self {
            per_second: 100.0,
            burst: 100,
        }
    }
}

/// Exponential backoff with jitter after failed rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling up to 30 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay ceiling after `failures` consecutive failures (1 = first):
    /// `min(max, initial * 2^(failures-1))`. The actual sleep is drawn uniformly from
    /// `[ceiling/2, ceiling]`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(32);
        self.initial
            .checked_mul(1u32 << shift.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }

    fn delay(&self, failures: u32, rng: &SystemRandom) -> Duration {
        let c = self.ceiling(failures);
        let mut b = [0u8; 8];
        // On the (theoretical) failure of the system RNG, sleep the full ceiling.
        let frac = match rng.fill(&mut b) {
            Ok(()) => (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
            Err(_) => 1.0,
        };
        c / 2 + c.mul_f64(frac / 2.0)
    }
}

/// Validation of records arriving from the primary, before they are stored locally.
pub trait RecordCheck: Send + Sync + 'static {
    /// Accepts the record, or says why it is refused.
    fn check(&self, table: &TableName, id: &str, value: &Value) -> Result<(), String>;
}

/// Settings of a replicator.
#[derive(Clone)]
pub struct ReplicatorConfig {
    /// The replication token sent to the primary.
    pub token: SecretToken,
    /// How long the primary may hold a blocking query.
    pub wait: Duration,
    /// Most records changed per local transaction.
    pub batch_max_records: usize,
    /// Most estimated bytes written per local transaction.
    pub batch_max_bytes: usize,
    /// Pace of rounds.
    pub rate: RateLimit,
    /// Delay after failures.
    pub backoff: Backoff,
    /// Validation of every record before it is stored: a refused record is not stored, a
    /// local copy of it is removed, and it is listed in [`ReplicationStatus::refused`] for as
    /// long as the primary holds it.
    pub check: Option<Arc<dyn RecordCheck>>,
}

impl std::fmt::Debug for ReplicatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatorConfig")
            .field("token", &self.token)
            .field("wait", &self.wait)
            .field("batch_max_records", &self.batch_max_records)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .field("rate", &self.rate)
            .field("backoff", &self.backoff)
            .field("check", &self.check.is_some())
            .finish()
    }
}

impl ReplicatorConfig {
    /// Defaults with `token`: 60 s queries, batches of 4096 records / 256 KiB.
    pub fn new(token: SecretToken) -> Self {
        Self {
            token,
            wait: Duration::from_secs(60),
            batch_max_records: 4096,
            batch_max_bytes: 256 * 1024,
            rate: RateLimit::default(),
            backoff: Backoff::default(),
            check: None,
        }
    }
}

/// The last failure of a replicator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastError {
    /// When it happened.
    pub at: SystemTime,
    /// What happened.
    pub message: String,
    /// Whether the primary refused the token (a retry cannot succeed until the token or its
    /// policies change).
    pub denied: bool,
}

/// The state of one table's replication.
#[derive(Debug, Clone)]
pub struct ReplicationStatus {
    /// The table.
    pub table: TableName,
    /// Whether the replicator task runs.
    pub running: bool,
    /// The primary's table index the local copy reflects completely.
    pub last_remote_index: Index,
    /// The last round that succeeded (wall clock).
    pub last_success: Option<SystemTime>,
    /// The last failure, kept after later successes.
    pub last_error: Option<LastError>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Rounds that succeeded.
    pub rounds: u64,
    /// Records written locally.
    pub upserts_applied: u64,
    /// Records deleted locally.
    pub deletes_applied: u64,
    /// Records the primary holds that the record check refused, by id, with the reason.
    pub refused: BTreeMap<String, String>,
    last_success_at: Option<Instant>,
}

impl ReplicationStatus {
    fn new(table: TableName) -> Self {
        Self {
            table,
            running: true,
            last_remote_index: Index::ZERO,
            last_success: None,
            last_error: None,
            consecutive_failures: 0,
            rounds: 0,
            upserts_applied: 0,
            deletes_applied: 0,
            refused: BTreeMap::new(),
            last_success_at: None,
        }
    }

    /// How old the local copy is: the time since the last successful round, `None` before the
    /// first one.
    pub fn staleness(&self) -> Option<Duration> {
        self.last_success_at.map(|t| t.elapsed())
    }
}

/// Why [`ReplicatorHandle::wait_for_index`] returned without reaching the index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The time-out passed first.
    #[error("replication of {table} reached {reached}, not {wanted}, within the time-out")]
    TimedOut {
        /// The table.
        table: TableName,
        /// The index wanted.
        wanted: Index,
        /// The index reached.
        reached: Index,
    },
    /// The replicator stopped.
    #[error("the replicator of {0} stopped")]
    Stopped(TableName),
    /// No replicator runs for this table (not global, or not spawned).
    #[error("table {0} is not replicated here")]
    NotReplicated(TableName),
}

/// A running replicator.
#[derive(Debug)]
pub struct ReplicatorHandle {
    table: TableName,
    status: watch::Receiver<ReplicationStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ReplicatorHandle {
    /// The replicated table.
    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// A snapshot of the status.
    pub fn status(&self) -> ReplicationStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (for metrics, health checks, tests).
    pub fn subscribe(&self) -> watch::Receiver<ReplicationStatus> {
        self.status.clone()
    }

    /// Waits until the local copy reflects the primary's index `index` (read-your-writes after
    /// a forwarded write), and returns the index reached.
    pub async fn wait_for_index(
        &self,
        index: Index,
        timeout: Duration,
    ) -> Result<Index, WaitError> {
        let mut rx = self.status.clone();
        let res = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| s.last_remote_index >= index || !s.running),
        )
        .await
        .map(|r| r.is_ok());
        let s = rx.borrow();
        if s.last_remote_index >= index {
            return Ok(s.last_remote_index);
        }
        match res {
            Ok(_) => Err(WaitError::Stopped(self.table.clone())),
            Err(_) => Err(WaitError::TimedOut {
                table: self.table.clone(),
                wanted: index,
                reached: s.last_remote_index,
            }),
        }
    }

    /// Stops the replicator and waits for its task to end.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        // A join error would mean the task panicked; it is over either way.
        let _ = self.task.await;
    }
}

/// Starts replicating `table` from the primary (through `transport`) into `local`.
///
/// The replicator first reads the remote index persisted in [`STATE_TABLE`], so a restarted
/// secondary resumes where its last complete round ended.
pub fn spawn(
    table: TableName,
    local: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    config: ReplicatorConfig,
) -> ReplicatorHandle {
    let (status_tx, status) = watch::channel(ReplicationStatus::new(table.clone()));
    let (stop, stop_rx) = watch::channel(false);
    let worker = Worker {
        table: table.clone(),
        local,
        transport,
        config,
        status: status_tx,
        stop: stop_rx,
        rng: SystemRandom::new(),
    };
    let task = tokio::spawn(worker.run());
    ReplicatorHandle {
        table,
        status,
        stop,
        task,
    }
}

/// The replicators of every global table of a secondary.
#[derive(Debug, Default)]
pub struct Replicas {
    handles: BTreeMap<TableName, ReplicatorHandle>,
}

impl Replicas {
    /// Spawns one replicator per global table of `registry`.
    pub fn spawn(
        registry: &TableRegistry,
        local: Arc<dyn Store>,
        transport: Arc<dyn Transport>,
        config: ReplicatorConfig,
    ) -> Self {
        let handles = registry
            .global_tables()
            .map(|t| {
                (
                    t.clone(),
                    spawn(t.clone(), local.clone(), transport.clone(), config.clone()),
                )
            })
            .collect();
        Self { handles }
    }

    /// The replicator of one table.
    pub fn get(&self, table: &TableName) -> Option<&ReplicatorHandle> {
        self.handles.get(table)
    }

    /// The records of `table` that the record check refused, by id, with the reason.
    pub fn refused(&self, table: &TableName) -> Vec<(String, String)> {
        self.handles.get(table).map_or_else(Vec::new, |h| {
            h.status
                .borrow()
                .refused
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    /// The status of every replicator, in table order.
    pub fn statuses(&self) -> Vec<ReplicationStatus> {
        self.handles
            .values()
            .map(ReplicatorHandle::status)
            .collect()
    }

    /// Waits until `table`'s copy reflects the primary's `index` (see
    /// [`ReplicatorHandle::wait_for_index`]).
    pub async fn wait_for_index(
        &self,
        table: &TableName,
        index: Index,
        timeout: Duration,
    ) -> Result<Index, WaitError> {
        match self.handles.get(table) {
            Some(h) => h.wait_for_index(index, timeout).await,
            None => Err(WaitError::NotReplicated(table.clone())),
        }
    }

    /// Asks every replicator to stop, then waits (at most `deadline`) until each has; returns
    /// whether all did. For an owner that holds the set behind a shared reference.
    pub async fn stop_all(&self, deadline: Duration) -> bool {
        for h in self.handles.values() {
            h.stop.send_replace(true);
        }
        // A replicator has ended, its copy of the store included, when its worker (which
        // owns the status sender) is gone.
        let all = async {
            for h in self.handles.values() {
                let mut rx = h.status.clone();
                while rx.changed().await.is_ok() {}
            }
        };
        tokio::time::timeout(deadline, all).await.is_ok()
    }

    /// Stops every replicator.
    pub async fn stop(self) {
        for (_, h) in self.handles {
            h.stop().await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("local store: {0}")]
    Store(#[from] StoreError),
}

struct Applied {
    upserts: u64,
    deletes: u64,
}

struct Worker {
    table: TableName,
    local: Arc<dyn Store>,
    transport: Arc<dyn Transport>,
    config: ReplicatorConfig,
    status: watch::Sender<ReplicationStatus>,
    stop: watch::Receiver<bool>,
    rng: SystemRandom,
}

struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(r: RateLimit) -> Self {
        let burst = f64::from(r.burst.max(1));
        Self {
            rate: if r.per_second > 0.0 {
                r.per_second
            } else {
                1.0
            },
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// The time to wait before the next round may start (and takes its token).
    fn take(&mut self) -> Duration {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

impl Worker {
    fn state_table() -> TableName {
        // STATE_TABLE is a valid table name (checked by a unit test).
        TableName::new(STATE_TABLE).unwrap_or_else(|_| unreachable!("STATE_TABLE is valid"))
    }

    async fn load_persisted(&self) -> Result<Index, StoreError> {
        let rec = self
            .local
            .get(&Self::state_table(), self.table.as_str())
            .await?;
        Ok(rec
            .and_then(|r| r.value.as_json()?.get("remote_index")?.as_u64())
            .map_or(Index::ZERO, Index))
    }

    /// Sleeps `d` unless stopped first; returns false when stopped.
    async fn pause(&mut self, d: Duration) -> bool {
        if d.is_zero() {
            return !*self.stop.borrow();
        }
        let slept = tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.stop.wait_for(|s| *s) => false,
        };
        slept && !*self.stop.borrow()
    }

    async fn run(mut self) {
        let mut last = match self.load_persisted().await {
            Ok(i) => i,
            Err(e) => {
                warn!(table = %self.table, error = %e, "cannot read persisted replication index");
                Index::ZERO
            }
        };
        self.status.send_modify(|s| s.last_remote_index = last);
        let mut query = last;
        let mut failures = 0u32;
        let mut bucket = Bucket::new(self.config.rate);
        loop {
            let wait = bucket.take();
            if !self.pause(wait).await {
                break;
            }
            let req = ListRequest {
                token: self.config.token.clone(),
                table: self.table.clone(),
                min_index: query,
                wait: self.config.wait,
            };
            // The whole round is cancelled by a stop; each local transaction is atomic, so a
            // stop between batches leaves a consistent copy that the next start resumes.
            let mut stop = self.stop.clone();
            let round = async {
                match self.transport.list(req).await {
                    Ok(listing) => self.apply(listing, last).await,
                    Err(e) => Err(RoundError::Transport(e)),
                }
            };
            let outcome = tokio::select! {
                o = round => o,
                _ = stop.wait_for(|s| *s) => break,
            };
            match outcome {
                Ok((index, applied)) => {
                    last = index;
                    query = index;
                    failures = 0;
                    self.status.send_modify(|s| {
                        s.last_remote_index = index;
                        s.last_success = Some(SystemTime::now());
                        s.last_success_at = Some(Instant::now());
                        s.consecutive_failures = 0;
                        s.rounds += 1;
                        s.upserts_applied += applied.upserts;
                        s.deletes_applied += applied.deletes;
                    });
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // Consul resets to 0 after an error: the next query answers at once and
                    // the next diff compares every hash.
                    query = Index::ZERO;
                    let message = error_chain(&e);
                    let denied = matches!(&e, RoundError::Transport(t) if t.is_denied());
                    debug!(table = %self.table, error = %message, failures, "replication round failed");
                    self.status.send_modify(|s| {
                        s.last_error = Some(LastError {
                            at: SystemTime::now(),
                            message,
                            denied,
                        });
                        s.consecutive_failures = failures;
                    });
                    let d = self.config.backoff.delay(failures, &self.rng);
                    if !self.pause(d).await {
                        break;
                    }
                }
            }
        }
        self.status.send_modify(|s| s.running = false);
    }

    /// Applies a complete listing: diff against the local copy, deletes then upserts in
    /// batches, the new remote index persisted with the last batch.
    async fn apply(
        &self,
        listing: CompleteListing,
        last: Index,
    ) -> Result<(Index, Applied), RoundError> {
        // A remote index that went backwards means the primary's state was reset: full resync.
        let since = if listing.index < last {
            Index::ZERO
        } else {
            last
        };
        let local = self.local.list(&self.table).await?;
        let d = diff(&local.records, &listing.records, since);
        let applied = Applied {
            upserts: d.upserts.len() as u64,
            deletes: d.deletes.len() as u64,
        };
        let mut refused = self.status.borrow().refused.clone();
        let before = refused.clone();
        if self.config.check.is_some() {
            // Only what the primary still holds can stay refused.
            let held: std::collections::HashSet<&str> =
                listing.records.iter().map(|r| r.id.as_str()).collect();
            refused.retain(|id, _| held.contains(id.as_str()));
        }
        if d.is_empty() && listing.index == last {
            if refused != before {
                self.status.send_modify(|s| s.refused = refused);
            }
            return Ok((listing.index, applied));
        }
        let mut all: Vec<(TxnOp, usize)> = Vec::with_capacity(d.deletes.len() + d.upserts.len());
        for &i in &d.deletes {
            let id = local.records[i].id.clone();
            let size = id.len();
            refused.remove(&id);
            all.push((
                TxnOp::Delete {
                    table: self.table.clone(),
                    id,
                    cas: None,
                },
                size,
            ));
        }
        for &i in &d.upserts {
            let r = &listing.records[i];
            if let Some(check) = &self.config.check {
                if let Err(reason) = check.check(&self.table, &r.id, &r.value) {
                    warn!(table = %self.table, id = %r.id, %reason, "record from the primary refused");
                    if local.records.iter().any(|l| l.id == r.id) {
                        all.push((
                            TxnOp::Delete {
                                table: self.table.clone(),
                                id: r.id.clone(),
                                cas: None,
                            },
                            r.id.len(),
                        ));
                    }
                    refused.insert(r.id.clone(), reason);
                    continue;
                }
                refused.remove(&r.id);
            }
            all.push((
                TxnOp::Upsert {
                    table: self.table.clone(),
                    id: r.id.clone(),
                    value: r.value.clone(),
                    cas: None,
                },
                r.id.len() + r.value.estimated_size(),
            ));
        }
        // Published before the local copy changes, so a view rebuilt on that change sees it.
        if refused != before {
            self.status.send_modify(|s| s.refused = refused);
        }
        drop(local);
        let total = all.len();
        let mut ops: Vec<TxnOp> = Vec::new();
        let mut bytes = 0usize;
        for (n, (op, size)) in all.into_iter().enumerate() {
            ops.push(op);
            bytes += size;
            let full =
                ops.len() >= self.config.batch_max_records || bytes >= self.config.batch_max_bytes;
            if full && n + 1 < total {
                self.local.txn(std::mem::take(&mut ops)).await?;
                bytes = 0;
            }
        }
        ops.push(TxnOp::Upsert {
            table: Self::state_table(),
            id: self.table.as_str().to_owned(),
            value: Value::json(serde_json::json!({ "remote_index": listing.index.0 })),
            cas: None,
        });
        self.local.txn(ops).await?;
        Ok((listing.index, applied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_table_name_is_valid() {
        assert!(TableName::new(STATE_TABLE).is_ok());
    }

    #[test]
    fn backoff_ceiling_doubles_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(9), Duration::from_millis(25_600));
        assert_eq!(b.ceiling(10), Duration::from_secs(30));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
        let rng = SystemRandom::new();
        for n in 1..40 {
            let d = b.delay(n, &rng);
            assert!(d >= b.ceiling(n) / 2 && d <= b.ceiling(n));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_paces_after_burst() {
        let mut b = Bucket::new(RateLimit {
            per_second: 10.0,
            burst: 2,
        });
        assert_eq!(b.take(), Duration::ZERO);
        assert_eq!(b.take(), Duration::ZERO);
        let w = b.take();
        assert!(w > Duration::from_millis(99) && w <= Duration::from_millis(100));
    }
}
