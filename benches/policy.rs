//! Policy evaluation against its floor, and `plan` against validate + one full evaluation.
//!
//!     GITWARD_BENCH_REPO=DIR cargo bench --bench policy
//!
//! DIR is a repository from `scripts/gen-repo.py` (HEAD a 10-file change on top of HEAD~1);
//! `scripts/bench.sh` builds one and runs this. Every figure is the median of several runs
//! in this process, so the ratios compare like with like on a noisy machine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gitward::commands::plan_report;
use gitward::model::Catalog;
use gitward::policy::evaluate::{Evaluator, input};
use gitward::policy::{Context, commit_input};
use gitward::snapshot::Snapshot;
use gitward::source::{BlobCache, ConfigRepo};
use regorus::Value;

const RUNS: usize = 7;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(mut work: impl FnMut() -> T) -> (Duration, T) {
    let mut samples = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let started = Instant::now();
        last = Some(work());
        samples.push(started.elapsed());
    }
    (median(samples), last.expect("at least one run"))
}

/// Times `work` on a freshly loaded snapshot each run: documents are converted for the
/// engine once per load, and an evaluation of a new commit pays for that.
fn time_fresh<T>(load: &impl Fn() -> Snapshot, work: impl Fn(&Snapshot) -> T) -> (Duration, T) {
    let mut samples = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let snapshot = load();
        let started = Instant::now();
        last = Some(work(&snapshot));
        samples.push(started.elapsed());
    }
    (median(samples), last.expect("at least one run"))
}

fn main() {
    let Some(repo) = std::env::var_os("GITWARD_BENCH_REPO").map(PathBuf::from) else {
        eprintln!(
            "set GITWARD_BENCH_REPO to a repository made by scripts/gen-repo.py (scripts/bench.sh does)"
        );
        return;
    };
    gitward::policy::compile::limit_memory();
    let today = chrono::Utc::now().date_naive();
    let config = ConfigRepo::open(&repo).expect("a repository");

    let (validate, (commit, snapshot)) = time(|| {
        let (commit, catalog): (_, Catalog) = config
            .load("HEAD", &mut BlobCache::default())
            .expect("HEAD loads");
        (commit, Snapshot::new(catalog))
    });
    assert!(!snapshot.has_errors(), "the benchmark repository is valid");
    let context = Context {
        commit: commit_input(&commit),
        changes: Default::default(),
        today,
    };
    let load = || {
        let catalog = config
            .load("HEAD", &mut BlobCache::default())
            .expect("HEAD loads")
            .1;
        Snapshot::new(catalog)
    };
    let (evaluate, evaluation) = time_fresh(&load, |s| {
        s.policies.evaluate(&s.catalog, &context, &|_, _| true)
    });
    let pairs = evaluation.evaluated.len();
    let (evaluate_one_thread, _) = time_fresh(&load, |s| {
        Evaluator::new(&s.policies, &s.catalog).evaluate_on(1, &context, &|_, _| true)
    });

    // The floor: the same engine, the same inputs built beforehand, the same rules per
    // resource, and nothing but regorus calls in the loop.
    let evaluator = Evaluator::new(&snapshot.policies, &snapshot.catalog);
    let engine = evaluator.engine().expect("engine");
    let commit_value = Value::from(context.commit.clone());
    let work: Vec<(Value, Vec<String>)> = snapshot
        .catalog
        .resources()
        .iter()
        .map(|loaded| {
            let rules = snapshot
                .policies
                .bindings
                .iter()
                .filter(|b| {
                    b.spec()
                        .applies_to
                        .matches(loaded.kind(), &loaded.resource.metadata.labels)
                })
                .map(|b| b.rule.clone())
                .collect();
            (input(loaded, &context, &commit_value), rules)
        })
        .filter(|(_, rules): &(Value, Vec<String>)| !rules.is_empty())
        .collect();
    let (floor, evaluated) = time(|| {
        let mut engine = engine.clone();
        let mut count = 0;
        for (input, rules) in &work {
            engine.set_input(input.clone());
            for rule in rules {
                engine.eval_rule(rule.clone()).expect("rules evaluate");
                count += 1;
            }
        }
        count
    });
    assert_eq!(evaluated, pairs, "the floor evaluates the same pairs");

    let (plan, report) = time(|| plan_report(&repo, "HEAD~1", "HEAD", today).expect("plan"));
    assert!(report.valid);
    // Where plan's time goes beyond one load and one evaluation: loading the base, and the
    // review (head evaluation, base evaluation where results can differ, comparison).
    let load_both = || {
        let mut cache = BlobCache::default();
        let (head_commit, head) = config.load("HEAD", &mut cache).expect("HEAD");
        let (base_commit, base) = config.load("HEAD~1", &mut cache).expect("HEAD~1");
        (
            (base_commit, Snapshot::new(base)),
            (head_commit, Snapshot::new(head)),
        )
    };
    let (loads, _) = time(load_both);
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let ((base_commit, base), (head_commit, head)) = load_both();
        let started = Instant::now();
        let report = gitward::review::review((&base_commit, &base), (&head_commit, &head), today);
        samples.push(started.elapsed());
        assert!(report.valid);
    }
    let reviews = median(samples);

    let per_second = |d: Duration| pairs as f64 / d.as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "resources: {}, policies: {}, resource×policy pairs: {pairs}",
        snapshot.catalog.resources().len(),
        snapshot.policies.bindings.len()
    );
    println!(
        "evaluation, {threads} threads  {:>7.3} s  {:>7.0} evaluations/s",
        evaluate.as_secs_f64(),
        per_second(evaluate)
    );
    println!(
        "evaluation, 1 thread   {:>7.3} s  {:>7.0} evaluations/s",
        evaluate_one_thread.as_secs_f64(),
        per_second(evaluate_one_thread)
    );
    println!(
        "floor, bare regorus    {:>7.3} s  {:>7.0} evaluations/s (1 thread)",
        floor.as_secs_f64(),
        per_second(floor)
    );
    println!(
        "evaluation / floor     {:.2}× on one thread, {:.2}× wall clock on {threads}   (target: ≤ 1.5×)",
        evaluate_one_thread.as_secs_f64() / floor.as_secs_f64(),
        evaluate.as_secs_f64() / floor.as_secs_f64()
    );
    println!("validate, load + compile  {:.3} s", validate.as_secs_f64());
    println!("plan of the change        {:.3} s", plan.as_secs_f64());
    println!(
        "  of which: loading base and head {:.3} s, review {:.3} s (review / evaluation {:.2}×)",
        loads.as_secs_f64(),
        reviews.as_secs_f64(),
        reviews.as_secs_f64() / evaluate.as_secs_f64()
    );
    println!(
        "plan / (validate + evaluation)  {:.2}×   (target: ≤ 1.3×)",
        plan.as_secs_f64() / (validate + evaluate).as_secs_f64()
    );
}
