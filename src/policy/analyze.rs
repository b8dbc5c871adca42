//! Checks on the parsed policy before anything runs: builtins gitward does not allow
//! (network, environment, randomness), nesting too deep to evaluate, and rules that depend
//! on themselves. Each is a validation error at its line, so a policy that would fail open
//! (`http.send` answers "undefined" here) or crash is refused by `validate`, not found out
//! by the daemon.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regorus::unstable::{Expr, Literal, Module, Parser, Query, Rule, RuleHead, Source, Span};

use crate::diag::{Diagnostic, Pos};

/// Builtins a policy may not call, and why: gitward's verdict must be a function of the
/// commit, so nothing may reach the network or the host, or differ from run to run (the
/// clock aside: `time.now_ns` is how exception dates and validity are judged).
const DENIED_BUILTINS: &[(&str, &str)] = &[
    ("http.send", "it would reach the network"),
    ("net.lookup_ip_addr", "it would reach the network"),
    ("opa.runtime", "it reads the host's environment"),
    ("rand.intn", "its result differs from run to run"),
    ("uuid.rfc4122", "its result differs from run to run"),
    ("test.sleep", "it stalls evaluation"),
];

/// Deepest nesting of expressions, queries and comprehensions within one rule.
pub const MAX_EXPRESSION_DEPTH: usize = 128;

/// A rule of a package: the package path and the first part of the rule's name.
type RuleId = (String, String);

/// What one module says about the rules it defines and what they refer to.
#[derive(Debug, Default)]
pub struct ModuleRules {
    pub package: String,
    /// Each rule name with where it is first defined, and the rules it refers to.
    rules: BTreeMap<String, (Pos, BTreeSet<RuleId>)>,
}

/// Parses `text` and checks it; the problems, and its rules for [`recursion`].
pub fn analyze(path: &str, text: &str) -> (Option<ModuleRules>, Vec<Diagnostic>) {
    let module = Source::from_contents(path.to_owned(), text.to_owned())
        .and_then(|source| Parser::new(&source)?.parse());
    let module = match module {
        Ok(module) => module,
        // regorus reports syntax errors itself when the module is added, at their line.
        Err(_) => return (None, Vec::new()),
    };
    let mut walk = Walk {
        path,
        imports: imports(&module),
        package: format!("data.{}", path_of(&module.package.refr).unwrap_or_default()),
        locals: BTreeSet::new(),
        refs: BTreeSet::new(),
        diagnostics: Vec::new(),
        rule_pos: Pos::START,
        too_deep: false,
    };
    let mut rules: BTreeMap<String, (Pos, BTreeSet<RuleId>)> = BTreeMap::new();
    for rule in &module.policy {
        walk.locals.clear();
        walk.refs.clear();
        walk.rule_pos = pos(rule.span());
        walk.rule(rule);
        let name = rule_name(rule).unwrap_or_default();
        let refs = std::mem::take(&mut walk.refs);
        let entry = rules
            .entry(name)
            .or_insert_with(|| (pos(rule.span()), BTreeSet::new()));
        entry.1.extend(refs);
    }
    let package = walk.package.clone();
    // Plain names refer to the module's own rules, unless bound locally (checked per rule).
    let names: BTreeSet<String> = rules.keys().cloned().collect();
    for (_, refs) in rules.values_mut() {
        let resolved: BTreeSet<RuleId> = std::mem::take(refs)
            .into_iter()
            .filter_map(|(package_part, name)| {
                if package_part.is_empty() {
                    names
                        .contains(&name)
                        .then(|| (package.clone(), name.clone()))
                } else {
                    Some((package_part, name))
                }
            })
            .collect();
        *refs = resolved;
    }
    (Some(ModuleRules { package, rules }), walk.diagnostics)
}

