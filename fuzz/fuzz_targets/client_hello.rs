//! Parses arbitrary bytes as the start of a TLS stream and checks the
//! ClientHello parser's promises, not just that it does not panic:
//! * `Done`: consumed <= len, the SNI is a valid host name, every prefix of
//!   the hello's records needs more, and the records alone parse the same;
//! * `NeedMore`: the buffer is shorter than `buffer_limit(max_len)`;
//! * a smaller `max_len` never turns `Invalid` into `Done`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_sni::hello::{DEFAULT_MAX_HELLO_LEN, Parse, buffer_limit, parse_client_hello};

const SMALLER_LIMITS: [usize; 7] = [0, 4, 64, 300, 512, 1024, 4096];

fn assert_host_name(name: &str) {
    assert!(!name.is_empty() && name.len() <= 253, "{name:?}");
    for label in name.split('.') {
        assert!(!label.is_empty() && label.len() <= 63, "{name:?}");
        assert!(!label.starts_with('-') && !label.ends_with('-'), "{name:?}");
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{name:?}"
        );
    }
    assert!(name.parse::<std::net::IpAddr>().is_err(), "{name:?}");
}

fuzz_target!(|data: &[u8]| {
    match parse_client_hello(data, DEFAULT_MAX_HELLO_LEN) {
        Parse::Done(hello) => {
            let consumed = hello.consumed();
            assert!(consumed <= data.len());
            if let Some(name) = hello.server_name() {
                assert_host_name(name);
            }
            assert!(hello.alpn().all(|p| !p.is_empty()));
            assert!(hello.versions().count() >= 1);
            // Every prefix of the hello's records needs more (all of them
            // for normal sizes, a stride through very long ones).
            let step = if consumed <= 2048 { 1 } else { 7 };
            for n in (0..consumed).step_by(step) {
                assert!(matches!(
                    parse_client_hello(&data[..n], DEFAULT_MAX_HELLO_LEN),
                    Parse::NeedMore
                ));
            }
            // The bytes after the hello play no part.
            let Parse::Done(alone) = parse_client_hello(&data[..consumed], DEFAULT_MAX_HELLO_LEN)
            else {
                panic!("the hello's own records must parse alone");
            };
            assert_eq!(alone.server_name(), hello.server_name());
            assert!(alone.alpn().eq(hello.alpn()));
            assert!(alone.versions().eq(hello.versions()));
        }
        Parse::NeedMore => assert!(data.len() < buffer_limit(DEFAULT_MAX_HELLO_LEN)),
        Parse::Invalid(_) => {
            for max_len in SMALLER_LIMITS
                .into_iter()
                .chain([data.len(), data.len() / 2])
            {
                assert!(!matches!(parse_client_hello(data, max_len), Parse::Done(_)));
            }
        }
    }
});
