//! Zero-copy, incremental parser of the TLS ClientHello that opens a stream.
//!
//! [`parse_client_hello`] is a pure function over the first bytes read from a
//! connection. It answers [`Parse::Done`] with a [`ClientHello`] whose
//! accessors borrow from the buffer, [`Parse::NeedMore`] when the bytes so far
//! are a valid beginning, or [`Parse::Invalid`] with the rule that was broken.
//! It never allocates and never panics, whatever the input.
//!
//! ```
//! use mesh_sni::hello::{parse_client_hello, Parse, DEFAULT_MAX_HELLO_LEN};
//!
//! // A ClientHello sent by curl, as captured on the wire.
//! let wire = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/curl.bin"));
//!
//! // A partial read: wait for more.
//! assert!(matches!(parse_client_hello(&wire[..100], DEFAULT_MAX_HELLO_LEN), Parse::NeedMore));
//!
//! let Parse::Done(hello) = parse_client_hello(wire, DEFAULT_MAX_HELLO_LEN) else {
//!     panic!("curl's hello parses");
//! };
//! assert_eq!(
//!     hello.server_name(),
//!     Some("web.default.dc1.internal.11111111-2222-3333-4444-555555555555.consul"),
//! );
//! assert_eq!(hello.alpn().collect::<Vec<_>>(), [&b"h2"[..], b"http/1.1"]);
//! assert_eq!(hello.versions().next(), Some(0x0304));
//! assert_eq!(hello.consumed(), wire.len());
//! ```
//!
//! # Records and fragmentation
//!
//! The hello may be split across several TLS records (RFC 8446 §5.1 allows a
//! handshake message, even its 4-byte header, to be cut anywhere between
//! records). The parser walks the record payloads as one logical stream, so
//! every length, integer and skipped field may straddle a record boundary.
//! The fields it hands out as borrowed slices cannot: when the SNI host name
//! is itself cut by a record boundary the parse fails with
//! [`HelloError::FieldSpansRecords`] rather than copy; when an ALPN protocol
//! name is, the hello is still accepted with its ALPN list marked unavailable
//! ([`ClientHello::alpn_spans_records`]), since routing needs the SNI alone. Real clients
//! put the whole hello in one record unless it is over their record size
//! (16 KiB, or 512 bytes at the smallest `max_fragment_length`), and the
//! server name comes early in the extensions, so the SNI is never cut in
//! practice. An ALPN name can be: openssl with 512-byte records and a list of
//! forty names does it (see `tests/data/openssl_frag512_alpn_split.bin`).
//!
//! # Limits
//!
//! * The hello (handshake header included) may be at most `max_len` bytes;
//!   this is refused as soon as the handshake header declares more, without
//!   waiting for the bytes.
//! * A record may be at most [`MAX_RECORD_LEN`] bytes, and the hello may use
//!   at most [`MAX_HELLO_RECORDS`] records. So a caller never needs more than
//!   [`buffer_limit`]`(max_len)` bytes to get an answer other than `NeedMore`.
//! * Lists have no separate count limit: they are bounded by their lengths.
//!
//! # What it does not do
//!
//! It does no I/O and keeps no state between calls: call it again on the
//! whole buffer after each read. It only reads what routing needs (server
//! name, ALPN, versions) and checks the structure around them; it does not
//! judge cipher suites, key shares or other extensions, which the TLS server
//! behind the gateway does. SSLv2-compatible hellos and DTLS are refused.

mod error;
mod host;
mod records;
#[cfg(test)]
mod tests;

use std::fmt;
use std::iter::FusedIterator;

pub use error::{Field, HelloError, HelloErrorKind, HostNameError};
use records::{Cursor, HANDSHAKE_HEADER_LEN, RECORD_HEADER_LEN, Short, Stream};

/// Default cap on the size of a ClientHello (handshake header included).
pub const DEFAULT_MAX_HELLO_LEN: usize = 16 * 1024;

