//! `gitward test`: the `test_` rules of `*_test.rego` modules, as `opa test` runs them. A
//! test passes when its rule is true; false, undefined or an error fail it.

use std::time::{Duration, Instant};

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::compile::{PolicySet, package_of, rego_error};
use super::evaluate::evaluation_budget;
use super::isolate::{End, isolated};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestOutcome {
    Pass,
    Fail,
    Error(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestResult {
    pub module: String,
    /// Full rule path, `data.<package>.test_...`.
    pub rule: String,
    pub outcome: TestOutcome,
    pub duration: Duration,
    /// What `print()` wrote during the test.
    pub prints: Vec<String>,
}

/// Names that may be `test_` rules of a module, in order, each once: words starting a line.
/// The engine confirms which are rules (a `test_x := 1` inside a rule body is not).
fn test_rule_candidates(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in text.lines() {
        let name: String = line
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.starts_with("test_") && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Runs every test whose rule path matches `filter`.
pub fn run_tests(set: &PolicySet, filter: Option<&Regex>) -> Vec<TestResult> {
    let mut engine = set.engine.clone();
    engine.set_gather_prints(true);
    let mut rules = Vec::new();
    for (path, text) in &set.test_modules {
        // Modules that do not compile are reported by validation; their tests cannot run.
        if engine
            .add_policy(path.to_string(), text.to_string())
            .is_err()
        {
            continue;
        }
        let Some(package) = package_of(text) else {
            continue;
        };
        for name in test_rule_candidates(text) {
            if !engine
                .has_declared_rule_rooted_at(path, &name)
                .unwrap_or(false)
            {
                continue;
            }
            let rule = format!("data.{package}.{name}");
            if filter.is_none_or(|f| f.is_match(&rule)) {
                rules.push((path.to_string(), rule));
            }
        }
    }
    run_isolated(&engine, &rules)
}

/// Runs each test rule in a child process (see [`super::isolate`]): a test that crashes
/// the engine or runs past the budget is an error of that test, and the others still run.
fn run_isolated(engine: &regorus::Engine, rules: &[(String, String)]) -> Vec<TestResult> {
    let deadline = Instant::now() + evaluation_budget();
    let mut results: Vec<TestResult> = Vec::new();
    while results.len() < rules.len() {
        let first = results.len();
        let run = isolated(deadline, |child| {
            let mut engine = engine.clone();
            for (offset, (module, rule)) in rules[first..].iter().enumerate() {
                child.step((first + offset) as u64);
                child.send(&run_one(&mut engine, module, rule));
            }
        });
        let (items, failure) = match run {
            Ok(run) => match run.end {
                End::Finished => (run.items, None),
                End::Died(why) => (run.items, Some(format!("the test crashed: {why}"))),
                End::TimedOut => (
                    run.items,
                    Some(format!(
                        "the tests did not finish within {:?}",
                        evaluation_budget()
                    )),
                ),
            },
            Err(error) => (Vec::new(), Some(format!("cannot run the tests: {error}"))),
        };
        results.extend(items);
        let Some(failure) = failure else { break };
        // The test in progress gets the failure; after a timeout, so do all the rest.
        let timed_out = failure.contains("did not finish");
        for (module, rule) in &rules[results.len().min(rules.len())..] {
            results.push(TestResult {
                module: module.clone(),
                rule: rule.clone(),
                outcome: TestOutcome::Error(failure.clone()),
                duration: Duration::ZERO,
                prints: Vec::new(),
            });
            if !timed_out {
                break;
            }
        }
    }
    results
}

fn run_one(engine: &mut regorus::Engine, module: &str, rule: &str) -> TestResult {
    let started = Instant::now();
    let outcome = match engine.eval_rule(rule.to_owned()) {
        Ok(regorus::Value::Bool(true)) => TestOutcome::Pass,
        Ok(_) => TestOutcome::Fail,
        Err(e) => {
            let (location, message) = rego_error(&e);
            TestOutcome::Error(match location {
                Some((file, pos)) => format!("{file}:{}:{}: {message}", pos.line, pos.col),
                None => message,
            })
        }
    };
    TestResult {
        module: module.to_owned(),
        rule: rule.to_owned(),
        outcome,
        duration: started.elapsed(),
        prints: engine.take_prints().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rule_candidates_are_found_once_each() {
        let text = "package p_test\n\ntest_a if { true }\ntest_a if { false }\n# test_commented\n  test_indented if true\ntest_b := true\nhelper_test_c if true\n";
        assert_eq!(
            test_rule_candidates(text),
            ["test_a", "test_indented", "test_b"]
        );
    }
}
