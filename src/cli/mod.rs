//! The command line: `hostgate <command>`. Clap structures, and the glue from arguments to
//! [`hostgate::check`]; everything worth testing lives in the library.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use hostgate::check::output::{self, ColorChoice, Format, OutputOptions};
use hostgate::check::suite::{self, TestReport};
use hostgate::check::{self, CheckOptions, FailOn, Input, NamespaceLabels, input};
use hostgate::policy::Profile;
use hostgate::policy::load as policy_load;
use hostgate::rules::structural::StructuralOptions;

mod server;

/// Admission control for Windows HostProcess pods.
#[derive(Debug, Parser)]
#[command(name = "hostgate", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `hostgate <command>`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests against HostProcess policies, offline (as the webhook would judge them).
    ///
    /// Which rules run:
    ///
    /// - by default: the apiserver's own validation (HP-API-*), then hostgate's policies (HG-*,
    ///   from --policies, ./policies or $HOSTGATE_POLICIES; a HostProcess object no policy admits
    ///   is denied, HG-MATCH-01), on HostProcess objects defaulted as the mutating webhook would;
    ///
    /// - --profile baseline: adds Pod Security Admission's check (HP-PSA-01) everywhere;
    ///
    /// - --no-policies: HP-API-* only, plus HP-PSA-01 with --profile baseline; no policy is
    ///   needed to admit a HostProcess object;
    ///
    /// - --profile structural: HP-API-* only, on the objects exactly as written (no policies,
    ///   no defaults): would the apiserver accept this as written?
    ///
    /// - --no-defaults: whatever runs, on the objects exactly as written.
    ///
    /// Exit status: 0 when every object is allowed, 1 when one is denied (or warned about, with
    /// --fail-on warn), 2 for unreadable or invalid input, bad policies or bad usage.
    Check(CheckArgs),
    /// Print the least-privilege HostProcessPolicy set that admits exactly the HostProcess pods
    /// and workload templates given: one policy per namespace and service account, pinning
    /// their images, accounts, annotations, volume types, host paths and limits.
    ///
    /// The output is YAML for `hostgate check --policies`; start with --mode Audit in a
    /// running cluster. Exit status: 0, or 2 for unreadable or invalid input.
    Suggest(SuggestArgs),
    /// Run the policy test cases (hostgate-test.yaml) found below each directory.
    ///
    /// Exit status: 0 when every case passes, 1 when one fails, 2 for malformed test files.
    Test(TestArgs),
    /// Serve the HTTPS admission webhook (POST /validate, /mutate; GET /healthz, /readyz,
    /// /metrics).
    Serve(Box<server::ServeArgs>),
    /// Print manifests defaulted as /mutate would, and with --signing-key approve admitted
    /// HostProcess Pods (static pods that admission never sees).
    ///
    /// Exit status: 0, or 2 for unreadable input or bad policies.
    Mutate(server::MutateArgs),
    /// Write a new approval signing key pair (<kid>.key, <kid>.pub) into a directory.
    Keygen(server::KeygenArgs),
    /// Print the HostProcessPolicy CustomResourceDefinition.
    Crd,
}

