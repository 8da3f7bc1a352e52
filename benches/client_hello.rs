//! ClientHello SNI peek: mesh-sni's zero-copy parser against `tls-parser` on
//! the same real captures (curl, openssl, rustls; `mesh-sni/tests/data`).
//!
//! Run: `cargo bench --bench client_hello` (add `-- --quick` for a short run).
//! After criterion's report it prints a summary of ns per hello and the
//! speed-up, from a plain timing loop over the same inputs.
//!
//! Both sides do what a gateway needs: frame the records, find the ClientHello
//! and return the SNI host name. tls-parser needs the records joined first
//! when the hello is fragmented, so that capture includes the copy.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mesh_sni::hello::{DEFAULT_MAX_HELLO_LEN, Parse, parse_client_hello};
use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_extensions,
    parse_tls_message_handshake, parse_tls_plaintext, parse_tls_raw_record,
};

const SNI: &str = "web.default.dc1.internal.11111111-2222-3333-4444-555555555555.consul";

macro_rules! capture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/mesh-sni/tests/data/",
                $name,
                ".bin"
            ))
            .as_slice(),
        )
    };
}

const CAPTURES: &[(&str, &[u8])] = &[
    capture!("curl"),
    capture!("openssl"),
    capture!("openssl_tls12"),
    capture!("rustls"),
    capture!("openssl_frag512"),
];

/// mesh-sni: the SNI length (the `&str` itself borrows from `wire`).
fn mesh_sni(wire: &[u8]) -> Option<usize> {
    match parse_client_hello(wire, DEFAULT_MAX_HELLO_LEN) {
        Parse::Done(hello) => hello.server_name().map(str::len),
        _ => None,
    }
}

/// mesh-sni, reading everything it offers: SNI, ALPN names and versions.
fn mesh_sni_all(wire: &[u8]) -> Option<usize> {
    match parse_client_hello(wire, DEFAULT_MAX_HELLO_LEN) {
        Parse::Done(hello) => Some(
            hello.server_name().map_or(0, str::len)
                + hello.alpn().map(<[u8]>::len).sum::<usize>()
                + hello.versions().map(usize::from).sum::<usize>(),
        ),
        _ => None,
    }
}

/// tls-parser: `parse_tls_plaintext`, the ClientHello, `parse_tls_extensions`,
/// then the host_name of the SNI extension. A fragmented hello is joined
/// from its raw records first, as tls-parser needs it contiguous.
fn tls_parser(wire: &[u8]) -> Option<usize> {
    if let Ok((_, plain)) = parse_tls_plaintext(wire) {
        return plain.msg.first().and_then(sni_of);
    }
    let mut joined = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let (r, record) = parse_tls_raw_record(rest).ok()?;
        joined.extend_from_slice(record.data);
        rest = r;
    }
    let (_, msg) = parse_tls_message_handshake(&joined).ok()?;
    sni_of(&msg)
}

fn sni_of(msg: &TlsMessage<'_>) -> Option<usize> {
    let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = msg else {
        return None;
    };
    let (_, exts) = parse_tls_extensions(hello.ext?).ok()?;
    exts.iter().find_map(|ext| match ext {
        TlsExtension::SNI(names) => names
            .iter()
            .find(|(kind, _)| *kind == SNIType::HostName)
            .map(|(_, name)| name.len()),
        _ => None,
    })
}

fn check_agreement() {
    for (name, wire) in CAPTURES {
        assert_eq!(mesh_sni(wire), Some(SNI.len()), "mesh-sni on {name}");
        assert_eq!(tls_parser(wire), Some(SNI.len()), "tls-parser on {name}");
        assert!(mesh_sni_all(wire).is_some());
    }
}

fn bench(c: &mut Criterion) {
    check_agreement();
    for (name, wire) in CAPTURES {
        let mut group = c.benchmark_group(format!("client_hello/{name}"));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function("mesh_sni", |b| b.iter(|| mesh_sni(black_box(wire))));
        group.bench_function("mesh_sni_all_fields", |b| {
            b.iter(|| mesh_sni_all(black_box(wire)))
        });
        group.bench_function("tls_parser", |b| b.iter(|| tls_parser(black_box(wire))));
        group.finish();
    }
}

/// Mean ns per call over a fixed wall-clock budget.
fn ns_per_call(f: fn(&[u8]) -> Option<usize>, wire: &[u8], budget: Duration) -> f64 {
    let mut calls = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..1000 {
            black_box(f(black_box(wire)));
        }
        calls += 1000;
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn print_ratios() {
    let budget = Duration::from_millis(300);
    println!("\nClientHello SNI peek, ns per hello (timing loop, {budget:?} per cell):");
    println!(
        "{:<18} {:>6} {:>10} {:>12} {:>8}",
        "capture", "bytes", "mesh-sni", "tls-parser", "ratio"
    );
    for (name, wire) in CAPTURES {
        let ours = ns_per_call(mesh_sni, wire, budget);
        let theirs = ns_per_call(tls_parser, wire, budget);
        println!(
            "{name:<18} {:>6} {ours:>10.1} {theirs:>12.1} {:>7.1}x",
            wire.len(),
            theirs / ours
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    // `cargo test --benches` runs each benchmark once without `--bench`;
    // the timing summary is only for real bench runs.
    if std::env::args().any(|a| a == "--bench") {
        print_ratios();
    }
}
