//! Every vector of `intention_precedence.json`, `intention_match.json`, and the
//! `service-intentions` / legacy-intention validation vectors of `config_entry.json`.
//! No deliberate differences from Consul in these files.

// Tests unwrap on purpose: a failing unwrap is a failing test.
#![allow(clippy::unwrap_used)]

use mesh_intentions::acl::{Authorizer, DefaultPolicy, PolicyAuthorizer, RootAuthorizer, Rules};
use mesh_intentions::consul_compat::decision_summary;
use mesh_intentions::intention::{
    Action, Intention, IntentionDefault, IntentionSet, MatchType, ServiceIntentionsEntry,
    SourceIntention, authorize_connect, authorize_intention_target, precedence,
};
use serde_json::Value;

fn load(file: &str) -> Vec<Value> {
    let path = format!("{}/../testdata/consul/{file}", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vectors = v["vectors"].as_array().unwrap().clone();
    assert_eq!(
        v["count"].as_u64().unwrap() as usize,
        vectors.len(),
        "{file} count"
    );
    vectors
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn from_snake(v: &Value) -> Intention {
    let mut i = Intention {
        source_sameness_group: s(v, "source_sameness_group").into(),
        source_peer: s(v, "source_peer").into(),
        source_ns: s(v, "source_ns").into(),
        source_name: s(v, "source_name").into(),
        destination_ns: s(v, "destination_ns").into(),
        destination_name: s(v, "destination_name").into(),
        action: "allow".into(),
        ..Intention::default()
    };
    i.update_precedence();
    i
}

fn tuple(i: &Intention) -> [String; 6] {
    [
        i.source_sameness_group.clone(),
        i.source_peer.clone(),
        i.source_ns.clone(),
        i.source_name.clone(),
        i.destination_ns.clone(),
        i.destination_name.clone(),
    ]
}

#[test]
fn intention_precedence_vectors() {
    for v in load("intention_precedence.json") {
        let name = v["name"].as_str().unwrap();
        match v["kind"].as_str().unwrap() {
            "precedence" => {
                let i = &v["input"];
                let p = precedence(
                    s(i, "source_ns"),
                    s(i, "source_name"),
                    s(i, "destination_ns"),
                    s(i, "destination_name"),
                );
                assert_eq!(i64::from(p), v["expected"].as_i64().unwrap(), "{name}");
            }
            "sort" => {
                let mut ixns: Vec<Intention> = v["input"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(from_snake)
                    .collect();
                ixns.sort_by(|a, b| a.precedence_key().cmp(&b.precedence_key()));
                let expected: Vec<[String; 6]> = v["expected_order"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| tuple(&from_snake(e)))
                    .collect();
                let got: Vec<[String; 6]> = ixns.iter().map(tuple).collect();
                assert_eq!(got, expected, "{name}");
            }
            "config_entry_sources_sort" => {
                let mut e = ServiceIntentionsEntry::from_json(&v["input"].to_string()).unwrap();
                e.normalize();
                e.validate(false).unwrap();
                let expected: Vec<SourceIntention> =
                    serde_json::from_value(v["expected_sources"].clone()).unwrap();
                assert_eq!(e.sources, expected, "{name}");
            }
            "string" => {
                let mut i: Intention = serde_json::from_value(v["input"].clone()).unwrap();
                i.normalize();
                assert_eq!(i.to_string(), v["expected"].as_str().unwrap(), "{name}");
            }
            other => panic!("{name}: unknown kind {other}"),
        }
    }
}

fn match_type(v: &Value) -> MatchType {
    match v.as_str().unwrap() {
        "destination" => MatchType::Destination,
        "source" => MatchType::Source,
        other => panic!("{other}"),
    }
}

fn intentions(v: &Value) -> Vec<Intention> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|i| serde_json::from_value(i.clone()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn acl_default(v: &Value) -> Option<DefaultPolicy> {
    if !v["acls_enabled"].as_bool().unwrap_or(false) {
        return None;
    }
    Some(match v["acl_default_policy"].as_str().unwrap() {
        "allow" => DefaultPolicy::Allow,
        _ => DefaultPolicy::Deny,
    })
}

#[test]
fn intention_match_vectors() {
    for v in load("intention_match.json") {
        let name = v["name"].as_str().unwrap();
        let input = &v["input"];
        let expected = &v["expected"];
        match v["kind"].as_str().unwrap() {
            "authorize_intention_target" => {
                let ixn: Intention = serde_json::from_value(input["intention"].clone()).unwrap();
                let (auth, matched) = authorize_intention_target(
                    s(input, "target"),
                    s(input, "target_ns"),
                    s(input, "target_peer"),
                    &ixn,
                    match_type(&input["match_type"]),
                );
                assert_eq!(auth, expected["auth"].as_bool().unwrap(), "{name}");
                assert_eq!(matched, expected["match"].as_bool().unwrap(), "{name}");
            }
            "intention_decision" => {
                let set = IntentionSet::build(intentions(&input["all_intentions"])).unwrap();
                let src = s(input, "src");
                let dst = s(input, "dst");
                let mt = match_type(&input["match_type"]);
                let default_allow = input["default_allow"].as_bool().unwrap();
                let candidates = set.match_source(src);
                let sum = decision_summary(
                    &candidates,
                    dst,
                    mt,
                    default_allow,
                    input["allow_permissions"].as_bool().unwrap(),
                );
                assert_eq!(
                    sum.allowed,
                    expected["Allowed"].as_bool().unwrap(),
                    "{name}"
                );
                assert_eq!(
                    sum.has_permissions,
                    expected["HasPermissions"].as_bool().unwrap(),
                    "{name}"
                );
                assert_eq!(
                    sum.external_source,
                    expected["ExternalSource"].as_str().unwrap(),
                    "{name}"
                );
                assert_eq!(
                    sum.has_exact,
                    expected["HasExact"].as_bool().unwrap(),
                    "{name}"
                );
                assert_eq!(
                    sum.default_allow,
                    expected["DefaultAllow"].as_bool().unwrap(),
                    "{name}"
                );
                if mt == MatchType::Destination {
                    // The indexed decision agrees with the candidate walk.
                    let def = IntentionDefault::new(
                        Some(if default_allow {
                            DefaultPolicy::Allow
                        } else {
                            DefaultPolicy::Deny
                        }),
                        None,
                    );
                    assert_eq!(
                        set.decide(src, dst, def).is_allowed(),
                        sum.allowed,
                        "{name}: indexed"
                    );
                }
            }
            "default_decision" => {
                let dip =
                    IntentionDefault::parse_policy(s(input, "default_intention_policy")).unwrap();
                let def = IntentionDefault::new(acl_default(input), dip);
                let set = IntentionSet::build(intentions(&input["intentions"])).unwrap();
                let d = set.decide("web", "foo", def);
                assert_eq!(
                    d.is_allowed(),
                    expected["allowed"].as_bool().unwrap(),
                    "{name}"
                );
                if let Some(r) = expected.get("reason_contains").and_then(Value::as_str) {
                    assert!(d.to_string().contains(r), "{name}: {d}");
                }
                // The same default derived from an authorizer, as Consul does.
                let authz = match acl_default(input) {
                    None => Authorizer::acls_disabled(),
                    Some(p) => Authorizer::chain(Vec::new(), p.into()),
                };
                assert_eq!(
                    IntentionDefault::from_authorizer(&authz, dip),
                    def,
                    "{name}"
                );
            }
            "connect_authorize" => {
                let set = IntentionSet::build(intentions(&input["intentions"])).unwrap();
                let authz = match acl_default(input) {
                    None => Authorizer::acls_disabled(),
                    Some(p) => {
                        let rules = Rules::parse(s(input, "token_rules")).unwrap();
                        Authorizer::chain(
                            vec![PolicyAuthorizer::from_rules(&rules, name)],
                            RootAuthorizer::from(p),
                        )
                    }
                };
                let def = IntentionDefault::from_authorizer(&authz, None);
                let got = authorize_connect(
                    &authz,
                    &set,
                    def,
                    s(input, "target"),
                    s(input, "client_cert_uri"),
                );
                let status = expected["http_status"].as_u64().unwrap();
                match got {
                    Ok(resp) => {
                        assert_eq!(status, 200, "{name}");
                        assert_eq!(
                            resp.authorized,
                            expected["Authorized"].as_bool().unwrap(),
                            "{name}"
                        );
                        assert!(
                            resp.reason.contains(s(expected, "reason_contains")),
                            "{name}: {}",
                            resp.reason
                        );
                    }
                    Err(e) => {
                        assert_eq!(u64::from(e.http_status()), status, "{name}: {e}");
                        assert!(
                            e.to_string().contains(s(expected, "body_contains")),
                            "{name}: {e}"
                        );
                    }
                }
            }
            "intention_match" => {
                let mt = match_type(&input["match_type"]);
                let ixns = input["insert_pairs"].as_array().unwrap().iter().map(|p| {
                    let (m, o) = (p[0].as_str().unwrap(), p[1].as_str().unwrap());
                    match mt {
                        MatchType::Destination => Intention::new(o, m, Action::Allow),
                        MatchType::Source => Intention::new(m, o, Action::Allow),
                    }
                });
                let set = IntentionSet::build(ixns).unwrap();
                for (q, exp) in input["query_names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(v["expected_matches"].as_array().unwrap())
                {
                    let q = q.as_str().unwrap();
                    let got: Vec<(String, String)> = match mt {
                        MatchType::Destination => set
                            .match_destination(q)
                            .iter()
                            .map(|i| (i.destination_name.clone(), i.source_name.clone()))
                            .collect(),
                        MatchType::Source => set
                            .match_source(q)
                            .iter()
                            .map(|i| (i.source_name.clone(), i.destination_name.clone()))
                            .collect(),
                    };
                    let want: Vec<(String, String)> = exp
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| {
                            (
                                p[0].as_str().unwrap().to_owned(),
                                p[1].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect();
                    assert_eq!(got, want, "{name}: {q}");
                }
            }
            other => panic!("{name}: unknown kind {other}"),
        }
    }
}

#[test]
fn config_entry_intention_validation_vectors() {
    let mut checked = 0;
    for v in load("config_entry.json") {
        let name = v["name"].as_str().unwrap();
        if v["kind"] != "validation" {
            continue;
        }
        if name.starts_with("service-intentions:") {
            let want = v["expected_error_contains"].as_str().unwrap();
            let err = match ServiceIntentionsEntry::from_json(&v["input"].to_string()) {
                Err(e) => e,
                Ok(mut e) => {
                    e.normalize();
                    e.validate(false).expect_err(name)
                }
            };
            assert!(err.to_string().contains(want), "{name}: {err}");
            checked += 1;
        } else if name.starts_with("legacy intention:") {
            let want = v["expected_error_contains_case_insensitive"]
                .as_str()
                .unwrap()
                .to_lowercase();
            let ixn: Intention = serde_json::from_value(v["input"].clone()).unwrap();
            let err = ixn.validate().expect_err(name).to_string().to_lowercase();
            assert!(err.contains(&want), "{name}: {err}");
            checked += 1;
        }
    }
    assert_eq!(checked, 23);
}
