//! Every vector of `acl_policy_parse.json`, `acl_policy_merge.json` and `acl_authz.json`.
//!
//! Deliberate differences from Consul are listed by vector name in `DIFFERENCES` with the
//! reason; each such vector is still checked, against mesh's documented behaviour.

// Tests unwrap on purpose: a failing unwrap is a failing test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use mesh_intentions::acl::{
    Access, AccessLevel, Authorizer, AuthorizerContext, Effect, Family, Grant, MatchKind,
    PolicyAuthorizer, Resource, RootAuthorizer, Rules, SingleRule, enforce, merge_rules,
    takes_precedence_over,
};
use mesh_intentions::intention::{Intention, can_read, can_write};
use serde_json::Value;

/// Vectors where mesh deliberately differs, with the reason (see docs/consul-compatibility.md,
/// 'Case-insensitive access levels').
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "derived: policy values are case-insensitive ('WRITE' accepted, stored verbatim)",
        "mesh accepts any case but stores the level lower case (\"write\"), so WRITE means write everywhere",
    ),
    (
        "derived: comparison is case-sensitive ('WRITE' loses to 'read')",
        "mesh levels are case-normalised when parsed, so WRITE takes precedence over read",
    ),
];

fn load(file: &str) -> Vec<Value> {
    let path = format!("{}/../testdata/consul/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    let vectors = v["vectors"].as_array().unwrap().clone();
    assert_eq!(
        v["count"].as_u64().unwrap() as usize,
        vectors.len(),
        "{file} count"
    );
    vectors
}

fn is_difference(name: &str) -> bool {
    DIFFERENCES.iter().any(|(n, _)| *n == name)
}

fn level(s: &str) -> Option<AccessLevel> {
    AccessLevel::parse(s)
}

/// Builds `Rules` from the normalized vector shape (`{"service": [{"name", "policy",
/// "intentions"}], "acl": "read"}`).
fn rules_from_shape(shape: &Value) -> Rules {
    let mut r = Rules::new();
    for (key, value) in shape.as_object().unwrap() {
        if let Some(single) = SingleRule::from_name(key) {
            if let Some(l) = level(value.as_str().unwrap()) {
                r.set_single(single, l).unwrap();
            }
            continue;
        }
        let (family, kind) = Family::from_block_name(key).unwrap();
        for rule in value.as_array().unwrap() {
            let grant = Grant {
                policy: level(rule["policy"].as_str().unwrap()).unwrap(),
                intentions: rule
                    .get("intentions")
                    .and_then(|v| level(v.as_str().unwrap())),
            };
            r.add(family, kind, rule["name"].as_str().unwrap(), grant)
                .unwrap();
        }
    }
    r
}

/// The normalized shape of `Rules` as a comparable set of strings.
fn shape_set(shape: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (key, value) in shape.as_object().unwrap() {
        match value {
            Value::String(s) if !s.is_empty() => {
                out.insert(format!("{key}={}", s.to_lowercase()));
            }
            Value::String(_) => {}
            Value::Array(rules) => {
                for rule in rules {
                    let i = rule.get("intentions").and_then(Value::as_str).unwrap_or("");
                    out.insert(format!(
                        "{key}[{}] policy={} intentions={}",
                        rule["name"].as_str().unwrap(),
                        rule["policy"].as_str().unwrap().to_lowercase(),
                        i.to_lowercase()
                    ));
                }
            }
            other => panic!("unexpected shape {other}"),
        }
    }
    out
}

fn rules_set(r: &Rules) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in SingleRule::ALL {
        if let Some(l) = r.single(s) {
            out.insert(format!("{s}={l}"));
        }
    }
    for rule in r.iter() {
        out.insert(format!(
            "{}[{}] policy={} intentions={}",
            rule.family.block_name(rule.kind),
            rule.name,
            rule.grant.policy,
            rule.grant.intentions.map_or("", AccessLevel::as_str)
        ));
    }
    out
}

#[test]
fn acl_policy_parse_vectors() {
    let vectors = load("acl_policy_parse.json");
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let text = v["rules"].as_str().unwrap();
        let got = Rules::parse(text);
        if let Some(prefix) = v.get("expected_error_prefix").and_then(Value::as_str) {
            let err = got.expect_err(name);
            assert!(
                err.to_string().starts_with(prefix),
                "{name}: {err} does not start with {prefix}"
            );
            continue;
        }
        let rules = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        // Order is not significant (mesh refuses duplicates), so compare as sets. Levels are
        // compared lower-cased: see DIFFERENCES for the one vector whose text is upper case.
        let expected = shape_set(&v["expected"]);
        assert_eq!(rules_set(&rules), expected, "{name}");
        if is_difference(name) {
            let (_, kind) = Family::from_block_name("node").unwrap();
            let g = rules.get(Family::Node, kind, "n1").unwrap();
            assert_eq!(g.policy.as_str(), "write", "{name}: stored lower case");
        }
        // Canonical JSON round trip.
        assert_eq!(
            Rules::parse(&rules.to_json()).unwrap(),
            rules,
            "{name}: json round trip"
        );
        assert_eq!(
            Rules::parse(&rules.to_hcl()).unwrap(),
            rules,
            "{name}: hcl round trip"
        );
    }
}

