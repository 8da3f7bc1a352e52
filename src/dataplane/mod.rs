//! What the data plane needs of its datacenter, behind one narrow interface.
//!
//! A mesh gateway, a sidecar and an in-app Connect service each need the same few things of
//! the control plane: the CA roots (and their rotations), leaf certificates for a service,
//! the intention decision for a caller (answered from a local cache, never over the
//! network), where connections go (the [`Routing`] view: local mesh endpoints, every
//! datacenter's gateways, the mesh-gateway modes of the config entries), and registering or
//! deregistering themselves. [`ControlPlane`] is that interface. It has two
//! implementations:
//!
//! - [`Datacenter`](crate::Datacenter) itself, for a component in the control plane's own
//!   process: the views are the datacenter's in-memory ones.
//! - [`AgentControlPlane`] (feature `client`): an HTTP client of a `mesh agent`'s
//!   Consul-compatible API, with blocking queries, several server addresses with failover,
//!   HTTPS with a CA file, and a token. Its views keep serving what they last saw while no
//!   server answers, and catch up when one does.
//!
//! [`MeshGateway`](crate::MeshGateway), [`Sidecar`](crate::Sidecar) and
//! [`connect::Service`](crate::connect::Service) take either through [`AsControlPlane`].
//!
//! What this is not: a general API client (see [`crate::client`]), or a way to write
//! anything but a component's own registration.

#[cfg(feature = "client")]
mod agent;
mod routing;

use std::net::SocketAddr;
use std::sync::Arc;

use mesh_ca::{IssuedLeaf, RootsView, SignError};
use mesh_core::{Datacenter as DatacenterName, ServiceName, SpiffeId, TrustDomain};
use mesh_intentions::intention::{IntentionDefault, IntentionSet};
use tokio::sync::watch;

#[cfg(feature = "client")]
pub use agent::{AgentControlPlane, AgentOptions};
pub use routing::Routing;

use crate::catalog::CatalogEntry;
use crate::{Authorization, Error, Secret};

/// The decision for `client` connecting to `target` under one intention set.
#[cfg_attr(not(any(feature = "server", feature = "client")), allow(dead_code))]
pub(crate) fn authorize_in_set(
    set: &IntentionSet,
    default: IntentionDefault,
    trust_domain: Option<&TrustDomain>,
    client: &SpiffeId,
    target: &ServiceName,
) -> Authorization {
    let Some(svc) = client.as_service() else {
        return Authorization {
            authorized: false,
            reason: "ClientCertURI not a valid Service identifier".into(),
        };
    };
    if trust_domain.is_some_and(|td| svc.trust_domain() != td) {
        return Authorization {
            authorized: false,
            reason: format!(
                "client trust domain {} is not this mesh's",
                svc.trust_domain()
            ),
        };
    }
    let d = set.decide(svc.service().as_str(), target.as_str(), default);
    Authorization {
        authorized: d.is_allowed(),
        reason: d.to_string(),
    }
}

/// The intention decisions for one destination service, answered from what the control
/// plane last published: a decision never waits on the network or the store.
pub trait IntentionSource: Send + Sync + std::fmt::Debug {
    /// May `client` open a connection to this source's destination?
    fn authorize(&self, client: &SpiffeId) -> Authorization;
}

/// What a data-plane component needs of its datacenter. See the [module docs](self).
///
/// Every method that reads or writes on behalf of a component takes the component's token;
/// an in-process datacenter checks it as its own API would, an agent receives it in the
/// `X-Consul-Token` header.
#[async_trait::async_trait]
pub trait ControlPlane: Send + Sync + std::fmt::Debug + 'static {
    /// The datacenter this control plane serves.
    fn datacenter(&self) -> &DatacenterName;

    /// The CA roots, kept current (a rotation is published within moments). Fails when
    /// Connect is off.
    async fn roots(&self) -> Result<watch::Receiver<Arc<RootsView>>, Error>;

    /// Signs a leaf certificate for `service` from a CSR (the private key never leaves the
    /// caller). Needs `service:write` on `service`.
    async fn sign_leaf(
        &self,
        token: &Secret,
        service: &ServiceName,
        csr_pem: &str,
    ) -> Result<IssuedLeaf, SignError>;

    /// The intention decisions for `destination`, kept current.
    async fn intentions(
        &self,
        token: &Secret,
        destination: &ServiceName,
    ) -> Result<Arc<dyn IntentionSource>, Error>;

    /// Where connections go, kept current.
    async fn routing(&self, token: &Secret) -> Result<watch::Receiver<Arc<Routing>>, Error>;

    /// The routing view now: in process, rebuilt first if a write moved the tables since
    /// the last publication (so a dial right after a write sees it); over HTTP, the latest
    /// view received.
    async fn current_routing(&self, token: &Secret) -> Result<Arc<Routing>, Error> {
        let rx = self.routing(token).await?;
        let now = rx.borrow().clone();
        Ok(now)
    }

    /// The mesh endpoints of `service` in another datacenter (mesh-gateway mode `none`).
    async fn remote_endpoints(
        &self,
        token: &Secret,
        datacenter: &DatacenterName,
        service: &ServiceName,
    ) -> Result<Vec<SocketAddr>, Error>;

    /// The registration of one local service instance (a sidecar's, to learn its proxy
    /// settings).
    async fn instance(&self, token: &Secret, id: &str) -> Result<CatalogEntry, Error>;

    /// Registers a mesh gateway instance with its LAN and WAN addresses.
    async fn register_gateway(
        &self,
        token: &Secret,
        name: &ServiceName,
        id: &str,
        lan: SocketAddr,
        wan: SocketAddr,
    ) -> Result<(), Error>;

    /// Moves a registered instance to the address it actually bound.
    async fn set_instance_address(
        &self,
        token: &Secret,
        id: &str,
        addr: SocketAddr,
    ) -> Result<(), Error>;

    /// Removes a registered instance (and a gateway from the federation).
    async fn deregister(&self, token: &Secret, id: &str) -> Result<(), Error>;
}

/// Anything a data-plane component can be built on: a [`Datacenter`](crate::Datacenter), an
/// [`AgentControlPlane`], or any shared [`ControlPlane`].
pub trait AsControlPlane {
    /// A shared handle to the control plane.
    fn control_plane(&self) -> Arc<dyn ControlPlane>;
}

impl<T: ControlPlane> AsControlPlane for Arc<T> {
    fn control_plane(&self) -> Arc<dyn ControlPlane> {
        self.clone()
    }
}

impl AsControlPlane for Arc<dyn ControlPlane> {
    fn control_plane(&self) -> Arc<dyn ControlPlane> {
        self.clone()
    }
}
