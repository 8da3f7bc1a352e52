//! Unit tests of the record cursor, framing and host name rules.

use super::error::HostNameError;
use super::host::{diagnose, validate};
use super::records::{Short, Stream, frame};
use super::*;

fn rec(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x16, 0x03, 0x01, 0x00, payload.len() as u8];
    out.extend(payload);
    out
}

/// Records holding the bytes 0..10 as [0 1 2] [3] [4 5 6 7 8 9].
fn split_stream_bytes() -> Vec<u8> {
    [rec(&[0, 1, 2]), rec(&[3]), rec(&[4, 5, 6, 7, 8, 9])].concat()
}

#[test]
fn stream_reads_integers_across_record_boundaries() {
    let bytes = split_stream_bytes();
    let mut s = Stream::new(&bytes, 10);
    assert_eq!(s.u16(), Some(0x0001));
    assert_eq!(s.u16(), Some(0x0203));
    assert_eq!(s.u8(), Some(4));
    assert_eq!(s.left(), 5);
    s.skip(4).expect("skip inside the last record");
    assert_eq!(s.u16(), None, "one byte left");
}

#[test]
fn stream_skips_across_several_records() {
    let bytes = split_stream_bytes();
    let mut s = Stream::new(&bytes, 10);
    s.skip(5).expect("skip over two boundaries");
    assert_eq!(s.u8(), Some(5));
    assert_eq!(s.skip(5), None, "only four left");
}

#[test]
fn stream_borrows_only_within_one_record() {
    let bytes = split_stream_bytes();
    let mut s = Stream::new(&bytes, 10);
    assert_eq!(s.bytes(2), Ok(&[0u8, 1][..]));
    assert_eq!(s.bytes(2), Err(Short::SpansRecords));
    // A failed borrow moves nothing.
    assert_eq!(s.bytes(1), Ok(&[2u8][..]));
    assert_eq!(s.bytes(0), Ok(&[][..]));
    assert_eq!(s.bytes(1), Ok(&[3u8][..]));
    assert_eq!(s.bytes(7), Err(Short::Truncated));
    assert_eq!(s.bytes(6), Ok(&[4u8, 5, 6, 7, 8, 9][..]));
    assert!(s.is_empty());
}

#[test]
fn stream_views_are_limited_and_independent() {
    let bytes = split_stream_bytes();
    let mut s = Stream::new(&bytes, 10);
    s.skip(1).expect("skip");
    let mut view = s.take(4).expect("four bytes");
    assert_eq!(s.u8(), Some(5), "the parent moved past the view");
    assert_eq!(view.left(), 4);
    assert_eq!(view.u16(), Some(0x0102));
    assert_eq!(view.u16(), Some(0x0304));
    assert_eq!(view.u8(), None, "the view ends after four bytes");
    assert!(s.take(5).is_none(), "only four left in the parent");
}

#[test]
fn stream_over_malformed_records_stops_instead_of_panicking() {
    // A header that claims more payload than there is: refill refuses it.
    let bytes = [0x16, 0x03, 0x01, 0x00, 0x09, 1, 2];
    let mut s = Stream::new(&bytes, 9);
    assert_eq!(s.u8(), None);
    let mut s = Stream::new(&[0x16, 0x03], 4);
    assert_eq!(s.skip(1), None);
    let mut empty = Stream::EMPTY;
    assert_eq!(empty.u16(), None);
}

#[test]
fn frame_collects_the_handshake_header_from_one_byte_records() {
    // Header 01 00 00 02, body aa bb, one byte per record.
    let bytes: Vec<u8> = [1u8, 0, 0, 2, 0xaa, 0xbb]
        .iter()
        .flat_map(|b| rec(&[*b]))
        .collect();
    let f = frame(&bytes, 100).expect("valid").expect("complete");
    assert_eq!((f.body_len, f.record_count, f.records.len()), (2, 6, 36));
    for n in 0..bytes.len() {
        assert!(matches!(frame(&bytes[..n], 100), Ok(None)), "prefix {n}");
    }
}

#[test]
fn frame_stops_at_the_record_that_completes_the_hello() {
    let mut bytes = rec(&[1, 0, 0, 1, 0xaa]);
    bytes.extend(rec(&[0xff]));
    let f = frame(&bytes, 100).expect("valid").expect("complete");
    assert_eq!(f.records.len(), 10);
}

