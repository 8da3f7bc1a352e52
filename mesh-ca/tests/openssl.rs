//! A tool mesh did not write accepts mesh certificates: runs the `ca_tour` example's logic,
//! then `openssl verify` and `openssl x509 -text` on its files.
#![allow(clippy::unwrap_used)]

#[path = "../../examples/ca_tour.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod ca_tour;

use std::process::Command;

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (apt-get install -y openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn openssl_verifies_the_tour_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = ca_tour::run_tour(dir.path()).await.unwrap();
    let s = |p: &std::path::Path| p.display().to_string();

    let (ok, text) = openssl(&["verify", "-CAfile", &s(&f.root), &s(&f.intermediate)]);
    assert!(ok && text.contains(": OK"), "{text}");

    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        &s(&f.root),
        "-untrusted",
        &s(&f.intermediate),
        &s(&f.leaf),
    ]);
    assert!(ok && text.contains(": OK"), "{text}");

    // Without the intermediate the leaf does not verify: the chain really goes through it.
    let (ok, _) = openssl(&["verify", "-CAfile", &s(&f.root), &s(&f.leaf)]);
    assert!(!ok);

    let (ok, text) = openssl(&["x509", "-in", &s(&f.leaf), "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("URI:{}", f.spiffe_id)), "{text}");
    assert!(
        text.contains("X509v3 Subject Alternative Name: critical"),
        "{text}"
    );
    assert!(
        text.contains("TLS Web Server Authentication")
            && text.contains("TLS Web Client Authentication"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");

    let (ok, text) = openssl(&["x509", "-in", &s(&f.intermediate), "-noout", "-text"]);
    assert!(ok && text.contains("CA:TRUE, pathlen:0"), "{text}");

    let (ok, text) = openssl(&["pkey", "-in", &s(&f.leaf_key), "-noout", "-check"]);
    assert!(ok, "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f.leaf_key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert_eq!(f.commands.len(), 4);
    let roots: mesh_ca::RootsView =
        serde_json::from_str(&std::fs::read_to_string(&f.roots_json).unwrap()).unwrap();
    assert_eq!(roots.roots.len(), 1);
}
