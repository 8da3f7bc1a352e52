//! The Connect CA of a datacenter: roots, leaf signing, rotation.

use super::*;

/// The Connect CA of a [`Datacenter`]: `dc.connect_ca()`. Roots, leaf signing, rotation.
/// A cheap borrowed handle.
#[derive(Clone, Copy, Debug)]
pub struct ConnectCa<'a> {
    pub(super) dc: &'a Datacenter,
}

impl<'a> ConnectCa<'a> {
    /// The CA, when Connect is on.
    pub fn ca(&self) -> Result<&'a Ca, Error> {
        self.dc
            .inner
            .ca
            .get()
            .ok_or(ErrorKind::ConnectDisabled.into())
    }

    /// The current roots list.
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
    /// let ca = dc.connect_ca();
    /// let before = ca.roots()?.active_root_id.clone();
    /// ca.rotate(&management).await?;
    /// assert_ne!(ca.roots()?.active_root_id, before);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn roots(&self) -> Result<Arc<RootsView>, Error> {
        Ok(self.ca()?.roots())
    }

    /// A watch of the roots list (follows rotations; in a secondary, the primary's roots
    /// with this datacenter's intermediate).
    pub fn subscribe_roots(&self) -> Result<watch::Receiver<Arc<RootsView>>, Error> {
        Ok(self.ca()?.subscribe_roots())
    }

    /// The mesh roots as rustls trusts them.
    pub fn trust_bundle(&self) -> Result<TrustBundle, Error> {
        Ok(TrustBundle::from_roots(self.roots()?.as_ref())?)
    }

    /// Signs a leaf CSR (PEM). A service identity needs `service:write` on the service; a mesh
    /// gateway identity `mesh:write`; anything else is refused.
    pub async fn sign_leaf(&self, token: &Secret, csr_pem: &str) -> Result<IssuedLeaf, Error> {
        let op = Operation::named("leaf sign");
        during(op, async {
            Ok(self.dc.sign_leaf_typed(token, csr_pem).await?)
        })
        .await
    }

    /// Rotates the CA root (primary only). Needs `operator:write`.
    pub async fn rotate(&self, token: &Secret) -> Result<(), Error> {
        let op = Operation::named("CA root rotate");
        during(op, async {
            self.dc.require(token, operator_write(), None)?;
            if !self.dc.is_primary() {
                return Err(Error::from(ErrorKind::Config(
                    "roots rotate in the primary datacenter".into(),
                )));
            }
            let ca = self.ca()?;
            ca.rotate().await?;
            self.dc.save_ca_state(ca).await?;
            Ok(())
        })
        .await
    }
}

impl Datacenter {
    /// The trust domain, once the CA knows it.
    pub fn trust_domain(&self) -> Option<TrustDomain> {
        self.inner.ca.get().map(|ca| ca.trust_domain().clone())
    }

    /// [`ConnectCa::sign_leaf`] with the CA's own error type (what a leaf manager expects).
    pub(crate) async fn sign_leaf_typed(
        &self,
        token: &Secret,
        csr_pem: &str,
    ) -> Result<IssuedLeaf, mesh_ca::SignError> {
        let ca = self
            .connect_ca()
            .ca()
            .map_err(|_| mesh_ca::SignError::NotInitialized)?;
        let authz = self
            .inner
            .authorizer(token.expose_secret())
            .map_err(|e| e.to_string());
        let check = move |id: &SpiffeId| -> Result<(), mesh_ca::Refusal> {
            let authz = authz
                .as_ref()
                .map_err(|e| mesh_ca::Refusal::new(e.clone()))?;
            let (d, what, name) = match id {
                SpiffeId::Service(s) => (
                    authz.service_write(s.service().as_str()),
                    "service:write",
                    s.service().to_string(),
                ),
                SpiffeId::MeshGateway(_) => (authz.mesh_write(), "mesh:write", String::new()),
                _ => {
                    return Err(mesh_ca::Refusal::new(
                        "only service and mesh-gateway identities are signed here",
                    ));
                }
            };
            if d.is_allowed() {
                Ok(())
            } else {
                Err(mesh_ca::Refusal::new(format!(
                    "token lacks permission '{what}' on {name:?} (decided by {})",
                    d.decided_by()
                )))
            }
        };
        ca.sign_leaf_pem(csr_pem, &check).await
    }

