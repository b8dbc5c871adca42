//! The hostile corpus: each `tests/hostile/<case>/case.yaml` builds a configuration
//! repository (and, for `reconcile`, a host around it) the way an attacker would, runs one
//! gitward command and checks what a user would see: the exit code, what is printed, and
//! files that must or must not exist afterwards. The format is described in
//! `tests/hostile/README.md`.
//!
//! A case that shows a bug not fixed yet carries `known: "<one line>"`: it is run and
//! reported, and fails the run only once it passes (then the `known` line is to go).

use crate::common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::host::Host;
use common::{Run, TestRepo, gitward_in, project_dir};
use serde::Deserialize;

/// Text given as is, or made of a piece repeated (for sizes no one commits to a repository).
#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    Plain(String),
    Repeated {
        #[serde(default)]
        before: String,
        repeat: String,
        times: usize,
        #[serde(default)]
        after: String,
    },
}

impl Text {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Text::Plain(text) => text.clone().into_bytes(),
            Text::Repeated {
                before,
                repeat,
                times,
                after,
            } => [before.as_str(), &repeat.repeat(*times), after]
                .concat()
                .into_bytes(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneratedFile {
    /// Relative to the repository; `%XX` is the byte XX (names that are not UTF-8).
    path: Text,
    text: Option<Text>,
    /// Bytes as hex, for binary content.
    hex: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Link {
    /// `repo:PATH` (committed) or `host:PATH` (planted on the host before the run, in place
    /// of a file there).
    at: String,
    /// Where it points; `repo:` and `host:` are made absolute.
    to: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CommitSpec {
    message: Option<Text>,
    author: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Mount {
    /// `host:PATH`: a tmpfs is mounted there for the run and unmounted after.
    at: String,
    /// tmpfs size, like `64k`.
    size: String,
    /// Filled up before the run: no space left for anything gitward writes.
    #[serde(default)]
    full: bool,
    #[serde(default)]
    read_only: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Expect {
    code: i32,
    /// Substrings of stdout + stderr that must appear.
    #[serde(default)]
    contains: Vec<String>,
    /// Substrings of stdout + stderr that must not appear.
    #[serde(default)]
    lacks: Vec<String>,
    /// Most bytes stdout + stderr may hold.
    max_output: Option<usize>,
    /// `repo:` / `host:` paths that must not exist afterwards (links are not followed).
    #[serde(default)]
    absent: Vec<String>,
    /// `repo:` / `host:` paths that must exist afterwards.
    #[serde(default)]
    present: Vec<String>,
    /// Directories whose entries afterwards are exactly these (no temporary file left).
    #[serde(default)]
    entries: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Case {
    about: String,
    /// gitward's arguments, run in the repository; `[reconcile]` runs `reconcile --once` with
    /// the host config of `tests/common/host.rs` (target `web` in `host:out`).
    run: Vec<String>,
    /// Added to the `web` target of the host config.
    #[serde(default)]
    target: String,
    /// Reconcile `base/` once before the case's commit is made and the host is prepared.
    #[serde(default)]
    reconcile_base: bool,
    #[serde(default)]
    files: Vec<GeneratedFile>,
    #[serde(default)]
    links: Vec<Link>,
    #[serde(default)]
    commit: CommitSpec,
    mount: Option<Mount>,
    expect: Expect,
    known: Option<String>,
}

/// Where a case runs: the repository, and the host directory for `reconcile`.
struct Scene {
    host: Host,
}

impl Scene {
    fn repo(&self) -> &TestRepo {
        &self.host.repo
    }

    /// `repo:PATH` or `host:PATH` as an absolute path.
    fn place(&self, at: &str) -> Result<PathBuf, String> {
        let (root, rest) = if let Some(rest) = at.strip_prefix("repo:") {
            (self.repo().path(), rest)
        } else if let Some(rest) = at.strip_prefix("host:") {
            (self.host.dir.path(), rest)
        } else {
            return Err(format!("`{at}` is neither repo:PATH nor host:PATH"));
        };
        Ok(root.join(unescape(rest)))
    }

    fn target_of(&self, to: &str) -> Result<PathBuf, String> {
        if to.starts_with("repo:") || to.starts_with("host:") {
            self.place(to)
        } else {
            Ok(PathBuf::from(to))
        }
    }
}

/// `%XX` escapes as bytes, for names that are not UTF-8.
fn unescape(path: &str) -> PathBuf {
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    PathBuf::from(OsString::from_vec(bytes))
}

fn link(scene: &Scene, link: &Link) -> Result<(), String> {
    let at = scene.place(&link.at)?;
    let to = scene.target_of(&link.to)?;
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("mkdir for {}: {e}", link.at))?;
    }
    // Planted in place of what is there.
    if std::fs::symlink_metadata(&at).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(&at).map_err(|e| format!("replace {}: {e}", link.at))?;
    }
    std::os::unix::fs::symlink(&to, &at).map_err(|e| format!("link {}: {e}", link.at))
}

/// A tmpfs mounted for one case, unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn new(at: PathBuf, mount: &Mount) -> Result<Mounted, String> {
        std::fs::create_dir_all(&at).map_err(|e| format!("mkdir {}: {e}", at.display()))?;
        let options = format!("size={},mode=0755", mount.size);
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(&at)
            .status()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !status.success() {
            return Err("cannot mount a tmpfs here (not root, or no mount namespace)".into());
        }
        let mounted = Mounted(at);
        if mount.full {
            // Fill it until the kernel says no: a write is then refused with ENOSPC.
            let filler = mounted.0.join("filler");
            let chunk = vec![b'x'; 4096];
            let mut file = std::fs::File::create(&filler).map_err(|e| e.to_string())?;
            while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
        }
        if mount.read_only {
            let remounted = Command::new("mount")
                .args(["-o", "remount,ro"])
                .arg(&mounted.0)
                .status()
                .map_err(|e| e.to_string())?;
            if !remounted.success() {
                return Err("cannot remount the tmpfs read-only".into());
            }
        }
        Ok(mounted)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn commit(repo: &TestRepo, spec: &CommitSpec) -> Result<(), String> {
    repo.git(&["add", "-A"]);
    let message = spec
        .message
        .as_ref()
        .map_or_else(|| b"Hostile change".to_vec(), Text::bytes);
    let message_file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(message_file.path(), message).map_err(|e| e.to_string())?;
    let mut args: Vec<String> = Vec::new();
    if let Some(author) = &spec.author {
        args.extend(["-c".into(), format!("user.name={author}")]);
    }
    if let Some(email) = &spec.email {
        args.extend(["-c".into(), format!("user.email={email}")]);
    }
    args.extend(
        [
            "commit",
            "-q",
            "--allow-empty",
            "--cleanup=verbatim",
            "-F",
            &message_file.path().to_string_lossy(),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    repo.git(&args);
    Ok(())
}

fn write_file(scene: &Scene, file: &GeneratedFile) -> Result<(), String> {
    let name = String::from_utf8_lossy(&file.path.bytes()).into_owned();
    let path = scene.repo().path().join(unescape(&name));
    let bytes = match (&file.text, &file.hex) {
        (Some(text), None) => text.bytes(),
        (None, Some(hex)) => {
            hex::decode(hex.replace(char::is_whitespace, "")).map_err(|e| format!("{name}: {e}"))?
        }
        _ => return Err(format!("{name}: give text or hex")),
    };
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(|e| e.to_string())?;
    std::fs::write(&path, bytes).map_err(|e| format!("{name}: {e}"))
}

fn gitward(scene: &Scene, run: &[String]) -> Run {
    if run == ["reconcile"] {
        scene.host.reconcile(&[])
    } else {
        let args: Vec<&str> = run.iter().map(String::as_str).collect();
        gitward_in(scene.repo().path(), &args)
    }
}

/// Runs a case; the problems found, empty when it holds.
fn run_case(dir: &Path, case: &Case) -> Result<Vec<String>, String> {
    let host = Host {
        repo: TestRepo::new(),
        dir: tempfile::tempdir().map_err(|e| e.to_string())?,
    };
    host.config(&case.target);
    let scene = Scene { host };
    let base = dir.join("base");
    if base.is_dir() {
        scene.repo().copy_tree(&base);
    } else {
        scene.repo().write("README.md", "config\n");
    }
    scene.repo().commit("Before");
    if case.reconcile_base {
        let first = scene.host.reconcile(&[]);
        if first.code != 0 {
            return Err(format!(
                "reconciling base/ failed:\n{}{}",
                first.stdout, first.stderr
            ));
        }
    }
    if dir.join("repo").is_dir() {
        scene.repo().copy_tree(&dir.join("repo"));
    }
    for file in &case.files {
        write_file(&scene, file)?;
    }
    for l in case.links.iter().filter(|l| l.at.starts_with("repo:")) {
        link(&scene, l)?;
    }
    commit(scene.repo(), &case.commit)?;
    for l in case.links.iter().filter(|l| !l.at.starts_with("repo:")) {
        link(&scene, l)?;
    }
    let _mounted = match &case.mount {
        Some(mount) => Some(Mounted::new(scene.place(&mount.at)?, mount)?),
        None => None,
    };
    let run = gitward(&scene, &case.run);
    let output = format!("{}{}", run.stdout, run.stderr);
    let shown = || {
        let mut end = output.len().min(4000);
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        format!("--- output ({} bytes)\n{}", output.len(), &output[..end])
    };
    let expect = &case.expect;
    let mut problems = Vec::new();
    if run.code != expect.code {
        problems.push(format!("exited {}, expected {}", run.code, expect.code));
    }
    for wanted in &expect.contains {
        if !output.contains(wanted.as_str()) {
            problems.push(format!("does not say {wanted:?}"));
        }
    }
    for unwanted in &expect.lacks {
        if output.contains(unwanted.as_str()) {
            problems.push(format!("says {unwanted:?}"));
        }
    }
    if let Some(max) = expect.max_output
        && output.len() > max
    {
        problems.push(format!(
            "printed {} bytes, at most {max} expected",
            output.len()
        ));
    }
    for path in &expect.absent {
        if std::fs::symlink_metadata(scene.place(path)?).is_ok() {
            problems.push(format!("{path} exists"));
        }
    }
    for path in &expect.present {
        if std::fs::symlink_metadata(scene.place(path)?).is_err() {
            problems.push(format!("{path} does not exist"));
        }
    }
    for (dir, wanted) in &expect.entries {
        let mut found: Vec<String> = std::fs::read_dir(scene.place(dir)?)
            .map_err(|e| format!("{dir}: {e}"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        if found != *wanted {
            problems.push(format!("{dir} holds {found:?}, not {wanted:?}"));
        }
    }
    if !problems.is_empty() {
        problems.push(shown());
    }
    Ok(problems)
}

#[test]
fn every_hostile_case_is_refused_or_contained() {
    let root = project_dir().join("tests/hostile");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("the hostile corpus exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.yaml").is_file())
        .collect();
    dirs.sort();
    let only = std::env::var("HOSTILE_CASE").ok();
    let mut failures = Vec::new();
    let mut known = BTreeMap::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if only.as_ref().is_some_and(|o| *o != name) {
            continue;
        }
        let text = std::fs::read_to_string(dir.join("case.yaml")).expect("case.yaml reads");
        let case: Case = match serde_yaml::from_str(&text) {
            Ok(case) => case,
            Err(e) => {
                failures.push(format!("{name}/case.yaml: {e}"));
                continue;
            }
        };
        let outcome = run_case(dir, &case);
        match (outcome, &case.known) {
            (Err(setup), _) if setup.contains("cannot mount") => {
                eprintln!("{name}: SKIPPED: {setup}");
            }
            (Err(setup), _) => failures.push(format!("{name}: cannot set up: {setup}")),
            (Ok(problems), None) if problems.is_empty() => eprintln!("{name}: ok"),
            (Ok(problems), None) => failures.push(format!(
                "{name} ({}):\n  {}",
                case.about,
                problems.join("\n  ")
            )),
            (Ok(problems), Some(bug)) if problems.is_empty() => {
                failures.push(format!("{name} passes now: remove its `known: {bug}`"))
            }
            (Ok(problems), Some(bug)) => {
                eprintln!("{name}: KNOWN FAILURE: {bug}\n  {}", problems.join("\n  "));
                known.insert(name, bug.clone());
            }
        }
    }
    if !known.is_empty() {
        // Straight to stderr, past the test harness's capture: shown even when the run passes.
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "hostile corpus: {} known failures", known.len());
        for (name, bug) in &known {
            let _ = writeln!(stderr, "  {name}: {bug}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        only.is_some() || dirs.len() >= 15,
        "the corpus has {} cases",
        dirs.len()
    );
}
