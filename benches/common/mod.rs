//! What every benchmark measures with: this machine is shared and noisy, so figures are
//! medians of rounds.

// Each benchmark uses a part of it.
#![allow(dead_code)]

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
