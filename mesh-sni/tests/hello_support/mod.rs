//! Shared helpers of the ClientHello tests: the captures and their expected
//! contents, a ClientHello builder and a TLS record re-framer.
#![allow(dead_code, unreachable_pub)]

use std::ops::Range;

use mesh_sni::hello::{ClientHello, DEFAULT_MAX_HELLO_LEN, Parse, parse_client_hello};

/// The SNI every capture was made with.
pub const CAPTURE_SNI: &str =
    "web.default.dc1.internal.11111111-2222-3333-4444-555555555555.consul";

/// What a capture must parse to.
pub struct Capture {
    pub file: &'static str,
    pub alpn: Vec<Vec<u8>>,
    pub versions: &'static [u16],
    pub records: usize,
}

const TLS13_AND_DOWN: &[u16] = &[0x0304, 0x0303, 0x0302, 0x0301];

fn names(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|n| n.as_bytes().to_vec()).collect()
}

fn mesh_protos(n: usize) -> Vec<Vec<u8>> {
    let mut all = names(&["h2", "http/1.1"]);
    all.extend((1..=n).map(|i| format!("mesh-proto-{i}").into_bytes()));
    all
}

/// The captures that parse `Done`, with what they hold (see
/// `tests/data/capture.sh` for how each was made).
pub fn captures() -> Vec<Capture> {
    vec![
        Capture {
            file: "curl.bin",
            alpn: names(&["h2", "http/1.1"]),
            versions: TLS13_AND_DOWN,
            records: 1,
        },
        Capture {
            file: "openssl.bin",
            alpn: names(&["h2", "http/1.1"]),
            versions: TLS13_AND_DOWN,
            records: 1,
        },
        Capture {
            file: "openssl_tls12.bin",
            alpn: names(&["http/1.1"]),
            // No supported_versions extension: legacy_version alone.
            versions: &[0x0303],
            records: 1,
        },
        Capture {
            file: "openssl_frag512.bin",
            alpn: mesh_protos(16),
            versions: TLS13_AND_DOWN,
            records: 2,
        },
        Capture {
            file: "rustls.bin",
            alpn: names(&["h2", "http/1.1"]),
            versions: &[0x0304, 0x0303],
            records: 1,
        },
    ]
}

/// The capture whose 512-byte record boundary cuts an ALPN name.
pub const ALPN_SPLIT_CAPTURE: &str = "openssl_frag512_alpn_split.bin";

/// Reads a capture from `tests/data`.
pub fn load(file: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Parses with the default limit and insists on `Done`.
pub fn done(wire: &[u8]) -> ClientHello<'_> {
    match parse_client_hello(wire, DEFAULT_MAX_HELLO_LEN) {
        Parse::Done(hello) => hello,
        other => panic!("expected Done, got {other:?}"),
    }
}

/// One handshake record holding `payload`.
pub fn record(payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("record payload fits u16");
    let mut out = vec![0x16, 0x03, 0x01];
    out.extend(len.to_be_bytes());
    out.extend(payload);
    out
}

