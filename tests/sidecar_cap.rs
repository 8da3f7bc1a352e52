//! A sidecar under three times its connection cap: the connections over the cap are closed
//! on accept and counted, the ones within it are kept, and once the flood is gone a real
//! caller is served again.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::time::Duration;

use mesh::connect::Service;
use mesh::core::Upstream;
use mesh::intentions::acl::DefaultPolicy;
use mesh::intentions::intention::Action;
use mesh::{Datacenter, DatacenterConfig, Secret, Sidecar, SidecarOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MGMT: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const CAP: usize = 10;

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 30 s: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_over_its_cap_refuses_the_excess_and_keeps_serving() {
    let mut c = DatacenterConfig::new("dc1".parse().unwrap(), "dc1".parse().unwrap());
    c.acl.enabled = true;
    c.acl.default_policy = DefaultPolicy::Deny;
    c.acl.tokens.initial_management = Some(MGMT.into());
    let dc = Datacenter::start_primary(c).await.unwrap();
    let token = Secret::new(MGMT);
    // api's application: an echo server.
    let app = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_port = app.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = app.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let reg = format!(
        r#"{{"service": {{"name": "api", "port": {app_port}, "connect": {{"sidecar_service": {{}}}}}}}}"#
    );
    dc.catalog().register_json(&token, &reg).await.unwrap();
    dc.intentions()
        .create(
            &token,
            &"web".parse().unwrap(),
            &"api".parse().unwrap(),
            Action::Allow,
        )
        .await
        .unwrap();
    let opts = SidecarOptions::default()
        .public_bind("127.0.0.1:0".parse().unwrap())
        .max_connections(CAP);
    let sidecar = Sidecar::start(&dc, &token, "api", opts).await.unwrap();
    let public = sidecar.public_addr();

    // Three times the cap of connections that never send a byte.
    let mut flood = Vec::new();
    for _ in 0..3 * CAP {
        flood.push(TcpStream::connect(public).await.unwrap());
    }
    until("the excess is refused", || {
        sidecar.refused_connections() == (2 * CAP) as u64
    })
    .await;
    assert_eq!(sidecar.live_connections(), CAP);
    // The refused ones were closed: reading them ends at once.
    let mut closed = 0;
    for s in &mut flood {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 2 * CAP);

    // The flood goes away; a real caller gets through.
    drop(flood);
    until("the held connections end", || {
        sidecar.live_connections() == 0
    })
    .await;
    let web = Service::new(&dc, &token, "web".parse().unwrap())
        .await
        .unwrap();
    let dialer = web
        .dialer(&Upstream::service("api".parse().unwrap(), 0))
        .unwrap();
    let mut tls = dialer.dial().await.unwrap();
    tls.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}
