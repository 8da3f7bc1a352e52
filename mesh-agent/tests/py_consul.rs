//! The guide's control-plane steps, driven by py-consul 1.8.0 (a third-party client)
//! against two `mesh agent` processes: a primary and a secondary that replicates from it.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use support::*;

#[test]
fn py_consul_drives_the_guide_across_two_agents() {
    let dir = tempfile::tempdir().unwrap();
    let guide = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/guide");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/py/guide_control_plane.py"
    );
    let (p_http, p_server) = (free_port(), free_port());
    let primary = start_agent(
        dir.path(),
        "primary",
        &agent_hcl(
            "primary",
            &dir.path().join("primary-data"),
            p_http,
            p_server,
            None,
            None,
        ),
        p_http,
        p_server,
    );
    let env = |extra: Vec<(&'static str, String)>| {
        let mut v = vec![
            ("GUIDE_DIR", guide.to_owned()),
            ("MGMT", MGMT.to_owned()),
            ("PRIMARY_HTTP", primary.http.to_string()),
        ];
        v.extend(extra);
        v
    };
    let out = run_py(script, "replication-token", &env(vec![]));
    let token: serde_json::Value = serde_json::from_str(last_line(&out)).unwrap();
    let token = token["secret"].as_str().unwrap().to_owned();

    let (s_http, s_server) = (free_port(), free_port());
    let secondary = start_agent(
        dir.path(),
        "secondary",
        &agent_hcl(
            "secondary",
            &dir.path().join("secondary-data"),
            s_http,
            s_server,
            Some(primary.server),
            Some(&token),
        ),
        s_http,
        s_server,
    );
    let out = run_py(
        script,
        "guide",
        &env(vec![("SECONDARY_HTTP", secondary.http.to_string())]),
    );
    assert_eq!(last_line(&out), "ok", "{out}");
}