/// `hostgate check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Manifest files, directories (read recursively: *.yaml, *.yml, *.json; hidden entries
    /// skipped), or - for standard input.
    #[arg(
        required_unless_present = "cluster",
        conflicts_with = "cluster",
        value_name = "PATH"
    )]
    pub paths: Vec<PathBuf>,

    /// Judge what runs in the cluster instead of files: Pods and the seven workload kinds,
    /// with the Namespaces' labels (kubeconfig or in-cluster credentials). Pods whose
    /// controller is judged are skipped (see --pods).
    #[arg(long)]
    pub cluster: bool,

    /// With --cluster: the kubeconfig file [default: $KUBECONFIG, else ~/.kube/config, else
    /// in-cluster credentials].
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub kubeconfig: Option<PathBuf>,

    /// With --cluster: the kubeconfig context [default: the current context].
    #[arg(long, value_name = "NAME", requires = "cluster")]
    pub context: Option<String>,

    /// With --cluster: every namespace (otherwise --namespace, else the context's namespace).
    #[arg(short = 'A', long, requires = "cluster", conflicts_with = "namespace")]
    pub all_namespaces: bool,

    /// With --cluster: also judge pods whose controller (DaemonSet, ReplicaSet, Job…) is judged.
    #[arg(long, requires = "cluster")]
    pub pods: bool,

    /// Where policies come from: files (--policies), the cluster's HostProcessPolicy objects,
    /// or both (a file wins over an object of the same name). cluster and both need --cluster.
    #[arg(long, value_enum, value_name = "SOURCE", default_value_t = PolicySourceArg::Files)]
    pub policy_source: PolicySourceArg,

    /// Policy file or directory, repeatable [default: ./policies, else $HOSTGATE_POLICIES].
    #[arg(short = 'p', long = "policies", value_name = "DIR")]
    pub policies: Vec<PathBuf>,

    /// Load no policy files: only the structural rules (HP-API-*) and --profile apply, and a
    /// HostProcess object needs no policy to admit it.
    #[arg(long, conflicts_with = "policies")]
    pub no_policies: bool,

    /// Judge HostProcess objects exactly as written. By default they are first defaulted as
    /// hostgate's mutating webhook would (runAsUserName, limits, nodeSelector…), as in the cluster.
    #[arg(long)]
    pub no_defaults: bool,

    /// baseline: add Pod Security Admission's HostProcess check everywhere; structural: only
    /// what the apiserver itself refuses (HP-API-*), as written, with no policies and no defaults.
    #[arg(long, value_enum, value_name = "PROFILE")]
    pub profile: Option<ProfileArg>,

    /// Namespace of objects that set no metadata.namespace [default: default]. With
    /// --cluster: the namespace to judge.
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Namespace labels for namespaceSelectors: a YAML map {namespace: {key: value}}, or
    /// Namespace objects (as `kubectl get namespaces -o yaml` prints them).
    #[arg(long, value_name = "FILE")]
    pub namespace_labels: Option<PathBuf>,

    /// One namespace label, repeatable; overrides --namespace-labels.
    #[arg(long = "namespace-label", value_name = "NS:KEY=VALUE", value_parser = parse_label)]
    pub namespace_label: Vec<(String, String, String)>,

    /// Judge objects as updates of existing ones rather than creates: a Pod with ephemeral
    /// containers (`kubectl get pod -o yaml` after `kubectl debug`) is then judged as the
    /// webhook judges a pods/ephemeralcontainers update, against the policies'
    /// spec.allow.ephemeralContainers, instead of being refused as a create (HP-API-05).
    #[arg(long)]
    pub update: bool,

    /// Whether the kube-apiserver runs with --allow-privileged (false refuses every HostProcess
    /// container, HP-API-04).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub allow_privileged: bool,

    /// Judge as a webhook run with `hostgate serve --runtime-class NAME` would: HostProcess
    /// objects that a policy admits and that name no RuntimeClass are given NAME first.
    #[arg(long, value_name = "NAME", value_parser = parse_runtime_class, conflicts_with = "no_defaults")]
    pub runtime_class: Option<String>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT", default_value_t = OutputArg::Text)]
    pub output: OutputArg,

    /// Exit 1 for denials only, or for warnings (and audit findings) too.
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = FailOnArg::Deny)]
    pub fail_on: FailOnArg,

    /// Largest input file read (bytes, or with a unit: 512Ki, 16Mi, 1G).
    #[arg(long, value_name = "SIZE", default_value = "16Mi", value_parser = input::parse_size)]
    pub max_file_size: u64,

    /// Colour text output.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorArg::Auto)]
    pub color: ColorArg,

    /// Also list the objects skipped because hostgate does not judge their kind, and the
    /// documents that are not Kubernetes objects (neither apiVersion nor kind).
    #[arg(short, long)]
    pub verbose: bool,

    /// Documents with neither apiVersion nor kind (Helm values, kustomization.yaml, JSON
    /// schemas…) are errors (exit 2) instead of being skipped and counted.
    #[arg(long)]
    pub strict: bool,

    /// Text output: only objects with findings, and the summary.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// `hostgate suggest`
