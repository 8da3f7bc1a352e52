//! Agent configuration: the guide's snippets and files load unchanged, full primary and
//! secondary configurations mean the same in HCL and JSON, files merge in order, errors name
//! the file, the key and the position, and tokens never show.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mesh::intentions::acl::DefaultPolicy;
use mesh_agent::config::{AgentConfig, ConfigError, Format, MAX_DEPTH, MAX_FILE_SIZE, Position};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/config")
        .join(rel)
}

fn hcl(text: &str) -> Result<AgentConfig, ConfigError> {
    AgentConfig::from_str(text, Format::Hcl, Path::new("test.hcl"))
}

fn json(text: &str) -> Result<AgentConfig, ConfigError> {
    AgentConfig::from_str(text, Format::Json, Path::new("test.json"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The config with what legitimately differs between two syntaxes made comparable: services
/// as JSON values (not text, not file), warnings as their keys.
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

// === the guide ===

#[test]
fn guide_connect_snippet_loads_unchanged() {
    // "Add the following snippet to the server configuration" (printed as ```json, written in
    // HCL's JSON-like form).
    let snippet = "connect {\n\"enabled\": true\n}";
    for text in [snippet, &format!("{snippet}\n")] {
        let c = hcl(text).unwrap();
        assert!(c.connect_enabled);
    }
    let c = hcl("connect {\n\"enabled\": false\n}").unwrap();
    assert!(!c.connect_enabled);

    // As a file of the config dir, and as -config-file without a known extension.
    let c = AgentConfig::load(&[data("guide/connect.hcl")], &[]).unwrap();
    assert!(c.connect_enabled);
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "server.conf", snippet);
    assert!(AgentConfig::load(&[f], &[]).unwrap().connect_enabled);

    // Named .json it is not JSON, as in Consul; the error says what would work.
    let f = write(dir.path(), "connect.json", snippet);
    let e = AgentConfig::load(&[f], &[]).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            ConfigError::Syntax {
                line: 1,
                column: 1,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("connect.json:1:1") && msg.contains("name the file .hcl"),
        "{msg}"
    );
}

#[test]
fn guide_primary_datacenter_setting() {
    let c = hcl("datacenter = \"secondary\"\nprimary_datacenter = \"primary\"\nconnect {\n\"enabled\": true\n}\n").unwrap();
    assert_eq!(c.datacenter.as_str(), "secondary");
    assert_eq!(c.primary_datacenter.as_str(), "primary");
    assert!(!c.is_primary());
    let dc = c.datacenter_config().unwrap();
    assert!(!dc.is_primary());
    assert!(dc.connect.enabled);
}

#[test]
fn guide_service_files_in_a_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    // Copied byte for byte: the guide's socat.json and web.json, beside a server config.
    for name in ["socat.json", "web.json"] {
        std::fs::copy(data(&format!("guide/{name}")), dir.path().join(name)).unwrap();
    }
    std::fs::copy(data("secondary/server.hcl"), dir.path().join("server.hcl")).unwrap();
    write(dir.path(), "README.md", "not configuration");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write(&dir.path().join("sub"), "ignored.json", "{ not even json");

    let c = AgentConfig::load(&[], &[dir.path().to_path_buf()]).unwrap();
    assert_eq!(c.datacenter.as_str(), "secondary");
    let names: Vec<_> = c
        .services
        .iter()
        .map(|s| s.file.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["socat.json", "web.json"]);
    for s in &c.services {
        // The exact text of the file's service object, wrapped as {"service": ...}.
        let file = std::fs::read_to_string(&s.file).unwrap();
        let file_json: serde_json::Value = serde_json::from_str(&file).unwrap();
        let kept: serde_json::Value = serde_json::from_str(&s.json).unwrap();
        assert_eq!(kept, file_json);
        let inner_start = file.find("{\n\"name\"").unwrap();
        let inner = file[inner_start..file.rfind('}').unwrap()].trim_end();
        assert_eq!(s.json, format!("{{\"service\":{inner}}}"));
        // What Catalog::register_json parses.
        let def = mesh::core::ServiceDefinition::from_json(&s.json).unwrap();
        def.validate().unwrap();
    }
    let web = mesh::core::ServiceDefinition::from_json(&c.services[1].json).unwrap();
    assert_eq!(web.name.as_ref().unwrap().as_str(), "web");
    // The skipped README is reported; the subdirectory is not read.
    assert!(
        c.warnings
            .iter()
            .any(|w| w.file.ends_with("README.md") && w.key.is_none())
    );
}

#[test]
fn services_in_hcl_and_lists() {
    let c = hcl(r#"
        service {
          name = "socat"
          port = 8181
          token = "<token here>"
          connect { sidecar_service {} }
        }
        services = [
          { name = "web", port = 8080, connect { sidecar_service { proxy { upstreams = [{
              destination_name = "socat", datacenter = "primary", local_bind_port = 8181 }] } } } },
          { name = "db", port = 5432 },
        ]
        service { name = "cache" port = 6379 }
    "#)
    .unwrap();
    let names: Vec<String> = c
        .services
        .iter()
        .map(|s| {
            let d = mesh::core::ServiceDefinition::from_json(&s.json).unwrap();
            d.name.unwrap().as_str().to_owned()
        })
        .collect();
    assert_eq!(names, ["socat", "web", "db", "cache"]);
    let socat: serde_json::Value = serde_json::from_str(&c.services[0].json).unwrap();
    let guide: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("guide/socat.json")).unwrap()).unwrap();
    assert_eq!(socat, guide);

    let c = json(r#"{"services": [{"name": "a", "port": 1}, {"Name": "b", "Port": 2}]}"#).unwrap();
    assert_eq!(c.services.len(), 2);
    assert_eq!(
        c.services[1].json,
        r#"{"service":{"Name": "b", "Port": 2}}"#
    );
}

#[test]
fn a_service_mesh_would_refuse_is_reported_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bad.json",
        "{\n  \"service\": {\"port\": 80}\n}",
    );
    let e = AgentConfig::load(&[], &[dir.path().to_path_buf()]).unwrap_err();
    let ConfigError::Service {
        path,
        key,
        position,
        ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!((path, key.as_str()), (&f, "service"));
    assert_eq!(
        *position,
        Some(Position {
            line: 2,
            column: 14
        })
    );
    let chain = mesh_agent_error_chain(&e);
    assert!(
        chain.contains("bad.json:2:14: service") && chain.contains("Missing service name"),
        "{chain}"
    );
    assert!(hcl("services = [1]").is_err());
    assert!(hcl("service = \"web\"").is_err());
}

