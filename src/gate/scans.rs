//! Scan requirements: SARIF reports committed in the repository, judged by level and
//! security severity.
//!
//! [`collect`] reads the reports a requirement names from a commit, within bounds;
//! [`evaluate`] judges them. A report is untrusted input: it is read in two streaming passes
//! (the tools and their rules first, then the results one at a time, since JSON does not
//! promise that `tool` comes before `results`), so memory stays within a small multiple of
//! the rules declared whatever the number of results. Anything that cannot be judged — a
//! pattern that finds nothing, a file that is not SARIF, a bound exceeded — is a problem that
//! fails the requirement: a scan requirement never passes for want of evidence.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use git2::{ObjectType, Oid, Repository, Tree};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use schemars::JsonSchema;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::diag::{MAX_MESSAGE_CHARS, Pos, bounded};
use crate::model::{SarifLevel, ScanRequirement, SecurityBand};

/// Most files a requirement reads from one commit (symbolic links and submodules that match
/// count too, as each is reported).
pub const MAX_FILES: usize = 256;
/// Largest report read.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Largest size of all the reports of one commit together.
pub const MAX_TOTAL_BYTES: u64 = 64 << 20;
/// Most failing results listed in an outcome; the rest are counted.
pub const MAX_LISTED_HITS: usize = 100;
/// Most distinct base results remembered for `newOnly`; beyond, head results count as new.
pub const MAX_BASE_FINGERPRINTS: usize = 1_000_000;
/// Most runs, tool components and rules one report may declare together: they are held in
/// memory while its results are read.
pub const MAX_DESCRIPTORS: usize = 100_000;
/// Most `partialFingerprints` entries one result may carry.
const MAX_PARTIAL_FINGERPRINTS: usize = 100;
/// The only SARIF version read: the meaning of the fields judged here is that of 2.1.0.
const SARIF_VERSION: &str = "2.1.0";

/// A report file read from a commit: its path relative to the configuration root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// The reports read from one commit, and why the set may be incomplete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// In path order.
    pub files: Vec<ScanFile>,
    pub problems: Vec<String>,
}

/// The outcome of one scan requirement, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanOutcome {
    pub passed: bool,
    /// Files read, in path order.
    pub files: Vec<String>,
    /// Results counted (after suppressions and, with newOnly, the base's fingerprints).
    pub counted: usize,
    /// Results that fail the requirement, at most [`MAX_LISTED_HITS`] listed
    /// (`failing_total` has the count).
    pub failing: Vec<ScanHit>,
    pub failing_total: usize,
    /// Why it fails besides results: a pattern that matches no file, a file that is not
    /// SARIF, a bound exceeded.
    pub problems: Vec<String>,
    /// What could not be read of the base's reports, with newOnly. These do not fail the
    /// requirement: a result the base cannot vouch for counts as new.
    pub base_problems: Vec<String>,
}

/// A result that fails a scan requirement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanHit {
    /// The report it is in.
    pub file: String,
    pub rule_id: String,
    pub level: SarifLevel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_severity: Option<f64>,
    /// Cut to [`MAX_MESSAGE_CHARS`] characters.
    pub message: String,
    /// `artifact-uri:line` of its first location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// What identifies it across commits (see [`evaluate`]), as hex.
    pub fingerprint: String,
}

/// The bounds [`collect`] reads within.
struct Limits {
    files: usize,
    file_bytes: u64,
    total_bytes: u64,
}

const LIMITS: Limits = Limits {
    files: MAX_FILES,
    file_bytes: MAX_FILE_BYTES,
    total_bytes: MAX_TOTAL_BYTES,
};

/// Reads the files of `tree` below the directory `root` ("" = repository root; otherwise
/// "a/b") whose path relative to `root` matches any of `patterns`. Bounded: at most
/// [`MAX_FILES`] files, [`MAX_FILE_BYTES`] each, [`MAX_TOTAL_BYTES`] in all — beyond a bound
/// it returns what it read plus a problem, which fails the requirement (never a silent pass).
/// Blob sizes come from the object header before reading. Symbolic links and submodules are
/// not followed: one that matches is a problem.
pub fn collect(repo: &Repository, tree: Oid, root: &str, patterns: &[String]) -> Collected {
    collect_within(repo, tree, root, patterns, &LIMITS)
}

fn collect_within(
    repo: &Repository,
    tree: Oid,
    root: &str,
    patterns: &[String],
    limits: &Limits,
) -> Collected {
    let mut collected = Collected::default();
    let globs = Patterns::new(patterns, &mut collected.problems);
    let mut listing = Listing {
        files: Vec::new(),
        pattern_matched: vec![false; globs.patterns.len()],
        problems: Vec::new(),
        complete: true,
    };
    match root_tree(repo, tree, root) {
        Ok(Some(tree)) => list_matches(repo, &tree, &globs, limits.files, &mut listing),
        // No such directory: nothing matches.
        Ok(None) => {}
        Err(e) => {
            collected.problems.push(format!(
                "reading the tree of the configuration: {}",
                e.message()
            ));
            return collected;
        }
    }
    collected.problems.extend(listing.problems);
    if listing.complete {
        for (pattern, matched) in globs.patterns.iter().zip(&listing.pattern_matched) {
            if !matched {
                collected
                    .problems
                    .push(format!("`{}` matches no file", quoted(pattern)));
            }
        }
    }
    read_blobs(repo, listing.files, limits, &mut collected);
    collected.files.sort_by(|a, b| a.path.cmp(&b.path));
    collected
}

/// The requirement's patterns, compiled.
struct Patterns<'p> {
    /// The valid patterns, in the order of `set`.
    patterns: Vec<&'p str>,
    set: GlobSet,
    /// The directory each valid pattern starts in (`reports/` for `reports/**/*.sarif`, empty
    /// when it starts with a wildcard): only directories on the way to one, or in one, are
    /// walked, so a report pattern does not cost a walk of ten thousand certificates.
    dirs: Vec<String>,
}

impl Patterns<'_> {
    /// Whether a file under `dir` (with its trailing `/`) may match a pattern.
    fn may_match_under(&self, dir: &str) -> bool {
        self.dirs
            .iter()
            .any(|start| dir.starts_with(start.as_str()) || start.starts_with(dir))
    }
}

/// The literal directories a glob pattern starts with, up to its first wildcard.
fn literal_dir(pattern: &str) -> String {
    let literal = pattern
        .find(['*', '?', '[', '{', '\\'])
        .map_or(pattern, |at| &pattern[..at]);
    literal
        .rfind('/')
        .map_or(String::new(), |at| literal[..=at].to_owned())
}

impl<'p> Patterns<'p> {
    /// Compiles `patterns`, reporting each invalid one (and an empty list, which would
    /// otherwise pass for want of anything to read).
    fn new(patterns: &'p [String], problems: &mut Vec<String>) -> Patterns<'p> {
        if patterns.is_empty() {
            problems.push("no report pattern is given".to_owned());
        }
        let mut builder = GlobSetBuilder::new();
        let mut valid = Vec::new();
        for pattern in patterns {
            // `*` stays within a directory; `**` crosses directories.
            match GlobBuilder::new(pattern).literal_separator(true).build() {
                Ok(glob) => {
                    builder.add(glob);
                    valid.push(pattern.as_str());
                }
                Err(e) => problems.push(format!(
                    "`{}` is not a valid pattern: {}",
                    quoted(pattern),
                    e.kind()
                )),
            }
        }
        let set = builder.build().unwrap_or_else(|e| {
            problems.push(format!("the report patterns cannot be compiled: {e}"));
            valid.clear();
            GlobSet::empty()
        });
        Patterns {
            dirs: valid.iter().map(|p| literal_dir(p)).collect(),
            patterns: valid,
            set,
        }
    }
}

/// The tree at `root` in `tree`, or `None` when the commit has no such directory.
fn root_tree<'r>(
    repo: &'r Repository,
    tree: Oid,
    root: &str,
) -> Result<Option<Tree<'r>>, git2::Error> {
    let tree = repo.find_tree(tree)?;
    if root.is_empty() {
        return Ok(Some(tree));
    }
    let entry = match tree.get_path(Path::new(root)) {
        Ok(entry) => entry,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if entry.kind() != Some(ObjectType::Tree) {
        return Ok(None);
    }
    repo.find_tree(entry.id()).map(Some)
}

/// The entries of a tree that match the patterns.
struct Listing {
    /// Regular files: path and blob, in path order.
    files: Vec<(String, Oid)>,
    /// Per pattern, whether any entry matched it.
    pattern_matched: Vec<bool>,
    problems: Vec<String>,
    /// Whether every entry was looked at (no bound stopped the walk).
    complete: bool,
}

/// Walks `tree` for entries that match, at most `max` of them, into `listing`. The walk keeps
/// its own stack rather than recursing, as trees may nest deeply.
fn list_matches(
    repo: &Repository,
    tree: &Tree<'_>,
    globs: &Patterns<'_>,
    max: usize,
    listing: &mut Listing,
) {
    let mut matched = 0;
    let mut hits = Vec::new();
    // Directories still to walk: their path with a trailing `/`, whether that path is
    // valid UTF-8, and their tree.
    let mut pending = vec![(String::new(), true, tree.clone())];
    while let Some((dir, dir_is_utf8, tree)) = pending.pop() {
        for entry in tree.iter() {
            let is_utf8 = dir_is_utf8 && std::str::from_utf8(entry.name_bytes()).is_ok();
            let path = format!("{dir}{}", String::from_utf8_lossy(entry.name_bytes()));
            if entry.kind() == Some(ObjectType::Tree) {
                if !globs.may_match_under(&format!("{path}/")) {
                    continue;
                }
                match repo.find_tree(entry.id()) {
                    Ok(subtree) => pending.push((format!("{path}/"), is_utf8, subtree)),
                    Err(e) => listing
                        .problems
                        .push(format!("{path}: reading the directory: {}", e.message())),
                }
                continue;
            }
            globs.set.matches_into(&path, &mut hits);
            if hits.is_empty() {
                continue;
            }
            if matched == max {
                listing.problems.push(format!(
                    "more than {max} files match the report patterns; only {max} are read"
                ));
                listing.complete = false;
                break;
            }
            matched += 1;
            for &hit in &hits {
                listing.pattern_matched[hit] = true;
            }
            match entry.filemode() {
                _ if !is_utf8 => listing
                    .problems
                    .push(format!("{path}: the name is not valid UTF-8; not read")),
                0o120000 => listing.problems.push(format!(
                    "{path} is a symbolic link; reports are not read through links"
                )),
                0o160000 => listing.problems.push(format!(
                    "{path} is a submodule; reports are not read from submodules"
                )),
                _ => listing.files.push((path, entry.id())),
            }
        }
        if !listing.complete {
            break;
        }
    }
    listing.files.sort();
}

