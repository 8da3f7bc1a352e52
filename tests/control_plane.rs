//! Two datacenters in one process: ACLs default-deny, CA bootstrap and a secondary
//! intermediate, policies and tokens, registrations, config entries and an intention written
//! in the secondary and forwarded to the primary.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::time::Duration;

use mesh::intentions::acl::DefaultPolicy;
use mesh::intentions::intention::Action;
use mesh::{Datacenter, DatacenterConfig, ErrorKind, TokenSpec};

const MGMT: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
/// The guide's mesh-gateway-policy.json, as written (three JSON objects one after another).
const GATEWAY_POLICY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/guide/mesh-gateway-policy.json"
));
/// The guide's replication token policy.
const REPLICATION_POLICY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/guide/replication-policy.json"
));

fn config(name: &str) -> DatacenterConfig {
    let mut c = DatacenterConfig::new(name.parse().unwrap(), "primary".parse().unwrap());
    c.acl.enabled = true;
    c.acl.default_policy = DefaultPolicy::Deny;
    c
}

async fn two_dcs() -> (Datacenter, Datacenter) {
    two_dcs_in(None).await
}

/// Two datacenters; with `dir`, each keeps its state on disk under it.
async fn two_dcs_in(dir: Option<&std::path::Path>) -> (Datacenter, Datacenter) {
    let mut pc = config("primary");
    if let Some(d) = dir {
        pc.storage = mesh::Storage::Dir(d.join("primary"));
    }
    pc.acl.tokens.initial_management = Some(MGMT.into());
    let primary = Datacenter::start_primary(pc).await.unwrap();
    primary
        .acl()
        .policy_create(&MGMT.into(), "replication", "", REPLICATION_POLICY)
        .await
        .unwrap();
    let repl = primary
        .acl()
        .token_create(
            &MGMT.into(),
            TokenSpec {
                description: "replication".into(),
                policy_names: vec!["replication".into()],
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap();
    let mut sc = config("secondary");
    sc.acl.tokens.replication = Some((&repl.secret_id).into());
    if let Some(d) = dir {
        sc.storage = mesh::Storage::Dir(d.join("secondary"));
    }
    let secondary = tokio::time::timeout(
        Duration::from_secs(20),
        Datacenter::start_secondary(sc, primary.in_process_link()),
    )
    .await
    .expect("secondary starts in time")
    .unwrap();
    (primary, secondary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guide_control_plane_across_two_datacenters() {
    let (primary, secondary) = two_dcs().await;

    // One trust domain; the secondary signs with its own intermediate.
    let td = primary.trust_domain().unwrap();
    assert_eq!(secondary.trust_domain().unwrap(), td);
    assert_eq!(
        primary.connect_ca().roots().unwrap().active_root_id,
        secondary.connect_ca().roots().unwrap().active_root_id
    );

    // The gateway policy file as written: three JSON objects, read as their union.
    primary
        .acl()
        .policy_create(&MGMT.into(), "mesh-gateway", "", GATEWAY_POLICY)
        .await
        .unwrap();
    let gw_token = primary
        .acl()
        .token_create(
            &MGMT.into(),
            TokenSpec {
                description: "mesh-gateway secondary datacenter token".into(),
                policy_names: vec!["mesh-gateway".into()],
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap();

    // The token replicated: the secondary registers a gateway with it.
    let mut ok = false;
    for _ in 0..100 {
        if secondary
            .acl()
            .authorizer(&(&gw_token.secret_id).into())
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "gateway token replicated to the secondary");
    let name = "mesh-gateway".parse().unwrap();
    secondary
        .catalog()
        .register_mesh_gateway(
            &(&gw_token.secret_id).into(),
            &name,
            "gateway-secondary-1",
            "127.0.0.1:18443".parse().unwrap(),
            "127.0.0.2:18443".parse().unwrap(),
        )
        .await
        .unwrap();
    // The gateway token may not register anything else.
    let err = secondary
        .catalog()
        .register_json(
            &(&gw_token.secret_id).into(),
            r#"{"service":{"name":"web","port":8080}}"#,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::PermissionDenied(_)),
        "{err}"
    );
    assert!(err.to_string().contains("service:write"), "{err}");

    // Every datacenter learns the gateway through the primary.
    assert_eq!(primary.catalog().federation().await.unwrap().len(), 1);

    // proxy-defaults as the guide writes it.
    secondary
        .config_entries()
        .write_json(
            &MGMT.into(),
            r#"{"Kind": "proxy-defaults", "Name": "global", "MeshGateway": "local"}"#,
        )
        .await
        .unwrap();
    assert!(
        primary
            .config_entries()
            .get(mesh::core::ConfigEntryKind::ProxyDefaults, "global")
            .await
            .unwrap()
            .is_some()
    );

    // Services from the guide's files, with sidecars.
    let web = secondary
        .catalog().register_json(
            &MGMT.into(),
            r#"{"service": {"name": "web", "port": 8080, "token": "<token here>",
                "connect": {"sidecar_service": {"proxy": {"upstreams": [{
                "destination_name": "socat", "datacenter": "primary", "local_bind_port": 8181}]}}}}}"#,
        )
        .await
        .unwrap();
    assert_eq!(web.sidecar.unwrap().service.port, 21000);

    // Default deny: web may not reach socat until the intention exists.
    let web_id: mesh::core::SpiffeId = format!("spiffe://{td}/ns/default/dc/secondary/svc/web")
        .parse()
        .unwrap();
    let socat = "socat".parse().unwrap();
    let before = primary.intentions().authorize(&web_id, &socat);
    assert!(!before.authorized);
    assert_eq!(before.reason, "Default behavior configured by ACLs");

    // Written in the secondary, forwarded to the primary, visible in both.
    secondary
        .intentions()
        .create(
            &MGMT.into(),
            &"web".parse().expect("valid intention target"),
            &"socat".parse().expect("valid intention target"),
            Action::Allow,
        )
        .await
        .unwrap();
    assert!(secondary.intentions().authorize(&web_id, &socat).authorized);
    assert!(primary.intentions().authorize(&web_id, &socat).authorized);

    // A token allowed to write intentions for socat only: forwarded and checked per record.
    primary
        .acl()
        .policy_create(
            &MGMT.into(),
            "socat-intentions",
            "",
            r#"service "socat" { policy = "read" intentions = "write" }"#,
        )
        .await
        .unwrap();
    let ixn_token = primary
        .acl()
        .token_create(
            &MGMT.into(),
            TokenSpec {
                policy_names: vec!["socat-intentions".into()],
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap();
    for _ in 0..200 {
        if secondary
            .acl()
            .authorizer(&(&ixn_token.secret_id).into())
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    secondary
        .intentions()
        .create(
            &(&ixn_token.secret_id).into(),
            &"api".parse().expect("valid intention target"),
            &"socat".parse().expect("valid intention target"),
            Action::Deny,
        )
        .await
        .unwrap();
    let err = secondary
        .intentions()
        .create(
            &(&ixn_token.secret_id).into(),
            &"socat".parse().expect("valid intention target"),
            &"web".parse().expect("valid intention target"),
            Action::Allow,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("intentions:write"), "{err}");

    // An unknown token is refused.
    let err = secondary
        .intentions()
        .create(
            &"nope".into(),
            &"web".parse().expect("valid intention target"),
            &"socat".parse().expect("valid intention target"),
            Action::Allow,
        )
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::AclNotFound), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_restarted_from_its_data_dir_keeps_its_root_and_acls() {
    let dir = tempfile::tempdir().unwrap();
    let mut pc = config("primary");
    pc.acl.tokens.initial_management = Some(MGMT.into());
    pc.storage = mesh::Storage::Dir(dir.path().join("primary"));
    let first = Datacenter::start_primary(pc.clone()).await.unwrap();
    let root = first.connect_ca().roots().unwrap().active_root_id.clone();
    let td = first.trust_domain().unwrap();
    first
        .acl()
        .policy_create(
            &MGMT.into(),
            "kept",
            "",
            r#"service "web" { policy = "write" }"#,
        )
        .await
        .unwrap();
    drop(first);

    let mut again = None;
    for _ in 0..100 {
        // The old handle's tasks release the database as they finish.
        match Datacenter::start_primary(pc.clone()).await {
            Ok(dc) => {
                again = Some(dc);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let again = again.expect("the primary restarts from its data dir");
    assert_eq!(again.connect_ca().roots().unwrap().active_root_id, root);
    assert_eq!(again.trust_domain().unwrap(), td);
    let err = again
        .acl()
        .policy_create(
            &MGMT.into(),
            "kept",
            "",
            r#"service "web" { policy = "read" }"#,
        )
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Conflict(_)), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("primary"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the data dir holds the CA key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_follows_a_root_rotation_as_it_replicates() {
    let (primary, secondary) = two_dcs().await;
    let before = secondary
        .connect_ca()
        .roots()
        .unwrap()
        .active_root_id
        .clone();
    let mut watch = secondary.connect_ca().subscribe_roots().unwrap();
    primary.connect_ca().rotate(&MGMT.into()).await.unwrap();
    let new_root = primary.connect_ca().roots().unwrap().active_root_id.clone();
    assert_ne!(before, new_root);
    // The secondary's roots (and with them every leaf manager watching them) move to the new
    // root as soon as the primary's list replicates, not at the next hourly check. The bound
    // only keeps a failure from hanging.
    tokio::time::timeout(
        Duration::from_secs(30),
        watch.wait_for(|v| v.active_root_id == new_root),
    )
    .await
    .expect("the secondary follows the rotation")
    .unwrap();
    // Its leaves chain to the new root through a new intermediate.
    let td = secondary.trust_domain().unwrap();
    let id = format!("spiffe://{td}/ns/default/dc/secondary/svc/web")
        .parse()
        .unwrap();
    let req = mesh::ca::new_leaf_request(&id, &[]).unwrap();
    let leaf = secondary
        .connect_ca()
        .sign_leaf(&MGMT.into(), &req.csr_pem)
        .await
        .unwrap();
    assert_eq!(leaf.root_id, new_root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_lists_the_primary_it_replicates_from() {
    let (_primary, secondary) = two_dcs().await;
    // The primary's own record ("I am the primary") arrives by replication and is kept,
    // although no API write may say it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = secondary.catalog().datacenters().await.unwrap();
        if all
            .iter()
            .any(|d| d.name.as_str() == "primary" && d.primary)
        {
            assert!(
                all.iter()
                    .any(|d| d.name.as_str() == "secondary" && !d.primary)
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the secondary never listed the primary: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        secondary
            .replication_status()
            .iter()
            .all(|s| s.refused.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_datacenters_shut_down_and_restart_at_once_on_their_data_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let (primary, secondary) = two_dcs_in(Some(dir.path())).await;
    let td = secondary.trust_domain().unwrap();
    let mut sc = secondary.config().clone();
    let pc = primary.config().clone();
    sc.storage = mesh::Storage::Dir(dir.path().join("secondary"));
    secondary.shutdown(Duration::from_secs(10)).await.unwrap();
    // The same data dir opens again at once: no retry, no "Database already open".
    let secondary = Datacenter::start_secondary(sc.clone(), primary.in_process_link())
        .await
        .unwrap();
    assert_eq!(secondary.trust_domain().unwrap(), td);
    // Still a working secondary: a write forwarded to the primary reads back here.
    secondary
        .intentions()
        .create(
            &MGMT.into(),
            &"web".parse().unwrap(),
            &"db".parse().unwrap(),
            Action::Allow,
        )
        .await
        .unwrap();
    secondary.shutdown(Duration::from_secs(10)).await.unwrap();
    primary.shutdown(Duration::from_secs(10)).await.unwrap();
    let primary = Datacenter::start_primary(pc).await.unwrap();
    assert_eq!(primary.trust_domain().unwrap(), td);
    let listed = primary.intentions().list(&MGMT.into()).await.unwrap();
    assert_eq!(listed.len(), 1);
    primary.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_waits_for_a_write_made_in_the_primary() {
    let (primary, secondary) = two_dcs().await;
    primary
        .intentions()
        .upsert(
            &MGMT.into(),
            mesh::intentions::intention::Intention::new("api", "db", Action::Deny),
        )
        .await
        .unwrap();
    let table = mesh::tables::lookup(mesh::tables::INTENTIONS).unwrap();
    let index = primary.store().table_index(&table);
    secondary
        .wait_replicated(mesh::tables::INTENTIONS, index, Duration::from_secs(10))
        .await
        .unwrap();
    let listed = secondary.intentions().list(&MGMT.into()).await.unwrap();
    assert!(listed.iter().any(|i| i.source_name == "api"));
    // The primary answers at once.
    primary
        .wait_replicated(mesh::tables::INTENTIONS, index, Duration::ZERO)
        .await
        .unwrap();
    // A table that is not replicated is named in the error.
    let err = secondary
        .wait_replicated(mesh::tables::CATALOG, index, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("catalog"), "{err}");
}

/// `start_secondary` with a replication token the primary refuses (unknown, or without
/// `operator:write` to have its intermediate signed) fails, naming the refusal, instead of
/// waiting for an intermediate that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_whose_replication_token_is_refused_fails_to_start_saying_so() {
    let mut pc = config("primary");
    pc.acl.tokens.initial_management = Some(MGMT.into());
    let primary = Datacenter::start_primary(pc).await.unwrap();
    let weak = primary
        .acl()
        .token_create(
            &MGMT.into(),
            TokenSpec {
                description: "no rights".into(),
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap();
    for (token, what) in [
        ("00000000-0000-4000-8000-000000000000", "ACL not found"),
        (weak.secret_id.as_str(), "operator:read"),
    ] {
        let mut sc = config("secondary");
        sc.acl.tokens.replication = Some(token.into());
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(30),
            Datacenter::start_secondary(sc, primary.in_process_link()),
        )
        .await
        .expect("start_secondary returns instead of waiting");
        let err = outcome.expect_err("a refused token does not start");
        let text = mesh::core::error_chain(&err);
        assert!(
            matches!(err.kind(), mesh::ErrorKind::ReplicationTokenRefused(_)),
            "{text}"
        );
        assert!(text.contains(what), "{text}");
        eprintln!("refused after {:?}: {text}", started.elapsed());
    }
}

/// A secondary linked to the primary of another name than its `primary_datacenter` does not
/// start, and says which primary it reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_linked_to_another_primary_fails_to_start_naming_both() {
    let mut oc = DatacenterConfig::new("other".parse().unwrap(), "other".parse().unwrap());
    oc.acl.enabled = true;
    oc.acl.tokens.initial_management = Some(MGMT.into());
    let other = Datacenter::start_primary(oc).await.unwrap();
    let mut sc = config("secondary");
    sc.acl.tokens.replication = Some(MGMT.into());
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        Datacenter::start_secondary(sc, other.in_process_link()),
    )
    .await
    .expect("start_secondary returns instead of waiting")
    .expect_err("the wrong primary is refused");
    match err.kind() {
        mesh::ErrorKind::WrongPrimary { configured, found } => {
            assert_eq!(
                (configured.as_str(), found.as_deref()),
                ("primary", Some("other"))
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        err.to_string(),
        "datacenter start secondary: primary_datacenter is \"primary\", but the server reached \
         is the primary of \"other\""
    );
}
