//! Compiling a commit's policies: every Rego module once into one regorus engine, with the
//! data documents under `policies/data/` and `data.gitward` (the inventory of the commit),
//! and binding each Policy resource to a rule that exists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regorus::utils::limits::ExecutionTimerConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::analyze::{analyze, recursion};
use super::evaluate::evaluation_budget;
use super::isolate::{End, Run, STACK_BYTES, isolated};
use super::reads::{Reads, package_reads};
use crate::diag::{Diagnostic, Pos};
use crate::model::parse::{Content, DATA_DIR, rego_value};
use crate::model::{Catalog, Kind, Loaded, PolicySpec, Spec};
use regorus::Value as RegoValue;

/// Longest one evaluation of one rule on one resource may run.
pub const EVALUATION_LIMIT: Duration = Duration::from_secs(2);

/// Most memory the process may hold while policies run: an evaluation that would go beyond
/// it (`numbers.range(1, 3000000000)`) fails instead of exhausting the host.
pub const MEMORY_LIMIT_BYTES: u64 = 1 << 30;

/// Enforces [`MEMORY_LIMIT_BYTES`] for every evaluation in this process. regorus counts
/// allocations through its allocator, which is the process's global allocator.
pub fn limit_memory() {
    regorus::set_global_memory_limit(Some(MEMORY_LIMIT_BYTES));
}

/// A Policy resource bound to its compiled rule.
#[derive(Clone)]
pub struct Binding {
    pub policy: Loaded,
    pub rule: String,
    /// What the rule reads beyond its input resource: a base re-evaluates an unchanged
    /// resource only when that changed.
    pub reads: Reads,
}

impl Binding {
    pub fn name(&self) -> &str {
        self.policy.name()
    }

    pub fn spec(&self) -> &PolicySpec {
        match &self.policy.resource.spec {
            Spec::Policy(spec) => spec,
            // Bindings are built from Policy resources only.
            _ => unreachable!("a binding holds a Policy"),
        }
    }
}

/// The compiled policies of one commit.
#[derive(Clone)]
pub struct PolicySet {
    pub(crate) engine: regorus::Engine,
    pub bindings: Vec<Binding>,
    /// `*_test.rego` modules, compiled only by `gitward test`.
    pub test_modules: Vec<(Arc<str>, Arc<str>)>,
}

pub fn is_test_module(path: &str) -> bool {
    path.ends_with("_test.rego")
}

/// The location and message of a regorus error (`--> file:line:col` ... `error: message`).
pub fn rego_error(error: &dyn std::fmt::Display) -> (Option<(String, Pos)>, String) {
    let text = error.to_string();
    let location = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
        .and_then(|loc| {
            let mut parts = loc.rsplitn(3, ':');
            let col = parts.next()?.parse::<usize>().ok()?;
            let line = parts.next()?.parse::<usize>().ok()?;
            Some((parts.next()?.to_owned(), Pos::new(line, col)))
        });
    let message = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or(text.trim())
        .to_owned();
    (location, message)
}

/// The package a module declares (`gitward.keys` for `package gitward.keys`).
pub(crate) fn package_of(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("package "))
        .map(|p| p.trim().to_owned())
}

/// A module's text without `#` comments (a `#` inside a string is not one), for the
/// reference scans of [`super::reads`].
fn code_of(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    for c in text.chars() {
        if comment {
            if c == '\n' {
                comment = false;
                code.push(c);
            }
            continue;
        }
        match (quote, c) {
            (Some('"'), '\\') if !escaped => escaped = true,
            (Some(q), c) if c == q && !escaped => quote = None,
            (Some(_), _) => escaped = false,
            (None, '"' | '`') => quote = Some(c),
            (None, '#') => {
                comment = true;
                continue;
            }
            (None, _) => {}
        }
        code.push(c);
    }
    code
}

