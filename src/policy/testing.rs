//! `gitward test`: the `test_` rules of `*_test.rego` modules, as `opa test` runs them. A
//! test passes when its rule is true; false, undefined or an error fail it.

use std::time::{Duration, Instant};

use regex::Regex;

use super::compile::{PolicySet, package_of, rego_error};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    Pass,
    Fail,
    Error(String),
}

#[derive(Debug, Clone)]
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
    rules
        .into_iter()
        .map(|(module, rule)| {
            let started = Instant::now();
            let outcome = match engine.eval_rule(rule.clone()) {
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
                module,
                rule,
                outcome,
                duration: started.elapsed(),
                prints: engine.take_prints().unwrap_or_default(),
            }
        })
        .collect()
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