fn mesh_agent_error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.ends_with(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}

// === full configurations, HCL and JSON ===

#[test]
fn full_primary_is_the_same_in_hcl_and_json() {
    let h = AgentConfig::load(&[data("primary/server.hcl")], &[]).unwrap();
    let j = AgentConfig::load(&[data("primary/server.json")], &[]).unwrap();
    assert_eq!(comparable(h.clone()), comparable(j));

    assert!(h.is_primary());
    assert_eq!(h.datacenter.as_str(), "primary");
    assert_eq!(h.node_name, "primary-server-1");
    assert_eq!(h.data_dir.as_deref(), Some(Path::new("/var/lib/mesh")));
    assert_eq!(h.log_level, "info");
    assert!(h.server);
    assert_eq!(h.bootstrap_expect, 1);
    assert_eq!(h.http_addr, Some("127.0.0.1:8500".parse().unwrap()));
    assert_eq!(h.https_addr, Some("127.0.0.1:8501".parse().unwrap()));
    assert_eq!(h.server_addr, "0.0.0.0:8300".parse::<SocketAddr>().unwrap());
    assert_eq!(h.advertise_addr, Some("10.0.1.10".parse().unwrap()));
    assert!(h.acl.enabled);
    assert_eq!(h.acl.default_policy, DefaultPolicy::Deny);
    assert_eq!(
        h.acl.tokens.initial_management.as_deref(),
        Some("b1gs33cr3t-0000-4000-8000-000000000001")
    );
    assert_eq!(h.ca_config.private_key_bits, 384);
    assert_eq!(h.ca_config.leaf_cert_ttl.as_secs(), 24 * 3600);
    assert_eq!(
        h.tls.cert_file.as_deref(),
        Some(Path::new("/etc/mesh/server.pem"))
    );
    assert!(h.tls.verify_outgoing && !h.tls.verify_incoming);
    let ignored: Vec<_> = h.warnings.iter().filter_map(|w| w.key.clone()).collect();
    assert_eq!(
        ignored,
        [
            "ports.grpc",
            "acl.down_policy",
            "acl.enable_token_persistence",
            "ui_config"
        ]
    );
    let w = h
        .warnings
        .iter()
        .find(|w| w.key.as_deref() == Some("ui_config"))
        .unwrap();
    assert!(w.position.is_some());
    assert!(w.to_string().contains("server.hcl:") && w.to_string().contains("no web UI"));

    let dc = h.datacenter_config().unwrap();
    assert_eq!(dc.name.as_str(), "primary");
    assert!(dc.is_primary());
    assert!(dc.acl.enabled);
    assert_eq!(dc.acl.default_policy, DefaultPolicy::Deny);
    assert_eq!(
        dc.acl
            .tokens
            .initial_management
            .as_ref()
            .map(|s| s.expose_secret()),
        Some("b1gs33cr3t-0000-4000-8000-000000000001")
    );
    assert!(dc.connect.enabled);
    assert_eq!(dc.connect.ca, h.ca_config);
    assert!(dc.enable_central_service_config);
    assert!(matches!(&dc.storage, mesh::Storage::Dir(d) if d == Path::new("/var/lib/mesh")));
}

#[test]
fn full_secondary_is_the_same_in_hcl_and_json() {
    let h = AgentConfig::load(&[data("secondary/server.hcl")], &[]).unwrap();
    let j = AgentConfig::load(&[data("secondary/server.json")], &[]).unwrap();
    assert_eq!(comparable(h.clone()), comparable(j));

    assert!(!h.is_primary());
    assert_eq!(h.primary_datacenter.as_str(), "primary");
    assert!(h.acl.enabled && h.acl.enable_token_replication);
    assert_eq!(h.acl.default_policy, DefaultPolicy::Deny);
    assert_eq!(
        h.acl.tokens.replication.as_deref(),
        Some("r3pl1cat10n-0000-4000-8000-000000000003")
    );
    assert_eq!(h.acl.tokens.initial_management, None);
    assert_eq!(
        h.retry_join_wan,
        ["primary-server-1.example:8300", "10.0.1.11"]
    );
    assert_eq!(h.primary_gateways, ["gateway-primary.example:8443"]);
    assert_eq!(h.http_addr, Some("0.0.0.0:8500".parse().unwrap()));
    assert_eq!(h.https_addr, None);
    assert!(h.warnings.is_empty(), "{:?}", h.warnings);

    let dc = h.datacenter_config().unwrap();
    assert_eq!(
        dc.acl
            .tokens
            .replication
            .as_ref()
            .map(|s| s.expose_secret()),
        Some("r3pl1cat10n-0000-4000-8000-000000000003")
    );
    assert!(!dc.is_primary());
}

