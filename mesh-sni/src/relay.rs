//! The two-way byte relay every proxy of the mesh uses (the gateway between client and
//! backend, the sidecar between an application and its mTLS peer): one task polls both
//! directions, so any stream works (a TLS stream cannot be split without a lock), buffers
//! start small and grow only while reads fill them, half-close is passed on, and a connection
//! on which no byte moves for the idle time-out is cut.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The size a relay buffer starts at, per direction.
pub const RELAY_START_BUFFER: usize = 4 * 1024;

/// How a [`relay`] runs.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RelayLimits {
    /// The largest a direction's buffer grows to (it starts at [`RELAY_START_BUFFER`], or at
    /// this when smaller, and doubles each time a read fills it). At least 1.
    pub max_buffer: usize,
    /// The relay ends with [`io::ErrorKind::TimedOut`] once no byte has been read either way for
    /// this long.
    pub idle_timeout: Duration,
}

impl RelayLimits {
    /// Buffers of at most `max_buffer` bytes per direction; cut after `idle_timeout` idle.
    pub fn new(max_buffer: usize, idle_timeout: Duration) -> Self {
        Self {
            max_buffer: max_buffer.max(1),
            idle_timeout,
        }
    }
}

/// Where a relay adds the bytes it moves, as it moves them (for counters read while the
/// connection lives).
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayCounters<'a> {
    /// Bytes written to `b`.
    pub a_to_b: Option<&'a AtomicU64>,
    /// Bytes written to `a`.
    pub b_to_a: Option<&'a AtomicU64>,
}

/// The bytes a finished relay moved each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayTotals {
    /// Bytes written to `b`.
    pub a_to_b: u64,
    /// Bytes written to `a`.
    pub b_to_a: u64,
}

/// Copies `a` to `b` and `b` to `a` until both directions have reached end of stream (each
/// end is passed on as a write shutdown of the other side, so half-closed connections work),
/// an I/O error occurs, or nothing has been read for `limits.idle_timeout`.
///
/// Memory: each direction holds one buffer, [`RELAY_START_BUFFER`] bytes to start with (or
/// `max_buffer` when smaller), doubling while reads fill it, up to `limits.max_buffer`; both are
/// freed when the relay returns. No allocation and no lock per read.
pub async fn relay<A, B>(
    a: &mut A,
    b: &mut B,
    limits: RelayLimits,
    counters: RelayCounters<'_>,
) -> io::Result<RelayTotals>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    Relay {
        a,
        b,
        a_to_b: Pump::new(limits.max_buffer),
        b_to_a: Pump::new(limits.max_buffer),
        counters,
        idle: limits.idle_timeout,
        last_read: Instant::now(),
        timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
    }
    .await
}

/// One direction: a buffer, the part of it still to write, and whether the source ended.
struct Pump {
    buf: Vec<u8>,
    /// How much of `buf` a read may fill.
    cap: usize,
    max: usize,
    /// `buf[pos..filled]` is read and not yet written.
    pos: usize,
    filled: usize,
    read_done: bool,
    need_flush: bool,
    done: bool,
    moved: u64,
}

impl Pump {
    fn new(max: usize) -> Self {
        let cap = max.clamp(1, RELAY_START_BUFFER);
        Self {
            buf: vec![0; cap],
            cap,
            max: max.max(1),
            pos: 0,
            filled: 0,
            read_done: false,
            need_flush: false,
            done: false,
            moved: 0,
        }
    }

