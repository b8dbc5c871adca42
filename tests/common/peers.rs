//! Real peers started by the tests: Let's Encrypt's `pebble` ACME server with its DNS
//! stand-in, `nginx`, and Git servers. Each runs from the Debian package on loopback ports of
//! its own and is killed when the test drops it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tool;

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A program running in the background, with its output in a log file.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn spawn(program: &str, args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Daemon {
        let log = dir.join(format!(
            "{}.log",
            Path::new(program)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program} ({e}); scripts/test.sh installs it"));
        Daemon { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `gitward run` with the host config `gitward.yaml` in `dir`, logging JSON.
    pub fn gitward(dir: &Path) -> Daemon {
        Daemon::spawn(
            env!("CARGO_BIN_EXE_gitward"),
            &["run", "--config", "gitward.yaml", "--log-format", "json"],
            dir,
            &[],
        )
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the daemon");
    }

    /// Waits for the daemon to exit; returns its exit code.
    pub fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `done` until it holds; fails with the daemon's log after a minute.
    pub fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "{what}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the daemon accepts connections on `port`; fails if it exits first.
    pub fn wait_for(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("exited with {status} before listening:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "not listening on {port}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Asks the program to exit (SIGTERM) and waits a while for it to.
    pub fn terminate(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a CA and a `localhost` certificate signed by it with the `openssl` CLI: the TLS
/// identity of a peer. Returns (CA file, certificate file, key file).
pub fn localhost_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let (ca, ca_key, cert, key, ext) = (
        path("tls-ca.pem"),
        path("tls-ca.key"),
        path("tls.pem"),
        path("tls.key"),
        path("tls.ext"),
    );
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext file");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509", "-days", "2", "-subj", "/CN=Peer Test CA"];
    args.extend(ec);
    args.extend(["-keyout", &ca_key, "-out", &ca]);
    tool("openssl", &args, dir).expect(0);
    let csr = path("tls.csr");
    let mut args = vec!["req", "-new", "-subj", "/CN=localhost"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr]);
    tool("openssl", &args, dir).expect(0);
    tool(
        "openssl",
        &[
            "x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-days", "2", "-extfile",
            &ext, "-out", &cert,
        ],
        dir,
    )
    .expect(0);
    (ca.into(), cert.into(), key.into())
}

/// Let's Encrypt's test ACME server, resolving every name to 127.0.0.1 through
/// `pebble-challtestsrv`, validating http-01 for real on `http_port`.
pub struct Pebble {
    /// The directory URL.
    pub directory: String,
    /// The port pebble connects to for http-01 challenges.
    pub http_port: u16,
    /// The CA of pebble's own TLS certificate (an ACME client's trusted root).
    pub tls_ca: PathBuf,
    management: u16,
    _dns: Daemon,
    server: Daemon,
}

impl Pebble {
    pub fn start(dir: &Path) -> Pebble {
        let (tls_ca, cert, key) = localhost_tls(dir);
        let (dns_port, dns_management) = (free_port(), free_port());
        let dns = Daemon::spawn(
            "pebble-challtestsrv",
            &[
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-management",
                &format!("127.0.0.1:{dns_management}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv6",
                "",
                "-defaultIPv4",
                "127.0.0.1",
            ],
            dir,
            &[],
        );
        let (listen, management, http_port) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        let config_file = dir.join("pebble.json");
        std::fs::write(&config_file, config.to_string()).expect("pebble config");
        let mut server = Daemon::spawn(
            "pebble",
            &[
                "-config",
                &config_file.to_string_lossy(),
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
            ],
            dir,
            // No artificial validation delay, and no nonces rejected at random: the tests
            // are about gitward, not about retries.
            &[("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0")],
        );
        server.wait_for(listen);
        server.wait_for(management);
        Pebble {
            directory: format!("https://localhost:{listen}/dir"),
            http_port,
            tls_ca,
            management,
            _dns: dns,
            server,
        }
    }

    /// How many certificates pebble has issued so far, from its log.
    pub fn issued(&self) -> usize {
        self.server
            .log()
            .matches("Issued certificate serial")
            .count()
    }

    /// The root pebble issues under (it makes a new one at each start).
    pub fn issuing_root(&self, dir: &Path) -> PathBuf {
        let file = dir.join("pebble-root.pem");
        let url = format!("https://localhost:{}/roots/0", self.management);
        let tls_ca = self.tls_ca.to_string_lossy();
        let file_arg = file.to_string_lossy();
        tool(
            "curl",
            &["-sSf", "--cacert", &tls_ca, "-o", &file_arg, &url],
            dir,
        )
        .expect(0);
        file
    }
}

/// nginx serving `cert_dir`'s fullchain.pem and key.pem over TLS on a loopback port.
pub struct Nginx {
    pub port: u16,
    /// The command that reloads it, for a target's `reload`.
    pub reload: Vec<String>,
    _server: NginxMaster,
}

impl Nginx {
    pub fn start(dir: &Path, cert_dir: &Path) -> Nginx {
        let port = free_port();
        let c = cert_dir.to_string_lossy();
        let server = format!(
            "listen 127.0.0.1:{port} ssl;\n    ssl_certificate {c}/fullchain.pem;\n    ssl_certificate_key {c}/key.pem;\n    location / {{ return 200 \"ok\\n\"; }}"
        );
        let (server, args) = run_nginx(dir, port, &server);
        let mut reload = vec!["/usr/sbin/nginx".to_owned()];
        reload.extend(args);
        reload.extend(["-s".to_owned(), "reload".to_owned()]);
        Nginx {
            port,
            reload,
            _server: server,
        }
    }
}

/// nginx's master process. Killed outright it would leave its workers serving, so it is asked
/// to stop, which it passes on to them.
struct NginxMaster(Daemon);

impl Drop for NginxMaster {
    fn drop(&mut self) {
        self.0.terminate();
    }
}

/// Runs nginx with its prefix in `dir/nginx` and `server` as the body of its one server
/// block; returns it once listening on `port`, with the `-p`/`-c` arguments that address it.
fn run_nginx(dir: &Path, port: u16, server: &str) -> (NginxMaster, Vec<String>) {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).expect("nginx dir");
    let p = prefix.to_string_lossy();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
         server {{\n    {server}\n  }}\n}}\n"
    );
    let conf_file = prefix.join("nginx.conf");
    std::fs::write(&conf_file, conf).expect("nginx config");
    let args = vec![
        "-p".to_owned(),
        p.into_owned(),
        "-c".to_owned(),
        conf_file.to_string_lossy().into_owned(),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Daemon::spawn("/usr/sbin/nginx", &argv, dir, &[]);
    server.wait_for(port);
    (NginxMaster(server), args)
}

/// A POST: the body and its headers.
pub type Post<'a> = (&'a [u8], &'a [(&'a str, &'a str)]);

/// `curl`s `path` on a loopback port; returns (HTTP status, body).
pub fn http(port: u16, path: &str, post: Option<Post<'_>>) -> (u16, String) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let response = scratch.path().join("response");
    let request = scratch.path().join("request");
    let mut args: Vec<String> = vec![
        "-s".into(),
        "--max-time".into(),
        "60".into(),
        "-o".into(),
        response.to_string_lossy().into_owned(),
        "-w".into(),
        "%{http_code}".into(),
    ];
    if let Some((body, headers)) = post {
        std::fs::write(&request, body).expect("request body");
        args.push("--data-binary".into());
        args.push(format!("@{}", request.display()));
        for (name, value) in headers {
            args.push("-H".into());
            args.push(format!("{name}: {value}"));
        }
    }
    args.push(format!("http://127.0.0.1:{port}{path}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = tool("curl", &args, scratch.path());
    let code = run.stdout.trim().parse().unwrap_or(0);
    (code, std::fs::read_to_string(&response).unwrap_or_default())
}

/// `sha256=<hex HMAC-SHA256>` of `body` with `secret`, as the webhooks sign.
pub fn signed_with(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A bare repository served by `git daemon` with pushes enabled: the remote a host follows.
pub struct GitServer {
    dir: tempfile::TempDir,
    pub port: u16,
    daemon: Option<Daemon>,
}

impl GitServer {
    /// Serves a bare copy of `seed`'s `main`.
    pub fn start(seed: &super::TestRepo) -> GitServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = GitServer {
            port: free_port(),
            dir,
            daemon: None,
        };
        seed_bare(&server.path(), seed);
        server.restart();
        server
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    pub fn url(&self) -> String {
        format!("git://127.0.0.1:{}/remote.git", self.port)
    }

    /// Runs `git` in the bare repository.
    pub fn git(&self, args: &[&str]) -> String {
        bare_git(&self.path(), args)
    }

    /// Whether the remote has `rev`.
    pub fn has(&self, rev: &str) -> bool {
        tool("git", &["rev-parse", "-q", "--verify", rev], &self.path()).code == 0
    }

    pub fn stop(&mut self) {
        self.daemon = None;
    }

    /// Starts serving again on the same port.
    pub fn restart(&mut self) {
        let port = self.port.to_string();
        let base = self.dir.path().to_string_lossy().into_owned();
        // The program itself: `git daemon` would run it as a child that outlives a kill.
        let mut daemon = Daemon::spawn(
            "/usr/lib/git-core/git-daemon",
            &[
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={base}"),
                &base,
            ],
            self.dir.path(),
            &[],
        );
        daemon.wait_for(self.port);
        self.daemon = Some(daemon);
    }
}

/// Makes `path` a bare repository holding `seed`'s `main`.
fn seed_bare(path: &Path, seed: &super::TestRepo) {
    bare_git(path, &["init", "-q", "--bare", "-b", "main"]);
    seed.git(&["push", "-q", &path.to_string_lossy(), "main"]);
}

/// Runs `git` in the bare repository at `path`; returns its trimmed output.
fn bare_git(path: &Path, args: &[&str]) -> String {
    std::fs::create_dir_all(path).expect("mkdir");
    let run = tool("git", args, path);
    assert_eq!(run.code, 0, "git {args:?}: {}", run.stderr);
    run.stdout.trim().to_owned()
}

/// A bare repository served over smart HTTP, pushes enabled: `git http-backend` run by
/// `fcgiwrap` behind nginx, which asks for HTTP basic auth on every request.
pub struct HttpGitServer {
    dir: tempfile::TempDir,
    pub port: u16,
    user: String,
    _nginx: NginxMaster,
    _fcgiwrap: Daemon,
}

impl HttpGitServer {
    /// Serves a bare copy of `seed`'s `main` to `user` with `password`.
    pub fn start(seed: &super::TestRepo, user: &str, password: &str) -> HttpGitServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let repo = root.join("remote.git");
        seed_bare(&repo, seed);
        bare_git(&repo, &["config", "http.receivepack", "true"]);
        let hash = tool("openssl", &["passwd", "-apr1", password], root).expect(0);
        let users = root.join("htpasswd");
        std::fs::write(&users, format!("{user}:{}\n", hash.stdout.trim())).expect("htpasswd");

        let fcgi_port = free_port();
        let mut fcgiwrap = Daemon::spawn(
            "/usr/sbin/fcgiwrap",
            &["-s", &format!("tcp:127.0.0.1:{fcgi_port}")],
            root,
            &[],
        );
        fcgiwrap.wait_for(fcgi_port);
        let port = free_port();
        let (r, u) = (root.to_string_lossy(), users.to_string_lossy());
        // REMOTE_USER as a web server passes it: git-http-backend names the pusher after it.
        let server = format!(
            "listen 127.0.0.1:{port};\n    client_max_body_size 0;\n    auth_basic git;\n    auth_basic_user_file {u};\n    \
             location / {{\n      \
               fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;\n      \
               fastcgi_param GIT_PROJECT_ROOT {r};\n      \
               fastcgi_param GIT_HTTP_EXPORT_ALL \"\";\n      \
               fastcgi_param PATH_INFO $uri;\n      \
               fastcgi_param QUERY_STRING $query_string;\n      \
               fastcgi_param REQUEST_METHOD $request_method;\n      \
               fastcgi_param CONTENT_TYPE $content_type;\n      \
               fastcgi_param CONTENT_LENGTH $content_length;\n      \
               fastcgi_param REMOTE_USER $remote_user;\n      \
               fastcgi_pass 127.0.0.1:{fcgi_port};\n    }}"
        );
        let (nginx, _) = run_nginx(root, port, &server);
        HttpGitServer {
            dir,
            port,
            user: user.to_owned(),
            _nginx: nginx,
            _fcgiwrap: fcgiwrap,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    /// From now on, only `password` lets the user in (nginx reads the file on each request).
    pub fn set_password(&self, password: &str) {
        let root = self.dir.path();
        let hash = tool("openssl", &["passwd", "-apr1", password], root).expect(0);
        let users = format!("{}:{}\n", self.user, hash.stdout.trim());
        std::fs::write(root.join("htpasswd"), users).expect("htpasswd");
    }

    /// The repository's URL, naming the user (the password is for the client to give).
    pub fn url(&self) -> String {
        format!("http://{}@127.0.0.1:{}/remote.git", self.user, self.port)
    }

    /// Runs `git` in the bare repository.
    pub fn git(&self, args: &[&str]) -> String {
        bare_git(&self.path(), args)
    }

    /// Whether the repository has `rev`.
    pub fn has(&self, rev: &str) -> bool {
        tool("git", &["rev-parse", "-q", "--verify", rev], &self.path()).code == 0
    }
}

/// A bare repository served over SSH by OpenSSH's `sshd` on a loopback port, to the user
/// running the tests, who logs in with a key of its own (no password, no agent). Its host
/// key is new at each start: a client trusts it only through [`SshGitServer::known_hosts`].
pub struct SshGitServer {
    dir: tempfile::TempDir,
    pub port: u16,
    user: String,
    sshd: Daemon,
}

impl SshGitServer {
    /// Serves a bare copy of `seed`'s `main`.
    pub fn start(seed: &super::TestRepo) -> SshGitServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        seed_bare(&root.join("remote.git"), seed);
        let user = tool("whoami", &[], root).expect(0).stdout.trim().to_owned();
        for key in ["host-key", "client-key"] {
            // Ed25519 in OpenSSH's own format: libssh2 (bundled, OpenSSL backend) reads it.
            tool(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-C", key, "-f", key],
                root,
            )
            .expect(0);
        }
        std::fs::copy(root.join("client-key.pub"), root.join("authorized_keys"))
            .expect("authorized_keys");
        // sshd keeps its privilege separation in /run/sshd, which only the package's service
        // makes.
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");

        let port = free_port();
        let r = root.to_string_lossy();
        let config = root.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {r}/host-key\n\
                 AuthorizedKeysFile {r}/authorized_keys\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 PidFile {r}/sshd.pid\nLogLevel VERBOSE\n"
            ),
        )
        .expect("sshd_config");
        // An absolute path: sshd re-executes itself for each connection.
        let mut sshd = Daemon::spawn(
            "/usr/sbin/sshd",
            &["-D", "-e", "-f", &config.to_string_lossy()],
            root,
            &[],
        );
        sshd.wait_for(port);
        SshGitServer {
            dir,
            port,
            user,
            sshd,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    /// The repository's URL: the login user, the port, and the absolute path.
    pub fn url(&self) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            self.path().display()
        )
    }

    /// The private key the server accepts for its user.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client-key")
    }

    /// A `known_hosts` line trusting the server's host key on its port, as OpenSSH writes
    /// one for a port other than 22.
    pub fn known_hosts(&self) -> String {
        let public =
            std::fs::read_to_string(self.dir.path().join("host-key.pub")).expect("host public key");
        let mut fields = public.split_whitespace();
        let (kind, key) = (fields.next().expect("type"), fields.next().expect("key"));
        format!("[127.0.0.1]:{} {kind} {key}\n", self.port)
    }

    /// What sshd logged (`-e`: its log goes to stderr).
    pub fn log(&self) -> String {
        self.sshd.log()
    }

    /// Runs `git` in the bare repository.
    pub fn git(&self, args: &[&str]) -> String {
        bare_git(&self.path(), args)
    }

    /// Whether the repository has `rev`.
    pub fn has(&self, rev: &str) -> bool {
        tool("git", &["rev-parse", "-q", "--verify", rev], &self.path()).code == 0
    }
}
