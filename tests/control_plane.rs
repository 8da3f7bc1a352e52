//! Two datacenters in one process: ACLs default-deny, CA bootstrap and a secondary
//! intermediate, policies and tokens, registrations, config entries and an intention written
//! in the secondary and forwarded to the primary.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::time::Duration;

use mesh::intentions::acl::DefaultPolicy;
use mesh::intentions::intention::Action;
use mesh::{Datacenter, DatacenterConfig, Error, TokenSpec};

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
    let mut pc = config("primary");
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
    sc.acl.tokens.replication = Some(repl.secret_id.clone());
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
    assert!(matches!(err, Error::PermissionDenied(_)), "{err}");
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
    assert!(matches!(err, Error::AclNotFound), "{err}");
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
    assert!(matches!(err, Error::Conflict(_)), "{err}");
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
