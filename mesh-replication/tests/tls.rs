//! Replication and forwarding over mTLS with server SPIFFE identities (certificates made with
//! rcgen here; in a mesh they come from mesh-ca).

mod common;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use common::certs::{Ca, TD, ca, server_leaf};
use common::*;
use mesh_core::{Datacenter, ServerId, Sni, TrustDomain};
use mesh_replication::transport::tls::{self, TlsConnector};
use mesh_replication::{
    Forwarder, FramedTransport, Index, ListRequest, MemoryStore, Replicas, ReplicationServer,
    ServeConfig, Store, TcpConnector, Transport, TransportError,
};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;

struct Setup {
    primary: Arc<dyn Store>,
    addr: std::net::SocketAddr,
    _server: mesh_replication::ServerHandle,
    ca: Ca,
}

async fn primary_over_mtls() -> Result<Setup, Box<dyn Error>> {
    let ca = ca("mesh root")?;
    let leaf = server_leaf(&ca, "primary")?;
    let cfg = tls::server_config(std::slice::from_ref(&ca.cert), leaf.chain, leaf.key)?;
    let primary: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let server = Arc::new(ReplicationServer::new(
        registry(),
        primary.clone(),
        TestAcl::new(),
    ));
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let handle = server.spawn_tcp(l, Some(cfg), ServeConfig::default())?;
    Ok(Setup {
        primary,
        addr: handle.local_addr(),
        _server: handle,
        ca,
    })
}

fn secondary_transport(
    s: &Setup,
    client_ca: &Ca,
    expect_dc: &str,
) -> Result<Arc<dyn Transport>, Box<dyn Error>> {
    let leaf = server_leaf(client_ca, "secondary")?;
    let td: TrustDomain = TD.parse()?;
    let expected = ServerId::new(td, expect_dc.parse::<Datacenter>()?);
    let cfg = tls::client_config(
        std::slice::from_ref(&s.ca.cert),
        leaf.chain,
        leaf.key,
        expected,
    )?;
    let sni = Sni::server(None, "primary".parse()?, "consul".parse()?);
    assert_eq!(sni.to_string(), "server.primary.consul");
    let connector = TlsConnector::new(TcpConnector::new(s.addr), cfg, &sni)?;
    Ok(Arc::new(FramedTransport::new(connector)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_and_forwarding_over_mtls() -> R {
    let s = primary_over_mtls().await?;
    s.primary.txn(upserts(POLICIES, 0..500, 1)).await?;
    s.primary.txn(upserts(CONFIG, 0..10, 1)).await?;
    let transport = secondary_transport(&s, &s.ca, "primary")?;
    let secondary: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let replicas = Replicas::spawn(
        &registry(),
        secondary.clone(),
        transport.clone(),
        config(replication_token()),
    );
    for table in [POLICIES, CONFIG] {
        caught_up(replicas.get(&t(table)).ok_or("replicator")?, &*s.primary).await?;
        assert_converged(&*s.primary, &*secondary, table).await?;
    }
    let fwd = Forwarder::secondary(
        registry(),
        secondary.clone(),
        TestAcl::new(),
        transport.clone(),
    );
    let receipt = fwd
        .write(&management_token(), deletes(POLICIES, 0..100))
        .await?;
    assert!(receipt.forwarded);
    replicas
        .wait_for_index(&t(POLICIES), receipt.index, Duration::from_secs(30))
        .await?;
    assert_eq!(secondary.list(&t(POLICIES)).await?.records.len(), 400);
    // The token is still checked behind mTLS.
    let err = transport
        .list(ListRequest {
            token: read_only_token(),
            table: t(POLICIES),
            min_index: Index::ZERO,
            wait: Duration::ZERO,
        })
        .await;
    assert!(matches!(&err, Err(e) if e.is_denied()), "{err:?}");
    replicas.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_identity_is_refused() -> R {
    let s = primary_over_mtls().await?;
    s.primary.txn(upserts(POLICIES, 0..1, 1)).await?;
    let transport = secondary_transport(&s, &s.ca, "elsewhere")?;
    let err = transport
        .list(ListRequest {
            token: replication_token(),
            table: t(POLICIES),
            min_index: Index::ZERO,
            wait: Duration::ZERO,
        })
        .await;
    assert!(matches!(err, Err(TransportError::Tls(_))), "{err:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_from_another_root_is_refused() -> R {
    let s = primary_over_mtls().await?;
    let rogue = ca("rogue root")?;
    let transport = secondary_transport(&s, &rogue, "primary")?;
    let res = transport
        .apply(mesh_replication::ApplyRequest {
            token: management_token(),
            ops: upserts(POLICIES, 0..1, 1),
        })
        .await;
    assert!(res.is_err(), "{res:?}");
    assert_eq!(s.primary.index(), Index::ZERO, "nothing written");
    Ok(())
}

#[test]
fn tls_setup_refuses_bad_input() -> Result<(), Box<dyn Error>> {
    let c = ca("root")?;
    let leaf = server_leaf(&c, "primary")?;
    assert!(matches!(
        tls::server_config(&[], leaf.chain.clone(), leaf.key.clone_key()),
        Err(tls::TlsSetupError::NoRoots)
    ));
    assert!(matches!(
        tls::server_config(&[CertificateDer::from(vec![1, 2, 3])], leaf.chain, leaf.key),
        Err(tls::TlsSetupError::BadRoot(_))
    ));
    Ok(())
}
