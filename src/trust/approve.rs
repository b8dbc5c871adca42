//! `gitward approve`: sign an approval of a commit's tree for its gates with the approver's
//! SSH key, record it in [`APPROVALS_REF`] and push it to the repository's remote.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ssh_key::{HashAlg, LineEnding, PrivateKey};

use super::approvals::{APPROVAL_NAMESPACE, APPROVALS_REF, SignedApproval, payload, record};
use super::signers::fingerprint;
use crate::commands::exit;
use crate::error::{Error, Result};
use crate::model::Kind;
use crate::model::values::patterns;
use crate::source::{BlobCache, ConfigRepo};

/// Largest private key file read; an RSA-16384 key in OpenSSH format is under 13 KiB.
const MAX_KEY_BYTES: u64 = 64 * 1024;

pub struct ApproveOptions {
    /// A directory in the repository (its configuration's directory, in a monorepo).
    pub repo: PathBuf,
    /// The commit whose tree is approved.
    pub rev: String,
    /// The private key to sign with; see [`default_key`] when `None`.
    pub key: Option<PathBuf>,
    /// The gates approved; every gate `rev` defines when empty.
    pub gates: Vec<String>,
    /// Who approves; `git config user.email` when `None`.
    pub principal: Option<String>,
    /// The remote the approvals are pushed to.
    pub remote: String,
    /// Whether to push; otherwise the approvals stay in the local repository.
    pub push: bool,
}

