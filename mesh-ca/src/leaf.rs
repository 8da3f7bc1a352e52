//! The holder's side of a leaf: a key + certificate, and the manager that keeps it fresh.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mesh_core::SpiffeId;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ca::{Ca, IssuedLeaf};
use crate::clock::Clock;
use crate::csr::new_leaf_request;
use crate::error::{Authorize, SignError};
use crate::keys::PrivateKey;
use crate::roots::RootsView;

/// Consul's `caChangeJitterWindow`: leaves are re-issued at a random moment within this window
/// after the active root changes.
pub const ROOT_CHANGE_JITTER: Duration = Duration::from_secs(30);
/// Failed renewals are retried at a random moment in successive windows of this size.
pub const RETRY_WINDOW: Duration = Duration::from_secs(30);
/// Lifetimes below this are renewed at once (Consul's rule).
pub const MIN_RENEWABLE_LIFETIME: Duration = Duration::from_secs(600);

/// A leaf certificate together with its private key.
#[derive(Debug)]
pub struct LeafCert {
    /// The certificate as issued.
    pub issued: IssuedLeaf,
    key: PrivateKey,
}

impl LeafCert {
    /// Pairs an issued certificate with the key its CSR was made from.
    pub fn new(issued: IssuedLeaf, key: PrivateKey) -> Self {
        Self { issued, key }
    }

    /// The private key (its `Debug` is redacted).
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The identity.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.issued.spiffe_id
    }

    /// Leaf followed by its intermediates, ready for TLS.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        let mut v = Vec::with_capacity(1 + self.issued.chain.len());
        v.push(self.issued.cert.clone());
        v.extend(self.issued.chain.iter().cloned());
        v
    }

    /// A rustls `CertifiedKey` (chain + signing key) for `provider`.
    pub fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, rustls::Error> {
        CertifiedKey::from_der(
            self.chain(),
            PrivateKeyDer::Pkcs8(self.key.to_pkcs8_der()),
            provider,
        )
    }
}

/// Gets a CSR signed (locally through a [`Ca`], or remotely through an RPC).
#[async_trait]
pub trait LeafSigner: Send + Sync {
    /// Signs a PEM CSR.
    async fn sign(&self, csr_pem: &str) -> Result<IssuedLeaf, SignError>;
}

/// Signs through a local [`Ca`] with a fixed authorizer.
pub struct LocalSigner<A> {
    ca: Ca,
    auth: A,
}

impl<A: Authorize> LocalSigner<A> {
    /// A signer using `ca` and `auth`.
    pub fn new(ca: Ca, auth: A) -> Self {
        Self { ca, auth }
    }
}

#[async_trait]
impl<A: Authorize> LeafSigner for LocalSigner<A> {
    async fn sign(&self, csr_pem: &str) -> Result<IssuedLeaf, SignError> {
        self.ca.sign_leaf_pem(csr_pem, &self.auth).await
    }
}

/// Consul's `calculateSoftExpiry`: the window `[min, max)` in which to renew a certificate
/// valid from `not_before` to `not_after`: 60% to 90% of its lifetime; `min` is `now` when
/// that is later; both are `now` past 90% or for lifetimes under ten minutes.
pub fn soft_expiry_window(
    now: OffsetDateTime,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> (OffsetDateTime, OffsetDateTime) {
    let life = not_after - not_before;
    if life < MIN_RENEWABLE_LIFETIME {
        return (now, now);
    }
    let min: OffsetDateTime = not_before + life * 0.6;
    let max: OffsetDateTime = not_before + life * 0.9;
    if now > max {
        return (now, now);
    }
    (min.max(now), max)
}

/// Options of a [`LeafManager`].
#[derive(Debug, Clone)]
pub struct LeafManagerOptions {
    /// Wall clock (use [`Clock::tokio`] under paused time).
    pub clock: Clock,
    /// Window for re-issuing after a root change.
    pub root_change_jitter: Duration,
    /// Window for retries after a failure.
    pub retry_window: Duration,
    /// Extra DNS SANs to request.
    pub extra_dns: Vec<String>,
}

impl Default for LeafManagerOptions {
    fn default() -> Self {
        Self {
            clock: Clock::system(),
            root_change_jitter: ROOT_CHANGE_JITTER,
            retry_window: RETRY_WINDOW,
            extra_dns: Vec::new(),
        }
    }
}

/// Keeps the leaf of one identity fresh: issues one at start, renews it at a random moment
/// in the 60-90% window of its life, re-issues within a jitter window when the active root
/// changes, and retries failures in successive windows while keeping the old leaf. Every new
/// leaf is published on a `watch` channel. Dropping the manager stops it.
#[derive(Debug)]
pub struct LeafManager {
    rx: watch::Receiver<Option<Arc<LeafCert>>>,
    task: JoinHandle<()>,
}

impl LeafManager {
    /// Starts managing the leaf of `id`. `roots` is the roots list as this holder sees it.
    pub fn spawn(
        id: SpiffeId,
        signer: Arc<dyn LeafSigner>,
        roots: watch::Receiver<Arc<RootsView>>,
        opts: LeafManagerOptions,
    ) -> Self {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(run(id, signer, roots, opts, tx));
        Self { rx, task }
    }

    /// A receiver of every new leaf.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<LeafCert>>> {
        self.rx.clone()
    }

    /// The current leaf, if one was issued.
    pub fn current(&self) -> Option<Arc<LeafCert>> {
        self.rx.borrow().clone()
    }

    /// Waits for the first leaf. `None` if the manager stopped.
    pub async fn ready(&self) -> Option<Arc<LeafCert>> {
        let mut rx = self.rx.clone();
        let r = rx.wait_for(Option::is_some).await.ok()?;
        r.clone()
    }
}

