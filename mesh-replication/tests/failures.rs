//! Failure modes: a local record is deleted only because of a complete listing; errors back off
//! with jitter; rounds are rate-limited.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use mesh_replication::frame::{self, Request, Response};
use mesh_replication::{
    ApplyRequest, CompleteListing, FramedTransport, Index, ListRequest, MemoryStore, Record,
    ReplicatorConfig, Store, TcpConnector, Transport, TransportError, Value,
};
use mesh_replication::{Backoff, RateLimit};
use mesh_replication::{Fault, FramedConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

fn rec(id: &str, v: Value, modify: u64) -> Record {
    Record {
        id: id.into(),
        hash: v.content_hash(),
        value: v,
        create_index: Index(1),
        modify_index: Index(modify),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_faults_never_delete() -> R {
    for fault in [
        Fault::Unreachable,
        Fault::Disconnect,
        Fault::TimeOut,
        Fault::Partial,
    ] {
        let primary = Primary::start(Arc::new(MemoryStore::new()), Net::InProcess).await?;
        let link = primary.in_process.clone().ok_or("in-process")?;
        let secondary: Arc<dyn Store> = Arc::new(MemoryStore::new());
        primary.store.txn(upserts(POLICIES, 0..20, 1)).await?;
        let h = mesh_replication::spawn_replicator(
            t(POLICIES),
            secondary.clone(),
            primary.transport(),
            config(replication_token()),
        );
        caught_up(&h, &*primary.store).await?;
        // The primary drops everything but one record; the answers are lost on the way.
        link.link().set_fault(Some(fault));
        primary.store.txn(deletes(POLICIES, 0..19)).await?;
        let st = status_until(&h, |s| s.consecutive_failures >= 3).await?;
        assert_eq!(
            secondary.list(&t(POLICIES)).await?.records.len(),
            20,
            "{fault:?} deleted records"
        );
        assert_eq!(st.deletes_applied, 0);
        link.link().restore();
        caught_up(&h, &*primary.store).await?;
        assert_converged(&*primary.store, &*secondary, POLICIES).await?;
        assert_eq!(h.status().deletes_applied, 19);
        h.stop().await;
    }
    Ok(())
}

/// A fake primary over TCP that answers every request with `answer`.
async fn fake_primary(
    answer: impl Fn(Vec<u8>) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> Result<std::net::SocketAddr, Box<dyn std::error::Error>> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let read =
                    frame::read_frame(&mut s, &mut buf, 1 << 20, Duration::from_secs(30)).await;
                if read.is_err() {
                    return;
                }
                match answer(buf) {
                    Some(bytes) => {
                        let _ = s.write_all(&bytes).await;
                        let _ = s.shutdown().await;
                    }
                    // Say nothing, keep the connection open.
                    None => {
                        let mut sink = [0u8; 64];
                        while let Ok(n) = s.read(&mut sink).await {
                            if n == 0 {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn chunk(index: u64, last: bool, records: Vec<Record>) -> Vec<u8> {
    let mut out = Vec::new();
    let r = Response::Chunk {
        index: Index(index),
        last,
        records,
    };
    frame::write_frame(&mut out, 1 << 20, |o| r.encode(o)).unwrap_or_default();
    out
}

fn framed(addr: std::net::SocketAddr) -> Arc<dyn Transport> {
    Arc::new(FramedTransport::with_config(
        TcpConnector::new(addr),
        FramedConfig {
            request_timeout: Duration::from_millis(300),
            ..FramedConfig::default()
        },
    ))
}

fn list_req() -> ListRequest {
    ListRequest {
        token: replication_token(),
        table: t(POLICIES),
        min_index: Index::ZERO,
        wait: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_failure_modes_are_typed() -> R {
    // Part of a listing, then the connection closes.
    let partial =
        fake_primary(|_| Some(chunk(9, false, vec![rec("a", Value::bytes(&b"x"[..]), 3)]))).await?;
    let err = framed(partial).list(list_req()).await;
    assert!(
        matches!(err, Err(TransportError::Incomplete { received: 1 })),
        "{err:?}"
    );

    // Accepted, then silence.
    let silent = fake_primary(|_| None).await?;
    let err = framed(silent).list(list_req()).await;
    assert!(matches!(err, Err(TransportError::TimedOut(_))), "{err:?}");

    // Closed without an answer.
    let closing = fake_primary(|_| Some(Vec::new())).await?;
    let err = framed(closing).list(list_req()).await;
    assert!(
        matches!(err, Err(TransportError::Disconnected(_))),
        "{err:?}"
    );

    // Garbage and an oversized frame.
    let garbage = fake_primary(|_| Some(vec![0, 0, 0, 2, 0x55, 0x55])).await?;
    let err = framed(garbage).list(list_req()).await;
    assert!(matches!(err, Err(TransportError::Malformed(_))), "{err:?}");
    let huge = fake_primary(|_| Some(vec![0x40, 0, 0, 0])).await?;
    let err = framed(huge).list(list_req()).await;
    assert!(
        matches!(
            err,
            Err(TransportError::Malformed(
                frame::FrameError::TooLarge { .. }
            ))
        ),
        "{err:?}"
    );

    // Nobody listening.
    let gone = {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        l.local_addr()?
    };
    let err = framed(gone).list(list_req()).await;
    assert!(
        matches!(err, Err(TransportError::Unreachable(_))),
        "{err:?}"
    );

    // A complete answer in two chunks is accepted.
    let two = fake_primary(|req| {
        assert!(matches!(Request::decode(&req), Ok(Request::List(_))));
        let mut b = chunk(4, false, vec![rec("a", Value::bytes(&b"1"[..]), 2)]);
        b.extend(chunk(4, true, vec![rec("b", Value::bytes(&b"2"[..]), 4)]));
        Some(b)
    })
    .await?;
    let ok = framed(two).list(list_req()).await?;
    assert_eq!(ok.index, Index(4));
    assert_eq!(ok.records.len(), 2);
    // Chunks that disagree on the index are refused.
    let split = fake_primary(|_| {
        let mut b = chunk(4, false, vec![]);
        b.extend(chunk(5, true, vec![]));
        Some(b)
    })
    .await?;
    assert!(matches!(
        framed(split).list(list_req()).await,
        Err(TransportError::Unexpected(_))
    ));
    // A write answered with a listing.
    let wrong = fake_primary(|_| Some(chunk(1, true, vec![]))).await?;
    let err = framed(wrong)
        .apply(ApplyRequest {
            token: replication_token(),
            ops: upserts(POLICIES, 0..1, 1),
        })
        .await;
    assert!(matches!(err, Err(TransportError::Unexpected(_))), "{err:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_partial_answers_never_delete() -> R {
    let secondary: Arc<dyn Store> = Arc::new(MemoryStore::new());
    secondary.txn(upserts(POLICIES, 0..30, 1)).await?;
    for addr in [
        fake_primary(|_| Some(chunk(99, false, vec![]))).await?,
        fake_primary(|_| None).await?,
        fake_primary(|_| Some(Vec::new())).await?,
        fake_primary(|_| Some(vec![0, 0, 0, 1, 0xee])).await?,
    ] {
        let mut cfg = config(replication_token());
        cfg.wait = Duration::from_millis(10);
        let h =
            mesh_replication::spawn_replicator(t(POLICIES), secondary.clone(), framed(addr), cfg);
        let st = status_until(&h, |s| s.consecutive_failures >= 2).await?;
        assert!(st.last_error.is_some());
        assert_eq!(secondary.list(&t(POLICIES)).await?.records.len(), 30);
        h.stop().await;
    }
    Ok(())
}

/// Answers list queries from a script; records when each call came.
struct Scripted {
    answers: Mutex<VecDeque<Result<CompleteListing, TransportError>>>,
    calls: Mutex<Vec<Instant>>,
    repeat_last_ok: Option<CompleteListing>,
}

impl Scripted {
    fn new(
        answers: Vec<Result<CompleteListing, TransportError>>,
        repeat_last_ok: Option<CompleteListing>,
    ) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into()),
            calls: Mutex::new(Vec::new()),
            repeat_last_ok,
        })
    }
    fn calls(&self) -> Vec<Instant> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Transport for Scripted {
    async fn list(&self, _req: ListRequest) -> Result<CompleteListing, TransportError> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Instant::now());
        let next = self
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        match (next, &self.repeat_last_ok) {
            (Some(a), _) => a,
            (None, Some(l)) => Ok(l.clone()),
            (None, None) => Err(TransportError::Unreachable(
                std::io::ErrorKind::ConnectionRefused.into(),
            )),
        }
    }
    async fn apply(&self, _req: ApplyRequest) -> Result<Index, TransportError> {
        Err(TransportError::Unexpected("not scripted"))
    }
}

#[tokio::test(start_paused = true)]
async fn errors_back_off_exponentially_with_jitter() -> R {
    let transport = Scripted::new(vec![], None);
    let mut cfg = ReplicatorConfig::new(replication_token());
    cfg.backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
    cfg.rate = RateLimit {
        per_second: 1000.0,
        burst: 1000,
    };
    let backoff = cfg.backoff;
    let h = mesh_replication::spawn_replicator(
        t(POLICIES),
        Arc::new(MemoryStore::new()),
        transport.clone(),
        cfg,
    );
    status_until(&h, |s| s.consecutive_failures >= 10).await?;
    h.stop().await;
    let calls = transport.calls();
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 9);
    for (k, gap) in gaps.iter().enumerate().take(9) {
        let ceiling = backoff.ceiling(k as u32 + 1);
        assert!(
            *gap >= ceiling / 2 && *gap <= ceiling + Duration::from_millis(1),
            "gap {k} = {gap:?}, ceiling {ceiling:?}"
        );
    }
    // The delays are capped: the last gaps sit at or under the maximum.
    assert!(gaps[8] <= Duration::from_secs(2) + Duration::from_millis(1));
    // Jitter: the gaps are not all exactly the ceilings.
    assert!(
        gaps.iter()
            .take(9)
            .enumerate()
            .any(|(k, g)| *g != backoff.ceiling(k as u32 + 1))
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn rounds_are_rate_limited() -> R {
    let listing = CompleteListing {
        index: Index(1),
        records: vec![],
    };
    let transport = Scripted::new(vec![], Some(listing));
    let mut cfg = ReplicatorConfig::new(replication_token());
    cfg.rate = RateLimit {
        per_second: 10.0,
        burst: 3,
    };
    let h = mesh_replication::spawn_replicator(
        t(POLICIES),
        Arc::new(MemoryStore::new()),
        transport.clone(),
        cfg,
    );
    status_until(&h, |s| s.rounds >= 13).await?;
    h.stop().await;
    let calls = transport.calls();
    let span = calls[12] - calls[0];
    // 3 at once, then one every 100 ms.
    assert!(span >= Duration::from_millis(999), "{span:?}");
    Ok(())
}

#[tokio::test]
async fn remote_index_going_back_forces_a_full_resync() -> R {
    let v1 = Value::bytes(&b"v1"[..]);
    let v2 = Value::bytes(&b"v2"[..]);
    let first = CompleteListing {
        index: Index(100),
        records: vec![rec("a", v1, 90)],
    };
    // The primary was rebuilt: lower index, changed content, old modify index.
    let reset = CompleteListing {
        index: Index(5),
        records: vec![rec("a", v2.clone(), 3)],
    };
    let transport = Scripted::new(vec![Ok(first)], Some(reset));
    let local: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let h = mesh_replication::spawn_replicator(
        t(POLICIES),
        local.clone(),
        transport,
        ReplicatorConfig::new(replication_token()),
    );
    status_until(&h, |s| s.rounds >= 3).await?;
    h.stop().await;
    let a = local.get(&t(POLICIES), "a").await?.ok_or("a")?;
    assert_eq!(a.value, v2);
    Ok(())
}
