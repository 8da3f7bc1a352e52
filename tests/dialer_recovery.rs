//! A dialer whose only endpoint refused a connect tries it again on the next dial: when every
//! endpoint is held off, it tries them all anyway (panic mode), so a backend that comes back
//! is used at once instead of after the hold-off.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use mesh::connect::Service;
use mesh::core::Upstream;
use mesh::intentions::acl::DefaultPolicy;
use mesh::intentions::intention::Action;
use mesh::{Datacenter, DatacenterConfig, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const MGMT: &str = "11111111-aaaa-4bbb-8ccc-000000000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_endpoint_is_tried_again_as_soon_as_it_is_back() {
    let mut c = DatacenterConfig::new("dc1".parse().unwrap(), "dc1".parse().unwrap());
    c.acl.enabled = true;
    c.acl.default_policy = DefaultPolicy::Deny;
    c.acl.tokens.initial_management = Some(MGMT.into());
    let dc = Datacenter::start_primary(c).await.unwrap();
    let token = Secret::new(MGMT);
    dc.intentions()
        .create(
            &token,
            &"web".parse().unwrap(),
            &"api".parse().unwrap(),
            Action::Allow,
        )
        .await
        .unwrap();
    // api is Connect-native at an address where nothing listens yet.
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let reg = format!(
        r#"{{"service": {{"name": "api", "address": "127.0.0.1", "port": {}, "connect": {{"native": true}}}}}}"#,
        addr.port()
    );
    dc.catalog().register_json(&token, &reg).await.unwrap();
    let api = Service::new(&dc, &token, "api".parse().unwrap())
        .await
        .unwrap();
    let web = Service::new(&dc, &token, "web".parse().unwrap())
        .await
        .unwrap();
    let dialer = web
        .dialer(&Upstream::service("api".parse().unwrap(), 0))
        .unwrap();

    // Nothing listens: refused, and the endpoint is held off.
    assert!(dialer.dial().await.is_err());

    // The backend comes back: the very next dial reaches it.
    let listener = TcpListener::bind(addr).await.unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut tls, _) = api.accept(tcp).await.unwrap();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(&buf).await.unwrap();
        tls.flush().await.unwrap();
    });
    let mut tls = dialer.dial().await.expect("tried again although held off");
    tls.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    server.await.unwrap();
}
