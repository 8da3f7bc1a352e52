//! Helpers shared by the data-plane tests: a bounded wait, and one echo through a dialer.

#![allow(dead_code)] // each test file uses part of these helpers

use std::time::Duration;

use mesh::connect::Dialer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Waits (bounded, a guard against hanging) until `f` holds.
pub(crate) async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 60 s: {what}");
}

/// One echo through a new connection of `dialer`: `true` when the bytes come back.
pub(crate) async fn echo(dialer: &Dialer) -> bool {
    let Ok(mut tls) = dialer.dial().await else {
        return false;
    };
    if tls.write_all(b"ping").await.is_err() || tls.flush().await.is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"ping"
    )
}