#[test]
fn secondary_acl_as_consul_docs_write_it() {
    let multi = r#"
        primary_datacenter = "dc1"
        datacenter = "dc2"
        acl {
          enabled = true
          default_policy = "deny"
          down_policy = "extend-cache"
          enable_token_replication = true
          tokens {
            replication = "secret-replication-token"
          }
        }
    "#;
    let one_line = r#"datacenter = "dc2"
primary_datacenter = "dc1"
acl { enabled = true, default_policy = "deny", down_policy = "extend-cache", enable_token_replication = true, tokens { replication = "secret-replication-token" } }"#;
    let in_json = r#"{
        "datacenter": "dc2",
        "primary_datacenter": "dc1",
        "acl": {
          "enabled": true,
          "default_policy": "deny",
          "down_policy": "extend-cache",
          "enable_token_replication": true,
          "tokens": { "replication": "secret-replication-token" }
        }
    }"#;
    let a = comparable(hcl(multi).unwrap());
    assert_eq!(a, comparable(hcl(one_line).unwrap()));
    assert_eq!(a, comparable(json(in_json).unwrap()));
    // HCL 1 reads a document starting with '{' as JSON: so does mesh's HCL.
    assert_eq!(a, comparable(hcl(in_json).unwrap()));
    assert_eq!(
        a.0.acl.tokens.replication.as_deref(),
        Some("secret-replication-token")
    );
    assert!(a.0.acl.enable_token_replication);
}

// === defaults ===

#[test]
fn defaults_are_consuls() {
    let c = hcl("node_name = \"n1\"").unwrap();
    assert_eq!(c.datacenter.as_str(), "dc1");
    assert!(c.is_primary());
    assert_eq!(c.data_dir, None);
    assert_eq!(c.http_addr, Some("127.0.0.1:8500".parse().unwrap()));
    assert_eq!(c.https_addr, None);
    assert_eq!(c.server_addr, "0.0.0.0:8300".parse().unwrap());
    assert!(!c.acl.enabled);
    // Consul's file-format default, documented: "allow" unless written.
    assert_eq!(c.acl.default_policy, DefaultPolicy::Allow);
    assert!(c.connect_enabled && c.central_service_config);
    assert_eq!(c.ca_config, mesh::ca::CaConfig::default());
    assert_eq!(c.log_level, "info");
    let dc = c.datacenter_config().unwrap();
    assert!(matches!(dc.storage, mesh::Storage::Memory));
    // acl { enabled } alone keeps Consul's "allow" default.
    assert_eq!(
        hcl("acl { enabled = true }").unwrap().acl.default_policy,
        DefaultPolicy::Allow
    );
    // No files at all: the defaults.
    let empty = AgentConfig::load(&[], &[]).unwrap();
    assert_eq!(empty.datacenter.as_str(), "dc1");
    assert!(!empty.node_name.is_empty());
}

#[test]
fn addresses_and_ports() {
    let c = hcl(r#"
        client_addr = "10.0.0.5"
        bind_addr = "::"
        addresses { https = "::1" }
        ports { http = -1, https = 0, server = 0 }
        tls { defaults { cert_file = "/c.pem", key_file = "/k.pem" } }
    "#)
    .unwrap();
    assert_eq!(c.http_addr, None);
    assert_eq!(c.https_addr, Some("[::1]:0".parse().unwrap()));
    assert_eq!(c.server_addr, "[::]:0".parse().unwrap());
    let c = hcl("addresses { http = \"0.0.0.0\" }\nports { http = 18500 }").unwrap();
    assert_eq!(c.http_addr, Some("0.0.0.0:18500".parse().unwrap()));
    // Where the other datacenters reach the server port.
    let c = hcl("advertise_addr = \"10.0.0.5\"\nadvertise_addr_wan = \"192.0.2.7\"").unwrap();
    assert_eq!(
        (c.advertise_addr, c.advertise_addr_wan),
        (
            Some("10.0.0.5".parse().unwrap()),
            Some("192.0.2.7".parse().unwrap())
        )
    );
    let e = hcl("advertise_addr_wan = \"0.0.0.0\"").unwrap_err();
    assert!(e.to_string().contains("advertise_addr_wan"), "{e}");
}

#[test]
fn datacenter_names_are_lower_cased_as_consul_does() {
    let c = hcl("datacenter = \"DC2\"\nacl_datacenter = \"DC1\"").unwrap();
    assert_eq!(c.datacenter.as_str(), "dc2");
    assert_eq!(c.primary_datacenter.as_str(), "dc1");
    // acl_datacenter implicitly enables ACLs, as in Consul.
    assert!(c.acl.enabled);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("'acl_datacenter' field is deprecated"))
    );
}

