//! The command lines of the guide, exactly as it writes them, and the help and usage rules
//! every command follows.

use clap::CommandFactory;

use super::acl::AclCommand;
use super::*;

/// The command lines of the guide (Consul's tutorial on connecting services across
/// datacenters with mesh gateways, whose files are in `testdata/guide/`) that this CLI owns,
/// as written there: a `$ consul` prompt, backslash-newline continuations, double quotes.
/// (`consul connect envoy …` belongs to the `connect` extension point.)
const GUIDE_LINES: &[&str] = &[
    "$ consul leave",
    "$ consul acl policy create \\\n-name mesh-gateway \\\n-rules @mesh-gateway-policy.json",
    "$ consul acl token create -description \"mesh-gateway primary datacenter token\" \\\n-policy-name mesh-gateway",
    "$ consul acl token create \\\n-description \"mesh-gateway secondary datacenter token\" \\\n-policy-name mesh-gateway",
    "$ consul config write proxy-defaults.json",
    "$ consul reload",
    "$ consul intention create web socat",
];

/// A shell's words of `line` (quotes, backslash-newline), with `consul` renamed `mesh`.
fn words(line: &str) -> Vec<OsString> {
    let line = line.trim_start_matches("$ ").replace("\\\n", " ");
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    if out.first().map(String::as_str) == Some("consul") {
        out[0] = "mesh".to_owned();
    }
    out.into_iter().map(OsString::from).collect()
}

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(argv::go_style(args.iter().map(OsString::from)))
}

fn parse_line(line: &str) -> Cli {
    Cli::try_parse_from(argv::go_style(words(line)))
        .unwrap_or_else(|e| panic!("{line:?} does not parse:\n{e}"))
}

#[test]
fn the_command_definitions_are_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn every_guide_line_parses() {
    for line in GUIDE_LINES {
        parse_line(line);
    }
}

#[test]
fn the_guide_policy_create() {
    let Command::Acl {
        command: AclCommand::Policy { command },
    } = parse_line(GUIDE_LINES[1]).command
    else {
        panic!("not acl policy");
    };
    let text = format!("{command:?}");
    assert!(text.contains("name: \"mesh-gateway\""), "{text}");
    assert!(
        text.contains("rules: Some(\"@mesh-gateway-policy.json\")"),
        "{text}"
    );
}

#[test]
fn the_guide_token_creates() {
    for (line, description) in [
        (GUIDE_LINES[2], "mesh-gateway primary datacenter token"),
        (GUIDE_LINES[3], "mesh-gateway secondary datacenter token"),
    ] {
        let text = format!("{:?}", parse_line(line).command);
        assert!(
            text.contains(&format!("description: {description:?}")),
            "{text}"
        );
        assert!(text.contains("policy_name: [\"mesh-gateway\"]"), "{text}");
        assert!(text.contains("local: false"), "{text}");
    }
}

#[test]
fn the_guide_config_write_and_intention() {
    let text = format!("{:?}", parse_line(GUIDE_LINES[4]).command);
    assert!(text.contains("file: \"proxy-defaults.json\""), "{text}");
    let text = format!("{:?}", parse_line(GUIDE_LINES[6]).command);
    assert!(
        text.contains("source: \"web\"") && text.contains("destination: \"socat\""),
        "{text}"
    );
    assert!(text.contains("deny: false"), "{text}");
}

#[test]
fn token_flags_in_every_spelling() {
    for args in [
        &["mesh", "acl", "policy", "list", "-token=abc"][..],
        &["mesh", "acl", "policy", "list", "-token", "abc"],
        &["mesh", "acl", "policy", "list", "--token", "abc"],
        &["mesh", "acl", "policy", "list", "--token=abc"],
    ] {
        let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Command::Acl {
            command: AclCommand::Policy { command },
        } = cli.command
        else {
            panic!("{args:?}");
        };
        // The token parsed, and it does not show in Debug.
        let text = format!("{command:?}");
        assert!(text.contains("token: Some(<redacted>)"), "{text}");
        assert!(!text.contains("abc"), "{text}");
    }
}

