//! The control-plane writes that take a whole spec: tokens with chosen IDs, expiry and
//! identities, roles with descriptions and node identities, policies limited to
//! datacenters, intentions with a description and meta, config entries with check-and-set,
//! deregistration with the sidecar, and the ACL bootstrap. Each is made in the primary and
//! in a secondary (forwarded to the primary, like every global write).

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::time::{Duration, SystemTime};

use mesh::intentions::acl::DefaultPolicy;
use mesh::intentions::intention::{Action, Intention};
use mesh::{Datacenter, DatacenterConfig, ErrorKind, PolicySpec, RoleSpec, Secret, TokenSpec};

const MGMT: &str = "11111111-aaaa-4bbb-8ccc-00000000000a";
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

async fn primary() -> Datacenter {
    let mut c = config("primary");
    c.acl.tokens.initial_management = Some(MGMT.into());
    Datacenter::start_primary(c).await.unwrap()
}

fn mgmt() -> Secret {
    Secret::new(MGMT)
}

async fn secondary_of(primary: &Datacenter) -> Datacenter {
    primary
        .acl()
        .policy_create(&mgmt(), "replication", "", REPLICATION_POLICY)
        .await
        .unwrap();
    let repl = primary
        .acl()
        .token_create(
            &mgmt(),
            TokenSpec {
                policy_names: vec!["replication".into()],
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap()
        .secret_id;
    let mut sc = config("secondary");
    sc.acl.tokens.replication = Some(repl.into());
    let secondary = tokio::time::timeout(
        Duration::from_secs(20),
        Datacenter::start_secondary(sc, primary.in_process_link()),
    )
    .await
    .expect("secondary starts in time")
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while secondary.acl().authorizer(&mgmt()).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "management token replicates"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    secondary
}

/// Both datacenters: `[primary, secondary]` (the primary first).
async fn both() -> [Datacenter; 2] {
    let p = primary().await;
    let s = secondary_of(&p).await;
    [p, s]
}

fn dc(name: &str) -> mesh::core::DatacenterName {
    name.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_take_chosen_ids_expiry_and_identities_in_either_datacenter() {
    let dcs = both().await;
    for (i, d) in dcs.iter().enumerate() {
        let accessor = format!("6a3f0c3e-1b2d-4c5e-8f90-00000000010{i}");
        let secret = format!("6a3f0c3e-1b2d-4c5e-8f90-00000000020{i}");
        let expiry = SystemTime::now() + Duration::from_secs(3600);
        let rec = d
            .acl()
            .token_create(
                &mgmt(),
                TokenSpec {
                    description: "chosen".into(),
                    accessor_id: Some(accessor.clone()),
                    secret_id: Some(Secret::new(secret.clone())),
                    expiration: Some(expiry),
                    node_identities: vec![("node-1".into(), dc("primary"))],
                    scoped_service_identities: vec![("web".into(), vec![dc("secondary")])],
                    ..TokenSpec::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("in {}: {e:?}", d.name()));
        assert_eq!(rec.accessor_id, accessor);
        assert_eq!(rec.secret_id, secret);
        assert!(rec.expiration_time.is_some());
        assert!(rec.create_time.is_some());
        assert_eq!(rec.node_identities.len(), 1);
        assert_eq!(rec.service_identities[0].datacenters, vec![dc("secondary")]);
        let back = d.acl().token_read(&accessor).await.unwrap();
        assert_eq!(back, rec, "read back where it was written");
        // The secret resolves; the scoped identity applies in the secondary only.
        let authz = d.acl().authorizer(&Secret::new(secret.clone())).unwrap();
        assert_eq!(
            authz.service_write("web").is_allowed(),
            d.name().as_str() == "secondary"
        );
        // A taken accessor or secret is a conflict; nothing else is written.
        let before = d.acl().token_list().await.unwrap().len();
        for spec in [
            TokenSpec {
                accessor_id: Some(accessor.clone()),
                ..TokenSpec::default()
            },
            TokenSpec {
                secret_id: Some(Secret::new(secret.clone())),
                ..TokenSpec::default()
            },
        ] {
            let err = d.acl().token_create(&mgmt(), spec).await.unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::Conflict(_)), "{err:?}");
        }
        assert_eq!(d.acl().token_list().await.unwrap().len(), before);
        // Updates keep the secret, expiry and creation time; a changed secret is refused.
        let updated = d
            .acl()
            .token_update(
                &mgmt(),
                &accessor,
                TokenSpec {
                    description: "updated".into(),
                    ..TokenSpec::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(updated.secret_id, secret);
        assert_eq!(updated.expiration_time, rec.expiration_time);
        assert_eq!(updated.create_time, rec.create_time);
        let err = d
            .acl()
            .token_update(
                &mgmt(),
                &accessor,
                TokenSpec {
                    secret_id: Some(Secret::new(format!(
                        "6a3f0c3e-1b2d-4c5e-8f90-00000000030{i}"
                    ))),
                    ..TokenSpec::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Invalid(_)), "{err:?}");
        // A local token with the same features stays here.
        let local = d
            .acl()
            .token_create(
                &mgmt(),
                TokenSpec {
                    local: true,
                    expiration: Some(SystemTime::now() + Duration::from_secs(120)),
                    node_identities: vec![("node-2".into(), d.name().clone())],
                    ..TokenSpec::default()
                },
            )
            .await
            .unwrap();
        assert!(local.local && local.expiration_time.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_ids_and_expiry_follow_consuls_rules() {
    let d = primary().await;
    let bad = [
        TokenSpec {
            accessor_id: Some("not-a-uuid".into()),
            ..TokenSpec::default()
        },
        TokenSpec {
            secret_id: Some(Secret::new("00000000-0000-0000-0000-000000000042")),
            ..TokenSpec::default()
        },
        TokenSpec {
            expiration: Some(SystemTime::now() + Duration::from_secs(30)),
            ..TokenSpec::default()
        },
        TokenSpec {
            expiration: Some(SystemTime::now() + Duration::from_secs(25 * 3600)),
            ..TokenSpec::default()
        },
        TokenSpec {
            expiration: Some(SystemTime::now() - Duration::from_secs(60)),
            ..TokenSpec::default()
        },
    ];
    for spec in bad {
        let err = d
            .acl()
            .token_create(&mgmt(), spec.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Invalid(_)),
            "{spec:?}: {err:?}"
        );
    }
    // Either case of hex digits, as go-uuid takes them.
    let t = d
        .acl()
        .token_create(
            &mgmt(),
            TokenSpec {
                accessor_id: Some("00000000-DEAD-BEEF-0000-000000000000".into()),
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(t.accessor_id, "00000000-DEAD-BEEF-0000-000000000000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_take_descriptions_node_and_scoped_service_identities_in_either_datacenter() {
    let dcs = both().await;
    for d in &dcs {
        let name = format!("role-{}", d.name());
        let rec = d
            .acl()
            .role_create_with(
                &mgmt(),
                RoleSpec {
                    name: name.clone(),
                    description: "a role".into(),
                    policy_names: vec!["replication".into()],
                    service_identities: vec![("db".into(), vec![dc("primary")])],
                    node_identities: vec![("node-1".into(), dc("secondary"))],
                },
            )
            .await
            .unwrap_or_else(|e| panic!("in {}: {e:?}", d.name()));
        assert_eq!(d.acl().role_read(&rec.id).await.unwrap(), rec);
        assert_eq!(rec.description, "a role");
        let updated = d
            .acl()
            .role_update_with(
                &mgmt(),
                &rec.id,
                RoleSpec {
                    name: format!("{name}-renamed"),
                    description: "renamed".into(),
                    ..RoleSpec::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(d.acl().role_read(&rec.id).await.unwrap(), updated);
        assert!(updated.node_identities.is_empty());
        // A taken name is a conflict.
        let err = d
            .acl()
            .role_create_with(
                &mgmt(),
                RoleSpec {
                    name: format!("{name}-renamed"),
                    ..RoleSpec::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Conflict(_)), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_take_datacenters_and_consuls_names_in_either_datacenter() {
    let dcs = both().await;
    for d in &dcs {
        let name = format!("team/{}", d.name());
        let rec = d
            .acl()
            .policy_create_with(
                &mgmt(),
                PolicySpec {
                    name: name.clone(),
                    description: String::new(),
                    rules: r#"service "web" { policy = "write" }"#.into(),
                    datacenters: vec![dc("primary")],
                },
            )
            .await
            .unwrap_or_else(|e| panic!("in {}: {e:?}", d.name()));
        assert_eq!(rec.datacenters, vec![dc("primary")]);
        assert_eq!(d.acl().policy_read_by_name(&name).await.unwrap(), rec);
        let updated = d
            .acl()
            .policy_update_with(
                &mgmt(),
                &rec.id,
                PolicySpec {
                    name: name.clone(),
                    description: "now everywhere".into(),
                    rules: rec.rules.clone(),
                    datacenters: Vec::new(),
                },
            )
            .await
            .unwrap();
        assert!(updated.datacenters.is_empty());
        // The older update keeps the datacenters.
        d.acl()
            .policy_update_with(
                &mgmt(),
                &rec.id,
                PolicySpec {
                    datacenters: vec![dc("secondary")],
                    ..PolicySpec {
                        name: name.clone(),
                        ..PolicySpec::default()
                    }
                },
            )
            .await
            .unwrap();
        let kept = d
            .acl()
            .policy_update(&mgmt(), &rec.id, &name, "", "")
            .await
            .unwrap();
        assert_eq!(kept.datacenters, vec![dc("secondary")]);
    }
    let d = &dcs[0];
    for bad in [
        "",
        "/lead",
        "builtin/x",
        "a/b/c",
        "a b",
        "ünï",
        &"x".repeat(129),
    ] {
        let err = d
            .acl()
            .policy_create(&mgmt(), bad, "", "")
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Invalid(_)),
            "{bad:?}: {err:?}"
        );
    }
    for good in ["a/", "A-b_9/c-D", &"y".repeat(128)] {
        d.acl()
            .policy_create(&mgmt(), good, "", "")
            .await
            .unwrap_or_else(|e| panic!("{good:?}: {e:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intentions_keep_description_and_meta_in_either_datacenter() {
    let dcs = both().await;
    for (i, d) in dcs.iter().enumerate() {
        let source = format!("web{i}");
        let mut ixn = Intention::new(&source, "db", Action::Allow);
        ixn.description = "web may reach db".into();
        ixn.meta.insert("owner".into(), "team-a".into());
        d.intentions()
            .upsert(&mgmt(), ixn)
            .await
            .unwrap_or_else(|e| panic!("in {}: {e:?}", d.name()));
        let listed = d.intentions().list(&mgmt()).await.unwrap();
        let back = listed
            .iter()
            .find(|x| x.source_name == source)
            .expect("listed where it was written");
        assert_eq!(back.description, "web may reach db");
        assert_eq!(back.meta.get("owner").map(String::as_str), Some("team-a"));
        assert_eq!(back.source_type, "consul");
        // Renamed in one transaction: the old record goes.
        let renamed = Intention::new(&format!("{source}-b"), "db", Action::Deny);
        d.intentions()
            .upsert_replacing(&mgmt(), back, renamed)
            .await
            .unwrap();
        let listed = d.intentions().list(&mgmt()).await.unwrap();
        assert!(listed.iter().all(|x| x.source_name != source));
        assert!(
            listed
                .iter()
                .any(|x| x.source_name == format!("{source}-b"))
        );
    }
    // A token without intentions:write on the destination writes nothing.
    let p = &dcs[0];
    p.acl()
        .policy_create(
            &mgmt(),
            "reader",
            "",
            r#"service_prefix "" { policy = "read" }"#,
        )
        .await
        .unwrap();
    let reader = p
        .acl()
        .token_create(
            &mgmt(),
            TokenSpec {
                policy_names: vec!["reader".into()],
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap();
    let before = p.intentions().list(&mgmt()).await.unwrap().len();
    let err = p
        .intentions()
        .upsert(
            &Secret::new(reader.secret_id),
            Intention::new("x", "db", Action::Allow),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::PermissionDenied(_)),
        "{err:?}"
    );
    assert_eq!(p.intentions().list(&mgmt()).await.unwrap().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_entries_check_and_set_in_either_datacenter() {
    let dcs = both().await;
    for d in &dcs {
        let entries = d.config_entries();
        let name = format!("svc-{}", d.name());
        let text =
            format!(r#"{{"Kind": "service-defaults", "Name": "{name}", "Protocol": "tcp"}}"#);
        assert!(
            entries
                .write_json_cas(&mgmt(), &text, mesh::core::Index::ZERO)
                .await
                .unwrap()
        );
        // Exists now: a second creation-only write loses.
        assert!(
            !entries
                .write_json_cas(&mgmt(), &text, mesh::core::Index::ZERO)
                .await
                .unwrap()
        );
        let kind = mesh::core::ConfigEntryKind::ServiceDefaults;
        assert!(
            !entries
                .delete_cas(&mgmt(), kind, &name, mesh::core::Index(1))
                .await
                .unwrap()
        );
        assert!(entries.get(kind, &name).await.unwrap().is_some());
        // At the index this datacenter shows (a secondary's own): the write and the delete win.
        let at = d
            .store()
            .get(
                &mesh::tables::lookup(mesh::tables::CONFIG_ENTRIES).unwrap(),
                &format!("service-defaults/{name}"),
            )
            .await
            .unwrap()
            .unwrap()
            .modify_index;
        let http = text.replace("tcp", "http");
        assert!(entries.write_json_cas(&mgmt(), &http, at).await.unwrap());
        assert!(!entries.write_json_cas(&mgmt(), &text, at).await.unwrap());
        let at = d
            .store()
            .get(
                &mesh::tables::lookup(mesh::tables::CONFIG_ENTRIES).unwrap(),
                &format!("service-defaults/{name}"),
            )
            .await
            .unwrap()
            .unwrap()
            .modify_index;
        assert!(entries.delete_cas(&mgmt(), kind, &name, at).await.unwrap());
        assert!(entries.get(kind, &name).await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistering_a_service_removes_its_sidecar_all_or_nothing() {
    let d = primary().await;
    let web = r#"{"service": {"name": "web", "id": "web-1", "port": 8080,
                   "connect": {"sidecar_service": {}}}}"#;
    let reg = d.catalog().register_json(&mgmt(), web).await.unwrap();
    let sc_id = reg.sidecar.as_ref().unwrap().service.id.clone().unwrap();
    assert_eq!(sc_id.as_str(), "web-1-sidecar-proxy");
    // A token that may write web but not its sidecar's name removes nothing.
    d.acl()
        .policy_create(
            &mgmt(),
            "web-only",
            "",
            r#"service "web" { policy = "write" }"#,
        )
        .await
        .unwrap();
    let web_only = d
        .acl()
        .token_create(
            &mgmt(),
            TokenSpec {
                policy_names: vec!["web-only".into()],
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap();
    let err = d
        .catalog()
        .deregister(&Secret::new(web_only.secret_id), "web-1")
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::PermissionDenied(_)),
        "{err:?}"
    );
    assert_eq!(d.catalog().entries().await.unwrap().len(), 2);
    // With every permission both go.
    d.catalog().deregister(&mgmt(), "web-1").await.unwrap();
    assert!(d.catalog().entries().await.unwrap().is_empty());
    assert!(
        d.catalog()
            .sidecar_addresses(&"web".parse().unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_makes_the_first_management_token_once() {
    // Without initial_management: one bootstrap.
    let d = Datacenter::start_primary(config("primary")).await.unwrap();
    let first = d.acl().bootstrap(None).await.unwrap();
    assert_eq!(first.description, "Bootstrap Token (Global Management)");
    let authz = d
        .acl()
        .authorizer(&Secret::new(first.secret_id.clone()))
        .unwrap();
    assert!(authz.acl_write().is_allowed());
    let err = d.acl().bootstrap(None).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::BootstrapNotAllowed { reset_index } if *reset_index > 0),
        "{err:?}"
    );
    let reset_index = match err.kind() {
        ErrorKind::BootstrapNotAllowed { reset_index } => *reset_index,
        _ => unreachable!(),
    };
    assert_eq!(
        err.to_string(),
        format!("acl bootstrap: ACL bootstrap no longer allowed (reset index: {reset_index})")
    );
    assert_eq!(err.operation().map(|o| o.name()), Some("acl bootstrap"));
    // Deleting the bootstrap token does not allow a second one.
    d.acl()
        .token_delete(&Secret::new(first.secret_id.clone()), &first.accessor_id)
        .await
        .unwrap();
    assert!(matches!(
        d.acl()
            .bootstrap(None)
            .await
            .map_err(mesh::Error::into_kind),
        Err(ErrorKind::BootstrapNotAllowed { .. })
    ));
    // A chosen secret; concurrent bootstraps: exactly one wins.
    let d = Datacenter::start_primary(config("primary")).await.unwrap();
    let chosen = Secret::new("6a3f0c3e-1b2d-4c5e-8f90-000000000abc");
    let acl = d.acl();
    let (a, b) = tokio::join!(acl.bootstrap(Some(&chosen)), acl.bootstrap(None));
    assert!(a.is_ok() != b.is_ok(), "{a:?} / {b:?}");
    // initial_management counts as bootstrapped.
    let (p, s) = {
        let p = primary().await;
        let s = secondary_of(&p).await;
        (p, s)
    };
    assert!(matches!(
        p.acl()
            .bootstrap(None)
            .await
            .map_err(mesh::Error::into_kind),
        Err(ErrorKind::BootstrapNotAllowed { .. })
    ));
    assert!(matches!(
        s.acl()
            .bootstrap(None)
            .await
            .map_err(mesh::Error::into_kind),
        Err(ErrorKind::PrimaryOnly(_))
    ));
}

/// An error reads as the operation and what went wrong; a caller matches the typed kind.
#[tokio::test]
async fn an_error_names_the_operation_and_carries_a_typed_cause() {
    let p = primary().await;
    let mgmt = Secret::new(MGMT);
    p.acl()
        .policy_create(
            &mgmt,
            "reader",
            "",
            r#"service_prefix "" { policy = "read" }"#,
        )
        .await
        .unwrap();
    let reader = p
        .acl()
        .token_create(
            &mgmt,
            TokenSpec {
                policy_names: vec!["reader".into()],
                ..TokenSpec::default()
            },
        )
        .await
        .unwrap();
    let err = p
        .intentions()
        .allow(
            &(&reader.secret_id).into(),
            &"web".parse().unwrap(),
            &"socat".parse().unwrap(),
        )
        .await
        .unwrap_err();
    let op = err.operation().expect("the call names its operation");
    assert_eq!(
        (op.name(), op.subject()),
        ("intention create", Some("web -> socat"))
    );
    assert!(
        matches!(err.kind(), ErrorKind::PermissionDenied(_)),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("intention create web -> socat: Permission denied: token with AccessorID"),
        "{text}"
    );
    assert!(text.contains(&reader.accessor_id), "{text}");
    assert!(text.contains("\"socat\""), "{text}");
    assert!(
        !text.contains(&reader.secret_id),
        "the secret never shows: {text}"
    );

    // Malformed input: the validator's own typed error.
    let err = p
        .acl()
        .policy_create(&mgmt, "broken", "", "service \"web\" { policy = ")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Invalid(mesh::InvalidInput::AclObject(_))
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("acl policy create broken: invalid input: "),
        "{err}"
    );
    let err = p
        .config_entries()
        .write_json(&mgmt, r#"{"Kind": "proxy-defaults", "Name": "not-global"}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Invalid(mesh::InvalidInput::ConfigEntry(_))
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("config entry write: invalid input: "),
        "{err}"
    );
    // A delete that reads first fails as the delete the caller asked for.
    let err = p
        .acl()
        .policy_delete(&mgmt, "00000000-0000-4000-8000-00000000beef")
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::NotFound(_)), "{err:?}");
    assert_eq!(
        err.operation().map(|o| o.name()),
        Some("acl policy delete"),
        "{err}"
    );
}