/// The handshake bytes carried by the records of `wire` (payloads joined).
pub fn message_of(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = wire;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        out.extend(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    out
}

/// Splits `message` into records whose payload sizes cycle through `sizes`,
/// never cutting inside one of the `protected` ranges (offsets in `message`).
pub fn reframe(message: &[u8], sizes: &[usize], protected: &[Range<usize>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while start < message.len() {
        let mut end = (start + sizes[i % sizes.len()].max(1)).min(message.len());
        i += 1;
        for r in protected {
            if r.start < end && end < r.end {
                end = r.end;
            }
        }
        out.extend(record(&message[start..end]));
        start = end;
    }
    out
}

/// Offsets in the handshake message of the slices a hello parsed from `wire`
/// (one record) hands out: the host name and every ALPN name.
pub fn borrowed_ranges(wire: &[u8], hello: &ClientHello<'_>) -> Vec<Range<usize>> {
    assert_eq!(
        hello.record_count(),
        1,
        "ranges are taken from a one-record hello"
    );
    let base = wire.as_ptr() as usize + 5;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let mut out: Vec<_> = hello
        .server_name()
        .map(|s| range(s.as_bytes()))
        .into_iter()
        .collect();
    out.extend(hello.alpn().map(range));
    out
}

/// Builder of ClientHello handshake messages.
#[derive(Debug, Clone)]
pub struct HelloBuilder {
    pub legacy_version: u16,
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    pub cipher_suites: Vec<u16>,
    pub compression: Vec<u8>,
    /// `None`: the hello ends after the compression methods.
    pub extensions: Option<Vec<(u16, Vec<u8>)>>,
}

impl Default for HelloBuilder {
    fn default() -> Self {
        Self {
            legacy_version: 0x0303,
            random: [0x5a; 32],
            session_id: vec![0x11; 32],
            cipher_suites: vec![0x1301, 0x1302, 0x1303, 0xc02b],
            compression: vec![0],
            extensions: Some(Vec::new()),
        }
    }
}

impl HelloBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an extension with raw data.
    pub fn ext(mut self, ext_type: u16, data: Vec<u8>) -> Self {
        self.extensions
            .get_or_insert_with(Vec::new)
            .push((ext_type, data));
        self
    }

    pub fn sni(self, host: &[u8]) -> Self {
        self.ext(0, sni_ext(&[(0, host)]))
    }

    pub fn alpn(self, names: &[&[u8]]) -> Self {
        self.ext(16, alpn_ext(names))
    }

    pub fn versions(self, versions: &[u16]) -> Self {
        self.ext(43, versions_ext(versions))
    }

    /// The hello body (after the handshake header).
    pub fn body(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(self.legacy_version.to_be_bytes());
        b.extend(self.random);
        b.push(u8::try_from(self.session_id.len()).expect("session id fits u8"));
        b.extend(&self.session_id);
        b.extend(u16_len(self.cipher_suites.len() * 2));
        for s in &self.cipher_suites {
            b.extend(s.to_be_bytes());
        }
        b.push(u8::try_from(self.compression.len()).expect("fits u8"));
        b.extend(&self.compression);
        if let Some(exts) = &self.extensions {
            let mut block = Vec::new();
            for (t, data) in exts {
                block.extend(t.to_be_bytes());
                block.extend(u16_len(data.len()));
                block.extend(data);
            }
            b.extend(u16_len(block.len()));
            b.extend(block);
        }
        b
    }

    /// The handshake message: header and body.
    pub fn message(&self) -> Vec<u8> {
        message(&self.body())
    }

    /// The message in one record.
    pub fn record(&self) -> Vec<u8> {
        record(&self.message())
    }
}

/// A ClientHello handshake message around `body`.
pub fn message(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("fits u24");
    let mut m = vec![0x01];
    m.extend(&len.to_be_bytes()[1..]);
    m.extend(body);
    m
}

pub fn u16_len(n: usize) -> [u8; 2] {
    u16::try_from(n).expect("fits u16").to_be_bytes()
}

/// `server_name` extension data with the given (type, name) entries.
pub fn sni_ext(entries: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (t, name) in entries {
        list.push(*t);
        list.extend(u16_len(name.len()));
        list.extend(*name);
    }
    let mut d = u16_len(list.len()).to_vec();
    d.extend(list);
    d
}

/// ALPN extension data.
pub fn alpn_ext(names: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for n in names {
        list.push(u8::try_from(n.len()).expect("fits u8"));
        list.extend(*n);
    }
    let mut d = u16_len(list.len()).to_vec();
    d.extend(list);
    d
}

/// `supported_versions` extension data (ClientHello form).
pub fn versions_ext(versions: &[u16]) -> Vec<u8> {
    let mut d = vec![u8::try_from(versions.len() * 2).expect("fits u8")];
    for v in versions {
        d.extend(v.to_be_bytes());
    }
    d
}
