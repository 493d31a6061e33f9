//! `hostgate serve`, `mutate`, `keygen` and `crd` end to end, through the built binary.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

const POLICIES: &str = "tests/data/webhook/policies";

fn hostgate() -> Command {
    let mut c = Command::cargo_bin("hostgate").expect("hostgate binary");
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HOSTGATE_POLICIES");
    c
}

fn keygen(dir: &Path) -> std::path::PathBuf {
    let out = hostgate()
        .args(["keygen", "--out"])
        .arg(dir)
        .output()
        .expect("keygen runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let kid = text
        .lines()
        .find_map(|l| l.strip_prefix("key id:"))
        .expect("key id line")
        .trim()
        .to_owned();
    assert_eq!(kid.len(), 16, "{text}");
    assert!(dir.join(format!("{kid}.pub")).exists());
    dir.join(format!("{kid}.key"))
}

const STATIC_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: static-hpc
  annotations: {hostgate.io/approval: "user.supplied"}
spec:
  hostNetwork: true
  containers:
  - name: hpc
    image: mcr.microsoft.com/oss/kubernetes/windows-host-process-containers-base-image:v1.0.0
    securityContext: {windowsOptions: {hostProcess: true}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: untouched}
data: {a: b}
"#;

#[test]
fn mutate_defaults_and_signs_static_pods_that_verify() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keygen(keys.path());
    let out = hostgate()
        .args(["mutate", "--policies", POLICIES, "--signing-key"])
        .arg(&key)
        .args(["-v", "-"])
        .write_stdin(STATIC_POD)
        .output()
        .expect("mutate runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("approval signed"), "{stderr}");
    assert!(
        stderr.contains("spec.containers[0].resources.limits.cpu: set to 500m"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (docs, err) = hostgate::manifest::read_documents(stdout.as_bytes());
    assert_eq!(err, None);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].value["kind"], "ConfigMap");
    let pod = hostgate::object::Workload::from_value(docs[0].value.clone())
        .expect("valid")
        .expect("pod");
    let trust = hostgate::approval::TrustStore::load_dir(keys.path()).expect("public key");
    let approval = trust
        .verify_pod(&pod.pod().expect("spec"), "default")
        .expect("the signed pod verifies");
    assert_eq!(approval.policy, "hpc-default");

    // Without a key: defaulted, and the user-supplied approval is gone.
    let out = hostgate()
        .args(["mutate", "--policies", POLICIES, "-"])
        .write_stdin(STATIC_POD)
        .output()
        .expect("mutate runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("hostgate.io/approval"), "{stdout}");
    assert!(
        stdout.contains("runAsUserName: NT AUTHORITY\\Local service"),
        "{stdout}"
    );

    // Bad input: exit 2, with file and document.
    let out = hostgate()
        .args(["mutate", "--policies", POLICIES, "-"])
        .write_stdin("apiVersion: v1\nkind: Pod\nspec: {containers: [{name: 7}]}\n")
        .output()
        .expect("mutate runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<stdin>: document 1"));
}

#[test]
fn crd_is_a_valid_custom_resource_definition() {
    let out = hostgate().arg("crd").output().expect("crd runs");
    assert!(out.status.success());
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_yaml::from_slice(&out.stdout).expect("a CRD");
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("hostprocesspolicies.hostgate.io")
    );
    assert_eq!(crd.spec.scope, "Cluster");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some())
    );
}

/// The quickstart: a self-signed certificate, the policies, a review over HTTPS, and a clean
/// stop on SIGTERM.
#[test]
fn serve_answers_over_tls_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = assert_cmd::cargo::cargo_bin("hostgate");
    let mut child = StdCommand::new(bin)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--tls-self-signed", "--tls-self-signed-dir"])
        .arg(dir.path().join("tls"))
        .args([
            "--policies",
            POLICIES,
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            "0",
            "--health-port",
            "0",
        ])
        .args(["--shutdown-delay", "100ms", "--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut addr = None;
    let mut ca_line = None;
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line.contains("its CA is") {
            ca_line = Some(line.clone());
        }
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "serving /validate and /mutate"
        {
            addr = v["addr"].as_str().map(str::to_owned);
            break;
        }
    }
    let addr = addr.expect("the server logs its address");
    assert!(ca_line.is_some_and(|l| l.contains("ca.crt")));

    // A TLS client that trusts the generated CA.
    let ca = dir.path().join("tls/ca.crt");
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/admissionreview/pod-create-hostprocess-valid.validating.json"),
    )
    .expect("fixture");
    let out = StdCommand::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(&ca)
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
        ])
        .arg(format!(
            "https://localhost:{}/validate",
            addr.rsplit(':').next().expect("port")
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(&body)?;
            c.wait_with_output()
        });
    match out {
        Ok(out) if out.status.success() => {
            let v: Value = serde_json::from_slice(&out.stdout).expect("AdmissionReview");
            assert_eq!(v["kind"], "AdmissionReview");
            assert_eq!(v["response"]["allowed"], false);
        }
        Ok(out) => panic!("curl failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => hostgate_test_support::unmet(
            hostgate_test_support::test_name!(),
            &format!("needs curl for the outside-client step ({e})"),
        ),
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("shutdown requested")),
        "{rest:?}"
    );
}
