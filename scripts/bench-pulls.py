#!/usr/bin/env python3
"""The daemon planning pull requests (no CI): from a signed GitHub `pull_request` delivery to
the `gitward/plan` commit status at a stand-in of GitHub's API.

    scripts/bench-pulls.py BINARY REPO [--pulls 20] [--files 10] [--log FILE]

REPO is a repository from scripts/gen-repo.py. It is cloned bare and served by `git daemon` on
loopback; `gitward run` follows it, with GitHub as its forge (a loopback stand-in answering
statuses and issue comments as GitHub does) and a GitHub webhook secret. After the first
reconcile, each pull request changes FILES certificates (a DNS name each) on a branch of its
own, is pushed as `refs/pull/N/head` (where GitHub keeps a pull request's head), and the
delivery is sent; the time runs until the stand-in receives the status. Prints one JSON
object: latency p50/p95, and the same for the comment.
"""

import argparse
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SECRET = b"bench pull request secret"
TOKEN = "ghs_bench-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(directory, *args):
    return subprocess.run(
        ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.com", "-c", "gc.auto=0", *args],
        cwd=directory, check=True, capture_output=True, text=True).stdout.strip()


def wait_for(what, done, timeout=900):
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.002)


def status_source(bare):
    try:
        summary = git(bare, "show", "gitward/status:summary.yaml")
    except subprocess.CalledProcessError:
        return None
    match = re.search(r"^source: (\w+)", summary, re.M)
    return match and match.group(1)


class GitHub(http.server.BaseHTTPRequestHandler):
    """Commit statuses and issue comments, as GitHub answers them; arrival times kept."""

    statuses = {}
    comments = {}
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")

    def do_GET(self):
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.answer(401, {"message": "Bad credentials"})
        if self.path == "/user":
            return self.answer(403, {"message": "Resource not accessible by integration"})
        match = re.match(r"/repos/acme/pki/issues/(\d+)/comments", self.path)
        if match:
            with self.lock:
                listed = [{"id": c, "body": b, "user": {"login": "github-actions[bot]", "type": "Bot"}}
                          for c, (n, b) in self.comments.items() if n == int(match.group(1))]
            return self.answer(200, listed)
        self.answer(404, {"message": "Not Found"})

    def do_POST(self):
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.answer(401, {"message": "Bad credentials"})
        now = time.monotonic()
        body = self.body()
        match = re.match(r"/repos/acme/pki/statuses/(\w+)", self.path)
        if match:
            with self.lock:
                self.statuses[match.group(1)] = (now, body)
            return self.answer(201, body)
        match = re.match(r"/repos/acme/pki/issues/(\d+)/comments", self.path)
        if match:
            with self.lock:
                self.comments[len(self.comments) + 1] = (int(match.group(1)), body["body"])
                self.comments[("at", int(match.group(1)))] = (now, "")
            return self.answer(201, {"id": len(self.comments)})
        self.answer(404, {"message": "Not Found"})


