#!/usr/bin/env bash
# Coverage-guided fuzzing of gitward's input paths with AFL++ (afl.rs), each target for a
# bounded time, then the corpus minimized back into fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default 60 s each; targets: yaml host_config webhook rego
#
# Seeds are the committed corpus plus the example repository, tests/fixtures and
# tests/bad-input. Exits non-zero when any target crashed or hung; the inputs are kept under
# fuzz/out/<target>/default/{crashes,hangs}/. Once fixed, copy such an input to
# fuzz/regressions/<target>/: `cargo test --test suite fuzz_corpus::` replays it with fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(yaml host_config webhook rego)

command -v cargo-afl >/dev/null || cargo install --locked cargo-afl
# AFL++ wants the kernel to keep no core pattern and the CPU governor untouched; on a shared
# machine or in a container neither can be changed, and neither matters for finding bugs.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
export AFL_SHUFFLE_QUEUE=1 AFL_IGNORE_SEED_PROBLEMS=1

(cd fuzz && cargo afl build --locked)
# The shell afl-cmin: the Python one that `cargo afl cmin` runs finds no coverage in afl.rs
# binaries.
cmin=$(find "${XDG_DATA_HOME:-$HOME/.local/share}/afl.rs" -name afl-cmin.bash -path '*/bin/*' | head -1)
[ -n "$cmin" ] || { echo "afl-cmin.bash not found; run cargo afl config --build" >&2; exit 1; }

# Files up to 64 KiB from the given directories whose names match the extension pattern.
seed_files() {
  local pattern="$1"
  shift
  find "$@" -type f -size -64k -regextype posix-extended -regex ".*\.(${pattern})$" 2>/dev/null
}

# Seeds for one target into the directory $2.
seeds() {
  local target="$1" dir="$2" i=0 f
  mkdir -p "$dir"
  cp fuzz/corpus/"$target"/* "$dir"/ 2>/dev/null || true
  case "$target" in
    yaml)
      for f in $(seed_files 'yaml|yml|json' example-repo tests/bad-input templates); do
        i=$((i + 1)); cp "$f" "$dir/seed-$i"
      done ;;
    rego)
      for f in $(seed_files 'rego' example-repo tests/bad-input templates); do
        i=$((i + 1)); cp "$f" "$dir/seed-$i"
      done ;;
    webhook)
      # provider byte (0 GitHub, 1 GitLab, 2 generic), headers, an empty line, the body.
      for f in tests/fixtures/webhooks/github/*.payload.json; do
        i=$((i + 1))
        { printf '\000X-GitHub-Event: %s\nX-GitHub-Delivery: %s\n\n' "$(basename "$f" .payload.json)" "$i"; cat "$f"; } >"$dir/seed-$i"
      done
      for f in tests/fixtures/webhooks/gitlab/*; do
        i=$((i + 1))
        { printf '\001X-Gitlab-Event: Push Hook\nIdempotency-Key: %s\n\n' "$i"; cat "$f"; } >"$dir/seed-$i"
      done
      printf '\002X-Delivery-Id: 1\n\n{"ref": "refs/heads/main", "after": "0123abcd"}' >"$dir/seed-generic-main"
      printf '\002\n\n{"ref": "refs/tags/v1", "after": null}' >"$dir/seed-generic-tag"
      printf '\000X-GitHub-Event: push\n\n{"after": "x"}' >"$dir/seed-github-no-ref" ;;
    host_config) ;; # the committed corpus holds the seeds
  esac
}

failed=0
summary=()
for target in "${targets[@]}"; do
  work="fuzz/out/$target"
  rm -rf "$work"
  seeds "$target" "$work/in"
  # Policies compile in a forked child: allow it more than the default per-run timeout.
  timeout_ms=1000
  [ "$target" = rego ] && timeout_ms=5000
  (cd fuzz && cargo afl fuzz -i "out/$target/in" -o "out/$target" -V "$seconds" \
    -t "$timeout_ms" "target/debug/$target") >"$work.log" 2>&1 || {
    echo "$target: afl-fuzz failed; see $work.log" >&2
    tail -20 "$work.log" >&2
    failed=1
    continue
  }
  stats="$work/default/fuzzer_stats"
  stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  crashes=$(stat saved_crashes)
  hangs=$(stat saved_hangs)
  summary+=("$(printf '%-12s %10s execs  %8s/s  coverage %-7s  corpus %5s  crashes %s  hangs %s' \
    "$target" "$(stat execs_done)" "$(stat execs_per_sec)" "$(stat bitmap_cvg)" \
    "$(stat corpus_count)" "$crashes" "$hangs")")
  if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
    echo "$target: $crashes crashes, $hangs hangs in $work/default/{crashes,hangs}/" >&2
    failed=1
  fi
  # The minimized corpus replaces the committed one; by edges, not hit counts, which keeps
  # hundreds of inputs rather than thousands.
  rm -rf "$work/min"
  (cd fuzz && "$cmin" -e -i "out/$target/default/queue" -o "out/$target/min" \
    -t "$timeout_ms" -- "target/debug/$target") >>"$work.log" 2>&1
  if ! ls "$work/min"/* >/dev/null 2>&1; then
    echo "$target: corpus minimization kept nothing; see $work.log" >&2
    failed=1
    continue
  fi
  rm -rf "fuzz/corpus/$target"
  mkdir -p "fuzz/corpus/$target"
  for f in "$work/min"/*; do
    cp "$f" "fuzz/corpus/$target/$(sha256sum "$f" | cut -c1-16)"
  done
done

printf '%s\n' "${summary[@]}"
exit "$failed"