#[test]
fn common_http_flags_on_an_api_command() {
    let cli = parse(&[
        "mesh",
        "intention",
        "check",
        "-http-addr=https://127.0.0.1:8501",
        "-token-file",
        "/t",
        "-ca-file=/ca.pem",
        "-datacenter",
        "secondary",
        "web",
        "socat",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let text = format!("{:?}", cli.command);
    for part in [
        "http_addr: Some(\"https://127.0.0.1:8501\")",
        "token_file: Some(\"/t\")",
        "ca_file: Some(\"/ca.pem\")",
        "datacenter: Some(\"secondary\")",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
}

#[test]
fn agent_flags_repeat() {
    let cli = parse(&[
        "mesh",
        "agent",
        "-config-file",
        "a.hcl",
        "-config-file=b.json",
        "-config-dir",
        "/etc/mesh.d",
        "-log-level=debug",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let Command::Agent(args) = cli.command else {
        panic!("not agent");
    };
    assert_eq!(
        args.config_file,
        ["a.hcl", "b.json"].map(std::path::PathBuf::from)
    );
    assert_eq!(args.config_dir, [std::path::PathBuf::from("/etc/mesh.d")]);
    assert_eq!(args.log_level.as_deref(), Some("debug"));
}

#[test]
fn go_booleans_take_no_separate_value() {
    // `-deny web socat`: web is the source, not the flag's value.
    let text = format!(
        "{:?}",
        parse(&["mesh", "intention", "create", "-deny", "web", "socat"])
            .unwrap_or_else(|e| panic!("{e}"))
            .command
    );
    assert!(
        text.contains("deny: true") && text.contains("source: \"web\""),
        "{text}"
    );
    let text = format!(
        "{:?}",
        parse(&[
            "mesh",
            "acl",
            "token",
            "create",
            "-local=false",
            "-policy-name",
            "p"
        ])
        .unwrap_or_else(|e| panic!("{e}"))
        .command
    );
    assert!(text.contains("local: false"), "{text}");
    assert!(parse(&["mesh", "acl", "token", "create", "-local=maybe"]).is_err());
    assert!(parse(&["mesh", "intention", "create", "-allow", "-deny", "a", "b"]).is_err());
}

#[test]
fn every_other_command_line_parses() {
    let lines: &[&[&str]] = &[
        &["mesh", "members"],
        &["mesh", "members", "-wan"],
        &["mesh", "operator", "raft", "list-peers"],
        &["mesh", "acl", "bootstrap"],
        &["mesh", "acl", "policy", "list", "-format=json"],
        &["mesh", "acl", "policy", "read", "-name", "mesh-gateway"],
        &["mesh", "acl", "policy", "read", "-id", "e359bd81"],
        &[
            "mesh", "acl", "policy", "update", "-id", "e359", "-rules", "@r.hcl",
        ],
        &[
            "mesh",
            "acl",
            "policy",
            "update",
            "-name",
            "x",
            "-description",
            "d",
        ],
        &["mesh", "acl", "policy", "delete", "-name", "mesh-gateway"],
        &[
            "mesh",
            "acl",
            "token",
            "create",
            "-description",
            "d",
            "-policy-name",
            "a",
            "-policy-name",
            "b",
            "-service-identity",
            "web:dc1",
        ],
        &[
            "mesh",
            "acl",
            "token",
            "create",
            "-role-name",
            "r",
            "-policy-id",
            "x",
            "-local",
        ],
        &["mesh", "acl", "token", "list"],
        &["mesh", "acl", "token", "read", "-id", "6a12"],
        &["mesh", "acl", "token", "read", "-self"],
        &[
            "mesh",
            "acl",
            "token",
            "update",
            "-id",
            "6a12",
            "-append-policy-name",
            "p",
        ],
        &["mesh", "acl", "token", "delete", "-id", "6a12"],
        &[
            "mesh",
            "acl",
            "role",
            "create",
            "-name",
            "r",
            "-policy-name",
            "p",
        ],
        &["mesh", "acl", "role", "list"],
        &["mesh", "acl", "role", "read", "-name", "r"],
        &["mesh", "acl", "role", "delete", "-id", "r1"],
        &[
            "mesh",
            "config",
            "read",
            "-kind",
            "proxy-defaults",
            "-name",
            "global",
        ],
        &["mesh", "config", "list", "-kind", "proxy-defaults"],
        &[
            "mesh",
            "config",
            "delete",
            "-kind",
            "proxy-defaults",
            "-name",
            "global",
        ],
        &["mesh", "config", "write", "-cas", "-modify-index=5", "-"],
        &["mesh", "services", "register", "socat.json"],
        &[
            "mesh", "services", "register", "-name", "web", "-port", "8080", "-tag", "v1",
        ],
        &["mesh", "services", "deregister", "-id", "socat"],
        &["mesh", "services", "deregister", "socat.json"],
        &[
            "mesh",
            "intention",
            "create",
            "-deny",
            "-replace",
            "web",
            "socat",
        ],
        &["mesh", "intention", "check", "web", "socat"],
        &["mesh", "intention", "get", "web", "socat"],
        &[
            "mesh",
            "intention",
            "get",
            "0b9d1c5e-0000-0000-0000-000000000000",
        ],
        &["mesh", "intention", "delete", "web", "socat"],
        &["mesh", "intention", "list"],
        &["mesh", "intention", "match", "-source", "web"],
        &["mesh", "intention", "match", "-destination", "socat"],
        &["mesh", "intention", "match", "socat"],
        &["mesh", "ca", "roots"],
        &["mesh", "ca", "roots", "-pem"],
        &["mesh", "connect", "ca", "get-config"],
        &[
            "mesh",
            "connect",
            "ca",
            "set-config",
            "-config-file",
            "ca.json",
        ],
        &["mesh", "version"],
    ];
    for args in lines {
        if let Err(e) = parse(args) {
            panic!("{args:?} does not parse:\n{e}");
        }
    }
}

#[test]
fn usage_errors() {
    for args in [
        &["mesh", "bogus"][..],
        &["mesh", "acl", "policy", "create"],
        &["mesh", "acl", "policy", "read"],
        &["mesh", "intention", "check", "web"],
        &["mesh", "intention", "get", "a", "b", "c"],
        &["mesh", "config", "write"],
        &["mesh", "members", "-nope"],
        &["mesh", "acl", "policy", "read", "-id", "a", "-name", "b"],
    ] {
        assert!(parse(args).is_err(), "{args:?} parses");
    }
}

/// Every command path: `["acl", "policy", "create"]`, …, including the groups.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_owned());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = vec![Vec::new()];
    walk(&Cli::command(), &[], &mut out);
    out
}

#[test]
fn every_command_has_help_in_three_spellings() {
    let paths = command_paths();
    assert!(paths.len() > 40, "{}", paths.len());
    for path in paths {
        for help in ["--help", "-help", "-h"] {
            let mut args = vec!["mesh".to_owned()];
            args.extend(path.iter().cloned());
            args.push(help.to_owned());
            let err = Cli::try_parse_from(argv::go_style(args.iter().map(OsString::from)))
                .err()
                .unwrap_or_else(|| panic!("{args:?} did not ask for help"));
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::DisplayHelp,
                "{args:?}: {err}"
            );
        }
    }
}

#[test]
fn exit_codes_of_usage() {
    let run = |args: &[&str]| main(args.iter().map(OsString::from).collect());
    assert_eq!(run(&["mesh", "-help"]), 0);
    assert_eq!(run(&["mesh", "acl", "token", "create", "--help"]), 0);
    assert_eq!(run(&["mesh", "-version"]), 0);
    assert_eq!(run(&["mesh", "bogus"]), 1);
    assert_eq!(run(&["mesh"]), 1);
    assert_eq!(run(&["mesh", "acl"]), 1);
    assert_eq!(run(&["mesh", "intention", "check", "web"]), 1);
}

#[test]
fn api_errors_exit_1_and_name_what_failed() {
    // Nothing listens on port 1: the command reports the connection failure.
    let failure = Failure::new(
        "creating policy",
        mesh::client::ClientError::Status {
            op: "PUT /v1/acl/policy".into(),
            status: 403,
            body: "ACL not found".into(),
        },
    );
    assert_eq!(
        failure.message(),
        "Error creating policy: PUT /v1/acl/policy: Unexpected response code: 403 (ACL not found)"
    );
    let code = main(
        ["mesh", "members", "-http-addr=127.0.0.1:1"]
            .iter()
            .map(OsString::from)
            .collect(),
    );
    assert_eq!(code, 1);
}

#[test]
fn guide_words_are_split_as_a_shell_does() {
    assert_eq!(
        words(GUIDE_LINES[2]),
        [
            "mesh",
            "acl",
            "token",
            "create",
            "-description",
            "mesh-gateway primary datacenter token",
            "-policy-name",
            "mesh-gateway"
        ]
        .map(OsString::from)
    );
}
