//! TLS record framing of the first flight, and [`Stream`], a cursor over
//! handshake bytes that lie in the payloads of several records.

use std::fmt;

use super::error::HelloError;
use super::{MAX_HELLO_RECORDS, MAX_RECORD_LEN};

/// Bytes of a TLS record header: type, version, length.
pub(super) const RECORD_HEADER_LEN: usize = 5;
/// Bytes of a handshake message header: type and 24-bit length.
pub(super) const HANDSHAKE_HEADER_LEN: usize = 4;
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;

/// The records that hold one complete ClientHello, checked.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame<'a> {
    /// The records (headers included) holding the hello and nothing else.
    pub(super) records: &'a [u8],
    /// Length of the hello body (the handshake header excluded).
    pub(super) body_len: usize,
    /// How many records `records` holds.
    pub(super) record_count: usize,
}

/// Walks the records at the start of `buf` until they hold the whole
/// ClientHello. `Ok(None)` means more bytes are needed. Every check uses only
/// bytes that are present, so a prefix of an acceptable stream never fails.
pub(super) fn frame(buf: &[u8], max_len: usize) -> Result<Option<Frame<'_>>, HelloError> {
    let mut rest = buf;
    let mut header = [0u8; HANDSHAKE_HEADER_LEN];
    let mut header_len = 0usize;
    // The handshake message length, header included, once the header is known.
    let mut total: Option<usize> = None;
    // Declared payload bytes of every record started so far.
    let mut payload = 0usize;
    let mut records = 0usize;
    loop {
        let Some(&content_type) = rest.first() else {
            return Ok(None);
        };
        if content_type != CONTENT_TYPE_HANDSHAKE {
            return Err(if records == 0 {
                HelloError::NotHandshake { content_type }
            } else {
                HelloError::InterleavedRecord { content_type }
            });
        }
        if records == MAX_HELLO_RECORDS {
            // The hello is not complete yet, so this record would be one too many.
            return Err(HelloError::TooManyRecords {
                max: MAX_HELLO_RECORDS,
            });
        }
        if let Some(&[_, major, minor]) = rest.first_chunk::<3>()
            && (major != 3 || minor > 4)
        {
            return Err(HelloError::BadRecordVersion {
                version: u16::from_be_bytes([major, minor]),
            });
        }
        let Some((&[_, _, _, len_hi, len_lo], after_header)) =
            rest.split_first_chunk::<RECORD_HEADER_LEN>()
        else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        if len == 0 {
            return Err(HelloError::EmptyRecord);
        }
        if len > MAX_RECORD_LEN {
            return Err(HelloError::RecordTooLong { len });
        }
        records += 1;
        let present = after_header.get(..len).unwrap_or(after_header);

        // Collect the handshake header, which may itself be split over records.
        if total.is_none() {
            for &byte in present {
                let Some(slot) = header.get_mut(header_len) else {
                    break;
                };
                *slot = byte;
                header_len += 1;
            }
            if header_len >= 1 && header[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(HelloError::NotClientHello {
                    msg_type: header[0],
                });
            }
            if header_len == HANDSHAKE_HEADER_LEN {
                let body = u32::from_be_bytes([0, header[1], header[2], header[3]]);
                // A u32 always fits a usize on the targets tokio supports.
                let len = usize::try_from(body)
                    .unwrap_or(usize::MAX)
                    .saturating_add(HANDSHAKE_HEADER_LEN);
                if len > max_len {
                    return Err(HelloError::TooLong { len, max: max_len });
                }
                total = Some(len);
            }
        }
        payload += len;
        if total.is_some_and(|total| payload > total) {
            return Err(HelloError::TrailingRecordData);
        }
        if present.len() < len {
            return Ok(None);
        }
        rest = after_header.get(len..).unwrap_or_default();
        if total == Some(payload) {
            let used = buf.len() - rest.len();
            let Some(records_bytes) = buf.get(..used) else {
                return Ok(None);
            };
            return Ok(Some(Frame {
                records: records_bytes,
                body_len: payload - HANDSHAKE_HEADER_LEN,
                record_count: records,
            }));
        }
    }
}

/// Why [`Stream::bytes`] could not return a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Short {
    /// Fewer bytes left than asked for.
    Truncated,
    /// The bytes are there but split across two records.
    SpansRecords,
}

/// Reading operations shared by a hello in one record (a plain `&[u8]`)
/// and one spread over several ([`Stream`]), so the body parser is written
/// once and compiled for each; the one-record case, nearly every real hello,
/// gets the leaner code.
pub(super) trait Cursor<'a>: Copy {
    /// Bytes left.
    fn left(&self) -> usize;
    /// Whether no bytes are left.
    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.left() == 0
    }
    /// Reads one byte.
    fn u8(&mut self) -> Option<u8>;
    /// Reads a big-endian `u16`.
    fn u16(&mut self) -> Option<u16>;
    /// Skips `n` bytes.
    fn skip(&mut self, n: usize) -> Option<()>;
    /// Borrows the next `n` bytes.
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Short>;
    /// Splits off the next `n` bytes as their own cursor and moves past them.
    fn take(&mut self, n: usize) -> Option<Self>;
    /// The same bytes as a [`Stream`], the form kept in a `ClientHello`.
    fn into_stream(self) -> Stream<'a>;
}