/// Reads the listed blobs within the size bounds, each size taken from the object header
/// before the blob is read.
fn read_blobs(
    repo: &Repository,
    files: Vec<(String, Oid)>,
    limits: &Limits,
    collected: &mut Collected,
) {
    let odb = match repo.odb() {
        Ok(odb) => odb,
        Err(e) => {
            collected
                .problems
                .push(format!("opening the object database: {}", e.message()));
            return;
        }
    };
    let mut total: u64 = 0;
    for (path, oid) in files {
        let size = match odb.read_header(oid) {
            Ok((size, ObjectType::Blob)) => size as u64,
            Ok((_, kind)) => {
                collected
                    .problems
                    .push(format!("{path}: a {kind} where a file was expected"));
                continue;
            }
            Err(e) => {
                collected.problems.push(format!("{path}: {}", e.message()));
                continue;
            }
        };
        if size > limits.file_bytes {
            collected.problems.push(format!(
                "{path} is {size} bytes; a report may be at most {} bytes",
                limits.file_bytes
            ));
            continue;
        }
        if total + size > limits.total_bytes {
            collected.problems.push(format!(
                "the reports are more than {} bytes together; {path} and the reports after it are not read",
                limits.total_bytes
            ));
            return;
        }
        match odb.read(oid) {
            Ok(object) => {
                total += size;
                collected.files.push(ScanFile {
                    path,
                    bytes: object.data().to_vec(),
                });
            }
            Err(e) => collected.problems.push(format!("{path}: {}", e.message())),
        }
    }
}

/// Judges the head's reports against `req`.
///
/// A result counts unless it is suppressed (a non-empty `suppressions` whose statuses are all
/// `accepted` or absent) or its `baselineState` is `absent` (it is listed only to say it is
/// gone). With `new_only`, a result counts only when the base's reports do not hold it: each
/// base result vouches for one head result of the same fingerprint, so a second copy of a
/// known result is new. The fingerprint is the result's `partialFingerprints` (all entries)
/// when it has any, else its rule id, artifact URI and whitespace-normalised snippet — never a
/// line number, so a result that moved is not new.
///
/// A counted result fails when its level is above `max_level`, or when `max_severity` is set
/// and its `security-severity` is in that band or above. Problems of the head (from
/// [`collect`] or met reading a report) fail the requirement; those of the base only make
/// more results count as new, and are listed apart.
pub fn evaluate(req: &ScanRequirement, head: &Collected, base: &Collected) -> ScanOutcome {
    let mut outcome = ScanOutcome {
        passed: false,
        files: Vec::new(),
        counted: 0,
        failing: Vec::new(),
        failing_total: 0,
        problems: head.problems.clone(),
        base_problems: Vec::new(),
    };
    let mut known = if req.new_only {
        KnownResults::of(base, &mut outcome.base_problems)
    } else {
        KnownResults::default()
    };
    for file in in_path_order(&head.files) {
        outcome.files.push(file.path.clone());
        let read = read_report(&file.bytes, |finding| {
            if !finding.counts() || (req.new_only && known.vouch_for(finding.fingerprint())) {
                return;
            }
            outcome.counted += 1;
            if fails(req, finding.level(), finding.security_severity()) {
                outcome.failing_total += 1;
                if outcome.failing.len() < MAX_LISTED_HITS {
                    outcome.failing.push(finding.hit(&file.path));
                }
            }
        });
        if let Err(problem) = read {
            outcome.problems.push(problem.in_file(&file.path));
        }
    }
    outcome.passed = outcome.problems.is_empty() && outcome.failing_total == 0;
    outcome
}

fn in_path_order(files: &[ScanFile]) -> Vec<&ScanFile> {
    let mut sorted: Vec<&ScanFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    sorted
}

/// Whether a counted result fails the requirement.
fn fails(req: &ScanRequirement, level: SarifLevel, security_severity: Option<f64>) -> bool {
    // `SarifLevel` orders none < note < warning < error.
    level > req.max_level
        || req
            .max_severity
            .zip(security_severity)
            .is_some_and(|(band, score)| in_band_or_above(score, band))
}

/// Whether a `security-severity` score is in `band` or above. Scores are CVSS-like, given
/// with one decimal; `low` takes in every positive score, so a score between 0 and 0.1 is not
/// let through.
fn in_band_or_above(score: f64, band: SecurityBand) -> bool {
    match band {
        SecurityBand::Low => score > 0.0,
        _ => score >= band.lowest_score(),
    }
}

/// A result's identity across commits.
type Fingerprint = [u8; 16];

/// The fingerprints of the base's results, each with how many results carry it.
#[derive(Default)]
struct KnownResults(HashMap<Fingerprint, u32>);

impl KnownResults {
    fn of(base: &Collected, problems: &mut Vec<String>) -> KnownResults {
        let mut known = KnownResults::default();
        problems.extend(base.problems.iter().cloned());
        let mut full = false;
        for file in in_path_order(&base.files) {
            let read = read_report(&file.bytes, |finding| {
                if !finding.counts() {
                    return;
                }
                let fingerprint = finding.fingerprint();
                if let Some(count) = known.0.get_mut(&fingerprint) {
                    *count = count.saturating_add(1);
                } else if known.0.len() < MAX_BASE_FINGERPRINTS {
                    known.0.insert(fingerprint, 1);
                } else {
                    full = true;
                }
            });
            if let Err(problem) = read {
                problems.push(problem.in_file(&file.path));
            }
        }
        if full {
            problems.push(format!(
                "the base's reports hold more than {MAX_BASE_FINGERPRINTS} distinct results; the others count as new"
            ));
        }
        known
    }

    /// Whether a base result vouches for a head result with `fingerprint` (using it up).
    fn vouch_for(&mut self, fingerprint: Fingerprint) -> bool {
        match self.0.get_mut(&fingerprint) {
            Some(count) if *count > 0 => {
                *count -= 1;
                true
            }
            _ => false,
        }
    }
}

/// Why a report cannot be judged, where it is known.
struct ReportProblem {
    /// 1-based line and column.
    position: Option<(usize, usize)>,
    message: String,
}

impl ReportProblem {
    fn new(message: impl Into<String>) -> ReportProblem {
        ReportProblem {
            position: None,
            message: message.into(),
        }
    }

    /// `error`, met reading `json`. serde_json reports some misplaced values (a number where
    /// an enum is expected) as syntax errors, so whether the text is JSON is checked apart.
    fn from_json(json: &str, error: &serde_json::Error) -> ReportProblem {
        if let Err(syntax) = serde_json::from_str::<IgnoredAny>(json) {
            return ReportProblem::positioned("not JSON", &syntax);
        }
        ReportProblem::positioned("cannot be read as SARIF 2.1.0", error)
    }

    fn positioned(what: &str, error: &serde_json::Error) -> ReportProblem {
        // The position is shown the `file:line:col:` way instead of serde_json's.
        let text = error.to_string();
        let suffix = format!(" at line {} column {}", error.line(), error.column());
        let message = text.strip_suffix(&suffix).unwrap_or(&text);
        ReportProblem {
            position: (error.line() > 0).then(|| (error.line(), error.column().max(1))),
            message: format!("{what}: {message}"),
        }
    }

    fn in_file(&self, path: &str) -> String {
        let message = bounded(self.message.clone(), MAX_MESSAGE_CHARS);
        match self.position {
            Some((line, column)) => format!("{path}:{line}:{column}: {message}"),
            None => format!("{path}: {message}"),
        }
    }
}

/// Reads a report, handing each of its results to `visit`. A report that stops being readable
/// part way has had its earlier results visited.
fn read_report(bytes: &[u8], visit: impl FnMut(&Finding<'_>)) -> Result<(), ReportProblem> {
    let json = json_text(bytes)?;
    let mut headers = Headers {
        runs: Vec::new(),
        budget: MAX_DESCRIPTORS,
    };
    parse(json, &mut headers)?;
    if headers.runs.is_empty() {
        return Err(ReportProblem::new("the report holds no run of a tool"));
    }
    for (index, run) in headers.runs.iter().enumerate() {
        let tool = quoted(run.driver.name.as_deref().unwrap_or("unnamed tool"));
        if !run.has_results {
            return Err(ReportProblem::new(format!(
                "run {} ({tool}) lists no `results`; a report of a scan lists them, even when there are none",
                index + 1
            )));
        }
        if run.failed {
            return Err(ReportProblem::new(format!(
                "run {} ({tool}) says its execution did not succeed",
                index + 1
            )));
        }
    }
    let rules = headers.runs.iter().map(RunRules::new).collect();
    parse(json, &mut Results { rules, visit })
}

/// The JSON text of a report: UTF-8 (which JSON requires, even in the values that are not
/// read), without the byte order mark some tools write.
fn json_text(bytes: &[u8]) -> Result<&str, ReportProblem> {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(ReportProblem::new(
            "encoded in UTF-16; reports are read as UTF-8",
        ));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let pos = Pos::of_offset(bytes, e.valid_up_to());
        ReportProblem {
            position: Some((pos.line as usize, pos.col as usize)),
            message: "not UTF-8 text".to_owned(),
        }
    })
}

/// One pass over a report, with `pass` reading what it needs of each run.
fn parse(json: &str, pass: &mut impl Pass) -> Result<(), ReportProblem> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    deserializer
        .deserialize_map(LogVisitor(pass))
        .and_then(|()| deserializer.end())
        .map_err(|e| ReportProblem::from_json(json, &e))
}

/// What one pass over a report does with the fields of each run.
trait Pass {
    /// What the pass gathers of one run.
    type Run: Default;
    /// Reads the value of `key` of run `index` — or skips it, but always consumes it.
    fn run_field<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        run: &mut Self::Run,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error>;
    /// A run has been read whole.
    fn end_run<E: de::Error>(&mut self, run: Self::Run) -> Result<(), E>;
}

/// The fields of interest met in one JSON object: a repeated one is refused (which value
/// counts would otherwise depend on the reader), a missing required one reported.
struct Seen {
    fields: &'static [&'static str],
    met: Vec<bool>,
}

