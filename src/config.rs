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
use std::sync::{Arc, OnceLock};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, Pos, Problem};
use crate::model::parse::text_of;
use crate::model::schema::{CompiledSchema, document_schema};
use crate::model::yaml::{Document, Limits, Node, NodeValue, parse_documents};
use crate::model::{Duration, Name};
use crate::trust::signers::{AllowedSigners, ReloadingSigners};

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
    #[schemars(schema_with = "by_name::<Target>")]
    pub targets: BTreeMap<Name, Target>,
    /// Outbound endpoints, each pairing a URL with its credential, by name.
    #[serde(default)]
    #[schemars(schema_with = "by_name::<Endpoint>")]
    pub endpoints: BTreeMap<Name, Endpoint>,
    /// ACME accounts, by name.
    #[serde(default)]
    #[schemars(schema_with = "by_name::<AcmeAccount>")]
    pub acme: BTreeMap<Name, AcmeAccount>,
    /// Who speaks for which principal: the SSH keys that sign approvals, overrides and
    /// commits. Without it no signature counts.
    pub signers: Option<Signers>,
    /// What gates take as evidence.
    #[serde(default)]
    pub gates: GateTrust,
    /// When time-driven events are sent.
    #[serde(default)]
    pub events: EventsConfig,
    /// How tickets are kept in step with Jira and ServiceNow.
    #[serde(default)]
    pub tickets: TicketsConfig,
    /// The forge the repository lives on: pull requests are planned, commits given their
    /// `gitward/apply` status and reviews read there.
    pub forge: Option<ForgeConfig>,
    /// The allowed signers as last read from `signers`, shared by the copies of this config.
    #[serde(skip)]
    #[schemars(skip)]
    signers_in_force: Arc<ReloadingSigners>,
}

/// The files that say which SSH keys speak for which principals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Signers {
    /// Principals and their SSH public keys, in git's `gpg.ssh.allowedSignersFile` format
    /// (`principals [options] keytype base64`, with `namespaces=`, `valid-after=` and
    /// `valid-before=`). Read again when it changes.
    pub allowed_signers_file: PathBuf,
    /// Revoked SSH public keys, one per line (not a binary KRL): signatures made with them
    /// never count. Read again when it changes.
    pub revocation_file: Option<PathBuf>,
}

/// What gates take as evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GateTrust {
    /// Count `Approved-by:` trailers for gates whose approvals have `source: trailers`. They
    /// are claims anyone who can commit writes, and are reported as unverified.
    #[serde(default)]
    pub trust_trailers: bool,
}

/// When time-driven events are sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventsConfig {
    /// Days before a certificate's `notAfter` (and a policy exception's end) at which a
    /// `certificate.expiring` (`exception.expiring`) event is sent, once each.
    #[serde(default = "default_expiring_days")]
    #[schemars(length(min = 1, max = 16), inner(range(min = 1, max = 3650)))]
    pub expiring_days: Vec<u32>,
}

fn default_expiring_days() -> Vec<u32> {
    crate::events::derive::EXPIRING_DAYS.to_vec()
}

impl Default for EventsConfig {
    fn default() -> EventsConfig {
        EventsConfig {
            expiring_days: default_expiring_days(),
        }
    }
}

/// The forge the repository lives on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForgeConfig {
    /// `github`, `gitlab`, `gitea`, `bitbucket` or `azure-devops`.
    #[serde(rename = "type")]
    pub type_: crate::forge::ForgeKind,
    /// The endpoint whose URL is the forge API's base (`https://api.github.com`,
    /// `https://gitlab.example.com/api/v4`) and whose `tokenFile` holds the token.
    pub endpoint: Name,
    /// The repository there: `owner/name` (GitHub, Gitea), the project's path or id
    /// (GitLab), `workspace/slug` (Bitbucket), `project/repository` (Azure DevOps).
    #[schemars(length(min = 1, max = 512))]
    pub repository: String,
    /// Plan pull requests into the tracked branch when the forge's webhook tells of them
    /// (default true).
    #[serde(default = "plan_pull_requests_by_default")]
    pub plan_pull_requests: bool,
}

fn plan_pull_requests_by_default() -> bool {
    true
}

