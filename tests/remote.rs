//! Following a remote: `git daemon` serves a bare repository with pushes enabled; gitward
//! fetches the tracked branch from it and pushes the status branch and notes back, without
//! force, merging what others pushed meanwhile.

use crate::common;

use common::host::{Host, ISSUERS, certificate};
use common::peers::{Daemon, GitServer, HttpGitServer, SshGitServer, free_port, http, signed_with};
use nix::sys::signal::Signal;

fn host() -> Host {
    let a = certificate("a", "  dnsNames: [a.example.com]\n");
    Host::new(&[("issuers.yaml", ISSUERS), ("a.yaml", &a)])
}

/// A served bare repository, read with `git`.
trait Remote {
    fn git(&self, args: &[&str]) -> String;
}

impl Remote for GitServer {
    fn git(&self, args: &[&str]) -> String {
        GitServer::git(self, args)
    }
}

impl Remote for HttpGitServer {
    fn git(&self, args: &[&str]) -> String {
        HttpGitServer::git(self, args)
    }
}

impl Remote for SshGitServer {
    fn git(&self, args: &[&str]) -> String {
        SshGitServer::git(self, args)
    }
}

/// Commits on the remote's status branch whose `Gitward-Source` is `source`.
fn status_commits_for(server: &impl Remote, source: &str) -> usize {
    server
        .git(&[
            "log",
            "--format=%(trailers:key=Gitward-Source,valueonly)",
            "gitward/status",
        ])
        .lines()
        .filter(|l| l.trim() == source)
        .count()
}

/// The remote records `head` once on its status branch, and applied in its note.
fn assert_applied_on(server: &impl Remote, head: &str) {
    assert_eq!(status_commits_for(server, head), 1);
    assert!(
        server
            .git(&["notes", "--ref=gitward", "show", head])
            .contains("result: applied")
    );
}

#[test]
fn status_and_notes_are_pushed_and_a_push_made_meanwhile_is_kept() {
    let host = host();
    let server = GitServer::start(&host.repo);
    host.follow(&server.url());
    let first = host.repo.git(&["rev-parse", "main"]);
    let run = host.reconcile(&[]).expect(0);
    assert!(!run.stdout.contains("remote:"), "{}", run.stdout);
    assert_eq!(host.verify("a").code, 0);
    assert_applied_on(&server, &first);
    // The work happened in a mirror under the state directory, not in the clone.
    assert!(host.dir.path().join("state/mirror.git").is_dir());
    assert!(
        host.repo
            .git(&["branch", "--list", "gitward/status"])
            .is_empty()
    );

    // Someone pushes to the status branch and adds a note of their own...
    let url = server.url();
    host.repo.git(&[
        "fetch",
        "-q",
        &url,
        "gitward/status",
        "refs/notes/gitward:refs/notes/gitward",
    ]);
    let human = host.repo.git(&[
        "commit-tree",
        "FETCH_HEAD^{tree}",
        "-p",
        "FETCH_HEAD",
        "-m",
        "Checked by hand",
    ]);
    host.repo.git(&[
        "push",
        "-q",
        &url,
        &format!("{human}:refs/heads/gitward/status"),
    ]);
    host.repo.git(&[
        "notes",
        "--ref=gitward",
        "add",
        "-m",
        "reviewed by alice",
        &human,
    ]);
    host.repo.git(&["push", "-q", &url, "refs/notes/gitward"]);
    // ...while a merge adds a certificate.
    let b = certificate("b", "  dnsNames: [b.example.com]\n");
    host.repo.write("b.yaml", &b);
    let second = host.repo.commit("Add b");
    host.repo.git(&["push", "-q", &url, "main"]);

    let run = host.reconcile(&[]).expect(0);
    assert!(
        run.stdout
            .contains("remote: the remote had moved; merged and pushed again (1 retries)"),
        "{}",
        run.stdout
    );
    assert_eq!(host.verify("b").code, 0);
    // Both histories are on the remote, each record once.
    server.git(&["merge-base", "--is-ancestor", &human, "gitward/status"]);
    assert_applied_on(&server, &first);
    assert_applied_on(&server, &second);
    assert!(
        server
            .git(&["show", "gitward/status:summary.yaml"])
            .contains(&second)
    );
    assert_eq!(
        server.git(&["notes", "--ref=gitward", "show", &human]),
        "reviewed by alice"
    );

    // Nothing new: nothing is pushed.
    let tip = server.git(&["rev-parse", "gitward/status", "refs/notes/gitward"]);
    host.reconcile(&[]).expect(0);
    assert_eq!(
        server.git(&["rev-parse", "gitward/status", "refs/notes/gitward"]),
        tip
    );
}