/// Largest record payload accepted: 2^14 plus the 2048 bytes of expansion
/// TLS allows a protected record (RFC 5246 §6.2.3), as a lenient bound.
pub const MAX_RECORD_LEN: usize = (1 << 14) + 2048;

/// Most records a ClientHello may be spread over. 256 records hold a 16 KiB
/// hello even in 64-byte fragments (the smallest RFC 8449 record size limit).
pub const MAX_HELLO_RECORDS: usize = 256;

/// How many bytes a caller may need to buffer before [`parse_client_hello`]
/// with this `max_len` answers something other than [`Parse::NeedMore`]:
/// for any buffer at least this long the answer is `Done` or `Invalid`.
pub const fn buffer_limit(max_len: usize) -> usize {
    max_len.saturating_add(RECORD_HEADER_LEN * MAX_HELLO_RECORDS)
}

const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const SNI_HOST_NAME: u8 = 0;
const MAX_SESSION_ID_LEN: usize = 32;
const RANDOM_LEN: usize = 32;

/// The outcome of [`parse_client_hello`]. A parser of this kind has exactly
/// these three outcomes, so the enum is deliberately exhaustive.
#[derive(Debug, Clone, Copy)]
pub enum Parse<'a> {
    /// A complete, well-formed ClientHello.
    Done(ClientHello<'a>),
    /// The bytes so far are a valid beginning; read more and call again.
    NeedMore,
    /// The bytes cannot begin a ClientHello this parser accepts.
    Invalid(HelloError),
}

/// A parsed ClientHello: read-only views into the caller's buffer.
#[derive(Clone, Copy)]
pub struct ClientHello<'a> {
    legacy_version: u16,
    server_name: Option<&'a str>,
    alpn: Option<Stream<'a>>,
    alpn_spans_records: bool,
    versions: Option<Stream<'a>>,
    consumed: usize,
    record_count: usize,
}

impl<'a> ClientHello<'a> {
    /// The `host_name` of the `server_name` extension, validated as a DNS
    /// host name, with the case the client sent (compare case-insensitively).
    /// `None` when the extension is absent or has no `host_name` entry.
    pub fn server_name(&self) -> Option<&'a str> {
        self.server_name
    }

    /// The ALPN protocol names in the client's order of preference; empty
    /// when the extension is absent.
    pub fn alpn(&self) -> AlpnProtocols<'a> {
        AlpnProtocols {
            list: self.alpn.unwrap_or(Stream::EMPTY),
        }
    }

    /// Whether the client sent the ALPN extension (and its names could be borrowed).
    pub fn has_alpn(&self) -> bool {
        self.alpn.is_some()
    }

    /// Whether the client sent an ALPN list that a record boundary cuts through a name of:
    /// the names cannot be borrowed without copying, so [`ClientHello::alpn`] is empty, but
    /// the hello is still accepted (routing depends on the SNI alone).
    pub fn alpn_spans_records(&self) -> bool {
        self.alpn_spans_records
    }

    /// The protocol versions offered: the `supported_versions` list in the
    /// client's order (GREASE values included) when the extension is present,
    /// otherwise `legacy_version` alone.
    pub fn versions(&self) -> Versions<'a> {
        match self.versions {
            Some(list) => Versions { list, legacy: None },
            None => Versions {
                list: Stream::EMPTY,
                legacy: Some(self.legacy_version),
            },
        }
    }

    /// The hello's `legacy_version` field (0x0303 for TLS 1.2 and 1.3).
    pub fn legacy_version(&self) -> u16 {
        self.legacy_version
    }

    /// How many bytes at the start of the buffer make up the records that
    /// hold the hello, record headers included. These bytes hold nothing
    /// else: the hello ends exactly at the end of its last record.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// How many TLS records the hello was spread over (1 for most clients).
    pub fn record_count(&self) -> usize {
        self.record_count
    }
}

