//! The `gitward` command line: parses arguments and calls the library.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use gitward::commands::{self, PlanOptions, Trust, ValidateFormat, ValidateOptions, exit};
use gitward::error::Error;
use gitward::report::Format;
use gitward::trust::approve::ApproveOptions;

#[derive(Parser)]
#[command(
    name = "gitward",
    version,
    about = "Git as the control plane for TLS certificates, security gates and Rego policies",
    after_help = "Exit codes: 0 success; 1 invalid configuration (validate), blocked change (plan), failed tests (test), a commit blocked or failed (reconcile), unhealthy (healthcheck), no status (status); 2 usage error or invalid input (an invalid head or a merge conflict in plan, no resources). `gitward COMMAND --help` gives each command's."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum StateCommand {
    /// Replace a damaged state database: the old file is kept aside, the issuance journal is
    /// rebuilt from the status branch and the secret store. Stop the daemon first.
    #[command(
        after_help = "Exit codes: 0 rebuilt; 2 host config error, the daemon is running, or another usage error."
    )]
    Rebuild {
        /// The host config.
        #[arg(long, default_value = gitward::config::DEFAULT_PATH)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum SinksCommand {
    /// The delivery state of each sink: delivered, backlog, oldest pending, dead letters,
    /// last error.
    #[command(after_help = "Exit codes: 0 shown; 2 host config error or another usage error.")]
    Status {
        /// The host config.
        #[arg(long, default_value = gitward::config::DEFAULT_PATH)]
        config: PathBuf,
        /// A table for people, or JSON.
        #[arg(long, value_enum, default_value = "text")]
        format: ValidateFormat,
    },
    /// Send a `sink.test` event through the sink's endpoint and print the receiver's answer.
    #[command(after_help = "Exit codes: 0 delivered; 1 not delivered; 2 usage error.")]
    Test {
        /// The sink, by name.
        name: String,
        /// The host config.
        #[arg(long, default_value = gitward::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Put the sink's dead letters back in its queue (after fixing what the receiver refused).
    #[command(after_help = "Exit codes: 0 queued again; 2 no such sink, or another usage error.")]
    Retry {
        /// The sink, by name.
        name: String,
        /// The host config.
        #[arg(long, default_value = gitward::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Drop the sink's dead letters.
    #[command(after_help = "Exit codes: 0 dropped; 2 no such sink, or another usage error.")]
    Discard {
        /// The sink, by name.
        name: String,
        /// The host config.
        #[arg(long, default_value = gitward::config::DEFAULT_PATH)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Build a demo repository from the embedded example, show the plan of a change to it, and
    /// run the daemon on it until Ctrl-C.
    #[command(
        after_help = "Exit codes: 0 stopped by Ctrl-C or SIGTERM; 2 DIR is already a Git repository, or another usage error."
    )]
    Demo {
        /// Directory for the demo repository (default: a new temporary directory).
        dir: Option<PathBuf>,
    },
    /// Check a configuration: parse, schema-check, resolve references, compile policies.
    #[command(
        after_help = "Exit codes: 0 valid; 1 invalid (each problem printed as file:line:col: message); 2 usage error, or no resources (see --allow-empty)."
    )]
    Validate {
        /// The configuration's directory (in a Git repository for --rev).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Check this commit instead of the working tree.
        #[arg(long)]
        rev: Option<String>,
        /// Text for people, or JSON with counts and diagnostics.
        #[arg(long, value_enum, default_value = "text")]
        format: ValidateFormat,
        /// Accept a configuration without resources (refused by default: most often a wrong
        /// --repo or --rev).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Show what merging HEAD into BASE would do (the pull-request check).
    #[command(
        after_help = "Exit codes: 0 would apply (now, or when the window it waits for opens); 1 blocked (a new deny finding without an exception, or a gate of the base it fails); 2 invalid head, a merge conflict, no resources (see --allow-empty), or a usage error."
    )]
    Plan {
        /// The configuration's directory, in a Git repository (a subdirectory in a monorepo).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The revision the change starts from, like `main` or `origin/main`.
        #[arg(long)]
        base: String,
        /// The revision with the change, like `HEAD`; it is planned as merged into BASE.
        #[arg(long)]
        head: String,
        /// How the report is written.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Write the report to this file instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Judge policy exceptions as on this day (YYYY-MM-DD; default the day of --now, UTC).
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<NaiveDate>,
        /// Judge gate windows at this time (RFC 3339, like 2026-12-01T10:00:00Z; default now).
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        /// Check approvals and commit signatures against this allowed-signers file (git's
        /// gpg.ssh.allowedSignersFile format), as the daemon's host config does. Without it,
        /// no signature counts.
        #[arg(long, value_name = "FILE")]
        allowed_signers: Option<PathBuf>,
        /// Revoked keys, one public key per line.
        #[arg(long, value_name = "FILE", requires = "allowed_signers")]
        revoked_keys: Option<PathBuf>,
        /// Count `Approved-by:` trailers (unverified), as a host with gates.trustTrailers does.
        #[arg(long)]
        trust_trailers: bool,
        /// Read the change requests gates ask about through this host config's endpoints, and
        /// the pull request reviews they count through its forge (with --post, those of the
        /// pull request posted to). Without them, such a gate fails.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Accept a base and a head without resources (refused by default: most often a wrong
        /// --repo or revision).
        #[arg(long)]
        allow_empty: bool,
        /// Evaluate every policy on the head, even where the base's note (from the daemon,
        /// same policies; another day's too while no policy reads the clock) could stand for
        /// the results the change cannot alter.
        #[arg(long)]
        full: bool,
        /// Post the result to the pull request: commit status `gitward/plan` on its head and
        /// one comment, updated in place. The forge, repository, pull request and token come
        /// from the CI's variables (GitHub Actions, GitLab CI, Jenkins, Azure Pipelines,
        /// Bitbucket Pipelines); the options below say what the CI does not.
        #[arg(long)]
        post: bool,
        /// The forge to post to.
        #[arg(long, value_enum, requires = "post")]
        forge: Option<gitward::forge::ForgeKind>,
        /// The repository's web URL, like https://github.com/acme/pki; the API's URL follows
        /// from it (https://api.github.com, https://gitlab.example.com/api/v4...).
        #[arg(long, value_name = "URL", requires = "post")]
        repo_url: Option<String>,
        /// The forge API's base URL, when it is not where --repo-url puts it.
        #[arg(long, value_name = "URL", requires = "post")]
        api_url: Option<String>,
        /// The pull (merge) request's number.
        #[arg(long, value_name = "N", requires = "post")]
        pr: Option<u64>,
        /// The commit to set the status on (default: the pull request's head as the CI says,
        /// else --head).
        #[arg(long, value_name = "SHA", requires = "post")]
        sha: Option<String>,
        /// A file holding the token to post with (default: GITWARD_FORGE_TOKEN, then the CI's
        /// own token variable).
        #[arg(long, value_name = "FILE", requires = "post")]
        token_file: Option<PathBuf>,
        /// CA certificates (PEM) to trust for a self-hosted forge, instead of the system's.
        #[arg(long, value_name = "FILE", requires = "post")]
        forge_ca_file: Option<PathBuf>,
    },
    /// Run the `test_` rules of the `*_test.rego` policy tests.
    #[command(
        after_help = "Exit codes: 0 every test passes; 1 a test fails or a module does not compile; 2 usage error."
    )]
    Test {
        /// The configuration's directory (in a Git repository for --rev).
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
    #[command(
        after_help = "Exit codes: 0 printed or written; 2 unknown KIND, or another usage error."
    )]
    Schema {
        /// Issuer, Certificate, Policy, Gate, Sink, plan or host-config.
        kind: Option<String>,
        /// Write `<kind>.schema.json` files into this directory instead.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Create a starter configuration in DIR (a new Git repository unless DIR is in one), and
    /// the config of a trial host that applies it, kept out of Git.
    #[command(
        after_help = "Exit codes: 0 written; 2 a file it would write exists (nothing is overwritten), or another usage error."
    )]
    Init {
        /// Directory for the configuration; created when missing.
        dir: PathBuf,
    },
    /// Apply the head of the tracked branch: issue, renew, write outputs, record status in Git.
    #[command(
        after_help = "Exit codes: 0 applied; 1 blocked or failed, or the status not pushed to the remote; 2 host config error, or another usage error."
    )]
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
    /// Where events go: the delivery state of each sink, test events, dead letters.
    #[command(
        subcommand,
        after_help = "Exit codes: 0 done; 1 a test event not delivered; 2 no such sink, host config error or another usage error."
    )]
    Sinks(SinksCommand),
    /// The events in the outbox, oldest first.
    #[command(
        after_help = "Exit codes: 0 listed; 2 unknown event type, host config error or another usage error."
    )]
    Events {
        /// The host config.
        #[arg(long, default_value = gitward::config::DEFAULT_PATH)]
        config: PathBuf,
        /// Only events since this time (RFC 3339, like 2026-11-27T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only events of this type, like `certificate.issued`.
        #[arg(long = "type", value_name = "TYPE", value_parser = event_type)]
        type_: Option<gitward::model::EventType>,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// One line per event, or JSON lines (CloudEvents).
        #[arg(long, value_enum, default_value = "text")]
        format: ValidateFormat,
    },
    /// The problems the ticket sinks (Jira, ServiceNow) track, with their tickets and SLA.
    #[command(after_help = "Exit codes: 0 listed; 2 host config error or another usage error.")]
    Tickets {
        /// The host config.
        #[arg(long, default_value = gitward::config::DEFAULT_PATH)]
        config: PathBuf,
        /// A table, or JSON.
        #[arg(long, value_enum, default_value = "text")]
        format: ValidateFormat,
    },
    /// The state database (`stateDir/gitward.db`).
    #[command(
        subcommand,
        after_help = "Exit codes: 0 done; 2 host config error, the daemon is running, or another usage error."
    )]
    State(StateCommand),
    /// The daemon: reconcile on webhooks, on the poll interval and when renewals come due.
    #[command(
        after_help = "Exit codes: 0 stopped by SIGTERM or SIGINT; 2 host config error, a second daemon on the same state directory, or another usage error."
    )]
    Run {
        /// The host config.
        #[arg(long, default_value = gitward::config::DEFAULT_PATH)]
        config: PathBuf,
        /// Log lines for people (text) or one JSON object per event (json), on stderr.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Ask the running daemon's /healthz (for container health checks); 0 when it answers.
    #[command(
        after_help = "Exit codes: 0 healthy; 1 answered, unhealthy; 2 no answer, or a host config error."
    )]
    Healthcheck {
        /// The host config naming the daemon's `listen` address.
        #[arg(long, default_value = gitward::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Why a commit was applied, blocked, pending or failed, from Git alone: the daemon's
    /// note on it, the gates' decisions and evidence, and the approvals of its tree.
    #[command(
        after_help = "Exit codes: 0 explained; 1 the commit has no record; 2 usage error.\nIn a clone, fetch the notes first: git fetch origin 'refs/notes/*:refs/notes/*'."
    )]
    Explain {
        /// A directory in the Git repository.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The commit to explain.
        #[arg(default_value = "HEAD")]
        rev: String,
        /// Check the approvals of its tree against this allowed-signers file.
        #[arg(long, value_name = "FILE")]
        allowed_signers: Option<PathBuf>,
        /// Revoked keys, one public key per line.
        #[arg(long, value_name = "FILE", requires = "allowed_signers")]
        revoked_keys: Option<PathBuf>,
    },
    /// Sign an approval of REV's tree for its gates with your SSH key, into
    /// refs/notes/gitward-approvals, and push it; it counts where the host's allowed signers
    /// list the key for the principal.
    #[command(
        after_help = "Exit codes: 0 approved (and pushed, unless --no-push); 2 no gate, principal or key to approve with, the push refused, or another usage error."
    )]
    Approve {
        /// A directory in the Git repository (the configuration's, in a monorepo).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The commit whose tree is approved; a commit with the same tree shares the approval.
        rev: String,
        /// The private SSH key to sign with (default: git config user.signingkey when it
        /// names a key file, else ~/.ssh/id_ed25519).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// A gate to approve; repeat for several (default: every gate REV defines).
        #[arg(long = "gate", value_name = "NAME")]
        gates: Vec<String>,
        /// The principal approving, as the host's allowed signers list it (default: git
        /// config user.email).
        #[arg(long = "as", value_name = "PRINCIPAL")]
        principal: Option<String>,
        /// The remote (a name or a URL) the approvals are pushed to.
        #[arg(long, default_value = "origin")]
        remote: String,
        /// Record the approval in this repository only.
        #[arg(long)]
        no_push: bool,
    },
    /// Print the outcome gitward recorded for a commit (default HEAD), read from Git alone.
    #[command(after_help = "Exit codes: 0 printed; 1 REV has no status; 2 usage error.")]
    Status {
        /// A directory in the Git repository.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The commit whose status to print.
        #[arg(default_value = "HEAD")]
        rev: String,
        /// Text for people, or the note as JSON.
        #[arg(long, value_enum, default_value = "text")]
        format: ValidateFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr: the daemon's from `level` up, and what `reconcile --once` keeps from the
/// notes (a reload command's output, a directory) as warnings.
fn init_logs(format: LogFormat, level: tracing::Level) {
    let logs = tracing_subscriber::fmt()
        .with_max_level(level)
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
        Command::Validate {
            repo,
            rev,
            format,
            allow_empty,
        } => commands::validate(
            &ValidateOptions {
                repo,
                rev,
                format,
                allow_empty,
            },
            &mut out,
        ),
        Command::Plan {
            repo,
            base,
            head,
            format,
            output,
            date,
            now,
            allowed_signers,
            revoked_keys,
            trust_trailers,
            config,
            allow_empty,
            full,
            post,
            forge,
            repo_url,
            api_url,
            pr,
            sha,
            token_file,
            forge_ca_file,
        } => commands::plan(
            &PlanOptions {
                repo,
                base,
                head,
                format,
                output,
                today: date,
                now,
                allow_empty,
                trust: Trust {
                    allowed_signers,
                    revocations: revoked_keys,
                    trust_trailers,
                },
                host_config: config,
                full,
                post: post.then_some(commands::post::PostOptions {
                    forge,
                    repo_url,
                    api_url,
                    pr,
                    sha,
                    token_file,
                    ca_file: forge_ca_file,
                }),
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
        } => {
            init_logs(LogFormat::Text, tracing::Level::WARN);
            commands::reconcile(&config, now, quiet, &mut out)
        }
        Command::Sinks(command) => {
            init_logs(LogFormat::Text, tracing::Level::WARN);
            match command {
                SinksCommand::Status { config, format } => {
                    commands::sinks::status(&config, format, &mut out)
                }
                SinksCommand::Test { name, config } => {
                    commands::sinks::test(&config, &name, &mut out)
                }
                SinksCommand::Retry { name, config } => {
                    commands::sinks::retry(&config, &name, &mut out)
                }
                SinksCommand::Discard { name, config } => {
                    commands::sinks::discard(&config, &name, &mut out)
                }
            }
        }
        Command::Events {
            config,
            since,
            type_,
            limit,
            format,
        } => commands::sinks::events(
            &commands::sinks::EventsOptions {
                config: &config,
                since,
                type_,
                limit,
                format,
            },
            &mut out,
        ),
        Command::Tickets { config, format } => {
            commands::tickets::tickets(&config, format, &mut out)
        }
        Command::State(StateCommand::Rebuild { config }) => {
            commands::state_rebuild(&config, &mut out)
        }
        Command::Run { config, log_format } => {
            init_logs(log_format, tracing::Level::INFO);
            gitward::daemon::run(&config)
        }
        Command::Healthcheck { config } => gitward::daemon::healthcheck(&config, &mut out),
        Command::Status { repo, rev, format } => commands::status(&repo, &rev, format, &mut out),
        Command::Explain {
            repo,
            rev,
            allowed_signers,
            revoked_keys,
        } => Trust {
            allowed_signers,
            revocations: revoked_keys,
            trust_trailers: false,
        }
        .signers()
        .and_then(|signers| {
            gitward::explain::explain(&repo, &rev, signers.as_ref(), chrono::Utc::now(), &mut out)
        }),
        Command::Approve {
            repo,
            rev,
            key,
            gates,
            principal,
            remote,
            no_push,
        } => gitward::trust::approve::approve(
            &ApproveOptions {
                repo,
                rev,
                key,
                gates,
                principal,
                remote,
                push: !no_push,
            },
            &mut out,
            &mut io::stderr(),
        ),
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

/// An event type named on the command line, like `certificate.issued`.
fn event_type(text: &str) -> Result<gitward::model::EventType, String> {
    gitward::model::EventType::ALL
        .iter()
        .copied()
        .find(|t| t.as_str() == text)
        .ok_or_else(|| {
            let known: Vec<&str> = gitward::model::EventType::ALL
                .iter()
                .map(|t| t.as_str())
                .collect();
            format!("not an event type; one of: {}", known.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn every_command_documents_its_arguments_and_exit_codes() {
        let top = Cli::command();
        let nested = top.get_subcommands().flat_map(|c| c.get_subcommands());
        for command in top.get_subcommands().chain(nested) {
            let name = command.get_name();
            let exit_codes = command.get_after_help().map(|h| h.to_string());
            assert!(
                exit_codes.is_some_and(|h| h.starts_with("Exit codes: 0 ")),
                "{name} --help gives no exit codes"
            );
            for arg in command.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "{name} --help does not describe {}",
                    arg.get_id()
                );
            }
        }
    }
}
