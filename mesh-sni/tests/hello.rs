//! ClientHello parser against real captures (curl, openssl, rustls), their
//! prefixes and re-fragmentations, and one bad input per refusal rule.

mod hello_support;

use hello_support::*;
use mesh_sni::hello::{
    DEFAULT_MAX_HELLO_LEN, Field, HelloError, HelloErrorKind, HostNameError, MAX_HELLO_RECORDS,
    MAX_RECORD_LEN, Parse, buffer_limit, parse_client_hello,
};

fn invalid(buf: &[u8]) -> HelloError {
    invalid_with(buf, DEFAULT_MAX_HELLO_LEN)
}

fn invalid_with(buf: &[u8], max_len: usize) -> HelloError {
    match parse_client_hello(buf, max_len) {
        Parse::Invalid(e) => e,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn need_more(buf: &[u8]) -> bool {
    matches!(
        parse_client_hello(buf, DEFAULT_MAX_HELLO_LEN),
        Parse::NeedMore
    )
}

/// Asserts that every strict prefix of `wire` needs more bytes.
fn assert_prefixes_need_more(wire: &[u8], what: &str) {
    for n in 0..wire.len() {
        let got = parse_client_hello(&wire[..n], DEFAULT_MAX_HELLO_LEN);
        assert!(
            matches!(got, Parse::NeedMore),
            "{what}: prefix {n}/{}: {got:?}",
            wire.len()
        );
    }
}

fn assert_matches_capture(wire: &[u8], c: &Capture) {
    let hello = done(wire);
    assert_eq!(hello.server_name(), Some(CAPTURE_SNI), "{}", c.file);
    assert_eq!(
        hello.alpn().map(<[u8]>::to_vec).collect::<Vec<_>>(),
        c.alpn,
        "{}",
        c.file
    );
    assert!(hello.has_alpn());
    assert_eq!(
        hello.versions().collect::<Vec<_>>(),
        c.versions,
        "{}",
        c.file
    );
    assert_eq!(hello.versions().len(), c.versions.len());
    assert_eq!(hello.legacy_version(), 0x0303);
    assert_eq!(hello.consumed(), wire.len(), "{}", c.file);
}

/// Size patterns for re-framing: 1-byte records first (the record and
/// handshake headers get cut everywhere), then mixed sizes.
const PATTERNS: &[&[usize]] = &[
    &[1, 1, 1, 1, 2, 3, 5, 8, 13],
    &[2, 7, 3],
    &[3],
    &[5, 1, 9, 2, 4, 6],
    &[37],
    &[200, 1],
];

// ---- captures --------------------------------------------------------------

#[test]
fn captures_parse_to_their_sni_alpn_and_versions() {
    for c in captures() {
        let wire = load(c.file);
        assert_matches_capture(&wire, &c);
        assert_eq!(done(&wire).record_count(), c.records, "{}", c.file);
    }
}

#[test]
fn every_prefix_of_every_capture_needs_more() {
    for c in captures() {
        assert_prefixes_need_more(&load(c.file), c.file);
    }
    assert_prefixes_need_more(&load(ALPN_SPLIT_CAPTURE), ALPN_SPLIT_CAPTURE);
}

#[test]
fn captures_refragmented_into_small_records_parse_the_same() {
    for c in captures() {
        let message = message_of(&load(c.file));
        let single = record(&message);
        assert_matches_capture(&single, &c);
        let protected = borrowed_ranges(&single, &done(&single));
        for sizes in PATTERNS {
            let wire = reframe(&message, sizes, &protected);
            assert_matches_capture(&wire, &c);
            assert!(done(&wire).record_count() > 1 || sizes[0] >= message.len());
            assert_prefixes_need_more(&wire, c.file);
        }
    }
}

#[test]
fn bytes_after_the_hello_records_are_not_consumed() {
    for c in captures() {
        let mut wire = load(c.file);
        let len = wire.len();
        // 0-RTT style application data, then a second hello: both ignored.
        wire.extend([0x17, 0x03, 0x03, 0x00, 0x02, 0xaa, 0xbb]);
        wire.extend(load(c.file));
        assert_eq!(done(&wire).consumed(), len, "{}", c.file);
    }
}

#[test]
fn openssl_record_boundary_inside_an_alpn_name_still_routes() {
    let wire = load(ALPN_SPLIT_CAPTURE);
    let hello = done(&wire);
    assert_eq!(hello.server_name(), Some(CAPTURE_SNI));
    assert!(hello.alpn_spans_records());
    assert!(!hello.has_alpn());
    assert_eq!(hello.alpn().count(), 0);
    // The same hello in one record parses: the limit is the zero-copy view only.
    let single = record(&message_of(&wire));
    let hello = done(&single);
    assert_eq!(hello.server_name(), Some(CAPTURE_SNI));
    assert_eq!(hello.alpn().count(), 42);
    assert_eq!(hello.alpn().nth(37), Some(&b"mesh-proto-36"[..]));
}

#[test]
fn record_boundary_inside_the_host_name_is_unsupported() {
    let message = message_of(&load("curl.bin"));
    let single = record(&message);
    let host = borrowed_ranges(&single, &done(&single))[0].clone();
    for cut in host.start + 1..host.end {
        let wire = [record(&message[..cut]), record(&message[cut..])].concat();
        assert_eq!(
            invalid(&wire),
            HelloError::FieldSpansRecords {
                field: Field::HostName
            }
        );
    }
    // Cuts right at its edges are fine.
    for cut in [host.start, host.end] {
        let wire = [record(&message[..cut]), record(&message[cut..])].concat();
        assert_eq!(done(&wire).server_name(), Some(CAPTURE_SNI));
    }
}

#[test]
fn hello_without_extensions_has_no_sni_and_legacy_version_only() {
    let mut b = HelloBuilder::new();
    b.extensions = None;
    b.legacy_version = 0x0301;
    let wire = b.record();
    let hello = done(&wire);
    assert_eq!(hello.server_name(), None);
    assert!(!hello.has_alpn());
    assert_eq!(hello.alpn().count(), 0);
    assert_eq!(hello.versions().collect::<Vec<_>>(), [0x0301]);
    // An empty extensions block is the same.
    let wire = HelloBuilder::new().record();
    assert_eq!(done(&wire).server_name(), None);
}

#[test]
fn sni_entries_of_unknown_types_are_skipped() {
    let wire = HelloBuilder::new()
        .ext(0, sni_ext(&[(7, b"opaque"), (0, b"api.example"), (9, b"")]))
        .record();
    assert_eq!(done(&wire).server_name(), Some("api.example"));
    let wire = HelloBuilder::new()
        .ext(0, sni_ext(&[(7, b"opaque")]))
        .record();
    assert_eq!(done(&wire).server_name(), None);
}

#[test]
fn host_name_case_and_underscores_are_kept() {
    let wire = HelloBuilder::new()
        .sni(b"_Svc.Web-1.EXAMPLE.consul")
        .record();
    assert_eq!(done(&wire).server_name(), Some("_Svc.Web-1.EXAMPLE.consul"));
}

#[test]
fn exactly_max_len_is_accepted_and_one_byte_less_refused() {
    let wire = load("curl.bin");
    let hello_len = message_of(&wire).len();
    assert!(matches!(
        parse_client_hello(&wire, hello_len),
        Parse::Done(_)
    ));
    assert_eq!(
        invalid_with(&wire, hello_len - 1),
        HelloError::TooLong {
            len: hello_len,
            max: hello_len - 1
        }
    );
}

#[test]
fn exactly_max_hello_records_are_accepted() {
    // The 1-byte records end before the host name.
    let message = HelloBuilder::new()
        .ext(0xffff, vec![0; 300])
        .sni(b"a.b")
        .message();
    let mut sizes = vec![1; MAX_HELLO_RECORDS - 1];
    sizes.push(message.len());
    let wire = reframe(&message, &sizes, &[]);
    let hello = done(&wire);
    assert_eq!(hello.record_count(), MAX_HELLO_RECORDS);
    assert_eq!(hello.server_name(), Some("a.b"));
}

#[test]
fn grease_and_many_unknown_extensions_are_accepted() {
    let mut b = HelloBuilder::new()
        .sni(b"web.example")
        .versions(&[0x0a0a, 0x0304, 0x0303]);
    for t in [0x0a0a, 0x1a1a, 0xff01, 0xfe0d, 0x4469] {
        b = b.ext(t, vec![]);
    }
    // More distinct high types than the inline set holds: the full check runs.
    for t in 0..40u16 {
        b = b.ext(0x8000 + t, vec![t as u8]);
    }
    let wire = b.record();
    let hello = done(&wire);
    assert_eq!(
        hello.versions().collect::<Vec<_>>(),
        [0x0a0a, 0x0304, 0x0303]
    );
    assert_eq!(hello.server_name(), Some("web.example"));
}

#[test]
fn buffer_limit_covers_the_largest_acceptable_hello() {
    // The worst case the limit is for: a max_len hello in MAX_HELLO_RECORDS records.
    let max_len = 2000;
    let mut b = HelloBuilder::new();
    let base = b.message().len();
    b = b.ext(0xffff, vec![0; max_len - base - 4]);
    let message = b.message();
    assert_eq!(message.len(), max_len);
    let mut sizes = vec![1; MAX_HELLO_RECORDS - 1];
    sizes.push(max_len);
    let wire = reframe(&message, &sizes, &[]);
    assert_eq!(wire.len(), buffer_limit(max_len));
    assert!(matches!(parse_client_hello(&wire, max_len), Parse::Done(_)));
    assert!(matches!(
        parse_client_hello(&wire[..wire.len() - 1], max_len),
        Parse::NeedMore
    ));
}

// ---- one test per refusal rule ---------------------------------------------

#[test]
fn not_handshake() {
    assert_eq!(
        invalid(b"GET / HTTP/1.1\r\n"),
        HelloError::NotHandshake { content_type: b'G' }
    );
    // SSLv2-compatible hello.
    assert_eq!(
        invalid(&[0x80, 0x2e, 0x01]),
        HelloError::NotHandshake { content_type: 0x80 }
    );
    // Decided by the first byte alone.
    assert_eq!(
        invalid(&[0x17]),
        HelloError::NotHandshake { content_type: 0x17 }
    );
}

#[test]
fn bad_record_version() {
    assert_eq!(
        invalid(&[0x16, 0x02, 0x00]),
        HelloError::BadRecordVersion { version: 0x0200 }
    );
    assert_eq!(
        invalid(&[0x16, 0x03, 0x05]),
        HelloError::BadRecordVersion { version: 0x0305 }
    );
    assert!(need_more(&[0x16, 0x03]));
    for minor in 0..=4 {
        assert!(need_more(&[0x16, 0x03, minor, 0x00]));
    }
    // A later record is checked the same way.
    let m = HelloBuilder::new().message();
    let mut wire = record(&m[..10]);
    wire.extend([0x16, 0xfe, 0xfd]);
    assert_eq!(
        invalid(&wire),
        HelloError::BadRecordVersion { version: 0xfefd }
    );
}

#[test]
fn empty_record() {
    assert_eq!(
        invalid(&[0x16, 0x03, 0x01, 0x00, 0x00]),
        HelloError::EmptyRecord
    );
    let m = HelloBuilder::new().message();
    let wire = [record(&m[..3]), vec![0x16, 0x03, 0x01, 0x00, 0x00]].concat();
    assert_eq!(invalid(&wire), HelloError::EmptyRecord);
}

#[test]
fn record_too_long() {
    let over = u16::try_from(MAX_RECORD_LEN + 1)
        .expect("fits u16")
        .to_be_bytes();
    assert_eq!(
        invalid(&[0x16, 0x03, 0x01, over[0], over[1]]),
        HelloError::RecordTooLong {
            len: MAX_RECORD_LEN + 1
        }
    );
    let max = u16::try_from(MAX_RECORD_LEN)
        .expect("fits u16")
        .to_be_bytes();
    assert!(need_more(&[0x16, 0x03, 0x01, max[0], max[1]]));
}

#[test]
fn interleaved_record() {
    let m = HelloBuilder::new().message();
    let wire = [
        record(&m[..20]),
        vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
    ]
    .concat();
    assert_eq!(
        invalid(&wire),
        HelloError::InterleavedRecord { content_type: 0x15 }
    );
}

#[test]
fn too_many_records() {
    let message = HelloBuilder::new()
        .sni(b"a.b")
        .ext(0xffff, vec![0; 300])
        .message();
    assert!(message.len() > MAX_HELLO_RECORDS);
    let wire = reframe(&message, &[1], &[]);
    let err = invalid(&wire);
    assert_eq!(
        err,
        HelloError::TooManyRecords {
            max: MAX_HELLO_RECORDS
        }
    );
    assert_eq!(err.kind(), HelloErrorKind::Refused);
    // Refused at the first byte of the record that would be one too many.
    assert_eq!(invalid(&wire[..6 * MAX_HELLO_RECORDS + 1]), err);
    assert!(need_more(&wire[..6 * MAX_HELLO_RECORDS]));
}

#[test]
fn not_client_hello() {
    // A ServerHello header, decided by its first byte.
    assert_eq!(
        invalid(&[0x16, 0x03, 0x03, 0x00, 0x40, 0x02]),
        HelloError::NotClientHello { msg_type: 2 }
    );
    // The type byte may be a record of its own.
    assert_eq!(
        invalid(&[0x16, 0x03, 0x01, 0x00, 0x01, 0x0b]),
        HelloError::NotClientHello { msg_type: 0x0b }
    );
}

#[test]
fn too_long_is_refused_from_the_declared_length() {
    // Header only: 16 KiB + 1 declared, nothing of the body sent.
    let body_len = DEFAULT_MAX_HELLO_LEN - 4 + 1;
    let len = u32::try_from(body_len).expect("fits u32").to_be_bytes();
    let buf = [0x16, 0x03, 0x01, 0x40, 0x00, 0x01, len[1], len[2], len[3]];
    let err = invalid(&buf);
    assert_eq!(
        err,
        HelloError::TooLong {
            len: DEFAULT_MAX_HELLO_LEN + 1,
            max: DEFAULT_MAX_HELLO_LEN
        }
    );
    assert_eq!(err.kind(), HelloErrorKind::Refused);
    // Also with the handshake header cut across four records.
    let header = [0x01, len[1], len[2], len[3]];
    let wire = reframe(&header, &[1], &[]);
    assert!(need_more(&wire[..wire.len() - 1]));
    assert_eq!(invalid(&wire), err);
    // And a small caller limit.
    let wire = load("rustls.bin");
    assert!(matches!(
        invalid_with(&wire[..9], 100),
        HelloError::TooLong { max: 100, .. }
    ));
}

#[test]
fn trailing_record_data() {
    let mut payload = HelloBuilder::new().message();
    payload.push(0x00);
    let wire = record(&payload);
    assert_eq!(invalid(&wire), HelloError::TrailingRecordData);
    // Known from the two headers, before the body arrives.
    assert_eq!(invalid(&wire[..9]), HelloError::TrailingRecordData);
}

#[test]
fn bad_legacy_version() {
    let mut b = HelloBuilder::new();
    b.legacy_version = 0x0200;
    assert_eq!(
        invalid(&b.record()),
        HelloError::BadLegacyVersion { version: 0x0200 }
    );
    b.legacy_version = 0xfefd; // DTLS 1.2
    assert_eq!(
        invalid(&b.record()),
        HelloError::BadLegacyVersion { version: 0xfefd }
    );
}

/// Bodies cut short at each fixed field and length prefix.
#[test]
fn truncated_fields() {
    let body = HelloBuilder::new().body();
    let truncated = |n: usize| invalid(&record(&message(&body[..n])));
    let t = |field| HelloError::Truncated { field };
    assert_eq!(truncated(0), t(Field::LegacyVersion));
    assert_eq!(truncated(1), t(Field::LegacyVersion));
    assert_eq!(truncated(2), t(Field::Random));
    assert_eq!(truncated(33), t(Field::Random));
    assert_eq!(truncated(34), t(Field::SessionId));
    assert_eq!(truncated(40), t(Field::SessionId));
    assert_eq!(truncated(67), t(Field::CipherSuites));
    assert_eq!(truncated(70), t(Field::CipherSuites));
    assert_eq!(truncated(77), t(Field::CompressionMethods));
    assert_eq!(truncated(78), t(Field::CompressionMethods));
    // 79 bytes: the hello ends after the compression methods, which is legal.
    assert!(matches!(
        parse_client_hello(&record(&message(&body[..79])), DEFAULT_MAX_HELLO_LEN),
        Parse::Done(_)
    ));
    assert_eq!(truncated(80), t(Field::Extensions));
}

#[test]
fn truncated_extension_parts() {
    let t = |field| HelloError::Truncated { field };
    let with_block = |block: &[u8]| {
        let mut b = HelloBuilder::new();
        b.extensions = None;
        let mut body = b.body();
        body.extend(u16_len(block.len()));
        body.extend(block);
        record(&message(&body))
    };
    assert_eq!(
        invalid(&with_block(&[0x00, 0x17, 0x00])),
        t(Field::ExtensionHeader)
    );
    assert_eq!(
        invalid(&with_block(&[0x00, 0x17, 0x00, 0x02, 0x01])),
        t(Field::ExtensionData)
    );

    let ext = |ext_type: u16, data: &[u8]| {
        invalid(&HelloBuilder::new().ext(ext_type, data.to_vec()).record())
    };
    assert_eq!(ext(0, &[]), t(Field::ServerNameList));
    assert_eq!(ext(0, &[0x00]), t(Field::ServerNameList));
    assert_eq!(ext(0, &[0x00, 0x02, 0x00, 0x00]), t(Field::ServerName));
    assert_eq!(
        ext(0, &[0x00, 0x03, 0x07, 0x00, 0x01]),
        t(Field::ServerName)
    );
    assert_eq!(
        ext(0, &[0x00, 0x04, 0x00, 0x00, 0x02, b'a']),
        t(Field::HostName)
    );
    assert_eq!(ext(16, &[0x00]), t(Field::AlpnList));
    assert_eq!(ext(16, &[0x00, 0x02, 0x05, b'h']), t(Field::AlpnProtocol));
    assert_eq!(ext(43, &[]), t(Field::SupportedVersions));
}

#[test]
fn bad_lengths() {
    let bad = |field, len| HelloError::BadLength { field, len };
    let mut b = HelloBuilder::new();
    b.session_id = vec![0; 33];
    assert_eq!(invalid(&b.record()), bad(Field::SessionId, 33));

    let mut b = HelloBuilder::new();
    b.cipher_suites.clear();
    assert_eq!(invalid(&b.record()), bad(Field::CipherSuites, 0));
    let mut body = HelloBuilder::new().body();
    body[34 + 33 + 1] = 7; // cipher_suites length 7 (odd); the rest is garbage
    assert_eq!(
        invalid(&record(&message(&body))),
        bad(Field::CipherSuites, 7)
    );

    let mut b = HelloBuilder::new();
    b.compression.clear();
    assert_eq!(invalid(&b.record()), bad(Field::CompressionMethods, 0));

    // The extensions block must fill the rest of the hello exactly.
    let mut body = HelloBuilder::new().sni(b"a.b").body();
    body.push(0);
    let ext_len = body.len() - 79 - 2 - 1;
    assert_eq!(
        invalid(&record(&message(&body))),
        bad(Field::Extensions, ext_len)
    );

    let ext = |ext_type: u16, data: &[u8]| {
        invalid(&HelloBuilder::new().ext(ext_type, data.to_vec()).record())
    };
    assert_eq!(ext(0, &[0x00, 0x00]), bad(Field::ServerNameList, 0));
    assert_eq!(
        ext(0, &[0x00, 0x09, 0x00, 0x00, 0x01, b'a']),
        bad(Field::ServerNameList, 9)
    );
    assert_eq!(
        ext(0, &[0x00, 0x02, 0x00, 0x00, 0x01, b'a']),
        bad(Field::ServerNameList, 2)
    );
    assert_eq!(ext(16, &[0x00, 0x00]), bad(Field::AlpnList, 0));
    assert_eq!(ext(16, &[0x00, 0x01, 0x00]), bad(Field::AlpnList, 1));
    assert_eq!(
        ext(16, &[0x00, 0x03, 0x02, b'h', b'2', 0x00]),
        bad(Field::AlpnList, 3)
    );
    assert_eq!(
        ext(16, &[0x00, 0x04, 0x02, b'h', b'2', 0x00]),
        bad(Field::AlpnProtocol, 0)
    );
    assert_eq!(ext(43, &[0x00]), bad(Field::SupportedVersions, 0));
    assert_eq!(
        ext(43, &[0x03, 0x03, 0x04, 0x03]),
        bad(Field::SupportedVersions, 3)
    );
    assert_eq!(
        ext(43, &[0x04, 0x03, 0x04]),
        bad(Field::SupportedVersions, 4)
    );
    assert_eq!(
        ext(43, &[0x02, 0x03, 0x04, 0x03, 0x03]),
        bad(Field::SupportedVersions, 2)
    );
}

#[test]
fn duplicate_extension() {
    let dup = |ext_type| HelloError::DuplicateExtension { ext_type };
    let b = HelloBuilder::new().sni(b"a.b").sni(b"c.d");
    assert_eq!(invalid(&b.record()), dup(0));
    let b = HelloBuilder::new()
        .alpn(&[b"h2"])
        .ext(23, vec![])
        .alpn(&[b"h3"]);
    assert_eq!(invalid(&b.record()), dup(16));
    let b = HelloBuilder::new()
        .ext(0xff01, vec![0])
        .ext(0x0a0a, vec![])
        .ext(0xff01, vec![0]);
    assert_eq!(invalid(&b.record()), dup(0xff01));
    // Past the inline set of high types, the full check catches it.
    let mut b = HelloBuilder::new();
    for t in 0..30u16 {
        b = b.ext(0x9000 + t, vec![]);
    }
    let b = b.ext(0x9003, vec![]);
    assert_eq!(invalid(&b.record()), dup(0x9003));
}

#[test]
fn duplicate_host_name() {
    let wire = HelloBuilder::new()
        .ext(0, sni_ext(&[(0, b"a.b"), (0, b"c.d")]))
        .record();
    assert_eq!(invalid(&wire), HelloError::DuplicateHostName);
}

#[test]
fn bad_sni_host_names() {
    let cases: &[(&[u8], HostNameError)] = &[
        (b"", HostNameError::Empty),
        (&[b'a'; 254], HostNameError::TooLong { len: 254 }),
        (
            &[[b'a'; 64].as_slice(), b".b"].concat(),
            HostNameError::LabelTooLong { at: 0 },
        ),
        (b"a..b", HostNameError::EmptyLabel { at: 2 }),
        (b".a", HostNameError::EmptyLabel { at: 0 }),
        (b"web.consul.", HostNameError::TrailingDot),
        (b"-web.consul", HostNameError::HyphenAtLabelEdge { at: 0 }),
        (b"web-.consul", HostNameError::HyphenAtLabelEdge { at: 3 }),
        (b"web.consul-", HostNameError::HyphenAtLabelEdge { at: 10 }),
        (b"we b", HostNameError::BadByte { byte: b' ', at: 2 }),
        (
            "caf\u{e9}.example".as_bytes(),
            HostNameError::BadByte { byte: 0xc3, at: 3 },
        ),
        (b"a\0b", HostNameError::BadByte { byte: 0, at: 1 }),
        (b"[::1]", HostNameError::BadByte { byte: b'[', at: 0 }),
        (b"127.0.0.1", HostNameError::IpLiteral),
        (b"::1", HostNameError::IpLiteral),
        (b"fe80::1:2", HostNameError::IpLiteral),
        (b"host:443", HostNameError::BadByte { byte: b':', at: 4 }),
        (b"1.2.3", HostNameError::NumericLastLabel),
        (b"example.123", HostNameError::NumericLastLabel),
    ];
    for (host, want) in cases {
        let err = invalid(&HelloBuilder::new().sni(host).record());
        assert_eq!(err, HelloError::BadSni(*want), "{}", host.escape_ascii());
        assert_eq!(err.kind(), HelloErrorKind::Malformed);
        assert!(std::error::Error::source(&err).is_some());
    }
    // The limits themselves are fine.
    let label = [b'a'; 63];
    let long = [
        &label[..],
        b".",
        &label[..],
        b".",
        &label[..],
        b".",
        &[b'b'; 61][..],
    ]
    .concat();
    assert_eq!(long.len(), 253);
    let wire = HelloBuilder::new().sni(&long).record();
    assert_eq!(done(&wire).server_name().map(str::len), Some(253));
    let wire = HelloBuilder::new().sni(b"1.2.3.example").record();
    assert_eq!(done(&wire).server_name(), Some("1.2.3.example"));
}

#[test]
fn an_alpn_name_split_across_records_leaves_alpn_unavailable() {
    let message = HelloBuilder::new().alpn(&[b"h2", b"http/1.1"]).message();
    let single = record(&message);
    let ranges = borrowed_ranges(&single, &done(&single));
    let http = ranges[1].clone();
    let wire = [
        record(&message[..http.start + 3]),
        record(&message[http.start + 3..]),
    ]
    .concat();
    let hello = done(&wire);
    assert!(hello.alpn_spans_records());
    assert_eq!(hello.alpn().count(), 0);
    assert_eq!(
        HelloError::FieldSpansRecords {
            field: Field::AlpnProtocol
        }
        .to_string(),
        "ALPN protocol name is split across TLS records"
    );
}

#[test]
fn errors_display_the_broken_rule() {
    assert_eq!(
        HelloError::TooLong {
            len: 20000,
            max: 16384
        }
        .to_string(),
        "ClientHello of 20000 bytes is over the limit of 16384"
    );
    assert_eq!(
        HelloError::BadLength {
            field: Field::CipherSuites,
            len: 7
        }
        .to_string(),
        "cipher_suites has a bad length (7)"
    );
    assert_eq!(
        HelloError::BadSni(HostNameError::IpLiteral).to_string(),
        "invalid SNI host name"
    );
}
