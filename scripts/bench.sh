#!/usr/bin/env bash
# Benchmarks on 10,000-certificate repositories, every ratio measured within one run.
#
#   scripts/bench.sh [CERTIFICATES]
#
# 1. Loading and planning (no policies): `validate --rev HEAD` and `plan` of a 10-file
#    change, timed with hyperfine, peak RSS with /usr/bin/time.
# 2. Policies (the example's policy library): evaluations per second against a bare
#    regorus loop, and `plan` against validate + one full evaluation (benches/policy.rs).
# 3. Reconcile (ECDSA-P256 everywhere, no ACME): a cold reconcile against its floor (rcgen
#    generating and signing the same certificates in a loop, plus the same atomic writes) and
#    against the openssl CLI issuing 1,000 by hand; a no-op re-reconcile against the cold one
#    (benches/reconcile.rs).
# 4. ACME: 20 certificates from pebble, gitward against certbot (scripts/bench-acme.sh).
# 5. The daemon following a remote (`git daemon`): a webhook-triggered one-file change, from
#    the push being accepted to the status on the remote, p50/p95 over 50 changes, in a
#    100-certificate and the large repository, with the example's gates in force and every
#    change approved; idle CPU and RSS (scripts/bench-daemon.py).
# 6. Gates: `plan` of the 10-file change with the example's gates against the same
#    repository without them (both without the gate-coverage policy).
# 7. Events: recording a cold reconcile's 10,000 events against that reconcile; delivering
#    them from the outbox to a Splunk HEC stand-in (against a bare loop posting the same
#    batches with the same client) and to rsyslog over TLS (benches/events.rs); a one-file
#    change from commit to its event at a webhook receiver, and a 100,000-event backlog with
#    the receiver down: RSS and idle CPU (scripts/bench-events.py).
# 8. Tickets: the API calls of 1,000 new problems against their 1,000 creates, in stand-ins
#    of Jira and ServiceNow (paced: ~3.5 minutes), lost create answers looked up once each,
#    the ticket calls of `gitward reconcile --once` when nothing a ticket is about changed,
#    and reading back 1,000 open tickets (benches/tickets.rs).
# 9. Plan with the base's note: the 10-file change with policies and gates on, its base
#    noted by `gitward reconcile --once`, against `validate` and against `plan --full`.
# 10. The daemon planning pull requests: a signed GitHub `pull_request` delivery → the
#    `gitward/plan` status at a GitHub stand-in, p50/p95 over 20 pull requests of 10 files
#    each, with the example's policies and gates in force (scripts/bench-pulls.py).
# Record the figures in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10000}

missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
[ -x /usr/bin/time ] || missing+=(time)
command -v bc >/dev/null || missing+=(bc)
command -v pebble >/dev/null || missing+=(pebble)
command -v certbot >/dev/null || missing+=(certbot)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || missing+=(rsyslog-gnutls)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --release --locked --quiet
bin=$PWD/target/release/gitward
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

peak_rss() {
  local peak=0 kb
  for _ in 1 2 3 4 5; do
    # A blocked plan exits 1: its memory counts all the same.
    kb=$( { /usr/bin/time -f %M "$@" 2>&1 >/dev/null || true; } | tail -n 1)
    [ "$kb" -gt "$peak" ] && peak=$kb
  done
  echo "$peak"
}

echo "== 1. loading and planning, $count certificates, no policies"
python3 scripts/gen-repo.py "$work/plain" --certificates "$count" --change 10 --no-policies
validate=("$bin" validate --repo "$work/plain" --rev HEAD)
plan=("$bin" plan --repo "$work/plain" --base HEAD~1 --head HEAD)
"${validate[@]}"
hyperfine -N --warmup 3 --runs 30 --export-json "$work/times.json" \
  -n validate "${validate[*]}" -n plan "${plan[*]}" >/dev/null 2>&1
python3 - "$work/times.json" "$(peak_rss "${validate[@]}")" "$(peak_rss "${plan[@]}")" <<'PY'
import json, sys
times = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
validate_rss, plan_rss = int(sys.argv[2]), int(sys.argv[3])
v, p = times["validate"], times["plan"]
print(f"validate --rev HEAD    median {v['median']:.3f} s (mean {v['mean']:.3f} ± {v['stddev']:.3f})  "
      f"peak RSS {validate_rss / 1024:.0f} MiB   (targets: ≤ 1 s, ≤ 200 MiB)")
