//! `mesh agent` as a process: start-up that fails fast and says why, a restart on the same
//! data dir, and `mesh reload` re-reading service files from the config dir.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

#[test]
fn a_secondary_with_a_wrong_replication_token_fails_start_up_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let primary = start_primary(dir.path(), "primary");
    let (s_http, s_server) = (free_port(), free_port());
    let text = failed_start(
        dir.path(),
        "secondary",
        &agent_hcl(
            "secondary",
            &dir.path().join("s"),
            s_http,
            s_server,
            Some(primary.server),
            Some("00000000-0000-4000-8000-000000000000"),
        ),
    );
    assert!(text.contains("refused the replication token"), "{text}");
    assert!(
        !text.contains("00000000-0000-4000-8000-000000000000"),
        "the token is not logged: {text}"
    );
}

#[test]
fn a_secondary_whose_primary_datacenter_does_not_match_fails_start_up_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let primary = start_primary(dir.path(), "primary");
    // A secondary that believes the primary is "elsewhere", pointed at the real primary's
    // server, with a token that may replicate (management).
    let (s_http, s_server) = (free_port(), free_port());
    let hcl = agent_hcl(
        "secondary",
        &dir.path().join("s"),
        s_http,
        s_server,
        Some(primary.server),
        Some(MGMT),
    )
    .replace(
        r#"primary_datacenter = "primary""#,
        r#"primary_datacenter = "elsewhere""#,
    );
    let text = failed_start(dir.path(), "secondary", &hcl);
    assert!(
        text.contains("\"elsewhere\"") && text.contains("the primary of datacenter \"primary\""),
        "{text}"
    );
}

