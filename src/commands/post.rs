//! `plan --post`: the report's status and comment, sent to the pull request the CI job (or
//! the command line) names.

use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::forge::{self, Forge, api, ci, post};
use crate::gate::reviews;
use crate::report::PlanReport;

/// Where to post, as the command line says; the rest comes from the CI's variables.
#[derive(Debug, Clone, Default)]
pub struct PostOptions {
    pub forge: Option<forge::ForgeKind>,
    pub repo_url: Option<String>,
    pub api_url: Option<String>,
    pub pr: Option<u64>,
    pub sha: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Roots to trust for a self-hosted forge with a private CA.
    pub ca_file: Option<PathBuf>,
}

/// Most bytes a GitHub Actions event file may have to be read.
const MAX_EVENT_BYTES: u64 = 16 * 1024 * 1024;

/// A pull request to post to, found, with its forge's client.
pub struct Posting {
    destination: ci::Destination,
    forge: Box<dyn Forge>,
}

impl Posting {
    /// Finds the pull request from the options and the environment; `planned` is the head
    /// commit planned.
    pub fn open(options: &PostOptions, planned: &str) -> Result<Posting> {
        let token = options
            .token_file
            .as_deref()
            .map(|path| {
                crate::sinks::read_secret(path, "--token-file")
                    .map_err(|problem| Error::Usage(problem.to_string()))
            })
            .transpose()?;
        let given = ci::Given {
            forge: options.forge,
            repo_url: options.repo_url.clone(),
            api_url: options.api_url.clone(),
            pr: options.pr,
            sha: options.sha.clone(),
            token,
        };
        let destination = ci::destination(
            &given,
            planned,
            &|name| std::env::var(name).ok(),
            &read_event,
        )?;
        let forge = forge::connect(
            &destination.target,
            &api::Options {
                ca_file: options.ca_file.clone(),
                ..api::Options::default()
            },
        )?;
        Ok(Posting { destination, forge })
    }

    /// The reviews of this pull request, for gates that count them.
    pub fn reviews(&self) -> reviews::Online<'_> {
        reviews::Online {
            forge: self.forge.as_ref(),
            wanted: reviews::Wanted::Open {
                number: Some(self.destination.number),
            },
            sha: Some(self.destination.sha.clone()),
        }
    }

    /// Posts `report` and says on `err` what was posted where.
    pub fn post(&self, report: &PlanReport, err: &mut dyn Write) -> Result<()> {
        let destination = &self.destination;
        let posting = post::posting(
            report,
            destination.run_url.as_deref(),
            self.forge.comment_limit(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Usage(format!("no runtime to post with: {e}")))?;
        let posted = runtime.block_on(post::within_deadline(post::post(
            self.forge.as_ref(),
            destination.number,
            &destination.sha,
            &posting,
            report,
        )))?;
        let line = format!(
            "posted to {} {} #{} ({}): status {} {} on {}, comment {}",
            destination.target.kind,
            destination.target.repository,
            destination.number,
            destination.ci,
            post::PLAN_CONTEXT,
            posting.check.state.as_str(),
            destination.sha.get(..12).unwrap_or(&destination.sha),
            posted.comment.as_str(),
        );
        writeln!(err, "{}", crate::report::inert(&line)).map_err(Error::io("<stderr>"))
    }
}

/// GitHub Actions' event file, when it is a regular file small enough to be one.
fn read_event(path: &str) -> Option<String> {
    let bytes = crate::sinks::read_regular_file(
        std::path::Path::new(path),
        "the event file",
        MAX_EVENT_BYTES,
    )
    .ok()?;
    String::from_utf8(bytes).ok()
}