print(f"plan, 10-file change   median {p['median']:.3f} s (mean {p['mean']:.3f} ± {p['stddev']:.3f})  "
      f"peak RSS {plan_rss / 1024:.0f} MiB")
print(f"plan / validate        {p['median'] / v['median']:.2f}×   (target: ≤ 1.2×)")
PY

echo
echo "== 2. policies: the example library over $count certificates"
python3 scripts/gen-repo.py "$work/policies" --certificates "$count" --change 10
echo "validate --rev HEAD peak RSS $(( $(peak_rss "$bin" validate --repo "$work/policies" --rev HEAD) / 1024 )) MiB, plan $(( $(peak_rss "$bin" plan --repo "$work/policies" --base HEAD~1 --head HEAD) / 1024 )) MiB"
GITWARD_BENCH_REPO="$work/policies" cargo bench --locked --quiet --bench policy 2>/dev/null

echo
echo "== 3. reconcile: $count ECDSA-P256 certificates"
# Issuance alone: the example's gates are measured in 5 and 6.
python3 scripts/gen-repo.py "$work/pki" --certificates "$count" --algorithm ECDSA-P256 --no-acme --no-gates
GITWARD_BENCH_REPO="$work/pki" cargo bench --locked --quiet --bench reconcile 2>/dev/null

echo
echo "== 4. ACME: 20 certificates from pebble"
scripts/bench-acme.sh "$bin"

echo
echo "== 5. the daemon: push → status on the remote, 100 and $count certificates"
# With the example's gates in force: every commit approved by two listed keys, the prod
# window open at any hour (so the figures do not depend on the day they are taken).
python3 scripts/gen-repo.py "$work/small" --certificates 100 --algorithm ECDSA-P256 --no-acme --open-window
python3 scripts/gen-repo.py "$work/gated" --certificates "$count" --algorithm ECDSA-P256 --no-acme --open-window
small=$(python3 scripts/bench-daemon.py "$bin" "$work/small" --approve)
large=$(python3 scripts/bench-daemon.py "$bin" "$work/gated" --approve)
python3 - "$small" "$large" <<'PY'
import json, sys
small, large = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for r in (small, large):
    print(f"{r['certificates']:6} certificates  p50 {r['p50_s']:.3f} s  p95 {r['p95_s']:.3f} s  "
          f"idle CPU {r['idle_cpu_s_per_min']:.2f} s/min  RSS {r['rss_mib']:.0f} MiB (peak {r['peak_rss_mib']:.0f})")
print(f"p50 large / small      {large['p50_s'] / small['p50_s']:.2f}×   (targets: p50 ≤ 0.3 s, ≤ 2×, idle ≤ 0.1 s/min, RSS ≤ 100 MiB)")
PY

echo
echo "== 6. gates: plan of the 10-file change with the example's gates and without them"
# Both without the policy that every prod resource is gated, which without gates denies every
# prod certificate: the difference is the gates alone.
python3 scripts/gen-repo.py "$work/gated-plan" --certificates "$count" --change 10 --no-gate-policy
python3 scripts/gen-repo.py "$work/ungated" --certificates "$count" --change 10 --no-gates --no-gate-policy
# The change touches prod certificates without approvals: plan exits 1 (blocked) by design.
hyperfine -N -i --warmup 3 --runs 30 --export-json "$work/gates.json" \
  -n gates "$bin plan --repo $work/gated-plan --base HEAD~1 --head HEAD" \
  -n ungated "$bin plan --repo $work/ungated --base HEAD~1 --head HEAD" >/dev/null 2>&1
python3 - "$work/gates.json" <<'PY'
import json, sys
times = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
g, u = times["gates"], times["ungated"]
print(f"plan with gates        median {g['median']:.3f} s (mean {g['mean']:.3f} ± {g['stddev']:.3f})")
print(f"plan without gates     median {u['median']:.3f} s (mean {u['mean']:.3f} ± {u['stddev']:.3f})")
print(f"with / without         {g['median'] / u['median']:.3f}×   (target: ≤ 1.05×)")
PY

