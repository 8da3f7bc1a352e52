//! Parsing ACL rules text: HCL and JSON policies of 1,000, 10,000 and 100,000
//! `service "svc-N" { policy = "read" }` rules. Parsing is linear in the text: the goal is
//! 100,000 rules (about 4 MB, just under the 4 MiB `MAX_RULES_LEN` limit) in well under a second.
//!
//! `cargo bench -p mesh-intentions --bench acl_parse` (short run: append `-- --quick`).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mesh_intentions::acl::{MAX_RULES_LEN, parse_hcl, parse_json};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// `n` service rules, one block per line.
fn hcl_policy(n: usize) -> String {
    (0..n)
        .map(|i| format!("service \"svc-{i}\" {{ policy = \"read\" }}\n"))
        .collect()
}

/// The same `n` rules as one JSON object, one rule per line.
fn json_policy(n: usize) -> String {
    let body: Vec<String> = (0..n)
        .map(|i| format!("    \"svc-{i}\": {{ \"policy\": \"read\" }}"))
        .collect();
    format!("{{\n  \"service\": {{\n{}\n  }}\n}}\n", body.join(",\n"))
}

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("acl_parse");
    // 100,000 rules take long enough per iteration that criterion's default of 100 samples
    // would make the run needlessly long.
    g.sample_size(10);
    for n in SIZES {
        for (syntax, text) in [("hcl", hcl_policy(n)), ("json", json_policy(n))] {
            assert!(
                text.len() <= MAX_RULES_LEN,
                "{syntax} {n}: {} bytes",
                text.len()
            );
            let parse = if syntax == "hcl" {
                parse_hcl
            } else {
                parse_json
            };
            g.throughput(Throughput::Bytes(text.len() as u64));
            g.bench_with_input(BenchmarkId::new(syntax, n), &text, |b, text| {
                // Checked here, not up front, so that a filtered run parses only what it
                // measures.
                let rules = parse(text).expect("the generated policy parses");
                assert_eq!(rules.named_len(), n, "{syntax} {n}");
                b.iter(|| parse(black_box(text)).map(|r| r.named_len()))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
