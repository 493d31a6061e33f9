//! The webhook over real TLS on 127.0.0.1: handshakes, protocol versions, certificate rotation by
//! a kubelet-style `..data` symlink swap under load, client-certificate authentication, policy
//! reload, and graceful shutdown.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{client_config, request};
use hostgate::server::tls::{TlsFiles, generate_self_signed};
use hostgate::server::{ServeConfig, Server};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// A running server and the means to stop it.
struct Running {
    addr: SocketAddr,
    health: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    state: Arc<hostgate::server::state::AppState>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops")
            .expect("server task");
    }
}

async fn start(config: ServeConfig) -> Running {
    let server = Server::bind(config).await.expect("server binds");
    let addr = server.local_addr().expect("addr");
    let health = server.health_addr().map(|a| a.expect("health addr"));
    let state = server.state();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        health,
        stop: Some(tx),
        task,
        state,
    }
}

fn config(tls: TlsFiles, policies: PathBuf) -> ServeConfig {
    let mut c = ServeConfig::new("127.0.0.1:0".parse().expect("addr"), tls, vec![policies]);
    c.reload_interval = Duration::from_millis(50);
    c.shutdown_delay = Duration::from_millis(0);
    c.shutdown_timeout = Duration::from_secs(5);
    c
}

fn review_body() -> Vec<u8> {
    std::fs::read(data(
        "admissionreview/pod-create-hostprocess-valid.validating.json",
    ))
    .expect("fixture")
}

#[tokio::test]
async fn handshake_review_and_protocol_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = generate_self_signed(dir.path(), &[]).expect("self-signed");
    let server = start(config(tls.files.clone(), data("webhook/policies"))).await;

    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let client = client_config(&tls.ca, versions, None);
        let (status, body, _) = request(server.addr, client.clone(), "GET", "/readyz", vec![])
            .await
            .expect("readyz");
        assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
        let (status, body, _) = request(server.addr, client, "POST", "/validate", review_body())
            .await
            .expect("review");
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["kind"], "AdmissionReview");
        assert!(v["response"]["uid"].is_string());
    }
    server.stop().await;
}

/// A TLS 1.1 ClientHello is answered with an alert, never a ServerHello.
#[tokio::test]
async fn tls_1_1_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = generate_self_signed(dir.path(), &[]).expect("self-signed");
    let server = start(config(tls.files.clone(), data("webhook/policies"))).await;

    // ClientHello: version 3.2 (TLS 1.1), no extensions, two TLS 1.0/1.1 cipher suites.
    let mut hello = vec![0x03, 0x02];
    hello.extend_from_slice(&[0x11; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x04, 0x00, 0x2f, 0x00, 0x35]); // AES128-SHA, AES256-SHA
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x02];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);

    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(&record).await.expect("send hello");
    let mut reply = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut reply))
        .await
        .expect("server answers")
        .unwrap_or(0);
    assert!(
        n == 0 || reply[0] == 0x15,
        "expected an alert or a closed connection, got {:?}",
        &reply[..n]
    );
    if n >= 7 {
        assert_eq!(reply[5], 2, "fatal alert");
        // protocol_version (70) or handshake_failure (40): either way no TLS 1.1 session.
        assert!([40, 70].contains(&reply[6]), "alert {}", reply[6]);
    }
    server.stop().await;
}