#[test]
fn a_remote_that_goes_away_is_reported_and_caught_up_with_when_it_returns() {
    let host = host();
    let mut server = GitServer::start(&host.repo);
    let port = free_port();
    std::fs::write(host.dir.path().join("hook-secret"), "s3cret\n").expect("secret");
    host.config(&format!(
        "listen: 127.0.0.1:{port}\nwebhooks:\n  github: {{secretFile: hook-secret}}\n"
    ));
    host.follow(&server.url());
    let daemon = Daemon::gitward(host.dir.path());
    let first = host.repo.git(&["rev-parse", "main"]);
    daemon.wait_until("the first commit's status is on the remote", || {
        server.has("gitward/status") && status_commits_for(&server, &first) == 1
    });
    assert_eq!(http(port, "/healthz", None), (200, "ok\n".to_owned()));

    server.stop();
    let b = certificate("b", "  dnsNames: [b.example.com]\n");
    host.repo.write("b.yaml", &b);
    let second = host.repo.commit("Add b");
    host.repo
        .git(&["push", "-q", &server.path().to_string_lossy(), "main"]);
    // GitHub's own push payload (octokit's example, moved to the tracked branch), signed as
    // GitHub signs it.
    let body = std::fs::read_to_string(
        common::project_dir().join("tests/fixtures/webhooks/github/push.payload.json"),
    )
    .expect("fixture")
    .replace("refs/tags/simple-tag", "refs/heads/main")
    .into_bytes();
    let signature = signed_with(b"s3cret", &body);
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    assert_eq!(
        http(port, "/hooks/github", Some((&body, &headers))),
        (202, "reconcile queued\n".to_owned())
    );
    daemon.wait_until("the unreachable remote is reported", || {
        let (code, text) = http(port, "/healthz", None);
        let (_, metrics) = http(port, "/metrics", None);
        code == 200
            && text.contains("degraded: remote unreachable")
            && metrics.contains("gitward_remote_up 0")
            && metrics.contains("gitward_remote_errors_total{operation=\"fetch\"}")
    });
    // The certificates in force are still served: the last head fetched stays applied.
    assert_eq!(host.verify("a").code, 0);

    // Back again: the daemon retries by itself and catches up, no further trigger needed.
    server.restart();
    daemon.wait_until("the second commit's status reaches the remote", || {
        server.has("gitward/status") && status_commits_for(&server, &second) == 1
    });
    assert_eq!(host.verify("b").code, 0);
    daemon.wait_until("health recovers", || {
        http(port, "/healthz", None) == (200, "ok\n".to_owned())
    });
    assert_eq!(status_commits_for(&server, &first), 1);
}

#[test]
fn a_token_file_answers_the_basic_auth_of_a_smart_http_server() {
    let host = host();
    let server = HttpGitServer::start(&host.repo, "gitward", "t0ken");
    let url = server.url();
    host.follow(&url);
    host.credentials("{tokenFile: git-token}");
    let token = host.dir.path().join("git-token");

    // Refused: nothing fetched, so nothing to reconcile and nothing pushed.
    std::fs::write(&token, "not-the-t0ken\n").expect("token");
    let run = host.reconcile(&[]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    // A user name alone may be a token, as forges take them: it is masked too.
    let shown = format!("http://***@127.0.0.1:{}/remote.git", server.port);
    assert!(
        run.stderr.contains(&format!(
            "remote {shown}: fetching: the remote refused the credentials"
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-the-t0ken") && !run.stdout.contains("not-the-t0ken"));
    assert!(!server.has("gitward/status"));
    assert!(!server.has("refs/notes/gitward"));

    std::fs::write(&token, "t0ken\n").expect("token");
    let head = host.repo.git(&["rev-parse", "main"]);
    let run = host.reconcile(&[]).expect(0);
    assert!(!run.stdout.contains("remote:"), "{}", run.stdout);
    assert_eq!(host.verify("a").code, 0);
    assert_applied_on(&server, &head);
}

#[test]
fn an_ssh_key_file_logs_in_to_an_openssh_server_whose_host_key_the_host_lists() {
    use std::os::unix::fs::PermissionsExt;

    let host = host();
    let server = SshGitServer::start(&host.repo);
    let url = server.url();
    host.follow(&url);
    let key = host.dir.path().join("git-key");
    std::fs::copy(server.client_key(), &key).expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    host.credentials("{sshKeyFile: git-key, knownHostsFile: known_hosts}");
    let known_hosts = host.dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "").expect("known_hosts");
    // The host config's known hosts decide, not those of the user gitward runs as: an empty
    // HOME keeps the test's own out.
    let home = host.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let env = [("HOME", home.as_path())];

    // Unknown host key: refused before logging in, so the key is never offered.
    let run = host.reconcile_with_env(&[], &env);
    assert_ne!(run.code, 0, "{}", run.stdout);
    let refused = format!(
        "remote {url}: fetching: the host key of [127.0.0.1]:{} (ssh-ed25519 SHA256:",
        server.port
    );
    assert!(run.stderr.contains(&refused), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("is not in {}", known_hosts.display())),
        "{}",
        run.stderr
    );
    assert!(
        !server.log().contains("Accepted publickey"),
        "{}",
        server.log()
    );
    assert!(!server.has("gitward/status"));

    std::fs::write(&known_hosts, server.known_hosts()).expect("known_hosts");
    let head = host.repo.git(&["rev-parse", "main"]);
    let run = host.reconcile_with_env(&[], &env).expect(0);
    assert!(!run.stdout.contains("remote:"), "{}", run.stdout);
    assert!(
        server.log().contains("Accepted publickey for "),
        "{}",
        server.log()
    );
    assert_eq!(host.verify("a").code, 0);
    assert_applied_on(&server, &head);
}

#[test]
fn a_file_url_is_followed_through_the_mirror_and_watched() {
    let host = host();
    let server = GitServer::start(&host.repo);
    let bare = server.path();
    host.follow(&format!("file://{}", bare.display()));
    let daemon = Daemon::gitward(host.dir.path());
    let first = host.repo.git(&["rev-parse", "main"]);
    daemon.wait_until("the first commit's status is in the remote", || {
        server.has("gitward/status") && status_commits_for(&server, &first) == 1
    });
    // A push to the watched repository is reconciled without a webhook or a poll.
    let b = certificate("b", "  dnsNames: [b.example.com]\n");
    host.repo.write("b.yaml", &b);
    let second = host.repo.commit("Add b");
    host.repo
        .git(&["push", "-q", &bare.to_string_lossy(), "main"]);
    daemon.wait_until("the pushed commit is reconciled", || {
        status_commits_for(&server, &second) == 1
    });
    assert_applied_on(&server, &second);
    assert_eq!(host.verify("b").code, 0);
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            files.push((path, bytes));
        }
    }
    files
}

