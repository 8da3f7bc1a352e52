//! Mesh-gateway modes across two datacenters: `local`, `remote` and `none` set through
//! `proxy-defaults`, and once through the upstream's own `mesh_gateway` overriding it. Each
//! echo from web (secondary) to socat (primary) passes, and the gateways' accept counters
//! show which gateways carried it.

mod common;

use std::net::SocketAddr;

use common::{Apps, Mesh, accepted, bounded, echo_once};
use mesh::connect::Service;
use mesh::core::ServiceKind;
use mesh::core::{MeshGatewayMode, UpstreamPath};
use mesh::sni::ListenerKind::{Lan, Wan};
use mesh::{Datacenter, MeshGateway};

/// Echo connections made per test.
const ECHOES: u64 = 4;

/// Accept counters of both datacenters' gateways: (secondary LAN, secondary WAN, primary LAN,
/// primary WAN).
fn counters(m: &Mesh) -> (u64, u64, u64, u64) {
    (
        accepted(&m.secondary_gateways, Lan),
        accepted(&m.secondary_gateways, Wan),
        accepted(&m.primary_gateways, Lan),
        accepted(&m.primary_gateways, Wan),
    )
}

/// Makes [`ECHOES`] connections through web's upstream listener, each echoing a distinct line.
async fn echo_through(apps: &Apps) {
    for i in 0..ECHOES {
        let line = format!("hello {i}\n");
        let reply = echo_once(apps.upstream, line.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("echo {i} through {} failed: {e}", apps.upstream));
        assert_eq!(reply, line.as_bytes());
    }
}

/// What an in-app dialer for web's upstream (the same registration the sidecar runs) resolves:
/// the effective mode, the path and its endpoints.
async fn resolved(
    dc: &Datacenter,
    web_token: &str,
) -> (MeshGatewayMode, UpstreamPath, Vec<SocketAddr>) {
    let upstream = dc
        .catalog()
        .entries()
        .await
        .expect("catalog")
        .into_iter()
        .find(|e| e.service.kind == ServiceKind::ConnectProxy)
        .and_then(|e| e.service.proxy)
        .and_then(|p| p.upstreams.into_iter().next())
        .expect("web's sidecar has an upstream");
    let web = Service::new(dc, &web_token.into(), "web".parse().expect("service name"))
        .await
        .expect("web's in-app identity");
    let dialer = web.dialer(&upstream).expect("dialer");
    let mode = dialer.mode().await.expect("mode");
    let (path, mut addrs) = dialer.endpoints().await.expect("endpoints");
    addrs.sort();
    (mode, path, addrs)
}

fn addrs(gws: &[MeshGateway], f: fn(&MeshGateway) -> SocketAddr) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = gws.iter().map(f).collect();
    v.sort();
    v
}

