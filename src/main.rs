//! The `gitward` command line: parses arguments and calls the library.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use gitward::commands::{self, PlanOptions, ValidateFormat, ValidateOptions, exit};
use gitward::error::Error;
use gitward::report::Format;

#[derive(Parser)]
#[command(
    name = "gitward",
    version,
    about = "Git as the control plane for TLS certificates, security gates and Rego policies",
    after_help = "Exit codes: 0 success; 1 invalid configuration (validate), blocked change (plan), failed tests (test), a commit blocked or failed (reconcile), no status (status); 2 usage error or invalid input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a demo repository from the embedded example, show the plan of a change to it, and
    /// run the daemon on it until Ctrl-C.
    Demo {
        /// Directory for the demo repository (default: a new temporary directory).
        dir: Option<PathBuf>,
    },
    /// Check a configuration: parse, schema-check, resolve references.
    Validate {
        /// The configuration's directory (in a Git repository for --rev).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Check this commit instead of the working tree.
        #[arg(long)]
        rev: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: ValidateFormat,
    },
    /// Show what changing the configuration from BASE to HEAD would do (the pull-request check).
    Plan {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The revision the change starts from, like `main` or `origin/main`.
        #[arg(long)]
        base: String,
        /// The revision with the change, like `HEAD`.
        #[arg(long)]
        head: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Write the report to this file instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Judge policy exceptions as on this day (YYYY-MM-DD; default today, UTC).
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<NaiveDate>,
    },
    /// Run the `test_` rules of the `*_test.rego` policy tests.
    Test {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Test a commit instead of the working tree.
        #[arg(long)]
        rev: Option<String>,
        /// Run only the tests whose rule path (data.<package>.test_...) matches this regex.
        #[arg(long, value_name = "REGEX")]
        filter: Option<String>,
    },
    /// Print the JSON Schema of a resource kind, the plan report or the host config, or all.
    Schema {
        /// Issuer, Certificate, Policy, Gate, Sink, plan or host-config.
        kind: Option<String>,
        /// Write `<kind>.schema.json` files into this directory instead.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Create a starter configuration repository in DIR.
    Init { dir: PathBuf },
    /// Apply the head of the tracked branch: issue, renew, write outputs, record status in Git.
    Reconcile {
        /// Reconcile once and exit (the daemon is `gitward run`).
        #[arg(long, required = true)]
        once: bool,
        /// The host config.
        #[arg(long, default_value = gitward::config::DEFAULT_PATH)]
        config: PathBuf,
        /// Reconcile as at this time (RFC 3339), to rehearse renewals.
        #[arg(long, value_name = "TIME")]
        now: Option<chrono::DateTime<chrono::Utc>>,
        /// Print only the result and problems.
        #[arg(long, short)]
        quiet: bool,
    },
    /// The daemon: reconcile on webhooks, on the poll interval and when renewals come due.
    Run {
        /// The host config.
        #[arg(long, default_value = gitward::config::DEFAULT_PATH)]
        config: PathBuf,
        /// Log lines for people (text) or one JSON object per event (json), on stderr.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Ask the running daemon's /healthz (for container health checks); 0 when it answers.
    Healthcheck {
        /// The host config naming the daemon's `listen` address.
        #[arg(long, default_value = gitward::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Print the outcome gitward recorded for a commit (default HEAD), read from Git alone.
    Status {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        #[arg(default_value = "HEAD")]
        rev: String,
        #[arg(long, value_enum, default_value = "text")]
        format: ValidateFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The daemon's logs go to stderr.
fn init_logs(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()));
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    gitward::policy::compile::limit_memory();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = match cli.command {
        Command::Demo { dir } => {
            // What each reconcile did, resource by resource, and what went wrong.
            use tracing_subscriber::prelude::*;
            let only = tracing_subscriber::filter::Targets::new()
                .with_target("gitward", tracing::Level::INFO)
                .with_default(tracing::Level::WARN);
            tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(io::stderr)
                        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
                        .with_target(false)
                        .with_filter(only),
                )
                .init();
            commands::demo(dir.as_deref(), &mut out)
        }
        Command::Validate { repo, rev, format } => {
            commands::validate(&ValidateOptions { repo, rev, format }, &mut out)
        }
        Command::Plan {
            repo,
            base,
            head,
            format,
            output,
            date,
        } => commands::plan(
            &PlanOptions {
                repo,
                base,
                head,
                format,
                output,
                today: date,
            },
            &mut out,
            &mut io::stderr(),
        ),
        Command::Schema { kind, out: dir } => {
            commands::schema(kind.as_deref(), dir.as_deref(), &mut out)
        }
        Command::Init { dir } => commands::init(&dir, &mut out),
        Command::Reconcile {
            once: _,
            config,
            now,
            quiet,
        } => commands::reconcile(&config, now, quiet, &mut out),
        Command::Run { config, log_format } => {
            init_logs(log_format);
            gitward::daemon::run(&config)
        }
        Command::Healthcheck { config } => gitward::daemon::healthcheck(&config, &mut out),
        Command::Status { repo, rev, format } => commands::status(&repo, &rev, format, &mut out),
        Command::Test { repo, rev, filter } => {
            commands::test(&repo, rev.as_deref(), filter.as_deref(), &mut out)
        }
    };
    let _ = out.flush();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            // Each error's message already includes its cause.
            eprintln!("error: {error}");
            ExitCode::from(exit::INVALID)
        }
    }
}
