//! `hostgate serve`, `mutate`, `keygen` and `crd`: argument structures and their glue to the
//! library.

use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{ArgAction, Args, ValueEnum};
use hostgate::admission::ReviewOptions;
use hostgate::approval::{SigningIdentity, generate_key_pair};
use hostgate::check::{Input, input};
use hostgate::manifest::read_documents;
use hostgate::mutate::mutate_value;
use hostgate::policy::load as policy_load;
use hostgate::server::conn::ConnectionLimits;
use hostgate::server::routes::Limits;
use hostgate::server::state::PolicySource;
use hostgate::server::tls::{TlsFiles, generate_self_signed};
use hostgate::server::{ServeConfig, Server};
use hostgate::shape::ShapeLimits;
use hostgate::telemetry::{self, LogFormat};

/// `hostgate serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// HTTPS port.
    #[arg(long, value_name = "PORT", default_value_t = 8443)]
    pub secure_port: u16,

    /// Serving certificate (PEM chain); reloaded when it changes.
    #[arg(long, value_name = "FILE", requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// Serving key (PEM); reloaded when it changes.
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,

    /// CA bundle (PEM) of the apiserver's client certificate: when set, clients must present a
    /// certificate signed by it.
    #[arg(long, value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,

    /// Generate a CA and a certificate for localhost/127.0.0.1 (quickstart); prints where the
    /// CA is.
    #[arg(long, conflicts_with_all = ["tls_cert_file", "tls_private_key_file"])]
    pub tls_self_signed: bool,

    /// Where --tls-self-signed writes ca.crt, tls.crt and tls.key.
    #[arg(long, value_name = "DIR", default_value = "hostgate-tls")]
    pub tls_self_signed_dir: PathBuf,

    /// Policy file or directory, repeatable; reloaded when it changes [default: ./policies,
    /// else $HOSTGATE_POLICIES].
    #[arg(short = 'p', long = "policies", value_name = "DIR")]
    pub policies: Vec<PathBuf>,

    /// Where policies come from: files (--policies), HostProcessPolicy objects in the cluster,
    /// or both (a file policy wins over an object of the same name). With the cluster, namespace
    /// labels are watched too, for namespaceSelectors.
    #[arg(long, value_enum, value_name = "SOURCE", default_value_t = PolicySourceArg::Files)]
    pub policy_source: PolicySourceArg,

    /// Write the signing key's public half into this existing ConfigMap (NAMESPACE/NAME) as
    /// <kid>.pub, for the node agents.
    #[arg(long, value_name = "NAMESPACE/NAME", requires = "signing_key")]
    pub publish_public_key: Option<String>,

    /// Private key (PKCS#8 PEM) that signs approvals of admitted HostProcess pods. Without it,
    /// approvals are neither signed nor verified.
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,

    /// Directory of further public keys (*.pub) whose approvals /validate accepts, for key
    /// rotation.
    #[arg(long, value_name = "DIR", requires = "signing_key")]
    pub trust_keys: Option<PathBuf>,

    /// Name this RuntimeClass (`spec.runtimeClassName`) for every HostProcess pod that /mutate
    /// approves when it is created and names none, so that the node's hostgate handler checks
    /// it again. The RuntimeClass must exist: the apiserver refuses pods naming one that does
    /// not.
    #[arg(long, value_name = "NAME", value_parser = super::parse_runtime_class, requires = "signing_key")]
    pub runtime_class: Option<String>,

    /// Whether the kube-apiserver runs with --allow-privileged.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub allow_privileged: bool,

    /// Largest request body.
    #[arg(long, value_name = "SIZE", default_value = "3Mi", value_parser = parse_size)]
    pub max_request_bytes: u64,

    /// Time to read and answer one request.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Reviews handled at once; more wait.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_concurrent_requests: usize,

    /// Connections served at once on the HTTPS port; more wait up to --connection-wait for a
    /// place, then are closed.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_connections: usize,

    /// How long a connection over the cap waits for a place before it is closed.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub connection_wait: Duration,

    /// Plain-HTTP port of /healthz, /readyz and /metrics, served outside the review
    /// concurrency limit and connection cap (0 turns it off; the HTTPS port serves them too).
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub health_port: u16,

    /// Time allowed for a TLS handshake.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// After the handshake, time allowed until the first request begins (no bytes, only the
    /// HTTP/2 preface, or half a request head are closed then).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub first_request_timeout: Duration,

    /// Time a connection may stay open with no request in flight (HTTP/1.1 keep-alive and
    /// HTTP/2 alike; HTTP/2 is closed with GOAWAY).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// How often HTTP/2 connections are pinged.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long an HTTP/2 PING may go unanswered before the connection is closed.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_timeout: Duration,

    /// Age at which a connection is asked to close (GOAWAY, or Connection: close on its next
    /// HTTP/1.1 answer); it is dropped if it has not closed 15 s later.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub max_connection_age: Duration,

    /// Memory the reviews in flight may take together; each review reserves an upper bound of
    /// its peak, from its Content-Length, before its body is read.
    #[arg(long, value_name = "SIZE", default_value = "64Mi", value_parser = parse_size)]
    pub review_memory_budget: u64,

    /// Most JSON objects a review body may hold; larger ones are refused before they are
    /// decoded.
    #[arg(long, value_name = "N", default_value_t = hostgate::shape::DEFAULT_MAX_OBJECTS)]
    pub max_review_objects: usize,

    /// Sign approvals on /mutate for dry-run requests too. Off by default: a dry run creates
    /// no pod, and an approval signed for it could only be copied into another object.
    #[arg(long)]
    pub sign_dry_run: bool,

    /// How often policy and certificate files are checked for changes.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,

    /// After SIGTERM, how long to keep serving while /readyz fails, so endpoints drop the pod.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,

    /// Then, how long in-flight reviews get to finish.
    #[arg(long, value_name = "DURATION", default_value = "25s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Worker threads [default: one per CPU].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    #[command(flatten)]
    pub log: LogArgs,
}