impl fmt::Debug for ClientHello<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Alpn<'a>(AlpnProtocols<'a>);
        impl fmt::Debug for Alpn<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.clone().map(|p| p.escape_ascii().to_string()))
                    .finish()
            }
        }
        struct Hex<'a>(Versions<'a>);
        impl fmt::Debug for Hex<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.clone().map(|v| format!("{v:#06x}")))
                    .finish()
            }
        }
        f.debug_struct("ClientHello")
            .field("server_name", &self.server_name)
            .field("alpn", &Alpn(self.alpn()))
            .field("versions", &Hex(self.versions()))
            .field("consumed", &self.consumed)
            .field("record_count", &self.record_count)
            .finish()
    }
}

/// Iterator over the ALPN protocol names of a [`ClientHello`].
#[derive(Debug, Clone)]
pub struct AlpnProtocols<'a> {
    list: Stream<'a>,
}

impl<'a> Iterator for AlpnProtocols<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        // The list was checked when the hello was parsed; on the impossible
        // failure the iterator simply ends.
        let len = self.list.u8()?;
        match self.list.bytes(usize::from(len)) {
            Ok(name) => Some(name),
            Err(_) => {
                self.list = Stream::EMPTY;
                None
            }
        }
    }
}

impl FusedIterator for AlpnProtocols<'_> {}

/// Iterator over the protocol versions of a [`ClientHello`].
#[derive(Debug, Clone)]
pub struct Versions<'a> {
    list: Stream<'a>,
    legacy: Option<u16>,
}

impl Iterator for Versions<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        self.legacy.take().or_else(|| self.list.u16())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.legacy.is_some()) + self.list.left() / 2;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Versions<'_> {}
impl FusedIterator for Versions<'_> {}

/// Parses the ClientHello at the start of `buf`, the first bytes read from a
/// TLS connection.
///
/// * `Done`: the records holding the hello are complete and well-formed;
///   [`ClientHello::consumed`] tells how many bytes they take. Bytes after
///   them are not looked at.
/// * `NeedMore`: `buf` is a valid beginning (possibly empty). Never returned
///   once `buf.len() >= buffer_limit(max_len)`.
/// * `Invalid`: no continuation of `buf` can be accepted, including a hello
///   declared longer than `max_len` bytes (handshake header included).
pub fn parse_client_hello(buf: &[u8], max_len: usize) -> Parse<'_> {
    match records::frame(buf, max_len) {
        Ok(None) => Parse::NeedMore,
        Err(e) => Parse::Invalid(e),
        Ok(Some(frame)) => {
            let parsed = if frame.record_count == 1 {
                // One record holding exactly the hello: its body is contiguous.
                let body = frame
                    .records
                    .get(RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN..)
                    .unwrap_or_default();
                parse_body(body, &frame)
            } else {
                let mut s = Stream::new(frame.records, HANDSHAKE_HEADER_LEN + frame.body_len);
                // The header was checked by `frame`; on the impossible failure
                // the body parse reports a truncation.
                let _ = s.skip(HANDSHAKE_HEADER_LEN);
                parse_body(s, &frame)
            };
            match parsed {
                Ok(hello) => Parse::Done(hello),
                Err(e) => Parse::Invalid(e),
            }
        }
    }
}

fn truncated(field: Field) -> HelloError {
    HelloError::Truncated { field }
}

fn borrow_error(field: Field) -> impl FnOnce(Short) -> HelloError {
    move |short| match short {
        Short::Truncated => HelloError::Truncated { field },
        Short::SpansRecords => HelloError::FieldSpansRecords { field },
    }
}

/// Reads a length-prefixed vector's length, checks it against `ok` and
/// skips the vector.
#[inline]
fn skip_vector<'a>(
    s: &mut impl Cursor<'a>,
    field: Field,
    wide: bool,
    ok: impl Fn(usize) -> bool,
) -> Result<(), HelloError> {
    let len = if wide {
        s.u16().map(usize::from)
    } else {
        s.u8().map(usize::from)
    }
    .ok_or(truncated(field))?;
    if !ok(len) {
        return Err(HelloError::BadLength { field, len });
    }
    s.skip(len).ok_or(truncated(field))
}