#[test]
fn deprecated_spellings() {
    let c = hcl(r#"
        acl { tokens { master = "m" } }
        acl_replication_token = "r"
        acl_token = "d"
        acl_agent_token = "a"
        ca_file = "/ca.pem"
        verify_outgoing = true
        start_join_wan = ["p:8300"]
        retry_join_wan = ["q:8300"]
    "#)
    .unwrap();
    let t = &c.acl.tokens;
    assert_eq!(
        (
            t.initial_management.as_deref(),
            t.replication.as_deref(),
            t.default.as_deref(),
            t.agent.as_deref()
        ),
        (Some("m"), Some("r"), Some("d"), Some("a"))
    );
    // acl_replication_token turns token replication on, as in Consul.
    assert!(c.acl.enable_token_replication);
    assert_eq!(c.tls.ca_file.as_deref(), Some(Path::new("/ca.pem")));
    assert!(c.tls.verify_outgoing);
    assert_eq!(c.retry_join_wan, ["q:8300", "p:8300"]);
    // The current spelling wins in the same file, whatever the order.
    let c =
        hcl("acl { tokens { initial_management = \"new\" } }\nacl_master_token = \"old\"").unwrap();
    assert_eq!(c.acl.tokens.initial_management.as_deref(), Some("new"));
    let c = hcl("acl { tokens { initial_management = \"new\", master = \"old\" } }").unwrap();
    assert_eq!(c.acl.tokens.initial_management.as_deref(), Some("new"));
}

// === merging ===

#[test]
fn files_merge_in_order_then_dirs_in_lexical_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.hcl",
        r#"
        datacenter = "one"
        node_name = "n"
        acl { enabled = true, tokens { agent = "agent-a" } }
        retry_join_wan = ["a:8300"]
        service { name = "sa" }
    "#,
    );
    let b = write(
        dir.path(),
        "b.json",
        r#"{
        "datacenter": "two",
        "acl": {"default_policy": "deny", "tokens": {"default": "default-b"}},
        "retry_join_wan": ["b:8300"],
        "service": {"name": "sb"}
    }"#,
    );
    let conf = tempfile::tempdir().unwrap();
    write(
        conf.path(),
        "20-late.hcl",
        "datacenter = \"four\"\nservice { name = \"s20\" }",
    );
    write(
        conf.path(),
        "10-early.json",
        "{\"datacenter\": \"three\", \"log_level\": \"debug\"}",
    );

    let c = AgentConfig::load(&[a.clone(), b.clone()], &[]).unwrap();
    assert_eq!(c.datacenter.as_str(), "two");
    assert!(c.acl.enabled); // from a: blocks merge key by key
    assert_eq!(c.acl.default_policy, DefaultPolicy::Deny); // from b
    assert_eq!(c.acl.tokens.agent.as_deref(), Some("agent-a"));
    assert_eq!(c.acl.tokens.default.as_deref(), Some("default-b"));
    assert_eq!(c.retry_join_wan, ["a:8300", "b:8300"]); // lists accumulate
    assert_eq!(c.services.len(), 2);
    assert_eq!(
        (c.services[0].file.clone(), c.services[1].file.clone()),
        (a.clone(), b.clone())
    );

    let c = AgentConfig::load(&[b.clone(), a.clone()], &[]).unwrap();
    assert_eq!(c.datacenter.as_str(), "one");

    let c = AgentConfig::load(&[a, b], &[conf.path().to_path_buf()]).unwrap();
    assert_eq!(c.datacenter.as_str(), "four"); // 20-late.hcl after 10-early.json
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.services.len(), 3);
}