#[test]
fn frame_checks_the_message_type_in_every_header_byte_position() {
    assert_eq!(
        frame(&rec(&[2]), 100).map(|f| f.is_some()),
        Err(HelloError::NotClientHello { msg_type: 2 })
    );
    let bytes = [rec(&[1, 0]), rec(&[0, 1, 7, 7])].concat();
    assert_eq!(
        frame(&bytes, 100).map(|f| f.is_some()),
        Err(HelloError::TrailingRecordData)
    );
}

#[test]
fn buffer_limit_saturates() {
    assert_eq!(buffer_limit(usize::MAX), usize::MAX);
    assert_eq!(buffer_limit(0), 5 * MAX_HELLO_RECORDS);
}

#[test]
fn host_names_follow_dns_rules() {
    for ok in [
        "a",
        "A-b.c",
        "web.default.dc1.internal.td.consul",
        "_x.y",
        "x1.y2z",
        "1a.b",
    ] {
        assert_eq!(validate(ok.as_bytes()), Ok(ok), "{ok}");
    }
    let cases: &[(&str, HostNameError)] = &[
        ("", HostNameError::Empty),
        ("a.", HostNameError::TrailingDot),
        (".", HostNameError::EmptyLabel { at: 0 }),
        ("a-", HostNameError::HyphenAtLabelEdge { at: 1 }),
        ("a.-b", HostNameError::HyphenAtLabelEdge { at: 2 }),
        ("a*b", HostNameError::BadByte { byte: b'*', at: 1 }),
        ("*.example", HostNameError::BadByte { byte: b'*', at: 0 }),
        ("10.0.0.1", HostNameError::IpLiteral),
        ("2001:db8::1", HostNameError::IpLiteral),
        ("::ffff:10.0.0.1", HostNameError::IpLiteral),
        ("42", HostNameError::NumericLastLabel),
        ("256.1.1.1", HostNameError::NumericLastLabel),
    ];
    for (host, want) in cases {
        assert_eq!(validate(host.as_bytes()), Err(*want), "{host:?}");
    }
    let label63 = "a".repeat(63);
    assert!(validate(format!("{label63}.b").as_bytes()).is_ok());
    assert_eq!(
        validate(format!("b.{label63}a").as_bytes()),
        Err(HostNameError::LabelTooLong { at: 2 })
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    #[test]
    fn fast_host_check_agrees_with_the_rule_by_rule_one(
        raw in proptest::collection::vec(
            proptest::sample::select(b"aZ09-_.:\xc3\x00".to_vec()),
            0..80,
        ),
    ) {
        let by_rules = validate(&raw).is_ok();
        proptest::prop_assert_eq!(diagnose(&raw).is_ok(), by_rules);
    }
}

#[test]
fn error_kinds_separate_malformed_refused_and_unsupported() {
    assert_eq!(
        HelloError::TooLong { len: 2, max: 1 }.kind(),
        HelloErrorKind::Refused
    );
    assert_eq!(
        HelloError::TooManyRecords { max: 1 }.kind(),
        HelloErrorKind::Refused
    );
    assert_eq!(
        HelloError::FieldSpansRecords {
            field: Field::HostName
        }
        .kind(),
        HelloErrorKind::Unsupported
    );
    assert_eq!(HelloError::EmptyRecord.kind(), HelloErrorKind::Malformed);
    assert_eq!(Field::SupportedVersions.to_string(), "supported_versions");
}

#[test]
fn debug_of_a_hello_shows_its_fields() {
    let body: Vec<u8> = [
        &[0x03, 0x03][..],                            // legacy_version
        &[0; 32],                                     // random
        &[0],                                         // session id
        &[0, 2, 0x13, 0x01],                          // cipher suites
        &[1, 0],                                      // compression
        &[0, 11],                                     // extensions
        &[0, 16, 0, 7, 0, 5, 2, b'h', b'2', 1, 0xff], // ALPN "h2", "\xff"
    ]
    .concat();
    let mut msg = vec![1, 0, 0, body.len() as u8];
    msg.extend(&body);
    let wire = rec(&msg);
    let Parse::Done(hello) = parse_client_hello(&wire, 1000) else {
        panic!("hand-made hello parses");
    };
    let shown = format!("{hello:?}");
    assert!(shown.contains(r#"alpn: ["h2", "\\xff"]"#), "{shown}");
    assert!(shown.contains(r#"versions: ["0x0303"]"#), "{shown}");
}
