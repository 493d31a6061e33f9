//! Connections: TCP (+ TLS through rustls) + an HTTP/1.1 or HTTP/2 client connection from hyper.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// HTTP version spoken on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive: one request at a time per connection.
    Http1,
    /// HTTP/2: several streams per connection (`--streams`).
    Http2,
}

impl Protocol {
    /// Name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }
}

/// A rustls client configuration trusting `cacert` (PEM bundle), or anything with `insecure`.
pub fn tls_config(
    cacert: Option<&Path>,
    insecure: bool,
    protocol: Protocol,
) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let path = cacert.ok_or_else(|| {
            anyhow::anyhow!("an https:// target needs --cacert FILE (or --insecure)")
        })?;
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| anyhow::anyhow!("{}: invalid PEM: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("{}: unusable CA certificate: {e}", path.display()))?;
        }
        anyhow::ensure!(!roots.is_empty(), "{} holds no certificate", path.display());
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = match protocol {
        Protocol::Http1 => vec![b"http/1.1".to_vec()],
        Protocol::Http2 => vec![b"h2".to_vec()],
    };
    Ok(Arc::new(config))
}

/// `--insecure`: accepts any certificate but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens connections to one address.
#[derive(Debug, Clone)]
pub struct Connector {
    addr: SocketAddr,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    protocol: Protocol,
}

/// What a TLS handshake negotiated (for the report).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// `TLSv1_3`, …; empty without TLS.
    pub tls_version: String,
    /// `TLS13_AES_256_GCM_SHA384`, …; empty without TLS.
    pub cipher: String,
}

impl Connector {
    /// A connector to `addr`; with `tls`, `server_name` is checked against the certificate.
    pub fn new(
        addr: SocketAddr,
        tls: Option<Arc<ClientConfig>>,
        server_name: &str,
        protocol: Protocol,
    ) -> anyhow::Result<Self> {
        let tls = match tls {
            Some(config) => {
                let name = ServerName::try_from(server_name.to_owned())
                    .map_err(|e| anyhow::anyhow!("invalid server name {server_name:?}: {e}"))?;
                Some((config, name))
            }
            None => None,
        };
        Ok(Connector {
            addr,
            tls,
            protocol,
        })
    }

    /// Connects, handshakes and starts the HTTP connection task.
    pub async fn connect(&self) -> anyhow::Result<(Conn, Negotiated)> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            Some((config, name)) => {
                let stream = TlsConnector::from(Arc::clone(config))
                    .connect(name.clone(), tcp)
                    .await?;
                let (_, session) = stream.get_ref();
                let negotiated = Negotiated {
                    tls_version: session
                        .protocol_version()
                        .map(|v| format!("{v:?}"))
                        .unwrap_or_default(),
                    cipher: session
                        .negotiated_cipher_suite()
                        .map(|c| format!("{:?}", c.suite()))
                        .unwrap_or_default(),
                };
                if self.protocol == Protocol::Http2 && session.alpn_protocol() != Some(b"h2") {
                    anyhow::bail!("the server did not accept HTTP/2 (ALPN h2)");
                }
                Ok((self.handshake(stream).await?, negotiated))
            }
            None => Ok((self.handshake(tcp).await?, Negotiated::default())),
        }
    }

    async fn handshake<S>(&self, io: S) -> anyhow::Result<Conn>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        match self.protocol {
            Protocol::Http1 => {
                let (sender, conn) = http1::handshake(io).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Conn::Http1(sender))
            }
            Protocol::Http2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Conn::Http2(sender))
            }
        }
    }
}

/// One client connection.
#[derive(Debug)]
pub enum Conn {
    /// HTTP/1.1: exclusively owned, one request at a time.
    Http1(http1::SendRequest<Full<Bytes>>),
    /// HTTP/2: cloned per stream worker.
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    /// Another handle on the same connection (HTTP/2 only).
    pub fn try_clone(&self) -> Option<Conn> {
        match self {
            Conn::Http1(_) => None,
            Conn::Http2(s) => Some(Conn::Http2(s.clone())),
        }
    }

    /// Waits until the connection can take a request, then sends it.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match self {
            Conn::Http1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Conn::Http2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}
