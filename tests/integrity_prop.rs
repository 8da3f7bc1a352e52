//! Property: for random tokens and random transactions of intention writes sent through the
//! replication server, a transaction is applied exactly when every one of its operations
//! would be allowed on its own (no operation is ever authorized by another), and what is
//! enforced afterwards changes only for destinations the token may write.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::BTreeMap;

use mesh::intentions::acl::DefaultPolicy;
use mesh::replication_engine::{ApplyRequest, SecretToken, TableName, TxnOp, Value};
use mesh::{Datacenter, DatacenterConfig, TokenSpec};
use proptest::prelude::*;
use serde_json::json;

const MGMT: &str = "11111111-aaaa-4bbb-8ccc-00000000000a";
/// Services the tokens get rights on.
const SERVICES: [&str; 3] = ["a", "b", "c"];
/// Names the intentions use: the services, one nobody has rights on, and the wildcard.
const NAMES: [&str; 5] = ["a", "b", "c", "x", "*"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    None,
    Read,
    Write,
}

#[derive(Debug, Clone)]
struct TokenRights {
    per_service: [Level; 3],
    /// `service_prefix "" { intentions = "write" }`: write on every name, `*` included.
    all: bool,
}

impl TokenRights {
    fn rules(&self) -> String {
        let mut out = String::new();
        for (svc, level) in SERVICES.iter().zip(self.per_service) {
            let ixn = match level {
                Level::None => continue,
                Level::Read => "read",
                Level::Write => "write",
            };
            out.push_str(&format!(
                "service \"{svc}\" {{ policy = \"read\" intentions = \"{ixn}\" }}\n"
            ));
        }
        if self.all {
            out.push_str("service_prefix \"\" { policy = \"read\" intentions = \"write\" }\n");
        }
        if out.is_empty() {
            out.push_str("operator = \"read\"\n");
        }
        out
    }

    /// The oracle: may this token write intentions for `destination`? An exact rule beats
    /// the prefix rule; `*` needs every intention rule to grant write.
    fn may_write(&self, destination: &str) -> bool {
        if destination == "*" {
            return self.all && !self.per_service.contains(&Level::Read);
        }
        match SERVICES.iter().position(|s| *s == destination) {
            Some(i) if self.per_service[i] != Level::None => self.per_service[i] == Level::Write,
            _ => self.all,
        }
    }
}

#[derive(Debug, Clone)]
struct Write {
    source: &'static str,
    destination: &'static str,
    /// Store under another destination's id (a mismatched record).
    id_destination: &'static str,
    action: Option<&'static str>,
}

impl Write {
    fn op(&self) -> TxnOp {
        let table: TableName = "intentions".parse().unwrap();
        let id = format!("{}/{}", self.id_destination, self.source);
        match self.action {
            None => TxnOp::Delete {
                table,
                id,
                cas: None,
            },
            Some(action) => TxnOp::Upsert {
                table,
                id,
                value: Value::json(json!({"SourceName": self.source,
                    "DestinationName": self.destination, "Action": action,
                    "SourceType": "consul"})),
                cas: None,
            },
        }
    }

    /// The oracle's verdict on this operation alone.
    fn allowed_alone(&self, rights: &TokenRights) -> bool {
        let consistent = self.action.is_none() || self.id_destination == self.destination;
        let valid = self.action.is_none_or(|a| a == "allow" || a == "deny");
        consistent && valid && rights.may_write(self.id_destination)
    }
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![Just(Level::None), Just(Level::Read), Just(Level::Write)]
}

fn rights() -> impl Strategy<Value = TokenRights> {
    ([level(), level(), level()], prop::bool::weighted(0.1))
        .prop_map(|(per_service, all)| TokenRights { per_service, all })
}

fn name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(NAMES.to_vec())
}

fn write() -> impl Strategy<Value = Write> {
    (
        name(),
        name(),
        prop::bool::weighted(0.15),
        name(),
        prop::sample::select(vec![Some("allow"), Some("deny"), Some("maybe"), None]),
    )
        .prop_map(|(source, destination, mismatch, other, action)| Write {
            source,
            destination,
            id_destination: if mismatch { other } else { destination },
            action,
        })
}

fn decisions(dc: &Datacenter) -> BTreeMap<(&'static str, &'static str), bool> {
    let td = dc.trust_domain().unwrap();
    let mut out = BTreeMap::new();
    for src in ["a", "b", "c", "x", "y"] {
        for dst in ["a", "b", "c", "x", "y"] {
            let id = format!("spiffe://{td}/ns/default/dc/primary/svc/{src}")
                .parse()
                .unwrap();
            out.insert(
                (src, dst),
                dc.intentions()
                    .authorize(&id, &dst.parse().unwrap())
                    .authorized,
            );
        }
    }
    out
}

#[test]
fn no_operation_is_authorized_by_another_and_enforcement_stays_within_rights() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dc = rt.block_on(async {
        let mut c = DatacenterConfig::new("primary".parse().unwrap(), "primary".parse().unwrap());
        c.acl.enabled = true;
        c.acl.default_policy = DefaultPolicy::Deny;
        c.acl.tokens.initial_management = Some(MGMT.into());
        Datacenter::start_primary(c).await.unwrap()
    });
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(rights in rights(), writes in prop::collection::vec(write(), 1..4))| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(async {
            let name = format!("p{n}");
            dc.acl().policy_create(&MGMT.into(), &name, "", &rights.rules()).await.unwrap();
            let secret = dc
                .acl().token_create(&MGMT.into(), TokenSpec { policy_names: vec![name], ..TokenSpec::default() })
                .await
                .unwrap()
                .secret_id;
            dc.refresh_views().await.unwrap();
            let before = decisions(&dc);
            let stored_before = dc.intentions().list(&MGMT.into()).await.unwrap();
            let result = dc
                .replication_server()
                .apply(ApplyRequest {
                    token: SecretToken::new(secret),
                    ops: writes.iter().map(Write::op).collect(),
                })
                .await;
            dc.refresh_views().await.unwrap();
            let expected = writes.iter().all(|w| w.allowed_alone(&rights));
            prop_assert_eq!(result.is_ok(), expected, "writes {:?} rights {:?}: {:?}", writes, rights, result);
            if result.is_err() {
                prop_assert_eq!(dc.intentions().list(&MGMT.into()).await.unwrap(), stored_before, "a refused transaction wrote nothing");
            }
            for (pair, allowed) in decisions(&dc) {
                if before[&pair] != allowed {
                    prop_assert!(rights.may_write(pair.1),
                        "decision {:?} changed to {} without write on {}", pair, allowed, pair.1);
                }
            }
            Ok(())
        })?;
    });
    let ran = counter.load(std::sync::atomic::Ordering::Relaxed);
    assert!(ran >= 64, "only {ran} cases ran");
}
