//! Every vector of `testdata/consul/sidecar.json`.

// Tests unwrap on purpose: a failing unwrap is a failing test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Ledger, chain, load, str_of};
use mesh_core::{
    Host, ServiceDefinition, ServiceInstanceId, SidecarPortRange, TokenSecret, Upstream,
    sidecar_default_checks, sidecar_from_service,
};
use serde_json::{Value, json};

/// The sidecar registration in the shape of Consul's `NodeService` JSON: the name is `Service`,
/// `Port` is always present, and it is marked as locally registered.
fn as_node_service(svc: &ServiceDefinition) -> Value {
    let mut v = serde_json::to_value(svc).unwrap();
    let obj = v.as_object_mut().unwrap();
    let name = obj.remove("Name").unwrap();
    obj.insert("Service".into(), name);
    obj.entry("Port").or_insert(json!(0));
    obj.insert("LocallyRegisteredAsSidecar".into(), json!(true));
    v
}

fn host(v: &Value) -> Option<Host> {
    let s = str_of(v);
    (!s.is_empty()).then(|| s.parse().unwrap())
}

#[test]
fn sidecar_vectors() {
    let vectors = load("sidecar.json");
    let mut ledger = Ledger::new("sidecar.json", vectors.len());
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let input = &v["input"];
        match v["kind"].as_str().unwrap() {
            "sidecar_from_service" => {
                let def: ServiceDefinition =
                    serde_json::from_value(input["service_definition"].clone()).unwrap();
                let token = Some(str_of(&input["token"]))
                    .filter(|t| !t.is_empty())
                    .map(TokenSecret::new);
                let res = sidecar_from_service(&def, token.as_ref());
                if let Some(want) = v["expected_error_contains"].as_str() {
                    let err = chain(&res.unwrap_err());
                    assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
                    // The parent's validation refuses the same stanza.
                    assert!(chain(&def.validate().unwrap_err()).contains(want), "{name}");
                } else {
                    def.validate().unwrap();
                    let sc = res.unwrap().unwrap();
                    let exp = &v["expected"];
                    assert_eq!(as_node_service(sc.service()), exp["node_service"], "{name}");
                    let checks = serde_json::to_value(sc.checks()).unwrap();
                    let want_checks = match &exp["checks"] {
                        Value::Null => json!([]),
                        c => c.clone(),
                    };
                    assert_eq!(checks, want_checks, "{name}");
                    let want_token = str_of(&exp["token"]);
                    assert_eq!(
                        sc.token().map_or("", |t| t.expose_secret()),
                        want_token,
                        "{name}"
                    );
                    // The derived registration is a valid connect proxy once it has a port.
                    let mut sc = sc;
                    sc.assign_port(&SidecarPortRange::default(), []).unwrap();
                    sc.service().validate().unwrap();
                }
            }
            "sidecar_port" => {
                let range = SidecarPortRange::new(
                    input["sidecar_min_port"].as_u64().unwrap() as u16,
                    input["sidecar_max_port"].as_u64().unwrap() as u16,
                )
                .unwrap();
                let registered: Vec<(String, u16)> = input["already_registered_ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            str_of(&r["ID"]).to_owned(),
                            r["Port"].as_u64().unwrap() as u16,
                        )
                    })
                    .collect();
                let id = ServiceInstanceId::new(str_of(&input["sidecar_service_id"])).unwrap();
                let port = range
                    .allocate(&id, registered.iter().map(|(i, p)| (i.as_str(), *p)))
                    .unwrap();
                assert_eq!(
                    u64::from(port),
                    v["expected_port"].as_u64().unwrap(),
                    "{name}"
                );
            }
            "sidecar_default_checks" => {
                let id = ServiceInstanceId::new(str_of(&input["sidecar_id"])).unwrap();
                let checks = sidecar_default_checks(
                    &id,
                    host(&input["sidecar_address"]).as_ref(),
                    host(&input["proxy_local_service_address"]).as_ref(),
                    input["port"].as_u64().unwrap() as u16,
                );
                assert_eq!(
                    serde_json::to_value(&checks).unwrap(),
                    v["expected"],
                    "{name}"
                );
            }
            "upstream_validate" => {
                let up: Upstream = serde_json::from_value(input.clone()).unwrap();
                let res = up.validate();
                if v["expected_ok"].as_bool() == Some(true) {
                    res.unwrap();
                } else {
                    assert_eq!(
                        res.unwrap_err().to_string(),
                        v["expected_error"].as_str().unwrap(),
                        "{name}"
                    );
                }
            }
            other => panic!("unknown kind {other} in {name}"),
        }
        ledger.checked(name);
    }
    ledger.finish();
}
