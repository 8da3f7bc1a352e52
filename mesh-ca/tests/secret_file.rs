//! Private keys land only in a new file readable by the owner: `write_secret_file`, the CA state
//! file written with it, and the `ca_tour` example's `--out` directory. A file already at the
//! path (mode 0644, or a hard link another name shares) is replaced, never written into; a
//! symbolic link is refused, never followed.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

#[path = "../../examples/ca_tour.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod ca_tour;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use mesh_ca::write_secret_file;
use mesh_ca::{Ca, CaOptions, CaState};

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n";

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// The names in `dir`, sorted: no temporary file is left behind.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn loose_file(p: &Path, text: &str) {
    fs::write(p, text).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn a_new_secret_file_is_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    write_secret_file(&path, KEY.as_bytes()).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), KEY);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(names(dir.path()), ["key.pem"]);
}

#[test]
fn an_existing_0644_file_is_replaced_not_written_into() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    loose_file(&path, "old public text\n");
    // Another name for the same file: it must not receive the key.
    let alias = dir.path().join("alias.pem");
    fs::hard_link(&path, &alias).unwrap();
    let old_inode = fs::metadata(&path).unwrap().ino();

    write_secret_file(&path, KEY.as_bytes()).unwrap();

    assert_eq!(fs::read_to_string(&path).unwrap(), KEY);
    assert_eq!(mode(&path), 0o600);
    assert_ne!(fs::metadata(&path).unwrap().ino(), old_inode);
    assert_eq!(fs::read_to_string(&alias).unwrap(), "old public text\n");
    assert_eq!(mode(&alias), 0o644);
    assert_eq!(names(dir.path()), ["alias.pem", "key.pem"]);

    // Writing again (a re-run) replaces the secret file too.
    write_secret_file(&path, b"second").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "second");
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn a_symlink_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("world-readable.txt");
    loose_file(&target, "decoy\n");
    let path = dir.path().join("key.pem");
    symlink(&target, &path).unwrap();

    let err = write_secret_file(&path, KEY.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");

    assert_eq!(fs::read_to_string(&target).unwrap(), "decoy\n");
    assert_eq!(mode(&target), 0o644);
    assert!(
        fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(names(dir.path()), ["key.pem"]);
}

#[test]
fn a_dangling_symlink_is_refused_and_nothing_is_created_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("not-yet.pem");
    let path = dir.path().join("key.pem");
    symlink(&target, &path).unwrap();

    assert!(write_secret_file(&path, KEY.as_bytes()).is_err());
    assert!(!target.exists());
    assert_eq!(names(elsewhere.path()), Vec::<String>::new());
    assert_eq!(names(dir.path()), ["key.pem"]);
}

#[test]
fn a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("key.pem");
    assert!(write_secret_file(&path, KEY.as_bytes()).is_err());
}

async fn state() -> CaState {
    Ca::bootstrap_primary(CaOptions::new("dc1".parse().unwrap()))
        .await
        .unwrap()
        .export_state()
}

#[tokio::test]
async fn the_ca_state_file_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let state = state().await;
    let path = dir.path().join("ca.json");

    // The temporary name the state writer used to open (and follow) is planted as a symlink.
    let planted = elsewhere.path().join("planted");
    loose_file(&planted, "decoy\n");
    symlink(&planted, dir.path().join("ca.tmp")).unwrap();
    loose_file(&path, "{}");
    state.write_file(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(CaState::read_file(&path).unwrap(), state);
    assert_eq!(fs::read_to_string(&planted).unwrap(), "decoy\n");
    assert_eq!(names(dir.path()), ["ca.json", "ca.tmp"]);

    // A symlinked state path is refused: the keys do not go where it points.
    let link = dir.path().join("linked.json");
    symlink(&planted, &link).unwrap();
    assert!(matches!(
        state.write_file(&link),
        Err(mesh_ca::CaError::Io { .. })
    ));
    assert_eq!(fs::read_to_string(&planted).unwrap(), "decoy\n");
}

#[tokio::test]
async fn the_tour_writes_its_key_owner_only_over_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("leaf-key.pem");
    loose_file(&key, "left from an older run\n");
    let files = ca_tour::run_tour(dir.path()).await.unwrap();
    assert_eq!(files.leaf_key, key);
    assert!(
        fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert_eq!(mode(&key), 0o600);
    // Certificates are public.
    assert_eq!(mode(&files.leaf) & 0o600, 0o600);
    // A second run into the same directory works and keeps the key owner-only.
    ca_tour::run_tour(dir.path()).await.unwrap();
    assert_eq!(mode(&key), 0o600);
}

#[tokio::test]
async fn the_tour_refuses_a_symlinked_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("shared.pem");
    loose_file(&target, "decoy\n");
    symlink(&target, dir.path().join("leaf-key.pem")).unwrap();

    assert!(ca_tour::run_tour(dir.path()).await.is_err());
    assert_eq!(fs::read_to_string(&target).unwrap(), "decoy\n");
    assert_eq!(mode(&target), 0o644);
}
