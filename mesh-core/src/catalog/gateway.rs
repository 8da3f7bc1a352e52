//! Mesh-gateway registrations (see docs/consul-compatibility.md, 'Mesh-gateway registration').

use super::{
    CheckDefinition, GoDuration, Host, HostPort, NodeAddresses, RegistrationError,
    ServiceDefinition, ServiceKind, TAGGED_LAN, TAGGED_WAN, TaggedAddress,
};
use crate::names::ServiceName;

/// The name a mesh gateway registers under when none is given.
pub const DEFAULT_MESH_GATEWAY_NAME: &str = "mesh-gateway";
/// The port of a gateway address given without one.
pub const DEFAULT_MESH_GATEWAY_PORT: u16 = 8443;
/// The metadata key marking a gateway that carries WAN federation (server) traffic.
pub const WAN_FEDERATION_META: &str = "consul-wan-federation";

/// A validated mesh-gateway registration: kind `mesh-gateway`, a non-zero LAN port, and none of
/// the sidecar-only fields.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshGatewayRegistration {
    def: ServiceDefinition,
    name: ServiceName,
}

impl MeshGatewayRegistration {
    /// Builds a registration as `-gateway=mesh -register` does: named `name` (default
    /// [`DEFAULT_MESH_GATEWAY_NAME`]); with `lan`, the service address and port and the `lan`
    /// tagged address; without, no address (the node's is used) and port
    /// [`DEFAULT_MESH_GATEWAY_PORT`]; with `wan`, the `wan` tagged address. Parse addresses
    /// with [`HostPort::parse_with_default`] to get the 8443 default for a missing port.
    pub fn new(
        name: Option<ServiceName>,
        lan: Option<HostPort>,
        wan: Option<HostPort>,
    ) -> Result<Self, RegistrationError> {
        let name = match name {
            Some(n) => n,
            None => default_name(),
        };
        let mut def = ServiceDefinition {
            kind: ServiceKind::MeshGateway,
            name: Some(name),
            port: DEFAULT_MESH_GATEWAY_PORT,
            ..ServiceDefinition::default()
        };
        if let Some(lan) = lan {
            def.address = Some(lan.host.clone());
            def.port = lan.port;
            def.tagged_addresses.insert(
                TAGGED_LAN.to_owned(),
                TaggedAddress::new(lan.host, lan.port),
            );
        }
        if let Some(wan) = wan {
            def.tagged_addresses.insert(
                TAGGED_WAN.to_owned(),
                TaggedAddress::new(wan.host, wan.port),
            );
        }
        Self::from_definition(def)
    }

    /// Accepts a registration of kind `mesh-gateway` that passes
    /// [`ServiceDefinition::validate`]; an unnamed one gets [`DEFAULT_MESH_GATEWAY_NAME`].
    pub fn from_definition(mut def: ServiceDefinition) -> Result<Self, RegistrationError> {
        if def.kind != ServiceKind::MeshGateway {
            return Err(RegistrationError::NotAMeshGateway(def.kind));
        }
        let name = def.name.get_or_insert_with(default_name).clone();
        def.validate()?;
        Ok(Self { def, name })
    }

    /// Marks the gateway as carrying WAN-federation traffic (`Meta["consul-wan-federation"]`).
    #[must_use]
    pub fn with_wan_federation(mut self) -> Self {
        self.def
            .meta
            .insert(WAN_FEDERATION_META.to_owned(), "1".to_owned());
        self
    }

    /// Whether the gateway carries WAN-federation traffic.
    pub fn wan_federation(&self) -> bool {
        self.def.meta.get(WAN_FEDERATION_META).map(String::as_str) == Some("1")
    }

    /// The service name.
    pub fn name(&self) -> &ServiceName {
        &self.name
    }

    /// The LAN listener's port (non-zero).
    pub fn port(&self) -> u16 {
        self.def.port
    }

    /// The LAN listener's address, if the registration has one (else the node's is used).
    pub fn address(&self) -> Option<&Host> {
        self.def.address.as_ref()
    }

    /// The `lan` tagged address.
    pub fn tagged_lan(&self) -> Option<&TaggedAddress> {
        self.def.tagged_addresses.get(TAGGED_LAN)
    }

    /// The `wan` tagged address.
    pub fn tagged_wan(&self) -> Option<&TaggedAddress> {
        self.def.tagged_addresses.get(TAGGED_WAN)
    }

    /// Where sidecars of the gateway's own datacenter dial it: the service address, else the
    /// node's, with the service port.
    pub fn lan_address(&self, node: &NodeAddresses) -> HostPort {
        self.def.best_address(false, node)
    }

    /// Where other datacenters dial it: the `wan` tagged address (with its port if set), else
    /// the service address, else the node's WAN address, else the node's address.
    pub fn wan_address(&self, node: &NodeAddresses) -> HostPort {
        self.def.best_address(true, node)
    }

    /// The default check: TCP `<address or 127.0.0.1>:<port>` every 10 s, named
    /// `mesh-gateway listening`.
    pub fn default_check(&self) -> CheckDefinition {
        let host = self.def.address.clone().unwrap_or_else(Host::localhost);
        CheckDefinition {
            name: Some("mesh-gateway listening".to_owned()),
            tcp: Some(HostPort::new(host, self.def.port).to_string()),
            interval: Some(GoDuration::from_secs(10)),
            ..CheckDefinition::default()
        }
    }

    /// The underlying registration.
    pub fn definition(&self) -> &ServiceDefinition {
        &self.def
    }

    /// The underlying registration, by value.
    pub fn into_definition(self) -> ServiceDefinition {
        self.def
    }
}

fn default_name() -> ServiceName {
    // "mesh-gateway" is a valid name by the name rules (lower-case letters and '-').
    ServiceName::new(DEFAULT_MESH_GATEWAY_NAME).unwrap_or_else(|_| unreachable!())
}
