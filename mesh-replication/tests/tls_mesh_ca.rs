//! Replication and forwarding over mTLS with certificates issued by mesh-ca: each datacenter's
//! CA (the primary's root, the secondary's intermediate signed by it) signs its servers'
//! identities (`spiffe://<td>/agent/server/dc/<dc>`), and mesh-ca's rustls configs
//! authenticate each side by SPIFFE ID.

mod common;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mesh_ca::tls::{ConnectAuthorizer, ExpectedServer, TlsIdentity};
use mesh_ca::{Ca, CaOptions, LeafCert, Refusal, new_leaf_request};
use mesh_core::{ServerId, Sni, SpiffeId};
use mesh_replication::tls::TlsConnector;
use mesh_replication::{
    Forwarder, FramedTransport, MemoryStore, RemoteErrorKind, Replicas, ReplicationServer,
    ServeConfig, Store, TcpConnector, Transport, TransportError,
};
use tokio::net::TcpListener;

/// A server identity of `dc`, signed by `ca` (which allows server IDs here, as Consul's
/// `acl:write` holders may ask for them).
async fn server_identity(ca: &Ca, dc: &str) -> Result<TlsIdentity, Box<dyn Error>> {
    let id = SpiffeId::Server(ServerId::new(ca.trust_domain().clone(), dc.parse()?));
    let req = new_leaf_request(&id, &[])?;
    let allow_servers = |id: &SpiffeId| match id {
        SpiffeId::Server(_) => Ok(()),
        _ => Err(Refusal::new("only server identities in this test")),
    };
    let issued = ca.sign_leaf_pem(&req.csr_pem, &allow_servers).await?;
    let leaf = LeafCert::new(issued, req.key);
    Ok(TlsIdentity::with_leaf(&leaf, &ca.roots())?)
}

/// The primary accepts only the servers of the mesh (any datacenter).
struct ServersOnly;

