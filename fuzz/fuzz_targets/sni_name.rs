//! Parses arbitrary text as a mesh SNI name; an accepted name must render back to its lower-case
//! input and parse to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_core::{Sni, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let td = TrustDomain::new("11111111-2222-3333-4444-555555555555.consul").expect("valid");
    let dns = TrustDomain::new("consul").expect("valid");
    if let Ok(sni) = Sni::parse(s, &td, &dns) {
        let rendered = sni.to_string();
        assert_eq!(rendered, s.to_ascii_lowercase());
        assert_eq!(Sni::parse(&rendered, &td, &dns).expect("rendered SNI must parse"), sni);
    }
});