/// Each DNS name of the commit's certificates → the names of the certificates claiming it,
/// in catalog order: `data.gitward.index.dnsNames` whole, and to each certificate its own
/// names' part as `input.index.dnsNames`.
pub(crate) struct DnsNameIndex<'c>(HashMap<&'c str, Vec<&'c str>>);

impl<'c> DnsNameIndex<'c> {
    /// The certificates claiming each name, in catalog order; engine values are made only
    /// for the entries a policy is given (most evaluations need a few of them).
    pub fn of(catalog: &'c Catalog) -> DnsNameIndex<'c> {
        let mut claimants: HashMap<&str, Vec<&str>> = HashMap::new();
        for loaded in catalog.resources() {
            for dns_name in dns_names(loaded) {
                claimants.entry(dns_name).or_default().push(loaded.name());
            }
        }
        DnsNameIndex(claimants)
    }

    /// The part of the index about the names that `resources` claim: what their inputs need,
    /// for a scan of the catalog rather than an entry for each of its names.
    pub fn claiming<'r>(
        catalog: &'c Catalog,
        resources: impl Iterator<Item = &'r Loaded>,
    ) -> DnsNameIndex<'c> {
        let mut claimants: HashMap<&str, Vec<&str>> = HashMap::new();
        let wanted: HashSet<&str, foldhash::fast::RandomState> =
            resources.flat_map(dns_names).collect();
        for loaded in catalog.resources() {
            for dns_name in dns_names(loaded) {
                if wanted.contains(dns_name) {
                    claimants.entry(dns_name).or_default().push(loaded.name());
                }
            }
        }
        DnsNameIndex(claimants)
    }

    fn entry(name: &str, certs: &[&str]) -> (RegoValue, RegoValue) {
        (
            RegoValue::from(name),
            RegoValue::from(
                certs
                    .iter()
                    .map(|c| RegoValue::from(*c))
                    .collect::<Vec<_>>(),
            ),
        )
    }

    fn whole(&self) -> RegoValue {
        RegoValue::from(
            self.0
                .iter()
                .map(|(name, certs)| Self::entry(name, certs))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    /// The entries of the names `loaded` claims (none but for a certificate).
    pub fn own(&self, loaded: &Loaded) -> RegoValue {
        RegoValue::from(
            dns_names(loaded)
                .filter_map(|name| {
                    let (name, certs) = self.0.get_key_value(name)?;
                    Some(Self::entry(name, certs))
                })
                .collect::<BTreeMap<_, _>>(),
        )
    }
}

/// The DNS names a resource claims: a certificate's `dnsNames`.
pub(crate) fn dns_names(loaded: &Loaded) -> impl Iterator<Item = &str> {
    let names = match &loaded.resource.spec {
        Spec::Certificate(spec) => spec.dns_names.as_slice(),
        _ => &[],
    };
    names.iter().map(|name| name.as_str())
}

/// `data.gitward`: every resource of the commit by kind and name, and indexes that keep
/// cross-resource rules linear. Built from the documents' shared engine values, so the
/// inventory costs one entry per resource — and only of what the policies of `reads` read:
/// a kind no policy reads is an empty object, the index is absent unless read (10,000
/// certificates no rule looks at are not put in the engine for each evaluation).
pub(crate) fn gitward_data<'c>(
    catalog: &'c Catalog,
    dns_name_index: impl FnOnce() -> &'c DnsNameIndex<'c>,
    reads: &Reads,
) -> RegoValue {
    let read = |kind: Kind| reads.everything || reads.kinds.contains(&kind);
    let mut inventory: BTreeMap<Kind, BTreeMap<RegoValue, RegoValue>> =
        Kind::ALL.iter().map(|&k| (k, BTreeMap::new())).collect();
    for loaded in catalog.resources().iter().filter(|l| read(l.kind())) {
        inventory
            .entry(loaded.kind())
            .or_default()
            .insert(RegoValue::from(loaded.name()), loaded.rego_value().clone());
    }
    let object = |entries: Vec<(RegoValue, RegoValue)>| {
        RegoValue::from(entries.into_iter().collect::<BTreeMap<_, _>>())
    };
    let inventory = object(
        inventory
            .into_iter()
            .map(|(kind, resources)| (RegoValue::from(kind.as_str()), RegoValue::from(resources)))
            .collect(),
    );
    let index = if read(Kind::Certificate) {
        object(vec![(
            RegoValue::from("dnsNames"),
            dns_name_index().whole(),
        )])
    } else {
        object(Vec::new())
    };
    object(vec![(
        RegoValue::from("gitward"),
        object(vec![
            (RegoValue::from("inventory"), inventory),
            (RegoValue::from("index"), index),
        ]),
    )])
}

