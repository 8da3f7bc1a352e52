//! Property tests of the ClientHello parser: generated hellos round-trip,
//! prefixes of valid input never fail, arbitrary and mutated input never
//! panics, and the documented bounds hold.

mod hello_support;

use hello_support::*;
use mesh_sni::hello::{
    ClientHello, HelloError, MAX_HELLO_RECORDS, Parse, buffer_limit, parse_client_hello,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

const MAX: usize = 16 * 1024;

/// Prefix lengths to try on an input of `len` bytes: all of the first 96
/// (record and handshake headers, early fields), then a stride, then the
/// last 8. Exhaustive prefix checks of the captures live in `hello.rs`.
fn prefix_lengths(len: usize) -> impl Iterator<Item = usize> {
    let head = 0..len.min(96);
    let middle = (96..len).step_by(5);
    let tail = len.saturating_sub(8).max(96)..len;
    head.chain(middle).chain(tail)
}

/// DNS host names: 1 to 5 labels, the last one not all digits.
fn host() -> impl Strategy<Value = String> {
    (
        vec("[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,20}[a-zA-Z0-9_])?", 0..5),
        "[a-z][a-z0-9-]{0,8}[a-z0-9]",
    )
        .prop_map(|(mut labels, last)| {
            labels.push(last);
            labels.join(".")
        })
}

/// What a generated hello holds.
#[derive(Debug, Clone)]
struct Spec {
    builder: HelloBuilder,
    host: Option<String>,
    alpn: Option<Vec<Vec<u8>>>,
    versions: Option<Vec<u16>>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0x0300u16..=0x0303,
        vec(any::<u8>(), 0..=32),
        vec(any::<u16>(), 1..20),
        vec(any::<u8>(), 1..4),
        proptest::option::of(host()),
        proptest::option::of(vec(vec(any::<u8>(), 1..20), 1..6)),
        proptest::option::of(vec(any::<u16>(), 1..10)),
        btree_map(44u16.., vec(any::<u8>(), 0..40), 0..24),
        any::<bool>(),
    )
        .prop_flat_map(
            |(legacy, sid, suites, comp, host, alpn, versions, extra, no_block)| {
                let mut exts: Vec<(u16, Vec<u8>)> = extra.into_iter().collect();
                if let Some(h) = &host {
                    exts.push((0, sni_ext(&[(0, h.as_bytes())])));
                }
                if let Some(a) = &alpn {
                    let names: Vec<&[u8]> = a.iter().map(Vec::as_slice).collect();
                    exts.push((16, alpn_ext(&names)));
                }
                if let Some(v) = &versions {
                    exts.push((43, versions_ext(v)));
                }
                let no_block = no_block && exts.is_empty();
                (
                    Just((legacy, sid, suites, comp, host, alpn, versions, no_block)),
                    Just(exts).prop_shuffle(),
                )
            },
        )
        .prop_map(
            |((legacy, sid, suites, comp, host, alpn, versions, no_block), exts)| Spec {
                builder: HelloBuilder {
                    legacy_version: legacy,
                    random: [0x42; 32],
                    session_id: sid,
                    cipher_suites: suites,
                    compression: comp,
                    extensions: if no_block { None } else { Some(exts) },
                },
                host,
                alpn,
                versions,
            },
        )
}

fn check_matches(hello: &ClientHello<'_>, spec: &Spec) -> Result<(), TestCaseError> {
    prop_assert_eq!(hello.server_name(), spec.host.as_deref());
    let alpn: Vec<Vec<u8>> = hello.alpn().map(<[u8]>::to_vec).collect();
    prop_assert_eq!(alpn, spec.alpn.clone().unwrap_or_default());
    let versions: Vec<u16> = hello.versions().collect();
    let want = spec
        .versions
        .clone()
        .unwrap_or_else(|| vec![spec.builder.legacy_version]);
    prop_assert_eq!(versions, want);
    prop_assert_eq!(hello.legacy_version(), spec.builder.legacy_version);
    Ok(())
}

fn count_records(wire: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = wire;
    while rest.len() >= 5 {
        n += 1;
        rest = &rest[5 + usize::from(u16::from_be_bytes([rest[3], rest[4]]))..];
    }
    n
}

/// Checks the invariants of any outcome on `buf`.
fn check_any(buf: &[u8], max_len: usize) -> Result<(), TestCaseError> {
    match parse_client_hello(buf, max_len) {
        Parse::Done(hello) => {
            prop_assert!(hello.consumed() <= buf.len());
            prop_assert!(hello.consumed() - 5 * hello.record_count() <= max_len);
            if let Some(name) = hello.server_name() {
                prop_assert!(!name.is_empty() && name.len() <= 253);
                prop_assert!(
                    name.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                );
            }
            prop_assert!(hello.versions().count() >= 1);
            prop_assert!(hello.alpn().all(|p| !p.is_empty()));
            for n in prefix_lengths(hello.consumed()) {
                let prefix = parse_client_hello(&buf[..n], max_len);
                prop_assert!(
                    matches!(prefix, Parse::NeedMore),
                    "prefix {}: {:?}",
                    n,
                    prefix
                );
            }
        }
        Parse::NeedMore => prop_assert!(buf.len() < buffer_limit(max_len)),
        Parse::Invalid(_) => {}
    }
    Ok(())
}

