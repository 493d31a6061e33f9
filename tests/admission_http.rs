//! In-process router tests with every AdmissionReview captured from a real kube-apiserver
//! (tests/data/admissionreview), malformed bodies, patches applied back to the request object,
//! and metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hostgate::admission::{MAX_FINDINGS_SHOWN, MAX_RESPONSE_BYTES, ReviewOptions};
use hostgate::approval::{SigningIdentity, generate_key_pair};
use hostgate::object::Workload;
use hostgate::policy::load::load_paths;
use hostgate::rules::structural::{self, StructuralOptions};
use hostgate::server::routes::{Limits, router};
use hostgate::server::state::AppState;
use hostgate::shape::ShapeLimits;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(data("admissionreview"))
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read"))
        })
        .collect();
    out.sort();
    out
}

fn fixture(name: &str) -> Value {
    serde_json::from_slice(
        &std::fs::read(data(&format!("admissionreview/{name}"))).expect("fixture"),
    )
    .expect("json")
}

/// A state with the test policies; approvals signed and verified when `signing` is set.
fn state(signing: bool) -> (Arc<AppState>, Option<tempfile::TempDir>) {
    let (signer, dir) = if signing {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, private, _) = generate_key_pair(dir.path()).expect("keygen");
        (
            Some(SigningIdentity::from_pem_file(&private).expect("key")),
            Some(dir),
        )
    } else {
        (None, None)
    };
    let state = Arc::new(AppState::new(signer, None, true));
    let set = load_paths(&[data("webhook/policies")]).expect("test policies load");
    state.install_policies(set, Default::default());
    state.set_tls_ready();
    (state, dir)
}

/// A state like [`state`], with other review options.
fn state_with(signing: bool, options: ReviewOptions) -> (Arc<AppState>, Option<tempfile::TempDir>) {
    let (state, dir) = state(signing);
    let state = Arc::into_inner(state).expect("not shared yet");
    (Arc::new(state.with_options(options)), dir)
}

/// The raw answer to a request.
async fn post_raw(state: &Arc<AppState>, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let response = router(Arc::clone(state), Limits::default())
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, bytes.to_vec())
}

async fn post(state: &Arc<AppState>, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    post_with(state, path, body, "application/json").await
}

async fn post_with(
    state: &Arc<AppState>,
    path: &str,
    body: Vec<u8>,
    content_type: &str,
) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header("content-type", content_type)
        .body(Body::from(body))
        .expect("request");
    let response = router(Arc::clone(state), Limits::default())
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

fn response(v: &Value) -> &Value {
    &v["response"]
}

fn patch_of(v: &Value) -> Option<json_patch::Patch> {
    let patch = response(v).get("patch")?.as_str()?;
    let bytes = base64_decode(patch);
    Some(serde_json::from_slice(&bytes).expect("patch is JSON Patch"))
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("patch is base64")
}

fn structural_errors(object: &Value) -> Vec<String> {
    let Ok(Some(w)) = Workload::from_value(object.clone()) else {
        return Vec::new();
    };
    let view = w.pod().expect("pod spec");
    let mut out = Vec::new();
    structural::check(
        &view,
        StructuralOptions {
            allow_privileged: true,
            create: false,
        },
        &mut out,
    );
    out.iter()
        .map(|f| format!("{} {}", f.rule, f.path))
        .collect()
}

/// Every captured review gets a well-formed answer for its own uid from the endpoint it was
/// captured for.
#[tokio::test]
async fn every_captured_review_is_answered() {
    let (state, _keys) = state(true);
    let all = fixtures();
    assert!(all.len() >= 50, "{} fixtures", all.len());
    for (name, body) in all {
        let endpoint = if name.ends_with(".mutating.json") {
            "/mutate"
        } else {
            "/validate"
        };
        let uid = serde_json::from_slice::<Value>(&body).expect("json")["request"]["uid"].clone();
        let (status, v) = post(&state, endpoint, body).await;
        assert_eq!(status, StatusCode::OK, "{name}: {v}");
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1", "{name}");
        assert_eq!(v["kind"], "AdmissionReview", "{name}");
        assert_eq!(response(&v)["uid"], uid, "{name}");
        assert!(response(&v)["allowed"].is_boolean(), "{name}");
    }
}

