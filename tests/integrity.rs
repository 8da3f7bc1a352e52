//! Control-plane integrity, written as the attacks an ordinary token holder would try: each
//! test makes the attack, asserts the refusal, and asserts that nothing changed.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::time::Duration;

use mesh::intentions::acl::DefaultPolicy;
use mesh::intentions::intention::Action;
use mesh::replication_engine::{
    ApplyRequest, RemoteErrorKind, SecretToken, TableName, TxnOp, Value,
};
use mesh::{Datacenter, DatacenterConfig, ErrorKind, TokenSpec};
use serde_json::json;

const MGMT: &str = "11111111-aaaa-4bbb-8ccc-000000000009";
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

async fn primary_with(config: DatacenterConfig) -> Datacenter {
    let mut pc = config;
    pc.acl.tokens.initial_management = Some(MGMT.into());
    Datacenter::start_primary(pc).await.unwrap()
}

async fn primary() -> Datacenter {
    primary_with(config("primary")).await
}

async fn secondary_of(primary: &Datacenter) -> Datacenter {
    if primary
        .acl()
        .policy_read_by_name("replication")
        .await
        .is_err()
    {
        primary
            .acl()
            .policy_create(&MGMT.into(), "replication", "", REPLICATION_POLICY)
            .await
            .unwrap();
    }
    let repl = token(primary, &["replication"]).await;
    let mut sc = config("secondary");
    sc.acl.tokens.replication = Some(repl.into());
    tokio::time::timeout(
        Duration::from_secs(20),
        Datacenter::start_secondary(sc, primary.in_process_link()),
    )
    .await
    .expect("secondary starts in time")
    .unwrap()
}

