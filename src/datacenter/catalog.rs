//! The local catalog: service, sidecar and mesh-gateway registrations and the addresses
//! the data plane routes to.

use super::*;

/// The local catalog of a [`Datacenter`]: `dc.catalog()`. Service, sidecar and mesh-gateway
/// registrations and the addresses the data plane routes to. A cheap borrowed handle.
#[derive(Clone, Copy, Debug)]
pub struct Catalog<'a> {
    pub(super) dc: &'a Datacenter,
}

impl Catalog<'_> {
    /// Registers a service from Consul's JSON (`socat.json`, `web.json`), and its sidecar
    /// when it has a `connect.sidecar_service` stanza (port picked from 21000-21255 when none
    /// is given). Needs `service:write` on the service (and on its sidecar). The token is the
    /// call's, or the registration's own `token` when the call has none.
    ///
    /// ```
    /// use mesh::{Datacenter, DatacenterConfig, Secret};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let mut config = DatacenterConfig::new("primary".parse()?, "primary".parse()?);
    /// config.acl.enabled = true;
    /// config.acl.tokens.initial_management = Some("a-management-secret".into());
    /// let dc = Datacenter::start_primary(config).await?;
    /// let management = Secret::new("a-management-secret");
    /// let web = r#"{"service": {"name": "web", "port": 8080,
    ///                "connect": {"sidecar_service": {}}}}"#;
    /// let registered = dc.catalog().register_json(&management, web).await?;
    /// assert!(registered.sidecar.is_some());
    /// let sidecars = dc.catalog().sidecar_addresses(&"web".parse()?).await?;
    /// assert_eq!(sidecars.len(), 1);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn register_json(
        &self,
        token: &Secret,
        definition_json: &str,
    ) -> Result<Registered, Error> {
        let op = Operation::named("service register");
        during(op, async {
            let def = ServiceDefinition::from_json(definition_json).map_err(Error::invalid)?;
            self.register(token, &def).await
        })
        .await
    }

    /// Registers a service definition, and its sidecar when it has a
    /// `connect.sidecar_service` stanza: what [`Catalog::register_json`] does with the
    /// definition it parsed. The definition is validated first.
    pub async fn register(
        &self,
        token: &Secret,
        def: &ServiceDefinition,
    ) -> Result<Registered, Error> {
        let op = Operation::new(
            "service register",
            def.id
                .as_ref()
                .map(|i| i.as_str())
                .or(def.name.as_ref().map(|n| n.as_str()))
                .unwrap_or(""),
        );
        during(op, async {
            def.validate().map_err(Error::invalid)?;
            let anonymous = Secret::new("");
            let token = if token.expose_secret().is_empty() {
                def.token.as_ref().unwrap_or(&anonymous)
            } else {
                token
            };
            let name = def
                .name
                .clone()
                .ok_or_else(|| Error::invalid_msg("service registration has no name"))?;
            let id = def
                .instance_id()
                .ok_or_else(|| Error::invalid_msg("service registration has no ID or name"))?;
            self.dc.require_registration(token, def, &id).await?;
            let mut service = def.clone();
            service.token = None;
            let mut ops = Vec::new();
            let sidecar = match sidecar_from_service(def, def.token.as_ref()).map_err(Error::invalid)? {
                None => None,
                Some(mut sc) => {
                    // The sidecar is a registration of its own: its name, the instance id it
                    // takes, and the service it proxies (the parent) are all checked.
                    let sc_id = sc.id().clone();
                    self.dc
                        .require_registration(token, sc.service(), &sc_id)
                        .await?;
                    let listing = self.dc.inner.store.list(&table(tables::CATALOG)).await?;
                    let ports: Vec<(String, u16)> = listing
                        .records
                        .iter()
                        .filter_map(|r| {
                            decode::<CatalogEntry>(r).map(|e| (r.id.clone(), e.service.port))
                        })
                        .collect();
                    sc.assign_port(
                        &SidecarPortRange::default(),
                        ports.iter().map(|(i, p)| (i.as_str(), *p)),
                    )
                    .map_err(Error::invalid)?;
                    sc.ensure_default_checks();
                    let sc_id = sc.id().clone();
                    let (sc_def, _checks, _token) = sc.into_parts();
                    let entry = CatalogEntry {
                        lan: lan_addr(&sc_def),
                        service: sc_def,
                        down: false,
                    };
                    ops.push(upsert(tables::CATALOG, sc_id.as_str(), json(&entry)?));
                    Some(entry)
                }
            };
            // The sidecar is registered on its own; `Connect.Native` stays: the service itself
            // is where mTLS lands, and it is listed as a Connect endpoint of its name.
            let native = def.connect.as_ref().is_some_and(|c| c.native);
            service.connect = native.then_some(ServiceConnect {
                native: true,
                sidecar_service: None,
            });
            let entry = CatalogEntry {
                lan: lan_addr(&service),
                service,
                down: false,
            };
            ops.push(upsert(tables::CATALOG, id.as_str(), json(&entry)?));
            self.dc.inner.store.txn(ops).await?;
            if entry.is_native()
                && let Some(address) = entry.lan
            {
                let ep = ServiceEndpoint {
                    datacenter: self.dc.name().clone(),
                    service: name.clone(),
                    address,
                };
                let ep_id = self.dc.global_id(name.as_str(), id.as_str());
                self.dc
                    .publish_global(token, tables::ENDPOINTS, &ep_id, Some(json(&ep)?))
                    .await?;
            }
            if let Some(sc) = &sidecar
                && let (Some(sc_id), Some(address)) = (sc.service.id.as_ref(), sc.lan)
            {
                {
                    let ep = ServiceEndpoint {
                        datacenter: self.dc.name().clone(),
                        service: name.clone(),
                        address,
                    };
                    let ep_id = self.dc.global_id(name.as_str(), sc_id.as_str());
                    self.dc
                        .publish_global(token, tables::ENDPOINTS, &ep_id, Some(json(&ep)?))
                        .await?;
                }
            }
            tracing::info!(service = %name, id = %id, sidecar = sidecar.is_some(), "service registered");
            Ok(Registered {
                id,
                service: entry,
                sidecar,
            })
        })
        .await
    }

    /// Registers a mesh gateway instance with its LAN and WAN addresses; other datacenters
    /// learn its WAN address through the primary. Needs `service:write` on the gateway's name.
    pub async fn register_mesh_gateway(
        &self,
        token: &Secret,
        name: &ServiceName,
        id: &str,
        lan: SocketAddr,
        wan: SocketAddr,
    ) -> Result<FederationGateway, Error> {
        let op = Operation::new("mesh gateway register", id);
        during(op, async {
            self.dc
                .require(token, service_write(), Some(name.as_str()))?;
            let mut def = MeshGatewayRegistration::new(
                Some(name.clone()),
                Some(host_port(lan)),
                Some(host_port(wan)),
            )
            .map_err(Error::invalid)?
            .into_definition();
            def.id = Some(ServiceInstanceId::new(id).map_err(Error::invalid)?);
            let instance = ServiceInstanceId::new(id).map_err(Error::invalid)?;
            self.dc.require_registration(token, &def, &instance).await?;
            let reg = MeshGatewayRegistration::from_definition(def).map_err(Error::invalid)?;
            let entry = CatalogEntry {
                lan: Some(lan),
                service: reg.into_definition(),
                down: false,
            };
            self.dc
                .write_local(tables::CATALOG, id, json(&entry)?, None)
                .await?;
            let fed = FederationGateway {
                datacenter: self.dc.name().clone(),
                service: name.clone(),
                id: id.to_owned(),
                wan,
                lan,
            };
            let fed_id = self.dc.global_id(name.as_str(), id);
            self.dc
                .publish_global(token, tables::FEDERATION, &fed_id, Some(json(&fed)?))
                .await?;
            tracing::info!(gateway = %name, id, %lan, %wan, "mesh gateway registered");
            Ok(fed)
        })
        .await
    }

    /// Removes an instance from the local catalog (and a gateway from the federation). A
    /// service's sidecar registered with it (`<id>-sidecar-proxy`, proxying this instance)
    /// is removed in the same transaction, as Consul's agent does; every permission is
    /// checked first, so a refusal removes nothing.
    pub async fn deregister(&self, token: &Secret, id: &str) -> Result<(), Error> {
        let op = Operation::new("service deregister", id);
        during(op, async {
            let catalog = table(tables::CATALOG);
            let Some(rec) = self.dc.inner.store.get(&catalog, id).await? else {
                return Err(ErrorKind::NotFound(format!("service instance {id:?}")).into());
            };
            let entry: CatalogEntry = decode(&rec).ok_or_else(|| {
                ErrorKind::Corrupt(format!("catalog record {id:?} does not decode"))
            })?;
            // The sidecar registered with a service (Consul's `<id>-sidecar-proxy`, proxying this
            // very instance) goes with it, as Consul's agent removes it.
            let sidecar_id = format!("{id}-sidecar-proxy");
            let sidecar = match self.dc.inner.store.get(&catalog, &sidecar_id).await? {
                Some(r) if entry.service.kind != ServiceKind::ConnectProxy => {
                    decode::<CatalogEntry>(&r).filter(|sc| {
                        sc.service.kind == ServiceKind::ConnectProxy
                            && sc
                                .service
                                .proxy
                                .as_ref()
                                .and_then(|p| p.destination_service_id.as_ref())
                                .is_some_and(|d| d.as_str() == id)
                    })
                }
                _ => None,
            };
            // Every permission first: a refusal removes nothing.
            let mut removed = vec![(id.to_owned(), entry)];
            if let Some(sc) = sidecar {
                removed.push((sidecar_id, sc));
            }
            for (_, e) in &removed {
                let name = e.name().map(|n| n.as_str()).unwrap_or_default();
                self.dc.require(token, service_write(), Some(name))?;
            }
            // One transaction: both go or neither.
            let ops = removed
                .iter()
                .map(|(i, _)| delete(tables::CATALOG, i))
                .collect();
            self.dc.inner.store.txn(ops).await?;
            for (i, e) in &removed {
                self.unpublish(token, i, e).await?;
            }
            Ok(())
        })
        .await
    }

    /// Removes the global record describing a local instance that is gone.
    async fn unpublish(&self, token: &Secret, id: &str, entry: &CatalogEntry) -> Result<(), Error> {
        let name = entry
            .name()
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        match entry.service.kind {
            ServiceKind::MeshGateway => {
                let fed_id = self.dc.global_id(&name, id);
                self.dc
                    .publish_global(token, tables::FEDERATION, &fed_id, None)
                    .await
            }
            ServiceKind::ConnectProxy => {
                let dest = entry
                    .service
                    .proxy
                    .as_ref()
                    .and_then(|p| p.destination_service_name.as_ref())
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default();
                let ep_id = self.dc.global_id(&dest, id);
                self.dc
                    .publish_global(token, tables::ENDPOINTS, &ep_id, None)
                    .await
            }
            _ if entry.is_native() => {
                let ep_id = self.dc.global_id(&name, id);
                self.dc
                    .publish_global(token, tables::ENDPOINTS, &ep_id, None)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Moves an instance to `addr` (a sidecar bound elsewhere than registered). Needs
    /// `service:write` on the instance's service.
    pub async fn set_instance_address(
        &self,
        token: &Secret,
        id: &str,
        addr: SocketAddr,
    ) -> Result<(), Error> {
        let op = Operation::new("service address update", id);
        during(op, async {
            let Some(rec) = self.dc.inner.store.get(&table(tables::CATALOG), id).await? else {
                return Err(ErrorKind::NotFound(format!("service instance {id:?}")).into());
            };
            let mut entry: CatalogEntry = decode(&rec).ok_or_else(|| {
                ErrorKind::Corrupt(format!("catalog record {id:?} does not decode"))
            })?;
            let name = entry
                .name()
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default();
            self.dc.require(token, service_write(), Some(&name))?;
            entry.lan = Some(addr);
            entry.service.port = addr.port();
            self.dc
                .inner
                .store
                .upsert(
                    &table(tables::CATALOG),
                    id,
                    json(&entry)?,
                    Some(rec.modify_index),
                )
                .await?;
            let fronted = if entry.service.kind == ServiceKind::ConnectProxy {
                entry
                    .service
                    .proxy
                    .as_ref()
                    .and_then(|p| p.destination_service_name.clone())
            } else if entry.is_native() {
                entry.name().cloned()
            } else {
                None
            };
            if let Some(service) = fronted {
                let ep = ServiceEndpoint {
                    datacenter: self.dc.name().clone(),
                    service,
                    address: addr,
                };
                let ep_id = self.dc.global_id(ep.service.as_str(), id);
                self.dc
                    .publish_global(token, tables::ENDPOINTS, &ep_id, Some(json(&ep)?))
                    .await?;
            }
            Ok(())
        })
        .await
    }

    /// Every instance of the local catalog.
    pub async fn entries(&self) -> Result<Vec<CatalogEntry>, Error> {
        let listing = self.dc.inner.store.list(&table(tables::CATALOG)).await?;
        Ok(listing.records.iter().filter_map(decode).collect())
    }

    /// The LAN addresses of the sidecars of `service` in this datacenter, or of its
    /// instances themselves when they are Connect-native: where mTLS connections to the
    /// service land.
    pub async fn sidecar_addresses(&self, service: &ServiceName) -> Result<Vec<SocketAddr>, Error> {
        Ok(self
            .entries()
            .await?
            .iter()
            .filter_map(CatalogEntry::mesh_endpoint)
            .filter(|(dest, _)| *dest == service)
            .map(|(_, addr)| addr)
            .collect())
    }

    /// The sidecar addresses of `service` in another datacenter (for mesh-gateway mode
    /// `none`), or its instances' own when they are Connect-native.
    pub async fn remote_endpoints(
        &self,
        datacenter: &DatacenterName,
        service: &ServiceName,
    ) -> Result<Vec<SocketAddr>, Error> {
        let listing = self.dc.inner.store.list(&table(tables::ENDPOINTS)).await?;
        Ok(listing
            .records
            .iter()
            .filter_map(decode::<ServiceEndpoint>)
            .filter(|e| &e.datacenter == datacenter && &e.service == service)
            .map(|e| e.address)
            .collect())
    }

    /// The mesh gateways of every datacenter, as the federation table knows them.
    pub async fn federation(&self) -> Result<Vec<FederationGateway>, Error> {
        let listing = self.dc.inner.store.list(&table(tables::FEDERATION)).await?;
        Ok(listing.records.iter().filter_map(decode).collect())
    }

    /// Blocks until the catalog, the federation table or the config entries change past
    /// `after`, or `timeout`; returns the highest of their indexes.
    pub async fn wait_routing_change(
        &self,
        after: Index,
        timeout: Duration,
    ) -> Result<Index, Error> {
        wait_routing(&*self.dc.inner.store, after, timeout).await
    }

    /// The highest index of the tables routing is built from.
    pub(crate) fn routing_index(&self) -> Index {
        routing_index(&*self.dc.inner.store)
    }

    /// Every datacenter of the mesh this one knows of (itself included), primary first.
    pub async fn datacenters(&self) -> Result<Vec<crate::catalog::DatacenterRecord>, Error> {
        let listing = self
            .dc
            .inner
            .store
            .list(&table(tables::DATACENTERS))
            .await?;
        let mut all: Vec<crate::catalog::DatacenterRecord> =
            listing.records.iter().filter_map(decode).collect();
        if !all.iter().any(|d| &d.name == self.dc.name()) {
            all.push(
                crate::catalog::DatacenterRecord::new(self.dc.name().clone(), self.dc.is_primary())
                    .with_server(self.dc.inner.config.server_address),
            );
        }
        all.sort_by(|a, b| b.primary.cmp(&a.primary).then_with(|| a.name.cmp(&b.name)));
        Ok(all)
    }
}

impl Datacenter {
    /// What registering `def` under `id` needs, as Consul defines it: `service:write` on the
    /// registration's name; when `id` is already registered, `service:write` on the service
    /// that holds it (a token may not take over another service's instance); for a
    /// `connect-proxy`, `service:write` on the service it proxies (a token may not divert
    /// another service's traffic).
    async fn require_registration(
        &self,
        token: &Secret,
        def: &ServiceDefinition,
        id: &ServiceInstanceId,
    ) -> Result<(), Error> {
        let name = def
            .name
            .as_ref()
            .ok_or_else(|| Error::invalid_msg("service registration has no name"))?;
        self.require(token, service_write(), Some(name.as_str()))?;
        if let Some(rec) = self
            .inner
            .store
            .get(&table(tables::CATALOG), id.as_str())
            .await?
        {
            // An entry that does not decode belongs to nobody we can name: only a token
            // with write on every service may replace it.
            let owner = decode::<CatalogEntry>(&rec)
                .and_then(|e| e.name().map(|n| n.as_str().to_owned()))
                .unwrap_or_else(|| "*".to_owned());
            if owner != name.as_str() {
                self.require(token, service_write(), Some(&owner))?;
            }
        }
        if def.kind == ServiceKind::ConnectProxy {
            let dest = def
                .proxy
                .as_ref()
                .and_then(|p| p.destination_service_name.as_ref())
                .ok_or_else(|| {
                    Error::invalid_msg("a connect-proxy registration names its destination service")
                })?;
            self.require(token, service_write(), Some(dest.as_str()))?;
        }
        Ok(())
    }
}

/// A registered service, with the sidecar derived from it.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The instance id.
    pub id: ServiceInstanceId,
    /// The catalog entry of the service.
    pub service: CatalogEntry,
    /// The catalog entry of its sidecar, if it has one.
    pub sidecar: Option<CatalogEntry>,
}

/// The tables a routing view reads.
const ROUTING_TABLES: [&str; 3] = [tables::CATALOG, tables::FEDERATION, tables::CONFIG_ENTRIES];

fn routing_index(store: &dyn Store) -> Index {
    ROUTING_TABLES
        .iter()
        .map(|t| store.table_index(&table(t)))
        .max()
        .unwrap_or(Index::ZERO)
}

/// Waits until one of the routing tables moves past `after`, or `timeout`.
pub(super) async fn wait_routing(
    store: &dyn Store,
    after: Index,
    timeout: Duration,
) -> Result<Index, Error> {
    let current = routing_index(store);
    if current > after {
        return Ok(current);
    }
    let [cat, fed, cfg] = ROUTING_TABLES.map(table);
    tokio::select! {
        r = store.wait_table(&cat, after, timeout) => r?,
        r = store.wait_table(&fed, after, timeout) => r?,
        r = store.wait_table(&cfg, after, timeout) => r?,
    };
    Ok(routing_index(store))
}
