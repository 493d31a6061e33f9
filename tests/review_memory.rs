//! The webhook's memory per review, measured on the built binary by its peak RSS (`VmHWM`):
//! whatever the shape of a body under the body limit, the peak stays within 64 MiB of the idle
//! process, and concurrent worst-case reviews, held back by the review memory budget, keep the
//! process under the chart's memory limit.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;

/// `VmRSS` or `VmHWM` of a process, in bytes.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

struct Serve {
    child: Child,
    addr: SocketAddr,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Serve {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("hostgate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--tls-self-signed", "--tls-self-signed-dir"])
        .arg(dir.path().join("tls"))
        .args(["--policies", "tests/data/webhook/policies"])
        .args(["--bind-address", "127.0.0.1", "--secure-port", "0"])
        .args(["--health-port", "0", "--log-format", "json"])
        .args(["--log-level", "warn,hostgate=info"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            let v: Value = serde_json::from_str(&line).ok()?;
            (v["message"] == "serving /validate and /mutate")
                .then(|| v["addr"].as_str().map(str::to_owned))
                .flatten()
        })
        .expect("the server logs its address");
    // Keep draining its log so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Serve {
        child,
        addr: addr.parse().expect("addr"),
        ca: dir.path().join("tls/ca.crt"),
        _dir: dir,
    }
}

/// A captured HostProcess pod review with `spec` changed by `edit`.
fn review(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/admissionreview/pod-create-hostprocess-valid.mutating.json");
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    edit(&mut v["request"]["object"]["spec"]);
    serde_json::to_vec(&v).expect("json")
}

/// The worst shapes: the most objects of the largest decoded types the shape limit lets
/// through, the largest single string, and legal nesting as deep as the decoder goes.
fn worst_cases() -> Vec<(&'static str, Vec<u8>)> {
    let n = hostgate::shape::DEFAULT_MAX_OBJECTS - 100;
    let containers = review(|spec| {
        spec["containers"] = (0..n)
            .map(|i| json!({"name": format!("c{i}"), "image": "i"}))
            .collect::<Vec<_>>()
            .into();
    });
    let volumes = review(|spec| {
        spec["volumes"] = (0..n)
            .map(|i| json!({"name": format!("v{i}")}))
            .collect::<Vec<_>>()
            .into();
    });
    let env = review(|spec| {
        spec["containers"][0]["env"] = (0..n)
            .map(|i| json!({"name": format!("E{i}")}))
            .collect::<Vec<_>>()
            .into();
    });
    // As many containers as fit both limits, each with a long image name.
    let image = "r".repeat(3 * MIB as usize / n - 64);
    let long_images = review(|spec| {
        spec["containers"] = (0..n)
            .map(|i| json!({"name": format!("c{i}"), "image": image}))
            .collect::<Vec<_>>()
            .into();
    });
    let string = review(|spec| {
        spec["containers"][0]["image"] = "i".repeat(3 * MIB as usize - 8 * 1024).into();
    });
    let mut nested = json!("leaf");
    for _ in 0..100 {
        nested = json!([nested]);
    }
    let deep = review(|spec| {
        spec["containers"][0]["command"] = json!(["x"]);
        spec["containers"][0]["x-unknown"] = nested;
    });
    vec![
        ("containers", containers),
        ("volumes", volumes),
        ("env", env),
        ("long images", long_images),
        ("string", string),
        ("deep", deep),
    ]
}

/// Posts `body` to `path` over a new TLS connection; the answer must be 200.
async fn post(server: &Serve, path: &str, body: Vec<u8>) -> Vec<u8> {
    let tls = common::client_config(&server.ca, &[&rustls::version::TLS13], None);
    let (status, answer, _) = common::request(server.addr, tls, "POST", path, body)
        .await
        .expect("answered");
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&answer));
    answer
}

/// A server warmed up (TLS, one review of each kind) and its idle RSS.
async fn warm() -> (Serve, u64) {
    let server = serve();
    let small = review(|_| {});
    post(&server, "/mutate", small.clone()).await;
    post(&server, "/validate", small).await;
    let idle = status_kib(server.child.id(), "VmRSS:");
    (server, idle)
}

/// The reviews of the issue (20,000 and 50,000 containers): refused before they are decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_s_reviews_are_refused_within_the_bound() {
    let (server, idle) = warm().await;
    for n in [20_000, 50_000] {
        let body = review(|spec| {
            spec["containers"] = (0..n)
                .map(|i| json!({"name": format!("c{i}"), "image": "i"}))
                .collect::<Vec<_>>()
                .into();
        });
        let answer = post(&server, "/mutate", body).await;
        let answer: Value = serde_json::from_slice(&answer).expect("json");
        assert_eq!(answer["response"]["allowed"], false, "{n} containers");
    }
    let peak = status_kib(server.child.id(), "VmHWM:").saturating_sub(idle);
    eprintln!(
        "20,000 and 50,000 containers: peak {} KiB above idle",
        peak / 1024
    );
    assert!(peak <= 64 * MIB, "peak {} MiB above idle", peak / MIB);
}

/// Each worst case alone, in a fresh server, on both endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worst_case_reviews_stay_within_64_mib_of_idle() {
    for (name, body) in worst_cases() {
        let (server, idle) = warm().await;
        for path in ["/mutate", "/validate"] {
            let answer = post(&server, path, body.clone()).await;
            assert!(
                answer.len() <= 64 * 1024,
                "{name} {path}: {} bytes",
                answer.len()
            );
        }
        let peak = status_kib(server.child.id(), "VmHWM:").saturating_sub(idle);
        eprintln!(
            "{name} ({} KiB): peak {} MiB above idle ({} MiB)",
            body.len() / 1024,
            peak / MIB,
            idle / MIB
        );
        assert!(
            peak <= 64 * MIB,
            "{name}: peak {} MiB above idle",
            peak / MIB
        );
    }
}

/// Four of every worst case at once: the review memory budget (64 MiB) holds them back, so the
/// process stays under the chart's memory limit (128 MiB). Peak RSS is more than the budget:
/// the allocator keeps, per worker thread, some of the memory a review freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_worst_cases_stay_within_the_budget() {
    let (server, idle) = warm().await;
    let server = std::sync::Arc::new(server);
    let mut all = Vec::new();
    for (_, body) in worst_cases() {
        for _ in 0..4 {
            let server = std::sync::Arc::clone(&server);
            let body = body.clone();
            all.push(tokio::spawn(async move {
                post(&server, "/mutate", body).await;
            }));
        }
    }
    for task in all {
        task.await.expect("task");
    }
    let peak = status_kib(server.child.id(), "VmHWM:");
    eprintln!(
        "24 worst cases at once: peak {} MiB, {} MiB above idle",
        peak / MIB,
        peak.saturating_sub(idle) / MIB
    );
    assert!(peak <= 128 * MIB, "peak {} MiB", peak / MIB);
}