#[test]
fn acl_policy_merge_vectors() {
    let vectors = load("acl_policy_merge.json");
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        match v["kind"].as_str().unwrap() {
            "merge" => {
                let inputs: Vec<Rules> = v["input"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(rules_from_shape)
                    .collect();
                let before = inputs.clone();
                let merged = merge_rules(inputs.iter());
                assert_eq!(rules_set(&merged), shape_set(&v["expected"]), "{name}");
                assert_eq!(
                    inputs, before,
                    "{name}: inputs must not change (mesh merges into fresh copies)"
                );
            }
            "takes_precedence_over" => {
                let a = level(v["input"]["a"].as_str().unwrap());
                let b = level(v["input"]["b"].as_str().unwrap());
                let expected = v["expected"].as_bool().unwrap();
                if is_difference(name) {
                    assert_eq!(takes_precedence_over(a, b), !expected, "{name}");
                } else {
                    assert_eq!(takes_precedence_over(a, b), expected, "{name}");
                }
            }
            other => panic!("{name}: unknown kind {other}"),
        }
    }
}

fn effect_str(d: Option<Effect>) -> &'static str {
    match d {
        Some(Effect::Allow) => "allow",
        Some(Effect::Deny) => "deny",
        None => "default",
    }
}

#[test]
fn acl_authz_vectors() {
    let vectors = load("acl_authz.json");
    let mut checks = 0;
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        if let Some(e) = v.get("enforce") {
            let rule = level(e["rule"].as_str().unwrap());
            let req = match e["required"].as_str().unwrap() {
                "read" => mesh_intentions::acl::Required::Read,
                "list" => mesh_intentions::acl::Required::List,
                _ => mesh_intentions::acl::Required::Write,
            };
            assert_eq!(
                effect_str(enforce(rule, req)),
                v["expected"].as_str().unwrap(),
                "{name}"
            );
            checks += 1;
            continue;
        }
        if let Some(ia) = v.get("intention_acl") {
            let rules = Rules::parse(ia["rules"].as_str().unwrap()).unwrap();
            // "NO default chained, so 'default' counts as not allowed": DenyAll behind.
            let authz = Authorizer::chain(
                vec![PolicyAuthorizer::from_rules(&rules, name)],
                RootAuthorizer::DenyAll,
            );
            let ixn: Intention = serde_json::from_value(ia["intention"].clone()).unwrap();
            assert_eq!(
                can_read(&authz, &ixn).is_ok(),
                v["expected"]["can_read"].as_bool().unwrap(),
                "{name}"
            );
            assert_eq!(
                can_write(&authz, &ixn).is_ok(),
                v["expected"]["can_write"].as_bool().unwrap(),
                "{name}"
            );
            checks += 1;
            continue;
        }
        let layers: Vec<Rules> = v["policy_layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| Rules::parse(t.as_str().unwrap()).unwrap_or_else(|e| panic!("{name}: {e}")))
            .collect();
        let peer = v.get("authorizer_context").and_then(|c| c["peer"].as_str());
        let ctx = AuthorizerContext { peer };
        match v["default_authorizer"].as_str() {
            None => {
                // Raw policy authorizer: one layer, allow/deny/default.
                assert_eq!(layers.len(), 1, "{name}");
                let pa = PolicyAuthorizer::from_rules(&layers[0], name);
                for c in v["checks"].as_array().unwrap() {
                    let (res, acc, seg) = parse_check(c);
                    let got = pa.check(res, acc, seg, ctx).unwrap().map(|d| d.effect());
                    assert_eq!(
                        effect_str(got),
                        c["expected"].as_str().unwrap(),
                        "{name}: {c}"
                    );
                    checks += 1;
                }
            }
            Some(root) => {
                let root = match root {
                    "allow" => RootAuthorizer::AllowAll,
                    "deny" => RootAuthorizer::DenyAll,
                    "manage" => RootAuthorizer::ManageAll,
                    other => panic!("{other}"),
                };
                // Layers chain like Consul's test: the LAST layer is consulted first.
                let compiled = layers
                    .iter()
                    .rev()
                    .map(|r| PolicyAuthorizer::from_rules(r, name))
                    .collect();
                let authz = Authorizer::chain(compiled, root);
                for c in v["checks"].as_array().unwrap() {
                    let (res, acc, seg) = parse_check(c);
                    let d = authz.check(res, acc, seg, ctx).unwrap();
                    assert_eq!(
                        effect_str(Some(d.effect())),
                        c["expected"].as_str().unwrap(),
                        "{name}: {c} ({d})"
                    );
                    checks += 1;
                }
            }
        }
    }
    assert!(checks > 400, "{checks}");
}

fn parse_check(c: &Value) -> (Resource, Access, &str) {
    (
        Resource::parse(c["resource"].as_str().unwrap()).unwrap(),
        Access::parse(c["access"].as_str().unwrap()).unwrap(),
        c["segment"].as_str().unwrap(),
    )
}

#[test]
fn differences_are_named_vectors() {
    let names: Vec<String> = ["acl_policy_parse.json", "acl_policy_merge.json"]
        .iter()
        .flat_map(|f| load(f))
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    for (n, reason) in DIFFERENCES {
        assert!(
            names.iter().any(|x| x == n),
            "{n} ({reason}) is not a vector"
        );
    }
}

#[test]
fn named_rule_kinds_exist() {
    // Sanity for the shape helper.
    assert_eq!(
        Family::from_block_name("service_prefix"),
        Some((Family::Service, MatchKind::Prefix))
    );
}
