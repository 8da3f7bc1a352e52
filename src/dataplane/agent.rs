//! [`AgentControlPlane`]: the data plane's control plane over an agent's HTTP API.
//!
//! Reads are blocking queries kept running in background tasks, one per view (roots,
//! routing, the intentions of each destination a component serves), so a decision or a dial
//! reads memory only. Requests go to the last server that answered; a server that cannot be
//! reached (connect, TLS or time-out) hands over to the next. While none answers, every view
//! keeps what it last received, and a watch retries with a back-off capped at
//! [`AgentOptions::retry_max`]; when a server answers again the views catch up at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::Method;
use mesh_ca::{IssuedLeaf, Refusal, RootsView, SignError};
use mesh_core::{Datacenter as DatacenterName, ServiceName, SpiffeId, TrustDomain};
use mesh_intentions::intention::{Intention, IntentionDefault, IntentionSet};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;

use super::{Authorization, ControlPlane, IntentionSource, Routing, authorize_in_set};
use crate::catalog::CatalogEntry;
use crate::client::{Body, Client, ClientConfig, ClientError, Response, percent_encode};
use crate::{Error, ErrorKind, Secret};

/// Where the routing view is served.
const ROUTING_PATH: &str = "/v1/internal/mesh/routing";

/// How an [`AgentControlPlane`] reaches its servers.
#[derive(Clone)]
#[non_exhaustive]
pub struct AgentOptions {
    /// The servers' HTTP API addresses (`host:port`, `http://…`, `https://…`, `unix://…`),
    /// tried in order; at least one.
    pub servers: Vec<String>,
    /// The token the views are read with (the component's own; it needs `service:read` on
    /// what it routes to and on the destinations whose intentions it enforces).
    pub token: Secret,
    /// PEM CA file HTTPS servers must chain to.
    pub ca_file: Option<PathBuf>,
    /// How long a server may hold a blocking query.
    pub wait: Duration,
    /// The longest pause between two attempts while no server answers.
    pub retry_max: Duration,
}

impl AgentOptions {
    /// Options for `servers` with `token`, the defaults otherwise (60 s blocking queries,
    /// retries backing off to 5 s).
    pub fn new(servers: impl IntoIterator<Item = impl Into<String>>, token: Secret) -> Self {
        Self {
            servers: servers.into_iter().map(Into::into).collect(),
            token,
            ca_file: None,
            wait: Duration::from_secs(60),
            retry_max: Duration::from_secs(5),
        }
    }

    /// With HTTPS servers verified against the CA certificates in `path`.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// With blocking queries held at most `wait`.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

impl std::fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentOptions")
            .field("servers", &self.servers)
            .field("ca_file", &self.ca_file)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// The servers and which one answered last: what the background watches share.
struct Servers {
    clients: Vec<Client>,
    preferred: AtomicUsize,
    wait: Duration,
    retry_max: Duration,
}

impl Servers {
    /// One request, to the preferred server first, then each other one while they cannot
    /// be reached. An answer (even an error status) ends the round.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        token: Option<&Secret>,
    ) -> Result<Response, ClientError> {
        let n = self.clients.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = None;
        for k in 0..n {
            let i = (first + k) % n;
            let client = match token {
                Some(t) => self.clients[i].with_token(Some(t.expose_secret()))?,
                None => self.clients[i].clone(),
            };
            match client
                .request(method.clone(), path, body.clone().map(Body::from))
                .await
            {
                Err(e) if unreachable(&e) => {
                    tracing::debug!(server = %client.address(), error = %e, "server unreachable; trying the next");
                    last = Some(e);
                }
                other => {
                    if k > 0 {
                        tracing::info!(server = %client.address(), "switched to another server");
                    }
                    self.preferred.store(i, Ordering::Relaxed);
                    return other;
                }
            }
        }
        Err(last.unwrap_or(ClientError::InvalidToken))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<(T, u64), ClientError> {
        let resp = self.call(Method::GET, path, None, None).await?;
        let index = resp.index().unwrap_or(0);
        let value = resp.json().map_err(|source| ClientError::Decode {
            op: format!("GET {path}"),
            source,
        })?;
        Ok((value, index))
    }
}

/// Whether the error says the server could not be reached (so another may be tried).
fn unreachable(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Connect { .. }
            | ClientError::Tls { .. }
            | ClientError::Timeout { .. }
            | ClientError::Http { .. }
            | ClientError::Read { .. }
    ) || e.status().is_some_and(|s| s >= 500)
}