/// Deploys the guide with `proxy-defaults` mode `defaults` and the upstream's own mode
/// `upstream`, allows web -> socat and returns the mesh and the apps.
async fn setup(defaults: &str, upstream: Option<&str>) -> (Mesh, Apps) {
    let m = Mesh::start(2).await;
    m.set_mode(defaults).await;
    let apps = m.deploy(upstream).await;
    m.allow_web_to_socat().await;
    (m, apps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_local_goes_through_both_datacenters_gateways() {
    bounded(async {
        let (m, apps) = setup("local", None).await;
        let (mode, path, via) = resolved(&m.secondary, &apps.web_token).await;
        assert_eq!(mode, MeshGatewayMode::Local);
        assert!(
            matches!(path, UpstreamPath::LocalGateways { .. }),
            "{path:?}"
        );
        assert_eq!(via, addrs(&m.secondary_gateways, MeshGateway::lan_addr));

        let before = counters(&m);
        echo_through(&apps).await;
        let after = counters(&m);
        // web's sidecar -> a secondary gateway (LAN) -> a primary gateway (WAN) -> socat.
        assert_eq!(after.0 - before.0, ECHOES, "secondary LAN");
        assert_eq!(after.1 - before.1, 0, "secondary WAN");
        assert_eq!(after.2 - before.2, 0, "primary LAN");
        assert_eq!(after.3 - before.3, ECHOES, "primary WAN");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_remote_goes_through_the_primarys_gateways_only() {
    bounded(async {
        let (m, apps) = setup("remote", None).await;
        let (mode, path, via) = resolved(&m.secondary, &apps.web_token).await;
        assert_eq!(mode, MeshGatewayMode::Remote);
        assert!(
            matches!(path, UpstreamPath::RemoteGateways { .. }),
            "{path:?}"
        );
        assert_eq!(via, addrs(&m.primary_gateways, MeshGateway::wan_addr));

        let before = counters(&m);
        echo_through(&apps).await;
        let after = counters(&m);
        // web's sidecar -> a primary gateway (WAN) -> socat.
        assert_eq!(after.0 - before.0, 0, "secondary LAN");
        assert_eq!(after.1 - before.1, 0, "secondary WAN");
        assert_eq!(after.2 - before.2, 0, "primary LAN");
        assert_eq!(after.3 - before.3, ECHOES, "primary WAN");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_none_goes_through_no_gateway() {
    bounded(async {
        let (m, apps) = setup("none", None).await;
        let (mode, path, via) = resolved(&m.secondary, &apps.web_token).await;
        assert_eq!(mode, MeshGatewayMode::None);
        assert!(matches!(path, UpstreamPath::Direct { .. }), "{path:?}");
        assert_eq!(via, vec![apps.socat_sidecar.public_addr()]);

        let before = counters(&m);
        echo_through(&apps).await;
        // web's sidecar -> socat's sidecar, straight.
        assert_eq!(counters(&m), before, "no gateway carried the echo");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_mode_overrides_proxy_defaults() {
    bounded(async {
        // proxy-defaults says local; web.json's upstream says remote, and wins.
        let (m, apps) = setup("local", Some("remote")).await;
        let (mode, path, via) = resolved(&m.secondary, &apps.web_token).await;
        assert_eq!(mode, MeshGatewayMode::Remote);
        assert!(
            matches!(path, UpstreamPath::RemoteGateways { .. }),
            "{path:?}"
        );
        assert_eq!(via, addrs(&m.primary_gateways, MeshGateway::wan_addr));

        let before = counters(&m);
        echo_through(&apps).await;
        let after = counters(&m);
        assert_eq!(after.0 - before.0, 0, "secondary LAN");
        assert_eq!(after.1 - before.1, 0, "secondary WAN");
        assert_eq!(after.2 - before.2, 0, "primary LAN");
        assert_eq!(after.3 - before.3, ECHOES, "primary WAN");

        // Switching proxy-defaults does not move an upstream that names its own mode.
        m.set_mode("none").await;
        let (mode, _, _) = resolved(&m.secondary, &apps.web_token).await;
        assert_eq!(mode, MeshGatewayMode::Remote);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_proxy_defaults_moves_the_next_connection() {
    bounded(async {
        // One deployment, the mode switched under it: every new connection follows the
        // current proxy-defaults.
        let (m, apps) = setup("local", None).await;
        for (mode, sec_lan, pri_wan) in [("remote", 0, 1), ("none", 0, 0), ("local", 1, 1)] {
            m.set_mode(mode).await;
            let before = counters(&m);
            let reply = echo_once(apps.upstream, b"switch\n").await.expect("echo");
            assert_eq!(reply, b"switch\n");
            let after = counters(&m);
            assert_eq!(after.0 - before.0, sec_lan, "secondary LAN in mode {mode}");
            assert_eq!(after.3 - before.3, pri_wan, "primary WAN in mode {mode}");
            assert_eq!((after.1, after.2), (before.1, before.2), "mode {mode}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_defaults_written_with_the_service_token_beat_proxy_defaults() {
    bounded(async {
        let (m, apps) = setup("local", None).await;
        // web's own token (service:write on web) writes web's service-defaults from the
        // secondary; the primary checks the forwarded write on the entry's service.
        m.secondary
            .config_entries()
            .write_json(
                &(&apps.web_token).into(),
                r#"{"Kind": "service-defaults", "Name": "web", "MeshGateway": {"Mode": "remote"}}"#,
            )
            .await
            .expect("web's token writes web's service-defaults");
        // ...but not proxy-defaults (mesh:write) nor another service's entry.
        for entry in [
            common::proxy_defaults("none"),
            r#"{"Kind": "service-defaults", "Name": "socat", "MeshGateway": {"Mode": "none"}}"#
                .to_owned(),
        ] {
            let err = m
                .secondary
                .config_entries()
                .write_json(&(&apps.web_token).into(), &entry)
                .await
                .expect_err("refused");
            assert!(
                matches!(err.kind(), mesh::ErrorKind::PermissionDenied(_)),
                "{err:?}"
            );
        }
        let (mode, path, _) = resolved(&m.secondary, &apps.web_token).await;
        assert_eq!(mode, MeshGatewayMode::Remote);
        assert!(
            matches!(path, UpstreamPath::RemoteGateways { .. }),
            "{path:?}"
        );
        let before = counters(&m);
        echo_through(&apps).await;
        let after = counters(&m);
        assert_eq!(after.0 - before.0, 0, "secondary LAN");
        assert_eq!(after.3 - before.3, ECHOES, "primary WAN");
    })
    .await;
}
