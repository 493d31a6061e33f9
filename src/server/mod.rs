//! `hostgate serve`: the HTTPS admission webhook.
//!
//! [`Server::bind`] loads TLS and the first policy set and binds the listeners (the TLS port, and
//! the plain-HTTP health port unless it is off); [`Server::run`] accepts connections until the
//! shutdown future completes, then drains: readiness flips to false first, new connections are
//! still accepted for `shutdown_delay` (endpoints take a moment to drop the pod) and every
//! HTTP/1.1 answer says `Connection: close`, then the listeners close and in-flight reviews get
//! `shutdown_timeout` to finish. Every phase of a connection has a deadline ([`conn`]); each
//! port has its own connection cap, so a flood of TLS connections cannot starve the kubelet's
//! probes on the health port.
//! A background task polls the policy directories and the TLS files every `reload_interval` and
//! swaps in what changed; a bad policy set or certificate is logged and counted, and the last
//! good one stays in force.

pub mod cluster;
pub mod conn;
pub mod metrics;
pub mod routes;
pub mod state;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::admission::ReviewOptions;
use crate::approval::{KeyError, SigningIdentity, TrustStore};
use crate::policy::load::{fingerprint, load_paths};
use conn::{ConnectionLimits, Drain, HttpServer};
use routes::Limits;
use state::{AppState, PolicySource};
use tls::{TlsContents, TlsError, TlsFiles};

/// Everything `hostgate serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Plain-HTTP address of `/healthz`, `/readyz` and `/metrics`; `None` turns it off.
    pub health_bind: Option<SocketAddr>,
    /// Serving certificate, key and optional client CA.
    pub tls: TlsFiles,
    /// Policy files and directories.
    pub policies: Vec<PathBuf>,
    /// Private key that signs approvals; `None` disables approvals.
    pub signing_key: Option<PathBuf>,
    /// Further public keys whose approvals `/validate` accepts (key rotation).
    pub trust_keys: Option<PathBuf>,
    /// kube-apiserver `--allow-privileged`.
    pub allow_privileged: bool,
    /// Dry runs and shape limits of reviews.
    pub review: ReviewOptions,
    /// Request limits.
    pub limits: Limits,
    /// How often policies and certificates are checked for changes.
    pub reload_interval: Duration,
    /// Deadlines of every phase of a connection.
    pub connection: ConnectionLimits,
    /// Connections served at once on the TLS port.
    pub max_connections: usize,
    /// Connections served at once on the health port.
    pub max_health_connections: usize,
    /// How long a connection over the cap waits for a place before it is refused.
    pub connection_wait: Duration,
    /// After the shutdown signal, how long to keep accepting while readiness is false.
    pub shutdown_delay: Duration,
    /// Then, how long in-flight requests get to finish.
    pub shutdown_timeout: Duration,
    /// Where policies come from.
    pub policy_source: PolicySource,
    /// `namespace/name` of a ConfigMap into which the signing key's public half is written, for
    /// the node agents.
    pub publish_public_key: Option<String>,
    /// The RuntimeClass `/mutate` names for the HostProcess pods it approves that name none.
    pub runtime_class: Option<String>,
}

