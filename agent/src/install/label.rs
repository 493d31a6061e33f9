//! The node label that says "the `hostgate` handler is installed and containerd answers":
//! the RuntimeClass's `scheduling.nodeSelector` names it, so HostProcess pods routed to the
//! handler land only where it exists. Set with one JSON merge patch of the Node through the
//! apiserver, with the agent pod's service account (the chart's RBAC allows only `patch`
//! on `nodes`; Kubernetes cannot limit that to the pod's own node).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Where a pod finds its service account's token and the cluster CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Why the label could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// Not in a cluster: no apiserver address in the environment.
    #[error(
        "no in-cluster apiserver (KUBERNETES_SERVICE_HOST is not set); run in the agent pod or drop --label-node"
    )]
    NotInCluster,
    /// The token or CA could not be read.
    #[error("cannot read {}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no certificate.
    #[error("{} holds no PEM certificate", .0.display())]
    NoCa(PathBuf),
    /// The request did not get an answer.
    #[error("PATCH {url}")]
    Request {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The apiserver refused.
    #[error("PATCH {url}: HTTP {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The apiserver's answer.
        body: String,
    },
}

/// Changes Nodes.
pub trait NodeApi {
    /// Applies a JSON merge patch to Node `name`.
    fn merge_patch_node(&self, name: &str, patch: &str) -> Result<(), LabelError>;
}

/// The apiserver, reached as a pod reaches it.
#[derive(Debug)]
pub struct InCluster {
    agent: ureq::Agent,
    base: String,
    token: String,
}

/// Where the pod's service account volume is: below `$CONTAINER_SANDBOX_MOUNT_POINT` in a
/// HostProcess container (containerd 1.6 links volumes only there, 1.7 binds them there too),
/// else at [`SERVICE_ACCOUNT_DIR`]. The path is joined as a relative one: on Windows, joining
/// `/var/run/…` would keep only the sandbox's drive.
pub fn service_account_dir(sandbox: Option<&std::ffi::OsStr>) -> PathBuf {
    match sandbox {
        Some(root) if !root.is_empty() => {
            Path::new(root).join(SERVICE_ACCOUNT_DIR.trim_start_matches('/'))
        }
        _ => PathBuf::from(SERVICE_ACCOUNT_DIR),
    }
}

impl InCluster {
    /// From the pod's environment and service account (below `$CONTAINER_SANDBOX_MOUNT_POINT`
    /// in a HostProcess container whose runtime does not bind volumes at their paths).
    pub fn from_env() -> Result<Self, LabelError> {
        let host =
            std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| LabelError::NotInCluster)?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".to_owned());
        let dir =
            service_account_dir(std::env::var_os(crate::sync::SANDBOX_MOUNT_POINT_ENV).as_deref());
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| LabelError::Credentials { path, source })
        };
        let token = String::from_utf8_lossy(&read("token")?).trim().to_owned();
        let ca = read("ca.crt")?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Self::new(
            &format!("https://{host}:{port}"),
            &token,
            &ca,
            &dir.join("ca.crt"),
        )
    }

    /// A client for `base` (`https://host:port`) trusting `ca_pem`, sending `token`.
    pub fn new(base: &str, token: &str, ca_pem: &[u8], ca_path: &Path) -> Result<Self, LabelError> {
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(ca_pem)
            .filter_map(Result::ok)
            .filter_map(|item| match item {
                PemItem::Certificate(c) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(LabelError::NoCa(ca_path.to_owned()));
        }
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(certs)))
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        Ok(Self {
            agent: ureq::Agent::new_with_config(config),
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }
}

impl NodeApi for InCluster {
    fn merge_patch_node(&self, name: &str, patch: &str) -> Result<(), LabelError> {
        let url = format!("{}/api/v1/nodes/{name}", self.base);
        let response = self
            .agent
            .patch(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Accept", "application/json")
            .content_type("application/merge-patch+json")
            .send(patch)
            .map_err(|source| LabelError::Request {
                url: url.clone(),
                source: Box::new(source),
            })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = response
            .into_body()
            .read_to_string()
            .unwrap_or_default()
            .chars()
            .take(512)
            .collect();
        Err(LabelError::Status { url, status, body })
    }
}

/// Sets `key=value` on Node `node`, or removes `key` (`None`).
pub fn set_label(
    api: &dyn NodeApi,
    node: &str,
    key: &str,
    value: Option<&str>,
) -> Result<(), LabelError> {
    let patch = serde_json::json!({"metadata": {"labels": {key: value}}});
    api.merge_patch_node(node, &patch.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Recorder(RefCell<Vec<(String, String)>>);

    impl NodeApi for Recorder {
        fn merge_patch_node(&self, name: &str, patch: &str) -> Result<(), LabelError> {
            self.0
                .borrow_mut()
                .push((name.to_owned(), patch.to_owned()));
            Ok(())
        }
    }

    #[test]
    fn labels_are_set_and_removed_with_merge_patches() {
        let api = Recorder::default();
        set_label(&api, "win-1", "hostgate.io/node", Some("ready")).expect("set");
        set_label(&api, "win-1", "hostgate.io/node", None).expect("remove");
        let calls = api.0.borrow();
        assert_eq!(calls[0].0, "win-1");
        assert_eq!(
            calls[0].1,
            r#"{"metadata":{"labels":{"hostgate.io/node":"ready"}}}"#
        );
        assert_eq!(
            calls[1].1,
            r#"{"metadata":{"labels":{"hostgate.io/node":null}}}"#
        );
    }

    #[test]
    fn the_token_is_read_below_the_sandbox_of_a_host_process_container() {
        let sandbox = std::ffi::OsStr::new("/hpc/abc");
        assert_eq!(
            service_account_dir(Some(sandbox)),
            Path::new("/hpc/abc/var/run/secrets/kubernetes.io/serviceaccount")
        );
        assert_eq!(
            service_account_dir(Some(std::ffi::OsStr::new(""))),
            Path::new(SERVICE_ACCOUNT_DIR)
        );
        assert_eq!(service_account_dir(None), Path::new(SERVICE_ACCOUNT_DIR));
    }

    #[test]
    fn a_ca_without_certificates_is_refused() {
        let err = InCluster::new("https://x", "t", b"no pem here", Path::new("ca.crt"))
            .expect_err("no CA");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