#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// Manifest files, directories (read recursively), or - for standard input.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// The mode of the suggested policies: Audit or Warn for a first rollout, then Enforce.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ModeArg::Enforce)]
    pub mode: ModeArg,

    /// Namespace of objects that set no metadata.namespace.
    #[arg(short = 'n', long, value_name = "NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// Largest input file read (bytes, or with a unit: 512Ki, 16Mi, 1G).
    #[arg(long, value_name = "SIZE", default_value = "16Mi", value_parser = input::parse_size)]
    pub max_file_size: u64,
}

/// `--mode`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Refuse what breaks the policy.
    #[value(name = "Enforce")]
    Enforce,
    /// Admit it with warnings.
    #[value(name = "Warn")]
    Warn,
    /// Admit it and record audit findings.
    #[value(name = "Audit")]
    Audit,
}

/// `hostgate test`
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Directories to search for hostgate-test.yaml files, or test files.
    #[arg(value_name = "DIR", default_value = "policies")]
    pub paths: Vec<PathBuf>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT", default_value_t = TestOutputArg::Text)]
    pub output: TestOutputArg,

    /// Colour text output.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorArg::Auto)]
    pub color: ColorArg,
}

/// `--policy-source`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicySourceArg {
    /// Policy files and directories.
    Files,
    /// The cluster's HostProcessPolicy objects.
    Cluster,
    /// Both; a file policy wins over an object of the same name.
    Both,
}

/// `--profile`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// Pod Security Admission's baseline windowsHostProcess check.
    Baseline,
    /// Only the apiserver's own validation, on the objects as written.
    Structural,
}

/// `hostgate check -o`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    /// Per object, for people.
    Text,
    /// A CheckReport JSON document.
    Json,
    /// JUnit XML.
    Junit,
    /// SARIF 2.1.0.
    Sarif,
}

/// `hostgate test -o`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestOutputArg {
    /// PASS/FAIL lines.
    Text,
    /// A PolicyTestReport JSON document.
    Json,
    /// JUnit XML.
    Junit,
}

/// `--fail-on`
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FailOnArg {
    /// Denials.
    Deny,
    /// Denials and warnings.
    Warn,
    /// Denials, warnings and audit findings.
    Audit,
}

/// `--color`
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ColorArg {
    /// When standard output is a terminal and NO_COLOR is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorArg {
    fn enabled(self, stream_is_terminal: bool) -> bool {
        let choice = match self {
            ColorArg::Auto => ColorChoice::Auto,
            ColorArg::Always => ColorChoice::Always,
            ColorArg::Never => ColorChoice::Never,
        };
        choice.enabled(stream_is_terminal, std::env::var_os("NO_COLOR").as_deref())
    }
}

fn parse_label(s: &str) -> Result<(String, String, String), String> {
    NamespaceLabels::parse_flag(s)
}

/// `--runtime-class`: a RuntimeClass name (a lowercase RFC 1123 subdomain).
fn parse_runtime_class(s: &str) -> Result<String, String> {
    if hostgate::rules::runtime::is_runtime_class_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a RuntimeClass name (a lowercase RFC 1123 subdomain)"
        ))
    }
}

