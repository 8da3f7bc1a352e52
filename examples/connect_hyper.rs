//! HTTP over mesh mTLS with hyper: where mesh meets the rustls/tokio stack.
//!
//! `api` accepts TCP itself and hands each connection to `connect::Service::accept`, which
//! returns a `tokio_rustls` server stream and the caller's verified SPIFFE ID; hyper's
//! `serve_connection` then serves HTTP/1.1 on that stream (axum's `Router` is a hyper service
//! too, and tonic's `serve_with_incoming` takes a stream of such connections). `web` dials with
//! `connect::Dialer::dial`, a `tokio_rustls` client stream, and speaks HTTP/1.1 on it with
//! hyper's client `handshake`. The handler sees who called: the identity comes from the
//! certificate, not from a header anybody could send.
//!
//! ```text
//! cargo run --example connect_hyper
//! ```

use std::convert::Infallible;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mesh::connect::Service;
use mesh::core::{ServiceDefinition, Upstream};
use mesh::{Datacenter, DatacenterConfig, Secret};
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let token = Secret::new("a-management-secret");
    let mut config = DatacenterConfig::new("dc1".parse()?, "dc1".parse()?);
    config.acl.tokens.initial_management = Some(token.clone());
    let dc = Datacenter::start_primary(config).await?;
    dc.intentions()
        .allow(&token, &"web".parse()?, &"api".parse()?)
        .await?;

    // api: TCP accepted here, mTLS by mesh, HTTP by hyper.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api_def = ServiceDefinition::connect_native("api".parse()?, listener.local_addr()?);
    dc.catalog().register(&token, &api_def).await?;
    let api = Service::new(&dc, &token, "api".parse()?).await?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok((tls, caller)) = api.accept(tcp).await else {
                continue;
            };
            let who = caller.to_string();
            let handler = hyper::service::service_fn(move |req: Request<Incoming>| {
                let body = format!("hello {who}, you asked for {}\n", req.uri().path());
                async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), handler),
            );
        }
    });

    // web: mesh dials (mTLS, api's identity verified), hyper speaks HTTP on the stream.
    let web = Service::new(&dc, &token, "web".parse()?).await?;
    let tls = web
        .dialer(&Upstream::service("api".parse()?, 9191))?
        .dial()
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = Request::get("/orders")
        .header("host", "api")
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    print!("{status} {}", String::from_utf8_lossy(&body));
    if !status.is_success() || !body.starts_with(b"hello spiffe://") {
        return Err("unexpected answer".into());
    }
    Ok(())
}