/// The kubelet updates a mounted Secret by writing a new `..<timestamp>` directory and renaming
/// a new `..data` symlink over the old one; `tls.crt` and `tls.key` are symlinks into `..data`.
fn kubelet_secret(dir: &Path, generation: &str, source: &TlsFiles) {
    let target = dir.join(format!("..{generation}"));
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::copy(&source.cert, target.join("tls.crt")).expect("copy cert");
    std::fs::copy(&source.key, target.join("tls.key")).expect("copy key");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{generation}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("atomic swap");
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("link");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_swap_by_symlink_under_load_loses_no_request() {
    let keys = tempfile::tempdir().expect("tempdir");
    // Two serving certificates from two CAs; the client trusts both.
    let first = generate_self_signed(&keys.path().join("a"), &[]).expect("first");
    let second = generate_self_signed(&keys.path().join("b"), &[]).expect("second");
    let both = keys.path().join("both-ca.crt");
    let mut pem = std::fs::read(&first.ca).expect("ca a");
    pem.extend(std::fs::read(&second.ca).expect("ca b"));
    std::fs::write(&both, pem).expect("bundle");
    let new_leaf = CertificateDer::from_pem_file(&second.files.cert)
        .expect("leaf b")
        .as_ref()
        .to_vec();

    let secret = keys.path().join("secret");
    std::fs::create_dir_all(&secret).expect("mkdir");
    kubelet_secret(&secret, "2026_11_26_01", &first.files);
    let files = TlsFiles {
        cert: secret.join("tls.crt"),
        key: secret.join("tls.key"),
        client_ca: None,
    };
    let server = start(config(files, data("webhook/policies"))).await;
    let client = client_config(
        &both,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        None,
    );

    // A steady stream: 4 clients, each a new connection per request, for 2 s; the swap happens
    // after 0.7 s.
    let stop_at = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let client = Arc::clone(&client);
        let addr = server.addr;
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while tokio::time::Instant::now() < stop_at {
                match request(
                    addr,
                    Arc::clone(&client),
                    "POST",
                    "/validate",
                    review_body(),
                )
                .await
                {
                    Ok((200, _, _)) => ok += 1,
                    Ok((status, body, _)) => {
                        failed.push(format!("{status} {}", String::from_utf8_lossy(&body)))
                    }
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    kubelet_secret(&secret, "2026_11_26_02", &second.files);

    let mut total = 0;
    for c in clients {
        let (ok, failed) = c.await.expect("client");
        assert!(
            failed.is_empty(),
            "failed requests during the swap: {failed:?}"
        );
        total += ok;
    }
    // How many made it depends on the machine; that some did shows the clients ran.
    assert!(total > 0, "no request made it");
    // New connections now get the new certificate.
    let (_, _, leaf) = request(server.addr, client, "GET", "/healthz", vec![])
        .await
        .expect("after swap");
    assert_eq!(
        leaf, new_leaf,
        "the server still presents the old certificate"
    );
    let metrics = server.state.metrics.encode();
    assert!(
        metrics.contains("hostgate_tls_reloads_total 1"),
        "{metrics}"
    );
    server.stop().await;
}

/// A CA and a client certificate signed by it.
fn client_identity(
    dir: &Path,
    name: &str,
) -> (
    PathBuf,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).expect("client cert");
    let ca_path = dir.join(format!("{name}-ca.crt"));
    std::fs::write(&ca_path, ca.pem()).expect("write");
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key der");
    (ca_path, vec![cert.der().clone()], key)
}

#[tokio::test]
async fn client_certificates_are_required_with_a_client_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = generate_self_signed(&dir.path().join("serving"), &[]).expect("self-signed");
    let (apiserver_ca, apiserver_chain, apiserver_key) =
        client_identity(dir.path(), "kube-apiserver");
    let (_, stranger_chain, stranger_key) = client_identity(dir.path(), "stranger");
    let mut files = tls.files.clone();
    files.client_ca = Some(apiserver_ca);
    let server = start(config(files, data("webhook/policies"))).await;
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];

    let trusted = client_config(&tls.ca, &versions, Some((apiserver_chain, apiserver_key)));
    let (status, _, _) = request(server.addr, trusted, "POST", "/validate", review_body())
        .await
        .expect("trusted client");
    assert_eq!(status, 200);

    for (label, client) in [
        (
            "no client certificate",
            client_config(&tls.ca, &versions, None),
        ),
        (
            "certificate from another CA",
            client_config(&tls.ca, &versions, Some((stranger_chain, stranger_key))),
        ),
    ] {
        let result = request(server.addr, client, "POST", "/validate", review_body()).await;
        assert!(result.is_err(), "{label}: must be refused, got {result:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn policies_reload_atomically_and_bad_sets_are_kept_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = generate_self_signed(&dir.path().join("tls"), &[]).expect("self-signed");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    std::fs::copy(
        data("webhook/policies/test-policies.yaml"),
        policies.join("p.yaml"),
    )
    .expect("copy");
    let server = start(config(tls.files.clone(), policies.clone())).await;
    let generation = || server.state.policies().map(|p| p.generation);
    assert_eq!(generation(), Some(1));

    let wait_for = |want: &'static str| {
        let state = Arc::clone(&server.state);
        async move {
            for _ in 0..200 {
                if state.metrics.encode().contains(want) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("metric {want} never appeared:\n{}", state.metrics.encode());
        }
    };
    std::fs::write(policies.join("broken.yaml"), "apiVersion: hostgate.io/v1alpha1\nkind: HostProcessPolicy\nmetadata: {name: x}\nspec: {mode: Sometimes}\n")
        .expect("write");
    wait_for("hostgate_policy_reload_errors_total 1").await;
    assert_eq!(generation(), Some(1), "the last good set stays");
    assert!(server.state.is_ready());

    std::fs::remove_file(policies.join("broken.yaml")).expect("rm");
    std::fs::write(policies.join("extra.yaml"), "apiVersion: hostgate.io/v1alpha1\nkind: HostProcessPolicy\nmetadata: {name: extra}\nspec: {match: {namespaces: [extra]}}\n").expect("write");
    wait_for("hostgate_policy_generation 2").await;
    assert_eq!(server.state.policies().map(|p| p.set.len()), Some(4));
    server.stop().await;
}

#[tokio::test]
async fn starts_unready_without_policies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = generate_self_signed(&dir.path().join("tls"), &[]).expect("self-signed");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    std::fs::write(policies.join("bad.yaml"), "kind: Pod\n").expect("write");
    let server = start(config(tls.files.clone(), policies.clone())).await;
    let client = client_config(&tls.ca, &[&rustls::version::TLS13], None);
    let (status, _, _) = request(server.addr, client.clone(), "GET", "/readyz", vec![])
        .await
        .expect("readyz");
    assert_eq!(status, 503);
    let (status, _, _) = request(
        server.addr,
        client.clone(),
        "POST",
        "/validate",
        review_body(),
    )
    .await
    .expect("review");
    assert_eq!(status, 503);
    std::fs::copy(
        data("webhook/policies/test-policies.yaml"),
        policies.join("bad.yaml"),
    )
    .expect("fix");
    eventually("the fixed set loads", async || server.state.is_ready()).await;
    let (status, _, _) = request(server.addr, client, "GET", "/readyz", vec![])
        .await
        .expect("readyz");
    assert_eq!(status, 200);
    server.stop().await;
}

