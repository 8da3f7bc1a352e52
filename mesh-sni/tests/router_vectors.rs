//! Checks the route table against every `MeshGatewayListenerRouting` vector of Consul's SNI
//! vectors (see docs/consul-compatibility.md, 'Mesh-gateway routing').
//!
//! Consul answers with an Envoy filter chain and cluster; mesh answers with a [`Route`]. The
//! mapping used here:
//! * `forward_to_remote_gateways` → [`RouteKind::RemoteGateway`], whose pool is the gateway
//!   pool of the datacenter named by the filter chain, and whose label is the cluster name;
//! * `local_sni_cluster` → [`RouteKind::LocalService`] with the cluster name as label (the
//!   service is registered from the cluster name, which is its canonical service SNI);
//! * `forward_to_local_server` → [`RouteKind::Exact`]: Consul builds one exact-match chain per
//!   local server node (`<node>.server.<dc>.<domain>`); mesh registers the same names as exact
//!   routes (the `mesh` crate does this from the catalog), so the label is the exact name.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::net::SocketAddr;
use std::sync::Arc;

use mesh_core::{Sni, TrustDomain};
use mesh_sni::{Pool, Route, RouteKind, RouteTable};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/consul/sni.json");
/// The trust domain used when a vector (WAN federation ones) does not name one.
const DEFAULT_TD: &str = "11111111-2222-3333-4444-555555555555.consul";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn strs(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Builds the table a gateway with these inputs would have; remote datacenter `i` gets the
/// pool of port 1000 + i.
fn table_for(inputs: &Value, expected: &Value) -> (RouteTable, Vec<(String, Arc<Pool>)>) {
    let td: TrustDomain = inputs["trust_domain"]
        .as_str()
        .unwrap_or(DEFAULT_TD)
        .parse()
        .unwrap();
    let domain: TrustDomain = inputs["domain"]
        .as_str()
        .unwrap_or("consul")
        .parse()
        .unwrap();
    let dc = str_of(inputs, "gateway_datacenter");
    let mut b = RouteTable::builder(dc.parse().unwrap(), td.clone()).dns_domain(domain.clone());
    let mut remotes = Vec::new();
    for (i, remote) in strs(inputs, "remote_datacenters").into_iter().enumerate() {
        let pool = Arc::new(Pool::new([addr(1000 + i as u16)]));
        b = b.datacenter(remote.parse().unwrap(), pool.clone());
        remotes.push((remote, pool));
    }
    for node in strs(inputs, "local_servers") {
        b = b.exact(
            &format!("{node}.server.{dc}.{domain}"),
            Pool::new([addr(2000)]),
        );
    }
    if str_of(expected, "action") == "local_sni_cluster" {
        let cluster = str_of(expected, "cluster");
        let Ok(Sni::Service {
            subset,
            service,
            namespace,
            ..
        }) = Sni::parse(cluster, &td, &domain)
        else {
            panic!("{cluster} is not a service SNI");
        };
        b = b.local_service(namespace, service, subset, Pool::new([addr(3000)]));
    }
    (b.build().unwrap(), remotes)
}

fn check(v: &Value) {
    let name = str_of(v, "name");
    let inputs = &v["inputs"];
    let expected = &v["expected"];
    let (table, remotes) = table_for(inputs, expected);
    let sni = str_of(inputs, "sni");
    let route: Route = table
        .route(Some(sni))
        .unwrap_or_else(|e| panic!("{name}: refused: {e}"));
    assert_eq!(route.label(), str_of(expected, "cluster"), "{name}");
    let kind = match str_of(expected, "action") {
        "forward_to_remote_gateways" => RouteKind::RemoteGateway,
        "local_sni_cluster" => RouteKind::LocalService,
        "forward_to_local_server" => RouteKind::Exact,
        other => panic!("{name}: unknown action {other}"),
    };
    assert_eq!(route.kind(), kind, "{name}");
    for pattern in strs(expected, "filter_chain_server_names") {
        // The SNI must match the chain's server name (Envoy: `*.` matches any prefix labels).
        match pattern.strip_prefix("*.") {
            Some(suffix) => assert!(sni.ends_with(&format!(".{suffix}")), "{name}"),
            None => assert_eq!(sni, pattern, "{name}"),
        }
        if kind == RouteKind::RemoteGateway {
            // The chain names the remote datacenter; its pool must be the one picked.
            let dc_label = pattern
                .trim_start_matches("*.")
                .trim_start_matches("server.");
            let dc = dc_label.split('.').next().unwrap();
            let (_, pool) = remotes.iter().find(|(r, _)| r == dc).unwrap();
            assert!(Arc::ptr_eq(route.pool(), pool), "{name}: wrong pool");
        }
    }
}

#[test]
fn every_mesh_gateway_listener_routing_vector() {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let vectors: Vec<&Value> = file["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["function"] == "MeshGatewayListenerRouting")
        .collect();
    assert_eq!(vectors.len(), 5, "every routing vector is checked");
    for v in vectors {
        check(v);
    }
}

#[test]
fn a_remote_datacenter_without_pool_is_refused() {
    let table = RouteTable::builder("dc1".parse().unwrap(), DEFAULT_TD.parse().unwrap())
        .build()
        .unwrap();
    let e = table
        .route(Some(&format!("web.default.dc2.internal.{DEFAULT_TD}")))
        .unwrap_err();
    assert!(e.to_string().contains("dc2"), "{e}");
}