impl ServeConfig {
    /// A configuration with the defaults of the command line.
    pub fn new(bind: SocketAddr, tls: TlsFiles, policies: Vec<PathBuf>) -> Self {
        ServeConfig {
            bind,
            health_bind: None,
            tls,
            policies,
            signing_key: None,
            trust_keys: None,
            allow_privileged: true,
            review: ReviewOptions::default(),
            limits: Limits::default(),
            reload_interval: Duration::from_secs(10),
            connection: ConnectionLimits::default(),
            max_connections: 4096,
            max_health_connections: 64,
            connection_wait: Duration::from_secs(1),
            shutdown_delay: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(25),
            policy_source: PolicySource::Files,
            publish_public_key: None,
            runtime_class: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TLS could not be set up.
    #[error("setting up TLS")]
    Tls(#[from] TlsError),
    /// The signing or trust keys could not be read.
    #[error("reading the approval keys")]
    Keys(#[from] KeyError),
    /// No Kubernetes client could be configured (in-cluster or kubeconfig).
    #[error("configuring the Kubernetes client")]
    Kube(#[source] kube::Error),
    /// A flag value is unusable.
    #[error("{0}")]
    Config(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A bound, configured webhook server.
#[derive(Debug)]
pub struct Server {
    config: ServeConfig,
    state: Arc<AppState>,
    tls: Arc<ArcSwap<ServerConfig>>,
    tls_contents: TlsContents,
    policy_fingerprint: u64,
    listener: TcpListener,
    health: Option<TcpListener>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Loads keys, TLS and policies, and binds the listener. A policy set that does not load is
    /// not fatal: the server starts unready and keeps retrying.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServerError> {
        Self::bind_with_client(config, None).await
    }

    /// As [`Server::bind`], with a given Kubernetes client (tests pass a mock); without one, a
    /// client is configured from the environment when the cluster is needed.
    pub async fn bind_with_client(
        config: ServeConfig,
        client: Option<kube::Client>,
    ) -> Result<Server, ServerError> {
        let publish = config
            .publish_public_key
            .as_deref()
            .map(|target| {
                target
                    .split_once('/')
                    .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
                    .map(|(ns, name)| (ns.to_owned(), name.to_owned()))
                    .ok_or_else(|| {
                        ServerError::Config(format!(
                            "--publish-public-key {target:?}: expected NAMESPACE/NAME"
                        ))
                    })
            })
            .transpose()?;
        let signer = config
            .signing_key
            .as_deref()
            .map(SigningIdentity::from_pem_file)
            .transpose()?;
        let trust = config
            .trust_keys
            .as_deref()
            .map(TrustStore::load_dir)
            .transpose()?;
        if let Some(s) = &signer {
            tracing::info!(kid = s.kid(), "signing approvals");
        } else {
            tracing::warn!("no --signing-key: approvals are neither signed nor verified");
        }
        if publish.is_some() && signer.is_none() {
            return Err(ServerError::Config(
                "--publish-public-key needs --signing-key".to_owned(),
            ));
        }
        let published = match (&signer, &publish) {
            (Some(s), Some((ns, name))) => s
                .public_key_pem()
                .map(|pem| (s.kid().to_owned(), pem, ns.clone(), name.clone())),
            _ => None,
        };
        if config.runtime_class.is_some() && signer.is_none() {
            return Err(ServerError::Config(
                "--runtime-class needs --signing-key: the node refuses pods without an approval"
                    .to_owned(),
            ));
        }
        let state = Arc::new(
            AppState::new(signer, trust, config.allow_privileged)
                .with_runtime_class(config.runtime_class.clone())
                .with_options(config.review),
        );
        state.set_policy_source(config.policy_source);
        let needs_cluster = published.is_some() || config.policy_source != PolicySource::Files;
        let client = match (client, needs_cluster) {
            (Some(c), _) => Some(c),
            (None, true) => Some(
                kube::Client::try_default()
                    .await
                    .map_err(ServerError::Kube)?,
            ),
            (None, false) => None,
        };
        let mut background = Vec::new();
        if let Some(client) = &client {
            if config.policy_source != PolicySource::Files {
                background.push(tokio::spawn(cluster::watch_policies(
                    client.clone(),
                    Arc::clone(&state),
                )));
                background.push(tokio::spawn(cluster::watch_namespaces(
                    client.clone(),
                    Arc::clone(&state),
                )));
            }
            if let Some((kid, pem, ns, name)) = published {
                background.push(tokio::spawn(cluster::publish_public_key(
                    client.clone(),
                    kid,
                    pem,
                    ns,
                    name,
                )));
            }
        }

        let tls_contents = config.tls.read()?;
        let (server_config, expiry) = config.tls.build(&tls_contents)?;
        state.metrics.certificate_expiry.set(expiry as f64);
        state.set_tls_ready();

        // Fingerprint before loading, so a change during the load is noticed by the first poll.
        let policy_fingerprint = fingerprint(&config.policies);
        if config.policy_source != PolicySource::Cluster {
            load_policies(&state, &config.policies);
        }

        let listener = bind(config.bind).await?;
        let health = match config.health_bind {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Server {
            config,
            state,
            tls: Arc::new(ArcSwap::new(server_config)),
            tls_contents,
            policy_fingerprint,
            listener,
            health,
            background,
        })
    }

    /// The bound address of the TLS port (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound address of the health port, when it is on.
    pub fn health_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.health.as_ref().map(TcpListener::local_addr)
    }

    /// The shared state.
    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            config,
            state,
            tls,
            tls_contents,
            policy_fingerprint,
            listener,
            health,
            background,
        } = self;
        let reloader = tokio::spawn(reload_loop(
            config.clone(),
            Arc::clone(&state),
            Arc::clone(&tls),
            tls_contents,
            policy_fingerprint,
        ));
        let header_timeout = config.limits.request_timeout;
        let reviews = HttpServer::new(
            routes::router(Arc::clone(&state), config.limits),
            config.connection,
            header_timeout,
        );
        let probes = HttpServer::new(
            routes::health_router(Arc::clone(&state), config.limits),
            config.connection,
            header_timeout,
        );
        let (drain_tx, drain_rx) = watch::channel(Drain::Serving);
        let tls_port = Port {
            name: "tls",
            http: reviews,
            tls: Some(Arc::clone(&tls)),
            slots: Arc::new(Semaphore::new(config.max_connections)),
            waiting: Arc::new(Semaphore::new(config.max_connections.div_ceil(4).max(1))),
            wait: config.connection_wait,
            capacity: config.max_connections,
            state: Arc::clone(&state),
            draining: drain_rx.clone(),
        };
        let health_port = health.as_ref().map(|_| Port {
            name: "health",
            http: probes,
            tls: None,
            slots: Arc::new(Semaphore::new(config.max_health_connections)),
            waiting: Arc::new(Semaphore::new(config.max_health_connections.max(1))),
            wait: config.connection_wait,
            capacity: config.max_health_connections,
            state: Arc::clone(&state),
            draining: drain_rx.clone(),
        });

        tokio::pin!(shutdown);
        let mut drain_deadline = std::pin::pin!(tokio::time::sleep(Duration::MAX / 4));
        let mut draining = false;
        loop {
            tokio::select! {
                () = &mut shutdown, if !draining => {
                    tracing::info!(delay = ?config.shutdown_delay, "shutdown requested: readiness is now false");
                    state.begin_shutdown();
                    let _ = drain_tx.send(Drain::Announced);
                    draining = true;
                    drain_deadline.as_mut().reset(tokio::time::Instant::now() + config.shutdown_delay);
                }
                () = &mut drain_deadline, if draining => break,
                accepted = listener.accept() => tls_port.accepted(accepted).await,
                accepted = accept(health.as_ref()) => {
                    if let Some(port) = &health_port {
                        port.accepted(accepted).await;
                    }
                }
            }
        }
        drop(listener);
        drop(health);
        reloader.abort();
        for task in background {
            task.abort();
        }
        let _ = drain_tx.send(Drain::Closing);
        let open = tls_port.open() + health_port.as_ref().map_or(0, Port::open);
        tracing::info!(open, timeout = ?config.shutdown_timeout, "draining connections");
        let all_closed = async {
            tls_port.closed().await;
            if let Some(port) = &health_port {
                port.closed().await;
            }
        };
        if tokio::time::timeout(config.shutdown_timeout, all_closed)
            .await
            .is_err()
        {
            tracing::warn!("shutdown timeout elapsed with requests still in flight");
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Accepts on the health listener, or never when it is off.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// One listening port: its HTTP server, TLS (or plain HTTP), and its connection cap.
struct Port {
    name: &'static str,
    http: HttpServer,
    tls: Option<Arc<ArcSwap<ServerConfig>>>,
    /// One permit per open connection.
    slots: Arc<Semaphore>,
    /// One permit per connection waiting for a slot.
    waiting: Arc<Semaphore>,
    wait: Duration,
    capacity: usize,
    state: Arc<AppState>,
    draining: watch::Receiver<Drain>,
}

impl Port {
    /// Takes one accepted connection: serves it, lets it wait briefly for a slot, or refuses it.
    async fn accepted(&self, accepted: std::io::Result<(TcpStream, SocketAddr)>) {
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                self.state.metrics.connection_refused("accept_error");
                self.state.warnings.warn("accept failed", &e.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        };
        let _ = tcp.set_nodelay(true);
        let slot = Arc::clone(&self.slots).try_acquire_owned().ok();
        let waiting = match slot {
            Some(_) => None,
            None => match Arc::clone(&self.waiting).try_acquire_owned() {
                Ok(w) => Some(w),
                Err(_) => {
                    self.refuse(peer);
                    return;
                }
            },
        };
        let conn = Conn {
            http: self.http.clone(),
            tls: self.tls.as_ref().map(|t| t.load_full()),
            state: Arc::clone(&self.state),
            draining: self.draining.clone(),
            port: self.name,
        };
        let slots = Arc::clone(&self.slots);
        let wait = self.wait;
        tokio::spawn(async move {
            let permit = match slot {
                Some(p) => p,
                None => match tokio::time::timeout(wait, slots.acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => {
                        drop(waiting);
                        conn.refused(peer);
                        return;
                    }
                },
            };
            drop(waiting);
            conn.serve(tcp, peer, permit).await;
        });
    }

    fn refuse(&self, peer: SocketAddr) {
        self.state.metrics.connection_refused(self.name);
        self.state.warnings.warn(
            "connection limit reached; new connections are refused",
            &peer.to_string(),
        );
    }

    /// Connections open now.
    fn open(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// Completes once every connection has closed.
    async fn closed(&self) {
        let all = u32::try_from(self.capacity).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(all).await;
    }
}

/// What one connection's task needs.
struct Conn {
    http: HttpServer,
    tls: Option<Arc<ServerConfig>>,
    state: Arc<AppState>,
    draining: watch::Receiver<Drain>,
    port: &'static str,
}

impl Conn {
    fn refused(&self, peer: SocketAddr) {
        self.state.metrics.connection_refused(self.port);
        self.state.warnings.warn(
            "connection limit reached; new connections are refused",
            &peer.to_string(),
        );
    }

    async fn serve(self, tcp: TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit) {
        let _permit = permit;
        let ended = match self.tls {
            None => self.http.serve(tcp, self.draining).await,
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let handshake = self.http.limits().handshake;
                let stream = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        self.state.metrics.handshake_failed("error");
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        self.state.metrics.handshake_failed("timeout");
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                self.http.serve(stream, self.draining).await
            }
        };
        self.state.metrics.connection_closed(ended);
        tracing::debug!(%peer, ?ended, "connection closed");
    }
}

/// Loads the policy set once; on success installs it, on failure logs, counts, and keeps the
/// last good set.
fn load_policies(state: &AppState, paths: &[PathBuf]) {
    match load_paths(paths) {
        Ok(set) => {
            let count = set.len();
            state.set_file_policies(set);
            tracing::info!(policies = count, "policy files loaded");
        }
        Err(errors) => {
            state.metrics.policy_reload_errors.inc();
            for e in &errors.0 {
                tracing::error!(error = %e, "policy rejected; the last good policy set stays in force");
            }
        }
    }
}

async fn reload_loop(
    config: ServeConfig,
    state: Arc<AppState>,
    tls: Arc<ArcSwap<ServerConfig>>,
    mut tls_contents: TlsContents,
    mut attempted: u64,
) {
    // Reload only when the files change; a set that failed is not retried (nor counted again)
    // until it changes.
    let mut ticker = tokio::time::interval(config.reload_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let print = fingerprint(&config.policies);
        if print != attempted && config.policy_source != PolicySource::Cluster {
            attempted = print;
            load_policies(&state, &config.policies);
        }
        // A kubelet Secret update swaps both files at once; a read that straddles the swap sees
        // a mismatched pair, so a failed build is retried once before it counts.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = config.tls.read().and_then(|contents| {
                if contents == tls_contents {
                    return Ok(None);
                }
                let built = config.tls.build(&contents)?;
                Ok(Some((contents, built)))
            });
            match result {
                Ok(None) => {}
                Ok(Some((contents, (server_config, expiry)))) => {
                    tls.store(server_config);
                    state.metrics.certificate_expiry.set(expiry as f64);
                    state.metrics.certificate_reloads.inc();
                    tls_contents = contents;
                    tracing::info!("serving certificate reloaded");
                }
                Err(_) if attempt == 1 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => {
                    state.metrics.certificate_reload_errors.inc();
                    tracing::error!(error = %crate::telemetry::Chain(&e), "certificate reload failed; the last good certificate stays in use");
                }
            }
            break;
        }
    }
}
