//! Policy evaluation against its floor, and `plan` against validate + one full evaluation.
//!
//!     GITWARD_BENCH_REPO=DIR cargo bench --bench policy
//!
//! DIR is a repository from `scripts/gen-repo.py` (HEAD a 10-file change on top of HEAD~1);
//! `scripts/bench.sh` builds one and runs this. The machine this runs on is shared and noisy,
//! so the measurements are interleaved: each round measures every figure once, on a freshly
//! loaded commit, and a ratio is the median of the rounds' ratios.

mod common;

use common::{median, timed};

use std::path::PathBuf;
use std::time::Instant;

use gitward::commands::{Judging, plan_report};
use gitward::policy::evaluate::Evaluator;
use gitward::policy::{Context, commit_input};
use gitward::snapshot::Snapshot;
use gitward::source::{BlobCache, ConfigRepo};
use regorus::Value;

const ROUNDS: usize = 9;

/// The floor: the same engine, the same inputs built beforehand, the same rules per
/// resource, and nothing but regorus calls in the loop. Returns its time and the number of
/// evaluations.
fn floor(snapshot: &Snapshot, context: &Context) -> (f64, usize) {
    let evaluator = Evaluator::new(&snapshot.policies, &snapshot.catalog);
    let mut engine = evaluator.engine().expect("engine").clone();
    let commit = Value::from(context.commit.clone());
    let work: Vec<(Value, Vec<String>)> = snapshot
        .catalog
        .resources()
        .iter()
        .map(|loaded| {
            let rules: Vec<String> = snapshot
                .policies
                .applying_to(loaded)
                .map(|b| b.rule.clone())
                .collect();
            (evaluator.input(loaded, context, &commit), rules)
        })
        .filter(|(_, rules)| !rules.is_empty())
        .collect();
    timed(|| {
        let mut count = 0;
        for (input, rules) in &work {
            engine.set_input(input.clone());
            for rule in rules {
                engine.eval_rule(rule.clone()).expect("rules evaluate");
                count += 1;
            }
        }
        count
    })
}

#[derive(Default)]
struct Samples {
    validate: Vec<f64>,
    evaluate: Vec<f64>,
    evaluate_one_thread: Vec<f64>,
    floor: Vec<f64>,
    plan: Vec<f64>,
    floor_ratio: Vec<f64>,
    plan_ratio: Vec<f64>,
}

fn main() {
    let Some(repo) = std::env::var_os("GITWARD_BENCH_REPO").map(PathBuf::from) else {
        eprintln!(
            "set GITWARD_BENCH_REPO to a repository made by scripts/gen-repo.py (scripts/bench.sh does)"
        );
        return;
    };
    gitward::policy::compile::limit_memory();
    let now = chrono::Utc::now();
    let today = now.date_naive();
    let judging = Judging {
        today,
        now,
        signers: None,
        trust_trailers: false,
        list_pairs: false,
    };
    let config = ConfigRepo::open(&repo).expect("a repository");
    let load = || {
        let (commit, catalog) = config
            .load("HEAD", &mut BlobCache::default())
            .expect("HEAD loads");
        let snapshot = Snapshot::new(catalog);
        assert!(!snapshot.has_errors(), "the benchmark repository is valid");
        let context = Context {
            commit: commit_input(&commit),
            changes: Default::default(),
            today,
        };
        (snapshot, context)
    };

    let mut s = Samples::default();
    let mut pairs = 0;
    let mut resources = 0;
    let mut policies = 0;
    for _ in 0..ROUNDS {
        // validate + one full evaluation, on a fresh load. Like `plan`, which frees what it
        // loaded before it returns, the pair is timed up to its memory being freed.
        let started = Instant::now();
        let (validate, (snapshot, context)) = timed(load);
        let (evaluate, evaluation) = timed(|| {
            snapshot
                .policies
                .evaluate(&snapshot.catalog, &context, &|_, _| true)
        });
        pairs = evaluation.evaluated.len();
        resources = snapshot.catalog.resources().len();
        policies = snapshot.policies.bindings.len();
        drop((snapshot, evaluation));
        let reference = started.elapsed().as_secs_f64();

        // One thread against the floor, on another fresh load.
        let (snapshot, context) = load();
        let (one_thread, _) = timed(|| {
            Evaluator::new(&snapshot.policies, &snapshot.catalog).evaluate_on(
                1,
                &context,
                &|_, _| true,
            )
        });
        let (floor, count) = floor(&snapshot, &context);
        assert_eq!(count, pairs, "the floor evaluates the same pairs");
        drop(snapshot);

        let (plan, report) =
            timed(|| plan_report(&repo, "HEAD~1", "HEAD", &judging, false).expect("plan"));
        assert!(report.valid);

        s.validate.push(validate);
        s.evaluate.push(evaluate);
        s.evaluate_one_thread.push(one_thread);
        s.floor.push(floor);
        s.plan.push(plan);
        s.floor_ratio.push(one_thread / floor);
        s.plan_ratio.push(plan / reference);
    }

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rate = |seconds: f64| pairs as f64 / seconds;
    let evaluate = median(s.evaluate);
    let one_thread = median(s.evaluate_one_thread);
    let floor = median(s.floor);
    println!(
        "resources: {resources}, policies: {policies}, resource×policy pairs: {pairs}; medians of {ROUNDS} interleaved rounds"
    );
    println!(
        "evaluation, {threads} threads  {evaluate:>7.3} s  {:>7.0} evaluations/s",
        rate(evaluate)
    );
    println!(
        "evaluation, 1 thread   {one_thread:>7.3} s  {:>7.0} evaluations/s",
        rate(one_thread)
    );
    println!(
        "floor, bare regorus    {floor:>7.3} s  {:>7.0} evaluations/s (1 thread)",
        rate(floor)
    );
    println!(
        "evaluation / floor     {:.2}× on one thread, {:.2}× wall clock on {threads}   (target: ≤ 1.5×)",
        median(s.floor_ratio),
        evaluate / floor
    );
    println!("validate, load + compile  {:.3} s", median(s.validate));
    println!("plan of the change        {:.3} s", median(s.plan));
    println!(
        "plan / (validate + evaluation)  {:.2}×   (target: ≤ 1.3×)",
        median(s.plan_ratio)
    );
}