/// Runs a command; the result is the exit status.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check(args) => check(args),
        Command::Suggest(args) => suggest(args),
        Command::Test(args) => test(args),
        Command::Serve(args) => server::serve(*args),
        Command::Mutate(args) => server::mutate(args),
        Command::Keygen(args) => server::keygen(args),
        Command::Crd => server::crd(),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<u8> {
    let structural_only = args.profile == Some(ProfileArg::Structural);
    if structural_only && !args.policies.is_empty() {
        bail!("--profile structural loads no policies: drop --policies");
    }
    if structural_only && args.runtime_class.is_some() {
        bail!("--profile structural judges objects as written: drop --runtime-class");
    }
    let no_policies = args.no_policies || structural_only;
    let cluster_policies = args.policy_source != PolicySourceArg::Files;
    if cluster_policies && !args.cluster {
        bail!("--policy-source cluster and both read the cluster: add --cluster");
    }
    if cluster_policies && no_policies {
        bail!("--policy-source cluster and both load policies: drop --no-policies");
    }
    let policy_paths = if no_policies || args.policy_source == PolicySourceArg::Cluster {
        Vec::new()
    } else if !args.policies.is_empty() {
        args.policies.clone()
    } else {
        let cwd = std::env::current_dir().context("current directory")?;
        match policy_load::default_policy_dir(
            &cwd,
            std::env::var_os(policy_load::POLICIES_ENV).as_deref(),
        ) {
            Some(dir) => vec![dir],
            None => bail!(
                "no policies: ./{} does not exist and {} is not set; pass --policies DIR (or --no-policies)",
                policy_load::DEFAULT_POLICY_DIR,
                policy_load::POLICIES_ENV
            ),
        }
    };
    let profile = match args.profile {
        Some(ProfileArg::Baseline) => Some(Profile::Baseline),
        Some(ProfileArg::Structural) | None => None,
    };
    // With cluster policies the profile is added once both sets are merged.
    let file_profile = if cluster_policies { None } else { profile };
    let policies = policy_load::load_policies(&policy_paths, file_profile)
        .map_err(|e| anyhow::anyhow!("policies could not be loaded:\n{e}"))?;
    let cluster = args
        .cluster
        .then(|| runtime_and_client(&args))
        .transpose()?;
    let policies = match &cluster {
        Some((rt, client)) if cluster_policies => {
            let (from_cluster, invalid) = rt
                .block_on(check::cluster::policies(
                    client,
                    check::cluster::DEFAULT_PAGE_SIZE,
                ))
                .context("reading the cluster's HostProcessPolicy objects")?;
            for reason in invalid {
                eprintln!("warning: HostProcessPolicy {reason}; it is not in force");
            }
            merge_policies(policies, from_cluster, profile)?
        }
        _ => policies,
    };

    let mut labels = match &args.namespace_labels {
        Some(file) => NamespaceLabels::load(file).map_err(anyhow::Error::msg)?,
        None => NamespaceLabels::new(),
    };
    for (ns, key, value) in &args.namespace_label {
        labels.insert(ns, key, value);
    }
    let opts = CheckOptions {
        policies,
        default_namespace: args
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        namespace_labels: labels,
        structural: StructuralOptions {
            allow_privileged: args.allow_privileged,
            create: !args.update,
        },
        max_file_size: args.max_file_size,
        apply_defaults: !args.no_defaults && !structural_only,
        strict: args.strict,
        require_admission: !no_policies,
        runtime_class: args.runtime_class.clone(),
    };
    let report = match &cluster {
        Some((rt, client)) => {
            let namespace = if args.all_namespaces {
                None
            } else {
                Some(
                    args.namespace
                        .clone()
                        .unwrap_or_else(|| client.default_namespace().to_owned()),
                )
            };
            let cluster_opts = check::cluster::ClusterOptions {
                namespace,
                owned_pods: args.pods,
                ..check::cluster::ClusterOptions::default()
            };
            rt.block_on(check::cluster::check_cluster(client, opts, &cluster_opts))
                .context("reading the cluster")?
        }
        None => {
            let inputs: Vec<Input> = args
                .paths
                .iter()
                .map(|p| Input::from_arg(p.clone()))
                .collect();
            check::check(&inputs, &opts)
        }
    };

    let fail_on = match args.fail_on {
        FailOnArg::Deny => FailOn::Deny,
        FailOnArg::Warn => FailOn::Warn,
        FailOnArg::Audit => FailOn::Audit,
    };
    let format = match args.output {
        OutputArg::Text => Format::Text,
        OutputArg::Json => Format::Json,
        OutputArg::Junit => Format::Junit,
        OutputArg::Sarif => Format::Sarif,
    };
    let out_opts = OutputOptions {
        format,
        color: args.color.enabled(io::stdout().is_terminal()),
        verbose: args.verbose,
        quiet: args.quiet,
        fail_on,
    };
    let stderr_color = args.color.enabled(io::stderr().is_terminal());
    output::text::write_errors(&mut io::stderr().lock(), &report, stderr_color)
        .context("writing errors")?;
    write_stdout(|w| output::write_report(w, &report, &out_opts))?;
    Ok(report.status(fail_on).exit_code())
}

