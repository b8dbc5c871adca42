#!/usr/bin/env bash
# Checks the systemd units: `systemd-analyze verify` is clean and the daemon's exposure score
# (`systemd-analyze security --offline=yes`) is at most 2.0. The units name the installed
# binary, /usr/bin/gitward; the check points them at the one just built.
#
#   scripts/check-systemd.sh BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "$1")
units=$(mktemp -d)
trap 'rm -rf "$units"' EXIT
for unit in systemd/*; do
  sed "s|/usr/bin/gitward|$binary|" "$unit" > "$units/$(basename "$unit")"
done
systemd-analyze verify "$units"/*
score=$(systemd-analyze security --offline=yes "$units/gitward.service" | awk '/Overall exposure level/ {print $(NF-2)}')
echo "systemd: units verify clean; gitward.service exposure $score (at most 2.0)"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 2.0 else 1)" "$score"
