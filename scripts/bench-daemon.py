#!/usr/bin/env python3
"""The daemon following a remote: latency of a webhook-triggered one-file change, idle CPU and
memory.

    scripts/bench-daemon.py BINARY REPO [--changes 50] [--idle 60] [--poll 60s] [--log FILE]
                                        [--approve]

REPO is a repository from scripts/gen-repo.py. It is cloned bare and served by `git daemon` on
loopback; `gitward run` follows it, with a generic webhook. Each change adds a DNS name to one
certificate, is committed in a clone and pushed; as soon as the push is accepted the webhook is
sent, and the time runs until the remote's `gitward/status` records the new commit. Prints one
JSON object: latency p50/p95, CPU seconds per idle minute, RSS now and at peak.

With --approve, the host lists SSH keys of alice@ and bob@example.com as allowed signers, and
each commit (the first one too) is approved by both with `gitward approve` (pushed to the
remote) before it is pushed, so the example's prod gate lets it through: the latency is that
of a gated change that applies.
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

SECRET = b"bench webhook secret"


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
    """The commit the remote's status branch records, or None."""
    try:
        summary = git(bare, "show", "gitward/status:summary.yaml")
    except subprocess.CalledProcessError:
        return None
    match = re.search(r"^source: (\w+)", summary, re.M)
    return match and match.group(1)


def ref_file(bare, name):
    try:
        with open(os.path.join(bare, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(value.split()[0])
    return values


def notify(port, sha, n):
    body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
    signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/generic", data=body, method="POST",
        headers={"X-Signature-256": signature, "X-Delivery-Id": f"bench-{n}"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 202, response.status


def make_approvers(host):
    """Ed25519 keys of two approvers in HOST/keys, listed in HOST/allowed_signers."""
    keys = os.path.join(host, "keys")
    os.makedirs(keys)
    approvers, allowed = [], []
    for name in ("alice", "bob"):
        key = os.path.join(keys, name)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        with open(key + ".pub") as f:
            public = " ".join(f.read().split()[:2])
        approvers.append((f"{name}@example.com", key))
        allowed.append(f"{name}@example.com {public}\n")
    with open(os.path.join(host, "allowed_signers"), "w") as f:
        f.writelines(allowed)
    return approvers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("repo")
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--idle", type=float, default=60)
    parser.add_argument("--poll", default="60s", help="the host config's pollInterval")
    parser.add_argument("--log", help="keep the daemon's log in this file")
    parser.add_argument("--approve", action="store_true",
                        help="sign approvals of every commit by two listed approvers")
    args = parser.parse_args()
    args.binary = os.path.abspath(args.binary)

    work = tempfile.mkdtemp(prefix="gitward-bench-daemon-")
    processes = []
    try:
        bare = os.path.join(work, "remote.git")
        # The configuration only: status a benchmark left in REPO is not this daemon's record.
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
        approvers = make_approvers(host) if args.approve else []
        signers = "signers: {allowedSignersFile: allowed_signers}\n" if args.approve else ""
        with open(os.path.join(host, "gitward.yaml"), "w") as f:
            f.write(f"""{signers}repo:
  url: git://127.0.0.1:{git_port}/remote.git
  branch: main
  pollInterval: {args.poll}
stateDir: state
listen: 127.0.0.1:{listen}
webhooks:
  generic: {{secretFile: secret}}
targets:
  web-tls: {{dir: out/web-tls}}
  internal-tls: {{dir: out/internal-tls}}
  mtls-clients: {{dir: out/mtls-clients}}
""")
        approve = lambda: [subprocess.run(
            [args.binary, "approve", "HEAD", "--key", key, "--as", principal],
            cwd=clone, check=True, capture_output=True) for principal, key in approvers]
        approve()
        log = open(os.path.join(work, "daemon.log"), "w")
        daemon = subprocess.Popen([args.binary, "run", "--config", "gitward.yaml"], cwd=host,
                                  stdout=log, stderr=log)
        processes.append(daemon)
        head = git(clone, "rev-parse", "HEAD")
        started = time.monotonic()
        wait_for("the first reconcile", lambda: status_source(bare) == head)
        cold = time.monotonic() - started

        latencies = []
        for n in range(args.changes):
            path = next(os.path.join(root, name)
                        for root, _, names in sorted(os.walk(os.path.join(clone, "certificates")))
                        for name in sorted(names) if name == f"svc-{n:05d}.yaml")
            with open(path) as f:
                text = f.read()
            domain = re.search(r"^    - svc-\d+\.(\S+)$", text, re.M).group(1)
            with open(path, "w") as f:
                f.write(text.replace("  keyAlgorithm:", f"    - bench-{n}.{domain}\n  keyAlgorithm:", 1))
            git(clone, "commit", "-qam", f"Add a name to svc-{n:05d}")
            sha = git(clone, "rev-parse", "HEAD")
            approve()
            before = ref_file(bare, "refs/heads/gitward/status")
            git(clone, "push", "-q", "origin", "main")
            accepted = time.monotonic()
            notify(listen, sha, n)
            wait_for(f"change {n}", lambda: ref_file(bare, "refs/heads/gitward/status") != before
                     and status_source(bare) == sha, timeout=120)
            latencies.append(time.monotonic() - accepted)

        cpu_before = cpu_seconds(daemon.pid)
        time.sleep(args.idle)
        idle_cpu = (cpu_seconds(daemon.pid) - cpu_before) * 60 / args.idle
        memory = memory_kib(daemon.pid)
        latencies.sort()
        print(json.dumps({
            "certificates": len([1 for _, _, names in os.walk(os.path.join(clone, "certificates"))
                                 for name in names if name.endswith(".yaml")]),
            "first_reconcile_s": round(cold, 2),
            "changes": len(latencies),
            "p50_s": round(statistics.median(latencies), 4),
            "p95_s": round(latencies[max(0, round(0.95 * len(latencies)) - 1)], 4),
            "idle_cpu_s_per_min": round(idle_cpu, 4),
            "rss_mib": round(memory["VmRSS"] / 1024, 1),
            "peak_rss_mib": round(memory["VmHWM"] / 1024, 1),
        }))
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait()
        if args.log:
            shutil.copy(os.path.join(work, "daemon.log"), args.log)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