/// Parses the hello body (after the handshake header) from `s`.
#[inline(always)]
fn parse_body<'a, C: Cursor<'a>>(
    mut s: C,
    frame: &records::Frame<'a>,
) -> Result<ClientHello<'a>, HelloError> {
    let legacy_version = s.u16().ok_or(truncated(Field::LegacyVersion))?;
    if legacy_version >> 8 != 3 {
        return Err(HelloError::BadLegacyVersion {
            version: legacy_version,
        });
    }
    s.skip(RANDOM_LEN).ok_or(truncated(Field::Random))?;
    skip_vector(&mut s, Field::SessionId, false, |n| n <= MAX_SESSION_ID_LEN)?;
    skip_vector(&mut s, Field::CipherSuites, true, |n| n >= 2 && n % 2 == 0)?;
    skip_vector(&mut s, Field::CompressionMethods, false, |n| n >= 1)?;

    let mut hello = ClientHello {
        legacy_version,
        server_name: None,
        alpn: None,
        alpn_spans_records: false,
        versions: None,
        consumed: frame.records.len(),
        record_count: frame.record_count,
    };
    // A hello may end after the compression methods (no extensions at all).
    if s.is_empty() {
        return Ok(hello);
    }
    let len = usize::from(s.u16().ok_or(truncated(Field::Extensions))?);
    if len != s.left() {
        return Err(HelloError::BadLength {
            field: Field::Extensions,
            len,
        });
    }
    let mut seen = SeenExtensions::new(s.into_stream());
    while !s.is_empty() {
        let ext_type = s.u16().ok_or(truncated(Field::ExtensionHeader))?;
        let len = s.u16().ok_or(truncated(Field::ExtensionHeader))?;
        let mut data = s
            .take(usize::from(len))
            .ok_or(truncated(Field::ExtensionData))?;
        seen.insert(ext_type)?;
        match ext_type {
            EXT_SERVER_NAME => hello.server_name = parse_server_name(&mut data)?,
            EXT_ALPN => match parse_alpn(&mut data) {
                Ok(list) => hello.alpn = Some(list),
                // The extension's bytes are already consumed as a whole; only its names are
                // out of reach. The SNI still routes the connection.
                Err(HelloError::FieldSpansRecords { .. }) => hello.alpn_spans_records = true,
                Err(e) => return Err(e),
            },
            EXT_SUPPORTED_VERSIONS => hello.versions = Some(parse_versions(&mut data)?),
            _ => {}
        }
    }
    Ok(hello)
}

/// `server_name` (RFC 6066 §3): a non-empty list of (type, u16-prefixed
/// name); at most one `host_name`. Entries of other types are skipped.
#[inline]
fn parse_server_name<'a>(data: &mut impl Cursor<'a>) -> Result<Option<&'a str>, HelloError> {
    let len = usize::from(data.u16().ok_or(truncated(Field::ServerNameList))?);
    if len == 0 || len != data.left() {
        return Err(HelloError::BadLength {
            field: Field::ServerNameList,
            len,
        });
    }
    let mut host = None;
    while !data.is_empty() {
        let name_type = data.u8().ok_or(truncated(Field::ServerName))?;
        let len = usize::from(data.u16().ok_or(truncated(Field::ServerName))?);
        if name_type != SNI_HOST_NAME {
            data.skip(len).ok_or(truncated(Field::ServerName))?;
            continue;
        }
        let raw = data.bytes(len).map_err(borrow_error(Field::HostName))?;
        if host.is_some() {
            return Err(HelloError::DuplicateHostName);
        }
        host = Some(host::validate(raw).map_err(HelloError::BadSni)?);
    }
    Ok(host)
}

