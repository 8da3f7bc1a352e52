//! Endpoint pools: a fixed list of socket addresses picked round-robin, skipping the ones that
//! are marked down.
//!
//! A pool is shared (`Arc<Pool>`) between the route table that names it and every connection
//! that is being routed to it. Picking is lock-free: one atomic counter for the round-robin
//! position and one atomic word of state per endpoint. An endpoint is down when an operator said
//! so ([`Pool::mark_down`]) or while a hold-off set after a failed connect
//! ([`Pool::hold_off`]) has not yet run out; [`Pool::mark_up`] clears both.
//!
//! The state lives in the pool, so a route table rebuilt with the same `Arc<Pool>` keeps both
//! the round-robin position and the down marks; a table built with a fresh pool starts clean.

use std::fmt;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A list of endpoints for one route target, picked round-robin.
pub struct Pool {
    endpoints: Box<[Endpoint]>,
    next: AtomicUsize,
}

struct Endpoint {
    addr: SocketAddr,
    /// Set by [`Pool::mark_down`], cleared by [`Pool::mark_up`].
    manual_down: AtomicBool,
    /// Milliseconds since [`epoch`] until which the endpoint is held off; 0 when it is not.
    held_until_ms: AtomicU64,
}

/// The state of one endpoint, as [`Pool::endpoints`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointState {
    /// Its address.
    pub addr: SocketAddr,
    /// Marked down by [`Pool::mark_down`].
    pub marked_down: bool,
    /// Held off after a failed connect, for this much longer.
    pub held_off_for: Option<Duration>,
}

impl EndpointState {
    /// Whether the endpoint may be picked now.
    pub fn is_up(&self) -> bool {
        !self.marked_down && self.held_off_for.is_none()
    }
}

impl Pool {
    /// A pool over `addrs`, in that order. Duplicates are kept (an address listed twice gets
    /// twice the share). An empty pool is allowed: routing to it refuses every connection as
    /// "all endpoints down".
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            endpoints: addrs
                .into_iter()
                .map(|addr| Endpoint {
                    addr,
                    manual_down: AtomicBool::new(false),
                    held_until_ms: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// How many endpoints the pool holds, up or down.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether the pool holds no endpoint at all.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The endpoints held off after a failure and not marked down by an operator, in pool
    /// order: what to try anyway when no endpoint is up (panic mode).
    pub fn held_off(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let now = now_ms();
        self.endpoints
            .iter()
            .filter(move |e| !e.manual_down.load(Ordering::Relaxed) && e.held_for(now).is_some())
            .map(|e| e.addr)
    }

    /// The addresses, in pool order.
    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.endpoints.iter().map(|e| e.addr)
    }

    /// The state of every endpoint, in pool order.
    pub fn endpoints(&self) -> Vec<EndpointState> {
        let now = now_ms();
        self.endpoints
            .iter()
            .map(|e| EndpointState {
                addr: e.addr,
                marked_down: e.manual_down.load(Ordering::Relaxed),
                held_off_for: e.held_for(now),
            })
            .collect()
    }

    /// Marks every endpoint with address `addr` down until [`Pool::mark_up`]. Returns whether
    /// the pool holds that address.
    pub fn mark_down(&self, addr: SocketAddr) -> bool {
        self.each(addr, |e| e.manual_down.store(true, Ordering::Relaxed))
    }

    /// Marks every endpoint with address `addr` up again, clearing a manual mark and any
    /// hold-off. Returns whether the pool holds that address.
    pub fn mark_up(&self, addr: SocketAddr) -> bool {
        self.each(addr, |e| {
            e.manual_down.store(false, Ordering::Relaxed);
            e.held_until_ms.store(0, Ordering::Relaxed);
        })
    }

    /// Holds every endpoint with address `addr` off for `period` (the gateway does this after a
    /// failed connect). Returns whether the pool holds that address.
    pub fn hold_off(&self, addr: SocketAddr, period: Duration) -> bool {
        let until = if period.is_zero() {
            0
        } else {
            now_ms()
                .saturating_add(u64::try_from(period.as_millis()).unwrap_or(u64::MAX))
                .max(1)
        };
        self.each(addr, |e| e.held_until_ms.store(until, Ordering::Relaxed))
    }

    /// Whether `addr` may be picked now; `None` if the pool does not hold it.
    pub fn is_up(&self, addr: SocketAddr) -> Option<bool> {
        let now = now_ms();
        self.endpoints
            .iter()
            .find(|e| e.addr == addr)
            .map(|e| e.is_up(now))
    }

    /// The next endpoint that is up, round-robin; `None` when all are down (or the pool is
    /// empty).
    pub fn pick(&self) -> Option<SocketAddr> {
        self.candidates().next()
    }

    /// Every endpoint that is up, each at most once, starting at the next round-robin position:
    /// the order in which a connect with failover tries them. Each call advances the
    /// round-robin position by one, whether or not the first endpoint is up. Whether an
    /// endpoint is up is checked when the iterator reaches it, so a hold-off set by an earlier
    /// failed attempt is seen by the later ones.
    pub fn candidates(&self) -> Candidates<'_> {
        let n = self.endpoints.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        Candidates {
            pool: self,
            start,
            step: 0,
        }
    }

