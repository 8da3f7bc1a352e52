//! Attacks on the replication listener before any token is checked: a frame announced but never
//! sent, a client dribbling a frame, more connections than the listener serves, and a frame
//! announced over the limit. Over real loopback sockets where a listener is involved; with
//! paused time where no real socket is.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use mesh_replication::FramedConfig;
use mesh_replication::frame::{self, FrameError, FrameTimeouts, Request, Response};
use mesh_replication::{
    FramedTransport, Index, ListRequest, MemoryStore, ReplicationServer, ServeConfig, ServerHandle,
    TcpConnector, Transport, TransportError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// How long any single step of these tests may take before the test fails: only a bound on a
/// hang, never an assertion on speed.
const HANG: Duration = Duration::from_secs(60);
/// A time-out that never fires during a test.
const NEVER: Duration = Duration::from_secs(3600);

fn server() -> Arc<ReplicationServer> {
    Arc::new(ReplicationServer::new(
        registry(),
        Arc::new(MemoryStore::new()),
        TestAcl::new(),
    ))
}

/// A listener on 127.0.0.1 with `cfg`.
async fn listen(cfg: ServeConfig) -> Result<ServerHandle, Box<dyn std::error::Error>> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    Ok(server().spawn_tcp(l, None, cfg)?)
}

/// A config whose time-outs never fire unless a test sets them.
fn patient() -> ServeConfig {
    let mut cfg = ServeConfig::default();
    cfg.idle_timeout = NEVER;
    cfg.frame_timeout = NEVER;
    cfg.write_timeout = NEVER;
    cfg
}

type Served = tokio::task::JoinHandle<Result<(), FrameError>>;

/// One accepted loopback connection served by `serve_stream` (for its typed result), and the
/// client end.
async fn served_pair(cfg: ServeConfig) -> Result<(TcpStream, Served), Box<dyn std::error::Error>> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let client = TcpStream::connect(l.local_addr()?).await?;
    let (conn, _) = l.accept().await?;
    let server = server();
    let task = tokio::spawn(async move { server.serve_stream(conn, &cfg).await });
    Ok((client, task))
}

fn header(len: usize) -> [u8; frame::HEADER_LEN] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// Waits until the peer closes `s` (EOF or reset); whatever it sends before is discarded.
async fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut sink = [0u8; 256];
    let wait = async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(HANG, wait).await.is_ok()
}

/// Whether the peer has closed `s`, without waiting.
fn closed_now(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.try_read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

fn list_req() -> ListRequest {
    ListRequest {
        token: replication_token(),
        table: t(POLICIES),
        min_index: Index::ZERO,
        wait: Duration::ZERO,
    }
}

/// Sends a list query on a raw connection and reads the answer.
async fn raw_list(s: &mut TcpStream) -> Result<Response, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    frame::write_frame(&mut out, frame::DEFAULT_MAX_FRAME, |o| {
        Request::List(list_req()).encode(o);
    })?;
    s.write_all(&out).await?;
    let mut buf = Vec::new();
    frame::read_frame(s, &mut buf, frame::DEFAULT_MAX_FRAME, HANG).await?;
    Ok(Response::decode(&buf)?)
}

fn framed(addr: SocketAddr) -> FramedTransport<TcpConnector> {
    FramedTransport::with_config(
        TcpConnector::new(addr).with_timeout(HANG),
        FramedConfig {
            request_timeout: HANG,
            max_idle: 0,
            ..FramedConfig::default()
        },
    )
}

/// Yields its pieces one read at a time, then stays pending for ever; records the largest read
/// buffer it was offered.
struct Stalling {
    pieces: VecDeque<Vec<u8>>,
    largest_offer: usize,
}

impl Stalling {
    fn new(pieces: impl IntoIterator<Item = Vec<u8>>) -> Self {
        Self {
            pieces: pieces.into_iter().collect(),
            largest_offer: 0,
        }
    }
}

impl AsyncRead for Stalling {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.largest_offer = self.largest_offer.max(out.remaining());
        let Some(mut piece) = self.pieces.pop_front() else {
            return Poll::Pending;
        };
        let n = piece.len().min(out.remaining());
        out.put_slice(&piece[..n]);
        if n < piece.len() {
            self.pieces.push_front(piece.split_off(n));
        }
        Poll::Ready(Ok(()))
    }
}

// (a) A 16 MiB frame announced, its body never sent.

