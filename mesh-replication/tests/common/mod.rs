//! Shared set-up of the integration tests: datacenters, transports, an ACL-like authorizer.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_replication::FramedConfig;
use mesh_replication::{
    Authorizer, Denied, DurableStore, FramedTransport, InProcessTransport, Index, MemoryStore, Op,
    ReplicationServer, ReplicationStatus, ReplicatorConfig, ReplicatorHandle, Scope, SecretToken,
    ServeConfig, ServerHandle, Store, TableName, TableRegistry, TcpConnector, Transport, TxnOp,
    Value,
};
use tokio::net::TcpListener;

pub mod certs;

pub type R = Result<(), Box<dyn Error>>;

pub fn t(s: &str) -> TableName {
    TableName::new(s).unwrap_or_else(|e| panic!("table {s}: {e}"))
}

pub const POLICIES: &str = "acl-policies";
pub const CONFIG: &str = "config-entries";
pub const CATALOG: &str = "catalog";

/// Two global tables (one ACL-like, one config-like) and one local table.
pub fn registry() -> TableRegistry {
    let mut r = TableRegistry::new();
    r.register(t(POLICIES), Scope::Global).ok();
    r.register(t(CONFIG), Scope::Global).ok();
    r.register(t(CATALOG), Scope::Local).ok();
    r
}

/// The replication token of the guide: `acl = "write"`, `operator = "write"`,
/// `service_prefix "" { policy = "read" }`.
pub fn replication_token() -> SecretToken {
    SecretToken::new("replication-secret")
}
/// A token allowed everything.
pub fn management_token() -> SecretToken {
    SecretToken::new("management-secret")
}
/// A token with `service_prefix "" { policy = "read" }` only.
pub fn read_only_token() -> SecretToken {
    SecretToken::new("read-only-secret")
}

/// Maps tables to the permission they need, like the root package will with the real ACLs:
/// ACL tables need `acl:write` to replicate (unredacted) and to write; other tables need
/// `service:read` to replicate and `service:write` to write.
#[derive(Debug, Default)]
pub struct TestAcl {
    tokens: BTreeMap<String, BTreeSet<&'static str>>,
}

impl TestAcl {
    pub fn new() -> Arc<Self> {
        let mut tokens = BTreeMap::new();
        tokens.insert(
            replication_token().expose_secret().to_owned(),
            BTreeSet::from(["acl:write", "operator:write", "service:read"]),
        );
        tokens.insert(
            management_token().expose_secret().to_owned(),
            BTreeSet::from([
                "acl:write",
                "operator:write",
                "service:read",
                "service:write",
            ]),
        );
        tokens.insert(
            read_only_token().expose_secret().to_owned(),
            BTreeSet::from(["service:read"]),
        );
        Arc::new(Self { tokens })
    }
}

