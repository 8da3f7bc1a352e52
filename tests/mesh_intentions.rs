//! Intentions and ACLs across the two datacenters, checked on the data plane: an explicit
//! deny, a delete that stops new connections but not open ones, a write made in the
//! secondary forwarded to the primary, and the tokens refused for registrations and
//! intention writes.

mod common;

use common::{Mesh, bounded, echo_ok, echo_on, wait_until};
use mesh::ErrorKind;
use mesh::core::error_chain;
use mesh::intentions::intention::Action;
use tokio::net::TcpStream;

async fn local_mode_mesh() -> (Mesh, common::Apps) {
    let m = Mesh::start(1).await;
    m.set_mode("local").await;
    let apps = m.deploy(None).await;
    (m, apps)
}

fn web_id(m: &Mesh) -> mesh::core::SpiffeId {
    let td = m.primary.trust_domain().expect("trust domain");
    format!("spiffe://{td}/ns/default/dc/secondary/svc/web")
        .parse()
        .expect("SPIFFE ID")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_deny_refuses_and_names_the_intention() {
    bounded(async {
        let (m, apps) = local_mode_mesh().await;
        m.secondary
            .intentions()
            .create(
                &(&m.mgmt).into(),
                &"web".parse().expect("valid intention target"),
                &"socat".parse().expect("valid intention target"),
                Action::Deny,
            )
            .await
            .expect("deny written");
        m.wait_decision("web", "socat", false).await;
        let socat = "socat".parse().expect("service name");
        for dc in [&m.primary, &m.secondary] {
            let a = dc.intentions().authorize(&web_id(&m), &socat);
            assert!(!a.authorized);
            assert!(
                a.reason.contains("default/web => default/socat"),
                "{}",
                a.reason
            );
            assert!(a.reason.contains("DENY"), "{}", a.reason);
        }
        assert!(
            !echo_ok(apps.upstream).await,
            "the deny intention let web reach socat"
        );
        // The refusal is socat's sidecar's: the connection crossed both gateways.
        assert!(common::accepted_by(&m.primary_gateways[0]) >= 1);

        // Turning it into an allow (same source and destination: replaced) opens the path.
        m.allow_web_to_socat().await;
        assert!(echo_ok(apps.upstream).await);
        let all = m
            .primary
            .intentions()
            .list(&(&m.mgmt).into())
            .await
            .expect("intentions");
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].action, "allow");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_intention_stops_new_connections_but_not_open_ones() {
    bounded(async {
        let (m, apps) = local_mode_mesh().await;
        m.allow_web_to_socat().await;
        let mut open = TcpStream::connect(apps.upstream).await.expect("connect");
        assert_eq!(
            echo_on(&mut open, b"before\n").await.expect("echo"),
            b"before\n"
        );

        m.secondary
            .intentions()
            .delete(
                &(&m.mgmt).into(),
                &"web".parse().expect("valid intention target"),
                &"socat".parse().expect("valid intention target"),
            )
            .await
            .expect("intention deleted");
        assert!(
            m.primary
                .intentions()
                .list(&(&m.mgmt).into())
                .await
                .expect("intentions")
                .is_empty()
        );
        m.wait_decision("web", "socat", false).await;
        let a = m
            .primary
            .intentions()
            .authorize(&web_id(&m), &"socat".parse().expect("name"));
        assert_eq!(a.reason, "Default behavior configured by ACLs");

        // New connections are refused in the handshake (from a client holding no TLS session
        // of before the delete: see `deleted_intention_refuses_resumed_sessions_too` for the
        // sidecar's own client)...
        for _ in 0..3 {
            assert!(
                !fresh_web_echo(&m, &apps).await,
                "a new connection passed after the delete"
            );
        }
        // ...while the connection authorized before keeps echoing (Consul checks intentions
        // when a connection is made, not afterwards).
        for line in [&b"after\n"[..], b"still here\n"] {
            assert_eq!(
                echo_on(&mut open, line)
                    .await
                    .expect("echo on the open connection"),
                line
            );
        }
        // Deleting it again is not an error.
        m.primary
            .intentions()
            .delete(
                &(&m.mgmt).into(),
                &"web".parse().expect("valid intention target"),
                &"socat".parse().expect("valid intention target"),
            )
            .await
            .expect("idempotent delete");
    })
    .await;
}

/// The intention check runs in the server's client-certificate verifier, which rustls does not
/// call again when a client resumes a TLS 1.3 session: a client that connected while the
/// intention allowed it must not get back in after the delete by resuming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_intention_refuses_resumed_sessions_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let (m, apps) = local_mode_mesh().await;
        m.allow_web_to_socat().await;
        let upstream = web_upstream(&m).await;
        let web = mesh::connect::Service::new(
            &m.secondary,
            &(&apps.web_token).into(),
            "web".parse().expect("name"),
        )
        .await
        .expect("web's identity");
        let dialer = web.dialer(&upstream).expect("dialer");
        let mut first = dialer.dial().await.expect("allowed");
        first.write_all(b"1\n").await.expect("write");
        let mut buf = [0u8; 2];
        first.read_exact(&mut buf).await.expect("echo");
        assert!(
            echo_ok(apps.upstream).await,
            "the sidecar connects while allowed"
        );

        m.primary
            .intentions()
            .delete(
                &(&m.mgmt).into(),
                &"web".parse().expect("valid intention target"),
                &"socat".parse().expect("valid intention target"),
            )
            .await
            .expect("deleted");
        m.wait_decision("web", "socat", false).await;

        // In TLS 1.3 the client usually finishes before the server has judged its
        // certificate, so the refusal shows on the first read; a dial error is a refusal too.
        if let Ok(mut again) = dialer.dial().await {
            let kind = again.get_ref().1.handshake_kind();
            let _ = again.write_all(b"2\n").await;
            let refused = !matches!(
                tokio::time::timeout(common::ECHO_TIMEOUT, again.read_exact(&mut buf)).await,
                Ok(Ok(_))
            );
            assert!(refused, "a {kind:?} handshake passed after the delete");
        }
        assert!(
            !echo_ok(apps.upstream).await,
            "web's sidecar got in after the delete"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_in_the_secondary_is_forwarded_to_the_primary() {
    bounded(async {
        let (m, apps) = local_mode_mesh().await;
        assert!(!echo_ok(apps.upstream).await, "default deny");
        let written = m
            .secondary
            .intentions()
            .create(
                &(&m.mgmt).into(),
                &"web".parse().expect("valid intention target"),
                &"socat".parse().expect("valid intention target"),
                Action::Allow,
            )
            .await
            .expect("intention written in the secondary");
        // Stored by the primary when the call returns, and read back in the secondary.
        for dc in [&m.primary, &m.secondary] {
            let list = dc
                .intentions()
                .list(&(&m.mgmt).into())
                .await
                .expect("intentions");
            assert_eq!(list.len(), 1, "{}: {list:?}", dc.name());
            assert_eq!(list[0].source_name, "web");
            assert_eq!(list[0].destination_name, "socat");
            assert_eq!(list[0].action, "allow");
            assert_eq!(list[0].precedence, written.precedence);
        }
        m.wait_decision("web", "socat", true).await;
        assert!(echo_ok(apps.upstream).await);
        // The secondary's copy came back by replication: its replicator applied the record
        // and stands at the primary's index of the table.
        let status = m.secondary.replication_status();
        let ixn = status
            .iter()
            .find(|s| s.table.as_str() == "intentions")
            .expect("intentions replicate");
        assert!(ixn.upserts_applied >= 1, "{ixn:?}");
        assert_eq!(
            ixn.last_remote_index,
            m.primary.store().table_index(&ixn.table),
            "{ixn:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_needs_service_write_on_the_service() {
    bounded(async {
        let m = Mesh::start(0).await;
        let db_token = m.service_token("db").await;
        let echo = common::echo_server().await;
        let bare = format!(r#"{{"service": {{"name": "socat", "port": {}}}}}"#, echo.port());
        let with = |t: &str| {
            format!(
                r#"{{"service": {{"name": "socat", "port": {}, "token": "{t}"}}}}"#,
                echo.port()
            )
        };
        for dc in [&m.primary, &m.secondary] {
            // Anonymous: no token on the call, none in the file.
            let err = dc.catalog().register_json(&"".into(), &bare).await.expect_err("anonymous refused");
            assert!(matches!(err.kind(), ErrorKind::PermissionDenied(_)), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("service:write"), "{text}");
            assert!(text.contains("socat"), "{text}");
            assert!(text.contains("anonymous"), "{text}");

            // Another service's token, on the call or in the file.
            for (token, json) in [(db_token.as_str(), bare.clone()), ("", with(&db_token))] {
                let err = dc.catalog().register_json(&token.into(), &json).await.expect_err("db token refused");
                assert!(matches!(err.kind(), ErrorKind::PermissionDenied(_)), "{err:?}");
                let text = err.to_string();
                assert!(text.contains("service:write"), "{text}");
                assert!(text.contains("socat"), "{text}");
                assert!(!text.contains(&db_token), "the secret leaked: {text}");
            }

            // A sidecar needs write on its own name too (the db token covers db, not its
            // sidecar's destination socat).
            let err = dc
                .catalog().register_json(
                    &(&db_token).into(),
                    r#"{"service": {"name": "db", "port": 5432,
                        "connect": {"sidecar_service": {"proxy": {"destination_service_name": "db"}}}}}"#,
                )
                .await;
            assert!(err.is_ok(), "db's token registers db with its sidecar: {err:?}");

            // An unknown secret does not resolve at all.
            let err = dc.catalog().register_json(&common::secret().into(), &bare).await.expect_err("unknown");
            assert!(matches!(err.kind(), ErrorKind::AclNotFound), "{err:?}");
        }
        // Nothing named socat was registered anywhere.
        for dc in [&m.primary, &m.secondary] {
            let cat = dc.catalog().entries().await.expect("catalog");
            assert!(!cat.iter().any(|e| e.name().map(|n| n.as_str()) == Some("socat")));
        }
        // The right token works.
        let socat_token = m.service_token("socat").await;
        m.primary.catalog().register_json(&"".into(), &with(&socat_token)).await.expect("registered");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intention_write_needs_intentions_write_on_the_destination() {
    bounded(async {
        let m = Mesh::start(0).await;
        // web's own token: service identity (service:write on web, read elsewhere).
        let web_token = m.service_token("web").await;
        // A token that may manage socat's intentions only.
        let socat_admin = m
            .policy_token(
                "socat-intentions",
                r#"service "socat" { policy = "read" intentions = "write" }"#,
            )
            .await;

        for dc in [&m.primary, &m.secondary] {
            let err = dc
                .intentions()
                .create(
                    &(&web_token).into(),
                    &"web".parse().expect("valid intention target"),
                    &"socat".parse().expect("valid intention target"),
                    Action::Allow,
                )
                .await
                .expect_err("web's token may not write socat's intentions");
            assert!(
                matches!(err.kind(), ErrorKind::PermissionDenied(_)),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(text.contains("intentions:write"), "{text}");
            assert!(text.contains("socat"), "{text}");

            let err = dc
                .intentions()
                .create(
                    &(&socat_admin).into(),
                    &"web".parse().expect("valid intention target"),
                    &"db".parse().expect("valid intention target"),
                    Action::Allow,
                )
                .await
                .expect_err("socat's intention admin may not write db's");
            assert!(
                matches!(err.kind(), ErrorKind::PermissionDenied(_)),
                "{err:?}"
            );
            assert!(err.to_string().contains("intentions:write"), "{err}");
            assert!(err.to_string().contains("db"), "{err}");

            let err = dc
                .intentions()
                .delete(
                    &(&web_token).into(),
                    &"web".parse().expect("valid intention target"),
                    &"socat".parse().expect("valid intention target"),
                )
                .await
                .expect_err("deleting needs the same permission");
            assert!(
                matches!(err.kind(), ErrorKind::PermissionDenied(_)),
                "{err:?}"
            );
        }
        assert!(
            m.primary
                .intentions()
                .list(&(&m.mgmt).into())
                .await
                .expect("intentions")
                .is_empty()
        );

        // In the primary the scoped token writes socat's intention.
        m.primary
            .intentions()
            .create(
                &(&socat_admin).into(),
                &"web".parse().expect("valid intention target"),
                &"socat".parse().expect("valid intention target"),
                Action::Allow,
            )
            .await
            .expect("socat's intention admin writes web -> socat in the primary");
        // From the secondary the same write is forwarded; the primary checks it again.
        let forwarded = m
            .secondary
            .intentions()
            .create(
                &(&socat_admin).into(),
                &"api".parse().expect("valid intention target"),
                &"socat".parse().expect("valid intention target"),
                Action::Deny,
            )
            .await;
        assert!(
            forwarded.is_ok(),
            "socat's intention admin writes api -> socat from the secondary: {:?}",
            forwarded.map_err(|e| error_chain(&e))
        );
        wait_until("both intentions in the secondary", || {
            let s = m.secondary.clone();
            let t = m.mgmt.clone();
            async move {
                s.intentions()
                    .list(&(&t).into())
                    .await
                    .map(|l| l.len() == 2)
                    .unwrap_or(false)
            }
        })
        .await;
    })
    .await;
}

/// web's upstream to socat, as registered.
async fn web_upstream(m: &Mesh) -> mesh::core::Upstream {
    m.secondary
        .catalog()
        .entries()
        .await
        .expect("catalog")
        .into_iter()
        .find_map(|e| e.service.proxy.and_then(|p| p.upstreams.into_iter().next()))
        .expect("web's upstream")
}

/// One echo from a new in-app `web` identity (its own TLS client, no session cache shared with
/// the sidecar) to socat, through the same upstream registration.
async fn fresh_web_echo(m: &Mesh, apps: &common::Apps) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = web_upstream(m).await;
    let web = mesh::connect::Service::new(
        &m.secondary,
        &(&apps.web_token).into(),
        "web".parse().expect("name"),
    )
    .await
    .expect("web's identity");
    let Ok(mut tls) = web.dialer(&upstream).expect("dialer").dial().await else {
        return false;
    };
    if tls.write_all(b"fresh\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 6];
    matches!(
        tokio::time::timeout(common::ECHO_TIMEOUT, tls.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"fresh\n"
    )
}
