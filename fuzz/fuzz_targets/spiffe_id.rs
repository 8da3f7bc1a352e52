//! Parses arbitrary text as a SPIFFE ID; an accepted ID must render back to a string that parses
//! to the same ID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_core::SpiffeId;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeId::parse(s) {
        let rendered = id.to_string();
        let again = SpiffeId::parse(&rendered).expect("rendered ID must parse");
        assert_eq!(again, id);
    }
});