#[test]
fn a_primary_restarts_on_its_data_dir_and_reload_reads_new_service_files() {
    let dir = tempfile::tempdir().unwrap();
    let (http, server) = (free_port(), free_port());
    let data = dir.path().join("data");
    let hcl = agent_hcl("primary", &data, http, server, None, None);
    let mut first = start_agent(dir.path(), "primary", &hcl, http, server);
    // Stop it (SIGTERM) and start again on the same data dir.
    let _ = Command::new("kill")
        .args(["-TERM", &first.child.id().to_string()])
        .status();
    let status =
        wait_exit(&mut first, Duration::from_secs(30)).expect("the agent stops on SIGTERM");
    assert!(status.success(), "{:?}", log_lines(&first.log));
    drop(first);
    let second = start_agent(dir.path(), "primary-again", &hcl, http, server);
    let (code, body) = http_get(second.http, "/v1/status/leader").unwrap();
    assert_eq!(code, 200, "{body}");
    drop(second);

    // A config dir with one service file; a second file appears, `mesh reload` registers it.
    let conf = dir.path().join("conf.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("agent.hcl"), &hcl).unwrap();
    std::fs::write(
        conf.join("socat.json"),
        format!(
            r#"{{"service": {{"name": "socat", "port": 8181, "token": "{MGMT}",
                "connect": {{"sidecar_service": {{}}}}}}}}"#
        ),
    )
    .unwrap();
    let agent = spawn_agent(
        dir.path(),
        "dir-agent",
        &["-config-dir".as_ref(), conf.as_os_str()],
        http,
        server,
    );
    let services = |a: &Agent| {
        let mut s = String::new();
        for _ in 0..200 {
            if let Some((200, body)) = http_get(a.http, &format!("/v1/agent/services?token={MGMT}"))
            {
                s = body;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    };
    let before = services(&agent);
    assert!(before.contains("socat-sidecar-proxy"), "{before}");
    assert!(!before.contains("\"web\""), "{before}");
    std::fs::write(
        conf.join("web.json"),
        format!(r#"{{"service": {{"name": "web", "port": 8080, "token": "{MGMT}"}}}}"#),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mesh"))
        .args([
            "reload",
            "-http-addr",
            &agent.http.to_string(),
            "-token",
            MGMT,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = services(&agent);
    assert!(after.contains("\"web\""), "{after}");
}

/// curl, a third-party client, against a running agent: the metrics endpoint in
/// Prometheus text and the error statuses of the API with their bodies.
#[test]
fn curl_reads_metrics_and_error_statuses_from_a_running_agent() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start_primary(dir.path(), "primary");
    let base = format!("http://{}", agent.http);
    let curl = |args: &[&str]| -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl runs (apt-get install curl)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.trim().parse().unwrap(), body.to_owned())
    };
    let token = format!("X-Consul-Token: {MGMT}");

    // A few requests, then the metrics that count them.
    let (code, _) = curl(&["-H", &token, &format!("{base}/v1/agent/services")]);
    assert_eq!(code, 200);
    let (code, body) = curl(&[
        "-H",
        &token,
        &format!("{base}/v1/agent/metrics?format=prometheus"),
    ]);
    assert_eq!(code, 200, "{body}");
    let line = body
        .lines()
        .find(|l| l.starts_with("mesh_http_requests_total{") && l.contains("200"))
        .unwrap_or_else(|| panic!("no request counter in:\n{body}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value >= 1.0, "{line}");
    assert!(body.contains("# TYPE mesh_acl_decisions"), "{body}");

    // 403 with Consul's text: no token under default deny, and an unknown token.
    let (code, body) = curl(&[&format!("{base}/v1/acl/policies")]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("Permission denied"), "{body}");
    let (code, body) = curl(&[
        "-H",
        "X-Consul-Token: 5d6c5e2a-0000-4000-8000-000000000000",
        &format!("{base}/v1/acl/policies"),
    ]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("ACL not found"), "{body}");
    // 404 for an unknown path and an unknown policy; 405 for a wrong method.
    let (code, _) = curl(&["-H", &token, &format!("{base}/v1/no/such/path")]);
    assert_eq!(code, 404);
    let (code, _) = curl(&[
        "-H",
        &token,
        &format!("{base}/v1/acl/policy/00000000-0000-4000-8000-000000000000"),
    ]);
    assert_eq!(code, 404);
    let (code, _) = curl(&[
        "-X",
        "POST",
        "-H",
        &token,
        &format!("{base}/v1/agent/services"),
    ]);
    assert_eq!(code, 405);
    // 400 for malformed JSON, nothing written; 413 past the body limit.
    let (code, body) = curl(&[
        "-X",
        "PUT",
        "-H",
        &token,
        "--data",
        "{\"Name\": ",
        &format!("{base}/v1/acl/policy"),
    ]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("decoding failed"), "{body}");
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 2 << 20]).unwrap();
    let (code, _) = curl(&[
        "-X",
        "PUT",
        "-H",
        &token,
        "--data-binary",
        &format!("@{}", big.display()),
        &format!("{base}/v1/acl/policy"),
    ]);
    assert_eq!(code, 413);
    let (code, body) = curl(&["-H", &token, &format!("{base}/v1/acl/policies")]);
    assert_eq!(code, 200);
    let names: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["global-management"], "nothing half-written");
}

/// HTTPS with no certificate files: the agent serves a certificate from its mesh CA, which
/// curl accepts with the mesh root as its CA and openssl shows with the agent's SPIFFE ID.
#[test]
fn https_serves_a_certificate_from_the_mesh_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (http, server, https) = (free_port(), free_port(), free_port());
    let hcl = agent_hcl(
        "primary",
        &dir.path().join("data"),
        http,
        server,
        None,
        None,
    )
    .replace(
        &format!("  server = {server}\n"),
        &format!("  server = {server}\n  https = {https}\n"),
    );
    assert!(hcl.contains("https ="), "{hcl}");
    let agent = start_agent(dir.path(), "primary", &hcl, http, server);
    let (code, roots) =
        http_get(agent.http, &format!("/v1/connect/ca/roots?token={MGMT}")).unwrap();
    assert_eq!(code, 200, "{roots}");
    let roots: serde_json::Value = serde_json::from_str(&roots).unwrap();
    let ca = dir.path().join("root.pem");
    std::fs::write(&ca, roots["Roots"][0]["RootCert"].as_str().unwrap()).unwrap();

    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .arg(format!("https://127.0.0.1:{https}/v1/status/leader"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("\"127.0.0.1:{server}\"")
    );

    // Without the mesh root, curl refuses the certificate.
    let out = Command::new("curl")
        .args([
            "-sS",
            &format!("https://127.0.0.1:{https}/v1/status/leader"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{https}"),
            "-CAfile",
        ])
        .arg(&ca)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    let pem_start = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let pem_end = text.find("-----END CERTIFICATE-----").unwrap() + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    x509.stdin
        .take()
        .unwrap()
        .write_all(text[pem_start..pem_end].as_bytes())
        .unwrap();
    let sans = String::from_utf8(x509.wait_with_output().unwrap().stdout).unwrap();
    assert!(
        sans.contains("/agent/client/dc/primary/id/primary-server-1"),
        "{sans}"
    );
    assert!(sans.contains("127.0.0.1"), "{sans}");
}
