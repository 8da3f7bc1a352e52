//! Parses arbitrary bytes as a service registration (bare or `{"service": ...}` JSON) and runs
//! validation and the sidecar derivation; nothing may panic. A registration that is accepted
//! and valid must serialise to JSON that parses back to the same value and stays valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_core::{ServiceDefinition, sidecar_from_service};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(def) = ServiceDefinition::from_json(s) else {
        return;
    };
    let _ = sidecar_from_service(&def, None);
    if def.validate().is_err() {
        return;
    }
    let json = def.to_json();
    let again = ServiceDefinition::from_json(&json).expect("re-serialised registration must parse");
    assert_eq!(again, def);
    again
        .validate()
        .expect("re-parsed registration must stay valid");
});
