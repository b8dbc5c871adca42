//! Allowed signers: which SSH keys speak for which principals, in the format of git's
//! `gpg.ssh.allowedSignersFile` (that of `ssh-keygen -Y verify -f`), and the keys revoked
//! (`ssh-keygen -Y verify -r`, plain form). A signature counts as it does for `ssh-keygen -Y
//! verify`: in the namespace expected, by a key not revoked that a line lists for the
//! principal, valid at the time and for the namespace, and made over the message.
//!
//! The files are the host's (trusted) and read strictly: a line gitward cannot read refuses
//! the whole file at its `file:line:col`. Signatures come from anyone and are bounded.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey, SshSig};

use super::SignatureCheck;
use crate::config::ConfigError;
use crate::diag::{Diagnostic, Pos, bounded, escaped};
use crate::error::{Error, Result};

/// Largest armored signature read; an RSA-4096 one is under 2 KiB.
pub const MAX_SIGNATURE_BYTES: usize = 16 * 1024;
/// Largest allowed-signers or revocation file read.
const MAX_FILE_BYTES: u64 = 8 << 20;
/// Longest piece of a signature's own text (its namespace) quoted in a problem.
const MAX_QUOTED_CHARS: usize = 100;
/// The first bytes of an OpenSSH key revocation list (KRL), a binary format.
const KRL_MAGIC: &[u8] = b"SSHKRL\n\0";

/// Why no signature counts on a host without allowed signers.
pub const NO_SIGNERS: &str = "no allowed signers configured on this host";
/// Why a signature whose key, namespace and format are right still does not count.
pub(crate) const MISMATCH: &str =
    "the signature does not match what it is said to sign: made over other content, or altered";

/// One line of an allowed-signers file.
#[derive(Debug)]
struct Entry {
    /// Comma-separated principals, as written (`*` and `?` wildcards, `!` negations).
    principals: String,
    /// The key is a certificate authority: it vouches for certificates, never signs itself.
    cert_authority: bool,
    /// Namespaces the key may sign in, as a pattern list; any when `None`.
    namespaces: Option<String>,
    valid_after: Option<DateTime<Utc>>,
    valid_before: Option<DateTime<Utc>>,
}

/// Parsed allowed signers and revoked keys.
#[derive(Debug, Default)]
pub struct AllowedSigners {
    entries: Vec<Entry>,
    /// Indices into `entries` of the lines listing each key, in file order.
    by_key: HashMap<KeyData, Vec<usize>>,
    revoked: HashSet<KeyData>,
}

impl AllowedSigners {
    /// Reads allowed signers from `text`; `file` names it in problems.
    pub fn parse(text: &str, file: &str) -> Result<AllowedSigners, Vec<Diagnostic>> {
        let mut signers = AllowedSigners::default();
        let mut problems = Vec::new();
        for (index, line) in text.split('\n').enumerate() {
            match parse_line(line.strip_suffix('\r').unwrap_or(line)) {
                Ok(None) => {}
                Ok(Some((key, entry))) => {
                    signers
                        .by_key
                        .entry(key)
                        .or_default()
                        .push(signers.entries.len());
                    signers.entries.push(entry);
                }
                Err((col, message)) => {
                    problems.push(Diagnostic::error(file, Pos::new(index + 1, col), message));
                }
            }
        }
        if problems.is_empty() {
            Ok(signers)
        } else {
            Err(problems)
        }
    }

    /// Reads the allowed-signers file at `path` and the revoked keys at `revocations`.
    /// A file that cannot be read is an [`Error::Io`] naming it; a line that cannot be
    /// understood an [`Error::Config`] at its `file:line:col`.
    pub fn load(path: &Path, revocations: Option<&Path>) -> Result<AllowedSigners> {
        Files::read(path, revocations)?.parse()
    }

    /// Checks an armored sshsig over `message` in `namespace` at `at`; when `principal` is
    /// given, the key must be listed for that principal.
    pub fn verify(
        &self,
        namespace: &str,
        message: &[u8],
        armored: &str,
        principal: Option<&str>,
        at: DateTime<Utc>,
    ) -> SignatureCheck {
        check(Some(self), namespace, message, armored, principal, at)
    }

