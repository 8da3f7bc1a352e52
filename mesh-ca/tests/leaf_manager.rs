//! The leaf manager under tokio's paused time: renewal window, root change, retries.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use common::*;
use mesh_ca::{
    Ca, CaOptions, Clock, IssuedLeaf, LeafManager, LeafManagerOptions, LeafSigner, LocalSigner,
    SignError,
};

async fn setup() -> (Ca, Clock) {
    let clock = Clock::tokio();
    let ca = Ca::bootstrap_primary(
        CaOptions::new(dc("dc1"))
            .with_config(unlimited())
            .with_clock(clock.clone()),
    )
    .await
    .unwrap();
    (ca, clock)
}

#[tokio::test(start_paused = true)]
async fn renews_between_60_and_90_percent_and_after_root_change() {
    let (ca, clock) = setup().await;
    let id = service_id(ca.trust_domain(), "dc1", "web");
    let signer = Arc::new(LocalSigner::new(ca.clone(), allow_all));
    let opts = LeafManagerOptions {
        clock: clock.clone(),
        ..Default::default()
    };
    let mgr = LeafManager::spawn(id.clone(), signer, ca.subscribe_roots(), opts);
    let mut rx = mgr.subscribe();
    let first = mgr.ready().await.unwrap();
    rx.borrow_and_update();
    assert_eq!(first.spiffe_id(), &id);

    for _ in 0..3 {
        let prev = mgr.current().unwrap();
        rx.changed().await.unwrap();
        let now = clock.now();
        let next = rx.borrow_and_update().clone().unwrap();
        let life = prev.issued.valid_before - prev.issued.valid_after;
        let lo = prev.issued.valid_after + life * 0.6;
        let hi = prev.issued.valid_after + life * 0.9;
        assert!(
            now >= lo - time::Duration::SECOND && now <= hi,
            "renewed at {now}, window {lo}..{hi}"
        );
        assert_ne!(next.issued.serial_number, prev.issued.serial_number);
        assert!(next.issued.valid_after > prev.issued.valid_after);
    }

    let rotated_at = clock.now();
    let rot = ca.rotate().await.unwrap();
    rx.changed().await.unwrap();
    let waited = clock.now() - rotated_at;
    assert!(
        waited <= time::Duration::seconds(30),
        "re-issued {waited} after the rotation"
    );
    let leaf = rx.borrow_and_update().clone().unwrap();
    assert_eq!(leaf.issued.root_id, rot.new_root_id);
    // The rotated-in leaf chains through the cross-signed root.
    assert_eq!(leaf.issued.chain.len(), 1);
}

/// Succeeds once, then fails `fail` times with the rate-limit error, then succeeds.
struct Flaky {
    ca: Ca,
    calls: AtomicU32,
    fail: u32,
}

#[async_trait]
impl LeafSigner for Flaky {
    async fn sign(&self, csr_pem: &str) -> Result<IssuedLeaf, SignError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n >= 1 && n <= self.fail {
            return Err(SignError::RateLimited);
        }
        self.ca.sign_leaf_pem(csr_pem, &allow_all).await
    }
}

#[tokio::test(start_paused = true)]
async fn failures_keep_the_old_leaf_and_retry_in_windows() {
    let (ca, clock) = setup().await;
    let id = service_id(ca.trust_domain(), "dc1", "web");
    let signer = Arc::new(Flaky {
        ca: ca.clone(),
        calls: AtomicU32::new(0),
        fail: 3,
    });
    let opts = LeafManagerOptions {
        clock: clock.clone(),
        ..Default::default()
    };
    let mgr = LeafManager::spawn(id, signer.clone(), ca.subscribe_roots(), opts);
    let mut rx = mgr.subscribe();
    let first = mgr.ready().await.unwrap();
    rx.borrow_and_update();
    rx.changed().await.unwrap();
    let second = rx.borrow_and_update().clone().unwrap();
    assert_eq!(signer.calls.load(Ordering::SeqCst), 5);
    // Three failures waited in windows [0,30), [30,60), [60,90) seconds: under 3 minutes
    // after the renewal window opened, and the old leaf was kept meanwhile.
    let life = first.issued.valid_before - first.issued.valid_after;
    let latest = first.issued.valid_after + life * 0.9 + time::Duration::seconds(180);
    assert!(clock.now() <= latest);
    assert_ne!(second.issued.serial_number, first.issued.serial_number);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_manager_stops_it() {
    let (ca, clock) = setup().await;
    let id = service_id(ca.trust_domain(), "dc1", "web");
    let signer = Arc::new(LocalSigner::new(ca.clone(), allow_all));
    let mgr = LeafManager::spawn(
        id,
        signer,
        ca.subscribe_roots(),
        LeafManagerOptions {
            clock,
            ..Default::default()
        },
    );
    let rx = mgr.subscribe();
    mgr.ready().await.unwrap();
    drop(mgr);
    tokio::task::yield_now().await;
    let mut rx = rx;
    rx.borrow_and_update();
    assert!(
        rx.changed().await.is_err(),
        "the sender is gone once the task stops"
    );
}
