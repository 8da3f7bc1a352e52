//! The replication stream through real mesh gateways: the secondary dials its own datacenter's
//! gateway with the SNI `server.primary.consul`; that gateway forwards the bytes untouched to the
//! primary's gateway (WAN), which hands them to the primary's replication server. mTLS runs end
//! to end between the two servers; the gateways see only the ClientHello.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::certs::TD;
use common::*;
use mesh_ca::tls::{ConnectAuthorizer, ExpectedServer, TlsIdentity};
use mesh_ca::{Ca, CaOptions, LeafCert, Refusal, new_leaf_request};
use mesh_core::{ServerId, Sni, SpiffeId};
use mesh_replication::tls::TlsConnector;
use mesh_replication::{
    Forwarder, FramedTransport, MemoryStore, Replicas, ReplicationServer, ServeConfig, Store,
    TcpConnector, Transport,
};
use mesh_sni::{Gateway, GatewayConfig, ListenerKind, Pool, RouteTable};
use tokio::net::TcpListener;

/// A server identity of `dc`, signed by `ca`.
async fn server_identity(ca: &Ca, dc: &str) -> Result<TlsIdentity, Box<dyn std::error::Error>> {
    let id = SpiffeId::Server(ServerId::new(ca.trust_domain().clone(), dc.parse()?));
    let req = new_leaf_request(&id, &[])?;
    let servers = |id: &SpiffeId| match id {
        SpiffeId::Server(_) => Ok(()),
        _ => Err(Refusal::new("only server identities here")),
    };
    let issued = ca.sign_leaf_pem(&req.csr_pem, &servers).await?;
    Ok(TlsIdentity::with_leaf(
        &LeafCert::new(issued, req.key),
        &ca.roots(),
    )?)
}

/// The primary accepts only servers of the mesh.
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
async fn replication_through_mesh_gateways() -> R {
    let root = Ca::bootstrap_primary(CaOptions::new("primary".parse()?)).await?;
    // The primary's replication server, behind mTLS.
    let primary: Arc<dyn Store> = Arc::new(MemoryStore::new());
    primary.txn(upserts(POLICIES, 0..200, 1)).await?;
    let server_tls = Arc::new(
        server_identity(&root, "primary")
            .await?
            .server_config(Arc::new(ServersOnly))?,
    );
    let server = Arc::new(ReplicationServer::new(
        registry(),
        primary.clone(),
        TestAcl::new(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server = server.spawn_tcp(listener, Some(server_tls), ServeConfig::default())?;

    // The primary's gateway: its servers by exact name.
    let server_sni = Sni::server(None, "primary".parse()?, "consul".parse()?).to_string();
    let primary_routes = RouteTable::builder("primary".parse()?, TD.parse()?)
        .exact(&server_sni, Pool::new([server.local_addr()]))
        .build()?;
    let primary_gw = Gateway::new(GatewayConfig::default(), primary_routes)?;
    let primary_wan = primary_gw
        .listen(ListenerKind::Wan, "127.0.0.1:0".parse()?)
        .await?;

    // The secondary's gateway: everything for the primary goes to the primary's gateways.
    let secondary_routes = RouteTable::builder("secondary".parse()?, TD.parse()?)
        .datacenter("primary".parse()?, Pool::new([primary_wan]))
        .build()?;
    let secondary_gw = Gateway::new(GatewayConfig::default(), secondary_routes)?;
    let secondary_lan = secondary_gw
        .listen(ListenerKind::Lan, "127.0.0.1:0".parse()?)
        .await?;

    // The secondary dials its local gateway, naming the primary's servers.
    let expected = ExpectedServer::id(SpiffeId::Server(ServerId::new(
        root.trust_domain().clone(),
        "primary".parse()?,
    )));
    let secondary_ca = Ca::init_secondary(CaOptions::new("secondary".parse()?), &root).await?;
    let client_tls = Arc::new(
        server_identity(&secondary_ca, "secondary")
            .await?
            .client_config(expected)?,
    );
    let sni = Sni::server(None, "primary".parse()?, "consul".parse()?);
    let connector = TlsConnector::new(TcpConnector::new(secondary_lan), client_tls, &sni)?;
    let transport: Arc<dyn Transport> = Arc::new(FramedTransport::new(connector));

    let secondary: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let replicas = Replicas::spawn(
        &registry(),
        secondary.clone(),
        transport.clone(),
        config(replication_token()),
    );
    let h = replicas.get(&t(POLICIES)).ok_or("replicator")?;
    caught_up(h, &*primary).await?;
    assert_converged(&*primary, &*secondary, POLICIES).await?;

    // Changes and a forwarded write take the same path.
    primary.txn(deletes(POLICIES, 0..50)).await?;
    let fwd = Forwarder::secondary(registry(), secondary.clone(), TestAcl::new(), transport);
    let receipt = fwd
        .write(&management_token(), upserts(POLICIES, 500..510, 1))
        .await?;
    replicas
        .wait_for_index(&t(POLICIES), receipt.index, Duration::from_secs(30))
        .await?;
    assert_converged(&*primary, &*secondary, POLICIES).await?;
    assert_eq!(secondary.list(&t(POLICIES)).await?.records.len(), 160);

    let relayed = secondary_gw.stats();
    assert!(relayed.lan.accepted >= 1, "{relayed:?}");
    assert!(primary_gw.stats().wan.accepted >= 1);
    replicas.stop().await;
    secondary_gw.shutdown(Duration::from_millis(100)).await;
    primary_gw.shutdown(Duration::from_millis(100)).await;
    server.shutdown().await;
    Ok(())
}
