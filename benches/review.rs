//! The webhook's per-request work without the network: one `Reviewer::review` of captured
//! AdmissionReview bodies (decode, judge, encode the answer), as `/validate` and `/mutate` do it.
//!
//! Run: `cargo bench --bench review`. The HTTPS figures come from `bench/webhook-load.sh`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hostgate::admission::{Endpoint, NoLabels, Reviewer};
use hostgate::approval::{SigningIdentity, TrustStore, generate_key};
use hostgate::policy::load::load_paths;

// The allocator of the `hostgate` binary (src/main.rs), so that the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/admissionreview")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn bench_review(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let policies = load_paths(&[dir]).unwrap_or_else(|e| panic!("shipped policies: {e}"));
    let key = generate_key().unwrap_or_else(|e| panic!("key: {e}"));
    let signer = SigningIdentity::new(key);
    let mut trust = TrustStore::default();
    trust.add(signer.verifying_key());
    let reviewer = Reviewer {
        policies: &policies,
        namespaces: &NoLabels,
        signer: Some(&signer),
        trust: Some(&trust),
        allow_privileged: true,
        now: 1_790_000_000,
        options: Default::default(),
    };

    let mut group = c.benchmark_group("review");
    group.throughput(Throughput::Elements(1));
    let cases = [
        (
            "validate_hostprocess_pod",
            Endpoint::Validate,
            "pod-create-hostprocess-valid.validating.json",
        ),
        (
            "mutate_hostprocess_pod",
            Endpoint::Mutate,
            "pod-create-hostprocess-valid.mutating.json",
        ),
        (
            "validate_daemonset",
            Endpoint::Validate,
            "daemonset-create-hostprocess.validating.json",
        ),
        (
            "validate_linux_pod",
            Endpoint::Validate,
            "pod-create-linux-plain.validating.json",
        ),
    ];
    for (name, endpoint, file) in cases {
        let body = fixture(file);
        group.bench_function(name, |b| {
            b.iter(|| {
                let outcome = reviewer.review(endpoint, black_box(&body));
                let outcome = outcome.unwrap_or_else(|e| panic!("{name}: {e}"));
                black_box(outcome.to_json().unwrap_or_else(|e| panic!("{name}: {e}")))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_review);
criterion_main!(benches);