impl Seen {
    fn new(fields: &'static [&'static str]) -> Seen {
        Seen {
            fields,
            met: vec![false; fields.len()],
        }
    }

    fn meet<E: de::Error>(&mut self, key: &str) -> Result<(), E> {
        if let Some(index) = self.fields.iter().position(|field| *field == key) {
            if self.met[index] {
                return Err(E::duplicate_field(self.fields[index]));
            }
            self.met[index] = true;
        }
        Ok(())
    }

    fn require<E: de::Error>(&self, field: &'static str) -> Result<(), E> {
        let met = self
            .fields
            .iter()
            .zip(&self.met)
            .any(|(known, met)| *known == field && *met);
        if met {
            Ok(())
        } else {
            Err(E::missing_field(field))
        }
    }
}

/// The top-level `sarifLog` object.
struct LogVisitor<'p, P>(&'p mut P);

impl<'de, P: Pass> Visitor<'de> for LogVisitor<'_, P> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SARIF log object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = Seen::new(&["version", "runs"]);
        while let Some(key) = map.next_key::<String>()? {
            seen.meet(&key)?;
            match key.as_str() {
                "version" => {
                    let version: String = map.next_value()?;
                    if version != SARIF_VERSION {
                        return Err(de::Error::custom(format_args!(
                            "its version is `{}`",
                            quoted(&version)
                        )));
                    }
                }
                "runs" => map.next_value_seed(RunsSeed(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        seen.require("version")?;
        seen.require("runs")
    }
}

/// The `runs` array.
struct RunsSeed<'p, P>(&'p mut P);

impl<'de, P: Pass> DeserializeSeed<'de> for RunsSeed<'_, P> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, P: Pass> Visitor<'de> for RunsSeed<'_, P> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of runs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(RunSeed {
                pass: &mut *self.0,
                index,
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }
}

/// One `run` object.
struct RunSeed<'p, P> {
    pass: &'p mut P,
    index: usize,
}

impl<'de, P: Pass> DeserializeSeed<'de> for RunSeed<'_, P> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, P: Pass> Visitor<'de> for RunSeed<'_, P> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a run object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = Seen::new(&["tool", "results", "invocations"]);
        let mut run = P::Run::default();
        while let Some(key) = map.next_key::<String>()? {
            seen.meet(&key)?;
            self.pass.run_field(self.index, &mut run, &key, &mut map)?;
        }
        seen.require("tool")?;
        self.pass.end_run(run)
    }
}

/// Spends one of the descriptors a report may declare.
fn spend<E: de::Error>(budget: &mut usize) -> Result<(), E> {
    *budget = budget.checked_sub(1).ok_or_else(|| {
        E::custom(format_args!(
            "more than {MAX_DESCRIPTORS} runs, tool components and rules"
        ))
    })?;
    Ok(())
}

/// The first pass: each run's tool components and rules, and whether it ran to the end.
struct Headers {
    runs: Vec<RunHeader>,
    /// Runs, components and rules that may still be declared.
    budget: usize,
}

#[derive(Default)]
struct RunHeader {
    driver: Component,
    extensions: Vec<Component>,
    has_results: bool,
    /// An invocation says its execution did not succeed.
    failed: bool,
}

/// A `toolComponent`: the driver or an extension.
#[derive(Default)]
struct Component {
    name: Option<String>,
    guid: Option<String>,
    rules: Vec<Rule>,
}

impl Pass for Headers {
    type Run = RunHeader;

    fn run_field<'de, A: MapAccess<'de>>(
        &mut self,
        _index: usize,
        run: &mut RunHeader,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match key {
            "tool" => {
                (run.driver, run.extensions) = map.next_value_seed(ToolSeed(&mut self.budget))?;
            }
            "results" => run.has_results = map.next_value::<Option<IgnoredAny>>()?.is_some(),
            "invocations" => {
                let invocations: Option<Vec<Invocation>> = map.next_value()?;
                run.failed = invocations
                    .unwrap_or_default()
                    .iter()
                    .any(|invocation| invocation.execution_successful == Some(false));
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn end_run<E: de::Error>(&mut self, run: RunHeader) -> Result<(), E> {
        spend(&mut self.budget)?;
        self.runs.push(run);
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    execution_successful: Option<bool>,
}

/// A run's `tool`: its driver and extensions.
struct ToolSeed<'b>(&'b mut usize);

impl<'de> DeserializeSeed<'de> for ToolSeed<'_> {
    type Value = (Component, Vec<Component>);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ToolSeed<'_> {
    type Value = (Component, Vec<Component>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tool object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::new(&["driver", "extensions"]);
        let (mut driver, mut extensions) = (Component::default(), Vec::new());
        while let Some(key) = map.next_key::<String>()? {
            seen.meet(&key)?;
            match key.as_str() {
                "driver" => driver = map.next_value_seed(ComponentSeed(&mut *self.0))?,
                "extensions" => extensions = map.next_value_seed(ExtensionsSeed(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        seen.require("driver")?;
        Ok((driver, extensions))
    }
}

/// A tool's `extensions` array.
struct ExtensionsSeed<'b>(&'b mut usize);

impl<'de> DeserializeSeed<'de> for ExtensionsSeed<'_> {
    type Value = Vec<Component>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ExtensionsSeed<'_> {
    type Value = Vec<Component>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of tool components")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut extensions = Vec::new();
        while let Some(extension) = seq.next_element_seed(ComponentSeed(&mut *self.0))? {
            extensions.push(extension);
        }
        Ok(extensions)
    }
}

/// One `toolComponent` object.
struct ComponentSeed<'b>(&'b mut usize);

impl<'de> DeserializeSeed<'de> for ComponentSeed<'_> {
    type Value = Component;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Component, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ComponentSeed<'_> {
    type Value = Component;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tool component object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Component, A::Error> {
        spend(self.0)?;
        let mut seen = Seen::new(&["name", "guid", "rules"]);
        let mut component = Component::default();
        while let Some(key) = map.next_key::<String>()? {
            seen.meet(&key)?;
            match key.as_str() {
                "name" => component.name = map.next_value()?,
                "guid" => component.guid = map.next_value()?,
                "rules" => component.rules = map.next_value_seed(RulesSeed(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(component)
    }
}

/// A component's `rules` array.
struct RulesSeed<'b>(&'b mut usize);

impl<'de> DeserializeSeed<'de> for RulesSeed<'_> {
    type Value = Vec<Rule>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Rule>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RulesSeed<'_> {
    type Value = Vec<Rule>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of rules")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Rule>, A::Error> {
        let mut rules = Vec::new();
        while let Some(rule) = seq.next_element::<Rule>()? {
            spend(self.0)?;
            rules.push(rule);
        }
        Ok(rules)
    }
}

/// What is read of a `reportingDescriptor` (a rule).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: Option<String>,
    default_configuration: Option<Configuration>,
    properties: Option<Properties>,
}

#[derive(Deserialize)]
struct Configuration {
    level: Option<SarifLevel>,
}

/// A property bag: only `security-severity` is read.
#[derive(Deserialize)]
struct Properties {
    #[serde(rename = "security-severity")]
    security_severity: Option<Score>,
}

/// A `security-severity`: a number, or a string holding one. Anything else, and a number that
/// is not finite, is no score at all.
struct Score(Option<f64>);

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Score, D::Error> {
        deserializer.deserialize_any(ScoreVisitor)
    }
}

struct ScoreVisitor;

impl ScoreVisitor {
    fn finite(score: f64) -> Score {
        Score(Some(score).filter(|score| score.is_finite()))
    }
}

