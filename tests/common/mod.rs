//! Test harness: a fresh Git repository per test, driven with the `git` CLI as a user would,
//! and the `gitward` binary run in it.

pub mod ci;
pub mod host;
pub mod peers;
pub mod receiver;
pub mod signing;

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `gitward` in `dir` with `env` off the async runtime's threads, which meanwhile serve
/// the stand-ins the run talks to.
pub async fn gitward_beside(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &Path)> = env
            .iter()
            .map(|(k, v)| (k.as_str(), Path::new(v.as_str())))
            .collect();
        gitward_in_env(&dir, &args, &env)
    })
    .await
    .expect("the run ends")
}

pub fn gitward_in(dir: &Path, args: &[&str]) -> Run {
    gitward_in_env(dir, args, &[])
}

/// `gitward` in `dir` with variables added to its environment.
pub fn gitward_in_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_gitward"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("the gitward binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The repository's own directory, for fixtures and the example repository.
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct TestRepo {
    dir: tempfile::TempDir,
}

impl TestRepo {
    /// An empty repository on branch `main`.
    pub fn new() -> TestRepo {
        let repo = TestRepo {
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// A repository whose `main` holds a copy of `example-repo/`.
    pub fn with_example() -> TestRepo {
        let repo = TestRepo::new();
        repo.copy_tree(&project_dir().join("example-repo"));
        repo.commit("Example configuration");
        repo
    }

    /// [`TestRepo::with_example`] with the example's gates reduced to an always-open window
    /// ([`open_gates`]), for tests of what policies and plans do, not of what gates decide.
    pub fn with_example_open_gates() -> TestRepo {
        let repo = TestRepo::new();
        repo.copy_tree(&project_dir().join("example-repo"));
        open_gates(repo.path());
        repo.commit("Example configuration, gates open");
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=Test User",
                "-c",
                "user.email=test@example.com",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> &TestRepo {
        let target = self.path().join(path);
        std::fs::create_dir_all(target.parent().expect("a parent directory")).expect("mkdir");
        std::fs::write(target, contents).expect("write");
        self
    }

    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.path().join(path)).expect("read")
    }

    /// Replaces text in a file, failing when the text is not there.
    pub fn edit(&self, path: &str, from: &str, to: &str) -> &TestRepo {
        let text = self.read(path);
        assert!(text.contains(from), "{path} does not contain {from:?}");
        self.write(path, text.replace(from, to))
    }

    pub fn remove(&self, path: &str) -> &TestRepo {
        std::fs::remove_file(self.path().join(path)).expect("remove");
        self
    }

    pub fn copy_tree(&self, from: &Path) {
        copy_dir(from, self.path());
    }

    /// Commits everything and returns the commit's sha.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn gitward(&self, args: &[&str]) -> Run {
        gitward_in(self.path(), args)
    }
}

/// Reduces the requirements of the example's gates in the copy at `dir` to an always-open
/// window: they still apply, and pass.
pub fn open_gates(dir: &Path) {
    for gate in ["gates/prod-changes.yaml", "gates/staging-changes.yaml"] {
        let path = dir.join(gate);
        let text = std::fs::read_to_string(&path).expect("an example gate");
        let start = text.find("  require:\n").expect("a gate's requirements");
        let end = text.find("  override:\n").unwrap_or(text.len());
        let open = format!(
            "{}  require:\n    window: {{timezone: UTC}}\n{}",
            &text[..start],
            &text[end..]
        );
        std::fs::write(&path, open).expect("write the gate");
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Runs an external program that the test script installs, failing clearly when it is missing.
pub fn tool(program: &str, args: &[&str], dir: &Path) -> Run {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); scripts/test.sh installs it"));
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Asserts that `value` satisfies the JSON Schema in `schema_file` (relative to the project).
pub fn assert_matches_schema(schema_file: &str, value: &serde_json::Value) {
    let text = std::fs::read_to_string(project_dir().join(schema_file)).expect("the schema file");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not valid against {schema_file}: {errors:#?}"
    );
}

/// The requirement `name` of the first gate of a JSON plan report.
pub fn gate_requirement<'a>(plan: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    plan["gates"][0]["requirements"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["requirement"] == name))
        .unwrap_or_else(|| panic!("no {name} requirement in {plan}"))
}

/// Each approval the first gate of a JSON plan report found: (approver, why it does not
/// count).
pub fn gate_approvals(plan: &serde_json::Value) -> Vec<(String, Option<String>)> {
    gate_requirement(plan, "approvals")["approvals"]
        .as_array()
        .expect("approvals")
        .iter()
        .map(|a| {
            (
                a["approver"].as_str().unwrap_or_default().to_owned(),
                a["refused"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Each sink's delivery state as `gitward sinks status --format json` shows it, for the host
/// config `gitward.yaml` in `dir`.
pub fn sink_states(dir: &Path) -> Vec<serde_json::Value> {
    let run = gitward_in(
        dir,
        &[
            "sinks",
            "status",
            "--config",
            "gitward.yaml",
            "--format",
            "json",
        ],
    )
    .expect(0);
    serde_json::from_str(&run.stdout).expect("JSON")
}

/// The delivery state of sink `name`, as [`sink_states`].
pub fn sink_state(dir: &Path, name: &str) -> serde_json::Value {
    sink_states(dir)
        .into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no sink {name}"))
}
