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
    let primary = start_primary(dir.path(), "primary");
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

    let secondary = start_datacenter(
        dir.path(),
        "secondary",
        "secondary",
        Some(primary.server),
        Some(&token),
    );
    let out = run_py(
        script,
        "guide",
        &env(vec![("SECONDARY_HTTP", secondary.http.to_string())]),
    );
    assert_eq!(last_line(&out), "ok", "{out}");
}
