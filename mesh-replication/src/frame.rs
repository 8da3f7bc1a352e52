//! The wire format of the framed transport.
//!
//! A frame is a 4-byte big-endian payload length followed by the payload; a payload is one
//! [`Request`] or [`Response`]. Integers are big-endian, strings and byte strings carry a 4-byte
//! length, every count is checked against the bytes left before anything is allocated, and
//! decoding never panics. Reading a frame reserves memory as its bytes arrive, never on the
//! strength of its announced length alone. A listing travels as one or more
//! [`Response::Chunk`]s, the last one flagged, so a stream cut between chunks is recognisably
//! incomplete.

use std::time::Duration;

use bytes::Bytes;
use mesh_core::Index;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::auth::SecretToken;
use crate::message::{ApplyRequest, EnrollRequest, ListRequest, RemoteError, RemoteErrorKind};
use crate::record::{ContentHash, Record, TxnOp, Value};
use crate::table::{TableName, TableNameError};

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;
/// The default largest payload accepted (16 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
/// The most payload bytes a reader reserves ahead of the bytes received (64 KiB).
pub const READ_CHUNK: usize = 64 << 10;
/// The first reservation for a payload (4 KiB); later ones double up to [`READ_CHUNK`].
const FIRST_STEP: usize = 4 << 10;

const REQ_LIST: u8 = 0x01;
const REQ_APPLY: u8 = 0x02;
const REQ_ENROLL: u8 = 0x03;
const RESP_CHUNK: u8 = 0x81;
const RESP_APPLIED: u8 = 0x82;
const RESP_ERROR: u8 = 0x83;
const RESP_ENROLLED: u8 = 0x84;
const OP_UPSERT: u8 = 1;
const OP_DELETE: u8 = 2;
const VAL_BYTES: u8 = 0;
const VAL_JSON: u8 = 1;

/// A message from a secondary to the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A blocking list query.
    List(ListRequest),
    /// A forwarded write.
    Apply(ApplyRequest),
    /// A server of another datacenter asks for its certificate.
    Enroll(EnrollRequest),
}

/// A message from the primary to a secondary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Part of a listing at `index`; `last` marks the final part.
    Chunk {
        /// The table index of the listing.
        index: Index,
        /// Whether this is the final part.
        last: bool,
        /// The records of this part.
        records: Vec<Record>,
    },
    /// A forwarded write was applied at `index`.
    Applied {
        /// The primary's index of the write.
        index: Index,
    },
    /// The certificate an enrollment asked for: the leaf, then the intermediates, PEM.
    Enrolled {
        /// The PEM chain.
        chain_pem: String,
    },
    /// The request was refused or failed.
    Error(RemoteError),
}

