//! Issue 12's question for `hostgate check`'s reader: can a maintained YAML crate that gives
//! positions replace the hand-written fast path (`check::yaml`)? Per manifest, on pods shaped
//! like bench/gen-workload.py's and on the upstream manifests in tests/data/upstream:
//!
//! - `fast_path`: `check::yaml::parse` and a typed read from its tree (what `check` does);
//! - `serde_saphyr_typed`: `serde_saphyr::from_str` straight into the typed object (no positions);
//! - `serde_saphyr_positions`: the same plus the position tree (`check::position::trees`), which
//!   is what replacing the fast path with positions would cost;
//! - `libyaml_value`: `manifest::read_documents` (libyaml) and `Workload::from_value`, the slow
//!   path's reader;
//! - `fast_path_checked_value` (pods only): the fast path's tree read through
//!   `Workload::from_value` (path-tracking) instead of the typed read, i.e. without
//!   `check`'s second fast path.
//!
//! Run: `cargo bench --bench yaml`. Figures go into `check::yaml`'s module docs.

use std::hint::black_box;
use std::path::Path;

#[path = "common/workload.rs"]
mod workload;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hostgate::check::{position, yaml};
use hostgate::manifest::read_documents;
use hostgate::object::Workload;
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::Value;

fn pod(i: usize) -> String {
    serde_yaml::to_string(&workload::pod(i, "default")).expect("yaml")
}

fn upstream() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/upstream");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

fn run_set(c: &mut Criterion, name: &str, texts: &[String]) {
    let docs: usize = texts
        .iter()
        .map(|t| read_documents(t.as_bytes()).0.len())
        .sum();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(docs as u64));
    group.bench_function("fast_path", |b| {
        b.iter(|| {
            for t in texts {
                match yaml::parse(t.as_bytes()) {
                    Some(docs) => {
                        for d in &docs {
                            black_box(serde_json::Value::deserialize(&d.node).ok());
                        }
                    }
                    None => {
                        black_box(read_documents(t.as_bytes()));
                    }
                }
            }
        });
    });
    group.bench_function("serde_saphyr_typed", |b| {
        b.iter(|| {
            for t in texts {
                black_box(serde_saphyr::from_multiple::<Value>(t).ok());
            }
        });
    });
    group.bench_function("serde_saphyr_positions", |b| {
        b.iter(|| {
            for t in texts {
                black_box(serde_saphyr::from_multiple::<Value>(t).ok());
                black_box(position::trees(t.as_bytes()));
            }
        });
    });
    group.bench_function("libyaml_value", |b| {
        b.iter(|| {
            for t in texts {
                for d in read_documents(t.as_bytes()).0 {
                    black_box(Workload::from_value(d.value).ok());
                }
            }
        });
    });
    group.finish();
}

fn pods_typed(c: &mut Criterion) {
    // The typed read on its own, the part of `check` that dominates per pod.
    let texts: Vec<String> = (0..1000).map(pod).collect();
    let mut group = c.benchmark_group("workload_pods_typed");
    group.throughput(Throughput::Elements(texts.len() as u64));
    group.bench_function("fast_path", |b| {
        b.iter(|| {
            for t in &texts {
                let docs = yaml::parse(t.as_bytes()).expect("fast path applies");
                black_box(Pod::deserialize(&docs[0].node).ok());
            }
        });
    });
    // Without the second fast path (typed reading straight from the tree): the checked reader
    // `hostgate check` falls back to for errors, which names the field at fault.
    group.bench_function("fast_path_checked_value", |b| {
        b.iter(|| {
            for t in &texts {
                let docs = yaml::parse(t.as_bytes()).expect("fast path applies");
                black_box(Workload::from_value(docs[0].node.to_value()).ok());
            }
        });
    });
    group.bench_function("serde_saphyr_typed", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(serde_saphyr::from_str::<Pod>(t).ok());
            }
        });
    });
    group.bench_function("serde_saphyr_positions", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(serde_saphyr::from_str::<Pod>(t).ok());
                black_box(position::trees(t.as_bytes()));
            }
        });
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    pods_typed(c);
    let texts: Vec<String> = (0..1000).map(pod).collect();
    run_set(c, "workload_pods", &texts);
    let real = upstream();
    if !real.is_empty() {
        run_set(c, "upstream_manifests", &real);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