echo
echo "== 7. events: recording and delivering a cold reconcile's events; the daemon's deliveries"
# Without gates or the policy that every prod certificate is gated: the cold reconcile
# applies and tells 10,000 certificate.issued events.
python3 scripts/gen-repo.py "$work/told" --certificates "$count" --algorithm ECDSA-P256 --no-acme --no-gates --no-gate-policy
GITWARD_BENCH_REPO="$work/told" cargo bench --quiet --bench events 2>/dev/null
python3 scripts/gen-repo.py "$work/events" --certificates 100 --algorithm ECDSA-P256 --no-acme --no-gates --no-gate-policy
python3 scripts/bench-events.py "$bin" "$work/events" --changes 30 --backlog 100000 --idle 60 > "$work/events.json"
python3 - "$work/events.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"commit → event at a webhook receiver  p50 {r['latency_ms_p50']:.0f} ms  p95 {r['latency_ms_p95']:.0f} ms   (target: status commit → receiver p50 ≤ 100 ms)")
print(f"{r['backlog_events']} events backlogged, receiver down: RSS {r['backlog_rss_mib']:.0f} MiB against {r['baseline_rss_mib']:.0f} MiB without ({r['backlog_rss_growth_mib']:+.1f} MiB; target ≤ 20 MiB), idle CPU {r['backlog_cpu_s_per_min']:.3f} s/min (target ≤ 0.1)")
PY

echo
echo "== 8. tickets: API calls of 1,000 new problems, a quiet reconcile, reading tickets back"
cargo bench --locked --quiet --bench tickets 2>/dev/null

echo
echo "== 9. plan with the base's note: the 10-file change, $count certificates, policies and gates on"
# The daemon notes the base: a host follows a branch at the base and reconciles it once. The
# gates block it (no approvals), which issues nothing and notes its evaluation all the same.
python3 scripts/gen-repo.py "$work/noted" --certificates "$count" --change 10 --algorithm ECDSA-P256 --no-acme --open-window
git -C "$work/noted" branch -f base HEAD~1
mkdir -p "$work/noted-host"
printf '%s\n' \
  "repo: {url: $work/noted, branch: base, pollInterval: 1h}" \
  "stateDir: $work/noted-host/state" \
  "targets:" \
  "  web-tls: {dir: $work/noted-host/out}" \
  "  internal-tls: {dir: $work/noted-host/out-internal}" \
  "  mtls-clients: {dir: $work/noted-host/out-mtls}" > "$work/noted-host/gitward.yaml"
"$bin" reconcile --once --quiet --config "$work/noted-host/gitward.yaml" >/dev/null || true
noted=("$bin" plan --repo "$work/noted" --base HEAD~1 --head HEAD)
# The change is blocked by the gates (no approvals): plan exits 1 by design.
{ "${noted[@]}" --format json || true; } | python3 -c '
import json, sys
e = json.load(sys.stdin)["evaluation"]
assert e["base"] == "note", e
pairs, total = e["pairs"], e["total"]
print(f"plan evaluates {pairs} of {total} pairs, the rest from the note on the base")
'
echo "peak RSS: validate $(( $(peak_rss "$bin" validate --repo "$work/noted" --rev HEAD) / 1024 )) MiB," \
  "plan with the note $(( $(peak_rss "${noted[@]}") / 1024 )) MiB," \
  "plan --full $(( $(peak_rss "${noted[@]}" --full) / 1024 )) MiB"
hyperfine -N -i --warmup 3 --runs 30 --export-json "$work/noted.json" \
  -n validate "$bin validate --repo $work/noted --rev HEAD" \
  -n note "${noted[*]}" \
  -n full "${noted[*]} --full" >/dev/null 2>&1
python3 - "$work/noted.json" <<'PY'
import json, sys
times = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
v, n, f = times["validate"], times["note"], times["full"]
for name, r in (("validate --rev HEAD", v), ("plan with the note", n), ("plan --full", f)):
    print(f"{name:22} median {r['median']:.3f} s (mean {r['mean']:.3f} ± {r['stddev']:.3f})")
print(f"note / validate        {n['median'] / v['median']:.2f}×   (targets: ≤ 0.3 s, ≤ 1.3×)")
print(f"full / validate        {f['median'] / v['median']:.2f}×")
print(f"note / full            {n['median'] / f['median']:.2f}×")
PY

echo
echo "== 10. the daemon planning pull requests: delivery → commit status, $count certificates"
pulls=$(python3 scripts/bench-pulls.py "$bin" "$work/gated" --pulls 20 --files 10)
python3 - "$pulls" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"{r['certificates']} certificates, {r['pulls']} pull requests of {r['files_changed']} files: "
      f"status p50 {r['status_p50_s']:.3f} s, p95 {r['status_p95_s']:.3f} s (target p50 ≤ 0.5 s); "
      f"comment p50 {r['comment_p50_s']:.3f} s")
PY