/// ALPN (RFC 7301 §3.1): `ProtocolName protocol_name_list<2..2^16-1>` with
/// `opaque ProtocolName<1..2^8-1>`. Returns the list for later iteration
/// after checking that every name can be borrowed.
#[inline]
fn parse_alpn<'a, C: Cursor<'a>>(data: &mut C) -> Result<Stream<'a>, HelloError> {
    let len = usize::from(data.u16().ok_or(truncated(Field::AlpnList))?);
    if len < 2 || len != data.left() {
        return Err(HelloError::BadLength {
            field: Field::AlpnList,
            len,
        });
    }
    let list = data.into_stream();
    while !data.is_empty() {
        let len = usize::from(data.u8().ok_or(truncated(Field::AlpnProtocol))?);
        if len == 0 {
            return Err(HelloError::BadLength {
                field: Field::AlpnProtocol,
                len,
            });
        }
        data.bytes(len).map_err(borrow_error(Field::AlpnProtocol))?;
    }
    Ok(list)
}

/// `supported_versions` in a ClientHello (RFC 8446 §4.2.1):
/// `ProtocolVersion versions<2..254>`.
#[inline]
fn parse_versions<'a, C: Cursor<'a>>(data: &mut C) -> Result<Stream<'a>, HelloError> {
    let len = usize::from(data.u8().ok_or(truncated(Field::SupportedVersions))?);
    if len < 2 || len % 2 != 0 || len != data.left() {
        return Err(HelloError::BadLength {
            field: Field::SupportedVersions,
            len,
        });
    }
    Ok(data.into_stream())
}

/// Extension types seen so far, to refuse duplicates without allocating.
/// Types below 64 (every common one) go in a bit set; up to
/// `HIGH_INLINE` others (GREASE, renegotiation_info, ECH...) in a small array.
/// A hello with more distinct high types than that is checked once, whole,
/// with a full 65536-bit set on the stack.
struct SeenExtensions<'a> {
    low: u64,
    high: [u16; HIGH_INLINE],
    high_len: usize,
    /// The extension list, for the one-off full check.
    block: Stream<'a>,
    /// Set once the full check ran: the whole block has no duplicates.
    checked_all: bool,
}

const HIGH_INLINE: usize = 16;

impl<'a> SeenExtensions<'a> {
    fn new(block: Stream<'a>) -> Self {
        Self {
            low: 0,
            high: [0; HIGH_INLINE],
            high_len: 0,
            block,
            checked_all: false,
        }
    }

    #[inline(always)]
    fn insert(&mut self, ext_type: u16) -> Result<(), HelloError> {
        let duplicate = HelloError::DuplicateExtension { ext_type };
        if ext_type < 64 {
            let bit = 1u64 << ext_type;
            if self.low & bit != 0 {
                return Err(duplicate);
            }
            self.low |= bit;
            return Ok(());
        }
        if self.checked_all {
            return Ok(());
        }
        let seen = self.high.get(..self.high_len).unwrap_or_default();
        if seen.contains(&ext_type) {
            return Err(duplicate);
        }
        if let Some(slot) = self.high.get_mut(self.high_len) {
            *slot = ext_type;
            self.high_len += 1;
            return Ok(());
        }
        self.checked_all = true;
        match first_duplicate(self.block) {
            Some(ext_type) => Err(HelloError::DuplicateExtension { ext_type }),
            None => Ok(()),
        }
    }
}

/// The first extension type that repeats in `block`, stopping quietly at a
/// malformed entry (the main walk reports it).
#[cold]
#[inline(never)]
fn first_duplicate(mut block: Stream<'_>) -> Option<u16> {
    let mut bits = [0u64; 1024];
    while !block.is_empty() {
        let ext_type = block.u16()?;
        let len = block.u16()?;
        block.skip(usize::from(len))?;
        let word = bits.get_mut(usize::from(ext_type >> 6))?;
        let bit = 1u64 << (ext_type & 63);
        if *word & bit != 0 {
            return Some(ext_type);
        }
        *word |= bit;
    }
    None
}
