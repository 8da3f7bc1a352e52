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
use mesh_replication::transport::tls::TlsConnector;
use mesh_replication::{
    Forwarder, FramedTransport, MemoryStore, Replicas, ReplicationServer, ServeConfig, Store,
    TcpConnector, Transport,
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