/// SIGTERM semantics: readiness flips first, a review in flight completes, then new connections
/// are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_reviews() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = generate_self_signed(dir.path(), &[]).expect("self-signed");
    let mut cfg = config(tls.files.clone(), data("webhook/policies"));
    // Long enough for the /readyz request below to be served during the delay on a loaded host;
    // the test waits for the listener to close rather than for a fixed time.
    cfg.shutdown_delay = Duration::from_secs(1);
    let server = start(cfg).await;
    let client = client_config(&tls.ca, &[&rustls::version::TLS13], None);

    // Open a connection and send the headers and half of the body.
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(&client))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::StreamBody<_>,
    >(TokioIo::new(stream))
    .await
    .expect("http");
    tokio::spawn(conn);
    let body = review_body();
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(4);
    let stream_body = http_body_util::StreamBody::new(tokio_stream_from(rx));
    let req = Request::post("/validate")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("content-length", body.len().to_string())
        .body(stream_body)
        .expect("request");
    let in_flight = tokio::spawn(async move { sender.send_request(req).await });
    let half = body.len() / 2;
    tx.send(Ok(hyper::body::Frame::data(Bytes::copy_from_slice(
        &body[..half],
    ))))
    .await
    .expect("send");
    tokio::time::sleep(Duration::from_millis(100)).await;

    // SIGTERM.
    let Running {
        addr,
        stop,
        task,
        state,
        ..
    } = server;
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    eventually("readiness flips", async || !state.is_ready()).await;
    let (status, _, _) = request(addr, Arc::clone(&client), "GET", "/readyz", vec![])
        .await
        .expect("still serving during the delay");
    assert_eq!(status, 503);

    // Finish the body after the listener has closed.
    eventually("the listener closes", async || {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    tx.send(Ok(hyper::body::Frame::data(Bytes::copy_from_slice(
        &body[half..],
    ))))
    .await
    .expect("send");
    drop(tx);
    let response = in_flight
        .await
        .expect("task")
        .expect("in-flight review completes");
    assert_eq!(response.status(), 200);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("drains")
        .expect("task");
}

/// Polls `cond` every 10 ms for up to 10 s.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A TLS connection that completes its handshake and then says nothing.
async fn silent_connection(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tokio_rustls::TlsConnector::from(Arc::clone(client))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake")
}

/// Waits (10 s at most) until the server closes `stream`.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(what: &str, stream: &mut S) {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Err(_) => panic!("{what}: still open"),
            Ok(Ok(0) | Err(_)) => return,
            // HTTP/2 frames (SETTINGS, GOAWAY) before the close.
            Ok(Ok(_)) => {}
        }
    }
}

