//! What every benchmark measures with: this machine is shared and noisy, so figures are
//! medians of rounds.

// Each benchmark uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// How long `work` took, in seconds, and what it returned.
pub fn timed<T>(work: impl FnOnce() -> T) -> (f64, T) {
    let started = Instant::now();
    let out = work();
    (started.elapsed().as_secs_f64(), out)
}

/// Runs `program` in `dir`; fails with its output unless it succeeds.
pub fn run(program: &str, args: &[&str], dir: &Path) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A host with nothing applied yet: a fresh state directory and outputs, and no status in
/// the repository. Returns its config.
pub fn fresh_host(repo: &Path, work: &Path) -> PathBuf {
    for reference in ["refs/heads/gitward/status", "refs/notes/gitward"] {
        let _ = Command::new("git")
            .args(["update-ref", "-d", reference])
            .current_dir(repo)
            .status();
    }
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).expect("work dir");
    let config = work.join("gitward.yaml");
    std::fs::write(
        &config,
        format!(
            "repo: {{url: {}, branch: main}}\nstateDir: state\ntargets:\n  web-tls: {{dir: out/web}}\n  internal-tls: {{dir: out/internal}}\n  mtls-clients: {{dir: out/mtls}}\n",
            repo.display()
        ),
    )
    .expect("host config");
    config
}

/// How long `gitward reconcile --once` with `config` takes, in seconds.
pub fn reconcile(config: &Path) -> f64 {
    let dir = config.parent().expect("config dir");
    timed(|| {
        run(
            env!("CARGO_BIN_EXE_gitward"),
            &["reconcile", "--once", "--quiet", "--config", "gitward.yaml"],
            dir,
        )
    })
    .0
}
