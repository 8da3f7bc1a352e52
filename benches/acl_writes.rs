//! The cost of a token create and of an intention write with an unrelated 16,000-rule policy
//! stored, next to the same writes with no such policy (the baseline, same run). Goal:
//! milliseconds, and flat in the size of unrelated policies (ratio close to 1).
//!
//! `cargo bench --bench acl_writes` (short run: append `-- --quick`).

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mesh::intentions::acl::DefaultPolicy;
use mesh::intentions::intention::Action;
use mesh::{Datacenter, DatacenterConfig, TokenSpec};

const MGMT: &str = "11111111-aaaa-4bbb-8ccc-0000000000be";

fn big_policy(rules: usize) -> String {
    let mut s = String::with_capacity(rules * 48);
    for i in 0..rules {
        let _ = writeln!(s, "service \"svc-{i}\" {{ policy = \"read\" }}");
    }
    s
}

fn setup(rt: &tokio::runtime::Runtime, unrelated_rules: usize) -> Datacenter {
    rt.block_on(async {
        let mut c = DatacenterConfig::new(
            "primary".parse().expect("name"),
            "primary".parse().expect("name"),
        );
        c.acl.enabled = true;
        c.acl.default_policy = DefaultPolicy::Deny;
        c.acl.tokens.initial_management = Some(MGMT.into());
        let dc = Datacenter::start_primary(c).await.expect("primary starts");
        if unrelated_rules > 0 {
            dc.acl()
                .policy_create(&MGMT.into(), "big", "", &big_policy(unrelated_rules))
                .await
                .expect("big policy");
            dc.acl()
                .token_create(
                    &MGMT.into(),
                    TokenSpec {
                        policy_names: vec!["big".into()],
                        ..TokenSpec::default()
                    },
                )
                .await
                .expect("token of the big policy");
        }
        dc.acl()
            .policy_create(
                &MGMT.into(),
                "small",
                "",
                r#"service "web" { policy = "read" }"#,
            )
            .await
            .expect("small policy");
        dc
    })
}

fn bench_writes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("acl_writes");
    g.sample_size(20);
    for unrelated in [0usize, 16_000] {
        let dc = setup(&rt, unrelated);
        g.bench_with_input(
            BenchmarkId::new("token_create", unrelated),
            &unrelated,
            |b, _| {
                b.iter(|| {
                    rt.block_on(dc.acl().token_create(
                        &MGMT.into(),
                        TokenSpec {
                            policy_names: vec!["small".into()],
                            ..TokenSpec::default()
                        },
                    ))
                    .expect("token create")
                })
            },
        );
        let n = AtomicUsize::new(0);
        g.bench_with_input(
            BenchmarkId::new("intention_write", unrelated),
            &unrelated,
            |b, _| {
                b.iter(|| {
                    let i = n.fetch_add(1, Ordering::Relaxed);
                    let src = format!("client-{i}");
                    black_box(
                        rt.block_on(dc.intentions().create(
                            &MGMT.into(),
                            &src.parse().expect("valid intention target"),
                            &"web".parse().expect("valid intention target"),
                            Action::Allow,
                        ))
                        .expect("intention write"),
                    )
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench_writes);
criterion_main!(benches);
