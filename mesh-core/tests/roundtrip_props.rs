//! Property: the `Display` form of every `Sni` and `SpiffeId` built from valid names parses back
//! to the same value.

// Tests unwrap on purpose: a failing unwrap is a failing test.
#![allow(clippy::unwrap_used)]

use mesh_core::{
    AgentId, Datacenter, MeshGatewayId, Namespace, NodeName, Partition, ServerId, ServiceId,
    ServiceName, Sni, SpiffeId, Subset, TrustDomain,
};
use proptest::prelude::*;

const LABEL: &str = "[a-z0-9][a-z0-9_-]{0,20}";

fn label<T: std::str::FromStr + std::fmt::Debug>() -> impl Strategy<Value = T>
where
    T::Err: std::fmt::Debug,
{
    LABEL.prop_map(|s| s.parse().unwrap())
}

/// Trust domains with at least one dot: the canonical `<uuid>.consul` and short test forms.
fn trust_domain() -> impl Strategy<Value = TrustDomain> {
    prop_oneof![
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\\.consul",
        "[a-z0-9][a-z0-9-]{0,10}(\\.[a-z0-9][a-z0-9-]{0,10}){1,3}",
    ]
    .prop_map(|s| TrustDomain::new(&s).unwrap())
}

fn partition() -> impl Strategy<Value = Partition> {
    prop_oneof![Just(Partition::default()), label::<Partition>()]
}

fn sni() -> impl Strategy<Value = Sni> {
    prop_oneof![
        (
            proptest::option::of(label::<Subset>()),
            label::<ServiceName>(),
            label::<Namespace>(),
            partition(),
            label::<Datacenter>(),
            trust_domain()
        )
            .prop_map(
                |(subset, service, namespace, partition, datacenter, trust_domain)| {
                    Sni::Service {
                        subset,
                        service,
                        namespace,
                        partition,
                        datacenter,
                        trust_domain,
                    }
                }
            ),
        (partition(), label::<Datacenter>(), trust_domain())
            .prop_map(|(p, dc, td)| Sni::gateway(p, dc, td)),
        (
            label::<ServiceName>(),
            label::<Datacenter>(),
            trust_domain()
        )
            .prop_map(|(q, dc, td)| Sni::query(q, dc, td)),
        (
            proptest::option::of(label::<NodeName>()),
            label::<Datacenter>()
        )
            .prop_map(|(node, dc)| Sni::server(
                node,
                dc,
                TrustDomain::new("consul").unwrap()
            )),
    ]
}

fn spiffe_id() -> impl Strategy<Value = SpiffeId> {
    prop_oneof![
        (
            trust_domain(),
            label::<Datacenter>(),
            label::<ServiceName>(),
            partition(),
            label::<Namespace>()
        )
            .prop_map(|(td, dc, svc, p, ns)| ServiceId::new(td, dc, svc)
                .with_tenancy(p, ns)
                .into()),
        (trust_domain(), label::<Datacenter>(), label::<NodeName>())
            .prop_map(|(td, dc, n)| AgentId::new(td, dc, n).into()),
        (trust_domain(), label::<Datacenter>())
            .prop_map(|(td, dc)| MeshGatewayId::new(td, dc).into()),
        (trust_domain(), label::<Datacenter>()).prop_map(|(td, dc)| ServerId::new(td, dc).into()),
        trust_domain().prop_map(|td| SpiffeId::signing(td).unwrap()),
    ]
}

proptest! {
    #[test]
    fn sni_display_parses_back(s in sni(), other_td in trust_domain()) {
        let dns = TrustDomain::new("consul").unwrap();
        // Server SNIs end in the DNS domain; parse them with some unrelated trust domain.
        let td = s.trust_domain().cloned().unwrap_or(other_td);
        prop_assume!(td != dns);
        let text = s.to_string();
        prop_assert_eq!(Sni::parse(&text, &td, &dns).unwrap(), s.clone());
        // Case does not matter on input.
        prop_assert_eq!(Sni::parse(&text.to_ascii_uppercase(), &td, &dns).unwrap(), s);
    }

    #[test]
    fn spiffe_display_parses_back(id in spiffe_id()) {
        let text = id.to_string();
        prop_assert_eq!(SpiffeId::parse(&text).unwrap(), id.clone());
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
    }
}
