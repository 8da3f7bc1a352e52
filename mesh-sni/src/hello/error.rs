//! Why a ClientHello was refused.

use std::fmt;

/// The ClientHello field a length or truncation error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// `legacy_version`, the two bytes opening the hello body.
    LegacyVersion,
    /// The 32-byte `random`.
    Random,
    /// `legacy_session_id<0..32>`.
    SessionId,
    /// `cipher_suites<2..2^16-2>`.
    CipherSuites,
    /// `legacy_compression_methods<1..2^8-1>`.
    CompressionMethods,
    /// The length of the whole extensions block.
    Extensions,
    /// The four bytes of type and length opening one extension.
    ExtensionHeader,
    /// The data of one extension.
    ExtensionData,
    /// `server_name_list` of the `server_name` extension.
    ServerNameList,
    /// One entry (type and length) of `server_name_list`.
    ServerName,
    /// The bytes of the `host_name` entry.
    HostName,
    /// `protocol_name_list` of the ALPN extension.
    AlpnList,
    /// One protocol name of the ALPN list.
    AlpnProtocol,
    /// The version list of the `supported_versions` extension.
    SupportedVersions,
}

impl Field {
    /// The field's name as the TLS specifications spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::LegacyVersion => "legacy_version",
            Self::Random => "random",
            Self::SessionId => "legacy_session_id",
            Self::CipherSuites => "cipher_suites",
            Self::CompressionMethods => "legacy_compression_methods",
            Self::Extensions => "extensions",
            Self::ExtensionHeader => "extension header",
            Self::ExtensionData => "extension_data",
            Self::ServerNameList => "server_name_list",
            Self::ServerName => "server_name entry",
            Self::HostName => "host_name",
            Self::AlpnList => "protocol_name_list",
            Self::AlpnProtocol => "ALPN protocol name",
            Self::SupportedVersions => "supported_versions",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Broad class of a [`HelloError`], for metrics and for deciding what to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HelloErrorKind {
    /// The bytes are not a well-formed TLS ClientHello.
    Malformed,
    /// Well-formed, but over a limit this parser enforces (size, record count).
    Refused,
    /// Well-formed, but laid out in a way the zero-copy parser cannot return
    /// as borrowed views (a borrowed field split across records).
    Unsupported,
}

/// Why [`parse_client_hello`](super::parse_client_hello) refused its input.
///
/// One variant per rule. Every variant is decided by bytes already present:
/// a prefix of an acceptable stream never produces one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HelloError {
    /// The first byte is not the handshake content type (22): plain text,
    /// SSLv2-style hello, or another protocol.
    #[error("not a TLS handshake record (content type {content_type})")]
    NotHandshake {
        /// The first byte of the stream.
        content_type: u8,
    },
    /// A record's legacy version is not 3.0 to 3.4.
    #[error("bad TLS record version {version:#06x}")]
    BadRecordVersion {
        /// The record's version field.
        version: u16,
    },
    /// A handshake record with an empty payload (forbidden by RFC 8446 §5.1).
    #[error("empty handshake record")]
    EmptyRecord,
    /// A record longer than [`MAX_RECORD_LEN`](super::MAX_RECORD_LEN).
    #[error("TLS record of {len} bytes is over the limit")]
    RecordTooLong {
        /// The record's declared payload length.
        len: usize,
    },
    /// A record of another content type arrived before the hello was
    /// complete (handshake messages must not be interleaved).
    #[error("record of content type {content_type} inside the ClientHello")]
    InterleavedRecord {
        /// The content type of the interleaved record.
        content_type: u8,
    },
    /// The hello needs more than [`MAX_HELLO_RECORDS`](super::MAX_HELLO_RECORDS) records.
    #[error("ClientHello spread over more than {max} records")]
    TooManyRecords {
        /// The limit.
        max: usize,
    },
    /// The first handshake message is not a ClientHello.
    #[error("first handshake message has type {msg_type}, not ClientHello")]
    NotClientHello {
        /// The handshake message type.
        msg_type: u8,
    },
    /// The declared ClientHello (handshake header included) is over `max_len`.
    #[error("ClientHello of {len} bytes is over the limit of {max}")]
    TooLong {
        /// The declared length of the handshake message, header included.
        len: usize,
        /// The caller's limit.
        max: usize,
    },
    /// The record that ends the hello carries more handshake bytes after it.
    #[error("handshake record carries bytes after the ClientHello")]
    TrailingRecordData,
    /// The hello's `legacy_version` is not a TLS/SSL 3.x version.
    #[error("bad ClientHello legacy_version {version:#06x}")]
    BadLegacyVersion {
        /// The `legacy_version` field.
        version: u16,
    },
    /// A field runs past the end of what encloses it.
    #[error("{field} runs past the end of its enclosing data")]
    Truncated {
        /// The truncated field.
        field: Field,
    },
    /// A length breaks its rule (zero, odd, too big, or not filling its parent).
    #[error("{field} has a bad length ({len})")]
    BadLength {
        /// The field whose length is wrong.
        field: Field,
        /// The offending length.
        len: usize,
    },
    /// The same extension type appears twice (RFC 8446 §4.2).
    #[error("duplicate extension {ext_type}")]
    DuplicateExtension {
        /// The repeated extension type.
        ext_type: u16,
    },
    /// The server name list has two `host_name` entries (RFC 6066 §3).
    #[error("more than one host_name in the server_name extension")]
    DuplicateHostName,
    /// The SNI host name is not a DNS host name.
    #[error("invalid SNI host name")]
    BadSni(#[source] HostNameError),
    /// A field that is returned as a borrowed slice (the SNI host name, an
    /// ALPN protocol name) is split across two TLS records.
    #[error("{field} is split across TLS records")]
    FieldSpansRecords {
        /// The split field.
        field: Field,
    },
}

impl HelloError {
    /// The class of this error.
    pub const fn kind(&self) -> HelloErrorKind {
        match self {
            Self::TooLong { .. } | Self::TooManyRecords { .. } => HelloErrorKind::Refused,
            Self::FieldSpansRecords { .. } => HelloErrorKind::Unsupported,
            _ => HelloErrorKind::Malformed,
        }
    }
}

/// Why an SNI host name was refused. The rules are those of RFC 6066 §3
/// (ASCII, no trailing dot, no IP literal) and of DNS host names (labels of
/// letters, digits and inner hyphens; underscores are tolerated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostNameError {
    /// Zero bytes.
    #[error("empty host name")]
    Empty,
    /// Over 253 bytes.
    #[error("host name of {len} bytes is over 253")]
    TooLong {
        /// The host name's length.
        len: usize,
    },
    /// A label over 63 bytes.
    #[error("label at byte {at} is over 63 bytes")]
    LabelTooLong {
        /// Offset of the label's first byte.
        at: usize,
    },
    /// Two dots in a row, or a leading dot.
    #[error("empty label at byte {at}")]
    EmptyLabel {
        /// Offset of the dot that ends the empty label.
        at: usize,
    },
    /// A trailing dot (RFC 6066 forbids it in SNI).
    #[error("trailing dot")]
    TrailingDot,
    /// A label starts or ends with a hyphen.
    #[error("hyphen at the edge of a label at byte {at}")]
    HyphenAtLabelEdge {
        /// Offset of the hyphen.
        at: usize,
    },
    /// A byte that is not a letter, digit, hyphen, underscore or dot
    /// (this includes every non-ASCII byte).
    #[error("byte {byte:#04x} at {at} is not allowed in a host name")]
    BadByte {
        /// The byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },
    /// An IPv4 or IPv6 literal (RFC 6066 forbids them in SNI).
    #[error("IP literal in SNI")]
    IpLiteral,
    /// The last label is all digits, so the name reads as a number.
    #[error("last label is numeric")]
    NumericLastLabel,
}
