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
        runtime_class: None,
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

/// The review decoders against the plain serde path, on the captured reviews: what
/// `core/src/object.rs` keeps is what this measures to pay.
///
/// - `one_pass`: the envelope and the object in one pass ([`ReviewObject`], the webhook's path);
/// - `two_pass`: the envelope with the object as raw JSON, then [`Workload::from_json`]
///   (`LeanObject`: `managedFields` and `status` skipped unread);
/// - `serde_full`: the envelope with the object as k8s-openapi's own type, every field decoded.
fn bench_decode(c: &mut Criterion) {
    use hostgate::object::{Kind, ReviewObject, Workload};
    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    struct Envelope<O> {
        request: Request<O>,
    }
    #[derive(Deserialize)]
    struct Request<O> {
        uid: String,
        object: O,
    }

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    let cases = [
        (
            "pod",
            Kind::Pod,
            "pod-create-hostprocess-valid.validating.json",
        ),
        (
            "daemonset",
            Kind::DaemonSet,
            "daemonset-create-hostprocess.validating.json",
        ),
    ];
    for (name, kind, file) in cases {
        let body = String::from_utf8(fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        group.bench_function(format!("{name}/one_pass"), |b| {
            b.iter(|| {
                let e: Envelope<ReviewObject> =
                    serde_json::from_str(black_box(&body)).unwrap_or_else(|e| panic!("{e}"));
                black_box((e.request.uid, e.request.object))
            })
        });
        group.bench_function(format!("{name}/two_pass"), |b| {
            b.iter(|| {
                let e: Envelope<&RawValue> =
                    serde_json::from_str(black_box(&body)).unwrap_or_else(|e| panic!("{e}"));
                let w = Workload::from_json(kind, e.request.object.get())
                    .unwrap_or_else(|e| panic!("{e}"));
                black_box((e.request.uid, w))
            })
        });
        group.bench_function(format!("{name}/serde_full"), |b| {
            b.iter(|| match kind {
                Kind::Pod => {
                    let e: Envelope<k8s_openapi::api::core::v1::Pod> =
                        serde_json::from_str(black_box(&body)).unwrap_or_else(|e| panic!("{e}"));
                    black_box(e.request.uid);
                }
                _ => {
                    let e: Envelope<k8s_openapi::api::apps::v1::DaemonSet> =
                        serde_json::from_str(black_box(&body)).unwrap_or_else(|e| panic!("{e}"));
                    black_box(e.request.uid);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(decode, bench_decode);
criterion_main!(benches, decode);