    /// Why `key` may not sign in `namespace` for `principal` (any listed one when `None`) at
    /// `at`; or the principal it speaks for: `principal`, or when `None` the principals of
    /// every line that lets it sign, as one pattern list.
    fn authorize(
        &self,
        key: &KeyData,
        namespace: &str,
        principal: Option<&str>,
        at: DateTime<Utc>,
    ) -> std::result::Result<String, String> {
        let fingerprint = fingerprint(key);
        if self.revoked.contains(key) {
            return Err(format!("key {fingerprint} is revoked"));
        }
        let listed: Vec<&Entry> = self
            .by_key
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.entries.get(i))
            .filter(|e| !e.cert_authority)
            .collect();
        if listed.is_empty() {
            return Err(format!(
                "key {fingerprint} is not in the host's allowed signers"
            ));
        }
        let for_principal: Vec<&Entry> = listed
            .iter()
            .copied()
            .filter(|e| principal.is_none_or(|p| matches_pattern_list(p, &e.principals)))
            .collect();
        let Some(first) = for_principal.first() else {
            let principals: Vec<&str> = listed.iter().map(|e| e.principals.as_str()).collect();
            return Err(format!(
                "key {fingerprint} is listed for {}, not for {}",
                principals.join(", "),
                escaped(&bounded(
                    principal.unwrap_or_default().to_owned(),
                    MAX_QUOTED_CHARS
                ))
            ));
        };
        let valid: Vec<&str> = for_principal
            .iter()
            .filter(|e| entry_problem(e, namespace, at).is_none())
            .map(|e| e.principals.as_str())
            .collect();
        if valid.is_empty() {
            return Err(format!(
                "key {fingerprint} {}",
                entry_problem(first, namespace, at).unwrap_or_default()
            ));
        }
        Ok(principal.map_or_else(|| valid.join(","), str::to_owned))
    }
}

/// Why the line `entry` does not let its key sign in `namespace` at `at`.
fn entry_problem(entry: &Entry, namespace: &str, at: DateTime<Utc>) -> Option<String> {
    if let Some(namespaces) = &entry.namespaces
        && !matches_pattern_list(namespace, namespaces)
    {
        return Some(format!(
            "may sign only in the namespaces {namespaces}, not in {namespace}"
        ));
    }
    if let Some(after) = entry.valid_after
        && at < after
    {
        return Some(format!(
            "is not valid before {} (checked at {})",
            after.to_rfc3339(),
            at.to_rfc3339()
        ));
    }
    if let Some(before) = entry.valid_before
        && at > before
    {
        return Some(format!(
            "expired at {} (checked at {})",
            before.to_rfc3339(),
            at.to_rfc3339()
        ));
    }
    None
}

/// [`AllowedSigners::verify`] on a host that may list no signers, where nothing verifies.
pub(crate) fn check(
    signers: Option<&AllowedSigners>,
    namespace: &str,
    message: &[u8],
    armored: &str,
    principal: Option<&str>,
    at: DateTime<Utc>,
) -> SignatureCheck {
    let signature = match read_signature(armored) {
        Ok(signature) => signature,
        Err(problem) => return refused(None, problem),
    };
    let key = signature.public_key();
    let shown = fingerprint(key);
    let Some(signers) = signers else {
        return refused(Some(shown), NO_SIGNERS.to_owned());
    };
    if signature.namespace() != namespace {
        let theirs =
            escaped(&bounded(signature.namespace().to_owned(), MAX_QUOTED_CHARS)).into_owned();
        return refused(
            Some(shown),
            format!("signed in the namespace {theirs}, not in {namespace}"),
        );
    }
    // The key is looked up first: only a listed key's signature is worth its cryptography,
    // and anyone may write hundreds of signatures.
    let principal = match signers.authorize(key, namespace, principal, at) {
        Ok(principal) => principal,
        Err(problem) => return refused(Some(shown), problem),
    };
    if PublicKey::from(key.clone())
        .verify(namespace, message, &signature)
        .is_err()
    {
        return refused(Some(shown), MISMATCH.to_owned());
    }
    SignatureCheck {
        verified: true,
        principal: Some(principal),
        key_fingerprint: Some(shown),
        problem: None,
    }
}

fn refused(key_fingerprint: Option<String>, problem: String) -> SignatureCheck {
    SignatureCheck {
        verified: false,
        principal: None,
        key_fingerprint,
        problem: Some(problem),
    }
}