/// Rules that depend on themselves, directly or through others, across all modules: one
/// error per cycle, at the first rule of it.
pub fn recursion(modules: &[(String, ModuleRules)]) -> Vec<Diagnostic> {
    let mut graph: HashMap<RuleId, (&str, Pos, Vec<RuleId>)> = HashMap::new();
    let packages: BTreeSet<&str> = modules.iter().map(|(_, m)| m.package.as_str()).collect();
    for (path, module) in modules {
        for (name, (pos, refs)) in &module.rules {
            let edges: Vec<RuleId> = refs
                .iter()
                .filter_map(|(package, rest)| resolve(&packages, package, rest))
                .collect();
            graph
                .entry((module.package.clone(), name.clone()))
                .or_insert((path.as_str(), *pos, Vec::new()))
                .2
                .extend(edges);
        }
    }
    let mut nodes: Vec<&RuleId> = graph.keys().collect();
    nodes.sort();
    let mut state: HashMap<&RuleId, Visit> = HashMap::new();
    let mut diagnostics = Vec::new();
    for start in nodes {
        if state.contains_key(start) {
            continue;
        }
        // Depth-first with an explicit stack: the graph comes from the repository.
        let mut stack: Vec<(&RuleId, usize)> = vec![(start, 0)];
        state.insert(start, Visit::OnPath);
        while let Some((node, next)) = stack.pop() {
            let edges = graph.get(node).map_or(&[][..], |n| &n.2[..]);
            match edges.get(next) {
                None => {
                    state.insert(node, Visit::Done);
                }
                Some(target) => {
                    stack.push((node, next + 1));
                    let Some((target, _)) = graph.get_key_value(target) else {
                        continue;
                    };
                    match state.get(target) {
                        None => {
                            state.insert(target, Visit::OnPath);
                            stack.push((target, 0));
                        }
                        Some(Visit::OnPath) => {
                            let from = stack.iter().position(|(n, _)| *n == target).unwrap_or(0);
                            let cycle: Vec<&str> = stack[from..]
                                .iter()
                                .map(|(n, _)| n.1.as_str())
                                .chain([target.1.as_str()])
                                .collect();
                            let (path, pos, _) = &graph[target];
                            let message = if cycle.len() == 2 {
                                format!(
                                    "Rego: rule `{}` refers to itself; recursion is not allowed",
                                    target.1
                                )
                            } else {
                                format!(
                                    "Rego: rules refer to each other in a cycle ({}); recursion \
                                     is not allowed",
                                    cycle.join(" → ")
                                )
                            };
                            diagnostics.push(Diagnostic::error(path, *pos, message));
                        }
                        Some(Visit::Done) => {}
                    }
                }
            }
        }
    }
    diagnostics.sort();
    diagnostics.dedup();
    diagnostics
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    OnPath,
    Done,
}

/// The rule a reference `data.<package>.<rest>` names, if a package of the commit holds it.
fn resolve(packages: &BTreeSet<&str>, package: &str, rest: &str) -> Option<RuleId> {
    if packages.contains(package) {
        return Some((package.to_owned(), rest.to_owned()));
    }
    // `data.a.b.c`, read as a path: the longest package prefix, then the rule's name.
    let full = format!("{package}.{rest}");
    let mut parts: Vec<&str> = full.split('.').collect();
    while parts.len() > 1 {
        let name = parts.pop()?;
        let candidate = parts.join(".");
        if packages.contains(candidate.as_str()) {
            return Some((candidate, name.to_owned()));
        }
    }
    None
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.line,
        col: span.col,
    }
}

/// `a.b.c` of a reference made of names and constant fields; `None` for anything computed.
fn path_of(expr: &Expr) -> Option<String> {
    let mut parts = Vec::new();
    let mut at = expr;
    loop {
        match at {
            Expr::Var { span, .. } => {
                parts.push(span.text().to_owned());
                break;
            }
            Expr::RefDot { refr, field, .. } => {
                parts.push(field.0.text().to_owned());
                at = refr;
            }
            Expr::RefBrack { refr, index, .. } => match &**index {
                Expr::String { value, .. } => {
                    parts.push(value.as_string().ok()?.to_string());
                    at = refr;
                }
                _ => return None,
            },
            _ => return None,
        }
        if parts.len() > 64 {
            return None;
        }
    }
    parts.reverse();
    Some(parts.join("."))
}