/// The data documents of `policies/data/`, each under its path: `policies/data/teams/owners.yaml`
/// becomes `data.teams.owners`.
fn data_documents(catalog: &Catalog, diagnostics: &mut Vec<Diagnostic>) -> Value {
    let mut root = Map::new();
    for (path, parsed) in &catalog.data {
        let Content::Data(value) = &parsed.content else {
            continue;
        };
        let relative = path.strip_prefix(DATA_DIR).unwrap_or(path);
        let stem = relative.rsplit_once('.').map_or(relative, |(s, _)| s);
        let keys: Vec<&str> = stem.split('/').collect();
        if keys.first() == Some(&"gitward") {
            diagnostics.push(Diagnostic::error(
                path,
                Pos::START,
                "data.gitward is reserved for the inventory gitward provides",
            ));
            continue;
        }
        // A document where a policy's rules are would be read instead of them: `{"deny": []}`
        // at a package's path silences its `deny` rule.
        let overlapping = catalog.modules.iter().find_map(|(module, text)| {
            let package = package_of(text)?;
            let parts: Vec<&str> = package.split('.').collect();
            let shared = keys.iter().zip(&parts).take_while(|(a, b)| a == b).count();
            (shared == keys.len().min(parts.len())).then(|| (module.clone(), package))
        });
        if let Some((module, package)) = overlapping {
            diagnostics.push(Diagnostic::error(
                path,
                Pos::START,
                format!(
                    "data.{} overlaps package `{package}` of {module}: data may not stand where \
                     policy rules are",
                    keys.join(".")
                ),
            ));
            continue;
        }
        if insert_at(&mut root, &keys, value.clone()).is_err() {
            diagnostics.push(Diagnostic::error(
                path,
                Pos::START,
                format!("another data file already defines data.{}", keys.join(".")),
            ));
        }
    }
    Value::Object(root)
}

/// Puts `value` at a path of keys, creating objects on the way; fails when something is
/// already there.
fn insert_at(map: &mut Map<String, Value>, keys: &[&str], value: Value) -> Result<(), ()> {
    match keys {
        [] => Err(()),
        [last] if map.contains_key(*last) => Err(()),
        [last] => {
            map.insert((*last).to_owned(), value);
            Ok(())
        }
        [first, rest @ ..] => match map.entry((*first).to_owned()).or_insert_with(|| json!({})) {
            Value::Object(inner) => insert_at(inner, rest, value),
            _ => Err(()),
        },
    }
}

/// Deepest bracket nesting accepted in a module: regorus's parser takes time exponential in
/// nesting, so deeper modules are refused before they are parsed.
const MAX_REGO_NESTING: usize = 16;