/// An armored sshsig, read within bounds.
fn read_signature(armored: &str) -> std::result::Result<SshSig, String> {
    if armored.len() > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "the signature is {} bytes, more than the {MAX_SIGNATURE_BYTES} an SSH signature takes",
            armored.len()
        ));
    }
    SshSig::from_pem(armored.trim()).map_err(|e| format!("not an SSH signature: {e}"))
}

/// `SHA256:…`, as `ssh-keygen -l` shows a key.
pub fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn invalid_files(diagnostics: Vec<Diagnostic>) -> Error {
    Error::Config(ConfigError { diagnostics })
}

fn read_text(path: &Path) -> Result<String> {
    let too_large = |size: u64| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{size} bytes, more than the {MAX_FILE_BYTES} read"),
        ),
    };
    let meta = std::fs::metadata(path).map_err(Error::io(path))?;
    if !meta.is_file() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file"),
        });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    // It may have grown since it was looked at.
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(Error::io(path))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    if bytes.starts_with(KRL_MAGIC) {
        return Err(invalid_files(vec![Diagnostic::error(
            &path.display().to_string(),
            Pos::START,
            "a key revocation list (KRL) is a binary format gitward does not read; list the revoked public keys one per line",
        )]));
    }
    String::from_utf8(bytes).map_err(|e| {
        invalid_files(vec![Diagnostic::error(
            &path.display().to_string(),
            Pos::of_offset(e.as_bytes(), e.utf8_error().valid_up_to()),
            "not UTF-8 text",
        )])
    })
}

/// A problem in a line: the column (in characters) and the message.
type LineProblem = (usize, String);

/// A line cut into fields separated by blanks; a field starting with `"` runs to the
/// closing quote. Each field comes with its column.
struct Fields<'a> {
    line: &'a str,
    at: usize,
}

impl<'a> Fields<'a> {
    fn new(line: &'a str) -> Fields<'a> {
        Fields { line, at: 0 }
    }

    fn column(&self, byte: usize) -> usize {
        self.line[..byte].chars().count() + 1
    }

    fn skip_blanks(&mut self) {
        let rest = &self.line[self.at..];
        self.at += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    /// The next field, unquoted when the whole field is quoted, and its column.
    fn next_field(&mut self) -> std::result::Result<Option<(&'a str, usize)>, LineProblem> {
        self.skip_blanks();
        let start = self.at;
        let rest = &self.line[start..];
        if rest.is_empty() {
            return Ok(None);
        }
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| (self.column(start), "a quote is not closed".to_owned()))?;
            self.at = start + 1 + end + 1;
            return Ok(Some((&quoted[..end], self.column(start))));
        }
        // Options hold quoted values that may contain blanks: a field ends at a blank
        // outside quotes.
        let mut in_quotes = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    in_quotes = !in_quotes;
                }
                !in_quotes && (c == ' ' || c == '\t')
            })
            .map_or(rest.len(), |(i, _)| i);
        if in_quotes {
            return Err((self.column(start), "a quote is not closed".to_owned()));
        }
        self.at = start + end;
        Ok(Some((&rest[..end], self.column(start))))
    }
}

/// One line of an allowed-signers file: `principals [options] keytype base64 [comment]`;
/// `None` for a blank line or a comment.
fn parse_line(line: &str) -> std::result::Result<Option<(KeyData, Entry)>, LineProblem> {
    let trimmed = line.trim_start_matches([' ', '\t']);
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let mut fields = Fields::new(line);
    let Some((principals, _)) = fields.next_field()? else {
        return Ok(None);
    };
    let missing_key = || {
        (
            line.chars().count() + 1,
            "a public key is missing".to_owned(),
        )
    };
    let (mut field, mut col) = fields.next_field()?.ok_or_else(missing_key)?;
    let mut entry = Entry {
        principals: principals.to_owned(),
        cert_authority: false,
        namespaces: None,
        valid_after: None,
        valid_before: None,
    };
    // Key types hold neither `=` nor `,`; options are `cert-authority` or `name="value"`.
    if field.contains(['=', ',']) || field.eq_ignore_ascii_case("cert-authority") {
        parse_options(field, col, &mut entry)?;
        (field, col) = fields.next_field()?.ok_or_else(missing_key)?;
    }
    let key_type = (field, col);
    let (base64, _) = fields.next_field()?.ok_or_else(|| {
        (
            key_type.1,
            format!("the key `{}` has no base64 data after its type", key_type.0),
        )
    })?;
    let key = PublicKey::from_openssh(&format!("{} {base64}", key_type.0))
        .map_err(|e| (key_type.1, format!("not a public key: {e}")))?;
    Ok(Some((key.key_data().clone(), entry)))
}

