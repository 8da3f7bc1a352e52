//! The primary goes away (its link to the secondary is cut) while the secondary keeps serving:
//! the data plane web-sidecar -> gateways -> socat-sidecar needs no control-plane call to the
//! primary, replication reports the outage, forwarded writes fail with a typed error, and
//! after the link heals replication catches up.

mod common;

use common::{Mesh, bounded, echo_ok, echo_on, wait_until};
use mesh::intentions::intention::Action;
use mesh::replication_engine::{TransportError, WriteError};
use mesh::{Error, ErrorKind};
use tokio::net::TcpStream;

fn is_unreachable(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Forward(WriteError::Forward(TransportError::Unreachable(_)))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_keeps_serving_while_the_primary_is_unreachable() {
    bounded(async {
        let m = Mesh::start(1).await;
        m.set_mode("local").await;
        let apps = m.deploy(None).await;
        m.allow_web_to_socat().await;
        let mut open = TcpStream::connect(apps.upstream).await.expect("connect");
        assert_eq!(
            echo_on(&mut open, b"before\n").await.expect("echo"),
            b"before\n"
        );
        let healthy = m.secondary.replication_status();
        assert!(!healthy.is_empty());
        assert!(
            healthy
                .iter()
                .all(|s| s.consecutive_failures == 0 && s.last_success.is_some())
        );

        m.link.link().cut();

        // Replication notices: every table's replicator fails and says why.
        wait_until("every replicator to report the outage", || {
            let st = m.secondary.replication_status();
            async move {
                st.iter().all(|s| {
                    s.running
                        && s.consecutive_failures >= 1
                        && s.last_error.as_ref().is_some_and(|e| !e.message.is_empty())
                })
            }
        })
        .await;
        for s in m.secondary.replication_status() {
            assert!(
                s.staleness().is_some(),
                "{}: had succeeded before the cut",
                s.table
            );
        }

        // The open connection keeps echoing.
        assert_eq!(
            echo_on(&mut open, b"during\n").await.expect("echo"),
            b"during\n"
        );
        // New connections allowed by the replicated intention still work.
        for i in 0..5 {
            let line = format!("new {i}\n");
            let reply = common::echo_once(apps.upstream, line.as_bytes())
                .await
                .expect("echo");
            assert_eq!(reply, line.as_bytes());
        }
        // The secondary still signs leaves (its intermediate is local) and answers locally.
        let web = mesh::connect::Service::new(
            &m.secondary,
            &(&apps.web_token).into(),
            "web".parse().expect("name"),
        )
        .await
        .expect("a new leaf signed in the secondary while the primary is away");
        assert!(
            m.secondary
                .intentions()
                .authorize(web.spiffe_id(), &"socat".parse().expect("name"))
                .authorized
        );
        assert_eq!(
            m.secondary
                .intentions()
                .list(&(&m.mgmt).into())
                .await
                .expect("intentions")
                .len(),
            1
        );

        // Writes of global state go to the primary: refused with a typed error, not stored.
        let err = m
            .secondary
            .intentions()
            .create(
                &(&m.mgmt).into(),
                &"api".parse().expect("valid intention target"),
                &"socat".parse().expect("valid intention target"),
                Action::Allow,
            )
            .await
            .expect_err("the primary is unreachable");
        assert!(is_unreachable(&err), "{err:?}");
        let err = m
            .secondary
            .config_entries()
            .write_json(&(&m.mgmt).into(), &common::proxy_defaults("remote"))
            .await
            .expect_err("the primary is unreachable");
        assert!(is_unreachable(&err), "{err:?}");
        assert_eq!(
            m.secondary
                .intentions()
                .list(&(&m.mgmt).into())
                .await
                .expect("intentions")
                .len(),
            1
        );
        // The data plane did not move: still mode local.
        assert!(echo_ok(apps.upstream).await);

        m.link.link().restore();

        // A new intention written in the primary replicates.
        m.primary
            .intentions()
            .create(
                &(&m.mgmt).into(),
                &"api".parse().expect("valid intention target"),
                &"socat".parse().expect("valid intention target"),
                Action::Deny,
            )
            .await
            .expect("written in the primary");
        wait_until("the primary's new intention in the secondary", || {
            let (s, t) = (m.secondary.clone(), m.mgmt.clone());
            async move {
                s.intentions()
                    .list(&(&t).into())
                    .await
                    .map(|l| {
                        l.iter()
                            .any(|i| i.source_name == "api" && i.action == "deny")
                    })
                    .unwrap_or(false)
            }
        })
        .await;
        wait_until("every replicator to recover", || {
            let st = m.secondary.replication_status();
            async move { st.iter().all(|s| s.consecutive_failures == 0) }
        })
        .await;
        // Forwarded writes work again, and the open connection never noticed.
        m.secondary
            .intentions()
            .create(
                &(&m.mgmt).into(),
                &"api".parse().expect("valid intention target"),
                &"socat".parse().expect("valid intention target"),
                Action::Allow,
            )
            .await
            .expect("forwarded after the link healed");
        assert_eq!(
            echo_on(&mut open, b"after\n").await.expect("echo"),
            b"after\n"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_remote_keeps_working_from_the_replicated_federation_table() {
    bounded(async {
        let m = Mesh::start(2).await;
        m.set_mode("remote").await;
        let apps = m.deploy(None).await;
        m.allow_web_to_socat().await;
        m.link.link().cut();
        wait_until("the outage to be seen", || {
            let st = m.secondary.replication_status();
            async move { st.iter().any(|s| s.consecutive_failures >= 1) }
        })
        .await;
        // web's sidecar dials the primary's gateways by their WAN addresses, which the
        // secondary knows from its last copy of the federation table.
        let fed = m
            .secondary
            .catalog()
            .federation()
            .await
            .expect("federation");
        assert_eq!(
            fed.iter()
                .filter(|g| g.datacenter.as_str() == "primary")
                .count(),
            2
        );
        let before: u64 = m.primary_gateways.iter().map(common::accepted_by).sum();
        for _ in 0..4 {
            assert!(echo_ok(apps.upstream).await);
        }
        let after: u64 = m.primary_gateways.iter().map(common::accepted_by).sum();
        assert_eq!(after - before, 4);
        m.link.link().restore();
    })
    .await;
}

/// The catalog is local to its datacenter (see docs/consul-compatibility.md, "When the primary is
/// unreachable": reads and local state keep
/// being served), so registering a service, starting its sidecar or a gateway in a secondary
/// does not need the primary; the global records that announce them (`endpoints`,
/// `federation`) reach the primary once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_registrations_do_not_need_the_primary() {
    bounded(async {
        let m = Mesh::start(1).await;
        let api_token = m.service_token("api").await;
        m.link.link().cut();
        let api = format!(
            r#"{{"service": {{"name": "api", "port": 9000, "token": "{api_token}",
                "connect": {{"sidecar_service": {{}} }} }} }}"#
        );
        let registered = m.secondary.catalog().register_json(&"".into(), &api).await;
        assert!(registered.is_ok(), "register api: {:?}", registered.err());
        let any =
            mesh::SidecarOptions::default().public_bind("127.0.0.1:0".parse().expect("address"));
        let sidecar = mesh::Sidecar::start(&m.secondary, &(&api_token).into(), "api", any).await;
        assert!(sidecar.is_ok(), "api's sidecar: {:?}", sidecar.err());
        let gw = mesh::MeshGateway::start(
            &m.secondary,
            &(&m.gateway_tokens[1]).into(),
            mesh::MeshGatewayOptions::new(
                "mesh-gateway".parse().expect("name"),
                "gateway-secondary-2",
                "127.0.0.1:0".parse().expect("address"),
                "127.0.2.2:0".parse().expect("address"),
            ),
        )
        .await;
        assert!(gw.is_ok(), "a second gateway: {:?}", gw.err());
        let public = sidecar
            .as_ref()
            .map(mesh::Sidecar::public_addr)
            .expect("sidecar");
        m.link.link().restore();

        // Once the primary is back, the other datacenters learn both (published in the
        // background): the gateway's WAN address and api's sidecar at its bound address.
        let (secondary_dc, api): (mesh::core::DatacenterName, mesh::core::ServiceName) = (
            "secondary".parse().expect("name"),
            "api".parse().expect("name"),
        );
        wait_until("the records published after the outage", || {
            let (p, dc, api) = (m.primary.clone(), secondary_dc.clone(), api.clone());
            async move {
                let fed = p.catalog().federation().await.unwrap_or_default();
                let eps = p
                    .catalog()
                    .remote_endpoints(&dc, &api)
                    .await
                    .unwrap_or_default();
                fed.iter().any(|g| g.id == "gateway-secondary-2") && eps == vec![public]
            }
        })
        .await;
    })
    .await;
}