/// How the daemon keeps ticket sinks' tickets in step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TicketsConfig {
    /// How often the tickets gitward owns are read back, to learn what people did with them
    /// (won't-fix, reassignment, a manual close), and open ones checked against their due
    /// date (default 5m).
    #[serde(default = "default_ticket_poll")]
    pub poll_interval: crate::model::Duration,
}

fn default_ticket_poll() -> crate::model::Duration {
    crate::model::Duration::from_secs(300)
}

impl Default for TicketsConfig {
    fn default() -> TicketsConfig {
        TicketsConfig {
            poll_interval: default_ticket_poll(),
        }
    }
}

/// A mapping from names to `T`. Its keys are checked as names (`propertyNames`), so a bad
/// one is reported as a bad name, not as an unknown field.
fn by_name<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "propertyNames": generator.subschema_for::<Name>(),
        "additionalProperties": generator.subschema_for::<T>(),
        "default": {},
    })
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

/// An outbound endpoint: where a sink's events go and the credentials they go with. The
/// repository names endpoints only; what a URL receives is decided here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Endpoint {
    /// `https://` (or `http://`) for Splunk HEC, Sentinel, webhooks and PagerDuty;
    /// `udp://`, `tcp://` or `tls://host:port` for syslog; `file:///path` for JSON lines.
    #[schemars(regex(pattern = "^(https?|udp|tcp|tls|file)://"))]
    pub url: String,
    /// File holding the token sent to this URL only (Splunk HEC token, Jira API token).
    pub token_file: Option<PathBuf>,
    /// File holding a webhook signing secret, `whsec_<base64>` (Standard Webhooks).
    pub secret_file: Option<PathBuf>,
    /// File holding a PagerDuty integration (routing) key.
    pub routing_key_file: Option<PathBuf>,
    /// Entra ID tenant of the app that sends to Sentinel.
    pub tenant_id: Option<String>,
    /// Entra ID application (client) id.
    pub client_id: Option<String>,
    /// File holding the application's client secret.
    pub client_secret_file: Option<PathBuf>,
    /// Token endpoint of the client-credentials flow; by default
    /// `https://login.microsoftonline.com/<tenantId>/oauth2/v2.0/token`.
    #[schemars(regex(pattern = "^https?://"))]
    pub token_url: Option<String>,
    /// User the token belongs to (Jira: the account's e-mail).
    pub user: Option<String>,
    /// PEM file of the CA certificates the receiver's TLS certificate must chain to; the
    /// system's roots when unset (HTTPS) — required for `tls://` syslog.
    pub ca_file: Option<PathBuf>,
    /// PEM files of a client certificate and its key, for receivers that authenticate
    /// senders by TLS (syslog over TLS).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// How long one request (or one connection attempt) may take (default 10s).
    pub timeout: Option<Duration>,
    /// `file://` only: the file is rotated (`.1`, `.2`, ...) when it reaches this many bytes
    /// (default 100 MiB), and this many rotated files are kept (default 3).
    pub rotate_bytes: Option<u64>,
    pub keep: Option<u32>,
}

impl Endpoint {
    /// The URL scheme: `https`, `udp`, `file`...
    pub fn scheme(&self) -> &str {
        self.url.split_once("://").map_or("", |(scheme, _)| scheme)
    }

    /// The files it names (credentials, CA and client certificates).
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        [
            &self.token_file,
            &self.secret_file,
            &self.routing_key_file,
            &self.client_secret_file,
            &self.ca_file,
            &self.client_cert_file,
            &self.client_key_file,
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
    }