/// The options of a line, like `namespaces="git",valid-before="20270101"`.
fn parse_options(
    text: &str,
    col: usize,
    entry: &mut Entry,
) -> std::result::Result<(), LineProblem> {
    let mut offset = 0;
    for option in split_outside_quotes(text) {
        let at = col + text[..offset].chars().count();
        offset += option.len() + 1;
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (option, None),
        };
        let quoted = || -> std::result::Result<&str, LineProblem> {
            let value = value.ok_or_else(|| (at, format!("option {name} takes a value")))?;
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| {
                    (
                        at,
                        format!("the value of {name} is written in double quotes"),
                    )
                })
        };
        let twice = || (at, format!("option {name} is given twice"));
        match name.to_ascii_lowercase().as_str() {
            "cert-authority" if value.is_none() => entry.cert_authority = true,
            "namespaces" => {
                if entry.namespaces.replace(quoted()?.to_owned()).is_some() {
                    return Err(twice());
                }
            }
            "valid-after" => {
                let time = absolute_time(quoted()?).map_err(|why| (at, why))?;
                if entry.valid_after.replace(time).is_some() {
                    return Err(twice());
                }
            }
            "valid-before" => {
                let time = absolute_time(quoted()?).map_err(|why| (at, why))?;
                if entry.valid_before.replace(time).is_some() {
                    return Err(twice());
                }
            }
            _ => {
                return Err((
                    at,
                    format!(
                        "`{}` is neither a key type nor an option (cert-authority, namespaces=, valid-after=, valid-before=)",
                        escaped(&bounded(option.to_owned(), MAX_QUOTED_CHARS))
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn split_outside_quotes(text: &str) -> impl Iterator<Item = &str> {
    let mut in_quotes = false;
    text.split(move |c| {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        c == ',' && !in_quotes
    })
}

/// A time as `ssh-keygen` reads `valid-after` and `valid-before`: `YYYYMMDD[HHMM[SS]]`, in
/// UTC with a `Z` or `UTC` suffix, else in the host's local time.
fn absolute_time(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    let upper = text.to_ascii_uppercase();
    let (digits, utc) = match upper
        .strip_suffix("UTC")
        .or_else(|| upper.strip_suffix('Z'))
    {
        Some(digits) => (digits, true),
        None => (upper.as_str(), false),
    };
    let invalid = || format!("`{text}` is not a time: YYYYMMDD[HHMM[SS]], with Z for UTC");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let number = |range: std::ops::Range<usize>| {
        digits
            .get(range)
            .map_or(Some(0), |d| d.parse::<u32>().ok())
            .ok_or_else(invalid)
    };
    if ![8, 12, 14].contains(&digits.len()) {
        return Err(invalid());
    }
    let date = i32::try_from(number(0..4)?)
        .ok()
        .and_then(|year| NaiveDate::from_ymd_opt(year, number(4..6).ok()?, number(6..8).ok()?))
        .ok_or_else(invalid)?;
    let time: NaiveDateTime = date
        .and_hms_opt(number(8..10)?, number(10..12)?, number(12..14)?)
        .ok_or_else(invalid)?;
    if utc {
        return Ok(time.and_utc());
    }
    chrono::Local
        .from_local_datetime(&time)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("`{text}` does not exist in the host's local time zone"))
}

/// Revoked keys: one public key a line (`keytype base64 [comment]`), `#` comments.
fn parse_revocations(text: &str, file: &str) -> Result<HashSet<KeyData>, Vec<Diagnostic>> {
    let mut revoked = HashSet::new();
    let mut problems = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match PublicKey::from_openssh(trimmed) {
            Ok(key) => {
                revoked.insert(key.key_data().clone());
            }
            Err(e) => problems.push(Diagnostic::error(
                file,
                Pos::new(
                    index + 1,
                    line.chars().count() - trimmed.chars().count() + 1,
                ),
                format!("not a public key: {e}"),
            )),
        }
    }
    if problems.is_empty() {
        Ok(revoked)
    } else {
        Err(problems)
    }
}

/// Whether `text` matches the comma-separated `patterns` as OpenSSH matches them: some
/// pattern matches and no `!`-negated one does.
pub fn matches_pattern_list(text: &str, patterns: &str) -> bool {
    let mut positive = false;
    for pattern in patterns.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if wildcard_match(text, negated) => return false,
            Some(_) => {}
            None => positive |= wildcard_match(text, pattern),
        }
    }
    positive
}

/// `*` matches any run of characters, `?` one character; in linear time, backtracking only
/// to the last `*`.
fn wildcard_match(text: &str, pattern: &str) -> bool {
    let (text, pattern): (Vec<char>, Vec<char>) =
        (text.chars().collect(), pattern.chars().collect());
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The text of the allowed-signers file and of the revoked keys, as read once.
struct Files<'a> {
    allowed: (&'a Path, String),
    revoked: Option<(&'a Path, String)>,
}

impl<'a> Files<'a> {
    fn read(allowed: &'a Path, revoked: Option<&'a Path>) -> Result<Files<'a>> {
        Ok(Files {
            allowed: (allowed, read_text(allowed)?),
            revoked: match revoked {
                Some(path) => Some((path, read_text(path)?)),
                None => None,
            },
        })
    }

    fn parse(&self) -> Result<AllowedSigners> {
        let (path, text) = &self.allowed;
        let mut signers =
            AllowedSigners::parse(text, &path.display().to_string()).map_err(invalid_files)?;
        if let Some((path, text)) = &self.revoked {
            signers.revoked =
                parse_revocations(text, &path.display().to_string()).map_err(invalid_files)?;
        }
        Ok(signers)
    }

    /// What tells this version from another: the paths and the contents.
    fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        for (path, text) in std::iter::once(&self.allowed).chain(&self.revoked) {
            for part in [path.as_os_str().as_encoded_bytes(), text.as_bytes()] {
                digest.update((part.len() as u64).to_be_bytes());
                digest.update(part);
            }
        }
        digest.finalize().into()
    }
}

#[derive(Debug)]
struct InForce {
    digest: [u8; 32],
    signers: Arc<AllowedSigners>,
}

#[derive(Debug, Default)]
struct State {
    in_force: Option<InForce>,
    /// What the last failure to read a new version said, so that it is reported once.
    failure: Option<String>,
}

/// Allowed signers read from files, and read again when what the files hold changes, so
/// that a running daemon follows edits (a revoked key stops counting at the next check).
/// An edit that cannot be read is reported and the last good signers stay in force.
#[derive(Default)]
pub struct ReloadingSigners {
    state: Mutex<State>,
}

impl std::fmt::Debug for ReloadingSigners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadingSigners { .. }")
    }
}

