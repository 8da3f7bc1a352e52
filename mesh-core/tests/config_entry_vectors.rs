//! Every vector of `testdata/consul/config_entry.json` about proxy-defaults, service-defaults
//! and mesh-gateway resolution.

// Tests unwrap on purpose: a failing unwrap is a failing test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Ledger, chain, load, str_of};
use mesh_core::{ConfigEntry, ProxyDefaults, ServiceDefaults, resolve_mesh_gateway};
use mesh_core::{MeshGatewayMode, ServiceName};
use mesh_core::{chain_target_mode, merge_proxy_mode, merge_upstream_mode};
use serde_json::Value;

fn mode(v: &Value) -> MeshGatewayMode {
    str_of(v).parse().unwrap()
}

/// Vectors mesh deliberately does not follow, with the reason.
const DELIBERATE: &[(&str, &str)] = &[(
    "derived: service-defaults MeshGateway.Mode is NOT validated by the config entry (any string is stored)",
    "mesh refuses an unknown MeshGateway.Mode (docs/consul-compatibility.md, 'Unknown \
     mesh-gateway modes are refused'): Consul stores it and then silently routes without a gateway",
)];

#[test]
fn config_entry_vectors() {
    let vectors = load("config_entry.json");
    let mut ledger = Ledger::new("config_entry.json", vectors.len());
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let input = &v["input"];
        let exp = &v["expected"];
        match v["kind"].as_str().unwrap() {
            "resolve_service_config_mesh_gateway" => {
                let req = &input["request"];
                let pd: Option<ProxyDefaults> = match &input["proxy_defaults"] {
                    Value::Null => None,
                    p => Some(serde_json::from_value(p.clone()).unwrap()),
                };
                let sd: Option<ServiceDefaults> = match &input["service_defaults_of_requesting_service"]
                {
                    Value::Null => None,
                    s => {
                        let mut s = s.clone();
                        s["Name"] = req["Name"].clone();
                        Some(serde_json::from_value(s).unwrap())
                    }
                };
                let upstreams: Vec<ServiceName> = req["UpstreamServiceNames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| str_of(u).parse().unwrap())
                    .collect();
                let r = resolve_mesh_gateway(
                    pd.as_ref(),
                    sd.as_ref(),
                    mode(&req["MeshGateway"]["Mode"]),
                    &upstreams,
                );
                assert_eq!(
                    r.top_level,
                    mode(&exp["top_level_mesh_gateway_mode"]),
                    "{name}"
                );
                assert_eq!(
                    r.wildcard,
                    mode(&exp["wildcard_upstream_mesh_gateway_mode"]),
                    "{name}"
                );
                let u1: ServiceName = "upstream1".parse().unwrap();
                assert_eq!(
                    r.upstreams[&u1],
                    mode(&exp["upstream1_mesh_gateway_mode"]),
                    "{name}"
                );
            }
            "merge_service_config_mesh_gateway" => {
                let resolved =
                    mode(&input["resolved_upstream_config_for_zap"]["mesh_gateway"]["Mode"]);
                let proxy = mode(&input["proxy_mesh_gateway_mode"]);
                let local = mode(&input["local_upstream_zap_mesh_gateway_mode"]);
                assert_eq!(
                    merge_upstream_mode(resolved, local),
                    mode(&exp["final_upstream_zap_mesh_gateway_mode"]),
                    "{name}"
                );
                assert_eq!(
                    merge_proxy_mode(MeshGatewayMode::Default, proxy),
                    mode(&exp["final_proxy_mesh_gateway_mode"]),
                    "{name}"
                );
            }
            "discovery_chain_target_mesh_gateway" => {
                let got = chain_target_mode(
                    mode(&input["target_service_defaults_mode"]),
                    mode(&input["proxy_defaults_mode"]),
                    mode(&input["override_mesh_gateway_mode"]),
                    input["target_external"].as_bool().unwrap_or(false),
                );
                assert_eq!(got, mode(&exp["target_mesh_gateway_mode"]), "{name}");
            }
            "validation"
                if name.starts_with("service-intentions:")
                    || name.starts_with("legacy intention:") =>
            {
                ledger.skipped(
                    name,
                    "intention validation belongs to mesh-intentions, whose tests own it",
                );
                continue;
            }
            "validation" => {
                let res = ConfigEntry::from_json_validated(&input.to_string());
                if let Some((_, reason)) = DELIBERATE.iter().find(|(n, _)| *n == name) {
                    let err = chain(&res.unwrap_err());
                    assert!(err.contains("MeshGateway.Mode \"bogus\""), "{name}: {err}");
                    ledger.skipped(name, reason);
                    continue;
                }
                if let Some(want) = v["expected_error_contains"].as_str() {
                    let err = chain(&res.unwrap_err());
                    assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
                } else {
                    assert_eq!(v["expected_ok"].as_bool(), Some(true), "{name}");
                    let entry = res.unwrap();
                    if let Some(norm) = v.get("expected_normalized") {
                        let got: Value = serde_json::from_str(&entry.to_json()).unwrap();
                        assert_eq!(&got, norm, "{name}");
                    }
                }
            }
            other => panic!("unknown kind {other} in {name}"),
        }
        ledger.checked(name);
    }
    ledger.finish();
}
