//! Applies random transactions through a primary's replication server with tokens of fixed
//! rights, and checks that intention decisions only ever change for destinations the token
//! may write intentions for, and that a refused transaction changes nothing.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mesh::intentions::acl::DefaultPolicy;
use mesh::replication_engine::{ApplyRequest, SecretToken, TableName, TxnOp, Value};
use mesh::{Datacenter, DatacenterConfig, TokenSpec};

const MGMT: &str = "11111111-aaaa-4bbb-8ccc-00000000000f";
const NAMES: [&str; 5] = ["a", "b", "c", "x", "*"];
const TABLES: [&str; 4] = ["intentions", "config-entries", "acl-policies", "federation"];

/// (rules, destinations the token may write intentions for; `*` means every one).
const TOKENS: [(&str, &[&str]); 4] = [
    (r#"service "a" { policy = "write" intentions = "write" }"#, &["a"]),
    (r#"service "b" { policy = "read" intentions = "read" }"#, &[]),
    (
        r#"service_prefix "" { policy = "read" intentions = "write" }
           service "c" { policy = "read" intentions = "read" }"#,
        &["a", "b", "x", "y"],
    ),
    (r#"operator = "write""#, &[]),
];

struct World {
    rt: tokio::runtime::Runtime,
    dc: Datacenter,
    secrets: Vec<String>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (dc, secrets) = rt.block_on(async {
            let mut c = DatacenterConfig::new(
                "primary".parse().expect("name"),
                "primary".parse().expect("name"),
            );
            c.acl.enabled = true;
            c.acl.default_policy = DefaultPolicy::Deny;
            c.acl.tokens.initial_management = Some(MGMT.into());
            let dc = Datacenter::start_primary(c).await.expect("primary starts");
            let mut secrets = Vec::new();
            for (i, (rules, _)) in TOKENS.iter().enumerate() {
                let name = format!("t{i}");
                dc.acl().policy_create(&MGMT.into(), &name, "", rules).await.expect("policy");
                let t = dc
                    .acl().token_create(
                        &MGMT.into(),
                        TokenSpec {
                            policy_names: vec![name],
                            ..TokenSpec::default()
                        },
                    )
                    .await
                    .expect("token");
                secrets.push(t.secret_id);
            }
            (dc, secrets)
        });
        World { rt, dc, secrets }
    })
}

fn decisions(dc: &Datacenter) -> BTreeMap<(&'static str, &'static str), bool> {
    let td = dc.trust_domain().expect("Connect is on");
    let mut out = BTreeMap::new();
    for src in ["a", "b", "c", "x", "y"] {
        for dst in ["a", "b", "c", "x", "y"] {
            let id = format!("spiffe://{td}/ns/default/dc/primary/svc/{src}")
                .parse()
                .expect("valid SPIFFE ID");
            let target = dst.parse().expect("valid name");
            out.insert((src, dst), dc.intentions().authorize(&id, &target).authorized);
        }
    }
    out
}

/// Turns bytes into operations: each takes 4 bytes (table, source, destination, flags) and
/// the last one may carry the rest of the input as raw JSON.
fn ops(data: &[u8]) -> Vec<TxnOp> {
    let mut out = Vec::new();
    let mut chunks = data.chunks(4);
    while let Some(&[t, s, d, f]) = chunks.next() {
        let table: TableName = TABLES[t as usize % TABLES.len()].parse().expect("table");
        let (src, dst) = (NAMES[s as usize % 5], NAMES[d as usize % 5]);
        let id_dst = if f & 0x10 != 0 { NAMES[(f >> 5) as usize % 5] } else { dst };
        let id = match table.as_str() {
            "intentions" => format!("{id_dst}/{src}"),
            "config-entries" => format!("service-defaults/{id_dst}"),
            "federation" => format!("primary/{id_dst}/gw"),
            _ => src.to_owned(),
        };
        let action = ["allow", "deny", "maybe", ""][(f & 3) as usize];
        let value = match table.as_str() {
            "intentions" => serde_json::json!({"SourceName": src, "DestinationName": dst,
                "Action": action, "SourceType": "consul"}),
            "config-entries" => serde_json::json!({"Kind": "service-defaults", "Name": dst}),
            _ => serde_json::json!({"ID": src, "Name": dst, "Rules": "operator = \"write\""}),
        };
        if f & 0x4 != 0 {
            out.push(TxnOp::Delete { table, id, cas: None });
        } else {
            out.push(TxnOp::Upsert {
                table,
                id,
                value: Value::json(value),
                cas: None,
            });
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&who, rest)) = data.split_first() else {
        return;
    };
    let w = world();
    let who = who as usize % TOKENS.len();
    let may_write = TOKENS[who].1;
    let ops = ops(rest);
    if ops.is_empty() {
        return;
    }
    w.rt.block_on(async {
        w.dc.refresh_views().await.expect("views rebuild");
        let before = decisions(&w.dc);
        let stored = w.dc.intentions().list(&MGMT.into()).await.expect("list");
        let result = w
            .dc
            .replication_server()
            .apply(ApplyRequest {
                token: SecretToken::new(w.secrets[who].clone()),
                ops,
            })
            .await;
        w.dc.refresh_views().await.expect("views rebuild");
        if result.is_err() {
            assert_eq!(w.dc.intentions().list(&MGMT.into()).await.expect("list"), stored);
        }
        for (pair, allowed) in decisions(&w.dc) {
            if before[&pair] != allowed {
                assert!(
                    may_write.contains(&pair.1),
                    "token {who} changed {pair:?} to {allowed}"
                );
            }
        }
    });
});