/// Why a payload does not decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload ended early.
    #[error("payload truncated: needed {needed} more bytes at offset {at}")]
    Truncated {
        /// Bytes missing.
        needed: usize,
        /// Offset of the read.
        at: usize,
    },
    /// Bytes were left after the message.
    #[error("{0} bytes after the end of the message")]
    TrailingBytes(usize),
    /// The message type byte is unknown.
    #[error("unknown message type 0x{0:02x}")]
    UnknownMessage(u8),
    /// An operation type byte is unknown.
    #[error("unknown operation type {0}")]
    UnknownOp(u8),
    /// A value type byte is unknown.
    #[error("unknown value type {0}")]
    UnknownValue(u8),
    /// An error kind code is unknown.
    #[error("unknown error kind {0}")]
    UnknownErrorKind(u8),
    /// A boolean byte is neither 0 nor 1.
    #[error("invalid boolean byte {0}")]
    InvalidBool(u8),
    /// A string is not UTF-8.
    #[error("string is not UTF-8")]
    InvalidUtf8(#[source] std::str::Utf8Error),
    /// A JSON value does not parse.
    #[error("invalid JSON value")]
    InvalidJson(#[source] serde_json::Error),
    /// A table name is invalid.
    #[error("invalid table name")]
    InvalidTable(#[source] TableNameError),
    /// A record's hash does not match its value.
    #[error("hash of record {id:?} does not match its value")]
    HashMismatch {
        /// The record id (cut to 64 bytes).
        id: String,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The announced payload is larger than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer closed the stream cleanly between frames.
    #[error("connection closed")]
    Closed,
    /// The stream ended or failed inside a frame, or failed to write.
    #[error("I/O error on the stream")]
    Io(#[source] std::io::Error),
    /// The frame did not arrive in time (for [`read_frame_timed`]: no byte of it arrived
    /// within the idle time-out).
    #[error("frame not received within {0:?}")]
    TimedOut(Duration),
    /// A frame was started but not completed within the per-frame time-out: a slow or stalled
    /// peer.
    #[error("frame started but not completed within {0:?}")]
    TooSlow(Duration),
    /// The payload does not decode.
    #[error("malformed payload")]
    Decode(#[from] DecodeError),
    /// The server refused the connection's request and closed it.
    #[error("refused: {0}")]
    Refused(&'static str),
}

/// A whole frame split off a buffer: `(payload, rest of the buffer)`.
pub type Split<'a> = (&'a [u8], &'a [u8]);

/// Splits one frame off the front of `buf`: `Ok(None)` when more bytes are needed,
/// `Ok(Some((payload, rest)))` when a whole frame is there.
pub fn split_frame(buf: &[u8], max: usize) -> Result<Option<Split<'_>>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(header);
    let len = u32::from_be_bytes(h) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let rest = &buf[HEADER_LEN..];
    if rest.len() < len {
        return Ok(None);
    }
    Ok(Some(rest.split_at(len)))
}

/// Appends a frame to `out` whose payload `body` writes; refuses payloads over `max` (and
/// leaves `out` as it was).
pub fn write_frame(
    out: &mut Vec<u8>,
    max: usize,
    body: impl FnOnce(&mut Vec<u8>),
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    body(out);
    let len = out.len() - start - HEADER_LEN;
    if len > max || u32::try_from(len).is_err() {
        out.truncate(start);
        return Err(FrameError::TooLarge { len, max });
    }
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Reads one frame's payload into `buf` (replacing its content); the whole frame must arrive
/// within `timeout`.
///
/// Memory grows with the bytes received, not with the announced length: see
/// [`read_frame_timed`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
    timeout: Duration,
) -> Result<(), FrameError> {
    let whole = async {
        let mut h = [0u8; HEADER_LEN];
        let got = read_first(r, buf, &mut h).await?;
        read_rest(r, buf, max, h, got).await
    };
    match tokio::time::timeout(timeout, whole).await {
        Ok(res) => res,
        Err(_) => Err(FrameError::TimedOut(timeout)),
    }
}

/// Time limits of [`read_frame_timed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTimeouts {
    /// Longest wait for the first byte of the frame: how long the stream may idle between
    /// frames ([`FrameError::TimedOut`]).
    pub idle: Duration,
    /// Once the first byte is in, the rest of the frame (header and payload) must arrive within
    /// this ([`FrameError::TooSlow`]).
    pub frame: Duration,
}

/// Reads one frame's payload into `buf` (replacing its content) with two deadlines: the first
/// byte within `t.idle`, then the whole frame within `t.frame` of it.
///
/// A peer that announces a large frame and sends little of it makes the reader hold little:
/// `buf` starts empty (an allocation above [`READ_CHUNK`] left by an earlier frame is dropped
/// first), the payload is read in steps of at most [`READ_CHUNK`] bytes, and no step is
/// reserved before the previous one is filled, so at most one step is held ahead of the bytes
/// received. A length above `max` is refused before any of the payload is read.
pub async fn read_frame_timed<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
    t: FrameTimeouts,
) -> Result<(), FrameError> {
    let mut h = [0u8; HEADER_LEN];
    let got = match tokio::time::timeout(t.idle, read_first(r, buf, &mut h)).await {
        Ok(res) => res?,
        Err(_) => return Err(FrameError::TimedOut(t.idle)),
    };
    match tokio::time::timeout(t.frame, read_rest(r, buf, max, h, got)).await {
        Ok(res) => res,
        Err(_) => Err(FrameError::TooSlow(t.frame)),
    }
}

/// Empties `buf` (dropping a large allocation) and waits for the first bytes of a header.
async fn read_first<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    h: &mut [u8; HEADER_LEN],
) -> Result<usize, FrameError> {
    buf.clear();
    if buf.capacity() > READ_CHUNK {
        *buf = Vec::new();
    }
    match r.read(h).await.map_err(FrameError::Io)? {
        0 => Err(FrameError::Closed),
        n => Ok(n),
    }
}

/// Reads the rest of a header of which `got` bytes are in `h`, then the payload.
async fn read_rest<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
    mut h: [u8; HEADER_LEN],
    mut got: usize,
) -> Result<(), FrameError> {
    while got < HEADER_LEN {
        match r.read(&mut h[got..]).await.map_err(FrameError::Io)? {
            0 => return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes(h) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    read_payload(r, buf, len, &mut Vec::new())
        .await
        .map_err(FrameError::Io)
}

/// Reads a `len`-byte payload into the empty `buf`, reserving at most one step ahead of the
/// bytes received. The first [`READ_CHUNK`] bytes go straight into `buf`, which grows from
/// [`FIRST_STEP`] by doubling; later bytes fill `parts` of [`READ_CHUNK`] bytes, each allocated
/// when the previous one is full, and are appended to `buf` once all have arrived: one copy in
/// all rather than a reallocation (and copy) per step.
async fn read_payload<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    len: usize,
    parts: &mut Vec<Vec<u8>>,
) -> std::io::Result<()> {
    let head = len.min(READ_CHUNK);
    while buf.len() < head {
        if buf.len() == buf.capacity() {
            let step = buf.len().clamp(FIRST_STEP, READ_CHUNK);
            buf.reserve_exact(step.min(head - buf.len()));
        }
        read_some(r, buf, head).await?;
    }
    let mut got = head;
    while got < len {
        let n = (len - got).min(READ_CHUNK);
        let mut part = Vec::with_capacity(n);
        while part.len() < n {
            read_some(r, &mut part, n).await?;
        }
        got += n;
        parts.push(part);
    }
    if !parts.is_empty() {
        buf.reserve_exact(len - buf.len());
        for part in parts.drain(..) {
            buf.extend_from_slice(&part);
        }
    }
    Ok(())
}

/// Reads at least one byte into the spare capacity of `v` (which must have some), without
/// making it longer than `upto`: never past the frame, never reallocating.
async fn read_some<R: AsyncRead + Unpin>(
    r: &mut R,
    v: &mut Vec<u8>,
    upto: usize,
) -> std::io::Result<()> {
    let limit = (upto - v.len()).min(v.capacity() - v.len());
    match (&mut *r).take(limit as u64).read_buf(v).await? {
        0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(()),
    }
}

impl Request {
    /// Appends the payload of this request to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::List(l) => {
                out.push(REQ_LIST);
                put_str(out, l.token.expose_secret());
                put_str(out, l.table.as_str());
                put_u64(out, l.min_index.0);
                put_u64(out, u64::try_from(l.wait.as_millis()).unwrap_or(u64::MAX));
            }
            Self::Apply(a) => {
                out.push(REQ_APPLY);
                put_str(out, a.token.expose_secret());
                put_len(out, a.ops.len());
                for op in &a.ops {
                    match op {
                        TxnOp::Upsert {
                            table,
                            id,
                            value,
                            cas,
                        } => {
                            out.push(OP_UPSERT);
                            put_str(out, table.as_str());
                            put_str(out, id);
                            put_cas(out, *cas);
                            put_value(out, value);
                        }
                        TxnOp::Delete { table, id, cas } => {
                            out.push(OP_DELETE);
                            put_str(out, table.as_str());
                            put_str(out, id);
                            put_cas(out, *cas);
                        }
                    }
                }
            }
            Self::Enroll(e) => {
                out.push(REQ_ENROLL);
                put_str(out, e.token.expose_secret());
                put_str(out, &e.csr_pem);
            }
        }
    }

    /// Decodes a request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor { b: payload, at: 0 };
        let msg = match c.u8()? {
            REQ_LIST => Self::List(ListRequest {
                token: SecretToken::new(c.str()?),
                table: c.table()?,
                min_index: Index(c.u64()?),
                wait: Duration::from_millis(c.u64()?),
            }),
            REQ_APPLY => {
                let token = SecretToken::new(c.str()?);
                // Each operation takes at least 1 + 4 + 4 + 1 bytes.
                let n = c.count(10)?;
                let mut ops = Vec::with_capacity(n);
                for _ in 0..n {
                    let kind = c.u8()?;
                    let table = c.table()?;
                    let id = c.str()?.to_owned();
                    let cas = c.cas()?;
                    ops.push(match kind {
                        OP_UPSERT => TxnOp::Upsert {
                            table,
                            id,
                            cas,
                            value: c.value()?,
                        },
                        OP_DELETE => TxnOp::Delete { table, id, cas },
                        k => return Err(DecodeError::UnknownOp(k)),
                    });
                }
                Self::Apply(ApplyRequest { token, ops })
            }
            REQ_ENROLL => Self::Enroll(EnrollRequest {
                token: SecretToken::new(c.str()?),
                csr_pem: c.str()?.to_owned(),
            }),
            k => return Err(DecodeError::UnknownMessage(k)),
        };
        c.finish()?;
        Ok(msg)
    }
}

