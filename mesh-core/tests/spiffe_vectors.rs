//! Every vector of `testdata/consul/spiffe.json` that belongs to mesh-core.

// Tests unwrap on purpose: a failing unwrap is a failing test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Ledger, load, str_of};
use mesh_core::{AgentId, MeshGatewayId, ServerId, ServiceId, SpiffeId, TrustDomain};
use serde_json::Value;

/// Builds the ID a vector describes by its fields.
fn id_from_fields(f: &Value) -> SpiffeId {
    let host = || TrustDomain::new(str_of(&f["host"])).unwrap();
    let dc = || str_of(&f["datacenter"]).parse().unwrap();
    match str_of(&f["type"]) {
        "signing" => SpiffeId::signing(
            TrustDomain::new(&format!(
                "{}.{}",
                str_of(&f["cluster_id"]),
                str_of(&f["domain"])
            ))
            .unwrap(),
        )
        .unwrap(),
        "service" => {
            let mut id = ServiceId::new(host(), dc(), str_of(&f["service"]).parse().unwrap());
            if let Some(ns) = f["namespace"].as_str() {
                id = id.with_tenancy(Default::default(), ns.parse().unwrap());
            }
            id.into()
        }
        "agent" => AgentId::new(host(), dc(), str_of(&f["agent"]).parse().unwrap()).into(),
        "mesh_gateway" => MeshGatewayId::new(host(), dc()).into(),
        "server" => ServerId::new(host(), dc()).into(),
        other => panic!("unknown type {other}"),
    }
}

fn check_fields(name: &str, id: &SpiffeId, exp: &Value) {
    match (str_of(&exp["type"]), id) {
        ("service", SpiffeId::Service(s)) => {
            assert_eq!(s.trust_domain().as_str(), str_of(&exp["host"]), "{name}");
            assert_eq!(s.partition().as_str(), str_of(&exp["partition"]), "{name}");
            assert_eq!(s.namespace().as_str(), str_of(&exp["namespace"]), "{name}");
            assert_eq!(
                s.datacenter().as_str(),
                str_of(&exp["datacenter"]),
                "{name}"
            );
            assert_eq!(s.service().as_str(), str_of(&exp["service"]), "{name}");
        }
        ("agent", SpiffeId::Agent(a)) => {
            assert_eq!(a.trust_domain().as_str(), str_of(&exp["host"]), "{name}");
            assert_eq!(a.partition().as_str(), str_of(&exp["partition"]), "{name}");
            assert_eq!(
                a.datacenter().as_str(),
                str_of(&exp["datacenter"]),
                "{name}"
            );
            assert_eq!(a.agent().as_str(), str_of(&exp["agent"]), "{name}");
        }
        ("signing", SpiffeId::Signing(td)) => {
            assert_eq!(td.cluster_id(), str_of(&exp["cluster_id"]), "{name}");
            assert_eq!(td.domain(), Some(str_of(&exp["domain"])), "{name}");
        }
        (t, other) => panic!("{name}: expected {t}, got {other:?}"),
    }
}

#[test]
fn spiffe_vectors() {
    let vectors = load("spiffe.json");
    let mut ledger = Ledger::new("spiffe.json", vectors.len());
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        match v["kind"].as_str().unwrap() {
            "parse" => {
                let input = v["input"].as_str().unwrap();
                let res = SpiffeId::parse(input);
                if let Some(want) = v["expected_error_contains"].as_str() {
                    let err = res.unwrap_err().to_string();
                    assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
                } else {
                    let id = res.unwrap();
                    check_fields(name, &id, &v["expected"]);
                    assert_eq!(SpiffeId::parse(&id.to_string()).unwrap(), id, "{name}");
                }
            }
            "render" => {
                let id = id_from_fields(&v["input"]);
                assert_eq!(id.to_string(), v["expected"].as_str().unwrap(), "{name}");
            }
            "can_sign" => {
                let signing = id_from_fields(&{
                    let mut s = v["signing_id"].clone();
                    s["type"] = "signing".into();
                    s
                });
                // Consul's `nil` input: there is no ID to sign, so nothing may be signed.
                let other = (!v["input"].is_null()).then(|| id_from_fields(&v["input"]));
                let got = other.as_ref().is_some_and(|o| signing.can_sign(o));
                assert_eq!(got, v["expected"].as_bool().unwrap(), "{name}");
            }
            "ca_common_name" => {
                ledger.skipped(
                    name,
                    "CA common names are built by mesh-ca, whose tests own this vector",
                );
                continue;
            }
            other => panic!("unknown kind {other} in {name}"),
        }
        ledger.checked(name);
    }
    ledger.finish();
}