    /// The credential files it names.
    fn files_mut(&mut self) -> [&mut Option<PathBuf>; 7] {
        [
            &mut self.token_file,
            &mut self.secret_file,
            &mut self.routing_key_file,
            &mut self.client_secret_file,
            &mut self.ca_file,
            &mut self.client_cert_file,
            &mut self.client_key_file,
        ]
    }
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

impl ConfigError {
    fn of(file: &str, problems: &[Problem]) -> ConfigError {
        ConfigError {
            diagnostics: problems.iter().map(|p| p.in_file(file)).collect(),
        }
    }
}

/// The webhook secrets a host config names, read from their files; never empty.
#[derive(Debug, Default)]
pub struct WebhookSecrets {
    pub github: Option<Vec<u8>>,
    pub gitlab: Option<Vec<u8>>,
    pub generic: Option<Vec<u8>>,
}

/// Why `name` cannot be a branch, if it cannot: git must take `refs/heads/<name>` as a ref.
/// `path` with `.` and `..` worked out, for a path that does not exist (yet).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn branch_name_problem(name: &str) -> Option<String> {
    if let Some(short) = name.strip_prefix("refs/heads/") {
        return Some(format!(
            "`{name}` is a ref; write the branch name alone, `{short}`"
        ));
    }
    // Names git refuses for a branch or reads as something else, though valid ref names.
    if name == "HEAD" || name == "@" || name.starts_with('-') || name.starts_with("refs/") {
        return Some(format!("`{name}` is not a name git takes for a branch"));
    }
    if !git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
        return Some(format!("`{name}` is not a valid branch name"));
    }
    None
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
        Ok(HostConfig::load_located(path)?.0)
    }

    /// Reads and checks the config at `path` and the webhook secrets it names: what the
    /// daemon runs with. A secret that cannot be read, or is empty, is reported at the line
    /// that names its file.
    pub fn load_with_secrets(path: &Path) -> Result<(HostConfig, WebhookSecrets), ConfigError> {
        let (config, root) = HostConfig::load_located(path)?;
        let shown = path.display().to_string();
        let mut problems = Vec::new();
        let mut read = |field: [&str; 3], file: Option<&PathBuf>| {
            let file = file?;
            let pos = root.at(field).map_or_else(|| root.locate(field), |n| n.pos);
            let name = field.join(".");
            match std::fs::read_to_string(file) {
                Ok(text) => {
                    let secret = text.trim_end_matches(['\r', '\n']).as_bytes().to_vec();
                    if !secret.is_empty() {
                        return Some(secret);
                    }
                    problems.push(Problem::error(
                        pos,
                        format!(
                            "{name}: {} is empty; gitward does not start with an empty secret",
                            file.display()
                        ),
                    ));
                }
                Err(e) => problems.push(Problem::error(
                    pos,
                    format!("{name}: cannot read {}: {e}", file.display()),
                )),
            }
            None
        };
        let webhooks = config.webhooks.clone().unwrap_or_default();
        let secrets = WebhookSecrets {
            github: read(
                ["webhooks", "github", "secretFile"],
                webhooks.github.as_ref().map(|s| &s.secret_file),
            ),
            gitlab: read(
                ["webhooks", "gitlab", "tokenFile"],
                webhooks.gitlab.as_ref().map(|t| &t.token_file),
            ),
            generic: read(
                ["webhooks", "generic", "secretFile"],
                webhooks.generic.as_ref().map(|s| &s.secret_file),
            ),
        };
        // Read again at each fetch (so it can be rotated), but a daemon that could never
        // authenticate does not start.
        let credentials = config.repo.credentials.as_ref();
        read(
            ["repo", "credentials", "tokenFile"],
            credentials.and_then(|c| c.token_file.as_ref()),
        );
        if problems.is_empty() {
            Ok((config, secrets))
        } else {
            Err(ConfigError::of(&shown, &problems))
        }
    }

    /// The config at `path` and its YAML tree, for problems found after parsing.
    fn load_located(path: &Path) -> Result<(HostConfig, Node), ConfigError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            ConfigError::of(
                &shown,
                &[Problem::error(Pos::START, format!("cannot read: {e}"))],
            )
        })?;
        // Resolved against an absolute directory, so that every path of the config is
        // absolute and paths compare as what they are, whatever directory gitward runs in.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or(Path::new("/"));
        HostConfig::parse_located(&shown, &bytes, base)
    }

    /// Checks config text; `file` names it in messages, relative paths are taken from `base`.
    pub fn parse(file: &str, bytes: &[u8], base: &Path) -> Result<HostConfig, ConfigError> {
        Ok(HostConfig::parse_located(file, bytes, base)?.0)
    }

    fn parse_located(
        file: &str,
        bytes: &[u8],
        base: &Path,
    ) -> Result<(HostConfig, Node), ConfigError> {
        let fail =
            |pos: Pos, message: String| ConfigError::of(file, &[Problem::error(pos, message)]);
        let text = text_of(bytes).map_err(|p| fail(p.pos, p.message))?;
        let documents =
            parse_documents(text, Limits::default()).map_err(|p| fail(p.pos, p.message))?;
        let root = match <[Document; 1]>::try_from(documents) {
            Ok([one]) if matches!(one.root.value, NodeValue::Map(_)) => one.root,
            Ok([one]) => {
                return Err(fail(
                    one.root.pos,
                    "the host config is a mapping".to_owned(),
                ));
            }
            Err(documents) => {
                return Err(match documents.get(1) {
                    Some(second) => fail(
                        second.root.pos,
                        "the host config is one document".to_owned(),
                    ),
                    None => fail(Pos::START, "the host config is empty".to_owned()),
                });
            }
        };
        let json = root.to_json();
        let problems = compiled().check(&root, &json);
        if !problems.is_empty() {
            return Err(ConfigError::of(file, &problems));
        }
        let mut config: HostConfig =
            serde_json::from_value(json).map_err(|e| fail(root.pos, format!("{e}")))?;
        let problems = config.problems(&root);
        if !problems.is_empty() {
            return Err(ConfigError::of(file, &problems));
        }
        config.resolve(base);
        let problems = config.placement_problems(&root);
        if !problems.is_empty() {
            return Err(ConfigError::of(file, &problems));
        }
        config.load_signers(file, &root)?;
        Ok((config, root))
    }

    /// Reads the allowed signers and revoked keys the config names. A file that cannot be
    /// read is reported at the line naming it; a line of it that cannot be understood, at
    /// its own place in that file.
    fn load_signers(&self, file: &str, root: &Node) -> Result<(), ConfigError> {
        let Some(signers) = &self.signers else {
            return Ok(());
        };
        let revocations = signers.revocation_file.as_deref();
        let error = match self
            .signers_in_force
            .load(&signers.allowed_signers_file, revocations)
        {
            Ok(_) => return Ok(()),
            Err(crate::error::Error::Config(error)) => return Err(error),
            Err(error) => error,
        };
        let field = match &error {
            crate::error::Error::Io { path, .. } if Some(path.as_path()) == revocations => {
                "revocationFile"
            }
            _ => "allowedSignersFile",
        };
        let path = ["signers", field];
        let pos = root.at(path).map_or_else(|| root.locate(path), |n| n.pos);
        Err(ConfigError::of(
            file,
            &[Problem::error(
                pos,
                format!("signers.{field}: cannot read {error}"),
            )],
        ))
    }

    /// The allowed signers in force: read again when their files changed, the last good
    /// ones kept (and a warning logged) when the new version cannot be read. `None` when
    /// the config names none: then no signature counts.
    pub fn allowed_signers(&self) -> Option<Arc<AllowedSigners>> {
        let signers = self.signers.as_ref()?;
        self.signers_in_force.current(
            &signers.allowed_signers_file,
            signers.revocation_file.as_deref(),
        )
    }

    /// The forge's client, with the token read now; `None` when the config names no forge.
    pub fn forge_client(
        &self,
    ) -> Option<Result<Box<dyn crate::forge::Forge>, crate::forge::ForgeError>> {
        let forge = self.forge.as_ref()?;
        Some((|| {
            let setup = |why: String| crate::forge::ForgeError::Setup(why);
            let endpoint = self
                .endpoints
                .get(&forge.endpoint)
                .ok_or_else(|| setup(format!("no endpoint `{}`", forge.endpoint)))?;
            let token_file = endpoint
                .token_file
                .as_deref()
                .ok_or_else(|| setup(format!("endpoint `{}` has no tokenFile", forge.endpoint)))?;
            let token = crate::sinks::read_secret(token_file, "tokenFile")
                .map_err(|problem| setup(problem.to_string()))?;
            crate::forge::connect(
                &crate::forge::Target {
                    kind: forge.type_,
                    api: endpoint.url.trim_end_matches('/').to_owned(),
                    repository: forge.repository.clone(),
                    token,
                },
                &crate::forge::api::Options {
                    timeout: crate::sinks::timeout(endpoint),
                    ca_file: endpoint.ca_file.clone(),
                },
            )
        })())
    }

    /// Whether `Approved-by:` trailers count for gates that ask for them.
    pub fn trust_trailers(&self) -> bool {
        self.gates.trust_trailers
    }

    /// Target directories that would put keys where they do not belong: in or around the
    /// state directory (the secret store), or in the working tree of the repository, one
    /// `git add` from being pushed. Paths are compared once resolved and, where they exist,
    /// with links followed.
    fn placement_problems(&self, root: &Node) -> Vec<Problem> {
        let real = |path: &Path| std::fs::canonicalize(path).unwrap_or_else(|_| lexical(path));
        // A target's own name is not followed: a link there is refused when files are written.
        let real_target = |path: &Path| match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => std::fs::canonicalize(parent)
                .map(|parent| parent.join(name))
                .unwrap_or_else(|_| lexical(path)),
            _ => lexical(path),
        };
        let overlap = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
        let state = real(&self.state_dir);
        let repo = self.local_repo().map(|r| real(&r));
        // Inside the working tree is fine where git ignores it (the demo's `.gitward/`).
        let work_tree = repo
            .as_deref()
            .and_then(|r| git2::Repository::open(r).ok())
            .filter(|git| git.workdir().is_some());
        let unignored_in_repo = |dir: &Path| {
            let Some(repo) = repo.as_deref() else {
                return false;
            };
            if !overlap(dir, repo) {
                return false;
            }
            match (&work_tree, dir.strip_prefix(repo)) {
                (Some(git), Ok(inside)) if !inside.as_os_str().is_empty() => {
                    !git.is_path_ignored(inside).unwrap_or(false)
                }
                _ => true,
            }
        };
        let mut problems = Vec::new();
        for (name, target) in &self.targets {
            let dir = real_target(&target.dir);
            let clash = if overlap(&dir, &state) {
                Some("the state directory, where the secret store is")
            } else if unignored_in_repo(&dir) {
                Some("the configuration repository (and not ignored by git)")
            } else {
                None
            };
            if let Some(what) = clash {
                let path = ["targets", name.as_str(), "dir"];
                let pos = root
                    .at(path.iter().copied())
                    .map_or_else(|| root.locate(path.iter().copied()), |n| n.pos);
                problems.push(Problem::error(
                    pos,
                    format!(
                        "targets.{name}.dir: {} is in or around {what}; certificates and keys go to a directory of their own",
                        target.dir.display()
                    ),
                ));
            }
        }
        problems
    }

    /// What the schema cannot say: branch names as git takes them, addresses as they are bound.
    fn problems(&self, root: &Node) -> Vec<Problem> {
        let at = |path: &[&str]| {
            root.at(path.iter().copied())
                .map_or_else(|| root.locate(path.iter().copied()), |n| n.pos)
        };
        let mut problems = Vec::new();
        let (branch, status) = (&self.repo.branch, &self.status_branch);
        // Git refs are files on some systems: names that differ only in case are one branch
        // there, and one cannot be a directory of the other.
        let spelling = |name: &str| {
            name.strip_prefix("refs/heads/")
                .unwrap_or(name)
                .to_lowercase()
        };
        let (b, s) = (spelling(branch), spelling(status));
        let same = b == s;
        if same {
            problems.push(Problem::error(
                at(&["statusBranch"]),
                format!(
                    "statusBranch: `{status}` is the tracked branch `{branch}`; status commits go to a branch of their own, like `gitward/status`"
                ),
            ));
        } else if b.starts_with(&format!("{s}/")) || s.starts_with(&format!("{b}/")) {
            problems.push(Problem::error(
                at(&["statusBranch"]),
                format!(
                    "statusBranch: `{status}` and the tracked branch `{branch}` cannot both exist: one is a directory of the other"
                ),
            ));
        }
        let mut names = vec![(&["repo", "branch"][..], branch)];
        if !same {
            names.push((&["statusBranch"], status));
        }
        for (path, name) in names {
            if let Some(why) = branch_name_problem(name) {
                problems.push(Problem::error(
                    at(path),
                    format!("{}: {why}", path.join(".")),
                ));
            }
        }
        let mut listens = vec![(vec!["listen".to_owned()], self.listen.as_deref())];
        for (name, account) in &self.acme {
            listens.push((
                vec![
                    "acme".to_owned(),
                    name.to_string(),
                    "http01Listen".to_owned(),
                ],
                Some(account.http01_listen.as_str()),
            ));
        }
        if let Some(forge) = &self.forge {
            match self.endpoints.get(&forge.endpoint) {
                None => problems.push(Problem::error(
                    at(&["forge", "endpoint"]),
                    format!("forge.endpoint: no endpoint `{}`", forge.endpoint),
                )),
                Some(endpoint) if endpoint.token_file.is_none() => problems.push(Problem::error(
                    at(&["forge", "endpoint"]),
                    format!(
                        "forge.endpoint: endpoint `{}` has no tokenFile for the forge's token",
                        forge.endpoint
                    ),
                )),
                Some(endpoint) if !matches!(endpoint.scheme(), "https" | "http") => {
                    problems.push(Problem::error(
                        at(&["forge", "endpoint"]),
                        format!(
                            "forge.endpoint: endpoint `{}` is not an http(s) URL",
                            forge.endpoint
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        for (path, address) in listens {
            if let Some(address) = address
                && address.parse::<std::net::SocketAddr>().is_err()
            {
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                problems.push(Problem::error(
                    at(&path),
                    format!(
                        "{}: `{address}` is not an address to listen on: an IP address and a port, like 127.0.0.1:9440 or [::1]:9440",
                        path.join(".")
                    ),
                ));
            }
        }
        problems
    }

    /// Makes every path absolute against `base`, the config file's directory: a relative path
    /// means the same whatever directory the daemon was started from.
    fn resolve(&mut self, base: &Path) {
        let absolute = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        absolute(&mut self.state_dir);
        for target in self.targets.values_mut() {
            absolute(&mut target.dir);
            // A program named with a `/` is a path; a bare name is looked up in `PATH`.
            if let Some(program) = target.reload.first_mut()
                && program.contains('/')
                && Path::new(program.as_str()).is_relative()
            {
                *program = base.join(&*program).display().to_string();
            }
        }
        for account in self.acme.values_mut() {
            if let Some(roots) = &mut account.trusted_roots {
                absolute(roots);
            }
        }
        for endpoint in self.endpoints.values_mut() {
            for file in endpoint.files_mut().into_iter().flatten() {
                absolute(file);
            }
        }
        if let Some(webhooks) = &mut self.webhooks {
            for file in [
                webhooks.github.as_mut().map(|s| &mut s.secret_file),
                webhooks.gitlab.as_mut().map(|t| &mut t.token_file),
                webhooks.generic.as_mut().map(|s| &mut s.secret_file),
            ]
            .into_iter()
            .flatten()
            {
                absolute(file);
            }
        }
        if let Some(signers) = &mut self.signers {
            absolute(&mut signers.allowed_signers_file);
            if let Some(revoked) = &mut signers.revocation_file {
                absolute(revoked);
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
    fn keys_go_neither_near_the_secret_store_nor_into_the_repository() {
        let repo = tempfile::tempdir().unwrap();
        let git = git2::Repository::init(repo.path()).unwrap();
        std::fs::write(repo.path().join(".gitignore"), "ignored/\n").unwrap();
        drop(git);
        let with = |dir: &str| {
            parse(&format!(
                "repo: {{url: {}}}\nstateDir: /var/lib/gitward\nstatusBranch: HEAD\ntargets:\n  web: {{dir: {dir}}}\n",
                repo.path().display()
            ))
        };
        assert_eq!(
            with("/srv/tls").unwrap_err(),
            ["gitward.yaml:3:15: statusBranch: `HEAD` is not a name git takes for a branch"]
        );
        let with = |dir: &str| {
            parse(&format!(
                "repo: {{url: {}}}\nstateDir: /var/lib/gitward\ntargets:\n  web: {{dir: {dir}}}\n",
                repo.path().display()
            ))
        };
        for dir in ["/var/lib/gitward", "/var/lib/gitward/tls", "/var/lib"] {
            let problems = with(dir).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].starts_with("gitward.yaml:4:14: targets.web.dir: ")
                    && problems[0].contains("the state directory"),
                "{problems:?}"
            );
        }
        let inside = repo.path().join("tls");
        let problems = with(&inside.display().to_string()).unwrap_err();
        assert!(
            problems[0].contains("the configuration repository"),
            "{problems:?}"
        );
        with(&repo.path().join("ignored/tls").display().to_string()).unwrap();
        with("/srv/tls").unwrap();
    }

    #[test]
    fn a_status_branch_that_is_the_tracked_one_is_refused() {
        let with = |repo: &str, status: &str| {
            parse(&format!(
                "repo: {{url: /srv/pki{repo}}}\nstateDir: /var/lib/gitward\n{status}"
            ))
            .unwrap_err()
        };
        assert_eq!(
            with("", "statusBranch: main\n"),
            [
                "gitward.yaml:3:15: statusBranch: `main` is the tracked branch `main`; status commits go to a branch of their own, like `gitward/status`"
            ]
        );
        assert_eq!(
            with(", branch: Release", "statusBranch: refs/heads/release\n"),
            [
                "gitward.yaml:3:15: statusBranch: `refs/heads/release` is the tracked branch `Release`; status commits go to a branch of their own, like `gitward/status`"
            ]
        );
        assert_eq!(
            with(", branch: gitward/status/x", ""),
            [
                "gitward.yaml:1:1: statusBranch: `gitward/status` and the tracked branch `gitward/status/x` cannot both exist: one is a directory of the other"
            ]
        );
        assert_eq!(
            with(", branch: \"main..x\"", "statusBranch: refs/heads/st\n"),
            [
                "gitward.yaml:1:31: repo.branch: `main..x` is not a valid branch name",
                "gitward.yaml:3:15: statusBranch: `refs/heads/st` is a ref; write the branch name alone, `st`"
            ]
        );
    }

    #[test]
    fn addresses_and_names_are_checked_where_they_are_written() {
        assert_eq!(
            parse("repo: {url: /srv/pki}\nstateDir: /var/lib/gitward\nlisten: localhost:9440\n")
                .unwrap_err(),
            [
                "gitward.yaml:3:9: listen: `localhost:9440` is not an address to listen on: an IP address and a port, like 127.0.0.1:9440 or [::1]:9440"
            ]
        );
        assert_eq!(
            parse("repo: {url: /srv/pki}\nstateDir: /var/lib/gitward\ntargets:\n  Web_TLS: {dir: /srv/tls}\n").unwrap_err(),
            ["gitward.yaml:4:3: targets: key `Web_TLS` is not valid: a name is lowercase letters, digits and '-', starting and ending with a letter or digit"]
        );
    }

    #[test]
    fn every_relative_path_is_taken_from_the_config_files_directory() {
        let config = parse("repo: {url: /srv/pki}\nstateDir: /var/lib/gitward\nwebhooks:\n  github: {secretFile: secrets/github}\n  gitlab: {tokenFile: gitlab}\nendpoints:\n  hook: {url: \"https://hooks.example.com\", tokenFile: hook-token}\ntargets:\n  web: {dir: /srv/tls, reload: [bin/reload, ./x]}\n  app: {dir: /srv/app, reload: [nginx, -s, reload]}\n").unwrap();
        let webhooks = config.webhooks.unwrap();
        assert_eq!(
            webhooks.github.unwrap().secret_file,
            PathBuf::from("/etc/gitward/secrets/github")
        );
        assert_eq!(
            webhooks.gitlab.unwrap().token_file,
            PathBuf::from("/etc/gitward/gitlab")
        );
        assert_eq!(
            config.endpoints[&Name("hook".into())].token_file,
            Some(PathBuf::from("/etc/gitward/hook-token"))
        );
        assert_eq!(
            config.targets[&Name("web".into())].reload,
            ["/etc/gitward/bin/reload", "./x"]
        );
        assert_eq!(
            config.targets[&Name("app".into())].reload,
            ["nginx", "-s", "reload"]
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