impl<'a> Cursor<'a> for &'a [u8] {
    #[inline(always)]
    fn left(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    fn u8(&mut self) -> Option<u8> {
        let (&byte, rest) = self.split_first()?;
        *self = rest;
        Some(byte)
    }

    #[inline(always)]
    fn u16(&mut self) -> Option<u16> {
        let (&pair, rest) = self.split_first_chunk::<2>()?;
        *self = rest;
        Some(u16::from_be_bytes(pair))
    }

    #[inline(always)]
    fn skip(&mut self, n: usize) -> Option<()> {
        *self = self.get(n..)?;
        Some(())
    }

    #[inline(always)]
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let (taken, rest) = self.split_at_checked(n).ok_or(Short::Truncated)?;
        *self = rest;
        Ok(taken)
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Option<Self> {
        let (taken, rest) = self.split_at_checked(n)?;
        *self = rest;
        Some(taken)
    }

    #[inline(always)]
    fn into_stream(self) -> Stream<'a> {
        Stream {
            cur: self,
            next: &[],
            left: self.len(),
        }
    }
}

impl<'a> Cursor<'a> for Stream<'a> {
    #[inline(always)]
    fn left(&self) -> usize {
        Stream::left(self)
    }

    #[inline(always)]
    fn u8(&mut self) -> Option<u8> {
        Stream::u8(self)
    }

    #[inline(always)]
    fn u16(&mut self) -> Option<u16> {
        Stream::u16(self)
    }

    #[inline(always)]
    fn skip(&mut self, n: usize) -> Option<()> {
        Stream::skip(self, n)
    }

    #[inline(always)]
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Short> {
        Stream::bytes(self, n)
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Option<Self> {
        Stream::take(self, n)
    }

    #[inline(always)]
    fn into_stream(self) -> Stream<'a> {
        self
    }
}

/// A cursor over the logical byte stream made of the payloads of checked
/// records. It holds at most `left` more bytes. Copying it is cheap and gives
/// an independent cursor at the same position.
#[derive(Clone, Copy)]
pub(super) struct Stream<'a> {
    /// Unread bytes of the current record payload (may run past `left`).
    cur: &'a [u8],
    /// The records after the current one, headers included.
    next: &'a [u8],
    /// Bytes left in this view.
    left: usize,
}

impl fmt::Debug for Stream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream").field("left", &self.left).finish()
    }
}

impl<'a> Stream<'a> {
    /// A view of no bytes.
    pub(super) const EMPTY: Stream<'static> = Stream {
        cur: &[],
        next: &[],
        left: 0,
    };

    /// The first `len` payload bytes of `records`, which [`frame`] checked.
    pub(super) fn new(records: &'a [u8], len: usize) -> Self {
        Self {
            cur: &[],
            next: records,
            left: len,
        }
    }

    /// Bytes left in this view.
    #[inline(always)]
    pub(super) fn left(&self) -> usize {
        self.left
    }

    /// Whether the view is used up.
    #[inline(always)]
    pub(super) fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// Moves to the next non-empty record payload; false at the end.
    #[cold]
    fn refill(&mut self) -> bool {
        while self.cur.is_empty() {
            let Some((&[_, _, _, hi, lo], after)) =
                self.next.split_first_chunk::<RECORD_HEADER_LEN>()
            else {
                return false;
            };
            let Some((payload, next)) =
                after.split_at_checked(usize::from(u16::from_be_bytes([hi, lo])))
            else {
                return false;
            };
            self.cur = payload;
            self.next = next;
        }
        true
    }

    /// Reads one byte.
    #[inline(always)]
    pub(super) fn u8(&mut self) -> Option<u8> {
        if self.left == 0 || (self.cur.is_empty() && !self.refill()) {
            return None;
        }
        let (&byte, rest) = self.cur.split_first()?;
        self.cur = rest;
        self.left -= 1;
        Some(byte)
    }

    /// Reads a big-endian `u16`, even if its two bytes lie in two records.
    #[inline(always)]
    pub(super) fn u16(&mut self) -> Option<u16> {
        if self.left >= 2
            && let Some((&pair, rest)) = self.cur.split_first_chunk::<2>()
        {
            self.cur = rest;
            self.left -= 2;
            return Some(u16::from_be_bytes(pair));
        }
        let hi = self.u8()?;
        let lo = self.u8()?;
        Some(u16::from_be_bytes([hi, lo]))
    }

    /// Skips `n` bytes.
    #[inline(always)]
    pub(super) fn skip(&mut self, n: usize) -> Option<()> {
        if n > self.left {
            return None;
        }
        if let Some(rest) = self.cur.get(n..) {
            self.cur = rest;
            self.left -= n;
            return Some(());
        }
        self.skip_across(n)
    }

    /// [`Self::skip`] over the end of the current record.
    #[cold]
    fn skip_across(&mut self, mut n: usize) -> Option<()> {
        self.left -= n;
        loop {
            if let Some(rest) = self.cur.get(n..) {
                self.cur = rest;
                return Some(());
            }
            n -= self.cur.len();
            self.cur = &[];
            if !self.refill() {
                return None;
            }
        }
    }

    /// Borrows the next `n` bytes, which must lie in one record payload.
    #[inline(always)]
    pub(super) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Short> {
        if n > self.left {
            return Err(Short::Truncated);
        }
        if n == 0 {
            return Ok(&[]);
        }
        if self.cur.is_empty() && !self.refill() {
            return Err(Short::Truncated);
        }
        let (taken, rest) = self.cur.split_at_checked(n).ok_or(Short::SpansRecords)?;
        self.cur = rest;
        self.left -= n;
        Ok(taken)
    }

    /// Splits off the next `n` bytes as their own view and moves past them.
    #[inline(always)]
    pub(super) fn take(&mut self, n: usize) -> Option<Self> {
        let view = Self { left: n, ..*self };
        self.skip(n)?;
        Some(view)
    }
}