/// The name a reference starts from (`http` of `http.send`).
fn base_of(expr: &Expr) -> &Expr {
    let mut at = expr;
    while let Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } = at {
        at = refr;
    }
    at
}

/// The name a rule defines: the first part of its head.
fn rule_name(rule: &Rule) -> Option<String> {
    let head = match rule {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. }
            | RuleHead::Set { refr, .. }
            | RuleHead::Func { refr, .. } => refr,
        },
        Rule::Default { refr, .. } => refr,
    };
    let path = path_of(head)?;
    Some(path.split('.').next().unwrap_or_default().to_owned())
}

/// Import aliases: `import data.lib.util` makes `util` stand for `data.lib.util`.
fn imports(module: &Module) -> BTreeMap<String, String> {
    module
        .imports
        .iter()
        .filter_map(|import| {
            let path = path_of(&import.refr)?;
            let alias = match &import.r#as {
                Some(span) => span.text().to_owned(),
                None => path.rsplit('.').next()?.to_owned(),
            };
            Some((alias, path))
        })
        .collect()
}

struct Walk<'a> {
    path: &'a str,
    imports: BTreeMap<String, String>,
    package: String,
    /// Names bound inside the rule being walked (arguments, `:=`, `some`, `every`).
    locals: BTreeSet<String>,
    /// (package or "" for the module's own, rule) the rule refers to.
    refs: BTreeSet<(String, String)>,
    diagnostics: Vec<Diagnostic>,
    /// Where the rule being walked starts: deep nesting is reported there.
    rule_pos: Pos,
    /// Reported once per module: one deep expression makes its neighbours deep too.
    too_deep: bool,
}