/// `GET path` over plain HTTP/1.1 on a new connection.
async fn plain_get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("http");
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "localhost")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("answered in time")
        .expect("response");
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, body)
}

/// Connections that finish the handshake and say nothing, send only the HTTP/2 preface, or go
/// quiet after an HTTP/2 request are all closed by their deadlines, and the health port answers
/// the probes all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_while_probes_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = generate_self_signed(dir.path(), &[]).expect("self-signed");
    let mut cfg = config(tls.files.clone(), data("webhook/policies"));
    cfg.health_bind = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.max_connections = 34;
    // Long enough for a loaded machine to send the HTTP/2 request below in time.
    cfg.connection.first_request = Duration::from_secs(2);
    cfg.connection.idle = Duration::from_millis(500);
    let server = start(cfg).await;
    let health = server.health.expect("health port");
    let client = client_config(&tls.ca, &[&rustls::version::TLS13], None);

    let mut silent = Vec::new();
    for _ in 0..32 {
        silent.push(silent_connection(server.addr, &client).await);
    }
    let mut preface = silent_connection(server.addr, &client).await;
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    // HTTP/2: one request, then quiet.
    let stream = silent_connection(server.addr, &client).await;
    let (mut sender, h2) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    let h2 = tokio::spawn(h2);
    let req = Request::get("/healthz")
        .header("host", "localhost")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(req).await.expect("h2 request");
    assert_eq!(response.status(), 200);

    // The cap is full of silent connections; the probes do not depend on it.
    let (status, body) = plain_get(health, "/readyz").await;
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));

    for (i, stream) in silent.iter_mut().enumerate() {
        closed_by_server(&format!("silent connection {i}"), stream).await;
    }
    closed_by_server("HTTP/2 preface only", &mut preface).await;
    tokio::time::timeout(Duration::from_secs(10), h2)
        .await
        .expect("the quiet HTTP/2 connection is closed")
        .expect("task")
        .expect("closed with GOAWAY, not an error");

    // Places are free again, and the probes were served throughout.
    let (status, _, _) = request(server.addr, client, "GET", "/readyz", vec![])
        .await
        .expect("a new client is served");
    assert_eq!(status, 200);
    // The server counts each close once its side of the connection has ended; a connection
    // stuck in the HTTP/2 handshake does not close when asked and is dropped.
    eventually("34 connections counted as closed for silence", async || {
        let (status, metrics) = plain_get(health, "/metrics").await;
        assert_eq!(status, 200);
        let metrics = String::from_utf8(metrics).expect("text");
        let closed = |reason: &str| {
            let prefix = format!("hostgate_connections_closed_total{{reason=\"{reason}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        closed("silent") + closed("dropped") >= 34
    })
    .await;
    server.stop().await;
}

/// Over the cap, a connection waits briefly and is then refused and counted; the health port
/// still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = generate_self_signed(dir.path(), &[]).expect("self-signed");
    let mut cfg = config(tls.files.clone(), data("webhook/policies"));
    cfg.health_bind = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.max_connections = 2;
    cfg.connection_wait = Duration::from_millis(100);
    cfg.connection.first_request = Duration::from_secs(60);
    let server = start(cfg).await;
    let health = server.health.expect("health port");
    let client = client_config(&tls.ca, &[&rustls::version::TLS13], None);
    let _held = [
        silent_connection(server.addr, &client).await,
        silent_connection(server.addr, &client).await,
    ];
    let refused = request(server.addr, Arc::clone(&client), "GET", "/readyz", vec![]).await;
    assert!(refused.is_err(), "{refused:?}");
    let (status, _) = plain_get(health, "/readyz").await;
    assert_eq!(status, 200);
    let (_, metrics) = plain_get(health, "/metrics").await;
    let metrics = String::from_utf8(metrics).expect("text");
    assert!(
        metrics.contains("hostgate_connections_refused_total{reason=\"tls\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

/// A connection past its maximum age is told to close on its next HTTP/1.1 answer.
#[tokio::test]
async fn old_connections_are_asked_to_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = generate_self_signed(dir.path(), &[]).expect("self-signed");
    let mut cfg = config(tls.files.clone(), data("webhook/policies"));
    cfg.connection.max_age = Duration::from_millis(200);
    let server = start(cfg).await;
    let client = client_config(&tls.ca, &[&rustls::version::TLS13], None);
    let stream = silent_connection(server.addr, &client).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http");
    tokio::spawn(conn);
    eventually("an answer says Connection: close", async || {
        let req = Request::get("/healthz")
            .header("host", "localhost")
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("request");
        let response = sender
            .send_request(req)
            .await
            .expect("served until told to close");
        response
            .headers()
            .get("connection")
            .is_some_and(|v| v == "close")
    })
    .await;
    server.stop().await;
}

/// SIGTERM while clients keep HTTP/1.1 connections busy: every request sent on an open
/// connection is answered. Answers during the drain say `Connection: close`, clients reconnect
/// until the listener closes, and no connection is closed under a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_http1_keepalive_load_loses_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = generate_self_signed(dir.path(), &[]).expect("self-signed");
    let mut cfg = config(tls.files.clone(), data("webhook/policies"));
    cfg.shutdown_delay = Duration::from_millis(500);
    let server = start(cfg).await;
    let client = client_config(&tls.ca, &[&rustls::version::TLS13], None);
    let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));

    let mut clients = Vec::new();
    for _ in 0..16 {
        let client = Arc::clone(&client);
        let addr = server.addr;
        let answered = Arc::clone(&answered);
        clients.push(tokio::spawn(async move {
            let (mut lost, mut closes) = (Vec::new(), 0u32);
            'connections: loop {
                // A refused connection or handshake is not a lost request: nothing was sent.
                let Ok(tcp) = TcpStream::connect(addr).await else {
                    break;
                };
                let Ok(stream) = tokio_rustls::TlsConnector::from(Arc::clone(&client))
                    .connect(ServerName::try_from("localhost").expect("name"), tcp)
                    .await
                else {
                    break;
                };
                let Ok((mut sender, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    break;
                };
                tokio::spawn(conn);
                loop {
                    let req = Request::post("/validate")
                        .header("host", "localhost")
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(Bytes::from(review_body())))
                        .expect("request");
                    match sender.send_request(req).await {
                        Ok(response) => {
                            let close = response
                                .headers()
                                .get("connection")
                                .is_some_and(|v| v == "close");
                            let status = response.status();
                            let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                            if status != 200 {
                                lost.push(format!("status {status}"));
                            }
                            answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if close {
                                closes += 1;
                                continue 'connections;
                            }
                        }
                        Err(e) => {
                            lost.push(e.to_string());
                            continue 'connections;
                        }
                    }
                }
            }
            (lost, closes)
        }));
    }
    eventually("load is flowing", async || {
        answered.load(std::sync::atomic::Ordering::Relaxed) >= 200
    })
    .await;
    let Running {
        stop, task, state, ..
    } = server;
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    eventually("readiness flips", async || !state.is_ready()).await;
    let mut total_closes = 0;
    for c in clients {
        let (lost, closes) = tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("clients stop once the listener closes")
            .expect("client");
        assert!(lost.is_empty(), "lost requests: {lost:?}");
        total_closes += closes;
    }
    assert!(
        total_closes >= 16,
        "answers during the drain say Connection: close"
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("drains")
        .expect("task");
}
