//! A configuration repository and a host config for `gitward reconcile --once`, with
//! `openssl` to read what it wrote.

use std::path::{Path, PathBuf};

use super::{Run, TestRepo, gitward_beside, gitward_in_env, tool};

/// A configuration repository and a host config granting targets under the same directory.
pub struct Host {
    pub repo: TestRepo,
    pub dir: tempfile::TempDir,
}

pub const ISSUERS: &str = "apiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: root, labels: {env: prod, owner: pki}}\nspec:\n  selfSigned: {commonName: Test Root CA, keyAlgorithm: ECDSA-P384}\n---\napiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: issuing, labels: {env: prod, owner: pki}}\nspec:\n  ca:\n    issuerRef: root\n    commonName: Test Issuing CA\n    pathLen: 0\n    permittedDnsDomains: [example.com]\n";

pub fn certificate(name: &str, body: &str) -> String {
    format!(
        "apiVersion: gitward/v1\nkind: Certificate\nmetadata: {{name: {name}, labels: {{env: prod, owner: web}}}}\nspec:\n  issuerRef: issuing\n  target: web\n{body}"
    )
}

impl Host {
    pub fn new(files: &[(&str, &str)]) -> Host {
        let repo = TestRepo::new();
        for (path, text) in files {
            repo.write(path, text);
        }
        repo.commit("Configuration");
        let dir = tempfile::tempdir().expect("tempdir");
        let host = Host { repo, dir };
        host.config("");
        host
    }

    /// Writes the host config; `extra` goes into the `web` target, whose reload command
    /// touches the file `reloaded`.
    pub fn config(&self, extra: &str) {
        let marker = self.dir.path().join("reloaded");
        self.config_reload(&["/usr/bin/touch", &marker.to_string_lossy()], extra);
    }

    /// Writes the host config with `reload` as the `web` target's reload command.
    pub fn config_reload(&self, reload: &[&str], extra: &str) {
        let text = format!(
            "repo:\n  url: {}\n  branch: main\n  pollInterval: 1h\nstateDir: state\ntargets:\n  web:\n    dir: out\n    reload: {}\n{extra}",
            self.repo.path().display(),
            serde_json::to_string(reload).expect("argv as YAML flow sequence"),
        );
        std::fs::write(self.dir.path().join("gitward.yaml"), text).expect("config");
    }

    /// Points the host config at `url` instead of the local repository.
    pub fn follow(&self, url: &str) {
        let path = self.dir.path().join("gitward.yaml");
        let text = std::fs::read_to_string(&path).expect("config");
        let local = format!("url: {}\n", self.repo.path().display());
        assert!(text.contains(&local));
        std::fs::write(&path, text.replace(&local, &format!("url: {url}\n"))).expect("config");
    }

    /// Adds `credentials` (a YAML flow mapping) to the host config's `repo`.
    pub fn credentials(&self, credentials: &str) {
        let path = self.dir.path().join("gitward.yaml");
        let text = std::fs::read_to_string(&path).expect("config");
        let branch = "\n  branch: ";
        assert!(text.contains(branch));
        let with = format!("\n  credentials: {credentials}{branch}");
        std::fs::write(&path, text.replacen(branch, &with, 1)).expect("config");
    }

    pub fn reconcile(&self, extra: &[&str]) -> Run {
        self.reconcile_with_env(extra, &[])
    }

    /// [`Host::reconcile`] with `env` added to gitward's environment (e.g. a `HOME` whose
    /// `.ssh/known_hosts` libgit2 reads).
    pub fn reconcile_with_env(&self, extra: &[&str], env: &[(&str, &Path)]) -> Run {
        let mut args = vec!["reconcile", "--once", "--config", "gitward.yaml"];
        args.extend_from_slice(extra);
        gitward_in_env(self.dir.path(), &args, env)
    }

    /// [`Host::reconcile`] from async code, beside the stand-ins its runtime serves.
    pub async fn reconcile_beside(&self, extra: &[&str]) -> Run {
        let mut args = vec!["reconcile", "--once", "--config", "gitward.yaml"];
        args.extend_from_slice(extra);
        gitward_beside(self.dir.path(), &args, &[]).await
    }

    /// What `gitward explain` says of the repository's HEAD.
    pub fn explain_head(&self) -> String {
        self.repo.gitward(&["explain", "HEAD"]).stdout
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join("out").join(name)
    }

    pub fn openssl(&self, args: &[&str]) -> Run {
        tool("openssl", args, self.dir.path())
    }

    pub fn text(&self, pem: &Path) -> String {
        self.openssl(&["x509", "-noout", "-text", "-in", &pem.to_string_lossy()])
            .stdout
    }

    pub fn verify(&self, name: &str) -> Run {
        self.verify_at(name, None)
    }

    /// `openssl verify` of a certificate's files, as at `time` (Unix seconds) if given.
    pub fn verify_at(&self, name: &str, time: Option<i64>) -> Run {
        let d = self.out(name);
        let (ca, chain, cert) = (d.join("ca.pem"), d.join("chain.pem"), d.join("cert.pem"));
        let at = time.map(|t| t.to_string());
        let mut args = vec!["verify"];
        if let Some(at) = &at {
            args.extend(["-attime", at.as_str()]);
        }
        let (ca, chain, cert) = (
            ca.to_string_lossy(),
            chain.to_string_lossy(),
            cert.to_string_lossy(),
        );
        args.extend(["-CAfile", &ca, "-untrusted", &chain, &cert]);
        self.openssl(&args)
    }

    pub fn status_commits(&self) -> usize {
        self.repo
            .git(&["rev-list", "--count", "gitward/status"])
            .parse()
            .unwrap_or(0)
    }

    pub fn serial(&self, name: &str) -> String {
        self.openssl(&[
            "x509",
            "-noout",
            "-serial",
            "-in",
            &self.out(name).join("cert.pem").to_string_lossy(),
        ])
        .stdout
    }

    /// Reconciles with the crash point `point` armed; whether the run finished anyway.
    pub fn reconcile_crashing_at(&self, point: usize) -> bool {
        std::process::Command::new(env!("CARGO_BIN_EXE_gitward"))
            .args(["reconcile", "--once", "--config", "gitward.yaml"])
            .current_dir(self.dir.path())
            .env("GITWARD_FAILPOINT", point.to_string())
            .output()
            .expect("runs")
            .status
            .success()
    }

    /// Asserts that certificate `name` on disk is the one its status file names.
    pub fn assert_on_disk_is_in_status(&self, name: &str, context: &str) {
        let on_disk = self
            .openssl(&[
                "x509",
                "-noout",
                "-fingerprint",
                "-sha256",
                "-in",
                &self.out(name).join("cert.pem").to_string_lossy(),
            ])
            .stdout;
        let recorded = self.repo.git(&[
            "show",
            &format!("gitward/status:status/certificate/{name}.yaml"),
        ]);
        let fingerprint = on_disk.trim().rsplit('=').next().unwrap_or_default();
        assert!(
            !fingerprint.is_empty() && recorded.contains(fingerprint),
            "{context}: {name} on disk is not what status names"
        );
    }

    /// Keys in the secret store still staged or held for an ACME order.
    pub fn keys_in_flight(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("state/keys/certificate"))
            .expect("keys")
            .filter_map(|e| e.ok())
            .filter(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                file.contains(".next.") || file.contains(".order.")
            })
            .count()
    }
}
