//! `install --label-node`'s apiserver call against a real TLS server: the PATCH the agent sends
//! (method, path, content type, bearer token, body) and how a refusal is reported. The server
//! is a thread answering one request per connection with a certificate from a test CA, which
//! the client must trust through the given CA file (no system roots).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use hostgate_agent::install::label::{InCluster, LabelError, NodeApi as _, set_label};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// A one-shot HTTPS server for `127.0.0.1`, answering `status` with `answer`; returns its port,
/// the CA's PEM and what it received.
fn server(status: u16, answer: &'static str) -> (u16, String, mpsc::Receiver<Seen>) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        let conn = rustls::ServerConnection::new(Arc::new(config)).expect("conn");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut reader = BufReader::new(&mut tls);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.trim_end().split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        let _ = reader.read_exact(&mut body);
        let reply = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        );
        let _ = tls.write_all(reply.as_bytes());
        let _ = tls.flush();
        tls.conn.send_close_notify();
        let _ = tls.flush();
        let _ = tx.send(Seen {
            request_line: request_line.trim_end().to_owned(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    });
    (port, ca.pem(), rx)
}

#[test]
fn the_label_is_one_authenticated_merge_patch_of_the_node() {
    let (port, ca, seen) = server(200, "{}");
    let api = InCluster::new(
        &format!("https://127.0.0.1:{port}"),
        "sa-token",
        ca.as_bytes(),
        Path::new("ca.crt"),
    )
    .expect("client");
    set_label(&api, "win-node-1", "hostgate.io/node", Some("ready")).expect("labelled");
    let seen = seen.recv().expect("a request");
    assert_eq!(seen.request_line, "PATCH /api/v1/nodes/win-node-1 HTTP/1.1");
    let header = |name: &str| {
        seen.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(header("authorization"), "Bearer sa-token");
    assert_eq!(header("content-type"), "application/merge-patch+json");
    assert_eq!(
        seen.body,
        r#"{"metadata":{"labels":{"hostgate.io/node":"ready"}}}"#
    );
}

#[test]
fn a_refusal_names_the_status_and_the_apiservers_answer() {
    let (port, ca, _seen) = server(
        403,
        r#"{"reason":"Forbidden","message":"nodes is forbidden"}"#,
    );
    let api = InCluster::new(
        &format!("https://127.0.0.1:{port}"),
        "t",
        ca.as_bytes(),
        Path::new("ca"),
    )
    .expect("client");
    match api.merge_patch_node("n", "{}") {
        Err(LabelError::Status { status, body, .. }) => {
            assert_eq!(status, 403);
            assert!(body.contains("nodes is forbidden"), "{body}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_untrusted_server_is_not_spoken_to() {
    let (port, _ca, _seen) = server(200, "{}");
    // A CA the server's certificate does not chain to.
    let (_, other_ca, _) = server(200, "{}");
    let api = InCluster::new(
        &format!("https://127.0.0.1:{port}"),
        "t",
        other_ca.as_bytes(),
        Path::new("ca"),
    )
    .expect("client");
    assert!(matches!(
        api.merge_patch_node("n", "{}"),
        Err(LabelError::Request { .. })
    ));
}
