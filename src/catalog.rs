//! The catalog records of a datacenter: service, sidecar and gateway instances, and the
//! federation records through which every datacenter learns the others' gateways.

use std::net::SocketAddr;

use mesh_core::catalog::ServiceDefinition;
use mesh_core::{Datacenter, ServiceName};
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
}

impl DatacenterRecord {
    /// A record for `name`.
    pub fn new(name: Datacenter, primary: bool) -> Self {
        Self { name, primary }
    }
}
