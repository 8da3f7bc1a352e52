//! Intention decisions and ACL checks: one decision with 10, 10,000 and 100,000 intentions
//! (goal: under 100 ns and flat in the count), one ACL check on a token with 10,000 rules
//! (goal: under 200 ns), building a 100,000-intention set, and parsing a typical policy in
//! JSON and HCL.
//!
//! `cargo bench --bench intentions` (short run: append `-- --warm-up-time 1 --measurement-time 2`).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mesh_intentions::acl::{
    AccessLevel, Authorizer, DefaultPolicy, Family, Grant, MatchKind, PolicyAuthorizer,
    RootAuthorizer, Rules, parse_hcl, parse_json,
};
use mesh_intentions::intention::{Action, Intention, IntentionDefault, IntentionSet};

/// `n` intentions over `n / 10` destinations: exact pairs, a wildcard source per
/// destination, and a few `* => *`-style rules, like a large real deployment.
fn intentions(n: usize) -> Vec<Intention> {
    let dests = (n / 10).max(1);
    (0..n)
        .map(|i| {
            let d = format!("svc-{}", i % dests);
            if i % 10 == 9 {
                Intention::new("*", &d, Action::Deny)
            } else {
                Intention::new(&format!("client-{i}"), &d, Action::Allow)
            }
        })
        .chain([Intention::new("*", "*", Action::Deny)])
        .collect()
}

fn bench_decisions(c: &mut Criterion) {
    let default = IntentionDefault::new(Some(DefaultPolicy::Deny), None);
    let mut g = c.benchmark_group("intention_decision");
    for n in [10usize, 10_000, 100_000] {
        let set = IntentionSet::build(intentions(n)).expect("valid intentions");
        let dests = (n / 10).max(1);
        // A source that has an exact intention to its destination.
        let src = format!("client-{}", n / 2);
        let dst = format!("svc-{}", (n / 2) % dests);
        assert!(set.decide(&src, &dst, default).is_allowed());
        g.bench_with_input(BenchmarkId::new("exact_match", n), &n, |b, _| {
            b.iter(|| black_box(set.decide(black_box(&src), black_box(&dst), default)).is_allowed())
        });
        // No exact intention: the destination's wildcard source decides.
        g.bench_with_input(BenchmarkId::new("wildcard_match", n), &n, |b, _| {
            b.iter(|| {
                black_box(set.decide(black_box("stranger"), black_box(&dst), default)).is_allowed()
            })
        });
    }
    g.finish();

    c.bench_function("intention_set_build_100k", |b| {
        let ixns = intentions(100_000);
        b.iter_batched(
            || ixns.clone(),
            |v| IntentionSet::build(v).expect("valid"),
            criterion::BatchSize::LargeInput,
        )
    });
}

fn big_authorizer(n: usize) -> Authorizer {
    let mut rules = Rules::new();
    for i in 0..n {
        let (kind, name) = if i % 2 == 0 {
            (MatchKind::Exact, format!("service-{i:05}"))
        } else {
            (MatchKind::Prefix, format!("team-{:03}/svc-{i:05}", i % 997))
        };
        let policy = if i % 3 == 0 {
            AccessLevel::Read
        } else {
            AccessLevel::Write
        };
        rules
            .add(
                Family::Service,
                kind,
                name,
                Grant {
                    policy,
                    intentions: None,
                },
            )
            .expect("unique rules");
    }
    rules
        .add(
            Family::Service,
            MatchKind::Prefix,
            "",
            Grant {
                policy: AccessLevel::Read,
                intentions: None,
            },
        )
        .expect("unique rule");
    Authorizer::chain(
        vec![PolicyAuthorizer::from_rules(&rules, "bench")],
        RootAuthorizer::DenyAll,
    )
}

fn bench_acl(c: &mut Criterion) {
    let authz = big_authorizer(10_000);
    let mut g = c.benchmark_group("acl_check_10k_rules");
    g.bench_function("service_write_exact", |b| {
        b.iter(|| black_box(authz.service_write(black_box("service-04242"))).is_allowed())
    });
    g.bench_function("service_write_prefix", |b| {
        b.iter(|| {
            black_box(authz.service_write(black_box("team-123/svc-01113-canary"))).is_allowed()
        })
    });
    g.bench_function("service_read_fallback_root_prefix", |b| {
        b.iter(|| black_box(authz.service_read(black_box("unrelated-name"))).is_allowed())
    });
    g.bench_function("intention_write", |b| {
        b.iter(|| black_box(authz.intention_write(black_box("service-04242"))).is_allowed())
    });
    g.finish();

    c.bench_function("acl_compile_10k_rules", |b| {
        b.iter(|| big_authorizer(black_box(10_000)))
    });
}

const POLICY_HCL: &str = r#"
node_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "read"
}
service "web" {
  policy = "write"
}
service "web-sidecar-proxy" {
  policy = "write"
}
key_prefix "config/web/" {
  policy = "read"
}
"#;

const POLICY_JSON: &str = r#"{
  "node_prefix": {"": {"policy": "read"}},
  "service_prefix": {"": {"policy": "read"}},
  "service": {"web": {"policy": "write"}, "web-sidecar-proxy": {"policy": "write"}},
  "key_prefix": {"config/web/": {"policy": "read"}}
}"#;

fn bench_parse(c: &mut Criterion) {
    assert_eq!(
        parse_hcl(POLICY_HCL).expect("hcl"),
        parse_json(POLICY_JSON).expect("json")
    );
    let mut g = c.benchmark_group("parse_policy_5_rules");
    g.bench_function("hcl", |b| {
        b.iter(|| parse_hcl(black_box(POLICY_HCL)).expect("valid"))
    });
    g.bench_function("json", |b| {
        b.iter(|| parse_json(black_box(POLICY_JSON)).expect("valid"))
    });
    g.finish();
}

criterion_group!(benches, bench_decisions, bench_acl, bench_parse);
criterion_main!(benches);
