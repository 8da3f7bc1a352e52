//! Parses arbitrary text as JSON ACL rules; accepted rules must render to canonical JSON and
//! HCL that parse back to the same rules, and the canonical JSON must be a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_intentions::acl::{parse_hcl, parse_json, parse_rules};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rules) = parse_json(s) {
        let json = rules.to_json();
        let again = parse_json(&json).expect("canonical JSON must parse");
        assert_eq!(again, rules);
        assert_eq!(again.to_json(), json);
        assert_eq!(
            parse_hcl(&rules.to_hcl()).expect("rendered HCL must parse"),
            rules
        );
        // The auto-detecting entry point agrees (the text starts with '{' or is refused).
        if let Ok(auto) = parse_rules(s) {
            assert_eq!(auto, rules);
        }
    }
});
