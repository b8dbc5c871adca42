//! Crash points for tests: with `GITWARD_FAILPOINT=N` in the environment, the process aborts
//! (as `kill -9` would stop it: no destructors, no flushing) when it reaches the N-th point.
//! Tests run a reconcile once for every N to prove that it converges from a crash anywhere.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms the crash points.
pub const ENV: &str = "GITWARD_FAILPOINT";

fn armed() -> Option<u64> {
    static ARMED: OnceLock<Option<u64>> = OnceLock::new();
    *ARMED.get_or_init(|| std::env::var(ENV).ok().and_then(|v| v.parse().ok()))
}

static PASSED: AtomicU64 = AtomicU64::new(0);

/// Marks a point where a crash must be survivable; `step` says which, for the test's log.
pub fn point(step: &str) {
    let Some(n) = armed() else { return };
    if PASSED.fetch_add(1, Ordering::SeqCst) + 1 == n {
        eprintln!("failpoint {n}: {step}");
        std::process::abort();
    }
}