impl Response {
    /// Appends the payload of this response to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Chunk {
                index,
                last,
                records,
            } => encode_chunk(out, *index, *last, records),
            Self::Applied { index } => {
                out.push(RESP_APPLIED);
                put_u64(out, index.0);
            }
            Self::Enrolled { chain_pem } => {
                out.push(RESP_ENROLLED);
                put_str(out, chain_pem);
            }
            Self::Error(e) => {
                out.push(RESP_ERROR);
                out.push(e.kind.code());
                put_str(out, &e.message);
            }
        }
    }

    /// Decodes a response payload; records whose hash does not match their value are refused.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor { b: payload, at: 0 };
        let msg = match c.u8()? {
            RESP_CHUNK => {
                let index = Index(c.u64()?);
                let last = c.bool()?;
                // Each record takes at least 4 + 1 + 4 + 8 + 8 + 32 bytes.
                let n = c.count(57)?;
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = c.str()?.to_owned();
                    let value = c.value()?;
                    let create_index = Index(c.u64()?);
                    let modify_index = Index(c.u64()?);
                    let hash = ContentHash(c.array32()?);
                    if value.content_hash() != hash {
                        return Err(DecodeError::HashMismatch {
                            id: id.chars().take(64).collect(),
                        });
                    }
                    records.push(Record {
                        id,
                        value,
                        create_index,
                        modify_index,
                        hash,
                    });
                }
                Self::Chunk {
                    index,
                    last,
                    records,
                }
            }
            RESP_APPLIED => Self::Applied {
                index: Index(c.u64()?),
            },
            RESP_ENROLLED => Self::Enrolled {
                chain_pem: c.str()?.to_owned(),
            },
            RESP_ERROR => {
                let code = c.u8()?;
                let kind =
                    RemoteErrorKind::from_code(code).ok_or(DecodeError::UnknownErrorKind(code))?;
                Self::Error(RemoteError {
                    kind,
                    message: c.str()?.to_owned(),
                })
            }
            k => return Err(DecodeError::UnknownMessage(k)),
        };
        c.finish()?;
        Ok(msg)
    }
}

