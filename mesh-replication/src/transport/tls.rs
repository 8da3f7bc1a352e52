//! TLS for the framed transport: a [`TlsConnector`] that wraps any [`Connector`] with a
//! rustls client configuration the caller builds (mesh-ca's, which authenticates the
//! primary's servers by their SPIFFE identity `spiffe://<td>/agent/server/dc/<dc>`, Consul's
//! server ID, instead of a DNS name). The server side takes a rustls server configuration in
//! [`ReplicationServer::spawn_tcp`](crate::ReplicationServer::spawn_tcp).
//!
//! The TLS server name sent is the servers' SNI `server.<dc>.<domain>`
//! ([`mesh_core::Sni::Server`]), so the connection can go straight to the primary or through
//! mesh gateways that route on it.

use std::sync::Arc;

use async_trait::async_trait;
use mesh_core::Sni;
use rustls::pki_types::ServerName;

use super::{Connector, TransportError};

/// Why a TLS connector could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The SNI is not a valid TLS server name.
    #[error("SNI {0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// Wraps a [`Connector`] (TCP to the primary or to a mesh gateway) in TLS.
#[derive(Clone)]
pub struct TlsConnector<C> {
    inner: C,
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    handshake_timeout: std::time::Duration,
}

impl<C> std::fmt::Debug for TlsConnector<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> TlsConnector<C> {
    /// Speaks TLS with `config` over `inner`'s streams, sending `sni` as the server name
    /// (normally `Sni::server(None, primary_dc, "consul")`).
    pub fn new(
        inner: C,
        config: Arc<rustls::ClientConfig>,
        sni: &Sni,
    ) -> Result<Self, TlsSetupError> {
        let name = sni.to_string();
        let server_name =
            ServerName::try_from(name.clone()).map_err(|_| TlsSetupError::ServerName(name))?;
        Ok(Self {
            inner,
            tls: tokio_rustls::TlsConnector::from(config),
            server_name,
            handshake_timeout: std::time::Duration::from_secs(10),
        })
    }
}

#[async_trait]
impl<C: Connector> Connector for TlsConnector<C> {
    type Stream = tokio_rustls::client::TlsStream<C::Stream>;

    async fn connect(&self) -> Result<Self::Stream, TransportError> {
        let raw = self.inner.connect().await?;
        let hs = self.tls.connect(self.server_name.clone(), raw);
        match tokio::time::timeout(self.handshake_timeout, hs).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(TransportError::Tls(e)),
            Err(_) => Err(TransportError::TimedOut(self.handshake_timeout)),
        }
    }
}