impl ConnectAuthorizer for ServersOnly {
    fn authorize(&self, peer: &SpiffeId) -> Result<(), Refusal> {
        match peer {
            SpiffeId::Server(_) => Ok(()),
            other => Err(Refusal::new(format!("{other} is not a server"))),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_over_mtls_with_mesh_ca_identities() -> R {
    let ca = Ca::bootstrap_primary(CaOptions::new("primary".parse()?)).await?;
    let td = ca.trust_domain().clone();

    let primary_id = server_identity(&ca, "primary").await?;
    let server_cfg = Arc::new(primary_id.server_config(Arc::new(ServersOnly))?);
    let primary: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let server = Arc::new(ReplicationServer::new(
        registry(),
        primary.clone(),
        TestAcl::new(),
    ));
    let handle = server.spawn_tcp(
        TcpListener::bind("127.0.0.1:0").await?,
        Some(server_cfg),
        ServeConfig::default(),
    )?;
    primary.txn(upserts(POLICIES, 0..200, 1)).await?;

    // The secondary's server identity comes from its own intermediate, signed by the primary.
    let secondary_ca = Ca::init_secondary(CaOptions::new("secondary".parse()?), &ca).await?;
    let secondary_id = server_identity(&secondary_ca, "secondary").await?;
    let expected = ExpectedServer::id(SpiffeId::Server(ServerId::new(td, "primary".parse()?)));
    let client_cfg = Arc::new(secondary_id.client_config(expected)?);
    let sni = Sni::server(None, "primary".parse()?, "consul".parse()?);
    let connector = TlsConnector::new(TcpConnector::new(handle.local_addr()), client_cfg, &sni)?;
    let transport: Arc<dyn Transport> = Arc::new(FramedTransport::new(connector));

    let secondary: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let replicas = Replicas::spawn(
        &registry(),
        secondary.clone(),
        transport.clone(),
        config(replication_token()),
    );
    caught_up(replicas.get(&t(POLICIES)).ok_or("replicator")?, &*primary).await?;
    assert_converged(&*primary, &*secondary, POLICIES).await?;

    let fwd = Forwarder::secondary(registry(), secondary.clone(), TestAcl::new(), transport);
    let receipt = fwd
        .write(&management_token(), deletes(POLICIES, 0..50))
        .await?;
    assert!(receipt.forwarded);
    replicas
        .wait_for_index(&t(POLICIES), receipt.index, Duration::from_secs(30))
        .await?;
    assert_eq!(secondary.list(&t(POLICIES)).await?.records.len(), 150);
    replicas.stop().await;
    handle.shutdown().await;
    Ok(())
}

/// A primary's replication server behind `config`, with one record; and its address.
async fn primary_with(
    config: rustls::ServerConfig,
) -> Result<(Arc<dyn Store>, mesh_replication::ServerHandle), Box<dyn Error>> {
    let primary: Arc<dyn Store> = Arc::new(MemoryStore::new());
    primary.txn(upserts(POLICIES, 0..1, 1)).await?;
    let server = Arc::new(ReplicationServer::new(
        registry(),
        primary.clone(),
        TestAcl::new(),
    ));
    let handle = server.spawn_tcp(
        TcpListener::bind("127.0.0.1:0").await?,
        Some(Arc::new(config)),
        ServeConfig::default(),
    )?;
    Ok((primary, handle))
}

/// A transport from `identity` (with or without a leaf) to `addr`, expecting `expected`.
fn transport_to(
    identity: &TlsIdentity,
    addr: std::net::SocketAddr,
    expected: ExpectedServer,
) -> Result<Arc<dyn Transport>, Box<dyn Error>> {
    let cfg = Arc::new(identity.client_config(expected)?);
    let sni = Sni::server(None, "primary".parse()?, "consul".parse()?);
    let connector = TlsConnector::new(TcpConnector::new(addr), cfg, &sni)?;
    Ok(Arc::new(FramedTransport::new(connector)))
}

async fn list_once(t: &Arc<dyn Transport>) -> Result<usize, mesh_replication::TransportError> {
    t.list(mesh_replication::ListRequest {
        token: replication_token(),
        table: t_name(),
        min_index: mesh_core::Index::ZERO,
        wait: Duration::ZERO,
    })
    .await
    .map(|l| l.records.len())
}

fn t_name() -> mesh_replication::TableName {
    t(POLICIES)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_port_refuses_what_is_not_a_mesh_server() -> R {
    let ca = Ca::bootstrap_primary(CaOptions::new("primary".parse()?)).await?;
    let td = ca.trust_domain().clone();
    let primary_id = server_identity(&ca, "primary").await?;
    let (_p, handle) = primary_with(primary_id.server_config(Arc::new(ServersOnly))?).await?;
    let addr = handle.local_addr();
    let primary_server = || {
        ExpectedServer::id(SpiffeId::Server(ServerId::new(
            td.clone(),
            "primary".parse().expect("dc"),
        )))
    };

    // A server of the mesh gets through.
    let secondary_ca = Ca::init_secondary(CaOptions::new("secondary".parse()?), &ca).await?;
    let secondary = server_identity(&secondary_ca, "secondary").await?;
    assert_eq!(
        list_once(&transport_to(&secondary, addr, primary_server())?).await?,
        1
    );
    // Expecting another server identity: the client refuses the primary.
    let wrong = ExpectedServer::id(SpiffeId::Server(ServerId::new(
        td.clone(),
        "elsewhere".parse()?,
    )));
    assert!(
        list_once(&transport_to(&secondary, addr, wrong)?)
            .await
            .is_err()
    );
    // No certificate at all, a service identity, another mesh's server: refused.
    let bare = TlsIdentity::new(mesh_ca::tls::TrustBundle::from_roots(&ca.roots())?);
    assert!(
        list_once(&transport_to(&bare, addr, primary_server())?)
            .await
            .is_err()
    );
    let web = {
        let id = SpiffeId::from(mesh_core::ServiceId::new(
            td.clone(),
            "primary".parse()?,
            "web".parse()?,
        ));
        let req = new_leaf_request(&id, &[])?;
        let all = |_: &SpiffeId| Ok::<(), Refusal>(());
        let issued = ca.sign_leaf_pem(&req.csr_pem, &all).await?;
        TlsIdentity::with_leaf(&LeafCert::new(issued, req.key), &ca.roots())?
    };
    assert!(
        list_once(&transport_to(&web, addr, primary_server())?)
            .await
            .is_err()
    );
    let other = Ca::bootstrap_primary(CaOptions::new("primary".parse()?)).await?;
    let stranger = server_identity(&other, "primary").await?;
    stranger.set_bundle(mesh_ca::tls::TrustBundle::from_roots(&ca.roots())?);
    assert!(
        list_once(&transport_to(&stranger, addr, primary_server())?)
            .await
            .is_err()
    );
    // And the server keeps serving its own.
    assert_eq!(
        list_once(&transport_to(&secondary, addr, primary_server())?).await?,
        1
    );

    // With client certificates optional (a secondary before it enrolls), a client without
    // one gets through the handshake but is answered nothing but enrollment; one that
    // presents a wrong identity does not get through.
    let (_p2, open) =
        primary_with(primary_id.server_config_optional_client(Arc::new(ServersOnly))?).await?;
    match list_once(&transport_to(&bare, open.local_addr(), primary_server())?).await {
        Err(TransportError::Remote(r)) => {
            assert_eq!(r.kind, RemoteErrorKind::CertificateRequired, "{r}")
        }
        other => panic!("a client without a certificate was listed to: {other:?}"),
    }
    assert_eq!(
        list_once(&transport_to(
            &secondary,
            open.local_addr(),
            primary_server()
        )?)
        .await?,
        1
    );
    assert!(
        list_once(&transport_to(&web, open.local_addr(), primary_server())?)
            .await
            .is_err()
    );
    handle.shutdown().await;
    open.shutdown().await;
    Ok(())
}
