#!/usr/bin/env bash
# Benchmarks: loads and plans of a 10,000-certificate repository, measured in one run.
#
#   scripts/bench.sh [CERTIFICATES]
#
# Prints mean wall time (hyperfine), peak RSS (/usr/bin/time) and the ratios the issues set
# as targets. Record the figures in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10000}

missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
[ -x /usr/bin/time ] || missing+=(time)
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
repo=$work/repo
python3 scripts/gen-repo.py "$repo" --certificates "$count" --change 10

validate=("$bin" validate --repo "$repo" --rev HEAD)
plan=("$bin" plan --repo "$repo" --base HEAD~1 --head HEAD)
"${validate[@]}"
hyperfine -N --warmup 3 --runs 30 --export-json "$work/times.json" \
  -n validate "${validate[*]}" -n plan "${plan[*]}" >/dev/null

peak_rss() {
  local peak=0 kb
  for _ in 1 2 3 4 5; do
    kb=$(/usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1)
    [ "$kb" -gt "$peak" ] && peak=$kb
  done
  echo "$peak"
}
validate_rss=$(peak_rss "${validate[@]}")
plan_rss=$(peak_rss "${plan[@]}")

python3 - "$work/times.json" "$count" "$validate_rss" "$plan_rss" <<'PY'
import json, sys
times = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
count, validate_rss, plan_rss = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
v, p = times["validate"], times["plan"]
print(f"repository: {count} certificates (+ 8 issuers, 3 policies, 2 gates, 6 sinks), packed")
print(f"validate --rev HEAD    mean {v['mean']:.3f} s ± {v['stddev']:.3f}  median {v['median']:.3f} s  "
      f"peak RSS {validate_rss / 1024:.0f} MiB   (targets: ≤ 1 s, ≤ 200 MiB)")
print(f"plan, 10-file change   mean {p['mean']:.3f} s ± {p['stddev']:.3f}  median {p['median']:.3f} s  "
      f"peak RSS {plan_rss / 1024:.0f} MiB")
print(f"plan / validate        {p['median'] / v['median']:.2f}× (medians)   (target: ≤ 1.2×)")
PY
