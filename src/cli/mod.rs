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
    /// Exit status: 0 when every object is allowed, 1 when one is denied (or warned about, with
    /// --fail-on warn), 2 for unreadable or invalid input, bad policies or bad usage.
    Check(CheckArgs),
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
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Policy file or directory, repeatable [default: ./policies, else $HOSTGATE_POLICIES].
    #[arg(short = 'p', long = "policies", value_name = "DIR")]
    pub policies: Vec<PathBuf>,

    /// Load no policy files: only the structural rules and --profile apply.
    #[arg(long, conflicts_with = "policies")]
    pub no_policies: bool,

    /// Judge HostProcess objects exactly as written. By default they are first defaulted as
    /// hostgate's mutating webhook would (runAsUserName, limits, nodeSelector…), as in the cluster.
    #[arg(long)]
    pub no_defaults: bool,

    /// Add a built-in profile that applies everywhere.
    #[arg(long, value_enum, value_name = "PROFILE")]
    pub profile: Option<ProfileArg>,

    /// Namespace of objects that set no metadata.namespace.
    #[arg(short = 'n', long, value_name = "NAMESPACE", default_value = "default")]
    pub namespace: String,

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

    /// Also list the objects skipped because hostgate does not judge their kind.
    #[arg(short, long)]
    pub verbose: bool,

    /// Text output: only objects with findings, and the summary.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
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

/// `--profile`
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileArg {
    /// Pod Security Admission's baseline windowsHostProcess check.
    Baseline,
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

/// Runs a command; the result is the exit status.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check(args) => check(args),
        Command::Test(args) => test(args),
        Command::Serve(args) => server::serve(*args),
        Command::Mutate(args) => server::mutate(args),
        Command::Keygen(args) => server::keygen(args),
        Command::Crd => server::crd(),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<u8> {
    let policy_paths = if args.no_policies {
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
    let profile = args.profile.map(|ProfileArg::Baseline| Profile::Baseline);
    let policies = policy_load::load_policies(&policy_paths, profile)
        .map_err(|e| anyhow::anyhow!("policies could not be loaded:\n{e}"))?;

    let mut labels = match &args.namespace_labels {
        Some(file) => NamespaceLabels::load(file).map_err(anyhow::Error::msg)?,
        None => NamespaceLabels::new(),
    };
    for (ns, key, value) in &args.namespace_label {
        labels.insert(ns, key, value);
    }
    let opts = CheckOptions {
        policies,
        default_namespace: args.namespace.clone(),
        namespace_labels: labels,
        structural: StructuralOptions {
            allow_privileged: args.allow_privileged,
            create: !args.update,
        },
        max_file_size: args.max_file_size,
        apply_defaults: !args.no_defaults,
    };
    let inputs: Vec<Input> = args
        .paths
        .iter()
        .map(|p| Input::from_arg(p.clone()))
        .collect();
    let report = check::check(&inputs, &opts);

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