#[test]
fn a_password_in_the_repo_url_is_masked_in_everything_gitward_says_and_writes() {
    let host = host();
    let secret = "S3cret-in-the-url";
    let server = HttpGitServer::start(&host.repo, "gitward", secret);
    let port = free_port();
    host.config(&format!("listen: 127.0.0.1:{port}\n"));
    // The password in the URL itself: libgit2 answers the server's challenge with it.
    let address = format!("127.0.0.1:{}/remote.git", server.port);
    host.follow(&format!("http://gitward:{secret}@{address}"));
    let masked = format!("http://gitward:***@{address}");
    let mut daemon = Daemon::gitward(host.dir.path());
    let head = host.repo.git(&["rev-parse", "main"]);
    daemon.wait_until("the first commit's status is on the remote", || {
        server.has("gitward/status") && status_commits_for(&server, &head) == 1
    });

    // The password changes on the server: every failure to fetch now names the URL.
    server.set_password("another password");
    daemon.signal(Signal::SIGHUP);
    daemon.wait_until("the refused fetch is reported", || {
        http(port, "/healthz", None).1.contains("degraded")
    });
    let (_, health) = http(port, "/healthz", None);
    assert!(health.contains(&masked), "{health}");
    daemon.wait_until("the last outcome names the fetch error", || {
        http(port, "/status", None)
            .1
            .contains("fetchError\":\"remote")
    });
    let (_, status) = http(port, "/status", None);
    let (_, metrics) = http(port, "/metrics", None);
    daemon.terminate();
    let log = daemon.log();
    assert!(log.contains(&masked), "{log}");
    let once = host.reconcile(&[]);
    assert!(
        once.stdout
            .contains(&format!("remote: remote {masked}: fetching")),
        "{}",
        once.stdout
    );

    let mirror = host.dir.path().join("state/mirror.git");
    let mirror_git = |args: &[&str]| common::tool("git", args, &mirror).stdout;
    let mut said = vec![
        ("/healthz", health),
        ("/status", status),
        ("/metrics", metrics),
        ("the daemon's log", log),
        (
            "reconcile --once",
            format!("{}{}", once.stdout, once.stderr),
        ),
        (
            "the remote's note",
            server.git(&["notes", "--ref=gitward", "show", &head]),
        ),
        (
            "the remote's status branch",
            server.git(&["log", "-p", "gitward/status"]),
        ),
        (
            "the mirror's notes and status",
            mirror_git(&["log", "-p", "gitward/status", "refs/notes/gitward"]),
        ),
    ];
    for (path, bytes) in files_under(&host.dir.path().join("state")) {
        said.push((
            "the state directory",
            format!("{}: {}", path.display(), String::from_utf8_lossy(&bytes)),
        ));
    }
    for (place, text) in said {
        assert!(!text.contains(secret), "{place} holds the password: {text}");
    }
}