proptest! {
    #[test]
    fn generated_hello_round_trips(spec in spec()) {
        let wire = spec.builder.record();
        let hello = match parse_client_hello(&wire, MAX) {
            Parse::Done(hello) => hello,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        check_matches(&hello, &spec)?;
        prop_assert_eq!(hello.consumed(), wire.len());
        for n in prefix_lengths(wire.len()) {
            prop_assert!(matches!(parse_client_hello(&wire[..n], MAX), Parse::NeedMore));
        }
    }

    #[test]
    fn generated_hello_in_many_records_round_trips(
        spec in spec(),
        sizes in vec(1usize..40, 1..8),
    ) {
        let single = spec.builder.record();
        let protected = borrowed_ranges(&single, &done(&single));
        let wire = reframe(&spec.builder.message(), &sizes, &protected);
        let records = count_records(&wire);
        if records > MAX_HELLO_RECORDS {
            let got = parse_client_hello(&wire, MAX);
            let want = HelloError::TooManyRecords { max: MAX_HELLO_RECORDS };
            prop_assert!(matches!(got, Parse::Invalid(e) if e == want), "{:?}", got);
            return Ok(());
        }
        let hello = match parse_client_hello(&wire, MAX) {
            Parse::Done(hello) => hello,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        check_matches(&hello, &spec)?;
        prop_assert_eq!(hello.consumed(), wire.len());
        prop_assert_eq!(hello.record_count(), records);
        for n in prefix_lengths(wire.len()) {
            let prefix = parse_client_hello(&wire[..n], MAX);
            prop_assert!(matches!(prefix, Parse::NeedMore), "prefix {}: {:?}", n, prefix);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in vec(any::<u8>(), 0..600), max_len in 0usize..20_000) {
        check_any(&buf, max_len)?;
    }

    #[test]
    fn arbitrary_bytes_behind_a_plausible_header(
        body in vec(any::<u8>(), 0..600),
        len in any::<u16>(),
        hs_len in 0u32..2000,
    ) {
        let mut buf = vec![0x16, 0x03, 0x01];
        buf.extend(len.to_be_bytes());
        buf.push(0x01);
        buf.extend(&hs_len.to_be_bytes()[1..]);
        buf.extend(body);
        check_any(&buf, MAX)?;
    }

    #[test]
    fn mutated_captures_and_hellos_never_panic(
        which in 0usize..6,
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        max_len in 0usize..20_000,
    ) {
        let mut buf = if which < 5 { load(captures()[which].file) } else { load(ALPN_SPLIT_CAPTURE) };
        for (at, byte) in flips {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        let n = cut.index(buf.len() + 1);
        check_any(&buf, max_len)?;
        check_any(&buf[..n], max_len)?;
    }

    #[test]
    fn records_soup_needs_more_only_below_the_buffer_limit(
        records in vec((1u16..60, any::<u8>(), vec(any::<u8>(), 0..60)), 0..400),
        hs_len in 0u32..3000,
        max_len in 0usize..3000,
    ) {
        let mut message = vec![0x01];
        message.extend(&hs_len.to_be_bytes()[1..]);
        let mut buf = Vec::new();
        let mut pending = message.into_iter();
        for (len, fill, payload) in records {
            buf.extend([0x16, 0x03, 0x01]);
            buf.extend(len.to_be_bytes());
            for i in 0..usize::from(len) {
                let byte = pending.next().unwrap_or_else(|| payload.get(i).copied().unwrap_or(fill));
                buf.push(byte);
            }
        }
        check_any(&buf, max_len)?;
    }

    #[test]
    fn prefix_of_a_valid_hello_is_never_invalid(spec in spec(), cut in any::<prop::sample::Index>()) {
        let wire = spec.builder.record();
        let n = cut.index(wire.len());
        prop_assert!(matches!(parse_client_hello(&wire[..n], MAX), Parse::NeedMore));
    }

    #[test]
    fn smaller_max_len_never_turns_invalid_into_done(
        which in 0usize..5,
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        big in 0usize..2000,
        small in 0usize..2000,
    ) {
        let (small, big) = (small.min(big), small.max(big));
        let mut buf = load(captures()[which].file);
        for (at, byte) in flips {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        let at_big = parse_client_hello(&buf, big);
        let at_small = parse_client_hello(&buf, small);
        if matches!(at_big, Parse::Invalid(_)) {
            prop_assert!(!matches!(at_small, Parse::Done(_)), "{:?} then {:?}", at_big, at_small);
        }
        if matches!(at_small, Parse::Done(_)) {
            prop_assert!(matches!(at_big, Parse::Done(_)));
        }
    }
}