/// Writes a chunk payload without building a [`Response`] (used by the server).
pub(crate) fn encode_chunk(out: &mut Vec<u8>, index: Index, last: bool, records: &[Record]) {
    out.push(RESP_CHUNK);
    put_u64(out, index.0);
    out.push(u8::from(last));
    put_len(out, records.len());
    for r in records {
        put_str(out, &r.id);
        put_value(out, &r.value);
        put_u64(out, r.create_index.0);
        put_u64(out, r.modify_index.0);
        out.extend_from_slice(r.hash.as_bytes());
    }
}

/// The encoded size of a record inside a chunk, for cutting chunks under the frame limit.
pub(crate) fn record_wire_size(r: &Record) -> usize {
    4 + r.id.len() + 1 + 4 + r.value.estimated_size() + 8 + 8 + 32
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Lengths above u32::MAX cannot fit a frame; the frame limit refuses them afterwards.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_cas(out: &mut Vec<u8>, cas: Option<Index>) {
    match cas {
        None => out.push(0),
        Some(i) => {
            out.push(1);
            put_u64(out, i.0);
        }
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bytes(b) => {
            out.push(VAL_BYTES);
            put_len(out, b.len());
            out.extend_from_slice(b);
        }
        Value::Json(j) => {
            out.push(VAL_JSON);
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            // Serialising a `serde_json::Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &**j);
            let len = out.len() - at - 4;
            out[at..at + 4].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let left = self.b.len() - self.at;
        if n > left {
            return Err(DecodeError::Truncated {
                needed: n - left,
                at: self.at,
            });
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::InvalidBool(b)),
        }
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn array32(&mut self) -> Result<[u8; 32], DecodeError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32)?);
        Ok(a)
    }

    /// A count of items of at least `min_item` bytes each, checked against the bytes left.
    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        let left = self.b.len() - self.at;
        if n.saturating_mul(min_item) > left {
            return Err(DecodeError::Truncated {
                needed: n.saturating_mul(min_item) - left,
                at: self.at,
            });
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(DecodeError::InvalidUtf8)
    }

    fn table(&mut self) -> Result<TableName, DecodeError> {
        TableName::new(self.str()?).map_err(DecodeError::InvalidTable)
    }

    fn cas(&mut self) -> Result<Option<Index>, DecodeError> {
        Ok(if self.bool()? {
            Some(Index(self.u64()?))
        } else {
            None
        })
    }

    fn value(&mut self) -> Result<Value, DecodeError> {
        match self.u8()? {
            VAL_BYTES => Ok(Value::Bytes(Bytes::copy_from_slice(self.bytes()?))),
            VAL_JSON => Ok(Value::json(
                serde_json::from_slice(self.bytes()?).map_err(DecodeError::InvalidJson)?,
            )),
            t => Err(DecodeError::UnknownValue(t)),
        }
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.b.len() - self.at {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> TableName {
        TableName::new(s).unwrap_or_else(|_| unreachable!("test table names are valid"))
    }

    fn record(id: &str, v: Value, m: u64) -> Record {
        Record {
            id: id.into(),
            hash: v.content_hash(),
            value: v,
            create_index: Index(1),
            modify_index: Index(m),
        }
    }

    fn samples() -> (Vec<Request>, Vec<Response>) {
        let reqs = vec![
            Request::List(ListRequest {
                token: SecretToken::new("tok"),
                table: table("policies"),
                min_index: Index(42),
                wait: Duration::from_millis(1500),
            }),
            Request::Apply(ApplyRequest {
                token: SecretToken::new(""),
                ops: vec![
                    TxnOp::Upsert {
                        table: table("a"),
                        id: "x".into(),
                        value: Value::json(serde_json::json!({"k": [1, "v", null]})),
                        cas: Some(Index(0)),
                    },
                    TxnOp::Delete {
                        table: table("b"),
                        id: "y".into(),
                        cas: None,
                    },
                ],
            }),
        ];
        let resps = vec![
            Response::Chunk {
                index: Index(9),
                last: true,
                records: vec![
                    record("a", Value::bytes(&b"\x00\xff"[..]), 3),
                    record("b", Value::json(serde_json::json!("s")), 4),
                ],
            },
            Response::Chunk {
                index: Index(1),
                last: false,
                records: vec![],
            },
            Response::Applied { index: Index(7) },
            Response::Enrolled {
                chain_pem: "-----BEGIN CERTIFICATE-----".into(),
            },
            Response::Error(RemoteError {
                kind: RemoteErrorKind::Denied,
                message: "no".into(),
            }),
            Response::Error(RemoteError {
                kind: RemoteErrorKind::CertificateRequired,
                message: "mTLS".into(),
            }),
        ];
        let mut reqs = reqs;
        reqs.push(Request::Enroll(EnrollRequest {
            token: SecretToken::new("t"),
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".into(),
        }));
        (reqs, resps)
    }

    #[test]
    fn round_trips_and_every_prefix_is_truncated() -> Result<(), DecodeError> {
        let (reqs, resps) = samples();
        for r in reqs {
            let mut b = Vec::new();
            r.encode(&mut b);
            assert_eq!(Request::decode(&b)?, r);
            for n in 0..b.len() {
                assert!(Request::decode(&b[..n]).is_err(), "prefix {n} of {r:?}");
            }
            b.push(0);
            assert!(matches!(
                Request::decode(&b),
                Err(DecodeError::TrailingBytes(1))
            ));
        }
        for r in resps {
            let mut b = Vec::new();
            r.encode(&mut b);
            assert_eq!(Response::decode(&b)?, r);
            for n in 0..b.len() {
                assert!(Response::decode(&b[..n]).is_err(), "prefix {n} of {r:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn bad_inputs_are_typed() {
        assert!(matches!(
            Request::decode(&[0x7f]),
            Err(DecodeError::UnknownMessage(0x7f))
        ));
        assert!(matches!(
            Response::decode(&[RESP_ERROR, 99, 0, 0, 0, 0]),
            Err(DecodeError::UnknownErrorKind(99))
        ));
        // A count of 2^32-1 records with no bytes behind it allocates nothing.
        assert!(matches!(
            Response::decode(&[
                RESP_CHUNK, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xff, 0xff, 0xff, 0xff
            ]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut b = Vec::new();
        let mut r = record("a", Value::bytes(&b"x"[..]), 1);
        r.hash = ContentHash([0; 32]);
        encode_chunk(&mut b, Index(1), true, &[r]);
        assert!(matches!(
            Response::decode(&b),
            Err(DecodeError::HashMismatch { .. })
        ));
        let mut b = Vec::new();
        Request::List(ListRequest {
            token: SecretToken::new("t"),
            table: table("t"),
            min_index: Index(0),
            wait: Duration::ZERO,
        })
        .encode(&mut b);
        b[10] = b'T';
        assert!(matches!(
            Request::decode(&b),
            Err(DecodeError::InvalidTable(_))
        ));
    }

    #[test]
    fn frames_split_and_limit() -> Result<(), FrameError> {
        let mut b = Vec::new();
        write_frame(&mut b, 16, |o| o.extend_from_slice(b"hello"))?;
        write_frame(&mut b, 16, |o| o.extend_from_slice(b"!"))?;
        assert!(matches!(
            write_frame(&mut b, 16, |o| o.extend_from_slice(&[0; 17])),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        ));
        assert_eq!(b.len(), 4 + 5 + 4 + 1);
        for n in 0..9 {
            assert!(split_frame(&b[..n], 16)?.is_none());
        }
        let (p, rest) = split_frame(&b, 16)?.unwrap_or_default();
        assert_eq!(p, b"hello");
        assert_eq!(split_frame(rest, 16)?.map(|x| x.0), Some(&b"!"[..]));
        assert!(matches!(
            split_frame(&[0, 0, 1, 0], 16),
            Err(FrameError::TooLarge { len: 256, .. })
        ));
        Ok(())
    }

    #[tokio::test]
    async fn read_frame_reports_eof_kinds() {
        let mut buf = Vec::new();
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut empty, &mut buf, 16, Duration::from_secs(1)).await,
            Err(FrameError::Closed)
        ));
        let mut cut: &[u8] = &[0, 0, 0, 5, b'a'];
        assert!(matches!(
            read_frame(&mut cut, &mut buf, 16, Duration::from_secs(1)).await,
            Err(FrameError::Io(_))
        ));
        let mut ok: &[u8] = &[0, 0, 0, 1, b'a'];
        assert!(
            read_frame(&mut ok, &mut buf, 16, Duration::from_secs(1))
                .await
                .is_ok()
        );
        assert_eq!(buf, b"a");
    }

    /// Yields its pieces one read at a time, then stays pending for ever (never wakes).
    struct Pieces {
        pieces: std::collections::VecDeque<Vec<u8>>,
        largest_offer: usize,
    }

    impl Pieces {
        fn new(pieces: impl IntoIterator<Item = Vec<u8>>) -> Self {
            Self {
                pieces: pieces.into_iter().collect(),
                largest_offer: 0,
            }
        }
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            out: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.largest_offer = self.largest_offer.max(out.remaining());
            let Some(mut piece) = self.pieces.pop_front() else {
                return std::task::Poll::Pending;
            };
            let n = piece.len().min(out.remaining());
            out.put_slice(&piece[..n]);
            if n < piece.len() {
                self.pieces.push_front(piece.split_off(n));
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_payload_holds_only_what_arrived() {
        const HUGE: usize = DEFAULT_MAX_FRAME;
        let sent = 3 * READ_CHUNK + 100;
        let header = (HUGE as u32).to_be_bytes().to_vec();
        let body = vec![7u8; sent];
        let mut r =
            Pieces::new(std::iter::once(header).chain(body.chunks(1000).map(<[u8]>::to_vec)));
        // Skip the header as `read_rest` would, then read the payload until the reader stalls.
        let mut h = [0u8; HEADER_LEN];
        assert!(matches!(r.read_exact(&mut h).await, Ok(HEADER_LEN)));
        let mut buf = Vec::new();
        let mut parts = Vec::new();
        let stalled = tokio::time::timeout(
            Duration::from_secs(10),
            read_payload(&mut r, &mut buf, HUGE, &mut parts),
        )
        .await;
        assert!(stalled.is_err(), "the reader never completes the payload");
        let held = buf.capacity() + parts.iter().map(Vec::capacity).sum::<usize>();
        let received = buf.len() + parts.iter().map(Vec::len).sum::<usize>();
        assert_eq!(buf.capacity(), READ_CHUNK);
        // Whole parts are full; only the part being filled (dropped with the future) was ahead.
        assert_eq!(held, received);
        assert!(received <= sent && received + READ_CHUNK >= sent);
        assert!(r.largest_offer <= READ_CHUNK, "offered {}", r.largest_offer);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_are_typed() {
        let t = FrameTimeouts {
            idle: Duration::from_secs(600),
            frame: Duration::from_secs(10),
        };
        let mut buf = Vec::new();
        // Nothing at all: the idle time-out.
        let mut silent = Pieces::new([]);
        assert!(matches!(
            read_frame_timed(&mut silent, &mut buf, 1 << 20, t).await,
            Err(FrameError::TimedOut(d)) if d == t.idle
        ));
        // Half a header: the frame time-out.
        let mut half = Pieces::new([vec![0, 0]]);
        assert!(matches!(
            read_frame_timed(&mut half, &mut buf, 1 << 20, t).await,
            Err(FrameError::TooSlow(d)) if d == t.frame
        ));
        // A header, then nothing: the frame time-out, and one first step held.
        let mut header = Pieces::new([(1u32 << 20).to_be_bytes().to_vec()]);
        assert!(matches!(
            read_frame_timed(&mut header, &mut buf, 1 << 20, t).await,
            Err(FrameError::TooSlow(_))
        ));
        assert!(buf.capacity() <= FIRST_STEP, "{}", buf.capacity());
        // Over the limit: refused on the header.
        let mut over = Pieces::new([(1u32 << 20).to_be_bytes().to_vec()]);
        assert!(matches!(
            read_frame_timed(&mut over, &mut buf, 1000, t).await,
            Err(FrameError::TooLarge { len, max: 1000 }) if len == 1 << 20
        ));
    }

    #[tokio::test]
    async fn large_frames_read_back_to_back() -> Result<(), FrameError> {
        let sizes = [
            0,
            1,
            FIRST_STEP,
            READ_CHUNK,
            READ_CHUNK + 1,
            5 * READ_CHUNK + 7,
        ];
        let mut wire = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            write_frame(&mut wire, 1 << 20, |o| {
                o.extend((0..n).map(|j| (j * 31 + i) as u8));
            })?;
        }
        // Odd-sized pieces so frames and reads never line up.
        let mut r = Pieces::new(wire.chunks(9_999).map(<[u8]>::to_vec));
        let mut buf = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            read_frame(&mut r, &mut buf, 1 << 20, Duration::from_secs(30)).await?;
            assert_eq!(buf.len(), n);
            assert!(
                buf.iter()
                    .enumerate()
                    .all(|(j, &b)| b == (j * 31 + i) as u8)
            );
        }
        assert!(r.largest_offer <= READ_CHUNK);
        Ok(())
    }
}