/// A gateway started during the outage (its federation record waiting to be published) and
/// shut down before the primary came back must not be announced afterwards: nothing listens
/// at its WAN address any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_shut_down_during_the_outage_is_not_announced_afterwards() {
    bounded(async {
        let m = Mesh::start(1).await;
        let api_token = m.service_token("api").await;
        m.link.link().cut();
        let gw = mesh::MeshGateway::start(
            &m.secondary,
            &(&m.gateway_tokens[1]).into(),
            mesh::MeshGatewayOptions::new(
                "mesh-gateway".parse().expect("name"),
                "gateway-secondary-2",
                "127.0.0.1:0".parse().expect("address"),
                "127.0.2.2:0".parse().expect("address"),
            ),
        )
        .await
        .expect("a gateway starts while the primary is away");
        gw.shutdown(std::time::Duration::from_millis(100)).await;
        // A registration made after the gateway's: once its endpoint reached the primary,
        // the gateway's record would have too.
        let any =
            mesh::SidecarOptions::default().public_bind("127.0.0.1:0".parse().expect("address"));
        let reg = format!(
            r#"{{"service": {{"name": "api", "id": "api-2", "port": 9001, "token": "{api_token}",
                "connect": {{"sidecar_service": {{}} }} }} }}"#
        );
        m.secondary
            .catalog()
            .register_json(&"".into(), &reg)
            .await
            .expect("api-2 registered");
        let sidecar = mesh::Sidecar::start(&m.secondary, &(&api_token).into(), "api-2", any)
            .await
            .expect("api-2's sidecar");
        let public = sidecar.public_addr();
        m.link.link().restore();

        let (secondary_dc, api): (mesh::core::DatacenterName, mesh::core::ServiceName) = (
            "secondary".parse().expect("name"),
            "api".parse().expect("name"),
        );
        wait_until("api-2's endpoint to reach the primary", || {
            let (p, dc, api) = (m.primary.clone(), secondary_dc.clone(), api.clone());
            async move {
                p.catalog()
                    .remote_endpoints(&dc, &api)
                    .await
                    .unwrap_or_default()
                    == vec![public]
            }
        })
        .await;
        // Give every pending publication the same time again (bounded polling), then look.
        for _ in 0..50 {
            let fed = m.primary.catalog().federation().await.expect("federation");
            assert!(
                !fed.iter().any(|g| g.id == "gateway-secondary-2"),
                "a gateway shut down during the outage was announced afterwards: {fed:?}"
            );
            tokio::time::sleep(common::POLL * 2).await;
        }
    })
    .await;
}