/// A token linking `policies`; returns its secret.
async fn token(dc: &Datacenter, policies: &[&str]) -> String {
    dc.acl()
        .token_create(
            &MGMT.into(),
            TokenSpec {
                policy_names: policies.iter().map(|p| (*p).to_owned()).collect(),
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap()
        .secret_id
}

/// A policy from HCL rules and a token for it.
async fn token_with_rules(dc: &Datacenter, name: &str, rules: &str) -> String {
    dc.acl()
        .policy_create(&MGMT.into(), name, "", rules)
        .await
        .unwrap();
    token(dc, &[name]).await
}

fn t(name: &str) -> TableName {
    name.parse().unwrap()
}

fn upsert(table: &str, id: &str, value: serde_json::Value) -> TxnOp {
    TxnOp::Upsert {
        table: t(table),
        id: id.into(),
        value: Value::json(value),
        cas: None,
    }
}

fn allow(source: &str, destination: &str) -> serde_json::Value {
    json!({"SourceName": source, "DestinationName": destination, "Action": "allow",
           "SourceType": "consul"})
}

fn svc(dc: &Datacenter, name: &str) -> mesh::core::SpiffeId {
    let td = dc.trust_domain().unwrap();
    format!("spiffe://{td}/ns/default/dc/{}/svc/{name}", dc.name())
        .parse()
        .unwrap()
}

fn allowed(dc: &Datacenter, source: &str, destination: &str) -> bool {
    dc.intentions()
        .authorize(&svc(dc, source), &destination.parse().unwrap())
        .authorized
}

async fn apply(
    dc: &Datacenter,
    secret: &str,
    ops: Vec<TxnOp>,
) -> Result<mesh::core::Index, mesh::replication_engine::RemoteError> {
    dc.replication_server()
        .apply(ApplyRequest {
            token: SecretToken::new(secret),
            ops,
        })
        .await
}

async fn intention_count(dc: &Datacenter) -> usize {
    dc.intentions().list(&MGMT.into()).await.unwrap().len()
}

// ---- 1. one operation authorized by another ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_operation_in_one_transaction_is_authorized_on_its_own() {
    let dc = primary().await;
    let mine = token_with_rules(
        &dc,
        "mine",
        r#"service "mine" { policy = "read" intentions = "write" }"#,
    )
    .await;

    // The first operation is allowed, the second one rides along: refused, nothing written.
    let err = apply(
        &dc,
        &mine,
        vec![
            upsert("intentions", "mine/x", allow("x", "mine")),
            upsert("intentions", "socat/web", allow("web", "socat")),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Denied, "{err}");
    assert!(err.message.contains("socat"), "{err}");
    assert!(!allowed(&dc, "web", "socat"));
    assert!(
        !allowed(&dc, "x", "mine"),
        "the allowed half was not written either"
    );
    assert_eq!(intention_count(&dc).await, 0);

    // The same trick on config entries: service write on `mine` does not carry proxy-defaults.
    let svc_token =
        token_with_rules(&dc, "svc-mine", r#"service "mine" { policy = "write" }"#).await;
    let err = apply(
        &dc,
        &svc_token,
        vec![
            upsert(
                "config-entries",
                "service-defaults/mine",
                json!({"Kind": "service-defaults", "Name": "mine", "Protocol": "tcp"}),
            ),
            upsert(
                "config-entries",
                "proxy-defaults/global",
                json!({"Kind": "proxy-defaults", "Name": "global",
                       "MeshGateway": {"Mode": "none"}}),
            ),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Denied, "{err}");
    assert!(
        dc.config_entries()
            .get(mesh::core::ConfigEntryKind::ProxyDefaults, "global")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        dc.config_entries()
            .get(mesh::core::ConfigEntryKind::ServiceDefaults, "mine")
            .await
            .unwrap()
            .is_none()
    );

    // Alone, the allowed operation goes through.
    apply(
        &dc,
        &mine,
        vec![upsert("intentions", "mine/x", allow("x", "mine"))],
    )
    .await
    .unwrap();
    wait_until(|| allowed(&dc, "x", "mine")).await;
}

// ---- 2. the id is checked, the value is enforced ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_id_and_value_disagree_is_refused() {
    let dc = primary().await;
    let mine = token_with_rules(
        &dc,
        "mine",
        r#"service "mine" { policy = "read" intentions = "write" }"#,
    )
    .await;
    let err = apply(
        &dc,
        &mine,
        vec![upsert("intentions", "mine/evil", allow("*", "*"))],
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::InvalidRequest, "{err}");
    assert!(err.message.contains("does not match its content"), "{err}");
    assert!(!allowed(&dc, "web", "socat"));
    assert!(!allowed(&dc, "evil", "mine"));
    assert_eq!(intention_count(&dc).await, 0);

    // Even management cannot store a record under another record's id.
    let err = apply(
        &dc,
        MGMT,
        vec![upsert("intentions", "mine/evil", allow("*", "*"))],
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::InvalidRequest, "{err}");

    // Config entries: the id names a service the token may write, the value another.
    let svc_token =
        token_with_rules(&dc, "svc-mine", r#"service "mine" { policy = "write" }"#).await;
    let err = apply(
        &dc,
        &svc_token,
        vec![upsert(
            "config-entries",
            "service-defaults/mine",
            json!({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "none"}}),
        )],
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::InvalidRequest, "{err}");
    assert!(
        dc.config_entries()
            .get(mesh::core::ConfigEntryKind::ProxyDefaults, "global")
            .await
            .unwrap()
            .is_none()
    );

    // A gateway record filed under a service the token may write, describing another one.
    let err = apply(
        &dc,
        &svc_token,
        vec![upsert(
            "federation",
            "primary/mine/gw-1",
            json!({"Datacenter": "primary", "Service": "mesh-gateway", "Id": "gw-1",
                   "Wan": "127.0.0.1:1", "Lan": "127.0.0.1:1"}),
        )],
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::InvalidRequest, "{err}");
    assert!(dc.catalog().federation().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_and_intermediate_answers_cannot_be_written_from_outside() {
    let dc = primary().await;
    let roots_before = dc.connect_ca().roots().unwrap();
    let err = apply(
        &dc,
        MGMT,
        vec![upsert("ca-roots", "roots", json!({"Roots": []}))],
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::InvalidRequest, "{err}");
    let err = apply(
        &dc,
        MGMT,
        vec![upsert(
            "ca-intermediates",
            "secondary",
            json!({"Csr": "x", "Cert": "-----BEGIN CERTIFICATE-----"}),
        )],
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::InvalidRequest, "{err}");
    assert_eq!(dc.connect_ca().roots().unwrap(), roots_before);
}

// ---- 3. one invalid record: refused on write, fails closed when found stored ------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_intention_is_refused_on_every_write_path() {
    let dc = primary().await;
    let _secondary = secondary_of(&dc).await;
    let maybe = json!({"SourceName": "web", "DestinationName": "socat", "Action": "maybe",
                       "SourceType": "consul"});
    // Forwarded write.
    let err = apply(
        &dc,
        MGMT,
        vec![upsert("intentions", "socat/web", maybe.clone())],
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::InvalidRequest, "{err}");
    // Names that can never match are not representable: refused at parse, typed.
    for (src, dst) in [("WEB", "socat"), ("a/b", "socat"), ("web", "SOCAT")] {
        let parsed = (
            src.parse::<mesh::IntentionTarget>(),
            dst.parse::<mesh::IntentionTarget>(),
        );
        assert!(
            matches!(parsed, (Err(_), _) | (_, Err(_))),
            "{src} -> {dst}: {parsed:?}"
        );
    }
    assert_eq!(intention_count(&dc).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_invalid_intention_fails_closed_for_its_destination_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut pc = config("primary");
    pc.storage = mesh::Storage::Dir(dir.path().to_path_buf());
    let dc = primary_with(pc.clone()).await;
    let secondary = secondary_of(&dc).await;
    dc.intentions()
        .create(
            &MGMT.into(),
            &"web".parse().expect("valid intention target"),
            &"socat".parse().expect("valid intention target"),
            Action::Allow,
        )
        .await
        .unwrap();
    dc.intentions()
        .create(
            &MGMT.into(),
            &"api".parse().expect("valid intention target"),
            &"db".parse().expect("valid intention target"),
            Action::Allow,
        )
        .await
        .unwrap();
    assert!(allowed(&dc, "web", "socat"));

    // A record that decodes but does not validate lands in the store (an older version, a
    // bug): written under the store, where no API check can see it.
    let maybe = json!({"SourceName": "other", "DestinationName": "socat", "Action": "maybe",
                       "SourceType": "consul"});
    dc.store()
        .upsert(&t("intentions"), "socat/other", Value::json(maybe), None)
        .await
        .unwrap();

    // Every connection to socat is refused, in the primary and in the secondary; other
    // destinations keep their decisions.
    wait_until(|| !allowed(&dc, "web", "socat")).await;
    wait_until(|| !allowed(&secondary, "web", "socat")).await;
    assert!(allowed(&dc, "api", "db"));
    wait_until(|| allowed(&secondary, "api", "db")).await;
    let reason = dc
        .intentions()
        .authorize(&svc(&dc, "web"), &"socat".parse().unwrap())
        .reason;
    assert!(reason.contains("invalid"), "{reason}");

    // Deleting the bad record lifts it; management can still delete and revoke.
    dc.intentions()
        .delete(
            &MGMT.into(),
            &"other".parse().expect("valid intention target"),
            &"socat".parse().expect("valid intention target"),
        )
        .await
        .unwrap();
    assert!(allowed(&dc, "web", "socat"));
    wait_until(|| allowed(&secondary, "web", "socat")).await;
    dc.intentions()
        .delete(
            &MGMT.into(),
            &"web".parse().expect("valid intention target"),
            &"socat".parse().expect("valid intention target"),
        )
        .await
        .unwrap();
    assert!(!allowed(&dc, "web", "socat"));
    wait_until(|| !allowed(&secondary, "web", "socat")).await;

    // A restart with an invalid record stored starts, and fails closed for it.
    let maybe = json!({"SourceName": "other", "DestinationName": "db", "Action": "maybe"});
    dc.store()
        .upsert(&t("intentions"), "db/other", Value::json(maybe), None)
        .await
        .unwrap();
    drop(secondary);
    drop(dc);
    let restarted = restart(pc).await;
    assert!(!allowed(&restarted, "api", "db"));
    restarted
        .intentions()
        .delete(
            &MGMT.into(),
            &"other".parse().expect("valid intention target"),
            &"db".parse().expect("valid intention target"),
        )
        .await
        .unwrap();
    assert!(allowed(&restarted, "api", "db"));
}

async fn restart(pc: DatacenterConfig) -> Datacenter {
    // The store's file lock is released once the last task holding the old handle ends.
    for _ in 0..100 {
        match Datacenter::start_primary(pc.clone()).await {
            Ok(dc) => return dc,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Datacenter::start_primary(pc).await.unwrap()
}

/// Waits (bounded) for a condition that replication makes true.
async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(f(), "condition not reached within 10 s");
}

// ---- 4. registrations that take over or divert another service --------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_token_cannot_take_over_or_divert_another_service() {
    let dc = primary().await;
    let socat = token_with_rules(
        &dc,
        "socat",
        r#"service "socat" { policy = "write" }
        service "socat-sidecar-proxy" { policy = "write" }"#,
    )
    .await;
    let web = token_with_rules(
        &dc,
        "web",
        r#"service "web" { policy = "write" }
        service "web-sidecar-proxy" { policy = "write" }"#,
    )
    .await;
    dc.catalog()
        .register_json(
            &(&socat).into(),
            r#"{"service": {"name": "socat", "port": 8181, "connect": {"sidecar_service": {}}}}"#,
        )
        .await
        .unwrap();
    let before = dc.catalog().entries().await.unwrap();

    // web registers under the id of socat's sidecar.
    let err = dc
        .catalog()
        .register_json(
            &(&web).into(),
            r#"{"service": {"name": "web", "id": "socat-sidecar-proxy", "port": 1}}"#,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::PermissionDenied(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("socat-sidecar-proxy"), "{err}");

    // web registers a proxy for socat at an address it chooses.
    let err = dc
        .catalog()
        .register_json(
            &(&web).into(),
            r#"{"service": {"name": "web-sidecar-proxy", "kind": "connect-proxy",
                "id": "evil-proxy", "port": 9999,
                "proxy": {"destination_service_name": "socat"}}}"#,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::PermissionDenied(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("socat"), "{err}");

    // web's own sidecar, whose id is free, is fine; a sidecar id taken by socat is not.
    let err = dc
        .catalog()
        .register_json(
            &(&web).into(),
            r#"{"service": {"name": "web", "id": "socat", "port": 1,
                "connect": {"sidecar_service": {}}}}"#,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::PermissionDenied(_)),
        "{err:?}"
    );

    // A gateway registration under socat's instance id.
    let err = dc
        .catalog()
        .register_mesh_gateway(
            &(&web).into(),
            &"web".parse().expect("valid intention target"),
            "socat",
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::PermissionDenied(_)),
        "{err:?}"
    );

    assert_eq!(
        dc.catalog().entries().await.unwrap(),
        before,
        "the catalog did not change"
    );
    let addrs = dc
        .catalog()
        .sidecar_addresses(&"socat".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(addrs.len(), 1);

    // socat itself may re-register its own instances.
    dc.catalog()
        .register_json(
            &(&socat).into(),
            r#"{"service": {"name": "socat", "port": 8181, "connect": {"sidecar_service": {}}}}"#,
        )
        .await
        .unwrap();
}

// ---- 6. the ACL plane: unique names, update, delete, revocation -------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_policy_creations_with_one_name_store_exactly_one() {
    let dc = primary().await;
    let secondary = secondary_of(&dc).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        // Half from the primary, half forwarded from the secondary.
        let dc = if i % 2 == 0 {
            dc.clone()
        } else {
            secondary.clone()
        };
        tasks.push(tokio::spawn(async move {
            dc.acl()
                .policy_create(&MGMT.into(), "ops", "", r#"operator = "read""#)
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap().map_err(mesh::Error::into_kind) {
            Ok(_) => ok += 1,
            Err(ErrorKind::Conflict(what)) => assert!(what.contains("ops"), "{what}"),
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(ok, 1, "exactly one creation succeeds");
    let stored = dc
        .store()
        .list(&t("acl-policies"))
        .await
        .unwrap()
        .records
        .iter()
        .filter(|r| r.value.as_json().unwrap()["Name"] == "ops")
        .count();
    assert_eq!(stored, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_roles_and_tokens_update_and_delete_and_a_deleted_token_is_refused_everywhere() {
    let dc = primary().await;
    let secondary = secondary_of(&dc).await;
    let p = dc
        .acl()
        .policy_create(
            &MGMT.into(),
            "writer",
            "",
            r#"service "web" { policy = "read" intentions = "write" }"#,
        )
        .await
        .unwrap();
    let leaked = dc
        .acl()
        .token_create(
            &MGMT.into(),
            TokenSpec {
                policy_names: vec!["writer".into()],
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap();
    wait_until(|| {
        secondary
            .acl()
            .authorizer(&(&leaked.secret_id).into())
            .is_ok()
    })
    .await;
    secondary
        .intentions()
        .create(
            &(&leaked.secret_id).into(),
            &"api".parse().expect("valid intention target"),
            &"web".parse().expect("valid intention target"),
            Action::Allow,
        )
        .await
        .unwrap();

    // Narrow the policy: the token loses the right at once, in both datacenters.
    dc.acl()
        .policy_update(
            &MGMT.into(),
            &p.id,
            "writer",
            "",
            r#"service "web" { policy = "read" intentions = "read" }"#,
        )
        .await
        .unwrap();
    let err = dc
        .intentions()
        .create(
            &(&leaked.secret_id).into(),
            &"api2".parse().unwrap(),
            &"web".parse().expect("valid intention target"),
            Action::Allow,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::PermissionDenied(_)),
        "{err:?}"
    );

    // Rename: the old name is free again, the new one taken.
    dc.acl()
        .policy_update(
            &MGMT.into(),
            &p.id,
            "reader",
            "",
            r#"service "web" { policy = "read" intentions = "read" }"#,
        )
        .await
        .unwrap();
    dc.acl()
        .policy_create(&MGMT.into(), "writer", "", r#"operator = "read""#)
        .await
        .unwrap();
    let err = dc
        .acl()
        .policy_create(&MGMT.into(), "reader", "", r#"operator = "read""#)
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Conflict(_)), "{err:?}");

    // The built-in management policy cannot be changed or deleted.
    let err = dc
        .acl()
        .policy_delete(
            &MGMT.into(),
            mesh::intentions::acl::GLOBAL_MANAGEMENT_POLICY_ID,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("built in") || format!("{err:?}").contains("built in"),
        "{err:?}"
    );
    assert!(
        dc.acl()
            .authorizer(&MGMT.into())
            .unwrap()
            .acl_write()
            .is_allowed()
    );

    // Roles: create, rename, delete.
    let role = dc
        .acl()
        .role_create(&MGMT.into(), "r1", &["reader"], &[])
        .await
        .unwrap();
    let role = dc
        .acl()
        .role_update(&MGMT.into(), &role.id, "r2", &["reader"], &["web"])
        .await
        .unwrap();
    assert_eq!(role.name, "r2");
    dc.acl()
        .role_create(&MGMT.into(), "r1", &[], &["api"])
        .await
        .unwrap();
    dc.acl().role_delete(&MGMT.into(), &role.id).await.unwrap();
    assert!(dc.acl().role_read(&role.id).await.is_err());

    // Token update keeps the secret; delete revokes it in both datacenters.
    let updated = dc
        .acl()
        .token_update(
            &MGMT.into(),
            &leaked.accessor_id,
            TokenSpec {
                description: "narrowed".into(),
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.secret_id, leaked.secret_id);
    secondary
        .acl()
        .token_delete(&MGMT.into(), &leaked.accessor_id)
        .await
        .unwrap();
    assert!(matches!(
        secondary
            .acl()
            .authorizer(&(&leaked.secret_id).into())
            .map_err(mesh::Error::into_kind),
        Err(ErrorKind::AclNotFound)
    ));
    wait_until(|| {
        matches!(
            dc.acl()
                .authorizer(&(&leaked.secret_id).into())
                .map_err(mesh::Error::into_kind),
            Err(ErrorKind::AclNotFound)
        )
    })
    .await;
    let err = secondary
        .intentions()
        .create(
            &(&leaked.secret_id).into(),
            &"api3".parse().unwrap(),
            &"web".parse().expect("valid intention target"),
            Action::Allow,
        )
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::AclNotFound), "{err:?}");

    // Deleting a policy removes what it granted.
    let t2 = dc
        .acl()
        .token_create(
            &MGMT.into(),
            TokenSpec {
                policy_names: vec!["writer".into()],
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap();
    assert!(
        dc.acl()
            .authorizer(&(&t2.secret_id).into())
            .unwrap()
            .operator_read()
            .is_allowed()
    );
    let writer = dc.acl().policy_read_by_name("writer").await.unwrap();
    dc.acl()
        .policy_delete(&MGMT.into(), &writer.id)
        .await
        .unwrap();
    assert!(
        !dc.acl()
            .authorizer(&(&t2.secret_id).into())
            .unwrap()
            .operator_read()
            .is_allowed()
    );

    // An ordinary token can do none of this.
    let err = dc
        .acl()
        .token_delete(&(&t2.secret_id).into(), &t2.accessor_id)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::PermissionDenied(_)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_same_data_dir_keeps_one_name_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut pc = config("primary");
    pc.storage = mesh::Storage::Dir(dir.path().to_path_buf());
    let dc = primary_with(pc.clone()).await;
    dc.acl()
        .policy_create(&MGMT.into(), "ops", "", r#"operator = "read""#)
        .await
        .unwrap();
    drop(dc);
    pc.acl.tokens.initial_management = Some(MGMT.into());
    let dc = restart(pc).await;
    let err = dc
        .acl()
        .policy_create(&MGMT.into(), "ops", "", r#"operator = "read""#)
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Conflict(_)), "{err:?}");
}
