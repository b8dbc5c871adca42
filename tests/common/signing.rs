//! SSH keys and signatures made and checked by OpenSSH's `ssh-keygen`, the peer gitward's
//! signatures must agree with.

// Each test binary that includes this module uses a part of it.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A key pair made by `ssh-keygen` in a directory of the test's.
pub struct Key {
    /// The private key file; the public one is beside it, with `.pub`.
    pub path: PathBuf,
}

impl Key {
    /// A new key of `kind` (`ed25519`, `ecdsa` (P-256) or `rsa`) at `dir/name`.
    pub fn new(dir: &Path, name: &str, kind: &str) -> Key {
        Key::with_passphrase(dir, name, kind, "")
    }

    pub fn with_passphrase(dir: &Path, name: &str, kind: &str, passphrase: &str) -> Key {
        let path = dir.join(name);
        let mut args = vec!["-q", "-t", kind, "-N", passphrase, "-C", name, "-f"];
        let shown = path.to_string_lossy().into_owned();
        args.push(&shown);
        if kind == "ecdsa" {
            args.extend(["-b", "256"]);
        }
        if kind == "rsa" {
            args.extend(["-b", "3072"]);
        }
        let output = Command::new("ssh-keygen")
            .args(&args)
            .output()
            .expect("ssh-keygen runs (openssh-client; scripts/test.sh installs it)");
        assert!(
            output.status.success(),
            "ssh-keygen {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Key { path }
    }

    /// `keytype base64`, as an allowed-signers line ends.
    pub fn public(&self) -> String {
        let text = std::fs::read_to_string(format!("{}.pub", self.path.display()))
            .expect("the public key");
        let mut fields = text.split_whitespace();
        format!(
            "{} {}",
            fields.next().expect("key type"),
            fields.next().expect("key data")
        )
    }

    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        let output = ssh_keygen(&["-l", "-f", &self.path.to_string_lossy()], b"");
        assert!(output.0, "ssh-keygen -l: {}", output.2);
        output
            .1
            .split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_owned()
    }

    /// An armored sshsig over `data` in `namespace`.
    pub fn sign(&self, namespace: &str, data: &[u8]) -> String {
        let (ok, signature, stderr) = ssh_keygen(
            &[
                "-Y",
                "sign",
                "-n",
                namespace,
                "-f",
                &self.path.to_string_lossy(),
            ],
            data,
        );
        assert!(ok, "ssh-keygen -Y sign: {stderr}");
        signature
    }
}

/// Whether `ssh-keygen -Y verify` accepts `signature` over `data` by `principal` in
/// `namespace`, with the allowed signers and revoked keys given.
pub fn ssh_keygen_verifies(
    dir: &Path,
    allowed: &Path,
    revoked: Option<&Path>,
    principal: &str,
    namespace: &str,
    signature: &str,
    data: &[u8],
) -> bool {
    let file = dir.join(format!("check-{}.sig", std::process::id()));
    std::fs::write(&file, signature).expect("signature file");
    let (allowed, file_arg) = (allowed.to_string_lossy(), file.to_string_lossy());
    let mut args = vec![
        "-Y", "verify", "-f", &allowed, "-I", principal, "-n", namespace, "-s", &file_arg,
    ];
    let revoked = revoked.map(|r| r.to_string_lossy().into_owned());
    if let Some(revoked) = &revoked {
        args.extend(["-r", revoked]);
    }
    ssh_keygen(&args, data).0
}

/// Runs `ssh-keygen` with `input` on stdin: success, stdout, stderr.
fn ssh_keygen(args: &[&str], input: &[u8]) -> (bool, String, String) {
    let mut child = Command::new("ssh-keygen")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh-keygen runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("input to ssh-keygen");
    let output = child.wait_with_output().expect("ssh-keygen ends");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
