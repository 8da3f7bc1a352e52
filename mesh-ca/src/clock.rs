//! Where the CA and the leaf manager read the time from.

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

/// A source of wall-clock time.
///
/// Certificates carry wall-clock validity, while renewals sleep on tokio's clock. The CA and the
/// leaf manager read "now" through a `Clock` so both can be driven by tokio's paused time in
/// tests ([`Clock::tokio`]) or by a fixed instant ([`Clock::from_fn`]).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> OffsetDateTime + Send + Sync>);

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self(Arc::new(OffsetDateTime::now_utc))
    }

    /// Wall-clock time anchored now and advanced by tokio's clock from then on.
    ///
    /// Under `tokio::time::pause` this clock jumps forward with the runtime's virtual time, so
    /// certificate lifetimes and renewal sleeps stay consistent. Must be called inside a tokio
    /// runtime.
    pub fn tokio() -> Self {
        let base_wall = OffsetDateTime::now_utc();
        let base = tokio::time::Instant::now();
        Self(Arc::new(move || {
            let elapsed = tokio::time::Instant::now().saturating_duration_since(base);
            base_wall + elapsed
        }))
    }

    /// A clock backed by any function (a fixed or manually advanced time in tests).
    pub fn from_fn(f: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// The current time, in UTC.
    pub fn now(&self) -> OffsetDateTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected errors
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = Clock::tokio();
        let a = c.now();
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        let b = c.now();
        assert_eq!((b - a).whole_seconds(), 3600);
    }

    #[test]
    fn fixed_clock() {
        let t = OffsetDateTime::UNIX_EPOCH;
        let c = Clock::from_fn(move || t);
        assert_eq!(c.now(), t);
        assert!(format!("{c:?}").starts_with("Clock("));
    }
}