/// Where a module's brackets nest deeper than [`MAX_REGO_NESTING`], outside strings and
/// comments.
fn too_deep(text: &str) -> Option<Pos> {
    let code = code_of(text);
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (line, content) in code.lines().enumerate() {
        for (col, c) in content.chars().enumerate() {
            match (quote, c) {
                (Some('"'), '\\') if !escaped => escaped = true,
                (Some(q), c) if c == q && !escaped => quote = None,
                (Some(_), _) => escaped = false,
                (None, '"' | '`') => quote = Some(c),
                (None, '(' | '[' | '{') => {
                    depth += 1;
                    if depth > MAX_REGO_NESTING {
                        return Some(Pos::new(line + 1, col + 1));
                    }
                }
                (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
                (None, _) => {}
            }
        }
    }
    None
}

/// A module whose brackets nest too deep to be parsed, as a problem at the place.
fn nesting_problem(path: &str, text: &str) -> Option<Diagnostic> {
    let pos = too_deep(text)?;
    Some(Diagnostic::error(
        path,
        pos,
        format!("Rego: nesting deeper than {MAX_REGO_NESTING} levels"),
    ))
}

/// Whether `name` is defined as a function in a module (`name(x) := ...`).
fn is_function(text: &str, name: &str) -> bool {
    code_of(text).lines().any(|line| {
        line.trim_start()
            .strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with('('))
    })
}

/// An engine with the limits gitward evaluates under, the given modules and the data
/// documents; the package of each module that compiled, and problems with the others.
/// `adding` is told the index of each module before it is added.
fn build_engine(
    modules: &[(&Arc<str>, &Arc<str>)],
    data: &Value,
    adding: &mut dyn FnMut(usize),
) -> (regorus::Engine, HashMap<Arc<str>, String>, Vec<Diagnostic>) {
    let mut engine = regorus::Engine::new();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: EVALUATION_LIMIT,
        check_interval: NonZeroU32::new(256).unwrap_or(NonZeroU32::MIN),
    });
    let mut packages = HashMap::new();
    let mut diagnostics = Vec::new();
    for (index, (path, text)) in modules.iter().enumerate() {
        adding(index);
        match engine.add_policy(path.to_string(), text.to_string()) {
            Ok(package) => {
                packages.insert((*path).clone(), package);
            }
            Err(error) => diagnostics.push(rego_diagnostic(path, &error)),
        }
    }
    if let Err(error) = engine.add_data(rego_value(data)) {
        diagnostics.push(Diagnostic::error(
            DATA_DIR,
            Pos::START,
            format!("policy data: {error}"),
        ));
    }
    (engine, packages, diagnostics)
}

type Module<'a> = (&'a Arc<str>, &'a Arc<str>);

/// What checking a commit's modules found: the modules that compile, and the problems.
#[derive(Clone, Serialize, Deserialize)]
struct Checked {
    modules: Vec<String>,
    tests: Vec<String>,
    diagnostics: Vec<Diagnostic>,
}

/// Where the child checking modules is: the index of a module while it is analysed or
/// added, or this while all are prepared together.
const PREPARING: u64 = u64::MAX;

/// Which modules compile, found out in a child process (see [`super::isolate`]): the
/// parent compiles only what a child compiled without crashing, the same way. A module
/// that kills the child is refused with why, and the others are checked again.
fn check_modules(modules: &[Module<'_>], tests: &[Module<'_>], data: &Value) -> Checked {
    // The same modules and data check the same way: a daemon reconciling commit after
    // commit with unchanged policies forks no child for them.
    static CHECKED: std::sync::Mutex<Vec<([u8; 32], Checked)>> = std::sync::Mutex::new(Vec::new());
    let digest = {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for (role, list) in [("module", modules), ("test", tests)] {
            for (path, text) in list {
                for part in [role, &***path, &***text] {
                    hash.update((part.len() as u64).to_le_bytes());
                    hash.update(part.as_bytes());
                }
            }
        }
        hash.update(data.to_string().as_bytes());
        <[u8; 32]>::from(hash.finalize())
    };
    let known = |cache: &Vec<([u8; 32], Checked)>| {
        cache
            .iter()
            .find(|(d, _)| *d == digest)
            .map(|(_, checked)| checked.clone())
    };
    if let Some(checked) = CHECKED.lock().ok().and_then(|cache| known(&cache)) {
        return checked;
    }
    let (checked, settled) = check_modules_isolated(modules, tests, data);
    // A child that died or ran out of time may fare otherwise on a less loaded host.
    if settled && let Ok(mut cache) = CHECKED.lock() {
        if cache.len() >= 8 {
            cache.remove(0);
        }
        cache.push((digest, checked.clone()));
    }
    checked
}