#[test]
fn repeated_blocks_in_one_file_merge() {
    let c = hcl(r#"
        acl { enabled = true }
        ports { http = 1 }
        acl { default_policy = "deny" }
        acl { tokens { agent = "x" } }
        acl { tokens { default = "y" } }
        ports { server = 2 }
        datacenter = "a"
        datacenter = "b"
    "#)
    .unwrap();
    assert!(c.acl.enabled);
    assert_eq!(c.acl.default_policy, DefaultPolicy::Deny);
    assert_eq!(c.acl.tokens.agent.as_deref(), Some("x"));
    assert_eq!(c.acl.tokens.default.as_deref(), Some("y"));
    assert_eq!(c.http_addr.unwrap().port(), 1);
    assert_eq!(c.server_addr.port(), 2);
    assert_eq!(c.datacenter.as_str(), "b");
    // JSON, and HCL's list-of-objects form of a block.
    let c = json(r#"{"acl": [{"enabled": true}, {"default_policy": "deny"}], "datacenter": "a", "datacenter": "b"}"#).unwrap();
    assert!(c.acl.enabled);
    assert_eq!(c.acl.default_policy, DefaultPolicy::Deny);
    assert_eq!(c.datacenter.as_str(), "b");
}

// === errors ===

#[test]
fn unknown_key_names_the_file_key_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "server.hcl",
        "datacenter = \"dc1\"\nacl {\n  enabled = true\n  tokenz { agent = \"x\" }\n}\n",
    );
    let e = AgentConfig::load(std::slice::from_ref(&f), &[]).unwrap_err();
    let ConfigError::UnknownKey {
        path,
        key,
        position,
        did_you_mean,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(path, &f);
    assert_eq!(key, "acl.tokenz");
    assert_eq!(*position, Some(Position { line: 4, column: 3 }));
    assert_eq!(did_you_mean.as_deref(), Some("acl.tokens"));
    let msg = e.to_string();
    assert!(
        msg.contains("server.hcl:4:3")
            && msg.contains("\"acl.tokenz\"")
            && msg.contains("did you mean \"acl.tokens\""),
        "{msg}"
    );

    let e = json("{\n  \"primary_datacentre\": \"x\"\n}").unwrap_err();
    assert!(
        matches!(&e, ConfigError::UnknownKey { key, position: Some(Position { line: 2, column: 3 }), did_you_mean: Some(d), .. }
            if key == "primary_datacentre" && d == "primary_datacenter"),
        "{e:?}"
    );
    let e = hcl("connect { ca_config { leaf_ttl = \"1h\" } }").unwrap_err();
    assert!(
        matches!(&e, ConfigError::UnknownKey { key, .. } if key == "connect.ca_config.leaf_ttl"),
        "{e:?}"
    );
    let e = hcl("totally_made_up = 1").unwrap_err();
    assert!(
        matches!(
            &e,
            ConfigError::UnknownKey {
                did_you_mean: None,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn wrong_types_are_refused_with_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "server = \"yes\"",
            "server",
            "expected a bool (true or false), found a string",
        ),
        (
            "ports { http = \"8500\" }",
            "ports.http",
            "expected a number, found a string",
        ),
        (
            "ports { http = 85.5 }",
            "ports.http",
            "expected a whole number",
        ),
        ("ports { http = 70000 }", "ports.http", "invalid port 70000"),
        ("ports { server = -1 }", "ports.server", "greater than zero"),
        (
            "retry_join_wan = \"a:8300\"",
            "retry_join_wan",
            "expected a list of strings",
        ),
        (
            "retry_join_wan = [\"provider=aws tag_key=x\"]",
            "retry_join_wan",
            "cloud auto-join",
        ),
        ("acl = true", "acl", "expected an object, found a bool"),
        (
            "acl { default_policy = \"maybe\" }",
            "acl.default_policy",
            "\"allow\" or \"deny\"",
        ),
        (
            "bind_addr = \"{{ GetPrivateIP }}\"",
            "bind_addr",
            "templates are not supported",
        ),
        (
            "client_addr = \"127.0.0.1 ::1\"",
            "client_addr",
            "one address",
        ),
        (
            "bind_addr = \"localhost\"",
            "bind_addr",
            "not an IP address",
        ),
        (
            "advertise_addr = \"0.0.0.0\"",
            "advertise_addr",
            "cannot be 0.0.0.0",
        ),
        ("datacenter = \"dc 1\"", "datacenter", "invalid datacenter"),
        ("log_level = \"loud\"", "log_level", "Invalid log level"),
        (
            "connect { ca_provider = \"vault\" }",
            "connect.ca_provider",
            "only the built-in \"consul\"",
        ),
        (
            "connect { ca_config { private_key = \"---\" } }",
            "connect.ca_config.private_key",
            "not supported",
        ),
        (
            "connect { ca_config { leaf_cert_ttl = \"3 days\" } }",
            "connect.ca_config.leaf_cert_ttl",
            "invalid duration",
        ),
        (
            "http_config { allow_write_http_from = [\"127.0.0.0/8\"] }",
            "http_config.allow_write_http_from",
            "cannot enforce",
        ),
        (
            "bootstrap_expect = -1",
            "bootstrap_expect",
            "greater than or equal to zero",
        ),
        ("data_dir = \"\"", "data_dir", "must not be empty"),
    ];
    for (text, want_key, want_msg) in cases {
        let e = hcl(text).unwrap_err();
        let ConfigError::InvalidValue {
            key,
            message,
            path,
            position,
        } = &e
        else {
            panic!("{text}: {e:?}")
        };
        assert_eq!(key, want_key, "{text}");
        assert!(message.contains(want_msg), "{text}: {message}");
        assert_eq!(path, Path::new("test.hcl"));
        assert!(position.is_some(), "{text}");
    }
    let e = json("{\"acl\": {\"enabled\": \"true\"}}").unwrap_err();
    assert_eq!(
        e.to_string(),
        "test.json:1:21: acl.enabled: expected a bool (true or false), found a string"
    );
}

#[test]
fn syntax_errors_have_a_line_and_column() {
    let cases: &[(&str, Format, usize, usize, &str)] = &[
        (
            "datacenter = \"dc1\n",
            Format::Hcl,
            1,
            14,
            "unterminated string",
        ),
        (
            "acl {\n  enabled = true\n",
            Format::Hcl,
            1,
            5,
            "unclosed '{'",
        ),
        (
            "acl {\n  enabled = yes\n}",
            Format::Hcl,
            2,
            13,
            "identifier",
        ),
        (
            "ports { http 8500 }",
            Format::Hcl,
            1,
            14,
            "expected '=', ':' or '{' after the key",
        ),
        (
            "service \"web\" x = 1",
            Format::Hcl,
            1,
            17,
            "expected '{' after the block labels",
        ),
        ("/* never closed", Format::Hcl, 1, 1, "unterminated comment"),
        ("x = [1, 2", Format::Hcl, 1, 5, "unclosed '['"),
        ("x = 0755", Format::Hcl, 1, 5, "octal"),
        (
            "{\n  \"datacenter\": \"dc1\",\n}",
            Format::Json,
            3,
            1,
            "a key in double quotes",
        ),
        ("{\"a\": 1} {\"b\": 2}", Format::Json, 1, 10, "end of file"),
        ("[]", Format::Json, 1, 1, "one object"),
        ("", Format::Json, 1, 1, "empty document"),
        ("{\"a\": \"\\q\"}", Format::Json, 1, 8, "invalid escape"),
        ("{\"a\": \"\\ud800\"}", Format::Json, 1, 8, "surrogate"),
        ("{\"é\": tru}", Format::Json, 1, 7, "a JSON value"),
    ];
    for (text, format, line, column, msg) in cases {
        let e = AgentConfig::from_str(text, *format, Path::new("f")).unwrap_err();
        let ConfigError::Syntax {
            line: l,
            column: c,
            message,
            ..
        } = &e
        else {
            panic!("{text:?}: {e:?}")
        };
        assert_eq!((*l, *c), (*line, *column), "{text:?}: {message}");
        assert!(message.contains(msg), "{text:?}: {message}");
    }
}

#[test]
fn nesting_too_deep_is_refused() {
    let deep_ok = format!(
        "{}{}",
        "{\"a\":".repeat(MAX_DEPTH + 1),
        "{}".to_owned() + &"}".repeat(MAX_DEPTH + 1)
    );
    // The root object is level 0: MAX_DEPTH objects inside it parse (then fail as unknown keys).
    let e = json(&format!(
        "{}1{}",
        "{\"a\":".repeat(MAX_DEPTH + 1),
        "}".repeat(MAX_DEPTH + 1)
    ))
    .unwrap_err();
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");
    let e = json(&deep_ok).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::TooDeep {
                line: 1,
                max: MAX_DEPTH,
                ..
            }
        ),
        "{e:?}"
    );
    let e = hcl(&format!(
        "{}{}",
        "a {".repeat(MAX_DEPTH + 1),
        "}".repeat(MAX_DEPTH + 1)
    ))
    .unwrap_err();
    assert!(matches!(e, ConfigError::TooDeep { .. }), "{e:?}");
    let e = hcl(&format!(
        "x = {}{}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    ))
    .unwrap_err();
    assert!(
        matches!(e, ConfigError::TooDeep { line: 1, column, .. } if column == 5 + MAX_DEPTH),
        "{e:?}"
    );
    let labels = "a ".repeat(MAX_DEPTH + 5);
    let e = hcl(&format!("{labels}{{}}")).unwrap_err();
    assert!(matches!(e, ConfigError::TooDeep { .. }), "{e:?}");
    assert!(e.to_string().contains("nested deeper than 64 levels"));
}

#[test]
fn files_too_large_are_refused() {
    let big = format!("# {}\n", "x".repeat(MAX_FILE_SIZE as usize));
    let e = hcl(&big).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::TooLarge {
                max: MAX_FILE_SIZE,
                ..
            }
        ),
        "{e:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "big.hcl", &big);
    let e = AgentConfig::load(std::slice::from_ref(&f), &[]).unwrap_err();
    let ConfigError::TooLarge { path, size, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!((path, *size), (&f, big.len() as u64));
    assert!(e.to_string().contains("big.hcl") && e.to_string().contains("1048576"));
    // Just under the limit loads.
    let fits = format!("#{}", "x".repeat(MAX_FILE_SIZE as usize - 1));
    assert!(hcl(&fits).is_ok());
}

#[test]
fn unreadable_and_non_utf8_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.hcl");
    let e = AgentConfig::load(std::slice::from_ref(&missing), &[]).unwrap_err();
    assert!(
        matches!(&e, ConfigError::Read { path, .. } if *path == missing),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("reading {}", missing.display()))
    );
    let e = AgentConfig::load(&[], std::slice::from_ref(&missing)).unwrap_err();
    assert!(matches!(&e, ConfigError::Read { .. }), "{e:?}");
    let f = dir.path().join("latin1.hcl");
    std::fs::write(&f, b"datacenter = \"dc1\"\nnode_name = \"caf\xe9\"\n").unwrap();
    let e = AgentConfig::load(&[f], &[]).unwrap_err();
    assert!(
        matches!(
            &e,
            ConfigError::Syntax {
                line: 2,
                column: 17,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn rules_across_settings() {
    let e = hcl("primary_gateways = [\"gw:8443\"]").unwrap_err();
    assert!(
        matches!(&e, ConfigError::InvalidValue { key, .. } if key == "primary_gateways"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("should only be configured in a secondary datacenter")
    );
    let e =
        hcl("connect { enabled = false, enable_mesh_gateway_wan_federation = true }").unwrap_err();
    assert!(
        e.to_string().contains("requires 'connect.enabled=true'"),
        "{e}"
    );
    // HTTPS without files: a certificate from the mesh CA, so Connect must be on.
    let c = hcl("ports { https = 8501 }").unwrap();
    assert_eq!(c.https_addr, Some("127.0.0.1:8501".parse().unwrap()));
    let e = hcl("ports { https = 8501 }\nconnect { enabled = false }").unwrap_err();
    assert!(
        matches!(&e, ConfigError::Missing { key, .. } if key == "tls.defaults.cert_file"),
        "{e:?}"
    );
    let e = hcl("tls { defaults { cert_file = \"c\" } }").unwrap_err();
    assert!(
        matches!(&e, ConfigError::Missing { key, .. } if key == "tls.defaults.key_file"),
        "{e:?}"
    );
    let e = hcl("tls { https { verify_incoming = true } }").unwrap_err();
    assert!(
        matches!(&e, ConfigError::Missing { key, .. } if key == "tls.defaults.ca_file"),
        "{e:?}"
    );
    // tls.https overrides tls.defaults for the HTTPS API.
    let c = hcl(r#"tls {
        defaults { ca_file = "ca", cert_file = "c", key_file = "k", verify_incoming = false }
        https { verify_incoming = true, cert_file = "https-c" }
    }"#)
    .unwrap();
    assert!(c.tls.verify_incoming);
    assert_eq!(c.tls.cert_file.as_deref(), Some(Path::new("https-c")));
    assert_eq!(c.tls.key_file.as_deref(), Some(Path::new("k")));

    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "ca.hcl",
        "connect { ca_config { leaf_cert_ttl = \"30m\" } }",
    );
    let e = AgentConfig::load(std::slice::from_ref(&f), &[]).unwrap_err();
    let ConfigError::Ca { path, source } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(path, &f);
    assert_eq!(
        source.to_string(),
        "leaf cert TTL must be greater or equal than 1h0m0s"
    );
    assert!(
        e.to_string()
            .contains("ca.hcl: connect.ca_config: leaf cert TTL")
    );
    let e = hcl("connect { ca_config { private_key_bits = 521 } }").unwrap_err();
    assert!(e.to_string().contains("P-521"), "{e}");
}

// === secrets ===

#[test]
fn debug_never_shows_a_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(data("guide/socat.json"), dir.path().join("socat.json")).unwrap();
    let c = AgentConfig::load(
        &[data("primary/server.hcl"), data("secondary/server.json")],
        &[dir.path().to_path_buf()],
    )
    .unwrap();
    let c2 = hcl(r#"acl { tokens { default = "d3fault-s3cret", replication = "r-s3cret", master = "m-s3cret" } }
        acl_agent_token = "a-s3cret""#).unwrap();
    for debug in [
        format!("{c:?}"),
        format!("{c:#?}"),
        format!("{c2:?}"),
        format!("{:?}", c.datacenter_config().unwrap()),
    ] {
        for secret in [
            "b1gs33cr3t",
            "agent-token",
            "r3pl1cat10n",
            "<token here>",
            "s3cret",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }
    assert!(format!("{c:?}").contains("<redacted>"));
    // Errors about tokens say what is wrong, not what was written.
    let e = hcl("acl { tokens { replication = 12345678 } }").unwrap_err();
    assert!(!e.to_string().contains("12345678"), "{e}");
    let e = hcl("acl { tokens { replicaton = \"s3cret\" } }").unwrap_err();
    assert!(
        !e.to_string().contains("s3cret")
            && e.to_string()
                .contains("did you mean \"acl.tokens.replication\""),
        "{e}"
    );
}

// === HCL forms ===

#[test]
fn hcl_forms_consul_configs_use() {
    // PRIVATE_KEY_BITS: Consul matches CamelCase field names in any case, not snake_case ones.
    let e = hcl("connect { ca_config { PRIVATE_KEY_BITS = 256 } }").unwrap_err();
    assert!(
        matches!(&e, ConfigError::UnknownKey { key, .. } if key == "connect.ca_config.PRIVATE_KEY_BITS"),
        "{e:?}"
    );
    let c = hcl(r#"
        # comment
        // comment
        /* block
           comment */
        "datacenter" = "dc2"
        node_name: "n1"
        ports = { http = 0x2134, "https": -1 }
        acl "tokens" { agent = "a\u00e9\t\"q\"" }
        connect { ca_config = { LeafCertTTL = "48h", PrivateKeyBits = "256", csr_max_per_second = "12.5", SkipValidate = "false" } }
        retry_join_wan = [
          "a:8300", # trailing comment
          "b:8300",
        ]
        service {
          name = "web"
          meta = { note = <<EOF
multi
line
EOF
          }
          tags = [<<-EOT
            indented
              more
            EOT
          ]
        }
    "#)
    .unwrap();
    assert_eq!(c.datacenter.as_str(), "dc2");
    assert_eq!(c.node_name, "n1");
    assert_eq!(c.http_addr.unwrap().port(), 0x2134);
    assert_eq!(c.acl.tokens.agent.as_deref(), Some("aé\t\"q\""));
    assert_eq!(c.ca_config.leaf_cert_ttl.as_secs(), 48 * 3600);
    assert!((c.ca_config.csr_max_per_second - 12.5).abs() < f64::EPSILON);
    assert_eq!(c.retry_join_wan, ["a:8300", "b:8300"]);
    let s: serde_json::Value = serde_json::from_str(&c.services[0].json).unwrap();
    assert_eq!(s["service"]["meta"]["note"], "multi\nline\n");
    assert_eq!(s["service"]["tags"][0], "indented\n  more\n");
}

#[test]
fn ignored_consul_settings_warn_once_per_file() {
    let c = hcl(r#"
        ui_config { enabled = true }
        ui_config { dir = "/ui" }
        encrypt = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
        telemetry { prometheus_retention_time = "24h" }
        ports { grpc = 8502, serf_lan = 8301 }
        connect { ca_config { address = "https://vault:8200", token = "vault-s3cret" } }
        tls { internal_rpc { verify_server_hostname = true } }
        verify_server_hostname = true
    "#)
    .unwrap();
    let keys: Vec<_> = c.warnings.iter().filter_map(|w| w.key.as_deref()).collect();
    assert_eq!(
        keys,
        [
            "ui_config",
            "encrypt",
            "telemetry",
            "ports.grpc",
            "ports.serf_lan",
            "connect.ca_config.address",
            "connect.ca_config.token",
            "tls.internal_rpc.verify_server_hostname",
            "verify_server_hostname"
        ]
    );
    let all = c
        .warnings
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !all.contains("vault-s3cret") && !all.contains("c2VjcmV0"),
        "{all}"
    );
    assert_eq!(
        c.warnings[0].position,
        Some(Position { line: 2, column: 9 })
    );
    assert_eq!(
        c.warnings[4].position,
        Some(Position {
            line: 6,
            column: 30
        })
    );
}

#[test]
fn storage_etcd_block_is_read_checked_and_defaulted() {
    let c = hcl(r#"datacenter = "dc1"
storage {
  etcd {
    endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    state_key_file = "/etc/mesh/state.key"
  }
}"#)
    .unwrap();
    let etcd = c.etcd.clone().unwrap();
    assert_eq!(etcd.endpoints.len(), 2);
    assert_eq!(etcd.prefix, "mesh/dc1");
    assert_eq!(etcd.lease_ttl, std::time::Duration::from_secs(5));
    assert_eq!(
        etcd.state_key_file.as_deref(),
        Some(Path::new("/etc/mesh/state.key"))
    );
    // A misspelled key is refused with a suggestion; a lease under 2s, an empty member list
    // and a missing state key (with Connect on) are refused.
    let e = hcl(r#"storage { etcd { endpoint = ["http://a:2379"] } }"#).unwrap_err();
    assert!(e.to_string().contains("endpoints"), "{e}");
    let e = hcl(r#"storage { etcd {
  endpoints = ["http://a:2379"]
  state_key_file = "/k"
  lease_ttl = "500ms"
} }"#)
    .unwrap_err();
    assert!(e.to_string().contains("at least 2s"), "{e}");
    let e = hcl(r#"storage { etcd { endpoints = [] state_key_file = "/k" } }"#).unwrap_err();
    assert!(e.to_string().contains("at least one member"), "{e}");
    let e = hcl(r#"storage { etcd { endpoints = ["http://a:2379"] } }"#).unwrap_err();
    assert!(e.to_string().contains("storage.etcd.state_key_file"), "{e}");
    let e = hcl(r#"storage { disk { path = "/x" } }"#).unwrap_err();
    assert!(e.to_string().contains("storage"), "{e}");

    // TLS to etcd: https:// endpoints with the CA, a client certificate with its key.
    let c = hcl(r#"storage { etcd {
  endpoints = ["https://10.0.0.1:2379"]
  state_key_file = "/k"
  ca_file = "/etc/etcd/ca.pem"
  cert_file = "/etc/etcd/client.pem"
  key_file = "/etc/etcd/client.key"
} }"#)
    .unwrap();
    let etcd = c.etcd.unwrap();
    assert_eq!(etcd.ca_file.as_deref(), Some(Path::new("/etc/etcd/ca.pem")));
    // The same settings read from files, merged as the agent merges them.
    let dir = tempfile::tempdir().unwrap();
    let first = write(dir.path(), "a.hcl", r#"datacenter = "dc1""#);
    let second = write(
        dir.path(),
        "b.hcl",
        r#"storage { etcd {
  endpoints = ["https://10.0.0.1:2379"]
  state_key_file = "/k"
  ca_file = "/ca.pem"
  cert_file = "/c.pem"
  key_file = "/c.key"
} }"#,
    );
    let merged = AgentConfig::load(&[first, second], &[])
        .unwrap()
        .etcd
        .unwrap();
    assert_eq!(
        (merged.ca_file, merged.cert_file, merged.key_file),
        (
            Some("/ca.pem".into()),
            Some("/c.pem".into()),
            Some("/c.key".into())
        )
    );
    assert_eq!(
        etcd.key_file.as_deref(),
        Some(Path::new("/etc/etcd/client.key"))
    );
    for (text, names) in [
        // https without a CA, a CA without https: neither half of TLS alone.
        (
            r#"endpoints = ["https://a:2379"] state_key_file = "/k""#,
            "storage.etcd.ca_file",
        ),
        (
            r#"endpoints = ["http://a:2379"] state_key_file = "/k" ca_file = "/ca""#,
            "storage.etcd.ca_file",
        ),
        (
            r#"endpoints = ["https://a:2379"] state_key_file = "/k" ca_file = "/ca" cert_file = "/c""#,
            "storage.etcd.cert_file",
        ),
    ] {
        let e = hcl(&format!("storage {{ etcd {{ {text} }} }}")).unwrap_err();
        assert!(e.to_string().contains(names), "{text}: {e}");
    }
}

#[cfg(not(feature = "etcd"))]
#[test]
fn storage_etcd_in_a_build_without_etcd_is_refused_when_the_datacenter_is_configured() {
    let c =
        hcl(r#"storage { etcd { endpoints = ["http://a:2379"] state_key_file = "/k" } }"#).unwrap();
    let e = c.datacenter_config().unwrap_err();
    assert!(e.to_string().contains("without etcd support"), "{e}");
}