impl Authorizer for TestAcl {
    fn authorize(&self, token: &SecretToken, op: Op<'_>) -> Result<(), Denied> {
        let acl = op.table().is_some_and(|t| t.as_str().starts_with("acl-"));
        let need = match (&op, acl) {
            (_, true) => "acl:write",
            (Op::Replicate { .. }, false) => "service:read",
            (_, false) => "service:write",
        };
        match self.tokens.get(token.expose_secret()) {
            None => Err(Denied::new("ACL not found")),
            Some(p) if p.contains(need) => Ok(()),
            Some(_) => Err(Denied::new(format!("token lacks {need} for {op}"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Durable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    InProcess,
    Tcp,
}

pub async fn open_store(
    kind: Kind,
    dir: &std::path::Path,
    name: &str,
) -> Result<Arc<dyn Store>, Box<dyn Error>> {
    Ok(match kind {
        Kind::Memory => Arc::new(MemoryStore::new()),
        Kind::Durable => Arc::new(DurableStore::open(dir.join(format!("{name}.redb"))).await?),
    })
}

/// The primary datacenter: a store, the server, and (for TCP) a listener.
pub struct Primary {
    pub store: Arc<dyn Store>,
    pub server: Arc<ReplicationServer>,
    pub net: Net,
    pub listener: Option<ServerHandle>,
    pub addr: Option<SocketAddr>,
    pub in_process: Option<InProcessTransport>,
}

impl Primary {
    pub async fn start(store: Arc<dyn Store>, net: Net) -> Result<Self, Box<dyn Error>> {
        let server = Arc::new(ReplicationServer::new(
            registry(),
            store.clone(),
            TestAcl::new(),
        ));
        let mut p = Self {
            store,
            server: server.clone(),
            net,
            listener: None,
            addr: None,
            in_process: None,
        };
        match net {
            Net::InProcess => p.in_process = Some(InProcessTransport::new(server)),
            Net::Tcp => p.listen(TcpListener::bind("127.0.0.1:0").await?)?,
        }
        Ok(p)
    }

    fn listen(&mut self, l: TcpListener) -> R {
        let h = self
            .server
            .clone()
            .spawn_tcp(l, None, ServeConfig::default())?;
        self.addr = Some(h.local_addr());
        self.listener = Some(h);
        Ok(())
    }

    /// A transport to this primary (a fresh connection pool for TCP).
    pub fn transport(&self) -> Arc<dyn Transport> {
        match (&self.in_process, self.addr) {
            (Some(t), _) => Arc::new(t.clone()),
            (None, Some(addr)) => Arc::new(FramedTransport::with_config(
                TcpConnector::new(addr).with_timeout(Duration::from_secs(2)),
                FramedConfig {
                    request_timeout: Duration::from_secs(5),
                    ..FramedConfig::default()
                },
            )),
            (None, None) => unreachable!("a primary has a transport"),
        }
    }

    /// Makes the primary unreachable: cuts the in-process link or closes the TCP listener and
    /// every connection.
    pub async fn stop(&mut self) {
        if let Some(t) = &self.in_process {
            t.link().cut();
        }
        if let Some(h) = self.listener.take() {
            h.shutdown().await;
        }
    }

    /// Makes the primary reachable again at the same address.
    pub async fn resume(&mut self) -> R {
        if let Some(t) = &self.in_process {
            t.link().restore();
        }
        if let Some(addr) = self.addr {
            self.listen(TcpListener::bind(addr).await?)?;
        }
        Ok(())
    }
}

pub fn config(token: SecretToken) -> ReplicatorConfig {
    let mut c = ReplicatorConfig::new(token);
    c.wait = Duration::from_secs(5);
    c.backoff.initial = Duration::from_millis(20);
    c.backoff.max = Duration::from_millis(200);
    c
}

pub fn value(n: u64) -> Value {
    Value::json(
        serde_json::json!({ "Name": format!("item-{n}"), "Rules": "service_prefix \"\" { policy = \"read\" }", "N": n }),
    )
}

pub fn upserts(table: &str, range: std::ops::Range<u64>, version: u64) -> Vec<TxnOp> {
    range
        .map(|n| TxnOp::Upsert {
            table: t(table),
            id: format!("id-{n:06}"),
            value: value(n * 1000 + version),
            cas: None,
        })
        .collect()
}

pub fn deletes(table: &str, range: std::ops::Range<u64>) -> Vec<TxnOp> {
    range
        .map(|n| TxnOp::Delete {
            table: t(table),
            id: format!("id-{n:06}"),
            cas: None,
        })
        .collect()
}

/// (id, hash) pairs of a table.
pub async fn fingerprint(
    s: &dyn Store,
    table: &str,
) -> Result<Vec<(String, [u8; 32])>, Box<dyn Error>> {
    Ok(s.list(&t(table))
        .await?
        .records
        .into_iter()
        .map(|r| (r.id, r.hash.0))
        .collect())
}

pub async fn assert_converged(primary: &dyn Store, secondary: &dyn Store, table: &str) -> R {
    let p = fingerprint(primary, table).await?;
    let s = fingerprint(secondary, table).await?;
    assert_eq!(p.len(), s.len(), "{table}: record counts differ");
    assert!(p == s, "{table}: contents differ");
    Ok(())
}

/// Waits until the replicator has caught up with the primary's current index of its table.
pub async fn caught_up(h: &ReplicatorHandle, primary: &dyn Store) -> Result<Index, Box<dyn Error>> {
    let target = primary.table_index(h.table());
    Ok(h.wait_for_index(target, Duration::from_secs(60)).await?)
}

/// Waits until the status satisfies `f`.
pub async fn status_until(
    h: &ReplicatorHandle,
    f: impl Fn(&ReplicationStatus) -> bool,
) -> Result<ReplicationStatus, Box<dyn Error>> {
    let mut rx = h.subscribe();
    let s = tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|s| f(s))).await??;
    Ok(s.clone())
}