/// A [`ControlPlane`] reached over the HTTP API of one or more `mesh agent` servers of a
/// datacenter.
///
/// Reads are blocking queries kept running in background tasks, one per view (roots,
/// routing, the intentions of each destination a component serves), so a decision or a dial
/// reads memory only. Requests go to the last server that answered; a server that cannot be
/// reached (connect, TLS or time-out) hands over to the next. While none answers, every view
/// keeps what it last received, and a watch retries with a back-off capped at
/// [`AgentOptions::retry_max`]; when a server answers again the views catch up at once.
///
/// The views (roots, routing, intentions) are read with the token of [`AgentOptions`];
/// signing and registration use the token each call is given. Dropping it stops every
/// watch it started.
pub struct AgentControlPlane {
    servers: Arc<Servers>,
    datacenter: DatacenterName,
    roots: OnceCell<watch::Receiver<Arc<RootsView>>>,
    routing: OnceCell<watch::Receiver<Arc<Routing>>>,
    intentions: Mutex<HashMap<ServiceName, Weak<AgentIntentions>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for AgentControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentControlPlane")
            .field("datacenter", &self.datacenter)
            .field("servers", &self.servers.clients)
            .finish_non_exhaustive()
    }
}

impl Drop for AgentControlPlane {
    fn drop(&mut self) {
        let tasks = self
            .tasks
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for t in tasks.drain(..) {
            t.abort();
        }
    }
}