    fn each(&self, addr: SocketAddr, f: impl Fn(&Endpoint)) -> bool {
        let mut found = false;
        for e in self.endpoints.iter().filter(|e| e.addr == addr) {
            f(e);
            found = true;
        }
        found
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.endpoints()).finish()
    }
}

impl Endpoint {
    fn held_for(&self, now: u64) -> Option<Duration> {
        let until = self.held_until_ms.load(Ordering::Relaxed);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    fn is_up(&self, now: u64) -> bool {
        !self.manual_down.load(Ordering::Relaxed) && self.held_for(now).is_none()
    }
}

/// The endpoints a connect tries in order; see [`Pool::candidates`].
#[derive(Debug)]
pub struct Candidates<'a> {
    pool: &'a Pool,
    start: usize,
    step: usize,
}

impl Iterator for Candidates<'_> {
    type Item = SocketAddr;

    fn next(&mut self) -> Option<SocketAddr> {
        let n = self.pool.endpoints.len();
        while self.step < n {
            let e = &self.pool.endpoints[(self.start + self.step) % n];
            self.step += 1;
            if e.is_up(now_ms()) {
                return Some(e.addr);
            }
        }
        None
    }
}

/// Whether a connect failed for want of a local resource (file descriptors, kernel buffers,
/// memory, ephemeral ports) rather than because of the endpoint: such a failure is
/// back-pressure on this process, and no endpoint should be held off for it.
pub fn local_exhaustion(e: &std::io::Error) -> bool {
    // Linux: ENFILE 23, EMFILE 24, ENOBUFS 105.
    matches!(
        e.kind(),
        std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::OutOfMemory
    ) || (cfg!(target_os = "linux") && matches!(e.raw_os_error(), Some(23 | 24 | 105)))
}

/// Milliseconds since the first call in this process (never 0 after a hold-off is stored,
/// see [`Pool::hold_off`]).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_exhaustion_is_told_from_an_endpoint_failure() {
        use std::io::{Error, ErrorKind};
        assert!(local_exhaustion(&Error::from_raw_os_error(24)));
        assert!(local_exhaustion(&Error::from_raw_os_error(23)));
        assert!(local_exhaustion(&Error::from_raw_os_error(105)));
        assert!(local_exhaustion(&Error::from(ErrorKind::AddrNotAvailable)));
        assert!(!local_exhaustion(&Error::from(
            ErrorKind::ConnectionRefused
        )));
        assert!(!local_exhaustion(&Error::from(ErrorKind::TimedOut)));
        assert!(!local_exhaustion(&Error::from_raw_os_error(111)));
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn round_robin_spreads_exactly() {
        let pool = Pool::new([addr(1), addr(2), addr(3)]);
        let mut counts = [0; 3];
        for _ in 0..300 {
            let a = pool.pick().expect("all up");
            counts[usize::from(a.port() - 1)] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn skips_marked_down_and_comes_back() {
        let pool = Pool::new([addr(1), addr(2), addr(3)]);
        assert!(pool.mark_down(addr(2)));
        assert!(!pool.mark_down(addr(9)), "unknown address");
        for _ in 0..30 {
            assert_ne!(pool.pick(), Some(addr(2)));
        }
        assert_eq!(pool.is_up(addr(2)), Some(false));
        assert_eq!(pool.is_up(addr(9)), None);
        assert!(pool.mark_up(addr(2)));
        let seen: Vec<_> = (0..3).filter_map(|_| pool.pick()).collect();
        assert!(seen.contains(&addr(2)));
    }

    #[test]
    fn hold_off_expires_and_mark_up_clears_it() {
        let pool = Pool::new([addr(1)]);
        assert!(pool.hold_off(addr(1), Duration::from_secs(3600)));
        assert_eq!(pool.pick(), None);
        let state = pool.endpoints()[0];
        assert!(!state.marked_down && !state.is_up());
        assert!(state.held_off_for.is_some());
        pool.mark_up(addr(1));
        assert_eq!(pool.pick(), Some(addr(1)));
        // A zero hold-off is over at once.
        pool.hold_off(addr(1), Duration::ZERO);
        assert_eq!(pool.pick(), Some(addr(1)));
    }

    #[test]
    fn candidates_visit_each_up_endpoint_once() {
        let pool = Pool::new([addr(1), addr(2), addr(3), addr(4)]);
        pool.mark_down(addr(3));
        let all: Vec<_> = pool.candidates().collect();
        assert_eq!(all, vec![addr(1), addr(2), addr(4)]);
        let next: Vec<_> = pool.candidates().collect();
        assert_eq!(next, vec![addr(2), addr(4), addr(1)]);
    }

    #[test]
    fn empty_pool_has_no_candidate() {
        let pool = Pool::new([]);
        assert!(pool.is_empty());
        assert_eq!(pool.pick(), None);
        assert_eq!(pool.candidates().count(), 0);
    }
}