/// A single-threaded runtime and a client from the kubeconfig (or in-cluster credentials).
fn runtime_and_client(args: &CheckArgs) -> anyhow::Result<(tokio::runtime::Runtime, kube::Client)> {
    use kube::config::{Config, KubeConfigOptions, Kubeconfig};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = rt.block_on(async {
        match &args.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .context("kubeconfig")
            }
            None if args.context.is_some() => Config::from_kubeconfig(&options)
                .await
                .context("kubeconfig"),
            None => Config::infer()
                .await
                .context("no kubeconfig and no in-cluster credentials"),
        }
    })?;
    let client = {
        let _guard = rt.enter();
        kube::Client::try_from(config).context("cluster client")?
    };
    Ok((rt, client))
}

/// File policies and the cluster's, a file winning over an object of the same name, as the
/// webhook's `--policy-source both` does.
fn merge_policies(
    files: hostgate::policy::PolicySet,
    cluster: Vec<hostgate::policy::CompiledPolicy>,
    profile: Option<Profile>,
) -> anyhow::Result<hostgate::policy::PolicySet> {
    let mut all = files.into_policies();
    for p in cluster {
        if all.iter().all(|f| f.name() != p.name()) {
            all.push(p);
        }
    }
    let set = hostgate::policy::PolicySet::new(all)?;
    Ok(match profile {
        Some(p) => set.with_profile(p),
        None => set,
    })
}

fn suggest(args: SuggestArgs) -> anyhow::Result<u8> {
    let mut opts = CheckOptions::new(hostgate::policy::PolicySet::default());
    opts.max_file_size = args.max_file_size;
    let inputs: Vec<Input> = args
        .paths
        .iter()
        .map(|p| Input::from_arg(p.clone()))
        .collect();
    let (objects, report) = check::read_objects(&inputs, &opts);
    let color = ColorArg::Auto.enabled(io::stderr().is_terminal());
    output::text::write_errors(&mut io::stderr().lock(), &report, color)
        .context("writing errors")?;
    if !report.errors.is_empty() {
        return Ok(2);
    }
    let suggestion = check::suggest::suggest(
        &objects,
        &check::suggest::SuggestOptions {
            mode: match args.mode {
                ModeArg::Enforce => hostgate::policy::Mode::Enforce,
                ModeArg::Warn => hostgate::policy::Mode::Warn,
                ModeArg::Audit => hostgate::policy::Mode::Audit,
            },
            default_namespace: args.namespace,
        },
    );
    for reason in &suggestion.left_out {
        eprintln!("warning: left out: {reason}");
    }
    write_stdout(|w| w.write_all(suggestion.yaml.as_bytes()))?;
    Ok(0)
}

fn test(args: TestArgs) -> anyhow::Result<u8> {
    let files = suite::discover(&args.paths).map_err(anyhow::Error::msg)?;
    if files.is_empty() {
        bail!(
            "no {} found in {}",
            suite::FILE_NAME,
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let report = TestReport::run(&files);
    let color = args.color.enabled(io::stdout().is_terminal());
    write_stdout(|w| match args.output {
        TestOutputArg::Text => suite::write_text(w, &report, color),
        TestOutputArg::Json => suite::write_json(w, &report),
        TestOutputArg::Junit => suite::write_junit(w, &report),
    })?;
    Ok(report.exit_code())
}

/// Writes to a buffered standard output; a closed pipe (`| head`) is not an error.
fn write_stdout(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let mut w = BufWriter::with_capacity(64 * 1024, stdout.lock());
    match f(&mut w).and_then(|()| w.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}