/// `--policy-source`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicySourceArg {
    /// Policy files and directories (--policies).
    Files,
    /// HostProcessPolicy objects in the cluster.
    Cluster,
    /// Both.
    Both,
}

/// Logging flags.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,

    /// Log level (RUST_LOG overrides it).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
}

/// `--log-format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// JSON lines.
    Json,
}

fn parse_size(s: &str) -> Result<u64, String> {
    input::parse_size(s)
}

fn policy_paths(given: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let cwd = std::env::current_dir().context("current directory")?;
    match policy_load::default_policy_dir(
        &cwd,
        std::env::var_os(policy_load::POLICIES_ENV).as_deref(),
    ) {
        Some(dir) => Ok(vec![dir]),
        None => bail!(
            "no policies: ./{} does not exist and {} is not set; pass --policies DIR",
            policy_load::DEFAULT_POLICY_DIR,
            policy_load::POLICIES_ENV
        ),
    }
}

/// Runs the webhook until SIGTERM or Ctrl-C.
pub fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let format = match args.log.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    let color =
        std::io::IsTerminal::is_terminal(&io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    telemetry::init(format, &args.log.log_level, color);

    let tls = if args.tls_self_signed {
        let generated = generate_self_signed(&args.tls_self_signed_dir, &[])
            .context("generating the self-signed certificate")?;
        let ca = std::fs::canonicalize(&generated.ca).unwrap_or(generated.ca.clone());
        eprintln!(
            "hostgate: self-signed certificate for localhost and 127.0.0.1; its CA is {}",
            ca.display()
        );
        eprintln!(
            "hostgate: try  curl --cacert {} https://127.0.0.1:{}/readyz",
            ca.display(),
            args.secure_port
        );
        TlsFiles {
            client_ca: args.client_ca_file.clone(),
            ..generated.files
        }
    } else {
        match (&args.tls_cert_file, &args.tls_private_key_file) {
            (Some(cert), Some(key)) => TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.client_ca_file.clone(),
            },
            _ => bail!("give --tls-cert-file and --tls-private-key-file, or --tls-self-signed"),
        }
    };
    let policy_source = match args.policy_source {
        PolicySourceArg::Files => PolicySource::Files,
        PolicySourceArg::Cluster => PolicySource::Cluster,
        PolicySourceArg::Both => PolicySource::Both,
    };
    let policies = if policy_source == PolicySource::Cluster {
        Vec::new()
    } else {
        policy_paths(&args.policies)?
    };
    let mut config = ServeConfig::new(
        SocketAddr::new(args.bind_address, args.secure_port),
        tls,
        policies,
    );
    config.policy_source = policy_source;
    config.publish_public_key = args.publish_public_key;
    config.signing_key = args.signing_key;
    config.trust_keys = args.trust_keys;
    config.runtime_class = args.runtime_class;
    config.allow_privileged = args.allow_privileged;
    config.limits = Limits {
        max_body_bytes: usize::try_from(args.max_request_bytes).unwrap_or(usize::MAX),
        request_timeout: args.request_timeout,
        max_concurrent_requests: args.max_concurrent_requests,
        review_memory_budget: usize::try_from(args.review_memory_budget).unwrap_or(usize::MAX),
    };
    config.review = ReviewOptions {
        sign_dry_run: args.sign_dry_run,
        shape: ShapeLimits {
            max_objects: args.max_review_objects,
        },
    };
    config.health_bind =
        (args.health_port != 0).then(|| SocketAddr::new(args.bind_address, args.health_port));
    config.connection = ConnectionLimits {
        handshake: args.handshake_timeout,
        first_request: args.first_request_timeout,
        idle: args.idle_timeout,
        h2_keepalive_interval: args.http2_keepalive_interval,
        h2_keepalive_timeout: args.http2_keepalive_timeout,
        max_age: args.max_connection_age,
        ..ConnectionLimits::default()
    };
    config.connection_wait = args.connection_wait;
    config.reload_interval = args.reload_interval;
    config.max_connections = args.max_connections;
    config.shutdown_delay = args.shutdown_delay;
    config.shutdown_timeout = args.shutdown_timeout;

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.workers {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config).await?;
        let addr = server.local_addr().context("listener address")?;
        tracing::info!(%addr, "serving /validate and /mutate");
        if let Some(health) = server.health_addr() {
            let health = health.context("health listener address")?;
            tracing::info!(%health, "serving /healthz, /readyz and /metrics over plain HTTP");
        }
        server.run(shutdown_signal()).await;
        tracing::info!("stopped");
        anyhow::Ok(0)
    })
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// `hostgate mutate`
#[derive(Debug, Args)]
pub struct MutateArgs {
    /// Manifest files, directories, or - for standard input.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Private key that signs approvals of admitted HostProcess Pods (for static pods). Without
    /// it, the manifests are only defaulted.
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,

