//! The catalog records of a datacenter: service, sidecar and gateway instances, and the
//! federation records through which every datacenter learns the others' gateways.

use std::net::SocketAddr;

use mesh_core::{Datacenter, ServiceName};
use mesh_core::{ServiceDefinition, ServiceKind};
use serde::{Deserialize, Serialize};

/// One instance in the local catalog (record id = instance id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogEntry {
    /// The registration, with defaults applied (a sidecar's port assigned).
    pub service: ServiceDefinition,
    /// The instance's LAN address: where other instances of this datacenter reach it.
    pub lan: Option<SocketAddr>,
    /// Whether the instance is marked down.
    #[serde(default)]
    pub down: bool,
}

impl CatalogEntry {
    /// The service name.
    pub fn name(&self) -> Option<&ServiceName> {
        self.service.name.as_ref()
    }

    /// Whether the instance is Connect-native: the application terminates mesh mTLS itself.
    pub fn is_native(&self) -> bool {
        self.service.kind == ServiceKind::Typical
            && self.service.connect.as_ref().is_some_and(|c| c.native)
    }

    /// Where mesh mTLS for a service lands on this instance, and for which service: a
    /// sidecar's address for the service it fronts, or a Connect-native service's own
    /// address. `None` for every other instance, one without an address, or one marked down.
    pub fn mesh_endpoint(&self) -> Option<(&ServiceName, SocketAddr)> {
        if self.down {
            return None;
        }
        let lan = self.lan?;
        if self.service.kind == ServiceKind::ConnectProxy {
            let dest = self
                .service
                .proxy
                .as_ref()?
                .destination_service_name
                .as_ref()?;
            return Some((dest, lan));
        }
        if self.is_native() {
            return Some((self.name()?, lan));
        }
        None
    }
}

/// A mesh gateway of some datacenter as every datacenter sees it
/// (record id `<datacenter>/<instance id>` in the federation table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FederationGateway {
    /// The gateway's datacenter.
    pub datacenter: Datacenter,
    /// The gateway's service name.
    pub service: ServiceName,
    /// The instance id.
    pub id: String,
    /// Where other datacenters reach it.
    pub wan: SocketAddr,
    /// Where its own datacenter reaches it.
    pub lan: SocketAddr,
}

/// A sidecar of some datacenter as every datacenter sees it (record id
/// `<datacenter>/<sidecar id>` in the endpoints table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEndpoint {
    /// The datacenter.
    pub datacenter: Datacenter,
    /// The service the sidecar fronts.
    pub service: ServiceName,
    /// Where it accepts mTLS connections.
    pub address: SocketAddr,
}

/// A datacenter of the mesh, as every datacenter sees it (record id = its name in the
/// datacenters table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct DatacenterRecord {
    /// The datacenter's name.
    pub name: Datacenter,
    /// Whether it is the primary.
    pub primary: bool,
    /// Where its servers accept the other datacenters' servers (mTLS), if it announced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<SocketAddr>,
}

impl DatacenterRecord {
    /// A record for `name`, announcing no server address.
    pub fn new(name: Datacenter, primary: bool) -> Self {
        Self {
            name,
            primary,
            server: None,
        }
    }

    /// The same record announcing `server` as its servers' address.
    pub fn with_server(mut self, server: Option<SocketAddr>) -> Self {
        self.server = server;
        self
    }
}