impl AgentControlPlane {
    /// Connects: learns the datacenter from the first server that answers (its routing
    /// view, which any token may read). Fails when none answers, the token is unknown, or an
    /// address or the CA file is unusable.
    pub async fn connect(opts: AgentOptions) -> Result<Arc<Self>, Error> {
        if opts.servers.is_empty() {
            return Err(ErrorKind::Config("no server address given".into()).into());
        }
        let mut clients = Vec::with_capacity(opts.servers.len());
        for addr in &opts.servers {
            let client = Client::new(ClientConfig {
                addr: addr.clone(),
                token: Some(opts.token.expose_secret().to_owned()),
                ca_file: opts.ca_file.clone(),
                // A blocking query is held `wait` plus up to 1/16 of jitter.
                timeout: opts.wait + opts.wait / 16 + Duration::from_secs(10),
            })
            .map_err(agent_error)?;
            clients.push(client);
        }
        let servers = Arc::new(Servers {
            clients,
            preferred: AtomicUsize::new(0),
            wait: opts.wait,
            retry_max: opts.retry_max,
        });
        let (view, _): (Routing, _) = servers.get(ROUTING_PATH).await.map_err(agent_error)?;
        Ok(Arc::new(Self {
            servers,
            datacenter: view.datacenter,
            roots: OnceCell::new(),
            routing: OnceCell::new(),
            intentions: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// The address of the server requests go to first now.
    pub fn current_server(&self) -> String {
        let i = self.servers.preferred.load(Ordering::Relaxed) % self.servers.clients.len();
        self.servers.clients[i].address()
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(handle);
    }

    /// Starts a blocking-query watch of `path`: the first answer now (an error if there is
    /// none), then every change, published through `publish`.
    async fn watch<T, U, F>(
        &self,
        path: String,
        convert: F,
    ) -> Result<watch::Receiver<Arc<U>>, Error>
    where
        T: DeserializeOwned + Send + 'static,
        U: Send + Sync + 'static,
        F: Fn(T) -> Result<U, String> + Send + Sync + 'static,
    {
        let (first, index): (T, u64) = self.servers.get(&path).await.map_err(agent_error)?;
        let first = convert(first).map_err(Error::invalid_msg)?;
        let (tx, rx) = watch::channel(Arc::new(first));
        self.spawn(follow(self.servers.clone(), path, index, convert, tx));
        Ok(rx)
    }
}

/// Follows `path` with blocking queries from `index`, publishing each new answer.
async fn follow<T, U, F>(
    servers: Arc<Servers>,
    path: String,
    mut index: u64,
    convert: F,
    tx: watch::Sender<Arc<U>>,
) where
    T: DeserializeOwned,
    F: Fn(T) -> Result<U, String>,
{
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut failures: u32 = 0;
    loop {
        let query = format!(
            "{path}{sep}index={index}&wait={}ms",
            servers.wait.as_millis()
        );
        match servers.get::<T>(&query).await {
            Ok((value, next)) => {
                if failures > 0 {
                    tracing::info!(%path, "control plane reachable again; catching up");
                }
                failures = 0;
                // An index that goes backwards (a restored or replaced server) restarts the
                // watch from the answer itself.
                let moved = next != index;
                index = if next < index { 0 } else { next };
                if moved {
                    match convert(value) {
                        Ok(v) => {
                            tx.send_replace(Arc::new(v));
                        }
                        Err(e) => {
                            tracing::warn!(%path, error = %e, "unusable answer; keeping the last view")
                        }
                    }
                }
                if index == 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = Duration::from_millis(100)
                    .saturating_mul(2u32.saturating_pow(failures.min(8)))
                    .min(servers.retry_max);
                if failures == 1 {
                    tracing::warn!(%path, error = %e, "control plane unreachable; serving the last view");
                } else {
                    tracing::debug!(%path, error = %e, ?pause, "control plane still unreachable");
                }
                tokio::time::sleep(pause).await;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// The intentions of one destination, as the agent last answered them.
struct AgentIntentions {
    /// Everything a decision reads, swapped whole: one atomic load per decision, no lock.
    view: ArcSwap<DecisionView>,
    target: ServiceName,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The intentions of one destination, the default decision and the trust domain, as of the
/// last answers of their three watches.
struct DecisionView {
    set: Arc<IntentionSet>,
    default: IntentionDefault,
    trust_domain: Option<TrustDomain>,
}

impl DecisionView {
    fn of(
        set: &watch::Receiver<Arc<IntentionSet>>,
        routing: &watch::Receiver<Arc<Routing>>,
        roots: &watch::Receiver<Arc<RootsView>>,
    ) -> Self {
        Self {
            set: set.borrow().clone(),
            default: routing.borrow().intention_default(),
            trust_domain: roots.borrow().trust_domain(),
        }
    }
}

impl std::fmt::Debug for AgentIntentions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentIntentions")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Drop for AgentIntentions {
    fn drop(&mut self) {
        let task = self
            .task
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = task.take() {
            t.abort();
        }
    }
}

impl IntentionSource for AgentIntentions {
    fn authorize(&self, client: &SpiffeId) -> Authorization {
        let v = self.view.load();
        authorize_in_set(
            &v.set,
            v.default,
            v.trust_domain.as_ref(),
            client,
            &self.target,
        )
    }
}

/// The answer of `GET /v1/connect/intentions/match`: intentions by destination name.
type MatchAnswer = HashMap<String, Vec<Intention>>;

fn intention_set(answer: MatchAnswer, target: &ServiceName) -> Result<IntentionSet, String> {
    let list = answer.into_values().flatten().filter(|i| {
        // The answer matches the destination by name or wildcard; keep nothing else.
        i.destination_name == target.as_str() || i.destination_name == "*"
    });
    IntentionSet::build(list).map_err(|e| e.to_string())
}

#[async_trait::async_trait]
impl ControlPlane for AgentControlPlane {
    fn datacenter(&self) -> &DatacenterName {
        &self.datacenter
    }

    async fn roots(&self) -> Result<watch::Receiver<Arc<RootsView>>, Error> {
        let rx = self
            .roots
            .get_or_try_init(|| {
                self.watch("/v1/agent/connect/ca/roots".to_owned(), |v: RootsView| {
                    if v.trust_domain().is_none() {
                        return Err("the roots name no trust domain".into());
                    }
                    Ok(v)
                })
            })
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::Agent(c) if c.status() == Some(500) => {
                    tracing::debug!(error = %e, "roots unavailable");
                    ErrorKind::ConnectDisabled.into()
                }
                _ => e,
            })?;
        Ok(rx.clone())
    }

    async fn sign_leaf(
        &self,
        token: &Secret,
        service: &ServiceName,
        csr_pem: &str,
    ) -> Result<IssuedLeaf, SignError> {
        let path = format!(
            "/v1/internal/mesh/sign/{}",
            percent_encode(service.as_str())
        );
        let resp = self
            .servers
            .call(
                Method::PUT,
                &path,
                Some(json!({ "CSR": csr_pem })),
                Some(token),
            )
            .await
            .map_err(|e| match e.status() {
                Some(403) => SignError::PermissionDenied {
                    id: service_id_guess(service),
                    refusal: Refusal::new(e.to_string()),
                },
                Some(429) => SignError::RateLimited,
                _ => SignError::Unavailable(e.to_string()),
            })?;
        #[derive(Deserialize)]
        struct Signed {
            #[serde(rename = "CertPEM")]
            cert_pem: String,
            #[serde(rename = "RootID")]
            root_id: String,
        }
        let signed: Signed = resp
            .json()
            .map_err(|e| SignError::Unavailable(format!("decoding the signed leaf: {e}")))?;
        let leaf = IssuedLeaf::from_pem(&signed.cert_pem, signed.root_id)
            .map_err(|e| SignError::Unavailable(e.to_string()))?;
        // The certificate must be for the service asked for, whatever the server says.
        let ok = leaf
            .spiffe_id
            .as_service()
            .is_some_and(|s| s.service() == service && s.datacenter() == &self.datacenter);
        if !ok {
            return Err(SignError::Unavailable(format!(
                "the server signed {} instead of {service}",
                leaf.spiffe_id
            )));
        }
        Ok(leaf)
    }

    async fn intentions(
        &self,
        _token: &Secret,
        destination: &ServiceName,
    ) -> Result<Arc<dyn IntentionSource>, Error> {
        if let Some(existing) = self
            .intentions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(destination)
            .and_then(Weak::upgrade)
        {
            return Ok(existing);
        }
        let roots = self.roots().await?;
        let routing = self.routing(&Secret::new("")).await?;
        let path = format!(
            "/v1/connect/intentions/match?by=destination&name={}",
            percent_encode(destination.as_str())
        );
        let target = destination.clone();
        let rx = self
            .watch(path, move |answer: MatchAnswer| {
                intention_set(answer, &target)
            })
            .await?;
        let source = Arc::new(AgentIntentions {
            view: ArcSwap::from_pointee(DecisionView::of(&rx, &routing, &roots)),
            target: destination.clone(),
            task: Mutex::new(None),
        });
        // Rebuild the decision view when any of its watches moves (the task holds the source
        // only weakly, so dropping the last service that uses it stops it).
        let weak = Arc::downgrade(&source);
        let (mut rx, mut routing, mut roots) = (rx, routing, roots);
        let copy = tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    r = routing.changed() => if r.is_err() { return },
                    r = roots.changed() => if r.is_err() { return },
                }
                rx.mark_unchanged();
                routing.mark_unchanged();
                roots.mark_unchanged();
                let Some(s) = weak.upgrade() else { return };
                s.view
                    .store(Arc::new(DecisionView::of(&rx, &routing, &roots)));
            }
        });
        *source
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(copy);
        self.intentions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(destination.clone(), Arc::downgrade(&source));
        Ok(source)
    }

    async fn routing(&self, _token: &Secret) -> Result<watch::Receiver<Arc<Routing>>, Error> {
        let dc = self.datacenter.clone();
        let rx = self
            .routing
            .get_or_try_init(|| {
                self.watch(ROUTING_PATH.to_owned(), move |r: Routing| {
                    if r.datacenter != dc {
                        return Err(format!(
                            "the server answered for datacenter {}, not {dc}",
                            r.datacenter
                        ));
                    }
                    Ok(r)
                })
            })
            .await?;
        Ok(rx.clone())
    }

    async fn remote_endpoints(
        &self,
        _token: &Secret,
        datacenter: &DatacenterName,
        service: &ServiceName,
    ) -> Result<Vec<SocketAddr>, Error> {
        let path = format!(
            "/v1/internal/mesh/endpoints/{}?dc={}",
            percent_encode(service.as_str()),
            percent_encode(datacenter.as_str())
        );
        let (addrs, _): (Vec<SocketAddr>, _) =
            self.servers.get(&path).await.map_err(agent_error)?;
        Ok(addrs)
    }

    async fn instance(&self, token: &Secret, id: &str) -> Result<CatalogEntry, Error> {
        let path = format!("/v1/internal/mesh/instance/{}", percent_encode(id));
        let resp = self
            .servers
            .call(Method::GET, &path, None, Some(token))
            .await
            .map_err(|e| match e.status() {
                Some(404) => ErrorKind::NotFound(format!("service instance {id:?}")).into(),
                _ => agent_error(e),
            })?;
        resp.json().map_err(Error::invalid)
    }

    async fn register_gateway(
        &self,
        token: &Secret,
        name: &ServiceName,
        id: &str,
        lan: SocketAddr,
        wan: SocketAddr,
    ) -> Result<(), Error> {
        let path = format!("/v1/internal/mesh/gateway/{}", percent_encode(id));
        let body = json!({ "Name": name, "Lan": lan, "Wan": wan });
        self.servers
            .call(Method::PUT, &path, Some(body), Some(token))
            .await
            .map_err(agent_error)?;
        Ok(())
    }

    async fn set_instance_address(
        &self,
        token: &Secret,
        id: &str,
        addr: SocketAddr,
    ) -> Result<(), Error> {
        let path = format!("/v1/internal/mesh/instance/{}/address", percent_encode(id));
        self.servers
            .call(
                Method::PUT,
                &path,
                Some(json!({ "Address": addr })),
                Some(token),
            )
            .await
            .map_err(agent_error)?;
        Ok(())
    }

    async fn deregister(&self, token: &Secret, id: &str) -> Result<(), Error> {
        let path = format!("/v1/agent/service/deregister/{}", percent_encode(id));
        self.servers
            .call(Method::PUT, &path, None, Some(token))
            .await
            .map_err(agent_error)?;
        Ok(())
    }
}

/// The identity a refused signing was for, as well as the caller can name it.
fn service_id_guess(service: &ServiceName) -> SpiffeId {
    format!("spiffe://unknown/ns/default/dc/unknown/svc/{service}")
        .parse()
        .unwrap_or_else(|_| {
            "spiffe://unknown/ns/default/dc/unknown/svc/unknown"
                .parse()
                .expect("a constant SPIFFE ID parses")
        })
}

fn agent_error(e: ClientError) -> Error {
    ErrorKind::Agent(Box::new(e)).into()
}
