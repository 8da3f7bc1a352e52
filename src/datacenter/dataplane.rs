//! The in-process [`ControlPlane`]: a datacenter serves its own data plane from its
//! in-memory views, with no copy and no network.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use mesh_ca::{IssuedLeaf, RootsView, SignError};
use mesh_core::ServiceKind;
use mesh_core::{ConfigEntry, ConfigEntryKind, Datacenter as DatacenterName, Index, ServiceName};
use mesh_core::{SpiffeId, TrustDomain};
use mesh_intentions::intention::{IntentionDefault, SharedIntentions};
use tokio::sync::watch;

use super::{Datacenter, Inner};
use crate::catalog::CatalogEntry;
use crate::dataplane::{AsControlPlane, ControlPlane, IntentionSource, Routing, authorize_in_set};
use crate::{Authorization, Error, ErrorKind, Secret};

/// How long the routing watcher's store wait is held before it checks the datacenter is
/// still alive.
const ROUTING_WAIT: Duration = Duration::from_secs(30);

/// The decisions for one destination, read from the datacenter's shared intentions.
struct DcIntentions {
    shared: Arc<SharedIntentions>,
    default: IntentionDefault,
    trust_domain: Option<TrustDomain>,
    target: ServiceName,
}

impl std::fmt::Debug for DcIntentions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcIntentions")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl IntentionSource for DcIntentions {
    fn authorize(&self, client: &SpiffeId) -> Authorization {
        authorize_in_set(
            &self.shared.load(),
            self.default,
            self.trust_domain.as_ref(),
            client,
            &self.target,
        )
    }
}

impl AsControlPlane for Datacenter {
    fn control_plane(&self) -> Arc<dyn ControlPlane> {
        Arc::new(self.clone())
    }
}

#[async_trait::async_trait]
impl ControlPlane for Datacenter {
    fn datacenter(&self) -> &DatacenterName {
        self.name()
    }

    async fn roots(&self) -> Result<watch::Receiver<Arc<RootsView>>, Error> {
        self.connect_ca().subscribe_roots()
    }

    async fn sign_leaf(
        &self,
        token: &Secret,
        _service: &ServiceName,
        csr_pem: &str,
    ) -> Result<IssuedLeaf, SignError> {
        // The CSR names the service; signing checks the token against that name.
        self.sign_leaf_typed(token, csr_pem).await
    }

    async fn intentions(
        &self,
        _token: &Secret,
        destination: &ServiceName,
    ) -> Result<Arc<dyn IntentionSource>, Error> {
        Ok(Arc::new(DcIntentions {
            shared: self.intentions().shared(),
            default: self.intentions().default(),
            trust_domain: self.trust_domain(),
            target: destination.clone(),
        }))
    }

    async fn routing(&self, _token: &Secret) -> Result<watch::Receiver<Arc<Routing>>, Error> {
        let rx = self
            .inner
            .routing
            .get_or_try_init(|| async {
                let first = build_routing(self).await?;
                let (tx, rx) = watch::channel(Arc::new(first));
                let _ = self.inner.routing_tx.set(tx.clone());
                let task = tokio::spawn(follow_routing(
                    Arc::downgrade(&self.inner),
                    self.inner.store.clone(),
                    tx,
                ));
                self.inner.push_task(task);
                Ok::<_, Error>(rx)
            })
            .await?;
        Ok(rx.clone())
    }

    async fn current_routing(&self, token: &Secret) -> Result<Arc<Routing>, Error> {
        let rx = self.routing(token).await?;
        let published = rx.borrow().clone();
        if self.catalog().routing_index().0 <= published.index {
            return Ok(published);
        }
        let fresh = Arc::new(build_routing(self).await?);
        if let Some(tx) = self.inner.routing_tx.get() {
            tx.send_if_modified(|cur| {
                let newer = cur.index < fresh.index;
                if newer {
                    *cur = fresh.clone();
                }
                newer
            });
        }
        Ok(fresh)
    }

