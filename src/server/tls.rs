//! Serving TLS: TLS 1.2 and 1.3 only, optional client-certificate authentication of the
//! apiserver, certificates reloaded when their files change, and a self-signed certificate for
//! the quickstart.
//!
//! Reload compares file *contents* on every poll, so it sees every way a file can change,
//! including the kubelet's atomic `..data` symlink swap of a mounted Secret (which produces no
//! write event on the files themselves). Each new connection takes the configuration in force
//! when it is accepted; established connections keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of CAs whose client certificates are accepted; `None`: no client
    /// authentication.
    pub client_ca: Option<PathBuf>,
}

/// A TLS setup problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the expected kind.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the configuration (e.g. key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The self-signed certificate could not be generated.
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
}

/// The bytes of the three files, to detect changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsContents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

impl TlsFiles {
    /// Reads the files.
    pub fn read(&self) -> Result<TlsContents, TlsError> {
        Ok(TlsContents {
            cert: read(&self.cert)?,
            key: read(&self.key)?,
            client_ca: self.client_ca.as_deref().map(read).transpose()?,
        })
    }

    /// Builds a server configuration from file contents; also returns the leaf certificate's
    /// expiry (Unix time).
    pub fn build(&self, contents: &TlsContents) -> Result<(Arc<ServerConfig>, i64), TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&contents.cert)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Pem {
                path: self.cert.clone(),
                what: format!("invalid PEM certificate: {e}"),
            })?;
        let Some(leaf) = chain.first() else {
            return Err(TlsError::Pem {
                path: self.cert.clone(),
                what: "no certificate found".to_owned(),
            });
        };
        let expiry = certificate_expiry(leaf).ok_or_else(|| TlsError::Pem {
            path: self.cert.clone(),
            what: "not an X.509 certificate".to_owned(),
        })?;
        let key = PrivateKeyDer::from_pem_slice(&contents.key).map_err(|e| TlsError::Pem {
            path: self.key.clone(),
            what: format!("no usable private key: {e}"),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match (&self.client_ca, &contents.client_ca) {
            (Some(path), Some(pem)) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| TlsError::Pem {
                        path: path.clone(),
                        what: format!("invalid PEM certificate: {e}"),
                    })?;
                    roots.add(cert).map_err(|e| TlsError::Pem {
                        path: path.clone(),
                        what: format!("unusable CA certificate: {e}"),
                    })?;
                }
                if roots.is_empty() {
                    return Err(TlsError::Pem {
                        path: path.clone(),
                        what: "no CA certificate found".to_owned(),
                    });
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok((Arc::new(config), expiry))
    }
}

/// The `notAfter` of a DER certificate, as Unix time.
pub fn certificate_expiry(der: &CertificateDer<'_>) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Files written for `--tls-self-signed`.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The CA that signed the serving certificate (give it to clients: `curl --cacert`).
    pub ca: PathBuf,
    /// The serving certificate and key.
    pub files: TlsFiles,
}

/// Generates a CA and a serving certificate for `localhost`, `127.0.0.1` and `::1` (plus
/// `extra_names`) into `dir`, valid for one year.
pub fn generate_self_signed(dir: &Path, extra_names: &[String]) -> Result<SelfSigned, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(365);

    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hostgate self-signed CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(extra_names.iter().cloned());
    let leaf_key = KeyPair::generate().map_err(err)?;
    let mut leaf_params = CertificateParams::new(names).map_err(err)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "hostgate webhook");
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.not_before = not_before;
    leaf_params.not_after = not_after;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;

    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let write = |name: &str, data: &str| -> Result<PathBuf, TlsError> {
        let path = dir.join(name);
        std::fs::write(&path, data).map_err(|source| TlsError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    };
    let ca = write("ca.crt", &ca_cert.pem())?;
    let cert = write("tls.crt", &leaf.pem())?;
    let key = write("tls.key", &leaf_key.serialize_pem())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| TlsError::Write {
                path: key.clone(),
                source,
            },
        )?;
    }
    Ok(SelfSigned {
        ca,
        files: TlsFiles {
            cert,
            key,
            client_ca: None,
        },
    })
}