    /// Policy file or directory, repeatable [default: ./policies, else $HOSTGATE_POLICIES].
    #[arg(short = 'p', long = "policies", value_name = "DIR")]
    pub policies: Vec<PathBuf>,

    /// Namespace of objects that set no metadata.namespace.
    #[arg(short = 'n', long, value_name = "NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// Default as `hostgate serve --runtime-class NAME` does: admitted HostProcess Pods (and
    /// pod templates) that name no RuntimeClass are given NAME.
    #[arg(long, value_name = "NAME", value_parser = super::parse_runtime_class)]
    pub runtime_class: Option<String>,

    /// Print what was defaulted to standard error.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Prints the defaulted (and signed) manifests as multi-document YAML.
pub fn mutate(args: MutateArgs) -> anyhow::Result<u8> {
    let policies = policy_load::load_policies(&policy_paths(&args.policies)?, None)
        .map_err(|e| anyhow::anyhow!("policies could not be loaded:\n{e}"))?;
    let signer = args
        .signing_key
        .as_deref()
        .map(SigningIdentity::from_pem_file)
        .transpose()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let inputs: Vec<Input> = args
        .paths
        .iter()
        .map(|p| Input::from_arg(p.clone()))
        .collect();
    let mut errors = Vec::new();
    let files = input::expand(&inputs, &mut errors);
    let mut out = Vec::new();
    let mut failed = !errors.is_empty();
    for e in &errors {
        eprintln!("error: {e}");
    }
    for file in files {
        let bytes = match input::read(&file, input::DEFAULT_MAX_FILE_SIZE) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
                continue;
            }
        };
        let (docs, read_error) = read_documents(&bytes);
        for doc in docs {
            match mutate_value(
                &policies,
                doc.value,
                &args.namespace,
                None,
                signer.as_ref(),
                now,
                hostgate::defaults::DefaultingOptions {
                    runtime_class: args.runtime_class.as_deref(),
                },
            ) {
                Ok(m) => {
                    if args.verbose {
                        for c in &m.changes {
                            eprintln!(
                                "{}: document {}: {}: {}",
                                file.name, doc.index, c.path, c.description
                            );
                        }
                        if m.signed {
                            eprintln!("{}: document {}: approval signed", file.name, doc.index);
                        }
                    }
                    out.push(m.value);
                }
                Err(e) => {
                    eprintln!("error: {}: document {}: {e}", file.name, doc.index);
                    failed = true;
                }
            }
        }
        if let Some(e) = read_error {
            eprintln!("error: {}: {e}", file.name);
            failed = true;
        }
    }
    let mut stdout = io::stdout().lock();
    for value in out {
        let yaml = serde_yaml::to_string(&value).context("writing YAML")?;
        write!(stdout, "---\n{yaml}").context("writing to standard output")?;
    }
    stdout.flush().context("writing to standard output")?;
    Ok(if failed { 2 } else { 0 })
}

/// `hostgate keygen`
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory for `<kid>.key` (private, mode 0600) and `<kid>.pub`; created if missing.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Writes a new approval signing key pair.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<u8> {
    let (kid, private, public) = generate_key_pair(&args.out)?;
    println!("key id:      {kid}");
    println!("private key: {}", private.display());
    println!("public key:  {}", public.display());
    Ok(0)
}

/// Prints the HostProcessPolicy CustomResourceDefinition.
pub fn crd() -> anyhow::Result<u8> {
    print!("{}", hostgate::policy::crd_yaml()?);
    Ok(0)
}