    async fn remote_endpoints(
        &self,
        _token: &Secret,
        datacenter: &DatacenterName,
        service: &ServiceName,
    ) -> Result<Vec<SocketAddr>, Error> {
        self.catalog().remote_endpoints(datacenter, service).await
    }

    async fn instance(&self, _token: &Secret, id: &str) -> Result<CatalogEntry, Error> {
        self.catalog()
            .entries()
            .await?
            .into_iter()
            .find(|e| {
                e.service.id.as_ref().map(|i| i.as_str()) == Some(id)
                    || (e.service.id.is_none() && e.name().map(|n| n.as_str()) == Some(id))
            })
            .ok_or_else(|| ErrorKind::NotFound(format!("service instance {id:?}")).into())
    }

    async fn register_gateway(
        &self,
        token: &Secret,
        name: &ServiceName,
        id: &str,
        lan: SocketAddr,
        wan: SocketAddr,
    ) -> Result<(), Error> {
        self.catalog()
            .register_mesh_gateway(token, name, id, lan, wan)
            .await
            .map(|_| ())
    }

    async fn set_instance_address(
        &self,
        token: &Secret,
        id: &str,
        addr: SocketAddr,
    ) -> Result<(), Error> {
        self.catalog().set_instance_address(token, id, addr).await
    }

    async fn deregister(&self, token: &Secret, id: &str) -> Result<(), Error> {
        self.catalog().deregister(token, id).await
    }
}

/// The routing view of `dc` now.
pub(crate) async fn build_routing(dc: &Datacenter) -> Result<Routing, Error> {
    let index = dc.catalog().routing_index();
    let mut r = Routing::new(dc.name().clone());
    r.central_config = dc.config().enable_central_service_config;
    let acl = &dc.config().acl;
    r.acl_default_policy = acl.enabled.then_some(acl.default_policy);
    let mut endpoints: BTreeMap<ServiceName, Vec<SocketAddr>> = BTreeMap::new();
    for e in dc.catalog().entries().await? {
        if let Some((dest, addr)) = e.mesh_endpoint() {
            endpoints.entry(dest.clone()).or_default().push(addr);
        }
        if !e.down
            && e.service.kind == ServiceKind::MeshGateway
            && let Some(lan) = e.lan
        {
            r.local_gateways.push(lan);
        }
    }
    r.endpoints = endpoints;
    r.gateways = dc.catalog().federation().await?;
    r.servers = dc.config().server_address.into_iter().collect();
    for entry in dc
        .config_entries()
        .list(ConfigEntryKind::ProxyDefaults)
        .await?
    {
        if let ConfigEntry::ProxyDefaults(p) = entry {
            r.proxy_defaults = Some(p);
        }
    }
    for entry in dc
        .config_entries()
        .list(ConfigEntryKind::ServiceDefaults)
        .await?
    {
        if let ConfigEntry::ServiceDefaults(s) = entry {
            r.service_defaults.insert(s.name.as_str().to_owned(), s);
        }
    }
    r.index = index.0;
    Ok(r)
}

/// Republishes the routing view whenever the catalog, the federation table or the config
/// entries move. Holds the datacenter only weakly (its drop aborts this task).
async fn follow_routing(
    dc: Weak<Inner>,
    store: Arc<dyn mesh_replication::Store>,
    tx: watch::Sender<Arc<Routing>>,
) {
    let mut seen = Index(tx.borrow().index);
    loop {
        let after = super::catalog::wait_routing(&*store, seen, ROUTING_WAIT).await;
        let idx = match after {
            Ok(idx) => idx,
            Err(e) => {
                tracing::warn!(error = %e, "watching the routing tables failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if idx <= seen {
            if dc.strong_count() == 0 {
                return;
            }
            continue;
        }
        let Some(inner) = dc.upgrade() else { return };
        let handle = Datacenter { inner };
        match build_routing(&handle).await {
            Ok(r) => {
                seen = idx;
                tx.send_if_modified(|cur| {
                    let changed = cur.index < r.index;
                    if changed {
                        *cur = Arc::new(r);
                    }
                    changed
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "routing view rebuild failed; keeping the old one");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