impl Drop for LeafManager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    id: SpiffeId,
    signer: Arc<dyn LeafSigner>,
    mut roots: watch::Receiver<Arc<RootsView>>,
    opts: LeafManagerOptions,
    tx: watch::Sender<Option<Arc<LeafCert>>>,
) {
    let mut failures: u32 = 0;
    let mut roots_open = true;
    let extra: Vec<&str> = opts.extra_dns.iter().map(String::as_str).collect();
    loop {
        roots.mark_unchanged();
        let issued = match new_leaf_request(&id, &extra) {
            Ok(req) => signer
                .sign(&req.csr_pem)
                .await
                .map(|issued| LeafCert::new(issued, req.key)),
            Err(e) => {
                tracing::error!(spiffe_id = %id, error = %e, "cannot build a CSR");
                return;
            }
        };
        let leaf = match issued {
            Ok(leaf) => {
                failures = 0;
                let leaf = Arc::new(leaf);
                tracing::debug!(spiffe_id = %id, serial = %leaf.issued.serial_number, "new leaf certificate");
                tx.send_replace(Some(leaf.clone()));
                leaf
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let n = failures.min(10);
                let delay =
                    opts.retry_window * (n - 1) + opts.retry_window.mul_f64(random_fraction());
                tracing::warn!(spiffe_id = %id, error = %e, retry_in = ?delay, "leaf signing failed; keeping the current leaf");
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let (min, max) = soft_expiry_window(
            opts.clock.now(),
            leaf.issued.valid_after,
            leaf.issued.valid_before,
        );
        let target = min + (max - min) * random_fraction();
        let sleep = tokio::time::sleep(until(&opts.clock, target));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                changed = roots.changed(), if roots_open => {
                    if changed.is_err() {
                        roots_open = false;
                        continue;
                    }
                    let active = roots.borrow_and_update().active_root_id.clone();
                    if active != leaf.issued.root_id {
                        let jitter = opts.root_change_jitter.mul_f64(random_fraction());
                        tracing::debug!(spiffe_id = %id, new_root = %active, ?jitter, "active root changed; re-issuing leaf");
                        tokio::time::sleep(jitter).await;
                        break;
                    }
                }
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

fn until(clock: &Clock, target: OffsetDateTime) -> Duration {
    let d = target - clock.now();
    if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    }
}

/// A uniform number in [0, 1) from the system RNG (0.5 if the RNG fails).
pub(crate) fn random_fraction() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;
    use time::Duration as TD;

    #[test]
    fn window_rules() {
        let a = OffsetDateTime::UNIX_EPOCH;
        let b = a + TD::hours(10);
        // before 60%: the 60-90% window
        assert_eq!(
            soft_expiry_window(a, a, b),
            (a + TD::hours(6), a + TD::hours(9))
        );
        // past 60%: from now
        let now = a + TD::hours(7);
        assert_eq!(soft_expiry_window(now, a, b), (now, a + TD::hours(9)));
        // past 90%: now
        let now = a + TD::minutes(9 * 60 + 30);
        assert_eq!(soft_expiry_window(now, a, b), (now, now));
        // lifetime under ten minutes: now
        assert_eq!(soft_expiry_window(a, a, a + TD::minutes(9)), (a, a));
    }

    #[test]
    fn fraction_in_range() {
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