    /// Moves bytes from `r` to `w` until it would block or `r` ended and `w` was shut down.
    /// Sets `*read_any` when a read returned bytes.
    fn poll_move<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
        counter: Option<&AtomicU64>,
        read_any: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if self.pos < self.filled {
                let n = ready!(w.as_mut().poll_write(cx, &self.buf[self.pos..self.filled]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.moved += n as u64;
                self.need_flush = true;
                if let Some(c) = counter {
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
                continue;
            }
            if self.read_done {
                // The source ended: pass the end of stream on. The peer may already be gone,
                // which is no error of this direction.
                if let Err(e) = ready!(w.as_mut().poll_shutdown(cx)) {
                    tracing::trace!(error = %e, "relay: shutdown after end of stream failed");
                }
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut self.buf[..self.cap]);
            match r.as_mut().poll_read(cx, &mut rb) {
                Poll::Pending => {
                    // Nothing to read for now: push out what was written (TLS buffers it).
                    if self.need_flush {
                        ready!(w.as_mut().poll_flush(cx))?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        self.read_done = true;
                        continue;
                    }
                    *read_any = true;
                    self.pos = 0;
                    self.filled = n;
                    if n == self.cap && self.cap < self.max {
                        self.cap = self.cap.saturating_mul(2).min(self.max);
                        self.buf.resize(self.cap, 0);
                    }
                }
            }
        }
    }
}

struct Relay<'a, 'c, A: ?Sized, B: ?Sized> {
    a: &'a mut A,
    b: &'a mut B,
    a_to_b: Pump,
    b_to_a: Pump,
    counters: RelayCounters<'c>,
    idle: Duration,
    last_read: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<A, B> Future for Relay<'_, '_, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    type Output = io::Result<RelayTotals>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut read_any = false;
        let ab = this.a_to_b.poll_move(
            cx,
            Pin::new(&mut *this.a),
            Pin::new(&mut *this.b),
            this.counters.a_to_b,
            &mut read_any,
        )?;
        let ba = this.b_to_a.poll_move(
            cx,
            Pin::new(&mut *this.b),
            Pin::new(&mut *this.a),
            this.counters.b_to_a,
            &mut read_any,
        )?;
        if ab.is_ready() && ba.is_ready() {
            return Poll::Ready(Ok(RelayTotals {
                a_to_b: this.a_to_b.moved,
                b_to_a: this.b_to_a.moved,
            }));
        }
        if read_any {
            // Re-armed lazily: the timer is moved only when it fires.
            this.last_read = Instant::now();
        }
        while this.timer.as_mut().poll(cx).is_ready() {
            let deadline = this.last_read + this.idle;
            if Instant::now() >= deadline {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no byte moved either way within the idle time-out",
                )));
            }
            this.timer.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    fn limits() -> RelayLimits {
        RelayLimits::new(64 * 1024, Duration::from_secs(3600))
    }

    #[tokio::test]
    async fn both_ways_with_half_close_and_totals() {
        // app <-> (a) relay (b) <-> peer
        let (mut app, mut a) = duplex(1024);
        let (mut b, mut peer) = duplex(1024);
        let counted = AtomicU64::new(0);
        let relay_task = async {
            let counters = RelayCounters {
                a_to_b: Some(&counted),
                b_to_a: None,
            };
            relay(&mut a, &mut b, limits(), counters).await
        };
        let ends = async {
            let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let write = async {
                app.write_all(&big).await.unwrap();
                app.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let read = peer.read_to_end(&mut got);
            let ((), read) = tokio::join!(write, read);
            read.unwrap();
            assert_eq!(got, big, "every byte, in order, then the end of stream");
            // The other direction still works after the first one ended.
            peer.write_all(b"reply").await.unwrap();
            peer.shutdown().await.unwrap();
            let mut back = Vec::new();
            app.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, b"reply");
        };
        let (totals, ()) = tokio::join!(relay_task, ends);
        let totals = totals.unwrap();
        assert_eq!(
            totals,
            RelayTotals {
                a_to_b: 200_000,
                b_to_a: 5
            }
        );
        assert_eq!(counted.load(Ordering::Relaxed), 200_000);
    }

    #[tokio::test]
    async fn buffers_grow_only_while_reads_fill_them() {
        let mut p = Pump::new(64 * 1024);
        assert_eq!(p.buf.len(), RELAY_START_BUFFER);
        let (mut w, mut r) = duplex(256 * 1024);
        let (mut sink, mut drain) = duplex(256 * 1024);
        w.write_all(&[7u8; 100_000]).await.unwrap();
        let mut read_any = false;
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let _ = p.poll_move(
            &mut cx,
            Pin::new(&mut r),
            Pin::new(&mut sink),
            None,
            &mut read_any,
        );
        assert!(read_any);
        assert_eq!(p.cap, 64 * 1024, "a bulk stream reaches the full size");
        let mut got = vec![0u8; 100_000];
        drain.read_exact(&mut got).await.unwrap();
        // A quiet connection keeps the small buffer.
        let q = Pump::new(64 * 1024);
        assert_eq!(q.cap, RELAY_START_BUFFER);
        // A limit below the start size is the size.
        assert_eq!(Pump::new(1000).cap, 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_cut_after_the_time_out() {
        let (_app, mut a) = duplex(64);
        let (mut b, _peer) = duplex(64);
        let started = Instant::now();
        let err = relay(
            &mut a,
            &mut b,
            RelayLimits::new(1024, Duration::from_secs(30)),
            RelayCounters::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_a_connection_alive() {
        let (mut app, mut a) = duplex(64);
        let (mut b, mut peer) = duplex(64);
        let relay_task = relay(
            &mut a,
            &mut b,
            RelayLimits::new(1024, Duration::from_secs(30)),
            RelayCounters::default(),
        );
        let talk = async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                app.write_all(b"x").await.unwrap();
                let mut one = [0u8; 1];
                peer.read_exact(&mut one).await.unwrap();
            }
            app.shutdown().await.unwrap();
            peer.shutdown().await.unwrap();
        };
        let (r, ()) = tokio::join!(relay_task, talk);
        assert_eq!(
            r.unwrap().a_to_b,
            5,
            "100 s of traffic every 20 s is not idle"
        );
    }
}
