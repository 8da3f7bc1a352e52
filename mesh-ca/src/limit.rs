//! Leaf-signing limits (rule 6 of docs/consul-compatibility.md, 'Leaf signing rules'): a token
//! bucket with burst 1, or a semaphore, each waited on for at most [`CSR_LIMIT_WAIT`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::CaConfig;

/// The longest a signing request waits for a slot (Consul's `csrLimitWait`).
pub const CSR_LIMIT_WAIT: Duration = Duration::from_millis(500);

/// A granted slot; a semaphore slot is released when it drops.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
}

/// No slot within [`CSR_LIMIT_WAIT`].
#[derive(Debug)]
pub(crate) struct Exhausted;

#[derive(Debug)]
pub(crate) enum Limiter {
    Unlimited,
    /// Token bucket, burst 1, kept as the time the next token is due (GCRA).
    Bucket {
        interval: Duration,
        next: Mutex<Option<Instant>>,
    },
    Concurrency(Arc<Semaphore>),
}

impl Limiter {
    pub(crate) fn from_config(c: &CaConfig) -> Self {
        if c.csr_max_per_second > 0.0 {
            Self::Bucket {
                interval: Duration::from_secs_f64(1.0 / c.csr_max_per_second),
                next: Mutex::new(None),
            }
        } else if c.csr_max_concurrent > 0 {
            Self::Concurrency(Arc::new(Semaphore::new(c.csr_max_concurrent as usize)))
        } else {
            Self::Unlimited
        }
    }

    pub(crate) async fn acquire(&self) -> Result<Slot, Exhausted> {
        match self {
            Self::Unlimited => Ok(Slot { _permit: None }),
            Self::Bucket { interval, next } => {
                let now = Instant::now();
                let slot = {
                    let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
                    let slot = next.map_or(now, |n| n.max(now));
                    if slot.saturating_duration_since(now) > CSR_LIMIT_WAIT {
                        return Err(Exhausted);
                    }
                    *next = Some(slot + *interval);
                    slot
                };
                if slot > now {
                    tokio::time::sleep_until(slot).await;
                }
                Ok(Slot { _permit: None })
            }
            Self::Concurrency(sem) => {
                match tokio::time::timeout(CSR_LIMIT_WAIT, sem.clone().acquire_owned()).await {
                    Ok(Ok(p)) => Ok(Slot { _permit: Some(p) }),
                    _ => Err(Exhausted),
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    fn cfg(rate: f64, conc: u32) -> CaConfig {
        CaConfig {
            csr_max_per_second: rate,
            csr_max_concurrent: conc,
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_burst_one_and_wait() {
        let l = Limiter::from_config(&cfg(1.0, 0));
        assert!(l.acquire().await.is_ok());
        // next token is 1 s away: more than the 500 ms wait.
        assert!(l.acquire().await.is_err());
        tokio::time::advance(Duration::from_millis(600)).await;
        // now 400 ms away: waits, then succeeds.
        let t = Instant::now();
        assert!(l.acquire().await.is_ok());
        assert_eq!(Instant::now() - t, Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_fast_rate_queues() {
        let l = Limiter::from_config(&cfg(4.0, 0));
        for _ in 0..3 {
            assert!(l.acquire().await.is_ok());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn semaphore() {
        let l = Limiter::from_config(&cfg(0.0, 1));
        let held = l.acquire().await.unwrap();
        assert!(l.acquire().await.is_err());
        drop(held);
        assert!(l.acquire().await.is_ok());
        assert!(matches!(
            Limiter::from_config(&cfg(0.0, 0)),
            Limiter::Unlimited
        ));
    }
}
