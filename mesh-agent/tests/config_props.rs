//! Properties of agent configuration decoding: both of Consul's key casings are accepted where
//! Consul accepts them, HCL and JSON spellings of the same settings agree, and no input panics.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::Path;

use mesh_agent::config::{AgentConfig, ConfigError, Format};
use proptest::prelude::*;

fn load(text: &str, format: Format) -> Result<AgentConfig, ConfigError> {
    AgentConfig::from_str(text, format, Path::new("prop"))
}

/// The config with services as JSON values and warnings as keys (what differs by syntax).
fn comparable(mut c: AgentConfig) -> (AgentConfig, Vec<serde_json::Value>, Vec<Option<String>>) {
    let services = c
        .services
        .iter()
        .map(|s| serde_json::from_str(&s.json).unwrap())
        .collect();
    let warnings = c.warnings.iter().map(|w| w.key.clone()).collect();
    c.services.clear();
    c.warnings.clear();
    (c, services, warnings)
}

/// A string literal valid in both JSON and HCL (JSON's escapes are a subset of HCL's).
fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Flips the case of the letters where `flips` says so.
fn recase(key: &str, flips: &[bool]) -> String {
    key.chars()
        .zip(flips.iter().cycle())
        .map(|(c, f)| {
            if *f {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// `connect.ca_config` keys: (snake_case, Consul's field name, value).
const CA: &[(&str, &str, &str)] = &[
    ("leaf_cert_ttl", "LeafCertTTL", "\"24h\""),
    ("intermediate_cert_ttl", "IntermediateCertTTL", "\"4380h\""),
    ("root_cert_ttl", "RootCertTTL", "\"43800h\""),
    ("private_key_type", "PrivateKeyType", "\"ec\""),
    ("private_key_bits", "PrivateKeyBits", "384"),
    ("csr_max_per_second", "CSRMaxPerSecond", "10"),
    ("csr_max_concurrent", "CSRMaxConcurrent", "2"),
];

/// A JSON config whose agent keys are cased by `flips` and whose `ca_config` keys are
/// snake_case or the CamelCase field name, as `camel` says, cased by `flips` for the latter.
fn cased_json(flips: &[bool], camel: &[bool]) -> String {
    let k = |key: &str| lit(&recase(key, flips));
    let ca: Vec<String> = CA
        .iter()
        .zip(camel.iter().cycle())
        .map(|((snake, field, value), use_field)| {
            let key = if *use_field {
                // Consul matches a field name in any case.
                recase(field, flips)
            } else {
                // The snake_case spelling is translated only as written.
                (*snake).to_owned()
            };
            format!("{}: {value}", lit(&key))
        })
        .collect();
    format!(
        r#"{{
  {dc}: "Secondary",
  {pdc}: "primary",
  {node}: "n1",
  {acl}: {{
    {enabled}: true,
    {policy}: "deny",
    {repl}: true,
    {tokens}: {{ {replication}: "r-token", {agent}: "a-token" }}
  }},
  {connect}: {{ {cenabled}: true, {ca_config}: {{ {ca} }} }},
  {ports}: {{ {http}: 18500, {server}: 18300 }},
  {rjw}: ["p1:8300"],
  {svc}: {{ "name": "web", "Port": 80 }}
}}"#,
        dc = k("datacenter"),
        pdc = k("primary_datacenter"),
        node = k("node_name"),
        acl = k("acl"),
        enabled = k("enabled"),
        policy = k("default_policy"),
        repl = k("enable_token_replication"),
        tokens = k("tokens"),
        replication = k("replication"),
        agent = k("agent"),
        connect = k("connect"),
        cenabled = k("enabled"),
        ca_config = k("ca_config"),
        ca = ca.join(", "),
        ports = k("ports"),
        http = k("http"),
        server = k("server"),
        rjw = k("retry_join_wan"),
        svc = k("service"),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Consul's decoder matches agent keys in any ASCII case, and `ca_config` keys either as
    /// snake_case or as the CamelCase field name in any case. Service definitions are passed
    /// through with their keys as written.
    #[test]
    fn json_accepts_consuls_casings(
        flips in proptest::collection::vec(any::<bool>(), 1..40),
        camel in proptest::collection::vec(any::<bool>(), 1..8),
    ) {
        let base = comparable(load(&cased_json(&[false], &[false]), Format::Json).unwrap());
        let text = cased_json(&flips, &camel);
        let got = comparable(load(&text, Format::Json).unwrap());
        prop_assert_eq!(&got, &base, "{}", text);
        prop_assert_eq!(got.0.datacenter.as_str(), "secondary");
        prop_assert_eq!(got.0.ca_config.private_key_bits, 384);
        prop_assert_eq!(got.1[0]["service"]["Port"].as_u64(), Some(80));
        // The same text is HCL too (HCL 1 reads a document starting with '{' as JSON).
        let hcl = comparable(load(&text, Format::Hcl).unwrap());
        prop_assert_eq!(hcl, base);
    }
}

/// Settings written once in HCL (in one of several styles) and once in JSON.
#[derive(Debug, Clone)]
struct Spec {
    datacenter: String,
    primary: Option<String>,
    acl_enabled: bool,
    deny: Option<bool>,
    replication: bool,
    tokens: Vec<(&'static str, String)>,
    http: i64,
    server: i64,
    join: Vec<String>,
    leaf_hours: u32,
    services: Vec<(String, u16)>,
    central: Option<bool>,
    style: Vec<bool>,
}

fn spec() -> impl Strategy<Value = Spec> {
    let name = "[a-z][a-z0-9_-]{0,12}";
    let acl = (
        any::<bool>(),
        proptest::option::of(any::<bool>()),
        any::<bool>(),
        proptest::collection::vec(
            (
                prop_oneof![
                    Just("initial_management"),
                    Just("replication"),
                    Just("agent"),
                    Just("default")
                ],
                // Any text, quotes, backslashes, controls and non-ASCII included.
                "\\PC{1,24}|[\\x00-\\x1f\"\\\\]{1,4}",
            ),
            0..4,
        ),
    );
    let rest = (
        -1i64..=65535,
        0i64..=65535,
        proptest::collection::vec("[a-z0-9.-]{1,20}:[0-9]{1,5}", 0..4),
        1u32..=72,
        proptest::collection::vec(("[a-z][a-z0-9-]{0,10}", 1u16..), 0..3),
        proptest::option::of(any::<bool>()),
        proptest::collection::vec(any::<bool>(), 8),
    );
    (name, proptest::option::of(name), acl, rest).prop_map(
        |(
            datacenter,
            primary,
            (acl_enabled, deny, replication, tokens),
            (http, server, join, leaf_hours, services, central, style),
        )| Spec {
            datacenter,
            primary,
            acl_enabled,
            deny,
            replication,
            tokens,
            http,
            server,
            join,
            leaf_hours,
            services,
            central,
            style,
        },
    )
}

impl Spec {
    fn json(&self) -> String {
        let mut top = serde_json::Map::new();
        top.insert("datacenter".into(), self.datacenter.clone().into());
        top.insert("node_name".into(), "n".into());
        if let Some(p) = &self.primary {
            top.insert("primary_datacenter".into(), p.clone().into());
        }
        let mut acl = serde_json::json!({
            "enabled": self.acl_enabled,
            "enable_token_replication": self.replication,
        });
        if let Some(deny) = self.deny {
            acl["default_policy"] = if deny { "deny" } else { "allow" }.into();
        }
        let mut tokens = serde_json::Map::new();
        for (k, v) in &self.tokens {
            tokens.insert((*k).into(), v.clone().into());
        }
        acl["tokens"] = tokens.into();
        top.insert("acl".into(), acl);
        top.insert(
            "ports".into(),
            serde_json::json!({"http": self.http, "server": self.server}),
        );
        top.insert("retry_join_wan".into(), self.join.clone().into());
        top.insert(
            "connect".into(),
            serde_json::json!({"enabled": true, "ca_config": {"leaf_cert_ttl": format!("{}h", self.leaf_hours)}}),
        );
        if let Some(c) = self.central {
            top.insert("enable_central_service_config".into(), c.into());
        }
        let services: Vec<_> = self
            .services
            .iter()
            .map(|(n, p)| serde_json::json!({"name": n, "port": p}))
            .collect();
        top.insert("services".into(), services.into());
        serde_json::to_string_pretty(&serde_json::Value::Object(top)).unwrap()
    }

    fn hcl(&self) -> String {
        let s = |i: usize| self.style[i];
        // `=` or the JSON-like `:`; blocks or `key = { }`; commas or line ends.
        let eq = if s(0) { " = " } else { ": " };
        let sep = if s(1) { ", " } else { "\n" };
        let open = |k: &str| {
            if s(2) {
                format!("{k} {{")
            } else {
                format!("{k} = {{")
            }
        };
        let key = |k: &str| if s(3) { lit(k) } else { k.to_owned() };
        let mut out = String::new();
        if s(4) {
            out.push_str("# a comment\n/* and another */\n");
        }
        out.push_str(&format!(
            "{}{eq}{}\n",
            key("datacenter"),
            lit(&self.datacenter)
        ));
        out.push_str(&format!("node_name{eq}\"n\"\n"));
        if let Some(p) = &self.primary {
            out.push_str(&format!("{}{eq}{}\n", key("primary_datacenter"), lit(p)));
        }
        // The acl block, split in two blocks when style says so (they merge).
        let mut acl_items = vec![
            format!("enabled{eq}{}", self.acl_enabled),
            format!(
                "{}{eq}{}",
                key("enable_token_replication"),
                self.replication
            ),
        ];
        if let Some(deny) = self.deny {
            acl_items.push(format!(
                "default_policy{eq}{}",
                if deny { "\"deny\"" } else { "\"allow\"" }
            ));
        }
        let tokens: Vec<String> = self
            .tokens
            .iter()
            .map(|(k, v)| format!("{}{eq}{}", key(k), lit(v)))
            .collect();
        if s(5) {
            out.push_str(&format!("{} {} }}\n", open("acl"), acl_items.join(sep)));
            out.push_str(&format!("acl {{ tokens {{ {} }} }}\n", tokens.join(sep)));
        } else {
            acl_items.push(format!("{} {} }}", open("tokens"), tokens.join(sep)));
            out.push_str(&format!("{}\n{}\n}}\n", open("acl"), acl_items.join("\n")));
        }
        out.push_str(&format!(
            "{} http{eq}{}{sep}server{eq}{} }}\n",
            open("ports"),
            self.http,
            self.server
        ));
        let join: Vec<String> = self.join.iter().map(|j| lit(j)).collect();
        let trailing = if s(6) && !join.is_empty() { "," } else { "" };
        out.push_str(&format!(
            "retry_join_wan{eq}[{}{trailing}]\n",
            join.join(", ")
        ));
        out.push_str(&format!(
            "connect {{ \"enabled\": true{sep}{} \"leaf_cert_ttl\" = \"{}h\" }} }}\n",
            open("ca_config"),
            self.leaf_hours
        ));
        if let Some(c) = self.central {
            out.push_str(&format!("enable_central_service_config{eq}{c}\n"));
        }
        if s(7) {
            let items: Vec<String> = self
                .services
                .iter()
                .map(|(n, p)| format!("{{ name = {}, port = {p} }}", lit(n)))
                .collect();
            out.push_str(&format!("services = [{}]\n", items.join(", ")));
        } else {
            for (n, p) in &self.services {
                out.push_str(&format!(
                    "service {{\n  name = {}\n  port = {p}\n}}\n",
                    lit(n)
                ));
            }
        }
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The same settings mean the same thing in HCL (whatever the style) and in JSON.
    #[test]
    fn hcl_and_json_agree(spec in spec()) {
        let (h, j) = (spec.hcl(), spec.json());
        let from_hcl = load(&h, Format::Hcl).map(comparable).map_err(|e| e.to_string());
        let from_json = load(&j, Format::Json).map(comparable).map_err(|e| e.to_string());
        prop_assert_eq!(&from_hcl, &from_json, "HCL:\n{}\nJSON:\n{}", h, j);
        // Every generated spec is a valid configuration.
        prop_assert!(from_json.is_ok(), "{:?}", from_json);
        if let Ok((c, services, _)) = from_json {
            prop_assert_eq!(c.datacenter.as_str(), spec.datacenter.as_str());
            prop_assert_eq!(services.len(), spec.services.len());
            // A token that is set is kept exactly, and never shown.
            for (k, v) in &spec.tokens {
                let got = match *k {
                    "initial_management" => &c.acl.tokens.initial_management,
                    "replication" => &c.acl.tokens.replication,
                    "agent" => &c.acl.tokens.agent,
                    _ => &c.acl.tokens.default,
                };
                prop_assert!(got.is_some());
                let last = spec.tokens.iter().rev().find(|(k2, _)| k2 == k).map(|(_, v)| v);
                prop_assert_eq!(got.as_ref(), last);
                prop_assert!(!v.is_empty());
            }
            let debug = format!("{c:?}");
            for (_, v) in &spec.tokens {
                if v.len() >= 8 {
                    prop_assert!(!debug.contains(v.as_str()));
                }
            }
        }
    }

    /// Any text, in either format: an answer, never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = load(&text, Format::Hcl);
        let _ = load(&text, Format::Json);
    }

    /// Text made of the syntax's own characters, which reaches deeper into the parsers.
    #[test]
    fn syntax_soup_never_panics(
        text in proptest::collection::vec(
            prop_oneof![
                Just("{"), Just("}"), Just("["), Just("]"), Just("\""), Just("="), Just(":"),
                Just(","), Just("#"), Just("//"), Just("/*"), Just("*/"), Just("\n"), Just(" "),
                Just("\\"), Just("\\u"), Just("d800"), Just("<<EOF\n"), Just("EOF"), Just("<<-"),
                Just("-"), Just("0x"), Just("1"), Just("0"), Just(".5e3"), Just("true"), Just("null"),
                Just("acl"), Just("tokens"), Just("service"), Just("ports"), Just("http"),
                Just("connect"), Just("ca_config"), Just("leaf_cert_ttl"), Just("é"),
            ],
            0..80,
        ).prop_map(|v| v.concat())
    ) {
        for format in [Format::Hcl, Format::Json] {
            if let Err(e) = load(&text, format) {
                // Every error can be displayed.
                let _ = e.to_string();
            }
        }
    }
}

/// Every prefix of real configuration files parses or fails cleanly, and only the whole of a
/// JSON file parses.
#[test]
fn every_prefix_of_the_test_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/config");
    for (rel, format) in [
        ("primary/server.hcl", Format::Hcl),
        ("primary/server.json", Format::Json),
        ("secondary/server.hcl", Format::Hcl),
        ("secondary/server.json", Format::Json),
        ("guide/socat.json", Format::Json),
        ("guide/web.json", Format::Json),
        ("guide/connect.hcl", Format::Hcl),
    ] {
        let text = std::fs::read_to_string(dir.join(rel)).unwrap();
        assert!(load(&text, format).is_ok(), "{rel}");
        for (i, _) in text.char_indices() {
            let prefix = &text[..i];
            let got = load(prefix, format);
            let _ = load(prefix, Format::Hcl);
            if format == Format::Json && prefix.trim_end() != text.trim_end() {
                assert!(got.is_err(), "{rel}: prefix {i} parsed");
            }
        }
    }
}
