//! The service-registration parser on damaged input: it never panics, and whatever it accepts
//! (and validates) serialises to JSON that parses back to the same value. The fuzz target
//! `service_registration` checks the same property on arbitrary bytes.

// Tests unwrap on purpose: a failing unwrap is a failing test.
#![allow(clippy::unwrap_used)]

use mesh_core::{ServiceDefinition, sidecar_from_service};
use proptest::prelude::*;

const SEEDS: &[&str] = &[
    r#"{"service": {"name": "socat", "port": 8181, "token": "<token here>", "connect": {"sidecar_service": {} }}}"#,
    r#"{"service": {"name": "web", "port": 8080, "token": "<token here>", "connect": {"sidecar_service": {"proxy": {"upstreams": [{"destination_name": "socat", "datacenter": "primary", "local_bind_port": 8181}]}}}}}"#,
    r#"{"ID":"web1","Name":"web","Port":1111,"Tags":["baz"],"Meta":{"foo":"baz"},"Connect":{"SidecarService":{"Name":"motorbike1","Port":3333,"Address":"127.127.127.127","Check":{"ScriptArgs":["sleep","1"],"Interval":"999s"},"Token":"custom-token","EnableTagOverride":true,"Proxy":{"LocalServiceAddress":"127.0.127.0","LocalServicePort":9999,"Config":{"baz":"qux","n":1.5e-7},"Upstreams":[{"DestinationName":"db","LocalBindPort":9191,"Config":{"connect_timeout_ms":1000}},{"DestinationType":"prepared_query","DestinationName":"geo-cache","LocalBindPort":8181,"LocalBindAddress":"127.10.10.10"},{"DestinationName":"upstream_socket","LocalBindSocketPath":"/tmp/upstream.sock","LocalBindSocketMode":"0700","MeshGateway":{"Mode":"remote"}}]}}}}"#,
    r#"{"Kind":"mesh-gateway","Name":"gateway-primary","Address":"10.0.0.1","Port":8443,"TaggedAddresses":{"lan":{"Address":"10.0.0.1","Port":8443},"wan":{"Address":"gw.example.com","Port":443}},"Meta":{"consul-wan-federation":"1"},"Checks":[{"Name":"x","TTL":"30s"}],"Weights":{"Passing":3,"Warning":1},"Locality":{"Region":"r"}}"#,
];

/// The property every accepted input must have.
fn check(input: &str) {
    let Ok(def) = ServiceDefinition::from_json(input) else {
        return;
    };
    let _ = sidecar_from_service(&def, None);
    if def.validate().is_err() {
        return;
    }
    let json = def.to_json();
    let again = ServiceDefinition::from_json(&json)
        .unwrap_or_else(|e| panic!("re-serialised registration must parse: {e:?}\n{json}"));
    assert_eq!(again, def, "{json}");
    again.validate().unwrap();
}

#[test]
fn seeds_are_valid_and_round_trip() {
    for s in SEEDS {
        let def = ServiceDefinition::from_json(s).unwrap();
        def.validate().unwrap();
        check(s);
    }
}

#[test]
fn every_prefix_and_every_deletion() {
    for s in SEEDS {
        for i in 0..s.len() {
            if s.is_char_boundary(i) {
                check(&s[..i]);
                let mut t = s.to_string();
                t.remove(i);
                check(&t);
            }
        }
    }
}

proptest! {
    #[test]
    fn mutated_seeds(seed in 0..SEEDS.len(), edits in proptest::collection::vec((any::<prop::sample::Index>(), "[\\[\\]{}\":,0-9a-zA-Z_. -]{0,4}"), 1..4)) {
        let mut s = SEEDS[seed].to_string();
        for (at, insert) in edits {
            let mut i = at.index(s.len() + 1);
            while !s.is_char_boundary(i) { i -= 1; }
            s.insert_str(i, &insert);
        }
        check(&s);
    }

    #[test]
    fn arbitrary_text(s in "\\PC{0,200}") {
        check(&s);
    }
}