def deliver(port, number, head):
    body = json.dumps({"action": "synchronize", "number": number,
                       "pull_request": {"number": number, "head": {"sha": head},
                                        "base": {"ref": "main"}}}).encode()
    signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/github", data=body, method="POST",
        headers={"X-Hub-Signature-256": signature, "X-GitHub-Event": "pull_request",
                 "X-GitHub-Delivery": f"bench-{number}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 202, response.status


def change(clone, n, files):
    """Adds a DNS name to FILES certificates, on branch pr-N off main; returns its head."""
    git(clone, "checkout", "-q", "-B", f"pr-{n}", "main")
    paths = sorted(os.path.join(root, name)
                   for root, _, names in os.walk(os.path.join(clone, "certificates"))
                   for name in names if re.match(r"svc-\d+\.yaml$", name))
    for i, path in enumerate(paths[n * files:(n + 1) * files]):
        with open(path) as f:
            text = f.read()
        domain = re.search(r"^    - svc-\d+\.(\S+)$", text, re.M).group(1)
        with open(path, "w") as f:
            f.write(text.replace("  keyAlgorithm:", f"    - pr-{n}-{i}.{domain}\n  keyAlgorithm:", 1))
    git(clone, "commit", "-qam", f"Pull request {n}")
    return git(clone, "rev-parse", "HEAD")


def percentile(values, share):
    values = sorted(values)
    return values[max(0, round(share * len(values)) - 1)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("repo")
    parser.add_argument("--pulls", type=int, default=20)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--log", help="keep the daemon's log in this file")
    args = parser.parse_args()
    args.binary = os.path.abspath(args.binary)

    work = tempfile.mkdtemp(prefix="gitward-bench-pulls-")
    processes = []
    forge = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GitHub)
    threading.Thread(target=forge.serve_forever, daemon=True).start()
    try:
        bare = os.path.join(work, "remote.git")
        subprocess.run(["git", "clone", "-q", "--bare", "--single-branch", args.repo, bare], check=True)
        clone = os.path.join(work, "clone")
        subprocess.run(["git", "clone", "-q", bare, clone], check=True)
        git_port, listen = free_port(), free_port()
        processes.append(subprocess.Popen(
            ["/usr/lib/git-core/git-daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
             "--listen=127.0.0.1", f"--port={git_port}", f"--base-path={work}", work],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        host = os.path.join(work, "host")
        os.makedirs(host)
        with open(os.path.join(host, "secret"), "wb") as f:
            f.write(SECRET)
        with open(os.path.join(host, "forge-token"), "w") as f:
            f.write(TOKEN)
        with open(os.path.join(host, "gitward.yaml"), "w") as f:
            f.write(f"""repo:
  url: git://127.0.0.1:{git_port}/remote.git
  branch: main
  pollInterval: 1h
stateDir: state
listen: 127.0.0.1:{listen}
webhooks:
  github: {{secretFile: secret}}
endpoints:
  github-api: {{url: "http://127.0.0.1:{forge.server_address[1]}", tokenFile: forge-token}}
forge: {{type: github, endpoint: github-api, repository: acme/pki}}
targets:
  web-tls: {{dir: out/web-tls}}
  internal-tls: {{dir: out/internal-tls}}
  mtls-clients: {{dir: out/mtls-clients}}
""")
        log = open(os.path.join(work, "daemon.log"), "w")
        daemon = subprocess.Popen([args.binary, "run", "--config", "gitward.yaml"], cwd=host,
                                  stdout=log, stderr=log)
        processes.append(daemon)
        head = git(clone, "rev-parse", "HEAD")
        wait_for("the first reconcile", lambda: status_source(bare) == head)

        statuses, comments = [], []
        for n in range(1, args.pulls + 1):
            sha = change(clone, n, args.files)
            git(clone, "push", "-q", "origin", f"HEAD:refs/pull/{n}/head")
            sent = time.monotonic()
            deliver(listen, n, sha)
            wait_for(f"pull request {n}", lambda: sha in GitHub.statuses
                     and ("at", n) in GitHub.comments, timeout=120)
            statuses.append(GitHub.statuses[sha][0] - sent)
            comments.append(GitHub.comments[("at", n)][0] - sent)
            state = GitHub.statuses[sha][1]["state"]
            if n == 1:
                print(f"first plan: {state}: {GitHub.statuses[sha][1]['description']}", file=sys.stderr)
        print(json.dumps({
            "certificates": len([1 for _, _, names in os.walk(os.path.join(clone, "certificates"))
                                 for name in names if name.endswith(".yaml")]),
            "pulls": len(statuses),
            "files_changed": args.files,
            "status_p50_s": round(statistics.median(statuses), 4),
            "status_p95_s": round(percentile(statuses, 0.95), 4),
            "comment_p50_s": round(statistics.median(comments), 4),
        }))
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait()
        forge.shutdown()
        if args.log:
            shutil.copy(os.path.join(work, "daemon.log"), args.log)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
