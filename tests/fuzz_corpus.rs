//! Replays the committed fuzzing corpus (`fuzz/corpus/<target>/`, minimized by
//! `scripts/fuzz.sh`) and every input that once crashed a target (`fuzz/regressions/<target>/`)
//! through the fuzz targets, without AFL: a regression fails an ordinary `cargo test`.

use crate::common;

#[path = "../fuzz/src/lib.rs"]
mod targets;

#[test]
fn every_corpus_input_goes_through_its_target_without_a_crash() {
    let fuzz = common::project_dir().join("fuzz");
    let mut failures = Vec::new();
    for (name, target) in targets::TARGETS {
        let corpus = std::fs::read_dir(fuzz.join("corpus").join(name))
            .unwrap_or_else(|e| panic!("fuzz/corpus/{name}: {e}"));
        let corpus: Vec<_> = corpus.filter_map(|e| e.ok().map(|e| e.path())).collect();
        assert!(
            corpus.len() >= 5,
            "fuzz/corpus/{name} holds {} inputs",
            corpus.len()
        );
        let regressions = std::fs::read_dir(fuzz.join("regressions").join(name)).into_iter();
        let mut inputs: Vec<_> = regressions
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .chain(corpus)
            .collect();
        inputs.sort();
        for input in inputs {
            let bytes = std::fs::read(&input).expect("a corpus file reads");
            if std::panic::catch_unwind(|| target(&bytes)).is_err() {
                failures.push(format!("{name} fails on {}", input.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
