#!/usr/bin/env python3
"""The daemon's deliveries: from a commit to its event at the receiver, and a backlog of
100,000 events with the receiver down (RSS growth, idle CPU).

    scripts/bench-events.py BINARY REPO [--changes 20] [--backlog 100000] [--idle 60]

REPO is a repository from scripts/gen-repo.py (without gates: the latency is that of a change
that applies). It is copied, a webhook sink is added, and `gitward run` follows the copy in
place (file-system notification). A receiver on loopback takes the webhook's events.

1. Latency: each change adds a DNS name to one certificate and is committed; the time runs
   from `git commit` returning until the receiver has that certificate's `certificate.reissued`
   event — the reconcile and the status commit included, so an upper bound of the time from
   the status commit to the receiver.
2. Backlog: the daemon is stopped, the receiver too, and BACKLOG events are added to the
   outbox; the daemon is started again with its receiver down. After it settled, RSS and CPU
   time are sampled over IDLE seconds, and compared with the same daemon without a backlog.
Prints one JSON object.
"""

import argparse
import http.server
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """Takes every POST, answers 204, records (arrival time, event)."""

    def __init__(self, port):
        self.events = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                arrived = time.monotonic()
                with outer.lock:
                    outer.events.append((arrived, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def find(self, subject, after):
        with self.lock:
            for arrived, event in self.events:
                if (
                    arrived >= after
                    and event["subject"] == subject
                    and event["type"] == "dev.gitward.certificate.reissued"
                ):
                    return arrived
        return None


def git(repo, *args):
    subprocess.run(
        ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def proc_stat(pid):
    """(CPU seconds, RSS KiB) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return cpu, rss


def wait_ready(port, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
                if b" 200 " in s.recv(100):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("the daemon did not become ready")


def idle(daemon, seconds):
    """CPU seconds used and RSS at the end of `seconds` of idling."""
    cpu_before, _ = proc_stat(daemon.pid)
    time.sleep(seconds)
    cpu_after, rss = proc_stat(daemon.pid)
    return cpu_after - cpu_before, rss


def add_backlog(state_db, count):
    """`count` copies of a delivered-looking event, each with its own id, in the outbox."""
    db = sqlite3.connect(state_db)
    db.execute("PRAGMA journal_mode = WAL")
    body = {
        "specversion": "1.0",
        "type": "dev.gitward.certificate.issued",
        "source": "file:///bench",
        "subject": "Certificate/svc-00000",
        "time": "2026-11-27T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "severity": "low",
            "resource": {"kind": "Certificate", "name": "svc-00000", "file": "certificates/svc.yaml", "line": 1},
            "commit": {"sha": "0" * 40, "author": "Bench <bench@example.com>"},
            "message": "Certificate svc-00000 issued",
            "details": {"serial": "01:02:03", "notAfter": "2027-02-25T12:00:00Z"},
            "compliance": [],
            "fingerprint": "Certificate/svc-00000",
        },
    }
    now = int(time.time())
    rows = []
    for n in range(count):
        body["id"] = f"bench-{n:08d}"
        rows.append((body["id"], "certificate.issued", 1, 0, now, json.dumps(body)))
    db.executemany(
        "INSERT INTO events (id, type, severity, clears, time, body) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.commit()
    db.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("repo")
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--idle", type=int, default=60)
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    work = tempfile.mkdtemp(prefix="gitward-bench-events-")
    repo = os.path.join(work, "repo")
    shutil.copytree(args.repo, repo, symlinks=True)
    with open(os.path.join(repo, "sinks", "bench.yaml"), "w") as f:
        f.write(
            "apiVersion: gitward/v1\nkind: Sink\nmetadata: {name: bench-hook}\n"
            "spec: {type: webhook, endpoint: bench-hook, minSeverity: info}\n"
        )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "A webhook sink for the benchmark")
    host = os.path.join(work, "host")
    os.makedirs(host)
    with open(os.path.join(host, "hook-secret"), "w") as f:
        f.write(SECRET)
    listen, hook = free_port(), free_port()
    with open(os.path.join(host, "gitward.yaml"), "w") as f:
        f.write(
            f"repo: {{url: {repo}, branch: main, pollInterval: 1h}}\nstateDir: state\n"
            f"listen: 127.0.0.1:{listen}\n"
            "targets:\n  web-tls: {dir: out/web}\n  internal-tls: {dir: out/internal}\n"
            "  mtls-clients: {dir: out/mtls}\n"
            f"endpoints:\n  bench-hook: {{url: \"http://127.0.0.1:{hook}/hook\", secretFile: hook-secret}}\n"
        )
    log = open(os.path.join(work, "daemon.log"), "w")

    def start():
        daemon = subprocess.Popen(
            [binary, "run", "--config", "gitward.yaml", "--log-format", "json"],
            cwd=host,
            stdout=log,
            stderr=log,
        )
        wait_ready(listen)
        return daemon

    receiver = Receiver(hook)
    daemon = start()
    # Let the first reconcile's events go out before measuring.
    time.sleep(3)
    latencies = []
    certificates = sorted(
        os.path.join(dirpath, name)
        for dirpath, _, names in os.walk(os.path.join(repo, "certificates"))
        for name in names
        if name.endswith(".yaml")
    )
    for n in range(args.changes):
        path = certificates[n % len(certificates)]
        with open(path) as f:
            text = f.read()
        name = text.split("name: ", 1)[1].split()[0].strip(",}")
        text = text.replace("dnsNames: [", f"dnsNames: [bench-{n}.example.com, ", 1)
        with open(path, "w") as f:
            f.write(text)
        git(repo, "commit", "-qam", f"Change {n}")
        committed = time.monotonic()
        deadline = committed + 120
        while (arrived := receiver.find(f"Certificate/{name}", committed)) is None:
            if time.monotonic() > deadline:
                sys.exit(f"change {n}: no event for {name}; see {work}/daemon.log")
            time.sleep(0.002)
        latencies.append((arrived - committed) * 1000)
    # Without a backlog: the baseline of RSS and idle CPU, receiver up.
    time.sleep(3)
    baseline_cpu, baseline_rss = idle(daemon, args.idle)
    daemon.terminate()
    daemon.wait()
    receiver.stop()
    add_backlog(os.path.join(host, "state", "gitward.db"), args.backlog)
    daemon = start()
    time.sleep(10)
    _, settled_rss = proc_stat(daemon.pid)
    backlog_cpu, backlog_rss = idle(daemon, args.idle)
    daemon.terminate()
    daemon.wait()
    out = subprocess.run(
        [binary, "sinks", "status", "--config", "gitward.yaml", "--format", "json"],
        cwd=host,
        capture_output=True,
        text=True,
        check=True,
    )
    backlog = next(s["backlog"] for s in json.loads(out.stdout) if s["name"] == "bench-hook")
    latencies.sort()
    print(
        json.dumps(
            {
                "changes": args.changes,
                "latency_ms_p50": round(statistics.median(latencies), 1),
                "latency_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1], 1),
                "baseline_rss_mib": round(baseline_rss / 1024, 1),
                "baseline_cpu_s_per_min": round(baseline_cpu * 60 / args.idle, 3),
                "backlog_events": backlog,
                "backlog_rss_mib_settled": round(settled_rss / 1024, 1),
                "backlog_rss_mib": round(backlog_rss / 1024, 1),
                "backlog_rss_growth_mib": round((backlog_rss - baseline_rss) / 1024, 1),
                "backlog_cpu_s_per_min": round(backlog_cpu * 60 / args.idle, 3),
            }
        )
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