/// Signs and records the approvals, pushes them unless told not to, and says what it did.
pub fn approve(options: &ApproveOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8> {
    let config_repo = ConfigRepo::open(&options.repo)?;
    let (commit, catalog) = config_repo.load(&options.rev, &mut BlobCache::default())?;
    let repo = config_repo.repo.inner();
    let defined: Vec<&str> = catalog.of_kind(Kind::Gate).map(|g| g.name()).collect();
    let gates = gates_to_approve(&options.gates, &defined, &options.rev)?;
    for gate in gates.iter().filter(|g| !defined.contains(&g.as_str())) {
        say(
            err,
            &format!(
                "warning: `{}` defines no gate `{gate}`; the approval counts where a gate of that name governs the change\n",
                options.rev
            ),
        )?;
    }
    let config = repo
        .config()
        .map_err(Error::git("reading the git configuration"))?;
    let principal = match &options.principal {
        Some(principal) => principal.clone(),
        None => config.get_string("user.email").map_err(|_| {
            Error::Usage(
                "no principal to approve as: give --as PRINCIPAL or set git config user.email"
                    .to_owned(),
            )
        })?,
    };
    if !regex::Regex::new(patterns::PRINCIPAL).is_ok_and(|re| re.is_match(&principal)) {
        return Err(Error::Usage(format!(
            "`{principal}` is not a principal: 1 to 256 characters without blanks, commas, quotes, `*`, `?` or `!`"
        )));
    }
    let key_path = match &options.key {
        Some(path) => path.clone(),
        None => default_key(&config).ok_or_else(|| {
            Error::Usage("no key to sign with: give --key FILE (HOME is not set)".to_owned())
        })?,
    };
    let key = signing_key(&key_path)?;
    let tree = commit.tree;
    let approvals = gates
        .iter()
        .map(|gate| {
            let signature = key
                .sign(
                    APPROVAL_NAMESPACE,
                    HashAlg::Sha512,
                    &payload(tree, gate, &principal),
                )
                .and_then(|s| s.to_pem(LineEnding::LF))
                .map_err(|e| Error::Usage(format!("signing with {}: {e}", key_path.display())))?;
            Ok(SignedApproval {
                gate: gate.clone(),
                approver: principal.clone(),
                signature,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    record(repo, tree, &approvals)?;
    let mut report = String::new();
    for gate in &gates {
        report.push_str(&format!(
            "approved gate {gate} of tree {tree} (commit {}) as {principal} with key {}\n",
            commit.short(),
            fingerprint(key.public_key().key_data())
        ));
    }
    if options.push {
        crate::remote::push_approvals(repo, &options.remote)?;
        report.push_str(&format!("pushed {APPROVALS_REF} to {}\n", options.remote));
    } else {
        report.push_str(&format!(
            "not pushed (--no-push): `git push {} {APPROVALS_REF}` shares it\n",
            options.remote
        ));
    }
    say(out, &report)?;
    Ok(exit::OK)
}

fn say(out: &mut dyn Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .map_err(Error::io("<stdout>"))
}

/// The gates named, each once, or every gate `rev` defines when none is named.
fn gates_to_approve(named: &[String], defined: &[&str], rev: &str) -> Result<Vec<String>> {
    if named.is_empty() {
        if defined.is_empty() {
            return Err(Error::Usage(format!(
                "`{rev}` defines no gate; name the gates to approve with --gate"
            )));
        }
        return Ok(defined.iter().map(|g| (*g).to_owned()).collect());
    }
    let name = regex::Regex::new(patterns::NAME).map_err(|e| Error::Usage(e.to_string()))?;
    let mut gates: Vec<String> = Vec::new();
    for gate in named {
        if !name.is_match(gate) || gate.len() > 63 {
            return Err(Error::Usage(format!(
                "`{gate}` is not a gate name: lowercase letters, digits and '-', at most 63"
            )));
        }
        if !gates.contains(gate) {
            gates.push(gate.clone());
        }
    }
    Ok(gates)
}

/// The key git signs with (`user.signingkey`, when it names a key file; its private half
/// when it names a `.pub`), else `~/.ssh/id_ed25519`.
fn default_key(config: &git2::Config) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let configured = config
        .get_string("user.signingkey")
        .ok()
        .map(|value| match (value.strip_prefix("~/"), &home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => PathBuf::from(value),
        })
        .map(
            |path| match path.to_str().and_then(|p| p.strip_suffix(".pub")) {
                Some(private) if Path::new(private).is_file() => PathBuf::from(private),
                _ => path,
            },
        )
        // A key given as text (`key::ssh-ed25519 …`) or a GPG key id names no file.
        .filter(|path| path.is_file());
    configured.or_else(|| Some(home?.join(".ssh/id_ed25519")))
}

/// The private key at `path`, decrypted with a passphrase asked on the terminal if it is
/// encrypted.
fn signing_key(path: &Path) -> Result<PrivateKey> {
    let refuse = |why: String| Error::Usage(format!("key {}: {why}", path.display()));
    // Read at most one byte past the bound: a device or a growing file reports no true size.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_KEY_BYTES + 1).read_to_end(&mut bytes))
        .map_err(Error::io(path))?;
    if bytes.len() as u64 > MAX_KEY_BYTES {
        return Err(refuse(format!(
            "more than {MAX_KEY_BYTES} bytes is no OpenSSH private key"
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| refuse("not an OpenSSH private key (not UTF-8)".to_owned()))?;
    let key = PrivateKey::from_openssh(&text).map_err(|e| {
        refuse(format!(
            "not an OpenSSH private key ({e}); give the private key, not the .pub"
        ))
    })?;
    // ssh-key 0.6 builds an RSA private key from the wrong primes and cannot sign with it;
    // RSA signatures made by ssh-keygen still verify.
    if matches!(key.algorithm(), ssh_key::Algorithm::Rsa { .. }) {
        return Err(refuse(
            "RSA keys cannot sign approvals with gitward; use an Ed25519 or ECDSA key (`ssh-keygen -t ed25519`)".to_owned(),
        ));
    }
    if !key.is_encrypted() {
        return Ok(key);
    }
    let passphrase = ask_passphrase(&format!("Passphrase for {}: ", path.display()))
        .map_err(|e| {
            refuse(format!(
                "it is encrypted and no passphrase could be asked ({e}); run gitward approve in a terminal"
            ))
        })?;
    key.decrypt(passphrase.as_bytes())
        .map_err(|_| refuse("the passphrase does not decrypt it".to_owned()))
}

/// A line read from the terminal with echo off.
fn ask_passphrase(prompt: &str) -> std::io::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    use std::io::BufRead;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let echoing = tcgetattr(&tty)?;
    let mut silent = echoing.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    silent.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&tty, SetArg::TCSAFLUSH, &silent)?;
    let mut line = String::new();
    let read = (&tty)
        .write_all(prompt.as_bytes())
        .and_then(|()| std::io::BufReader::new(&tty).read_line(&mut line));
    // Echo comes back whatever happened.
    tcsetattr(&tty, SetArg::TCSAFLUSH, &echoing)?;
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