impl<'de> Visitor<'de> for ScoreVisitor {
    type Value = Score;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a security-severity score")
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Score, E> {
        Ok(ScoreVisitor::finite(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Score, E> {
        Ok(ScoreVisitor::finite(value as f64))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Score, E> {
        Ok(ScoreVisitor::finite(value as f64))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Score, E> {
        Ok(Score(
            value
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|s| ScoreVisitor::finite(s).0),
        ))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Score, E> {
        Ok(Score(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Score, E> {
        Ok(Score(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Score, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Score(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Score, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Score(None))
    }
}

/// The second pass: each result, handed over with the rules of its run.
struct Results<'h, F> {
    rules: Vec<RunRules<'h>>,
    visit: F,
}

impl<F: FnMut(&Finding<'_>)> Pass for Results<'_, F> {
    type Run = ();

    fn run_field<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        _run: &mut (),
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        if key != "results" {
            map.next_value::<IgnoredAny>()?;
            return Ok(());
        }
        // The first pass read the same bytes: every run has its rules.
        let rules = self
            .rules
            .get(index)
            .ok_or_else(|| de::Error::custom("a run the first reading did not see"))?;
        map.next_value_seed(ResultsSeed {
            rules,
            visit: &mut self.visit,
        })
    }

    fn end_run<E: de::Error>(&mut self, _run: ()) -> Result<(), E> {
        Ok(())
    }
}

/// A run's `results` array, read one result at a time.
struct ResultsSeed<'r, 'h, F> {
    rules: &'r RunRules<'h>,
    visit: &'r mut F,
}

impl<'de, F: FnMut(&Finding<'_>)> DeserializeSeed<'de> for ResultsSeed<'_, '_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(&Finding<'_>)> Visitor<'de> for ResultsSeed<'_, '_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of results")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(result) = seq.next_element::<SarifResult>()? {
            let rule = self.rules.find(&result);
            (self.visit)(&Finding {
                result: &result,
                rule,
            });
        }
        Ok(())
    }
}

/// The rules of one run, found the ways a result refers to them.
struct RunRules<'h> {
    /// The driver, then the extensions.
    components: Vec<&'h Component>,
    /// Per component, its rules by id (the first of an id wins).
    by_id: Vec<HashMap<&'h str, &'h Rule>>,
    by_name: HashMap<&'h str, usize>,
    by_guid: HashMap<&'h str, usize>,
}

impl<'h> RunRules<'h> {
    fn new(run: &'h RunHeader) -> RunRules<'h> {
        let components: Vec<&Component> = std::iter::once(&run.driver)
            .chain(&run.extensions)
            .collect();
        let by_id = components
            .iter()
            .map(|component| {
                let mut ids = HashMap::new();
                for rule in &component.rules {
                    if let Some(id) = &rule.id {
                        ids.entry(id.as_str()).or_insert(rule);
                    }
                }
                ids
            })
            .collect();
        let (mut by_name, mut by_guid) = (HashMap::new(), HashMap::new());
        for (slot, component) in components.iter().enumerate() {
            if let Some(name) = &component.name {
                by_name.entry(name.as_str()).or_insert(slot);
            }
            if let Some(guid) = &component.guid {
                by_guid.entry(guid.as_str()).or_insert(slot);
            }
        }
        RunRules {
            components,
            by_id,
            by_name,
            by_guid,
        }
    }

    /// The rule a result refers to: in the component its `rule.toolComponent` names (the
    /// driver without one), by index, else by id — a hierarchical id like `A/B` falling back
    /// to `A`.
    fn find(&self, result: &SarifResult) -> Option<&'h Rule> {
        let reference = result.rule.as_ref();
        let slot = self.component(reference.and_then(|r| r.tool_component.as_ref()))?;
        let index = reference
            .and_then(|r| array_index(r.index))
            .or(array_index(result.rule_index));
        if let Some(rule) = index.and_then(|i| self.components[slot].rules.get(i)) {
            return Some(rule);
        }
        let id = reference
            .and_then(|r| r.id.as_deref())
            .or(result.rule_id.as_deref())?;
        let rules = &self.by_id[slot];
        rules
            .get(id)
            .or_else(|| id.split_once('/').and_then(|(base, _)| rules.get(base)))
            .copied()
    }

    /// The slot in `components` of the component a reference names.
    fn component(&self, reference: Option<&ComponentReference>) -> Option<usize> {
        let Some(reference) = reference else {
            return Some(0);
        };
        // An index counts among the extensions, which follow the driver here.
        if let Some(index) = array_index(reference.index) {
            return index
                .checked_add(1)
                .filter(|slot| *slot < self.components.len());
        }
        if let Some(guid) = &reference.guid {
            return self.by_guid.get(guid.as_str()).copied();
        }
        self.by_name.get(reference.name.as_deref()?).copied()
    }
}

/// A SARIF array index: -1 (and any negative number) means none.
fn array_index(index: Option<i64>) -> Option<usize> {
    index.and_then(|index| usize::try_from(index).ok())
}

/// What is read of a `result`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: Option<String>,
    rule_index: Option<i64>,
    rule: Option<RuleReference>,
    kind: Option<ResultKind>,
    level: Option<SarifLevel>,
    message: Option<Message>,
    locations: Option<First<Location>>,
    partial_fingerprints: Option<PartialFingerprints>,
    suppressions: Option<Vec<Suppression>>,
    baseline_state: Option<BaselineState>,
    properties: Option<Properties>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum ResultKind {
    NotApplicable,
    Pass,
    Fail,
    Review,
    Open,
    Informational,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum BaselineState {
    New,
    Unchanged,
    Updated,
    Absent,
}

#[derive(Deserialize)]
struct Suppression {
    status: Option<SuppressionStatus>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum SuppressionStatus {
    Accepted,
    UnderReview,
    Rejected,
}

/// A `reportingDescriptorReference`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleReference {
    id: Option<String>,
    index: Option<i64>,
    tool_component: Option<ComponentReference>,
}

/// A `toolComponentReference`.
#[derive(Deserialize)]
struct ComponentReference {
    name: Option<String>,
    index: Option<i64>,
    guid: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    text: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    physical_location: Option<PhysicalLocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: Option<ArtifactLocation>,
    region: Option<Region>,
}

#[derive(Deserialize)]
struct ArtifactLocation {
    uri: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: Option<u64>,
    snippet: Option<Snippet>,
}

#[derive(Deserialize)]
struct Snippet {
    text: Option<String>,
}

/// The first element of an array; the others are skipped unread, so a result with a million
/// locations holds one.
struct First<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<First<T>, D::Error> {
        deserializer.deserialize_seq(FirstVisitor(std::marker::PhantomData))
    }
}

struct FirstVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for FirstVisitor<T> {
    type Value = First<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<First<T>, A::Error> {
        let first = seq.next_element()?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(First(first))
    }
}

/// A result's `partialFingerprints`, at most [`MAX_PARTIAL_FINGERPRINTS`] entries.
struct PartialFingerprints(Vec<(String, String)>);

impl<'de> Deserialize<'de> for PartialFingerprints {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PartialFingerprintsVisitor)
    }
}

struct PartialFingerprintsVisitor;

impl<'de> Visitor<'de> for PartialFingerprintsVisitor {
    type Value = PartialFingerprints;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, String>()? {
            if entries.len() == MAX_PARTIAL_FINGERPRINTS {
                return Err(de::Error::custom(format_args!(
                    "a result has more than {MAX_PARTIAL_FINGERPRINTS} partialFingerprints"
                )));
            }
            entries.push(entry);
        }
        Ok(PartialFingerprints(entries))
    }
}

/// One result, with the rule it refers to when the run declares it.
struct Finding<'a> {
    result: &'a SarifResult,
    rule: Option<&'a Rule>,
}

impl Finding<'_> {
    /// Whether the result counts at all: not suppressed, and not listed only as gone.
    fn counts(&self) -> bool {
        let suppressed = self.result.suppressions.as_ref().is_some_and(|all| {
            !all.is_empty()
                && all.iter().all(|s| {
                    s.status
                        .is_none_or(|status| status == SuppressionStatus::Accepted)
                })
        });
        !suppressed && self.result.baseline_state != Some(BaselineState::Absent)
    }

    /// `level`, else the rule's default level, else `warning`; `none` for a result that is
    /// not a failure (`kind` other than `fail`).
    fn level(&self) -> SarifLevel {
        if self
            .result
            .kind
            .as_ref()
            .is_some_and(|kind| *kind != ResultKind::Fail)
        {
            return SarifLevel::None;
        }
        self.result
            .level
            .or_else(|| self.rule?.default_configuration.as_ref()?.level)
            .unwrap_or(SarifLevel::Warning)
    }

    /// The result's `security-severity`, else its rule's (where GitHub puts it).
    fn security_severity(&self) -> Option<f64> {
        let of = |properties: Option<&Properties>| properties?.security_severity.as_ref()?.0;
        of(self.result.properties.as_ref()).or_else(|| of(self.rule?.properties.as_ref()))
    }

    fn rule_id(&self) -> &str {
        let result = self.result;
        result
            .rule_id
            .as_deref()
            .or_else(|| result.rule.as_ref()?.id.as_deref())
            .or_else(|| self.rule?.id.as_deref())
            .unwrap_or("")
    }

    fn physical_location(&self) -> Option<&PhysicalLocation> {
        self.result
            .locations
            .as_ref()?
            .0
            .as_ref()?
            .physical_location
            .as_ref()
    }

    fn artifact_uri(&self) -> Option<&str> {
        self.physical_location()?
            .artifact_location
            .as_ref()?
            .uri
            .as_deref()
    }

    /// See [`evaluate`]. Each part is hashed with its length, so no two sets of parts give
    /// the same input.
    fn fingerprint(&self) -> Fingerprint {
        fn part(hash: &mut Sha256, text: &str) {
            hash.update((text.len() as u64).to_le_bytes());
            hash.update(text.as_bytes());
        }
        let mut hash = Sha256::new();
        match &self.result.partial_fingerprints {
            Some(PartialFingerprints(entries)) if !entries.is_empty() => {
                hash.update(b"partialFingerprints");
                let mut sorted: Vec<&(String, String)> = entries.iter().collect();
                sorted.sort();
                for (key, value) in sorted {
                    part(&mut hash, key);
                    part(&mut hash, value);
                }
            }
            _ => {
                hash.update(b"rule, artifact, snippet");
                part(&mut hash, self.rule_id());
                part(&mut hash, self.artifact_uri().unwrap_or(""));
                let snippet = self.physical_location().and_then(|location| {
                    location.region.as_ref()?.snippet.as_ref()?.text.as_deref()
                });
                for word in snippet.unwrap_or("").split_whitespace() {
                    part(&mut hash, word);
                }
            }
        }
        let digest = hash.finalize();
        let mut fingerprint = Fingerprint::default();
        let length = fingerprint.len();
        fingerprint.copy_from_slice(&digest[..length]);
        fingerprint
    }

    fn hit(&self, file: &str) -> ScanHit {
        let message = self
            .result
            .message
            .as_ref()
            .map_or(String::new(), |message| {
                match (&message.text, &message.id) {
                    (Some(text), _) => text.clone(),
                    (None, Some(id)) => format!("(message `{}`)", quoted(id)),
                    (None, None) => String::new(),
                }
            });
        let location = self.artifact_uri().map(|uri| {
            let line = self
                .physical_location()
                .and_then(|location| location.region.as_ref()?.start_line);
            let uri = quoted(uri);
            match line {
                Some(line) => format!("{uri}:{line}"),
                None => uri,
            }
        });
        ScanHit {
            file: file.to_owned(),
            rule_id: quoted(self.rule_id()),
            level: self.level(),
            security_severity: self.security_severity(),
            message: bounded(message, MAX_MESSAGE_CHARS),
            location,
            fingerprint: hex::encode(self.fingerprint()),
        }
    }
}

/// Longest piece of report or repository text quoted in a problem or a hit (other than a
/// message): ids, URIs, patterns.
const MAX_QUOTED_CHARS: usize = 200;

