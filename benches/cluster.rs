//! `hostgate check --cluster` over 10,000 pods from kube's mock service (tower-test), pages of
//! 500: listing, decoding and judging, with the mock's pages serialized before the clock starts.
//! Everything runs on one thread, so the time per iteration is the CPU the check costs.
//!
//! Run: `cargo bench --bench cluster`. Figures go into docs/benchmarks.md; no test asserts on
//! time.

use std::sync::Arc;

#[path = "common/workload.rs"]
mod workload;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hostgate::check::CheckOptions;
use hostgate::check::cluster::{self, ClusterOptions};
use hostgate::policy::PolicySet;
use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

const PODS: usize = 10_000;
const PAGE: usize = 500;

fn list(kind: &str, items: &[Value], next: Option<String>) -> Arc<[u8]> {
    let mut metadata = json!({"resourceVersion": "1"});
    if let Some(n) = next {
        metadata["continue"] = json!(n);
    }
    let body = json!({"apiVersion": "v1", "kind": kind, "metadata": metadata, "items": items});
    Arc::from(serde_json::to_vec(&body).expect("json"))
}

fn bench(c: &mut Criterion) {
    let pods: Vec<Value> = (0..PODS)
        .map(|i| workload::pod(i, ["default", "team-a", "team-b"][i % 3]))
        .collect();
    let pages: Vec<Arc<[u8]>> = pods
        .chunks(PAGE)
        .enumerate()
        .map(|(i, chunk)| {
            let next = (i + 1 < PODS.div_ceil(PAGE)).then(|| format!("page-{}", i + 1));
            list("PodList", chunk, next)
        })
        .collect();
    let empty = list("List", &[], None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let mut group = c.benchmark_group("check_cluster");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PODS as u64));
    group.bench_function("10000_pods_pages_of_500", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (service, mut handle) =
                    tower_test::mock::pair::<Request<Body>, Response<Body>>();
                let pages = pages.clone();
                let empty = Arc::clone(&empty);
                let server = tokio::spawn(async move {
                    while let Some((request, send)) = handle.next_request().await {
                        let query = request.uri().query().unwrap_or("");
                        let body = if request.uri().path() == "/api/v1/pods" {
                            let n = query
                                .split('&')
                                .find_map(|kv| kv.strip_prefix("continue=page-"))
                                .and_then(|n| n.parse::<usize>().ok())
                                .unwrap_or(0);
                            Arc::clone(&pages[n])
                        } else {
                            Arc::clone(&empty)
                        };
                        send.send_response(
                            Response::builder()
                                .status(StatusCode::OK)
                                .header("content-type", "application/json")
                                .body(Body::from(body.to_vec()))
                                .expect("response"),
                        );
                    }
                });
                let client = Client::new(service, "default");
                let report = cluster::check_cluster(
                    &client,
                    CheckOptions::new(PolicySet::default()),
                    &ClusterOptions {
                        page_size: PAGE as u32,
                        ..ClusterOptions::default()
                    },
                )
                .await
                .expect("report");
                assert_eq!(report.results.len(), PODS);
                server.abort();
            });
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
