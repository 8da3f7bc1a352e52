//! Every vector of `testdata/consul/sni.json` that belongs to mesh-core.

// Tests unwrap on purpose: a failing unwrap is a failing test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Ledger, load, str_of};
use mesh_core::DEFAULT_DNS_DOMAIN;
use mesh_core::Upstream;
use mesh_core::{Datacenter, Namespace, Partition, ServiceName, Sni, Subset, TrustDomain};
use serde_json::Value;

fn opt_name<T: std::str::FromStr>(v: &Value) -> Option<T>
where
    T::Err: std::fmt::Debug,
{
    let s = str_of(v);
    (!s.is_empty()).then(|| s.parse().unwrap())
}

fn service_sni(
    service: &Value,
    subset: &Value,
    ns: &Value,
    part: &Value,
    dc: &Value,
    td: &TrustDomain,
) -> Sni {
    Sni::Service {
        subset: opt_name::<Subset>(subset),
        service: str_of(service).parse::<ServiceName>().unwrap(),
        namespace: opt_name::<Namespace>(ns).unwrap_or_default(),
        partition: opt_name::<Partition>(part).unwrap_or_default(),
        datacenter: str_of(dc).parse::<Datacenter>().unwrap(),
        trust_domain: td.clone(),
    }
}

#[test]
fn sni_vectors() {
    let vectors = load("sni.json");
    let mut ledger = Ledger::new("sni.json", vectors.len());
    let dns = TrustDomain::new(DEFAULT_DNS_DOMAIN).unwrap();
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let func = v["function"].as_str().unwrap();
        let inp = &v["inputs"];
        let td = || TrustDomain::new(str_of(&inp["trust_domain"])).unwrap();
        let built = match func {
            "UpstreamSNI" => {
                let up: Upstream = serde_json::from_value(inp["upstream"].clone()).unwrap();
                let subset = opt_name::<Subset>(&inp["subset"]);
                let dc: Datacenter = str_of(&inp["dc"]).parse().unwrap();
                up.sni(subset.as_ref(), &dc, &td()).unwrap()
            }
            "GatewaySNI" => Sni::gateway(
                opt_name::<Partition>(&inp["partition"]).unwrap_or_default(),
                str_of(&inp["dc"]).parse().unwrap(),
                td(),
            ),
            "ServiceSNI" => service_sni(
                &inp["service"],
                &inp["subset"],
                &inp["namespace"],
                &inp["partition"],
                &inp["datacenter"],
                &td(),
            ),
            "TargetSNI" => {
                let t = &inp["target"];
                service_sni(
                    &t["service"],
                    &t["service_subset"],
                    &t["namespace"],
                    &t["partition"],
                    &t["datacenter"],
                    &td(),
                )
            }
            "PeeredServiceSNI" => {
                ledger.skipped(
                    name,
                    "mesh has no cluster peering, so it builds no peered (external) SNI",
                );
                continue;
            }
            "PeeringServerSAN" => {
                ledger.skipped(
                    name,
                    "mesh has no cluster peering, so servers carry no peering SAN",
                );
                continue;
            }
            "MeshGatewayListenerRouting" => {
                ledger.skipped(
                    name,
                    "gateway listener routing is owned by the mesh-sni router tests",
                );
                continue;
            }
            f if f.starts_with("ServerSNI") => Sni::server_for(
                str_of(&inp["dc"]).parse().unwrap(),
                str_of(&inp["node_name"]),
                str_of(&inp["domain"]),
            )
            .unwrap(),
            "TrustDomainForTarget" => {
                let t = &inp["target"];
                assert!(!t["external"].as_bool().unwrap());
                let part = opt_name::<Partition>(&t["partition"]).unwrap_or_default();
                let got = mesh_core::trust_domain_for_target(
                    str_of(&t["sni"]),
                    &part,
                    !str_of(&t["service_subset"]).is_empty(),
                )
                .unwrap();
                assert_eq!(got.as_str(), v["expected"].as_str().unwrap(), "{name}");
                ledger.checked(name);
                continue;
            }
            other => panic!("unknown function {other} in {name}"),
        };
        let expected = v["expected"].as_str().unwrap();
        assert_eq!(built.to_string(), expected, "{name}");
        // The rendered name must parse back to the same value.
        let parse_td = built.trust_domain().cloned().unwrap_or_else(|| dns.clone());
        let parse_dns = match &built {
            Sni::Server { domain, .. } => domain.clone(),
            _ => dns.clone(),
        };
        assert_eq!(
            Sni::parse(expected, &parse_td, &parse_dns).unwrap(),
            built,
            "{name}: parse back"
        );
        ledger.checked(name);
    }
    ledger.finish();
}