fn quoted(text: &str) -> String {
    bounded(text.to_owned(), MAX_QUOTED_CHARS)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const TRIVY: &[u8] = include_bytes!("../../tests/fixtures/sarif/trivy.alpine-310.sarif.json");
    const GITLEAKS: &[u8] =
        include_bytes!("../../tests/fixtures/sarif/gitleaks.sarif_simple.sarif.json");
    const EXAMPLE: &[u8] = include_bytes!("../../example-repo/reports/trivy/web-image.sarif");

    fn requirement(max_level: SarifLevel) -> ScanRequirement {
        ScanRequirement {
            paths: vec!["reports/**/*.sarif".to_owned()],
            max_level,
            max_severity: None,
            new_only: false,
        }
    }

    fn with_severity(max_severity: SecurityBand) -> ScanRequirement {
        ScanRequirement {
            max_severity: Some(max_severity),
            ..requirement(SarifLevel::Error)
        }
    }

    fn new_only(max_level: SarifLevel) -> ScanRequirement {
        ScanRequirement {
            new_only: true,
            ..requirement(max_level)
        }
    }

    fn collected(files: &[(&str, &[u8])]) -> Collected {
        Collected {
            files: files
                .iter()
                .map(|(path, bytes)| ScanFile {
                    path: (*path).to_owned(),
                    bytes: bytes.to_vec(),
                })
                .collect(),
            problems: Vec::new(),
        }
    }

    fn judge(req: &ScanRequirement, bytes: &[u8]) -> ScanOutcome {
        evaluate(
            req,
            &collected(&[("reports/scan.sarif", bytes)]),
            &Collected::default(),
        )
    }

    /// A one-run log of `tool` with the results given.
    fn log_of(tool: Value, results: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "version": "2.1.0",
            "runs": [{"tool": tool, "results": results}],
        }))
        .unwrap()
    }

    /// A log whose driver declares `rules`.
    fn log(rules: Value, results: Value) -> Vec<u8> {
        log_of(
            json!({"driver": {"name": "scanner", "rules": rules}}),
            results,
        )
    }

    fn results(results: Value) -> Vec<u8> {
        log(json!([]), results)
    }

    /// A result of `rule` in `uri`, with a snippet, at `line`.
    fn located(rule: &str, uri: &str, line: u64, snippet: &str) -> Value {
        json!({
            "ruleId": rule,
            "level": "error",
            "message": {"text": format!("{rule} in {uri}")},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": uri},
                "region": {"startLine": line, "snippet": {"text": snippet}},
            }}],
        })
    }

    fn levels(outcome: &ScanOutcome) -> Vec<SarifLevel> {
        outcome.failing.iter().map(|hit| hit.level).collect()
    }

    fn the_problem(outcome: &ScanOutcome) -> &str {
        assert!(!outcome.passed);
        assert_eq!(outcome.problems.len(), 1, "{:?}", outcome.problems);
        &outcome.problems[0]
    }

    // The real reports.

    #[test]
    fn trivy_warnings_pass_a_warning_gate_and_fail_a_note_gate() {
        let outcome = judge(&requirement(SarifLevel::Warning), TRIVY);
        assert!(outcome.passed, "{outcome:?}");
        assert_eq!(outcome.counted, 4);
        assert_eq!(outcome.files, ["reports/scan.sarif"]);

        let outcome = judge(&requirement(SarifLevel::Note), TRIVY);
        assert!(!outcome.passed);
        assert_eq!(outcome.failing_total, 4);
        let first = &outcome.failing[0];
        assert_eq!(first.file, "reports/scan.sarif");
        assert_eq!(first.rule_id, "CVE-2019-1549");
        assert_eq!(first.level, SarifLevel::Warning);
        assert_eq!(first.security_severity, Some(5.3));
        assert_eq!(
            first.location.as_deref(),
            Some("testdata/fixtures/images/alpine-310.tar.gz:1")
        );
        assert!(
            first
                .message
                .starts_with("Package: libcrypto1.1\nInstalled Version: 1.1.1c-r0"),
            "{}",
            first.message
        );
        assert_eq!(first.fingerprint.len(), 32);
    }

    #[test]
    fn trivy_severity_from_the_rule_fails_a_medium_band_but_not_a_high_one() {
        let outcome = judge(&with_severity(SecurityBand::Medium), TRIVY);
        assert_eq!(outcome.failing_total, 4);
        let rules: Vec<&str> = outcome.failing.iter().map(|h| h.rule_id.as_str()).collect();
        assert_eq!(
            rules,
            [
                "CVE-2019-1549",
                "CVE-2019-1551",
                "CVE-2019-1549",
                "CVE-2019-1551"
            ]
        );
        assert!(judge(&with_severity(SecurityBand::High), TRIVY).passed);
    }

    #[test]
    fn gitleaks_result_of_an_undeclared_rule_is_a_warning() {
        assert!(judge(&requirement(SarifLevel::Warning), GITLEAKS).passed);
        let outcome = judge(&requirement(SarifLevel::Note), GITLEAKS);
        assert_eq!(levels(&outcome), [SarifLevel::Warning]);
        let hit = &outcome.failing[0];
        assert_eq!(hit.rule_id, "test-rule");
        assert_eq!(hit.location.as_deref(), Some("auth.py:1"));
        assert_eq!(hit.security_severity, None);
    }

    #[test]
    fn the_example_repository_passes_its_gate_and_its_severity_string_is_read() {
        let gate = requirement(SarifLevel::Warning);
        assert!(judge(&gate, EXAMPLE).passed);
        let outcome = judge(&with_severity(SecurityBand::Low), EXAMPLE);
        assert_eq!(outcome.failing_total, 1);
        assert_eq!(outcome.failing[0].security_severity, Some(3.7));
        assert_eq!(outcome.failing[0].level, SarifLevel::Note);
        assert!(judge(&with_severity(SecurityBand::Medium), EXAMPLE).passed);
    }

    #[test]
    fn the_real_reports_are_judged_together_in_path_order() {
        let head = collected(&[
            ("reports/z/trivy.sarif", TRIVY),
            ("reports/a/gitleaks.sarif", GITLEAKS),
            ("reports/m/web.sarif", EXAMPLE),
        ]);
        let outcome = evaluate(&requirement(SarifLevel::None), &head, &Collected::default());
        assert_eq!(
            outcome.files,
            [
                "reports/a/gitleaks.sarif",
                "reports/m/web.sarif",
                "reports/z/trivy.sarif"
            ]
        );
        assert_eq!(outcome.counted, 6);
        let files: Vec<&str> = outcome.failing.iter().map(|h| h.file.as_str()).collect();
        assert_eq!(
            files[..2],
            ["reports/a/gitleaks.sarif", "reports/m/web.sarif"]
        );
    }

    // Levels.

    #[test]
    fn a_result_fails_only_above_the_maximum_level() {
        let all = results(json!([
            {"level": "none"}, {"level": "note"}, {"level": "warning"}, {"level": "error"},
        ]));
        let failing = |max| levels(&judge(&requirement(max), &all));
        assert_eq!(
            failing(SarifLevel::None),
            [SarifLevel::Note, SarifLevel::Warning, SarifLevel::Error]
        );
        assert_eq!(
            failing(SarifLevel::Note),
            [SarifLevel::Warning, SarifLevel::Error]
        );
        assert_eq!(failing(SarifLevel::Warning), [SarifLevel::Error]);
        assert_eq!(failing(SarifLevel::Error), []);
    }

    #[test]
    fn a_result_without_level_takes_its_rules_default_found_by_index_or_id() {
        let rules = json!([
            {"id": "quiet", "defaultConfiguration": {"level": "note"}},
            {"id": "loud", "defaultConfiguration": {"level": "error"}},
            {"id": "plain"},
        ]);
        let level_of = |result: Value| {
            let outcome = judge(
                &requirement(SarifLevel::None),
                &log(rules.clone(), json!([result])),
            );
            levels(&outcome)
        };
        assert_eq!(level_of(json!({"ruleIndex": 1})), [SarifLevel::Error]);
        assert_eq!(level_of(json!({"ruleId": "loud"})), [SarifLevel::Error]);
        assert_eq!(
            level_of(json!({"rule": {"id": "loud"}})),
            [SarifLevel::Error]
        );
        assert_eq!(level_of(json!({"rule": {"index": 0}})), [SarifLevel::Note]);
        // `rule.index` -1 is none: `ruleIndex` is used.
        assert_eq!(
            level_of(json!({"rule": {"index": -1}, "ruleIndex": 1})),
            [SarifLevel::Error]
        );
        // An index out of range falls back to the id.
        assert_eq!(
            level_of(json!({"ruleIndex": 7, "ruleId": "loud"})),
            [SarifLevel::Error]
        );
        // A hierarchical id falls back to its base rule.
        assert_eq!(level_of(json!({"ruleId": "loud/sub"})), [SarifLevel::Error]);
        // The result's own level wins over the rule's.
        assert_eq!(
            level_of(json!({"ruleId": "loud", "level": "note"})),
            [SarifLevel::Note]
        );
        // SARIF's default: a rule without a default level, or no rule at all.
        assert_eq!(level_of(json!({"ruleId": "plain"})), [SarifLevel::Warning]);
        assert_eq!(
            level_of(json!({"ruleId": "unknown"})),
            [SarifLevel::Warning]
        );
        assert_eq!(level_of(json!({})), [SarifLevel::Warning]);
    }

    #[test]
    fn rules_of_extensions_are_found_through_the_tool_component_reference() {
        let tool = json!({
            "driver": {"name": "CodeQL", "rules": [
                {"id": "js/xss", "defaultConfiguration": {"level": "note"}},
            ]},
            "extensions": [
                {"name": "codeql/go-queries", "rules": [{"id": "go/x", "defaultConfiguration": {"level": "note"}}]},
                {"name": "codeql/javascript-queries", "guid": "7a6b1f4e-5b1c-4f53-8d5e-5b0f0a3b1c2d",
                 "rules": [
                    {"id": "js/other"},
                    {"id": "js/xss", "defaultConfiguration": {"level": "error"},
                     "properties": {"security-severity": "6.1"}},
                 ]},
            ],
        });
        let judged = |result: Value| {
            let outcome = judge(
                &requirement(SarifLevel::None),
                &log_of(tool.clone(), json!([result])),
            );
            (levels(&outcome), outcome.failing[0].security_severity)
        };
        let error = (vec![SarifLevel::Error], Some(6.1));
        assert_eq!(
            judged(
                json!({"ruleId": "js/xss", "rule": {"index": 1, "toolComponent": {"index": 1}}})
            ),
            error
        );
        assert_eq!(
            judged(
                json!({"rule": {"id": "js/xss", "toolComponent": {"name": "codeql/javascript-queries"}}})
            ),
            error
        );
        assert_eq!(
            judged(
                json!({"rule": {"id": "js/xss", "toolComponent": {"guid": "7a6b1f4e-5b1c-4f53-8d5e-5b0f0a3b1c2d"}}})
            ),
            error
        );
        // The driver, without a reference.
        assert_eq!(
            judged(json!({"ruleId": "js/xss"})),
            (vec![SarifLevel::Note], None)
        );
        // An extension that does not exist: no rule, SARIF's default level.
        assert_eq!(
            judged(json!({"ruleId": "js/xss", "rule": {"toolComponent": {"index": 9}}})),
            (vec![SarifLevel::Warning], None)
        );
        assert_eq!(
            judged(json!({"ruleId": "js/xss", "rule": {"toolComponent": {"name": "elsewhere"}}})),
            (vec![SarifLevel::Warning], None)
        );
    }

    #[test]
    fn a_result_that_is_not_a_failure_has_level_none() {
        let report = results(json!([
            {"kind": "pass", "level": "error"},
            {"kind": "informational"},
            {"kind": "review"},
            {"kind": "fail", "level": "error"},
        ]));
        let outcome = judge(&requirement(SarifLevel::None), &report);
        assert_eq!(outcome.counted, 4);
        assert_eq!(levels(&outcome), [SarifLevel::Error]);
    }

    // Security severity.

    #[test]
    fn security_severity_bands_start_at_their_lowest_score() {
        let cases = [
            (SecurityBand::Critical, 9.0, true),
            (SecurityBand::Critical, 8.9, false),
            (SecurityBand::High, 7.0, true),
            (SecurityBand::High, 6.9, false),
            (SecurityBand::Medium, 4.0, true),
            (SecurityBand::Medium, 3.9, false),
            (SecurityBand::Low, 0.1, true),
            (SecurityBand::Low, 0.05, true),
            (SecurityBand::Low, 0.0, false),
            (SecurityBand::Low, -3.0, false),
            (SecurityBand::Critical, 1e300, true),
        ];
        for (band, score, fails) in cases {
            let report =
                results(json!([{"level": "note", "properties": {"security-severity": score}}]));
            let outcome = judge(&with_severity(band), &report);
            assert_eq!(outcome.failing_total == 1, fails, "{score} against {band}");
        }
    }

    #[test]
    fn security_severity_of_the_result_wins_over_its_rules_and_unreadable_scores_are_absent() {
        let rules = json!([{"id": "r", "properties": {"security-severity": "9.8"}}]);
        let severity_of = |properties: Value| {
            let report = log(
                rules.clone(),
                json!([{"ruleId": "r", "level": "note", "properties": properties}]),
            );
            judge(&requirement(SarifLevel::None), &report).failing[0].security_severity
        };
        assert_eq!(severity_of(json!({"security-severity": "2.0"})), Some(2.0));
        assert_eq!(severity_of(json!({"security-severity": " 5 "})), Some(5.0));
        assert_eq!(severity_of(json!({"security-severity": 3})), Some(3.0));
        assert_eq!(severity_of(json!({"tags": ["security"]})), Some(9.8));
        for unreadable in [
            json!("high"),
            json!("NaN"),
            json!("inf"),
            json!("1e400"),
            json!(""),
            json!(null),
            json!(true),
            json!([9.9]),
            json!({"score": 9.9}),
        ] {
            assert_eq!(
                severity_of(json!({"security-severity": unreadable})),
                Some(9.8),
                "{unreadable}"
            );
        }
        let no_rule =
            results(json!([{"level": "note", "properties": {"security-severity": "NaN"}}]));
        assert!(judge(&with_severity(SecurityBand::Low), &no_rule).passed);
    }

    // What counts.

    #[test]
    fn suppressed_results_do_not_count_unless_a_suppression_is_not_accepted() {
        let report = results(json!([
            {"level": "error", "message": {"text": "accepted"}, "suppressions": [{"kind": "inSource", "status": "accepted"}]},
            {"level": "error", "message": {"text": "no status"}, "suppressions": [{"kind": "external"}]},
            {"level": "error", "message": {"text": "under review"}, "suppressions": [{"kind": "external", "status": "underReview"}]},
            {"level": "error", "message": {"text": "rejected"}, "suppressions": [{"kind": "external", "status": "rejected"}]},
            {"level": "error", "message": {"text": "mixed"}, "suppressions": [{"kind": "inSource"}, {"kind": "external", "status": "rejected"}]},
            {"level": "error", "message": {"text": "empty"}, "suppressions": []},
            {"level": "error", "message": {"text": "gone"}, "baselineState": "absent"},
            {"level": "error", "message": {"text": "unchanged"}, "baselineState": "unchanged"},
        ]));
        let outcome = judge(&requirement(SarifLevel::Warning), &report);
        let messages: Vec<&str> = outcome.failing.iter().map(|h| h.message.as_str()).collect();
        assert_eq!(
            messages,
            ["under review", "rejected", "mixed", "empty", "unchanged"]
        );
        assert_eq!(outcome.counted, 5);
    }

    #[test]
    fn new_only_counts_a_new_result_but_not_one_that_moved() {
        let base = log(
            json!([]),
            json!([
                located(
                    "sql-injection",
                    "src/db.py",
                    10,
                    "cursor.execute(query  +  name)"
                ),
                located("weak-hash", "src/auth.py", 3, "md5(password)"),
            ]),
        );
        let head = log(
            json!([]),
            json!([
                // Moved down 30 lines, reindented.
                located(
                    "sql-injection",
                    "src/db.py",
                    40,
                    "    cursor.execute(query + name)\n"
                ),
                located("weak-hash", "src/auth.py", 3, "md5(password)"),
                located("weak-hash", "src/auth.py", 9, "md5(token)"),
            ]),
        );
        let outcome = evaluate(
            &new_only(SarifLevel::Warning),
            &collected(&[("reports/head.sarif", &head)]),
            &collected(&[("reports/base.sarif", &base)]),
        );
        assert_eq!(outcome.counted, 1);
        assert_eq!(outcome.failing_total, 1);
        assert_eq!(
            outcome.failing[0].location.as_deref(),
            Some("src/auth.py:9")
        );
        assert!(outcome.base_problems.is_empty());

        let everything = evaluate(
            &requirement(SarifLevel::Warning),
            &collected(&[("reports/head.sarif", &head)]),
            &collected(&[("reports/base.sarif", &base)]),
        );
        assert_eq!(everything.failing_total, 3);
    }

    #[test]
    fn new_only_counts_a_second_copy_of_a_known_result() {
        let one = located("CVE-1", "image", 1, "");
        let base = results(json!([one.clone()]));
        let head = results(json!([one.clone(), one]));
        let outcome = evaluate(
            &new_only(SarifLevel::Warning),
            &collected(&[("reports/scan.sarif", &head)]),
            &collected(&[("reports/scan.sarif", &base)]),
        );
        assert_eq!(outcome.counted, 1);
    }

    #[test]
    fn new_only_uses_every_partial_fingerprint_in_any_order() {
        let result = |fingerprints: Value, line: u64| {
            json!({"ruleId": "secret", "level": "error", "partialFingerprints": fingerprints,
                   "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a.py"}, "region": {"startLine": line}}}]})
        };
        let base = results(json!([result(
            json!({"commitSha": "abc", "email": "a@example.com"}),
            1
        )]));
        let head = results(json!([
            result(json!({"email": "a@example.com", "commitSha": "abc"}), 7),
            result(json!({"commitSha": "abc", "email": "b@example.com"}), 1),
            result(json!({"commitSha": "abc"}), 1),
        ]));
        let outcome = evaluate(
            &new_only(SarifLevel::Warning),
            &collected(&[("reports/scan.sarif", &head)]),
            &collected(&[("reports/scan.sarif", &base)]),
        );
        assert_eq!(outcome.counted, 2);
        let fingerprints: Vec<&str> = outcome
            .failing
            .iter()
            .map(|h| h.fingerprint.as_str())
            .collect();
        assert_ne!(fingerprints[0], fingerprints[1]);
    }

    #[test]
    fn the_gitleaks_finding_on_another_line_is_not_new() {
        let mut moved: Value = serde_json::from_slice(GITLEAKS).unwrap();
        moved["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
            json!(90);
        moved["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["snippet"]["text"] =
            json!("other text");
        let head = serde_json::to_vec(&moved).unwrap();
        let outcome = evaluate(
            &new_only(SarifLevel::None),
            &collected(&[("reports/gitleaks.sarif", &head)]),
            &collected(&[("reports/gitleaks.sarif", GITLEAKS)]),
        );
        assert!(outcome.passed, "{outcome:?}");
        assert_eq!(outcome.counted, 0);
    }

    #[test]
    fn new_only_with_an_unreadable_base_counts_everything_and_says_why() {
        let head = collected(&[("reports/scan.sarif", TRIVY)]);
        let mut base = collected(&[("reports/scan.sarif", b"{oops")]);
        base.problems
            .push("`reports/**/*.sarif` matches no file".to_owned());
        let outcome = evaluate(&new_only(SarifLevel::Note), &head, &base);
        assert_eq!(outcome.failing_total, 4);
        assert!(outcome.problems.is_empty());
        assert_eq!(
            outcome.base_problems,
            [
                "`reports/**/*.sarif` matches no file",
                "reports/scan.sarif:1:2: not JSON: key must be a string",
            ]
        );
        // Unchanged reports: nothing is new.
        let same = evaluate(&new_only(SarifLevel::Note), &head, &head);
        assert!(same.passed);
        assert_eq!(same.counted, 0);
    }

    #[test]
    fn failing_results_are_listed_up_to_a_bound_and_all_counted() {
        let many: Vec<Value> = (0..250)
            .map(|i| json!({"level": "error", "message": {"text": i.to_string()}}))
            .collect();
        let outcome = judge(&requirement(SarifLevel::Warning), &results(json!(many)));
        assert_eq!(outcome.failing_total, 250);
        assert_eq!(outcome.failing.len(), MAX_LISTED_HITS);
        assert_eq!(outcome.failing[99].message, "99");
    }

    #[test]
    fn collect_problems_fail_the_requirement() {
        let mut head = collected(&[("reports/scan.sarif", EXAMPLE)]);
        head.problems
            .push("`scans/*.sarif` matches no file".to_owned());
        let outcome = evaluate(
            &requirement(SarifLevel::Warning),
            &head,
            &Collected::default(),
        );
        assert!(!outcome.passed);
        assert_eq!(outcome.failing_total, 0);
        assert_eq!(outcome.problems, ["`scans/*.sarif` matches no file"]);
    }

    #[test]
    fn a_hit_shows_what_a_result_has_and_cuts_long_text() {
        let long = "x".repeat(5000);
        let report = results(json!([
            {"level": "error"},
            {"level": "error", "message": {"id": "default", "arguments": ["a"]}},
            {"level": "error", "ruleId": long, "message": {"text": long},
             "locations": [{"physicalLocation": {"artifactLocation": {"uri": "only/a/uri"}}}]},
        ]));
        let outcome = judge(&requirement(SarifLevel::Warning), &report);
        let [bare, by_id, long_hit] = &outcome.failing[..] else {
            panic!("{outcome:?}");
        };
        assert_eq!(
            (bare.rule_id.as_str(), bare.message.as_str(), &bare.location),
            ("", "", &None)
        );
        assert_eq!(by_id.message, "(message `default`)");
        assert_eq!(long_hit.location.as_deref(), Some("only/a/uri"));
        assert!(long_hit.message.ends_with("… (4000 more characters)"));
        assert!(long_hit.rule_id.ends_with("… (4800 more characters)"));
    }

    // Hostile reports: never a panic, always a problem naming the file.

    fn problem_of(bytes: &[u8]) -> String {
        let outcome = judge(&requirement(SarifLevel::Error), bytes);
        the_problem(&outcome).to_owned()
    }

    #[test]
    fn files_that_are_not_json_are_problems() {
        assert_eq!(
            problem_of(b""),
            "reports/scan.sarif:1:1: not JSON: EOF while parsing a value"
        );
        assert_eq!(
            problem_of(b"<xml/>"),
            "reports/scan.sarif:1:1: not JSON: expected value"
        );
        assert_eq!(
            problem_of(b"{\"version\": \"2.1.0\", \"runs\": []} trailing"),
            "reports/scan.sarif:1:34: not JSON: trailing characters"
        );
        assert_eq!(
            problem_of(b"{\"version\": \"2.1.0\",\n \"runs\": [], \"x\": \"\xff\"}"),
            "reports/scan.sarif:2:20: not UTF-8 text"
        );
        assert_eq!(
            problem_of(b"\xff\xfe{\0}\0"),
            "reports/scan.sarif: encoded in UTF-16; reports are read as UTF-8"
        );
    }

    #[test]
    fn a_byte_order_mark_is_allowed() {
        let mut report = b"\xEF\xBB\xBF".to_vec();
        report.extend_from_slice(EXAMPLE);
        assert!(judge(&requirement(SarifLevel::Warning), &report).passed);
    }

    #[test]
    fn json_that_is_not_sarif_is_a_problem() {
        let cases: [(&[u8], &str); 9] = [
            (
                b"[1, 2]",
                "1:1: cannot be read as SARIF 2.1.0: invalid type: sequence, expected a SARIF log object",
            ),
            (
                b"{}",
                "1:2: cannot be read as SARIF 2.1.0: missing field `version`",
            ),
            (
                br#"{"version": "2.1.0"}"#,
                "1:20: cannot be read as SARIF 2.1.0: missing field `runs`",
            ),
            (
                br#"{"version": "2.0.0", "runs": []}"#,
                "1:19: cannot be read as SARIF 2.1.0: its version is `2.0.0`",
            ),
            (
                br#"{"version": 2.1, "runs": []}"#,
                "1:15: cannot be read as SARIF 2.1.0: invalid type: floating point `2.1`, expected a string",
            ),
            (
                br#"{"version": "2.1.0", "runs": {}}"#,
                "1:29: cannot be read as SARIF 2.1.0: invalid type: map, expected an array of runs",
            ),
            (
                br#"{"version": "2.1.0", "runs": [{}]}"#,
                "1:32: cannot be read as SARIF 2.1.0: missing field `tool`",
            ),
            (
                br#"{"version": "2.1.0", "runs": [{"tool": {}}]}"#,
                "1:41: cannot be read as SARIF 2.1.0: missing field `driver`",
            ),
            (
                br#"{"version": "2.1.0", "version": "2.1.0", "runs": []}"#,
                "1:30: cannot be read as SARIF 2.1.0: duplicate field `version`",
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                problem_of(bytes),
                format!("reports/scan.sarif:{expected}"),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn a_report_must_hold_the_results_of_a_run_that_succeeded() {
        assert_eq!(
            problem_of(br#"{"version": "2.1.0", "runs": []}"#),
            "reports/scan.sarif: the report holds no run of a tool"
        );
        let no_results = serde_json::to_vec(&json!({"version": "2.1.0", "runs": [
            {"tool": {"driver": {"name": "a"}}, "results": []},
            {"tool": {"driver": {"name": "b"}}, "results": null},
        ]}))
        .unwrap();
        assert_eq!(
            problem_of(&no_results),
            "reports/scan.sarif: run 2 (b) lists no `results`; a report of a scan lists them, even when there are none"
        );
        let failed = serde_json::to_vec(&json!({"version": "2.1.0", "runs": [
            {"tool": {"driver": {"name": "CodeQL"}}, "results": [],
             "invocations": [{"executionSuccessful": false}]},
        ]}))
        .unwrap();
        assert_eq!(
            problem_of(&failed),
            "reports/scan.sarif: run 1 (CodeQL) says its execution did not succeed"
        );
    }

    #[test]
    fn results_before_the_tool_are_judged_with_its_rules() {
        let report = br#"{"runs": [{"results": [{"ruleId": "r"}],
            "tool": {"driver": {"name": "t", "rules": [{"id": "r", "defaultConfiguration": {"level": "error"}}]}}}],
            "version": "2.1.0"}"#;
        assert_eq!(
            levels(&judge(&requirement(SarifLevel::Warning), report)),
            [SarifLevel::Error]
        );
    }

    #[test]
    fn fields_of_the_wrong_kind_are_problems() {
        for (result, expected) in [
            // serde_json's words for a number where an enum is expected.
            (json!({"level": 5}), "expected value"),
            (
                json!({"level": "fatal"}),
                "unknown variant `fatal`, expected one of `none`, `note`, `warning`, `error`",
            ),
            (json!({"kind": "Fail"}), "unknown variant `Fail`"),
            (
                json!({"ruleIndex": "0"}),
                "invalid type: string \"0\", expected i64",
            ),
            (
                json!({"suppressions": [{"status": "waived"}]}),
                "unknown variant `waived`",
            ),
            (
                json!({"partialFingerprints": {"a": 1}}),
                "invalid type: integer `1`, expected a string",
            ),
            (
                json!({"locations": {}}),
                "invalid type: map, expected an array",
            ),
            (
                json!({"locations": [{"physicalLocation": {"region": {"startLine": -1}}}]}),
                "invalid value: integer `-1`, expected u64",
            ),
        ] {
            let problem = problem_of(&results(json!([result])));
            assert!(
                problem.starts_with("reports/scan.sarif:1:"),
                "{result}: {problem}"
            );
            assert!(
                problem.contains(": cannot be read as SARIF 2.1.0: "),
                "{result}: {problem}"
            );
            assert!(problem.contains(expected), "{problem} lacks {expected}");
        }
        let rules = log(
            json!([{"id": "r", "defaultConfiguration": {"level": "severe"}}]),
            json!([]),
        );
        assert!(problem_of(&rules).contains("unknown variant `severe`"));
    }

    #[test]
    fn results_read_before_a_bad_one_still_fail_the_requirement() {
        let report = results(json!([{"level": "error"}, {"level": "bad"}]));
        let outcome = judge(&requirement(SarifLevel::Warning), &report);
        assert_eq!(outcome.failing_total, 1);
        assert_eq!(outcome.problems.len(), 1);
        assert!(!outcome.passed);
    }

    #[test]
    fn a_long_bad_value_is_cut_in_the_problem() {
        let report = results(json!([{"level": "e".repeat(100_000)}]));
        let problem = problem_of(&report);
        assert!(problem.len() < 1200, "{} bytes", problem.len());
        assert!(problem.contains("more characters)"), "{problem}");
    }

    /// `prefix`, then `depth` nested arrays, then `suffix`.
    fn nested(prefix: &str, depth: usize, suffix: &str) -> Vec<u8> {
        let mut bytes = prefix.as_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(b'[', depth));
        bytes.extend(std::iter::repeat_n(b']', depth));
        bytes.extend_from_slice(suffix.as_bytes());
        bytes
    }

    #[test]
    fn deep_nesting_is_skipped_where_nothing_is_read_and_refused_where_something_is() {
        // Far deeper than a stack could recurse.
        let depth = 1 << 20;
        let run =
            r#"{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": [{"#;
        for ignored in [
            "\"properties\": ",
            "\"properties\": {\"security-severity\": ",
        ] {
            let closing = if ignored.contains('{') {
                "}}]}]}"
            } else {
                "}]}]}"
            };
            let report = nested(&format!("{run}{ignored}"), depth, closing);
            let outcome = judge(&requirement(SarifLevel::Warning), &report);
            assert!(outcome.passed, "{:?}", outcome.problems);
            assert_eq!(outcome.counted, 1);
        }
        let read = nested(
            &format!("{run}\"locations\": [{{\"physicalLocation\": "),
            depth,
            "}]}]}]}",
        );
        let problem = problem_of(&read);
        let column = run.len() + 37;
        assert!(
            problem.starts_with(&format!("reports/scan.sarif:1:{column}: cannot be read as SARIF 2.1.0: invalid type: sequence")),
            "{problem}"
        );
        let mut unclosed = format!("{run}\"properties\": ").into_bytes();
        unclosed.extend(std::iter::repeat_n(b'[', depth));
        let problem = problem_of(&unclosed);
        assert!(
            problem.ends_with(": not JSON: EOF while parsing a list"),
            "{problem}"
        );
        assert!(
            problem_of(&nested("", depth, ""))
                .contains("invalid type: sequence, expected a SARIF log object")
        );
    }

    #[test]
    fn huge_numbers_are_problems_not_scores() {
        let report = br#"{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": [{"properties": {"security-severity": 1e400}}]}]}"#;
        assert!(
            problem_of(report).contains("number out of range"),
            "{}",
            problem_of(report)
        );
    }

    #[test]
    fn a_million_results_are_counted_without_listing_them_all() {
        let mut report =
            br#"{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": ["#
                .to_vec();
        for i in 0..1_000_000 {
            if i > 0 {
                report.push(b',');
            }
            report.extend_from_slice(b"{}");
        }
        report.extend_from_slice(b"]}]}");
        let outcome = judge(&requirement(SarifLevel::Note), &report);
        assert_eq!(outcome.counted, 1_000_000);
        assert_eq!(outcome.failing_total, 1_000_000);
        assert_eq!(outcome.failing.len(), MAX_LISTED_HITS);
    }

    #[test]
    fn declaring_too_many_rules_is_a_problem() {
        let rules: Vec<Value> = (0..MAX_DESCRIPTORS).map(|_| json!({})).collect();
        let problem = problem_of(&log(json!(rules), json!([])));
        assert!(
            problem.ends_with(&format!(
                "cannot be read as SARIF 2.1.0: more than {MAX_DESCRIPTORS} runs, tool components and rules"
            )),
            "{problem}"
        );
        let rules: Vec<Value> = (0..MAX_DESCRIPTORS - 2).map(|_| json!({})).collect();
        assert!(
            judge(
                &requirement(SarifLevel::Error),
                &log(json!(rules), json!([]))
            )
            .passed
        );
    }

    #[test]
    fn too_many_partial_fingerprints_are_a_problem() {
        let many: serde_json::Map<String, Value> = (0..=MAX_PARTIAL_FINGERPRINTS)
            .map(|i| (i.to_string(), json!("v")))
            .collect();
        let problem = problem_of(&results(json!([{"partialFingerprints": many}])));
        assert!(
            problem.contains("a result has more than 100 partialFingerprints"),
            "{problem}"
        );
    }

    #[test]
    fn a_result_with_a_million_locations_keeps_the_first() {
        let mut report = br#"{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "t"}}, "results": [{"level": "error", "locations": [{"physicalLocation": {"artifactLocation": {"uri": "first"}}}"#.to_vec();
        for _ in 0..1_000_000 {
            report.extend_from_slice(b",{}");
        }
        report.extend_from_slice(b"]}]}]}");
        let outcome = judge(&requirement(SarifLevel::Warning), &report);
        assert_eq!(outcome.failing[0].location.as_deref(), Some("first"));
    }

    #[test]
    fn missing_optional_fields_anywhere_are_fine() {
        let report = serde_json::to_vec(&json!({"version": "2.1.0", "runs": [{
            "tool": {"driver": {"rules": [{}, {"defaultConfiguration": {}}, {"properties": {}}]}, "extensions": [{}]},
            "results": [
                {}, {"rule": {}}, {"rule": {"toolComponent": {}}}, {"message": {}}, {"locations": []},
                {"locations": [{}]}, {"locations": [{"physicalLocation": {}}]},
                {"locations": [{"physicalLocation": {"artifactLocation": {}, "region": {}}}]},
                {"locations": [{"physicalLocation": {"region": {"snippet": {}}}}]},
                {"partialFingerprints": {}}, {"suppressions": [{}]}, {"properties": {}},
                {"ruleIndex": 0}, {"ruleIndex": 1}, {"ruleIndex": 2}, {"ruleIndex": -1},
            ],
        }]}))
        .unwrap();
        let outcome = judge(&requirement(SarifLevel::Note), &report);
        assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
        assert_eq!(outcome.counted, 15);
        assert_eq!(outcome.failing_total, 15);
    }

    // Collecting reports from a commit.

    enum Node<'a> {
        File(&'a [u8]),
        Link(&'a str),
        Submodule,
    }

    fn repository() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        (dir, repo)
    }

    fn tree_of(repo: &Repository, entries: &[(&[u8], Node<'_>)]) -> Oid {
        let mut index = git2::Index::new().unwrap();
        for (path, node) in entries {
            let (mode, id) = match node {
                Node::File(bytes) => (0o100644, repo.blob(bytes).unwrap()),
                Node::Link(target) => (0o120000, repo.blob(target.as_bytes()).unwrap()),
                Node::Submodule => (0o160000, Oid::from_str(&"1".repeat(40)).unwrap()),
            };
            let time = git2::IndexTime::new(0, 0);
            index
                .add(&git2::IndexEntry {
                    ctime: time,
                    mtime: time,
                    dev: 0,
                    ino: 0,
                    mode,
                    uid: 0,
                    gid: 0,
                    file_size: 0,
                    id,
                    flags: 0,
                    flags_extended: 0,
                    path: path.to_vec(),
                })
                .unwrap();
        }
        index.write_tree_to(repo).unwrap()
    }

    fn patterns(patterns: &[&str]) -> Vec<String> {
        patterns.iter().map(|p| (*p).to_owned()).collect()
    }

    fn paths(collected: &Collected) -> Vec<&str> {
        collected.files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn collect_reads_the_matching_reports_below_the_root() {
        let (_dir, repo) = repository();
        let tree = tree_of(
            &repo,
            &[
                (b"config/reports/trivy.sarif", Node::File(TRIVY)),
                (
                    b"config/reports/nested/deep/gitleaks.sarif",
                    Node::File(GITLEAKS),
                ),
                (b"config/reports/readme.md", Node::File(b"# reports")),
                (b"config/reports/trivy.sarif.bak", Node::File(b"old")),
                (b"config/other/web.sarif", Node::File(EXAMPLE)),
                (b"reports/outside.sarif", Node::File(b"not under the root")),
            ],
        );
        let all = collect(&repo, tree, "config", &patterns(&["reports/**/*.sarif"]));
        assert_eq!(all.problems, Vec::<String>::new());
        assert_eq!(
            paths(&all),
            ["reports/nested/deep/gitleaks.sarif", "reports/trivy.sarif"]
        );
        assert_eq!(all.files[1].bytes, TRIVY);

        // `*` stays within one directory.
        let top = collect(&repo, tree, "config", &patterns(&["reports/*.sarif"]));
        assert_eq!(paths(&top), ["reports/trivy.sarif"]);

        let from_the_top = collect(&repo, tree, "", &patterns(&["**/web.sarif", "reports/*"]));
        assert_eq!(
            paths(&from_the_top),
            ["config/other/web.sarif", "reports/outside.sarif"]
        );

        let outcome = evaluate(
            &requirement(SarifLevel::Warning),
            &all,
            &Collected::default(),
        );
        assert!(outcome.passed, "{outcome:?}");
        assert_eq!(outcome.counted, 5);
    }

    #[test]
    fn a_pattern_that_matches_no_file_is_a_problem() {
        let (_dir, repo) = repository();
        let tree = tree_of(&repo, &[(b"reports/a.sarif", Node::File(EXAMPLE))]);
        let collected = collect(
            &repo,
            tree,
            "",
            &patterns(&["reports/**/*.sarif", "scans/*.sarif"]),
        );
        assert_eq!(paths(&collected), ["reports/a.sarif"]);
        assert_eq!(collected.problems, ["`scans/*.sarif` matches no file"]);
        let outcome = evaluate(
            &requirement(SarifLevel::Error),
            &collected,
            &Collected::default(),
        );
        assert!(!outcome.passed);

        for root in ["nowhere", "reports/a.sarif"] {
            let collected = collect(&repo, tree, root, &patterns(&["*.sarif"]));
            assert_eq!(collected.problems, ["`*.sarif` matches no file"], "{root}");
        }
    }

    #[test]
    fn links_submodules_and_names_that_are_not_utf8_are_not_read() {
        let (_dir, repo) = repository();
        let tree = tree_of(
            &repo,
            &[
                (b"reports/x.sarif", Node::Link("../../etc/passwd")),
                (b"reports/module.sarif", Node::Submodule),
                (b"reports/\xff.sarif", Node::File(EXAMPLE)),
                (b"reports/real.sarif", Node::File(EXAMPLE)),
            ],
        );
        let collected = collect(&repo, tree, "", &patterns(&["reports/*.sarif"]));
        assert_eq!(paths(&collected), ["reports/real.sarif"]);
        let mut problems = collected.problems.clone();
        problems.sort();
        assert_eq!(
            problems,
            [
                "reports/module.sarif is a submodule; reports are not read from submodules",
                "reports/x.sarif is a symbolic link; reports are not read through links",
                "reports/\u{FFFD}.sarif: the name is not valid UTF-8; not read",
            ]
        );
    }

    #[test]
    fn a_report_over_the_size_bound_is_not_read() {
        let (_dir, repo) = repository();
        let big = vec![b' '; MAX_FILE_BYTES as usize + 1];
        let tree = tree_of(
            &repo,
            &[
                (b"reports/big.sarif", Node::File(&big)),
                (b"reports/small.sarif", Node::File(EXAMPLE)),
            ],
        );
        let collected = collect(&repo, tree, "", &patterns(&["reports/*.sarif"]));
        assert_eq!(paths(&collected), ["reports/small.sarif"]);
        assert_eq!(
            collected.problems,
            ["reports/big.sarif is 16777217 bytes; a report may be at most 16777216 bytes"]
        );
    }

    #[test]
    fn reading_stops_at_the_total_size_and_file_count_bounds() {
        let (_dir, repo) = repository();
        let ten = [b'x'; 10];
        let tree = tree_of(
            &repo,
            &[
                (b"reports/a.sarif", Node::File(&ten)),
                (b"reports/b.sarif", Node::File(&ten)),
                (b"reports/c.sarif", Node::File(&ten)),
                (b"reports/d/e.sarif", Node::File(&ten)),
            ],
        );
        let all = patterns(&["reports/**/*.sarif", "other/*.sarif"]);
        let by_size = Limits {
            files: 10,
            file_bytes: 10,
            total_bytes: 25,
        };
        let collected = collect_within(&repo, tree, "", &all, &by_size);
        assert_eq!(paths(&collected), ["reports/a.sarif", "reports/b.sarif"]);
        assert_eq!(
            collected.problems,
            [
                "`other/*.sarif` matches no file",
                "the reports are more than 25 bytes together; reports/c.sarif and the reports after it are not read",
            ]
        );

        let by_count = Limits {
            files: 2,
            ..by_size
        };
        let collected = collect_within(&repo, tree, "", &all, &by_count);
        assert_eq!(paths(&collected), ["reports/a.sarif", "reports/b.sarif"]);
        // The walk stopped: whether `other/*.sarif` matches is not known.
        assert_eq!(
            collected.problems,
            ["more than 2 files match the report patterns; only 2 are read"]
        );
    }

    #[test]
    fn invalid_or_missing_patterns_and_trees_are_problems() {
        let (_dir, repo) = repository();
        let tree = tree_of(&repo, &[(b"reports/a.sarif", Node::File(EXAMPLE))]);
        let collected = collect(
            &repo,
            tree,
            "",
            &patterns(&["reports/[a.sarif", "reports/*.sarif"]),
        );
        assert_eq!(paths(&collected), ["reports/a.sarif"]);
        assert_eq!(collected.problems.len(), 1);
        assert!(
            collected.problems[0].starts_with("`reports/[a.sarif` is not a valid pattern: "),
            "{:?}",
            collected.problems
        );

        assert_eq!(
            collect(&repo, tree, "", &[]).problems,
            ["no report pattern is given"]
        );

        let missing = collect(
            &repo,
            Oid::from_str(&"2".repeat(40)).unwrap(),
            "",
            &patterns(&["*"]),
        );
        assert!(missing.files.is_empty());
        assert_eq!(missing.problems.len(), 1);
        assert!(missing.problems[0].starts_with("reading the tree of the configuration: "));
    }
}