/// [`check_modules`] in a child; also whether every module was checked to its end (no child
/// died or ran out of time).
fn check_modules_isolated(
    modules: &[Module<'_>],
    tests: &[Module<'_>],
    data: &Value,
) -> (Checked, bool) {
    let deadline = Instant::now() + evaluation_budget();
    let mut refused = Vec::new();
    let mut remaining: Vec<Module<'_>> = modules.to_vec();
    loop {
        let run = isolated(deadline, |child| {
            let checked = check_in_child(&remaining, tests, data, &|step| child.step(step));
            child.send(&checked);
        });
        let failure = match run {
            Ok(Run {
                mut items,
                end: End::Finished,
                ..
            }) if !items.is_empty() => {
                let mut checked: Checked = items.remove(0);
                let settled = refused.is_empty();
                checked.diagnostics.extend(refused);
                return (checked, settled);
            }
            Ok(Run {
                end: End::TimedOut, ..
            }) => format!(
                "compiling the policies took longer than {:?}",
                evaluation_budget()
            ),
            Ok(Run {
                end: End::Died(why),
                step,
                ..
            }) => {
                let culprit = usize::try_from(step).ok().filter(|&i| i < remaining.len());
                match culprit {
                    Some(index) => {
                        let (path, _) = remaining.remove(index);
                        refused.push(Diagnostic::error(
                            path,
                            Pos::START,
                            format!("Rego: compiling this module crashed the policy engine: {why}"),
                        ));
                        continue;
                    }
                    None => format!("compiling the policies crashed the policy engine: {why}"),
                }
            }
            Ok(run) => format!("compiling the policies failed ({:?})", run.end),
            Err(error) => format!("cannot start compiling the policies: {error}"),
        };
        refused.push(Diagnostic::error(
            "policies",
            Pos::START,
            format!("Rego: {failure}"),
        ));
        let checked = Checked {
            modules: Vec::new(),
            tests: Vec::new(),
            diagnostics: refused,
        };
        return (checked, false);
    }
}

/// The child's side of [`check_modules`]: the checks on the parsed modules, then regorus's
/// own compilation, leaving out each module with a problem.
fn check_in_child(
    modules: &[Module<'_>],
    tests: &[Module<'_>],
    data: &Value,
    step: &dyn Fn(u64),
) -> Checked {
    let mut diagnostics = Vec::new();
    let mut rules = Vec::new();
    let mut candidates: Vec<(usize, Module<'_>)> = Vec::new();
    for (index, (path, text)) in modules.iter().enumerate() {
        step(index as u64);
        if let Some(problem) = nesting_problem(path, text) {
            diagnostics.push(problem);
            continue;
        }
        let (analysis, problems) = analyze(path, text);
        if problems.is_empty() {
            candidates.push((index, (*path, *text)));
        }
        diagnostics.extend(problems);
        if let Some(analysis) = analysis {
            rules.push((path.to_string(), analysis));
        }
    }
    let cyclic = recursion(&rules);
    candidates.retain(|(_, (path, _))| !cyclic.iter().any(|d| d.file == ***path));
    diagnostics.extend(cyclic);
    // regorus finds some errors (a variable used before it is bound) only when it prepares
    // all modules for evaluation: prepare now, and leave out each module that fails, so the
    // error is the module's, reported once, and the other modules still work.
    let (engine, compiled) = loop {
        let current: Vec<Module<'_>> = candidates.iter().map(|(_, m)| *m).collect();
        let (mut engine, compiled, problems) =
            build_engine(&current, data, &mut |i| step(candidates[i].0 as u64));
        step(PREPARING);
        let prepared = engine.eval_query("true".to_owned(), false);
        let Err(error) = prepared else {
            diagnostics.extend(problems);
            break (engine, compiled);
        };
        let (location, message) = rego_error(&error);
        let culprit = location
            .as_ref()
            .and_then(|(file, _)| candidates.iter().position(|(_, (p, _))| ***p == **file));
        let (file, pos) = location.unwrap_or_else(|| ("policies".to_owned(), Pos::START));
        diagnostics.push(Diagnostic::error(&file, pos, format!("Rego: {message}")));
        match culprit {
            Some(index) => {
                candidates.remove(index);
            }
            None => {
                diagnostics.extend(problems);
                candidates.clear();
                break (engine, HashMap::new());
            }
        }
    };
    // Test modules must compile too, though only `gitward test` evaluates them.
    let mut scratch = engine;
    let mut accepted_tests = Vec::new();
    for (path, text) in tests {
        if let Some(problem) = nesting_problem(path, text) {
            diagnostics.push(problem);
            continue;
        }
        let (_, problems) = analyze(path, text);
        if !problems.is_empty() {
            diagnostics.extend(problems);
            continue;
        }
        match scratch.add_policy(path.to_string(), text.to_string()) {
            Ok(_) => accepted_tests.push(path.to_string()),
            Err(error) => diagnostics.push(rego_diagnostic(path, &error)),
        }
    }
    Checked {
        modules: candidates
            .iter()
            .filter(|(_, (path, _))| compiled.contains_key(*path))
            .map(|(_, (path, _))| path.to_string())
            .collect(),
        tests: accepted_tests,
        diagnostics,
    }
}

/// Compiles what a child compiled without trouble (see [`check_modules`]), the same way and
/// on a stack as large; a problem here is one the child met and reported already.
fn compile_proven(
    modules: &[Module<'_>],
    data: &Value,
    diagnostics: &mut Vec<Diagnostic>,
) -> (regorus::Engine, HashMap<Arc<str>, String>) {
    let compiled = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn_scoped(scope, || {
                let (mut engine, compiled, problems) = build_engine(modules, data, &mut |_| {});
                let prepared = engine.eval_query("true".to_owned(), false);
                (engine, compiled, problems, prepared.err())
            })
            .map(|thread| thread.join())
    })
    .map_err(|e| e.to_string())
    .and_then(|joined| joined.map_err(|_| "the compiling thread panicked".to_owned()));
    match compiled {
        Ok((engine, compiled, problems, unprepared)) => {
            if let Some(error) = unprepared.filter(|_| problems.is_empty()) {
                diagnostics.push(Diagnostic::error(
                    "policies",
                    Pos::START,
                    format!("Rego: {error}"),
                ));
            }
            (engine, compiled)
        }
        Err(error) => {
            diagnostics.push(Diagnostic::error(
                "policies",
                Pos::START,
                format!("Rego: cannot compile the policies: {error}"),
            ));
            (regorus::Engine::new(), HashMap::new())
        }
    }
}

/// Compiles the policies of a catalog. Problems (Rego syntax errors, rules that do not
/// exist, conflicting data, builtins gitward does not allow, recursion, modules that crash
/// the engine) are returned as diagnostics; policies with problems are left unbound, and a
/// module with a problem does not keep the others from compiling.
pub fn compile(catalog: &Catalog) -> (PolicySet, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let data = data_documents(catalog, &mut diagnostics);
    let (tests, modules): (Vec<_>, Vec<_>) = catalog
        .modules
        .iter()
        .partition(|(path, _)| is_test_module(path));
    let checked = check_modules(&modules, &tests, &data);
    diagnostics.extend(checked.diagnostics);
    let modules: Vec<Module<'_>> = modules
        .into_iter()
        .filter(|(path, _)| checked.modules.iter().any(|m| **m == ***path))
        .collect();
    let test_modules: Vec<(Arc<str>, Arc<str>)> = tests
        .into_iter()
        .filter(|(path, _)| checked.tests.iter().any(|m| **m == ***path))
        .map(|(path, text)| (path.clone(), text.clone()))
        .collect();
    let (engine, compiled) = compile_proven(&modules, &data, &mut diagnostics);
    let module_code: Vec<(String, String)> = modules
        .iter()
        .filter_map(|(_, text)| Some((package_of(text)?, code_of(text))))
        .collect();
    let reads = package_reads(&module_code);
    let mut bindings = Vec::new();
    for loaded in catalog.of_kind(Kind::Policy) {
        let Spec::Policy(spec) = &loaded.resource.spec else {
            continue;
        };
        let module = spec.module.as_str();
        if is_test_module(module) {
            diagnostics.push(loaded.error(
                &["spec", "module"],
                format!("`{module}` is a test module; a policy's module holds its rules"),
            ));
            continue;
        }
        let Some(package) = compiled.get(module) else {
            continue;
        };
        let text = &catalog.modules[module];
        let rule = spec.rule.as_str();
        let Some(rest) = rule
            .strip_prefix(package.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
        else {
            diagnostics.push(loaded.error(
                &["spec", "rule"],
                format!("rule `{rule}` is outside {module}, whose package is `{package}`"),
            ));
            continue;
        };
        if !engine
            .has_declared_rule_rooted_at(module, rest)
            .unwrap_or(false)
        {
            diagnostics.push(loaded.error(
                &["spec", "rule"],
                format!("rule `{rule}` is not defined in {module}"),
            ));
            continue;
        }
        if is_function(text, rest.rsplit('.').next().unwrap_or(rest)) {
            diagnostics.push(loaded.error(
                &["spec", "rule"],
                format!("`{rule}` is a function; a policy's rule is a set of findings"),
            ));
            continue;
        }
        bindings.push(Binding {
            policy: loaded.clone(),
            rule: rule.to_owned(),
            // Every compiled module has a package; should the scan miss it, assume the worst.
            reads: package_of(text)
                .and_then(|p| reads.get(&p).cloned())
                .unwrap_or(Reads {
                    everything: true,
                    ..Reads::default()
                }),
        });
    }
    (
        PolicySet {
            engine,
            bindings,
            test_modules,
        },
        diagnostics,
    )
}

fn rego_diagnostic(path: &str, error: &dyn std::fmt::Display) -> Diagnostic {
    let (location, message) = rego_error(error);
    match location {
        Some((file, pos)) if file == path => {
            Diagnostic::error(path, pos, format!("Rego: {message}"))
        }
        _ => Diagnostic::error(path, Pos::START, format!("Rego: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_of_a_few_resources_is_their_part_of_the_whole() {
        let cert = |name: &str, dns: &str| {
            format!(
                "apiVersion: gitward/v1\nkind: Certificate\nmetadata: {{name: {name}}}\nspec:\n  issuerRef: root\n  dnsNames: [{dns}]\n  target: web\n"
            )
        };
        let texts = [
            ("a.yaml", cert("a", "a.example.com, shared.example.com")),
            ("b.yaml", cert("b", "b.example.com, shared.example.com")),
            ("c.yaml", cert("c", "c.example.com")),
            ("d.yaml", cert("d", "shared.example.com, d.example.com")),
        ];
        let files: Vec<(&str, &str)> = texts.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let catalog = Catalog::from_texts(&files);
        let whole = DnsNameIndex::of(&catalog);
        let few: Vec<&Loaded> = catalog
            .resources()
            .iter()
            .filter(|l| ["a", "c"].contains(&l.name()))
            .collect();
        let part = DnsNameIndex::claiming(&catalog, few.iter().copied());
        for loaded in &few {
            assert_eq!(part.own(loaded), whole.own(loaded), "{}", loaded.name());
        }
        assert_eq!(
            part.own(few[0]),
            rego_value(&serde_json::json!({
                "a.example.com": ["a"],
                "shared.example.com": ["a", "b", "d"],
            }))
        );
    }
}