/// Every copy of a host config shares what it read; what it read follows from the paths,
/// which are compared with the rest of the config.
impl PartialEq for ReloadingSigners {
    fn eq(&self, _: &ReloadingSigners) -> bool {
        true
    }
}

impl ReloadingSigners {
    /// Reads the files now and puts them in force; an error leaves what was in force.
    pub fn load(&self, allowed: &Path, revocations: Option<&Path>) -> Result<Arc<AllowedSigners>> {
        let files = Files::read(allowed, revocations)?;
        let signers = Arc::new(files.parse()?);
        *self.lock() = State {
            in_force: Some(InForce {
                digest: files.digest(),
                signers: signers.clone(),
            }),
            failure: None,
        };
        Ok(signers)
    }

    /// The signers the files hold now, parsed again only when they changed; the last good
    /// ones (none if there never were) when the files cannot be read.
    pub fn current(
        &self,
        allowed: &Path,
        revocations: Option<&Path>,
    ) -> Option<Arc<AllowedSigners>> {
        let mut state = self.lock();
        let read = Files::read(allowed, revocations).and_then(|files| {
            let digest = files.digest();
            match &state.in_force {
                Some(current) if current.digest == digest => Ok(current.signers.clone()),
                _ => {
                    let signers = Arc::new(files.parse()?);
                    state.in_force = Some(InForce {
                        digest,
                        signers: signers.clone(),
                    });
                    Ok(signers)
                }
            }
        });
        match read {
            Ok(signers) => {
                state.failure = None;
                Some(signers)
            }
            Err(error) => {
                let error = error.to_string();
                if state.failure.as_ref() != Some(&error) {
                    tracing::warn!(%error, "the allowed signers cannot be read; the last good ones stay in force");
                    state.failure = Some(error);
                }
                Some(state.in_force.as_ref()?.signers.clone())
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti";

    fn problems(text: &str) -> Vec<String> {
        AllowedSigners::parse(text, "allowed_signers")
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn lines_are_read_as_ssh_keygen_reads_them() {
        let text = format!(
            "# team\n\nalice@example.com {ED25519} alice\n\"bob@example.com,carol@example.com\" namespaces=\"git,gitward-*\",VALID-AFTER=\"20260101Z\" {ED25519}\n*@ops.example.com cert-authority {ED25519}\r\n"
        );
        let signers = AllowedSigners::parse(&text, "allowed_signers").unwrap();
        assert_eq!(signers.entries.len(), 3);
        assert_eq!(signers.by_key.len(), 1);
        let bob = &signers.entries[1];
        assert_eq!(bob.principals, "bob@example.com,carol@example.com");
        assert_eq!(bob.namespaces.as_deref(), Some("git,gitward-*"));
        assert_eq!(
            bob.valid_after,
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        );
        assert!(signers.entries[2].cert_authority);
    }

    #[test]
    fn a_line_that_cannot_be_read_is_refused_where_it_goes_wrong() {
        assert_eq!(
            problems(&format!("alice@example.com {ED25519}\nbob@example.com\n")),
            ["allowed_signers:2:16: a public key is missing"]
        );
        assert_eq!(
            problems("bob@example.com ssh-ed25519 AAAAnotbase64!\n"),
            ["allowed_signers:1:17: not a public key: character encoding invalid"]
        );
        assert_eq!(
            problems(&format!(
                "bob@example.com valid-before=\"2026\" {ED25519}\n"
            )),
            ["allowed_signers:1:17: `2026` is not a time: YYYYMMDD[HHMM[SS]], with Z for UTC"]
        );
        assert_eq!(
            problems(&format!(
                "bob@example.com namespaces=\"git\",expiry=\"x\" {ED25519}\n"
            )),
            [
                "allowed_signers:1:34: `expiry=\"x\"` is neither a key type nor an option (cert-authority, namespaces=, valid-after=, valid-before=)"
            ]
        );
        assert_eq!(
            problems(&format!("bob@example.com namespaces=git {ED25519}\n")),
            ["allowed_signers:1:17: the value of namespaces is written in double quotes"]
        );
        assert_eq!(
            problems("\"bob@example.com ssh-ed25519\n"),
            ["allowed_signers:1:1: a quote is not closed"]
        );
    }

    #[test]
    fn principals_match_as_openssh_pattern_lists() {
        assert!(matches_pattern_list(
            "alice@example.com",
            "bob@x,alice@example.com"
        ));
        assert!(matches_pattern_list("alice@example.com", "*@example.com"));
        assert!(matches_pattern_list("alice@example.com", "alic?@*.com"));
        assert!(!matches_pattern_list(
            "alice@example.com",
            "*@example.com,!alice@*"
        ));
        assert!(!matches_pattern_list(
            "alice@example.com",
            "!bob@example.com"
        ));
        assert!(!matches_pattern_list("alice@example.com", "alice"));
        assert!(!matches_pattern_list("alice", "alice?"));
        // Many stars against a long text do not take exponential time.
        let long = "a".repeat(10_000);
        assert!(!matches_pattern_list(
            &long,
            &format!("{}b", "*a".repeat(50))
        ));
    }

    #[test]
    fn times_are_read_in_the_three_lengths_ssh_keygen_takes() {
        let utc = |y, mo, d, h, mi, s| Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap();
        assert_eq!(absolute_time("20260102Z"), Ok(utc(2026, 1, 2, 0, 0, 0)));
        assert_eq!(
            absolute_time("202601021530z"),
            Ok(utc(2026, 1, 2, 15, 30, 0))
        );
        assert_eq!(
            absolute_time("20260102153045UTC"),
            Ok(utc(2026, 1, 2, 15, 30, 45))
        );
        for bad in ["2026010", "20261302Z", "20260102256000Z", "+0260102", ""] {
            assert!(absolute_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn garbage_is_no_signature() {
        let signers = AllowedSigners::parse(&format!("a@example.com {ED25519}\n"), "f").unwrap();
        let now = Utc::now();
        for armored in [
            String::new(),
            "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n".to_owned(),
            "x".repeat(MAX_SIGNATURE_BYTES + 1),
        ] {
            let check = signers.verify("git", b"m", &armored, None, now);
            assert!(!check.verified);
            assert!(check.key_fingerprint.is_none());
            assert!(check.problem.is_some());
        }
    }
}
