//! The host config: what the daemon may touch. It is trusted and never read from the
//! repository: output directories, reload commands, ACME accounts and endpoints are granted
//! here, and the repository refers to them by name only.
//!
//! It is read as strictly as the repository (unknown fields are errors, every problem at its
//! `file:line:col`), through the same located YAML and generated-schema check. Relative paths
//! are relative to the directory of the config file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, Pos};
use crate::model::parse::text_of;
use crate::model::schema::{CompiledSchema, document_schema};
use crate::model::yaml::{Limits, NodeValue, parse_documents};
use crate::model::{Duration, Name};

/// Where the daemon looks for its config when none is given.
pub const DEFAULT_PATH: &str = "/etc/gitward/gitward.yaml";

fn default_branch() -> String {
    "main".to_owned()
}

fn default_status_branch() -> String {
    "gitward/status".to_owned()
}

fn default_poll() -> Duration {
    Duration::from_secs(60)
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The host config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostConfig {
    /// The configuration repository to follow.
    pub repo: RepoConfig,
    /// Branch that status commits go to; an orphan branch, never the tracked one.
    #[serde(default = "default_status_branch")]
    pub status_branch: String,
    /// Directory of the state database, the secret store and the audit log.
    pub state_dir: PathBuf,
    /// Address for webhooks, `/metrics`, `/healthz` and `/readyz`, like `127.0.0.1:9440`.
    pub listen: Option<String>,
    /// Secrets that authenticate webhook deliveries.
    pub webhooks: Option<Webhooks>,
    /// Output directories certificates may be written to, by name.
    #[serde(default)]
    pub targets: BTreeMap<Name, Target>,
    /// Outbound endpoints, each pairing a URL with its credential, by name.
    #[serde(default)]
    pub endpoints: BTreeMap<Name, Endpoint>,
    /// ACME accounts, by name.
    #[serde(default)]
    pub acme: BTreeMap<Name, AcmeAccount>,
}

/// The repository and branch to follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepoConfig {
    /// `https://`, `ssh://`, `file://` URL, or a local path.
    #[schemars(length(min = 1))]
    pub url: String,
    /// Branch whose head is applied.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// How to authenticate to the remote.
    pub credentials: Option<Credentials>,
    /// How often to look for new commits.
    #[serde(default = "default_poll")]
    pub poll_interval: Duration,
}

/// Credentials for the remote: a token file (https) or an SSH key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Credentials {
    pub token_file: Option<PathBuf>,
    pub ssh_key_file: Option<PathBuf>,
    /// The SSH host keys to trust, in `known_hosts` format (entries in clear, not hashed);
    /// without it, `~/.ssh/known_hosts` of the user gitward runs as.
    pub known_hosts_file: Option<PathBuf>,
}

/// Webhook secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Webhooks {
    pub github: Option<SecretFile>,
    pub gitlab: Option<TokenFile>,
    pub generic: Option<SecretFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretFile {
    /// File holding the HMAC secret.
    pub secret_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenFile {
    /// File holding the token.
    pub token_file: PathBuf,
}

/// An output directory and what to run after writing into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Target {
    /// Directory certificates go to, as `<dir>/<certificate name>/`.
    pub dir: PathBuf,
    /// Group that owns the written files; key files are then readable by the group.
    pub group: Option<String>,
    /// Command run after files changed, as an argument vector (never through a shell).
    #[serde(default)]
    pub reload: Vec<String>,
    /// Longest the reload command may run.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Remove the files of certificates deleted from the repository.
    #[serde(default)]
    pub prune: bool,
}

/// An outbound endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Endpoint {
    #[schemars(regex(pattern = "^https?://"))]
    pub url: String,
    /// File holding the credential sent to this URL only.
    pub token_file: Option<PathBuf>,
}

/// An ACME account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AcmeAccount {
    /// Directory URL of the ACME server.
    #[schemars(regex(pattern = "^https?://"))]
    pub directory: String,
    /// Contact URL, like `mailto:ops@example.com`.
    pub contact: Option<String>,
    /// Address the http-01 challenge listener binds, like `0.0.0.0:80`.
    pub http01_listen: String,
    /// PEM file of the roots that the ACME server's TLS certificate chains to, when it is
    /// not publicly trusted (a private CA, pebble in tests).
    pub trusted_roots: Option<PathBuf>,
}

/// Problems that keep a host config from being used.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.diagnostics.iter().map(ToString::to_string).collect();
        write!(f, "invalid host config:\n{}", lines.join("\n"))
    }
}

/// The JSON Schema of the host config.
pub fn schema() -> serde_json::Value {
    document_schema::<HostConfig>("host-config")
}

fn compiled() -> &'static CompiledSchema {
    static COMPILED: OnceLock<CompiledSchema> = OnceLock::new();
    COMPILED.get_or_init(|| CompiledSchema::new(schema()))
}

