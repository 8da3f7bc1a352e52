//! What a data-plane process reads from an agent's answers, on arbitrary bytes: the routing
//! view, a roots list and a signed leaf's PEM. An answer or a typed error, never a panic; a
//! routing view that decodes re-encodes to the same value and answers every path question.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh::ca::{IssuedLeaf, RootsView};
use mesh::core::{MeshGatewayMode, UpstreamPath};
use mesh::dataplane::Routing;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<Routing>(data) {
        let again = serde_json::to_vec(&r).expect("a decoded view encodes");
        let back: Routing = serde_json::from_slice(&again).expect("and decodes again");
        assert_eq!(back, r);
        let web = "web".parse().expect("a valid name");
        for (svc, _) in r.endpoints.iter().take(4) {
            let _ = r.mode(&web, svc, MeshGatewayMode::Default);
            for path in [
                UpstreamPath::Direct { datacenter: r.datacenter.clone() },
                UpstreamPath::LocalGateways { datacenter: r.datacenter.clone() },
                UpstreamPath::RemoteGateways { datacenter: r.datacenter.clone() },
            ] {
                let _ = r.endpoints(&path, svc);
            }
        }
        let _ = r.intention_default();
    }
    if let Ok(v) = serde_json::from_slice::<RootsView>(data) {
        let _ = v.trust_domain();
        let _ = v.active_root();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = IssuedLeaf::from_pem(text, String::new()) {
            let _ = e.to_string();
        }
    }
});
