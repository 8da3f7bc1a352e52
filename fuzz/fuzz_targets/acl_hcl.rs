//! Parses arbitrary text as HCL ACL rules; accepted rules must render to canonical JSON and
//! HCL that parse back to the same rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_intentions::acl::{parse_hcl, parse_json, parse_rules};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rules) = parse_hcl(s) {
        let json = rules.to_json();
        assert_eq!(parse_json(&json).expect("canonical JSON must parse"), rules);
        assert_eq!(
            parse_hcl(&rules.to_hcl()).expect("rendered HCL must parse"),
            rules
        );
        if !s.trim_start().starts_with('{') {
            assert_eq!(parse_rules(s).expect("same parser"), rules);
        }
    }
});
