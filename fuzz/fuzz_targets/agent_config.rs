//! `AgentConfig::from_str` on arbitrary UTF-8, as HCL and as JSON: an answer, never a panic.
//! Properties checked on the way: every error displays; an accepted configuration converts to
//! a `DatacenterConfig` and its service definitions parse as `Catalog::register_json` parses them;
//! and a JSON document (without `null` or services, which the two paths pass on differently)
//! means exactly the same when read as HCL, as HCL 1 reads JSON.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mesh_agent::config::{AgentConfig, ConfigError, Format};

fn outcome(r: &Result<AgentConfig, ConfigError>) -> String {
    match r {
        Ok(c) => format!("{c:?}"),
        Err(e) => e.to_string(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Path::new("fuzz");
    let as_hcl = AgentConfig::from_str(text, Format::Hcl, origin);
    let as_json = AgentConfig::from_str(text, Format::Json, origin);
    for r in [&as_hcl, &as_json] {
        match r {
            Ok(c) => {
                assert!(c.datacenter_config().is_ok());
                for s in &c.services {
                    assert!(mesh::core::ServiceDefinition::from_json(&s.json).is_ok());
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let json_parsed = !matches!(
        as_json,
        Err(ConfigError::Syntax { .. } | ConfigError::TooDeep { .. })
    );
    let lower = text.to_ascii_lowercase();
    if json_parsed && !lower.contains("null") && !lower.contains("service") {
        assert_eq!(outcome(&as_hcl), outcome(&as_json), "{text:?}");
    }
});
