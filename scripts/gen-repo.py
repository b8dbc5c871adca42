#!/usr/bin/env python3
"""Generates a large gitward configuration repository for benchmarks.

    scripts/gen-repo.py DIR [--certificates N] [--change FILES] [--no-policies]
                            [--no-gates] [--no-gate-policy] [--open-window]
                            [--algorithm ALG] [--no-acme]

Writes the example repository plus four more issuing CAs and N certificates (one per file, spread over teams and environments) into DIR, and
commits it on `main` with the `git` CLI. With --change, also commits a second change on
`main` that edits FILES certificates (a new DNS name each), as a pull request would. With
--no-policies, the policies directory is left out, to measure loading and planning alone;
with --no-gates, the gates directory, and with --no-gate-policy the policy that every prod
resource is gated (without gates it denies every prod certificate): both, against the second
alone, measure what gates cost; --open-window keeps the
prod gate's window requirement but opens it at any time, for a daemon measured on any day.
--algorithm gives every certificate that key algorithm (by default they mix five);
--no-acme leaves out the example's ACME issuer and its certificate, for a reconcile that
reaches no ACME server.
"""
import argparse
import os
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "example-repo")
TEAMS = ["payments", "storefront", "search", "identity", "data-platform", "sre", "web", "mobile"]
ALGORITHMS = ["ECDSA-P256", "ECDSA-P256", "ECDSA-P384", "RSA-3072", "Ed25519"]

ISSUER = """apiVersion: gitward/v1
kind: Issuer
metadata:
  name: issuing-{i}
  labels:
    env: {env}
    owner: platform-security
spec:
  ca:
    issuerRef: example-root
    commonName: Example Issuing CA {i}
    keyAlgorithm: ECDSA-P256
    duration: 1825d
    pathLen: 0
    permittedDnsDomains:
      - {domain}
"""

CERTIFICATE = """# {service} for {team} ({env})
apiVersion: gitward/v1
kind: Certificate
metadata:
  name: {name}
  labels:
    env: {env}
    owner: {team}
    exposure: internal
  annotations:
    ticket: PKI-{n}
spec:
  issuerRef: issuing-{issuer}
  dnsNames:
    - {service}.{domain}
    - {service}-{n}.{domain}
  keyAlgorithm: {algorithm}
  duration: 90d
  renewBefore: 30d
  usages: [serverAuth]
  target: web-tls
"""


def git(directory, *args):
    subprocess.run(["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.com", "-c", "gc.auto=0", *args],
                   cwd=directory, check=True, stdout=subprocess.DEVNULL)


def certificate_path(n):
    env = "prod" if n % 3 else "staging"
    return f"certificates/{env}/{TEAMS[n % len(TEAMS)]}/svc-{n:05d}.yaml"


def write_certificate(directory, n, extra_name=None):
    env = "prod" if n % 3 else "staging"
    issuer = (n % 2) + (0 if env == "prod" else 2)
    domain = "example.com" if env == "prod" else "staging.example.com"
    text = CERTIFICATE.format(service=f"svc-{n:05d}", team=TEAMS[n % len(TEAMS)], env=env, name=f"svc-{n:05d}",
                              n=n, issuer=issuer, domain=domain, algorithm=ALGORITHMS[n % len(ALGORITHMS)])
    if extra_name:
        text = text.replace("  keyAlgorithm:", f"    - {extra_name}.{domain}\n  keyAlgorithm:")
    path = os.path.join(directory, certificate_path(n))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--certificates", type=int, default=10000)
    parser.add_argument("--change", type=int, default=0)
    parser.add_argument("--no-policies", action="store_true")
    parser.add_argument("--no-gates", action="store_true")
    parser.add_argument("--no-gate-policy", action="store_true")
    parser.add_argument("--open-window", action="store_true")
    parser.add_argument("--algorithm")
    parser.add_argument("--no-acme", action="store_true")
    args = parser.parse_args()
    if args.algorithm:
        ALGORITHMS[:] = [args.algorithm]
    if os.path.exists(args.dir):
        shutil.rmtree(args.dir)
    left_out = [name for name, out in (("policies", args.no_policies), ("gates", args.no_gates)) if out]
    shutil.copytree(EXAMPLE, args.dir, ignore=shutil.ignore_patterns(*left_out) if left_out else None)
    if args.no_gate_policy and not args.no_policies:
        policies = os.path.join(args.dir, "policies", "policies.yaml")
        with open(policies) as f:
            docs = f.read().split("\n---\n")
        with open(policies, "w") as f:
            f.write("\n---\n".join(d for d in docs if "\n  name: prod-gated\n" not in d))
    if args.open_window and not args.no_gates:
        gate = os.path.join(args.dir, "gates", "prod-changes.yaml")
        with open(gate) as f:
            text = f.read()
        start = text.index("    window:\n")
        end = text.index("    # Renewals", start)
        with open(gate, "w") as f:
            f.write(text[:start] + "    window:\n      timezone: Europe/Berlin\n" + text[end:])
    if args.algorithm:
        for root, _, files in os.walk(os.path.join(args.dir, "certificates")):
            for file in files:
                path = os.path.join(root, file)
                with open(path) as f:
                    text = f.read()
                text = "\n".join(
                    f"  keyAlgorithm: {args.algorithm}" if line.startswith("  keyAlgorithm:") else line
                    for line in text.split("\n"))
                with open(path, "w") as f:
                    f.write(text)
    if args.no_acme:
        os.remove(os.path.join(args.dir, "issuers", "letsencrypt.yaml"))
        os.remove(os.path.join(args.dir, "certificates", "prod", "www.yaml"))
    for i in range(4):
        env = "prod" if i < 2 else "staging"
        domain = "example.com" if env == "prod" else "staging.example.com"
        with open(os.path.join(args.dir, "issuers", f"issuing-{i}.yaml"), "w") as f:
            f.write(ISSUER.format(i=i, env=env, domain=domain))
    for n in range(args.certificates):
        write_certificate(args.dir, n)
    git(args.dir, "init", "-q", "-b", "main")
    git(args.dir, "add", "-A")
    git(args.dir, "commit", "-q", "-m", f"{args.certificates} certificates")
    if args.change:
        step = max(1, args.certificates // args.change)
        for n in range(0, step * args.change, step):
            write_certificate(args.dir, n, extra_name=f"new-{n}")
        git(args.dir, "commit", "-q", "-am", f"Add a DNS name to {args.change} certificates")
    git(args.dir, "gc", "-q")


if __name__ == "__main__":
    main()