#[tokio::test(start_paused = true)]
async fn announced_frame_without_body_holds_no_more_than_a_chunk() {
    let t = FrameTimeouts {
        idle: Duration::from_secs(600),
        frame: Duration::from_secs(10),
    };
    let max = frame::DEFAULT_MAX_FRAME;
    // The header alone.
    let mut r = Stalling::new([header(max).to_vec()]);
    let mut buf = Vec::new();
    let res = frame::read_frame_timed(&mut r, &mut buf, max, t).await;
    assert!(
        matches!(res, Err(FrameError::TooSlow(d)) if d == t.frame),
        "{res:?}"
    );
    assert!(buf.capacity() <= frame::READ_CHUNK, "{}", buf.capacity());
    assert!(r.largest_offer <= frame::READ_CHUNK);

    // The header and 40 KiB: the buffer holds what came and at most a chunk more.
    let sent = 40 << 10;
    let mut r = Stalling::new([header(max).to_vec(), vec![1; sent]]);
    let mut buf = Vec::new();
    let res = frame::read_frame_timed(&mut r, &mut buf, max, t).await;
    assert!(matches!(res, Err(FrameError::TooSlow(_))), "{res:?}");
    assert!(
        buf.capacity() <= sent + frame::READ_CHUNK,
        "{}",
        buf.capacity()
    );
    assert!(r.largest_offer <= frame::READ_CHUNK);

    // A buffer left large by an earlier frame is not kept while the next one stalls.
    let mut buf = Vec::with_capacity(max);
    let mut r = Stalling::new([header(max).to_vec()]);
    let res = frame::read_frame(&mut r, &mut buf, max, Duration::from_secs(10)).await;
    assert!(matches!(res, Err(FrameError::TimedOut(_))), "{res:?}");
    assert!(buf.capacity() <= frame::READ_CHUNK, "{}", buf.capacity());
}

#[tokio::test]
async fn announced_frame_without_body_is_cut_by_the_listener() -> R {
    let mut cfg = patient();
    cfg.frame_timeout = Duration::from_millis(300);
    let h = listen(cfg.clone()).await?;
    let mut c = TcpStream::connect(h.local_addr()).await?;
    c.write_all(&header(frame::DEFAULT_MAX_FRAME)).await?;
    assert!(
        closed_by_peer(&mut c).await,
        "the stalled frame was not cut"
    );

    // The same attack on `serve_stream` directly ends with the typed error.
    let (mut c, served) = served_pair(cfg.clone()).await?;
    c.write_all(&header(frame::DEFAULT_MAX_FRAME)).await?;
    let res = tokio::time::timeout(HANG, served).await??;
    assert!(
        matches!(res, Err(FrameError::TooSlow(d)) if d == cfg.frame_timeout),
        "{res:?}"
    );
    h.shutdown().await;
    Ok(())
}

// A new connection that never sends its first request holds its slot for the frame deadline,
// not for the idle time-out a pooled connection gets between requests.
#[tokio::test]
async fn a_silent_new_connection_is_closed_at_the_frame_deadline() -> R {
    let mut cfg = patient();
    cfg.frame_timeout = Duration::from_millis(300);
    let (mut c, served) = served_pair(cfg.clone()).await?;
    let res = tokio::time::timeout(HANG, served).await??;
    assert!(
        matches!(res, Err(FrameError::TimedOut(d)) if d == cfg.frame_timeout),
        "{res:?}"
    );
    assert!(closed_by_peer(&mut c).await);

    // After a first request, the idle time-out applies between requests.
    let (mut c, served) = served_pair(cfg.clone()).await?;
    let answer = raw_list(&mut c).await?;
    assert!(!matches!(answer, Response::Error(_)), "{answer:?}");
    tokio::time::sleep(cfg.frame_timeout * 3).await;
    assert!(
        !served.is_finished(),
        "a pooled connection between requests stays open"
    );
    assert!(!matches!(raw_list(&mut c).await?, Response::Error(_)));
    served.abort();
    Ok(())
}

