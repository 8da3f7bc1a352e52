//! Property: a service registration means the same whatever key casing the client uses:
//! Consul's Go client sends PascalCase, py-consul lower-case keys, and hand-written files use
//! the snake_case aliases (`sidecar_service`, `destination_name`, `local_bind_port`); mixed
//! documents occur too. Registered through the real HTTP API and read back.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod http_common;

use http_common::*;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// How one key is spelled.
#[derive(Debug, Clone, Copy)]
enum Casing {
    Pascal,
    Lower,
    Snake,
}

/// (PascalCase, snake_case) of the keys used here.
const KEYS: &[(&str, &str)] = &[
    ("Name", "name"),
    ("ID", "id"),
    ("Port", "port"),
    ("Tags", "tags"),
    ("Connect", "connect"),
    ("SidecarService", "sidecar_service"),
    ("Proxy", "proxy"),
    ("Upstreams", "upstreams"),
    ("DestinationName", "destination_name"),
    ("Datacenter", "datacenter"),
    ("LocalBindPort", "local_bind_port"),
];

fn spell(key: &str, c: Casing) -> String {
    let (pascal, snake) = KEYS.iter().find(|(p, _)| *p == key).copied().unwrap();
    match c {
        Casing::Pascal => pascal.to_owned(),
        Casing::Lower => pascal.to_ascii_lowercase(),
        Casing::Snake => snake.to_owned(),
    }
}

/// Re-spells every key of a PascalCase document with the casings drawn for it, in order.
fn respell(v: &Value, casings: &mut impl Iterator<Item = Casing>) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let c = casings.next().unwrap_or(Casing::Pascal);
                out.insert(spell(k, c), respell(v, casings));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| respell(x, casings)).collect()),
        other => other.clone(),
    }
}

fn casing() -> impl Strategy<Value = Casing> {
    prop_oneof![
        Just(Casing::Pascal),
        Just(Casing::Lower),
        Just(Casing::Snake)
    ]
}

#[test]
fn a_registration_means_the_same_in_every_casing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = rt.block_on(start());
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let counter = std::sync::atomic::AtomicU32::new(0);
    proptest!(config, |(
        port in 1024u16..60000,
        tags in prop::collection::vec("[a-z]{1,8}", 0..3),
        sidecar in any::<bool>(),
        bind in 9000u16..9999,
        casings in prop::collection::vec(casing(), 16),
    )| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let id = format!("svc-{n}");
        let mut doc = json!({"Name": "web", "ID": id, "Port": port, "Tags": tags});
        if sidecar {
            doc["Connect"] = json!({"SidecarService": {"Proxy": {"Upstreams": [
                {"DestinationName": "socat", "Datacenter": "primary", "LocalBindPort": bind}
            ]}}});
        }
        let body = respell(&doc, &mut casings.into_iter()).to_string();
        rt.block_on(async {
            let r = put(api.addr, "/v1/agent/service/register", MGMT, &body).await;
            prop_assert_eq!(r.status, 200, "{} -> {}", body, r.body);
            let got = get(api.addr, &format!("/v1/agent/service/{id}"), MGMT).await.expect(200).json();
            prop_assert_eq!(&got["Service"], "web");
            prop_assert_eq!(&got["ID"], id.as_str());
            prop_assert_eq!(got["Port"].as_u64(), Some(u64::from(port)));
            prop_assert_eq!(got["Tags"].as_array().map(Vec::len), Some(tags.len()));
            let proxy = get(api.addr, &format!("/v1/agent/service/{id}-sidecar-proxy"), MGMT).await;
            if sidecar {
                let p = proxy.expect(200).json();
                let up = &p["Proxy"]["Upstreams"][0];
                prop_assert_eq!(&up["DestinationName"], "socat", "{}", body);
                prop_assert_eq!(&up["Datacenter"], "primary");
                prop_assert_eq!(up["LocalBindPort"].as_u64(), Some(u64::from(bind)));
            } else {
                prop_assert_eq!(proxy.status, 404);
            }
            Ok(())
        })?;
    });
    let n = counter.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n >= 48, "only {n} cases ran");
}