/// Validation of the final objects as captured (approvals off: nothing signed them).
#[tokio::test]
async fn validating_reviews_are_judged() {
    let (state, _) = state(false);
    let cases: &[(&str, bool, &[&str])] = &[
        // Workload templates are judged as /mutate would default their pods: admitted.
        ("cronjob-create-hostprocess.validating.json", true, &[]),
        ("daemonset-create-hostprocess.validating.json", true, &[]),
        ("deployment-create-hostprocess.validating.json", true, &[]),
        (
            "daemonset-create-hostprocess-psa-baseline-ns.validating.json",
            false,
            &["HP-PSA-01"],
        ),
        // Pods that skipped hostgate's defaulting have no limits.
        (
            "pod-create-hostprocess-valid.validating.json",
            false,
            &["HG-LIMITS-01"],
        ),
        ("pod-create-hostprocess-false.validating.json", true, &[]),
        ("pod-create-linux-plain.validating.json", true, &[]),
        ("pod-update-hostprocess-label.validating.json", true, &[]),
        ("pod-update-linux-plain-annotate.validating.json", true, &[]),
        ("pod-ephemeral-linux-plain-debug.validating.json", true, &[]),
    ];
    for (name, allowed, rules) in cases {
        let (status, v) = post(
            &state,
            "/validate",
            std::fs::read(data(&format!("admissionreview/{name}"))).expect("read"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let r = response(&v);
        assert_eq!(r["allowed"], *allowed, "{name}: {v}");
        let message = r["status"]["message"].as_str().unwrap_or("");
        for rule in *rules {
            assert!(message.contains(rule), "{name}: {message}");
        }
        if !allowed {
            assert_eq!(r["status"]["code"], 403, "{name}");
            assert!(
                message.starts_with("hostgate denied the request: ["),
                "{name}: {message}"
            );
        }
        assert!(r.get("patch").is_none(), "{name}: validate never patches");
    }
    // Warn mode: admitted, with warnings naming the rule and path.
    let (_, v) = post(
        &state,
        "/validate",
        std::fs::read(data(
            "admissionreview/pod-create-hostprocess-psa-warn-ns.validating.json",
        ))
        .expect("read"),
    )
    .await;
    let r = response(&v);
    assert_eq!(r["allowed"], true);
    let warnings = r["warnings"].as_array().expect("warnings");
    assert!(
        warnings[0]
            .as_str()
            .expect("text")
            .starts_with("hostgate: [HG-IMAGE-02] spec.containers[0].image"),
        "{warnings:?}"
    );
    assert_eq!(r["auditAnnotations"]["admitted-by"], "hpc-warn");
}

/// The full path a HostProcess pod takes: /mutate defaults and signs, the patch is applied to
/// the request object, and /validate admits the result and verifies the approval.
#[tokio::test]
async fn mutate_then_validate_admits_signed_pods() {
    let (state, _keys) = state(true);
    let pods = [
        "pod-create-hostprocess-valid.mutating.json",
        "pod-create-hostprocess-container-level.mutating.json",
        "pod-create-hostprocess-pod-and-container-level.mutating.json",
        "pod-create-hostprocess-init-and-main.mutating.json",
        "pod-create-hostprocess-os-windows.mutating.json",
        "pod-create-hostprocess-server-side-apply.mutating.json",
    ];
    for name in pods {
        let mut review = fixture(name);
        let (status, v) = post(
            &state,
            "/mutate",
            serde_json::to_vec(&review).expect("json"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(response(&v)["allowed"], true, "{name}");
        assert_eq!(response(&v)["patchType"], "JSONPatch", "{name}");
        let patch = patch_of(&v).expect("a patch");
        let object = &mut review["request"]["object"];
        json_patch::patch(object, &patch).expect("patch applies to the request object");
        assert!(
            structural_errors(object).is_empty(),
            "{name}: {:?}",
            structural_errors(object)
        );
        let annotations = &object["metadata"]["annotations"];
        assert!(
            annotations["hostgate.io/approval"].is_string(),
            "{name}: {object}"
        );
        assert_eq!(
            object["spec"]["nodeSelector"]["kubernetes.io/os"],
            "windows"
        );
        for c in object["spec"]["containers"].as_array().expect("containers") {
            assert!(
                c["resources"]["limits"]["memory"].is_string(),
                "{name}: {c}"
            );
        }
        // Now the validating webhook sees the patched object.
        let (_, v) = post(
            &state,
            "/validate",
            serde_json::to_vec(&review).expect("json"),
        )
        .await;
        assert_eq!(response(&v)["allowed"], true, "{name}: {v}");
        assert_eq!(
            response(&v)["auditAnnotations"]["admitted-by"],
            "hpc-default"
        );

        // Another webhook changing the image after us breaks the approval.
        let mut tampered = review.clone();
        tampered["request"]["object"]["spec"]["containers"][0]["image"] = json!(
            "mcr.microsoft.com/oss/kubernetes/windows-host-process-containers-base-image:v1.0.1"
        );
        let (_, v) = post(
            &state,
            "/validate",
            serde_json::to_vec(&tampered).expect("json"),
        )
        .await;
        assert_eq!(response(&v)["allowed"], false, "{name}");
        let message = response(&v)["status"]["message"].as_str().expect("message");
        assert!(
            message.contains("[HG-APPROVAL-02]") && message.contains("containers[0].image"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn unsigned_or_forged_approvals_are_refused() {
    let (state, _keys) = state(true);
    let mut review = fixture("pod-create-hostprocess-valid.mutating.json");
    let (_, v) = post(
        &state,
        "/mutate",
        serde_json::to_vec(&review).expect("json"),
    )
    .await;
    json_patch::patch(
        &mut review["request"]["object"],
        &patch_of(&v).expect("patch"),
    )
    .expect("applies");

    // Without the annotation.
    let mut unsigned = review.clone();
    unsigned["request"]["object"]["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove("hostgate.io/approval");
    let (_, v) = post(
        &state,
        "/validate",
        serde_json::to_vec(&unsigned).expect("json"),
    )
    .await;
    let message = response(&v)["status"]["message"].as_str().expect("message");
    assert!(
        message.contains("[HG-APPROVAL-01]") && message.contains("no hostgate.io/approval"),
        "{message}"
    );

    // A user-supplied approval going into /mutate is replaced; into a non-admitted pod, removed.
    let mut forged = fixture("pod-create-hostprocess-valid.mutating.json");
    forged["request"]["object"]["metadata"]["annotations"] =
        json!({"hostgate.io/approval": "forged.value"});
    forged["request"]["namespace"] = json!("team-x");
    forged["request"]["object"]["metadata"]["namespace"] = json!("team-x");
    let (_, v) = post(
        &state,
        "/mutate",
        serde_json::to_vec(&forged).expect("json"),
    )
    .await;
    let patched = {
        let mut o = forged["request"]["object"].clone();
        json_patch::patch(&mut o, &patch_of(&v).expect("patch")).expect("applies");
        o
    };
    assert!(
        patched["metadata"]
            .get("annotations")
            .is_none_or(|a| a.get("hostgate.io/approval").is_none()),
        "{patched}"
    );
}

/// No patch ever makes a captured object structurally invalid, and objects the apiserver will
/// reject anyway are left alone.
#[tokio::test]
async fn patches_never_produce_invalid_pods() {
    let (state, _keys) = state(true);
    for (name, body) in fixtures() {
        if !name.ends_with(".mutating.json") {
            continue;
        }
        let mut review: Value = serde_json::from_slice(&body).expect("json");
        let before = structural_errors(&review["request"]["object"]);
        let (_, v) = post(&state, "/mutate", body).await;
        assert_eq!(
            response(&v)["allowed"],
            true,
            "{name}: /mutate never denies"
        );
        if let Some(patch) = patch_of(&v) {
            assert!(
                before.is_empty(),
                "{name}: invalid objects must not be patched"
            );
            let object = &mut review["request"]["object"];
            json_patch::patch(object, &patch).expect("patch applies");
            assert!(structural_errors(object).is_empty(), "{name}");
        }
        if name.starts_with("rejected-") {
            assert!(
                patch_of(&v).is_none(),
                "{name}: the apiserver rejects it; no patch"
            );
        }
    }
}

#[tokio::test]
async fn malformed_bodies_get_clear_400s() {
    let (state, _) = state(false);
    let valid = std::fs::read(data(
        "admissionreview/pod-create-hostprocess-valid.mutating.json",
    ))
    .expect("read");
    let good: Value = serde_json::from_slice(&valid).expect("json");
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in (0..valid.len()).step_by(valid.len() / 20 + 1).skip(1) {
        bodies.push((format!("truncated at {cut}"), valid[..cut].to_vec()));
    }
    let mut edit = |label: &str, f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        bodies.push((label.to_owned(), serde_json::to_vec(&v).expect("json")));
    };
    edit("apiVersion v1beta1", &|v| {
        v["apiVersion"] = json!("admission.k8s.io/v1beta1")
    });
    edit("apiVersion missing", &|v| {
        v.as_object_mut().expect("obj").remove("apiVersion");
    });
    edit("kind Pod", &|v| v["kind"] = json!("Pod"));
    edit("no request", &|v| {
        v.as_object_mut().expect("obj").remove("request");
    });
    edit("request null", &|v| v["request"] = Value::Null);
    edit("request string", &|v| v["request"] = json!("x"));
    edit("uid missing", &|v| {
        v["request"].as_object_mut().expect("obj").remove("uid");
    });
    edit("uid empty", &|v| v["request"]["uid"] = json!(""));
    edit("uid number", &|v| v["request"]["uid"] = json!(42));
    edit("operation unknown", &|v| {
        v["request"]["operation"] = json!("PATCH")
    });
    edit("operation missing", &|v| {
        v["request"]
            .as_object_mut()
            .expect("obj")
            .remove("operation");
    });
    edit("kind missing", &|v| {
        v["request"].as_object_mut().expect("obj").remove("kind");
    });
    edit("kind string", &|v| v["request"]["kind"] = json!("Pod"));
    edit("object string", &|v| v["request"]["object"] = json!("pod"));
    edit("object missing on create", &|v| {
        v["request"].as_object_mut().expect("obj").remove("object");
    });
    edit("object array", &|v| v["request"]["object"] = json!([1, 2]));
    edit("hostProcess string", &|v| {
        v["request"]["object"]["spec"]["securityContext"]["windowsOptions"]["hostProcess"] =
            json!("true")
    });
    edit("containers object", &|v| {
        v["request"]["object"]["spec"]["containers"] = json!({"a": 1})
    });
    edit("container name number", &|v| {
        v["request"]["object"]["spec"]["containers"][0]["name"] = json!(7)
    });
    edit("image number", &|v| {
        v["request"]["object"]["spec"]["containers"][0]["image"] = json!(7)
    });
    edit("dryRun string", &|v| v["request"]["dryRun"] = json!("yes"));
    edit("spec string", &|v| {
        v["request"]["object"]["spec"] = json!("x")
    });
    edit("metadata number", &|v| {
        v["request"]["object"]["metadata"] = json!(1)
    });
    edit("userInfo string", &|v| {
        v["request"]["userInfo"] = json!("me")
    });
    for (label, raw) in [
        ("empty", &b""[..]),
        ("null", b"null"),
        ("array", b"[]"),
        ("number", b"42"),
        ("string", b"\"AdmissionReview\""),
        ("object", b"{}"),
        ("garbage", b"\x00\x01\x02hello"),
        ("invalid UTF-8", b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\", \"request\": {\"uid\": \"\xff\xfe\"}}"),
        ("trailing garbage", b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\"} trailing"),
        ("yaml", b"apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\n"),
    ] {
        bodies.push((label.to_owned(), raw.to_vec()));
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    bodies.push(("deep array nesting".to_owned(), deep.into_bytes()));
    let deep_object = {
        let mut v = good.clone();
        let mut nested = json!(1);
        for _ in 0..200 {
            nested = json!({"n": nested});
        }
        v["request"]["object"]["metadata"]["labels"] = nested;
        serde_json::to_string(&v).expect("json")
    };
    bodies.push((
        "deep object nesting inside the object".to_owned(),
        deep_object.into_bytes(),
    ));
    assert!(bodies.len() >= 50, "{} bodies", bodies.len());
    for (label, body) in bodies {
        for endpoint in ["/validate", "/mutate"] {
            let (status, v) = post(&state, endpoint, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{label} on {endpoint}: {v}"
            );
            let error = v["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{label}: JSON error body, got {v}"));
            assert!(!error.is_empty(), "{label}");
        }
    }

    // 10 MB: refused by the body limit before parsing.
    let huge = vec![b' '; 10 * 1024 * 1024];
    let (status, _) = post(&state, "/validate", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Not JSON.
    let (status, v) = post_with(&state, "/validate", valid.clone(), "text/plain").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("application/json"))
    );
}

#[tokio::test]
async fn probes_and_metrics() {
    let state = Arc::new(AppState::new(None, None, true));
    let get = |path: &'static str| {
        let state = Arc::clone(&state);
        async move {
            let response = router(state, Limits::default())
                .oneshot(Request::get(path).body(Body::empty()).expect("request"))
                .await
                .expect("infallible");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(get("/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get("/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "no policies yet"
    );
    let body = std::fs::read(data(
        "admissionreview/pod-create-hostprocess-valid.validating.json",
    ))
    .expect("read");
    let (status, _) = post(&state, "/validate", body.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    state.install_policies(
        load_paths(&[data("webhook/policies")]).expect("policies"),
        Default::default(),
    );
    state.set_tls_ready();
    assert_eq!(get("/readyz").await.0, StatusCode::OK);
    let (status, _) = post(&state, "/validate", body).await;
    assert_eq!(status, StatusCode::OK);
    let _ = post(&state, "/validate", b"{}".to_vec()).await;

    let (status, text) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "hostgate_admission_requests_total{endpoint=\"validate\",operation=\"CREATE\",kind=\"Pod\",decision=\"denied\"} 1",
        "hostgate_admission_requests_total{endpoint=\"validate\",operation=\"unknown\",kind=\"unknown\",decision=\"unavailable\"} 1",
        "hostgate_admission_requests_total{endpoint=\"validate\",operation=\"unknown\",kind=\"unknown\",decision=\"malformed\"} 1",
        "hostgate_admission_findings_total{rule=\"HG-LIMITS-01\",action=\"deny\"} 2",
        "hostgate_admission_duration_seconds_count{endpoint=\"validate\"} 3",
        "hostgate_policy_generation 1",
        "hostgate_policies 3",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    state.begin_shutdown();
    assert_eq!(get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
}

/// A dry run is defaulted but not signed, and judged without an approval; `sign_dry_run` signs
/// it as before.
#[tokio::test]
async fn dry_runs_are_not_signed_unless_asked() {
    let name = "pod-create-hostprocess-dryrun-server.mutating.json";
    for sign_dry_run in [false, true] {
        let options = ReviewOptions {
            sign_dry_run,
            ..ReviewOptions::default()
        };
        let (state, _keys) = state_with(true, options);
        let mut review = fixture(name);
        assert_eq!(review["request"]["dryRun"], true);
        let (_, v) = post(
            &state,
            "/mutate",
            serde_json::to_vec(&review).expect("json"),
        )
        .await;
        assert_eq!(response(&v)["allowed"], true);
        let patch = patch_of(&v).expect("defaults are still applied");
        json_patch::patch(&mut review["request"]["object"], &patch).expect("applies");
        let annotations = &review["request"]["object"]["metadata"]["annotations"];
        assert_eq!(
            annotations["hostgate.io/approval"].is_string(),
            sign_dry_run,
            "sign_dry_run {sign_dry_run}: {annotations}"
        );
        let (_, v) = post(
            &state,
            "/validate",
            serde_json::to_vec(&review).expect("json"),
        )
        .await;
        assert_eq!(
            response(&v)["allowed"],
            true,
            "sign_dry_run {sign_dry_run}: {v}"
        );
    }
}

/// A pod whose `containers` are `n` copies of `container(i)`.
fn pod_review(name: &str, n: usize, container: impl Fn(usize) -> Value) -> Vec<u8> {
    let mut review = fixture(name);
    let containers: Vec<Value> = (0..n).map(container).collect();
    review["request"]["object"]["spec"]["containers"] = containers.into();
    serde_json::to_vec(&review).expect("json")
}

/// 10,000 refused images make a denial of 20 findings and a count, well under the answer limit.
#[tokio::test]
async fn denials_name_the_first_findings_and_count_the_rest() {
    let options = ReviewOptions {
        shape: ShapeLimits {
            max_objects: 100_000,
        },
        ..ReviewOptions::default()
    };
    let (state, _) = state_with(false, options);
    let body = pod_review(
        "pod-create-hostprocess-valid.validating.json",
        10_000,
        |i| json!({"name": format!("c{i}"), "image": format!("evil.example/i{i}:{}", "x".repeat(100)), "securityContext": {"windowsOptions": {"hostProcess": true}}}),
    );
    let (status, bytes) = post_raw(&state, "/validate", body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes.len() <= MAX_RESPONSE_BYTES, "{} bytes", bytes.len());
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(response(&v)["allowed"], false);
    let message = response(&v)["status"]["message"].as_str().expect("message");
    assert_eq!(
        message.matches("[HG-").count(),
        MAX_FINDINGS_SHOWN,
        "{message}"
    );
    assert!(message.ends_with(" more"), "{message}");

    // One image name of 1 MiB: the finding is cut, the answer stays bounded.
    let body = pod_review(
        "pod-create-hostprocess-valid.validating.json",
        1,
        |_| json!({"name": "c", "image": "e".repeat(1 << 20), "securityContext": {"windowsOptions": {"hostProcess": true}}}),
    );
    let (status, bytes) = post_raw(&state, "/validate", body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes.len() <= MAX_RESPONSE_BYTES, "{} bytes", bytes.len());
}

/// More objects than the shape limit: refused before decoding, with the uid and a message that
/// says why, on both endpoints.
#[tokio::test]
async fn absurd_shapes_are_refused_before_they_are_decoded() {
    let (state, _keys) = state(true);
    let body = pod_review(
        "pod-create-hostprocess-valid.mutating.json",
        50_000,
        |i| json!({"name": format!("c{i}"), "image": "i"}),
    );
    for path in ["/mutate", "/validate"] {
        let (status, bytes) = post_raw(&state, path, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(bytes.len() <= MAX_RESPONSE_BYTES);
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        let r = response(&v);
        assert_eq!(r["allowed"], false, "{path}");
        assert!(r["uid"].as_str().is_some_and(|u| !u.is_empty()));
        assert_eq!(r["status"]["code"], 413);
        let message = r["status"]["message"].as_str().expect("message");
        assert!(
            message.contains("holds 50063 JSON objects")
                && message.contains(&format!("at most {}", ShapeLimits::default().max_objects)),
            "{message}"
        );
        assert!(r.get("patch").is_none());
    }
}

/// A body announced larger than the limit is answered 413 before any of it is read.
#[tokio::test]
async fn announced_oversized_bodies_are_refused_at_once() {
    let (state, _) = state(false);
    let never_ends = futures_util::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
    let request = Request::post("/validate")
        .header("content-type", "application/json")
        .header("content-length", (1u64 << 30).to_string())
        .body(Body::from_stream(never_ends))
        .expect("request");
    let response = router(Arc::clone(&state), Limits::default())
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// `kubectl debug` on an admitted HostProcess pod: refused unless the admitting policy allows
/// that ephemeral container (image, full argv, account).
#[tokio::test]
async fn ephemeral_containers_are_refused_unless_a_policy_allows_them() {
    let review = std::fs::read(data(
        "admissionreview/pod-ephemeral-hostprocess-pod-hostprocess-ec.validating.json",
    ))
    .expect("fixture");
    let (state, _) = state(false);
    let (_, v) = post(&state, "/validate", review.clone()).await;
    assert_eq!(response(&v)["allowed"], false, "{v}");
    let message = response(&v)["status"]["message"].as_str().expect("message");
    assert!(
        message
            .contains("[HG-EPHEMERAL-01] spec.ephemeralContainers[0]: ephemeral container refused")
            && message.contains("debugger-hpc"),
        "{message}"
    );

    // A policy that allows the debugger's image, its entrypoint and its account (and, as the
    // captured pod was created without hostgate's defaults, requires no limits).
    let base = std::fs::read_to_string(data("webhook/policies/test-policies.yaml")).expect("read");
    for (commands, allowed) in [("[[]]", true), ("[[cmd.exe, /c, ipconfig]]", false)] {
        let policies = base.replacen(
            "  require:\n    limits: {cpu: \"1\", memory: 512Mi}",
            &format!(
                "    ephemeralContainers:\n      images: [\"mcr.microsoft.com/oss/kubernetes/windows-host-process-containers-base-image:*\"]\n      commands: {commands}\n      runAsUserNames: ['NT AUTHORITY\\SYSTEM']"
            ),
            1,
        );
        assert_ne!(policies, base);
        let (parsed, errors) =
            hostgate::policy::load::parse_policies(policies.as_bytes(), "policies.yaml");
        assert!(errors.is_empty(), "{errors:?}");
        state.install_policies(
            hostgate::policy::PolicySet::new(parsed).expect("set"),
            Default::default(),
        );
        let (_, v) = post(&state, "/validate", review.clone()).await;
        assert_eq!(response(&v)["allowed"], allowed, "{commands}: {v}");
        if !allowed {
            let message = response(&v)["status"]["message"].as_str().expect("message");
            assert!(message.contains("[HG-EPHEMERAL-03]"), "{message}");
        }
    }
}

/// An answer that cannot be sent (here: a 70 KB uid, echoed back, takes the answer over its
/// 64 KiB bound) is a 500 with a generic message, and the metrics count it as an error rather
/// than as the verdict nobody received.
#[tokio::test]
async fn an_answer_that_cannot_be_encoded_is_a_500_counted_as_an_error() {
    let (state, _dir) = state(false);
    let mut review = fixture("pod-create-hostprocess-valid.validating.json");
    review["request"]["uid"] = Value::String("u".repeat(70 * 1024));
    let (status, body) = post(&state, "/validate", review.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("could not answer this review")),
        "{body}"
    );
    let text = state.metrics.encode();
    assert!(
        text.contains("decision=\"error\"} 1"),
        "not counted as an error:\n{text}"
    );
    assert!(
        !text.contains("decision=\"denied\"") && !text.contains("decision=\"allowed\""),
        "counted with a verdict:\n{text}"
    );
}