    pub(super) async fn start_primary_ca(&self) -> Result<Ca, Error> {
        let inner = &self.inner;
        let opts =
            CaOptions::new(inner.config.name.clone()).with_config(inner.config.connect.ca.clone());
        let ca = match self.load_ca_state().await? {
            Some(state) => Ca::load(opts, state)?,
            None => Ca::bootstrap_primary(opts).await?,
        };
        self.save_ca_state(&ca).await?;
        self.spawn_intermediate_signer(ca.clone());
        tracing::info!(trust_domain = %ca.trust_domain(), "CA ready (primary)");
        Ok(ca)
    }

    pub(super) async fn start_secondary_ca(&self) -> Result<Ca, Error> {
        let inner = &self.inner;
        let opts =
            CaOptions::new(inner.config.name.clone()).with_config(inner.config.connect.ca.clone());
        let existing = self.load_ca_state().await?;
        // A weak handle: the renewal task must not keep the datacenter alive.
        let signer = Arc::new(ReplicatedSigner {
            dc: Arc::downgrade(&self.inner),
        });
        let ca = match existing {
            Some(state) => Ca::load(opts, state)?,
            None => Ca::init_secondary(opts, signer.as_ref()).await?,
        };
        self.save_ca_state(&ca).await?;
        let renew = ca.clone();
        let weak = Arc::downgrade(&self.inner);
        let store = inner.store.clone();
        let task = tokio::spawn(async move {
            let t = table(tables::CA_ROOTS);
            let mut seen = store.table_index(&t);
            loop {
                // Wake as soon as the primary's roots replicate here (a rotation follows
                // within moments), and at least hourly (the intermediate's half life).
                match store.wait_table(&t, seen, SECONDARY_CA_CHECK).await {
                    Ok(i) => seen = i,
                    Err(e) => {
                        tracing::warn!(error = %e, "watching the primary's roots failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
                if let Err(e) = renew.renew_intermediate(signer.as_ref()).await {
                    tracing::warn!(error = %e, "intermediate renewal failed");
                }
                renew.prune_roots().await;
                // Saved every time: a refreshed roots list changes the state even when the
                // intermediate stays, and the save is what moves the roots' index here.
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = (Datacenter { inner }).save_ca_state(&renew).await {
                    tracing::warn!(error = %e, "saving the CA state failed");
                }
            }
        });
        inner.push_task(task);
        tracing::info!(trust_domain = %ca.trust_domain(), "CA ready (secondary intermediate signed by the primary)");
        Ok(ca)
    }

    /// Saves the CA state (its private keys among it): sealed with the state key when one is
    /// configured, as JSON otherwise.
    pub(super) async fn save_ca_state(&self, ca: &Ca) -> Result<(), Error> {
        let state = ca.export_state().to_json()?;
        let value =
            match &self.inner.config.state_key {
                Some(key) => Value::bytes(seal(key, self.inner.config.name.as_str(), &state)?),
                None => Value::json(serde_json::from_str(&state).map_err(|e| {
                    ErrorKind::Corrupt(format!("the CA state does not encode: {e}"))
                })?),
            };
        self.write_local(tables::CA_STATE, "state", value, None)
            .await?;
        Ok(())
    }

    /// The saved CA state, opened with the state key if it was sealed. A state saved in the
    /// clear is read as it is (and sealed by the next save when a key is configured now).
    async fn load_ca_state(&self) -> Result<Option<CaState>, Error> {
        let inner = &self.inner;
        let Some(rec) = inner.store.get(&table(tables::CA_STATE), "state").await? else {
            return Ok(None);
        };
        let json = match (&rec.value, &inner.config.state_key) {
            (Value::Json(v), _) => v.to_string(),
            (Value::Bytes(b), Some(key)) => open(key, inner.config.name.as_str(), b)?,
            (Value::Bytes(_), None) => {
                return Err(Error::from(ErrorKind::Config(
                    "the stored CA state is sealed with a state key, and none is configured".into(),
                )));
            }
        };
        Ok(Some(CaState::from_json(&json)?))
    }

    /// Primary: publishes every roots list to the global table secondaries replicate.
    pub(super) fn spawn_roots_publisher(&self, ca: Ca) {
        let weak = Arc::downgrade(&self.inner);
        let mut rx = ca.subscribe_roots();
        let task = tokio::spawn(async move {
            loop {
                let view = rx.borrow_and_update().clone();
                {
                    let Some(inner) = weak.upgrade() else { return };
                    match serde_json::to_value(view.as_ref()) {
                        Ok(v) => {
                            if let Err(e) = inner
                                .store
                                .upsert(&table(tables::CA_ROOTS), "roots", Value::json(v), None)
                                .await
                            {
                                tracing::warn!(error = %e, "publishing CA roots failed");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "encoding CA roots failed"),
                    }
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        self.inner.push_task(task);
    }

    /// Primary: signs every pending intermediate request that arrives through replication.
    fn spawn_intermediate_signer(&self, ca: Ca) {
        let store = self.inner.store.clone();
        let task = tokio::spawn(async move {
            let t = table(tables::CA_INTERMEDIATES);
            loop {
                let listing = match store.list(&t).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading intermediate requests failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                for rec in &listing.records {
                    let Some(mut req) = decode::<IntermediateRecord>(rec) else {
                        continue;
                    };
                    if req.cert.is_some() || req.error.is_some() {
                        continue;
                    }
                    match ca.sign_intermediate(&req.csr).await {
                        Ok(cert) => req.cert = Some(cert),
                        Err(e) => {
                            tracing::warn!(datacenter = %rec.id, error = %e, "intermediate request refused");
                            req.error = Some(e.to_string());
                        }
                    }
                    let Ok(v) = serde_json::to_value(&req) else {
                        continue;
                    };
                    // CAS on the request's index: a newer request from the same datacenter wins.
                    if let Err(e) = store
                        .upsert(&t, &rec.id, Value::json(v), Some(rec.modify_index))
                        .await
                    {
                        tracing::debug!(datacenter = %rec.id, error = %e, "intermediate answer superseded");
                    }
                }
                if let Err(e) = store.wait_table(&t, listing.index, WATCH_WAIT).await {
                    tracing::warn!(error = %e, "waiting for intermediate requests failed");
                }
            }
        });
        self.inner.push_task(task);
    }
}

/// The secondary's side of intermediate signing: the request is a forwarded write to the
/// primary, the answer comes back by replication.
struct ReplicatedSigner {
    dc: std::sync::Weak<Inner>,
}

impl ReplicatedSigner {
    fn dc(&self) -> Result<Datacenter, SignerError> {
        self.dc
            .upgrade()
            .map(|inner| Datacenter { inner })
            .ok_or_else(|| "the datacenter has stopped".into())
    }
}

#[async_trait::async_trait]
impl IntermediateSigner for ReplicatedSigner {
    async fn primary_roots(&self) -> Result<RootsView, SignerError> {
        let dc = self.dc()?;
        let store = dc.inner.store.clone();
        let t = table(tables::CA_ROOTS);
        // The roots come by replication: if the primary refuses the token for them, say so
        // instead of waiting for what cannot come.
        let mut status = dc
            .inner
            .replicas
            .as_ref()
            .and_then(|r| r.get(&t))
            .map(|h| h.subscribe());
        let mut seen = Index::ZERO;
        loop {
            if let Some(rec) = store.get(&t, "roots").await.map_err(signer_err)?
                && let Some(v) = rec.value.as_json()
            {
                return serde_json::from_value(v.clone()).map_err(signer_err);
            }
            if let Some(rx) = &status
                && let Some(e) = rx.borrow().last_error.as_ref().filter(|e| e.denied)
            {
                return Err(format!(
                    "the primary refused the replication token for the CA roots: {}",
                    e.message
                )
                .into());
            }
            let changed = async {
                match status.as_mut() {
                    Some(rx) => {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = store.wait_table(&t, seen, WATCH_WAIT) => seen = r.map_err(signer_err)?,
                () = changed => {}
            }
        }
    }

    async fn sign_intermediate(&self, csr_pem: &str) -> Result<String, SignerError> {
        let dc = &self.dc()?;
        let token = dc.inner.replication_token();
        let req = IntermediateRecord {
            csr: csr_pem.to_owned(),
            cert: None,
            error: None,
        };
        let value = serde_json::to_value(&req).map_err(signer_err)?;
        dc.write_global(
            &token,
            tables::CA_INTERMEDIATES,
            dc.name().as_str(),
            Value::json(value),
            None,
        )
        .await
        .map_err(signer_err)?;
        let store = &dc.inner.store;
        let t = table(tables::CA_INTERMEDIATES);
        let mut seen = Index::ZERO;
        loop {
            if let Some(rec) = store
                .get(&t, dc.name().as_str())
                .await
                .map_err(signer_err)?
                && let Some(ans) = decode::<IntermediateRecord>(&rec).filter(|a| a.csr == csr_pem)
            {
                if let Some(cert) = ans.cert {
                    return Ok(cert);
                }
                if let Some(e) = ans.error {
                    return Err(format!("primary refused the intermediate: {e}").into());
                }
            }
            seen = store
                .wait_table(&t, seen, WATCH_WAIT)
                .await
                .map_err(signer_err)?;
        }
    }
}

fn signer_err(e: impl std::fmt::Display) -> SignerError {
    e.to_string().into()
}

/// The longest a secondary goes without checking its intermediate against the primary.
const SECONDARY_CA_CHECK: Duration = Duration::from_secs(3600);

/// The primary's answer to a secondary server's enrollment: a certificate for that server's
/// identity, signed by this datacenter's CA (once Connect is up). The replication server has
/// checked the token (`operator:write`, what signing a secondary's intermediate needs too).
pub(super) struct PeerServerEnroller(pub(super) Arc<std::sync::OnceLock<Ca>>);

#[async_trait::async_trait]
impl mesh_replication::Enroller for PeerServerEnroller {
    async fn enroll(&self, csr_pem: &str) -> Result<String, mesh_replication::RemoteError> {
        use mesh_replication::{RemoteError, RemoteErrorKind};
        let Some(ca) = self.0.get() else {
            return Err(RemoteError {
                kind: RemoteErrorKind::Unsupported,
                message: "Connect is not enabled in the primary: no CA to enroll servers".into(),
            });
        };
        match ca.sign_peer_server_pem(csr_pem).await {
            Ok(leaf) => {
                tracing::info!(spiffe_id = %leaf.spiffe_id, serial = %leaf.serial_number, "server of another datacenter enrolled");
                Ok(leaf.cert_pem)
            }
            Err(e) => {
                let kind = if e.is_invalid_request() {
                    RemoteErrorKind::InvalidRequest
                } else if e.is_refusal() {
                    RemoteErrorKind::Denied
                } else {
                    RemoteErrorKind::Internal
                };
                tracing::warn!(error = %mesh_core::error_chain(&e), "server enrollment refused");
                Err(RemoteError {
                    kind,
                    message: mesh_core::error_chain(&e),
                })
            }
        }
    }
}

/// The prefix of a sealed CA state: format, then a 12-byte nonce, then AES-256-GCM output.
const SEALED_MAGIC: &[u8; 4] = b"MCS1";

/// Seals `plain` with `key` (AES-256-GCM, a fresh random nonce; the datacenter's name is the
/// associated data, so a state cannot be moved to another datacenter unnoticed).
fn seal(key: &crate::config::StateKey, datacenter: &str, plain: &str) -> Result<Vec<u8>, Error> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    use ring::rand::SecureRandom;
    let unbound = UnboundKey::new(&AES_256_GCM, key.bytes())
        .map_err(|_| ErrorKind::Config("the state key is unusable".into()))?;
    let key = LessSafeKey::new(unbound);
    let mut nonce = [0u8; NONCE_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| ErrorKind::Config("the system has no secure random source".into()))?;
    let mut buf = plain.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(datacenter.as_bytes()),
        &mut buf,
    )
    .map_err(|_| ErrorKind::Config("sealing the CA state failed".into()))?;
    let mut out = Vec::with_capacity(SEALED_MAGIC.len() + NONCE_LEN + buf.len());
    out.extend_from_slice(SEALED_MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Opens what [`seal`] made; a wrong key, another datacenter's state or altered bytes fail.
fn open(key: &crate::config::StateKey, datacenter: &str, sealed: &[u8]) -> Result<String, Error> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    let corrupt = |why: &str| Error::from(ErrorKind::Corrupt(format!("the sealed CA state {why}")));
    let rest = sealed
        .strip_prefix(SEALED_MAGIC.as_slice())
        .ok_or_else(|| corrupt("has an unknown format"))?;
    if rest.len() < NONCE_LEN {
        return Err(corrupt("is cut short"));
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt("is cut short"))?;
    let unbound = UnboundKey::new(&AES_256_GCM, key.bytes())
        .map_err(|_| ErrorKind::Config("the state key is unusable".into()))?;
    let mut buf = ct.to_vec();
    let plain = LessSafeKey::new(unbound)
        .open_in_place(nonce, Aad::from(datacenter.as_bytes()), &mut buf)
        .map_err(|_| {
            Error::from(ErrorKind::Config(
                "the stored CA state does not open with the configured state key (another \
                 key, another datacenter's state, or altered bytes)"
                    .into(),
            ))
        })?;
    String::from_utf8(plain.to_vec()).map_err(|_| corrupt("is not UTF-8 inside"))
}

#[cfg(test)]
mod sealed_state_tests {
    use super::*;
    use crate::config::StateKey;

    #[test]
    fn sealed_state_opens_only_with_its_key_and_datacenter() {
        let key = StateKey::from_bytes([7; 32]);
        let sealed = seal(&key, "dc1", "{\"private\":\"secret\"}").expect("seals");
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "no plaintext");
        assert_eq!(
            open(&key, "dc1", &sealed).expect("opens"),
            "{\"private\":\"secret\"}"
        );
        assert!(open(&StateKey::from_bytes([8; 32]), "dc1", &sealed).is_err());
        assert!(open(&key, "dc2", &sealed).is_err());
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(open(&key, "dc1", &altered).is_err());
        assert!(open(&key, "dc1", b"MCS1short").is_err());
        assert!(open(&key, "dc1", b"").is_err());
    }

    #[test]
    fn state_keys_parse_from_hex_only() {
        assert!(StateKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(StateKey::from_hex(&format!(" {}\n", "0f".repeat(32))).is_ok());
        assert!(StateKey::from_hex(&"ab".repeat(31)).is_err());
        assert!(StateKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(StateKey::from_hex(&"é".repeat(32)).is_err());
        // Byte length 64, but a two-byte character straddles a digit pair: an error, no panic.
        assert!(StateKey::from_hex(&format!("a{}a", "é".repeat(31))).is_err());
        assert_eq!(
            format!("{:?}", StateKey::from_bytes([1; 32])),
            "StateKey(<redacted>)"
        );
    }
}
