//! The replication stream through real mesh gateways: the secondary dials its own datacenter's
//! gateway with the SNI `server.primary.consul`; that gateway forwards the bytes untouched to the
//! primary's gateway (WAN), which hands them to the primary's replication server. mTLS runs end
//! to end between the two servers; the gateways see only the ClientHello.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::certs::{TD, ca, server_leaf};
use common::*;
use mesh_core::{ServerId, Sni};
use mesh_replication::transport::tls::{self, TlsConnector};
use mesh_replication::{
    Forwarder, FramedTransport, MemoryStore, Replicas, ReplicationServer, ServeConfig, Store,
    TcpConnector, Transport,
};
use mesh_sni::{Gateway, GatewayConfig, ListenerKind, Pool, RouteTable};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_through_mesh_gateways() -> R {
    let root = ca("mesh root")?;
    // The primary's replication server, behind mTLS.
    let primary: Arc<dyn Store> = Arc::new(MemoryStore::new());
    primary.txn(upserts(POLICIES, 0..200, 1)).await?;
    let leaf = server_leaf(&root, "primary")?;
    let server_tls = tls::server_config(std::slice::from_ref(&root.cert), leaf.chain, leaf.key)?;
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
    let leaf = server_leaf(&root, "secondary")?;
    let expected = ServerId::new(TD.parse()?, "primary".parse()?);
    let client_tls = tls::client_config(
        std::slice::from_ref(&root.cert),
        leaf.chain,
        leaf.key,
        expected,
    )?;
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