impl Walk<'_> {
    fn rule(&mut self, rule: &Rule) {
        match rule {
            Rule::Spec { head, bodies, .. } => {
                match head {
                    RuleHead::Compr { refr, assign, .. } => {
                        self.reference_parts(refr, 0);
                        if let Some(assign) = assign {
                            self.expr(&assign.value, 0);
                        }
                    }
                    RuleHead::Set { refr, key, .. } => {
                        self.reference_parts(refr, 0);
                        if let Some(key) = key {
                            self.expr(key, 0);
                        }
                    }
                    RuleHead::Func {
                        refr, args, assign, ..
                    } => {
                        for arg in args {
                            self.bind(arg);
                        }
                        self.reference_parts(refr, 0);
                        for arg in args {
                            self.expr(arg, 0);
                        }
                        if let Some(assign) = assign {
                            self.expr(&assign.value, 0);
                        }
                    }
                }
                for body in bodies {
                    if let Some(assign) = &body.assign {
                        self.expr(&assign.value, 0);
                    }
                    self.query(&body.query, 0);
                }
            }
            Rule::Default { args, value, .. } => {
                for arg in args {
                    self.expr(arg, 0);
                }
                self.expr(value, 0);
            }
        }
        // A name bound in the rule is a variable there, not a reference to a rule.
        let locals = std::mem::take(&mut self.locals);
        self.refs
            .retain(|(package, name)| !package.is_empty() || !locals.contains(name));
    }

    /// Indexes inside a rule head (`a[x].b`): only what is computed in brackets.
    fn reference_parts(&mut self, expr: &Expr, depth: usize) {
        let mut at = expr;
        loop {
            match at {
                Expr::RefDot { refr, .. } => at = refr,
                Expr::RefBrack { refr, index, .. } => {
                    self.expr(index, depth + 1);
                    at = refr;
                }
                _ => return,
            }
        }
    }

    /// Names a pattern binds (`x`, `[x, y]`, `{"k": x}`).
    fn bind(&mut self, pattern: &Expr) {
        match pattern {
            Expr::Var { span, .. } => {
                self.locals.insert(span.text().to_owned());
            }
            Expr::Array { items, .. } => items.iter().for_each(|i| self.bind(i)),
            Expr::Object { fields, .. } => fields.iter().for_each(|(_, _, v)| self.bind(v)),
            _ => {}
        }
    }

    fn deeper(&mut self, depth: usize) -> bool {
        if depth <= MAX_EXPRESSION_DEPTH {
            return false;
        }
        if !self.too_deep {
            self.too_deep = true;
            self.diagnostics.push(Diagnostic::error(
                self.path,
                self.rule_pos,
                format!(
                    "Rego: expression nested deeper than {MAX_EXPRESSION_DEPTH} levels; split \
                     it into rules"
                ),
            ));
        }
        true
    }

    fn query(&mut self, query: &Query, depth: usize) {
        if self.deeper(depth) {
            return;
        }
        for stmt in &query.stmts {
            for with in &stmt.with_mods {
                self.expr(&with.r#as, depth + 1);
            }
            match &stmt.literal {
                Literal::SomeVars { vars, .. } => {
                    for var in vars {
                        self.locals.insert(var.text().to_owned());
                    }
                }
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => {
                    if let Some(key) = key {
                        self.bind(key);
                    }
                    self.bind(value);
                    self.expr(collection, depth + 1);
                }
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => {
                    self.expr(expr, depth + 1)
                }
                Literal::Every {
                    key,
                    value,
                    domain,
                    query,
                    ..
                } => {
                    if let Some(key) = key {
                        self.locals.insert(key.text().to_owned());
                    }
                    self.locals.insert(value.text().to_owned());
                    self.expr(domain, depth + 1);
                    self.query(query, depth + 1);
                }
            }
        }
    }

    fn expr(&mut self, expr: &Expr, depth: usize) {
        if self.deeper(depth) {
            return;
        }
        let next = depth + 1;
        match expr {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. } => {}
            Expr::Var { span, .. } => self.name(span.text(), ""),
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                items.iter().for_each(|i| self.expr(i, next))
            }
            Expr::Object { fields, .. } => {
                for (_, key, value) in fields {
                    self.expr(key, next);
                    self.expr(value, next);
                }
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.query(query, next);
                self.expr(term, next);
            }
            Expr::ObjectCompr {
                key, value, query, ..
            } => {
                self.query(query, next);
                self.expr(key, next);
                self.expr(value, next);
            }
            Expr::Call { fcn, params, .. } => {
                self.call(fcn);
                params.iter().for_each(|p| self.expr(p, next));
            }
            Expr::UnaryExpr { expr, .. } => self.expr(expr, next),
            Expr::RefDot { .. } | Expr::RefBrack { .. } => self.reference(expr, next),
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. } => {
                self.expr(lhs, next);
                self.expr(rhs, next);
            }
            Expr::AssignExpr { op, lhs, rhs, .. } => {
                if matches!(op, regorus::unstable::AssignOp::ColEq) {
                    self.bind(lhs);
                }
                self.expr(lhs, next);
                self.expr(rhs, next);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(key) = key {
                    self.expr(key, next);
                }
                self.expr(value, next);
                self.expr(collection, next);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// A reference `a.b[c]`: what it names, and the computed indexes in it.
    fn reference(&mut self, expr: &Expr, depth: usize) {
        let mut at = expr;
        let mut steps = 0;
        loop {
            steps += 1;
            if self.deeper(depth + steps / 8) {
                return;
            }
            match at {
                Expr::RefDot { refr, .. } => at = refr,
                Expr::RefBrack { refr, index, .. } => {
                    self.expr(index, depth + 1);
                    at = refr;
                }
                other => {
                    self.expr(other, depth + 1);
                    break;
                }
            }
        }
        if let Some(path) = path_of(expr) {
            let (first, rest) = path.split_once('.').unwrap_or((&path, ""));
            self.name(first, rest);
        }
    }

    /// A use of `first` (followed by `.rest`): a rule of this package, another package's
    /// rule through `data` or an import.
    fn name(&mut self, first: &str, rest: &str) {
        let full = match self.imports.get(first) {
            Some(target) if rest.is_empty() => target.clone(),
            Some(target) => format!("{target}.{rest}"),
            None if first == "data" => format!("data.{rest}"),
            None => {
                let name = first.to_owned();
                self.refs.insert((String::new(), name));
                return;
            }
        };
        if let Some(path) = full.strip_prefix("data.") {
            let (package, rule) = path.rsplit_once('.').unwrap_or(("", path));
            if !package.is_empty() {
                self.refs
                    .insert((format!("data.{package}"), rule.to_owned()));
            }
            // `data.pkg.rule.field`: the rule is a shorter prefix; `resolve` tries each.
        }
    }

    fn call(&mut self, fcn: &Expr) {
        let Some(path) = path_of(fcn) else { return };
        let (first, rest) = path.split_once('.').unwrap_or((&path, ""));
        // A function of the module or another package; a builtin's name resolves to none.
        self.name(first, rest);
        if first == "data" || self.imports.contains_key(first) {
            return;
        }
        if let Some((name, why)) = DENIED_BUILTINS.iter().find(|(name, _)| *name == path) {
            self.diagnostics.push(Diagnostic::error(
                self.path,
                pos(base_of(fcn).span()),
                format!("Rego: `{name}` is not allowed in gitward policies: {why}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(modules: &[(&str, &str)]) -> Vec<String> {
        let mut rules = Vec::new();
        let mut out = Vec::new();
        for (path, text) in modules {
            let (module, diagnostics) = analyze(path, text);
            out.extend(diagnostics);
            if let Some(module) = module {
                rules.push((path.to_string(), module));
            }
        }
        out.extend(recursion(&rules));
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn denied_builtins_are_errors_at_their_call() {
        let text = "package p\nimport rego.v1\nr := x if {\n  x := http.send({\"method\": \"get\", \"url\": \"https://x\"})\n}\ns := rand.intn(\"a\", 3)\nt := time.now_ns()\n";
        assert_eq!(
            problems(&[("p.rego", text)]),
            [
                "p.rego:4:8: Rego: `http.send` is not allowed in gitward policies: it would reach the network",
                "p.rego:6:6: Rego: `rand.intn` is not allowed in gitward policies: its result differs from run to run",
            ]
        );
    }

    #[test]
    fn recursion_and_cycles_are_errors_and_locals_are_not_references() {
        let recursive = "package p\nimport rego.v1\nf(x) := y if { y := f(x + 1) }\n";
        assert_eq!(
            problems(&[("p.rego", recursive)]),
            ["p.rego:3:1: Rego: rule `f` refers to itself; recursion is not allowed"]
        );
        let across = "package a\nimport rego.v1\nimport data.b\nx := b.y\n";
        let back = "package b\nimport rego.v1\ny := data.a.x\n";
        let found = problems(&[("a.rego", across), ("b.rego", back)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("cycle (x → y → x)"), "{found:?}");
        // `deny` binds `msg` and `names` locally: no reference to the rules of those names.
        let fine = "package p\nimport rego.v1\nmsg := \"m\"\nnames := {\"a\"}\ndeny contains msg if { some names in input.x; msg := sprintf(\"%v\", [names]) }\nf(names) := count(names)\n";
        assert_eq!(problems(&[("p.rego", fine)]), Vec::<String>::new());
    }

    #[test]
    fn deep_expressions_are_refused_at_their_line() {
        let terms = vec!["1"; 12_000];
        let chain: Vec<String> = terms.chunks(100).map(|c| c.join("+")).collect();
        let text = format!("package p\nimport rego.v1\nx := {}\n", chain.join("+\n"));
        let found = problems(&[("p.rego", &text)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("p.rego:3:1: Rego: expression nested deeper than 128"),
            "{found:?}"
        );
    }
}
