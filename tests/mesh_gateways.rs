//! Two mesh gateways per datacenter: round-robin between them, a gateway killed under
//! traffic (still registered: new connections fail over), and a gateway shut down
//! (deregistered: the route tables drop it).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Mesh, accepted_by, bounded, echo_on, echo_once, routed_to, wait_until};
use mesh::MeshGateway;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Connect failures recorded by `gw` on the route that `sni` takes.
fn connect_failures(gw: &MeshGateway, sni: &str) -> u64 {
    let label = match gw.sni_gateway().routes().load().route(Some(sni)) {
        Ok(r) => r.label().to_owned(),
        Err(e) => panic!("{} has no route for {sni}: {e}", gw.id()),
    };
    gw.stats()
        .routes
        .get(&label)
        .map_or(0, |s| s.connect_failures)
}

/// When each connection of the traffic started, and how it ended.
type Log = Arc<Mutex<Vec<(Instant, Result<(), String>)>>>;

fn per_gateway(gws: &[MeshGateway]) -> Vec<u64> {
    gws.iter().map(accepted_by).collect()
}

fn delta(after: &[u64], before: &[u64]) -> Vec<u64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

async fn local_mode_mesh() -> (Mesh, common::Apps) {
    let m = Mesh::start(2).await;
    m.set_mode("local").await;
    let apps = m.deploy(None).await;
    m.allow_web_to_socat().await;
    (m, apps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_connections_over_both_gateways() {
    bounded(async {
        const N: u64 = 24;
        let (m, apps) = local_mode_mesh().await;
        let sec0 = per_gateway(&m.secondary_gateways);
        let pri0 = per_gateway(&m.primary_gateways);
        for i in 0..N {
            let line = format!("rr {i}\n");
            let reply = echo_once(apps.upstream, line.as_bytes())
                .await
                .expect("echo");
            assert_eq!(reply, line.as_bytes());
        }
        let sec = delta(&per_gateway(&m.secondary_gateways), &sec0);
        let pri = delta(&per_gateway(&m.primary_gateways), &pri0);
        assert_eq!(sec.iter().sum::<u64>(), N, "secondary gateways {sec:?}");
        assert_eq!(pri.iter().sum::<u64>(), N, "primary gateways {pri:?}");
        assert!(sec[0].abs_diff(sec[1]) <= 1, "web's sidecar spread {sec:?}");
        assert!(
            pri[0].abs_diff(pri[1]) <= 1,
            "the secondary's gateways spread {pri:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_gateway_is_failed_over_by_new_connections() {
    bounded(async {
        const AFTER_KILL: usize = 20;
        let (mut m, apps) = local_mode_mesh().await;
        for _ in 0..4 {
            assert!(common::echo_ok(apps.upstream).await);
        }
        // Four long-lived connections: together they use every (secondary, primary) gateway
        // pair once.
        let mut held = Vec::new();
        for i in 0..4 {
            let mut s = TcpStream::connect(apps.upstream).await.expect("connect");
            let line = format!("held {i}\n");
            assert_eq!(
                echo_on(&mut s, line.as_bytes()).await.expect("echo"),
                line.as_bytes()
            );
            held.push(s);
        }

        // Traffic: new connections one after the other until told to stop.
        let log: Log = Arc::default();
        let stop = Arc::new(tokio::sync::Notify::new());
        let traffic = {
            let (log, stop, upstream) = (log.clone(), stop.clone(), apps.upstream);
            tokio::spawn(async move {
                let mut i = 0u64;
                loop {
                    let started = Instant::now();
                    let line = format!("traffic {i}\n");
                    let res = tokio::select! {
                        r = echo_once(upstream, line.as_bytes()) => r,
                        () = stop.notified() => return,
                    };
                    let res = match res {
                        Ok(r) if r == line.as_bytes() => Ok(()),
                        Ok(r) => Err(format!("wrong echo {r:?}")),
                        Err(e) => Err(e.to_string()),
                    };
                    log.lock().expect("log").push((started, res));
                    i += 1;
                }
            })
        };
        wait_until("some traffic before the kill", || {
            let n = log.lock().expect("log").len();
            async move { n >= 3 }
        })
        .await;

        // One gateway of each datacenter crashes: it stops, it stays registered.
        let dead_sec = m.secondary_gateways.remove(0);
        let dead_pri = m.primary_gateways.remove(0);
        let (dead_sec_id, dead_pri_id) = (dead_sec.id().to_owned(), dead_pri.id().to_owned());
        let dead_pri_wan = dead_pri.wan_addr();
        tokio::join!(dead_sec.kill(), dead_pri.kill());
        let killed = Instant::now();

        wait_until("new connections after the kill", || {
            let n = log
                .lock()
                .expect("log")
                .iter()
                .filter(|(t, _)| *t >= killed)
                .count();
            async move { n >= AFTER_KILL }
        })
        .await;
        stop.notify_one();
        traffic.await.expect("traffic task");

        let log = std::mem::take(&mut *log.lock().expect("log"));
        let after: Vec<_> = log.iter().filter(|(t, _)| *t >= killed).collect();
        let failed: Vec<_> = after.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
        assert!(after.len() >= AFTER_KILL);
        assert!(
            failed.is_empty(),
            "new connections failed after the kill: {failed:?}"
        );

        // The connections held through a dead gateway were cut, the one through the two
        // survivors still echoes.
        let mut alive = 0;
        for (i, s) in held.iter_mut().enumerate() {
            let line = format!("still {i}\n");
            if matches!(echo_on(s, line.as_bytes()).await, Ok(r) if r == line.as_bytes()) {
                alive += 1;
            }
        }
        assert!(
            (1..4).contains(&alive),
            "{alive} of 4 held connections survived"
        );

        // The survivors only got there by failing over: the secondary's gateway tried the
        // dead primary gateway (still in its table) and moved on.
        let survivor = &m.secondary_gateways[0];
        assert!(
            routed_to(survivor, &apps.sni).contains(&dead_pri_wan),
            "still registered"
        );
        assert!(
            connect_failures(survivor, &apps.sni) >= 1,
            "{}",
            survivor.stats()
        );
        let fed = m
            .secondary
            .catalog()
            .federation()
            .await
            .expect("federation");
        assert!(
            fed.iter().any(|g| g.id == dead_pri_id),
            "kill does not deregister"
        );
        assert!(
            m.secondary
                .catalog()
                .entries()
                .await
                .expect("catalog")
                .iter()
                .any(|e| {
                    e.service.id.as_ref().map(|i| i.as_str()) == Some(dead_sec_id.as_str())
                })
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shut_down_gateway_is_dropped_from_the_route_tables() {
    bounded(async {
        const N: u64 = 10;
        let (mut m, apps) = local_mode_mesh().await;
        assert!(common::echo_ok(apps.upstream).await);

        let gone_pri = m.primary_gateways.remove(1);
        let gone_sec = m.secondary_gateways.remove(1);
        let (gone_pri_id, gone_sec_id) = (gone_pri.id().to_owned(), gone_sec.id().to_owned());
        let gone_pri_wan = gone_pri.wan_addr();
        gone_pri.shutdown(Duration::from_secs(1)).await;
        gone_sec.shutdown(Duration::from_secs(1)).await;

        // Deregistered: the primary's federation record is gone in both datacenters and the
        // secondary's gateway routes the primary's SNI to the one primary gateway left.
        let survivor_wan = m.primary_gateways[0].wan_addr();
        wait_until("the route tables to drop the shut-down gateway", || {
            let routes = routed_to(&m.secondary_gateways[0], &apps.sni);
            let (p, s) = (m.primary.clone(), m.secondary.clone());
            let (gp, gs) = (gone_pri_id.clone(), gone_sec_id.clone());
            async move {
                let pf = p.catalog().federation().await.unwrap_or_default();
                let sf = s.catalog().federation().await.unwrap_or_default();
                routes == vec![survivor_wan]
                    && !pf.iter().chain(&sf).any(|g| g.id == gp || g.id == gs)
            }
        })
        .await;
        assert!(!routed_to(&m.secondary_gateways[0], &apps.sni).contains(&gone_pri_wan));
        assert!(
            !m.secondary
                .catalog()
                .entries()
                .await
                .expect("catalog")
                .iter()
                .any(|e| {
                    e.service.id.as_ref().map(|i| i.as_str()) == Some(gone_sec_id.as_str())
                })
        );

        // Every new connection goes through the survivors, without a failed attempt.
        let fails0 = connect_failures(&m.secondary_gateways[0], &apps.sni);
        let (sec0, pri0) = (
            accepted_by(&m.secondary_gateways[0]),
            accepted_by(&m.primary_gateways[0]),
        );
        for i in 0..N {
            let line = format!("after shutdown {i}\n");
            assert_eq!(
                echo_once(apps.upstream, line.as_bytes())
                    .await
                    .expect("echo"),
                line.as_bytes()
            );
        }
        assert_eq!(accepted_by(&m.secondary_gateways[0]) - sec0, N);
        assert_eq!(accepted_by(&m.primary_gateways[0]) - pri0, N);
        assert_eq!(
            connect_failures(&m.secondary_gateways[0], &apps.sni),
            fails0
        );
    })
    .await;
}

/// A Connect-native service (`"connect": {"native": true}`) terminates mTLS itself: the
/// gateways of its datacenter route its SNI to its own address, and a connection sent there
/// lands on it with the client's hello intact. Deregistering it drops the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
async fn gateway_routes_to_a_connect_native_service() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let m = Mesh::start(1).await;
        let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app_addr = app.local_addr().unwrap();
        let mgmt: mesh::Secret = (&m.mgmt).into();
        let def = serde_json::json!({"service": {
            "name": "native-svc", "port": app_addr.port(), "address": "127.0.0.1",
            "connect": {"native": true}}})
        .to_string();
        let reg = m
            .primary
            .catalog()
            .register_json(&mgmt, &def)
            .await
            .unwrap();
        assert!(reg.sidecar.is_none());
        assert!(reg.service.is_native(), "Connect.Native is kept");
        let native: mesh::core::ServiceName = "native-svc".parse().unwrap();
        assert_eq!(
            m.primary
                .catalog()
                .sidecar_addresses(&native)
                .await
                .unwrap(),
            vec![app_addr],
            "a native service's own address is where mTLS lands"
        );
        let td = m.primary.trust_domain().unwrap();
        let sni = format!("native-svc.default.primary.internal.{td}");
        let gw = &m.primary_gateways[0];
        wait_until("the gateway's route to the native service", || {
            let sni = sni.clone();
            async move { routed_to(gw, &sni) == vec![app_addr] }
        })
        .await;
        // A client's hello for the native service, through the gateway's WAN listener.
        let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let mut conn = rustls::ClientConnection::new(
            std::sync::Arc::new(client),
            rustls::pki_types::ServerName::try_from(sni.clone()).unwrap(),
        )
        .unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        let mut out = TcpStream::connect(gw.wan_addr()).await.unwrap();
        out.write_all(&hello).await.unwrap();
        let (mut landed, _) = app.accept().await.unwrap();
        let mut got = vec![0u8; hello.len()];
        landed.read_exact(&mut got).await.unwrap();
        assert_eq!(got, hello, "the hello reaches the native service unchanged");
        // Deregistered: the route goes.
        m.primary
            .catalog()
            .deregister(&mgmt, reg.id.as_str())
            .await
            .unwrap();
        wait_until("the route to the native service to go", || {
            let sni = sni.clone();
            async move { routed_to(gw, &sni).is_empty() }
        })
        .await;
    })
    .await;
}