impl HostConfig {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<HostConfig, ConfigError> {
        let shown = path.display().to_string();
        let fail = |pos: Pos, message: String| ConfigError {
            diagnostics: vec![Diagnostic::error(&shown, pos, message)],
        };
        let bytes =
            std::fs::read(path).map_err(|e| fail(Pos::START, format!("cannot read: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        HostConfig::parse(&shown, &bytes, base)
    }

    /// Checks config text; `file` names it in messages, relative paths are taken from `base`.
    pub fn parse(file: &str, bytes: &[u8], base: &Path) -> Result<HostConfig, ConfigError> {
        let fail = |pos: Pos, message: String| ConfigError {
            diagnostics: vec![Diagnostic::error(file, pos, message)],
        };
        let text = text_of(bytes).map_err(|p| fail(p.pos, p.message))?;
        let documents =
            parse_documents(text, Limits::default()).map_err(|p| fail(p.pos, p.message))?;
        let root = match documents.as_slice() {
            [one] if matches!(one.root.value, NodeValue::Map(_)) => &one.root,
            [] => return Err(fail(Pos::START, "the host config is empty".to_owned())),
            [one] => {
                return Err(fail(
                    one.root.pos,
                    "the host config is a mapping".to_owned(),
                ));
            }
            [_, second, ..] => {
                return Err(fail(
                    second.root.pos,
                    "the host config is one document".to_owned(),
                ));
            }
        };
        let json = root.to_json();
        let problems = compiled().check(root, &json);
        if !problems.is_empty() {
            return Err(ConfigError {
                diagnostics: problems.iter().map(|p| p.in_file(file)).collect(),
            });
        }
        let mut config: HostConfig =
            serde_json::from_value(json).map_err(|e| fail(root.pos, format!("{e}")))?;
        config.resolve(base);
        Ok(config)
    }

    /// Makes every path absolute against `base`.
    fn resolve(&mut self, base: &Path) {
        let absolute = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        absolute(&mut self.state_dir);
        for target in self.targets.values_mut() {
            absolute(&mut target.dir);
        }
        for account in self.acme.values_mut() {
            if let Some(roots) = &mut account.trusted_roots {
                absolute(roots);
            }
        }
        if let Some(credentials) = &mut self.repo.credentials {
            for file in [
                &mut credentials.token_file,
                &mut credentials.ssh_key_file,
                &mut credentials.known_hosts_file,
            ]
            .into_iter()
            .flatten()
            {
                absolute(file);
            }
        }
        if !is_remote(&self.repo.url) && Path::new(&self.repo.url).is_relative() {
            self.repo.url = base.join(&self.repo.url).display().to_string();
        }
    }

    /// The repository as a local path, when it is one (`file://` or a path).
    pub fn local_repo(&self) -> Option<PathBuf> {
        match self.repo.url.strip_prefix("file://") {
            Some(path) => Some(PathBuf::from(path)),
            None if !is_remote(&self.repo.url) => Some(PathBuf::from(&self.repo.url)),
            None => None,
        }
    }
}

/// Whether `url` names a remote as git reads it: a URL (`scheme://`), or the scp-like
/// `user@host:path` (a colon before any slash).
pub fn is_remote(url: &str) -> bool {
    url.contains("://")
        || url
            .split_once(':')
            .is_some_and(|(before, _)| !before.is_empty() && !before.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HostConfig, Vec<String>> {
        HostConfig::parse("gitward.yaml", text.as_bytes(), Path::new("/etc/gitward"))
            .map_err(|e| e.diagnostics.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_spec_example_is_accepted_with_paths_made_absolute() {
        let config = parse(
            "repo:\n  url: ../pki\n  branch: main\n  credentials: {tokenFile: git-token}\n  pollInterval: 60s\nstatusBranch: gitward/status\nstateDir: state\nlisten: 127.0.0.1:9440\nwebhooks:\n  github: {secretFile: /etc/gitward/github-webhook-secret}\n  gitlab: {tokenFile: /etc/gitward/gitlab-webhook-token}\ntargets:\n  web-tls: {dir: /etc/ssl/gitward, group: www-data, reload: [/usr/sbin/nginx, -s, reload], timeout: 30s}\nendpoints:\n  splunk-prod: {url: \"https://splunk.example.com:8088\", tokenFile: /etc/gitward/splunk-token}\nacme:\n  default: {directory: \"https://acme.example/dir\", contact: \"mailto:ops@example.com\", http01Listen: \"0.0.0.0:80\"}\n",
        )
        .unwrap();
        assert_eq!(config.state_dir, PathBuf::from("/etc/gitward/state"));
        assert_eq!(
            config.local_repo(),
            Some(PathBuf::from("/etc/gitward/../pki"))
        );
        assert_eq!(
            config.targets[&Name("web-tls".into())].reload,
            ["/usr/sbin/nginx", "-s", "reload"]
        );
        assert_eq!(
            config.repo.credentials.unwrap().token_file,
            Some(PathBuf::from("/etc/gitward/git-token"))
        );
    }

    #[test]
    fn mistakes_are_located() {
        assert_eq!(
            parse("repo: {url: /srv/pki}\nstateDir: /var/lib/gitward\ntargets:\n  web: {dir: /srv/tls, relaod: [nginx]}\n").unwrap_err(),
            ["gitward.yaml:4:24: unknown field `relaod` in targets.web; did you mean `reload`?"]
        );
        assert_eq!(
            parse("repo: {url: /srv/pki}\n").unwrap_err(),
            ["gitward.yaml:1:1: missing field `stateDir`"]
        );
    }

    #[test]
    fn remotes_are_told_from_paths_as_git_does() {
        for remote in [
            "https://git.example.com/pki.git",
            "ssh://git@git.example.com/pki.git",
            "file:///srv/git/pki.git",
            "git@github.com:ops/pki.git",
        ] {
            assert!(is_remote(remote), "{remote}");
        }
        for path in ["/srv/git/pki", "../pki", "pki", "./a:b"] {
            assert!(!is_remote(path), "{path}");
        }
    }
}