// (b) Three times as many silent connections as the listener serves.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_unread() -> R {
    const CAP: usize = 4;
    let mut cfg = patient();
    cfg.max_connections = CAP;
    let h = listen(cfg).await?;
    let addr = h.local_addr();
    let mut conns = Vec::new();
    for _ in 0..3 * CAP {
        conns.push(TcpStream::connect(addr).await?);
    }
    // The extra connections are closed by the listener; the first ones are held. (The short
    // wait between checks only paces the loop; a hang fails on HANG.)
    let all_refused = async {
        loop {
            if conns.iter().filter(|c| closed_now(c)).count() >= 2 * CAP {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(HANG, all_refused).await?;
    let (closed, mut held): (Vec<TcpStream>, Vec<TcpStream>) =
        conns.into_iter().partition(closed_now);
    assert_eq!(closed.len(), 2 * CAP);
    assert_eq!(held.len(), CAP);

    // The listener is full: a real client is refused too...
    let refused = framed(addr).list(list_req()).await;
    assert!(
        matches!(refused, Err(TransportError::Disconnected(_))),
        "{refused:?}"
    );
    // ...while the held connections are served.
    for c in &mut held {
        let answer = raw_list(c).await?;
        assert!(
            matches!(answer, Response::Chunk { last: true, .. }),
            "{answer:?}"
        );
    }

    // Once they are gone, a real client is served (their slots free as the server sees them
    // close, so retry until then).
    drop(held);
    let transport = framed(addr);
    let served = async {
        loop {
            match transport.list(list_req()).await {
                Ok(listing) => return listing,
                Err(TransportError::Disconnected(_)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }
    };
    let listing = tokio::time::timeout(HANG, served).await?;
    assert!(listing.records.is_empty());
    drop(closed);
    h.shutdown().await;
    Ok(())
}

// (c) A client dribbling its frame, each byte well within the idle time-out.

#[tokio::test]
async fn a_dribbling_client_is_cut_by_the_frame_deadline() -> R {
    const LEN: usize = 1000;
    const EVERY: Duration = Duration::from_millis(50);
    let mut cfg = patient();
    cfg.idle_timeout = Duration::from_secs(60);
    cfg.frame_timeout = Duration::from_millis(500);
    let h = listen(cfg.clone()).await?;

    // Sends the frame one byte every EVERY (it would take LEN * EVERY = 50 s); returns how many
    // payload bytes went out before the listener closed the connection.
    async fn dribble(c: &mut TcpStream) -> Option<usize> {
        if c.write_all(&header(LEN)).await.is_err() {
            return Some(0);
        }
        for sent in 0..LEN {
            tokio::time::sleep(EVERY).await;
            if closed_now(c) || c.write_all(b"x").await.is_err() {
                return Some(sent);
            }
        }
        None
    }

    let mut c = TcpStream::connect(h.local_addr()).await?;
    let cut = tokio::time::timeout(HANG, dribble(&mut c)).await?;
    assert!(cut.is_some(), "the whole dribbled frame was read");

    // On `serve_stream` directly: the per-frame deadline, not the idle one.
    let (mut c, served) = served_pair(cfg.clone()).await?;
    let (res, _) = tokio::join!(tokio::time::timeout(HANG, served), dribble(&mut c));
    let res = res??;
    assert!(
        matches!(res, Err(FrameError::TooSlow(d)) if d == cfg.frame_timeout),
        "{res:?}"
    );
    h.shutdown().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_dribbling_client_is_cut_in_virtual_time() -> R {
    let mut cfg = ServeConfig::default();
    cfg.idle_timeout = Duration::from_secs(600);
    cfg.frame_timeout = Duration::from_secs(10);
    let (mut client, conn) = tokio::io::duplex(64);
    let server = server();
    let served = tokio::spawn(async move { server.serve_stream(conn, &cfg).await });
    // A byte every 5 s: each one long before the idle time-out, and the whole frame (500 s)
    // too, but not within the 10 s a frame may take.
    const LEN: usize = 100;
    client.write_all(&header(LEN)).await?;
    let mut sent = 0;
    while sent < LEN {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if served.is_finished() || client.write_all(b"x").await.is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent < LEN, "the whole dribbled frame was read");
    let res = served.await?;
    assert!(
        matches!(res, Err(FrameError::TooSlow(d)) if d == Duration::from_secs(10)),
        "{res:?}"
    );
    Ok(())
}

// (d) A frame announced over the limit.

#[tokio::test]
async fn an_oversized_frame_is_refused_on_its_header() -> R {
    let mut cfg = patient();
    cfg.max_frame = 1024;
    let h = listen(cfg.clone()).await?;
    // Only the header: with time-outs that never fire, the connection closes only because the
    // header is refused, without waiting for the body.
    let mut c = TcpStream::connect(h.local_addr()).await?;
    c.write_all(&header(1 << 20)).await?;
    assert!(
        closed_by_peer(&mut c).await,
        "the oversized frame was not refused"
    );

    let (mut c, served) = served_pair(cfg).await?;
    c.write_all(&header(1 << 20)).await?;
    let res = tokio::time::timeout(HANG, served).await??;
    assert!(
        matches!(res, Err(FrameError::TooLarge { len, max: 1024 }) if len == 1 << 20),
        "{res:?}"
    );
    h.shutdown().await;
    Ok(())
}

// The client side reads answers the same way.

#[tokio::test]
async fn a_primary_announcing_a_huge_answer_and_stalling_times_out() -> R {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let mut buf = Vec::new();
        if frame::read_frame(&mut s, &mut buf, 1 << 20, HANG)
            .await
            .is_ok()
        {
            let _ = s.write_all(&header(frame::DEFAULT_MAX_FRAME)).await;
            let _ = s.write_all(&[0x81; 100]).await;
            // Then nothing, connection open.
            let _ = s.read(&mut [0u8; 1]).await;
        }
    });
    let transport = FramedTransport::with_config(
        TcpConnector::new(addr),
        FramedConfig {
            request_timeout: Duration::from_millis(300),
            ..FramedConfig::default()
        },
    );
    let res = transport.list(list_req()).await;
    assert!(matches!(res, Err(TransportError::TimedOut(_))), "{res:?}");
    Ok(())
}
