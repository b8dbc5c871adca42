#!/usr/bin/env bash
# ACME: 20 certificates from Let's Encrypt's pebble, gitward (one reconcile) against certbot
# (one `certbot certonly --standalone` per certificate, as its documentation runs it), both
# against the same pebble with real http-01 validation, alternating over rounds.
#
#   scripts/bench-acme.sh GITWARD_BINARY [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
rounds=${2:-3}
count=20
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "nothing on port $1" >&2; exit 1; }

# pebble's own TLS identity.
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls-ca.key \
  -subj "/CN=Bench TLS CA" -days 2 -out tls-ca.pem 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls.key \
  -subj /CN=localhost -out tls.csr 2>/dev/null
echo "subjectAltName=DNS:localhost,IP:127.0.0.1" > tls.ext
openssl x509 -req -in tls.csr -CA tls-ca.pem -CAkey tls-ca.key -days 2 -extfile tls.ext -out tls.pem 2>/dev/null

dns=$(port); listen=$(port); management=$(port); http=$(port)
pebble-challtestsrv -dns01 "127.0.0.1:$dns" -management "127.0.0.1:$(port)" -http01 "" \
  -https01 "" -tlsalpn01 "" -defaultIPv6 "" -defaultIPv4 127.0.0.1 >challtestsrv.log 2>&1 &
pids+=($!)
cat > pebble.json <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$listen", "managementListenAddress": "127.0.0.1:$management",
 "certificate": "$work/tls.pem", "privateKey": "$work/tls.key", "httpPort": $http, "tlsPort": $(port),
 "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
# No validation delay, no random nonce rejections, no reuse of earlier authorizations: every
# certificate costs both clients a full order.
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
  pebble -config pebble.json -dnsserver "127.0.0.1:$dns" >pebble.log 2>&1 &
pids+=($!)
wait_port "$listen"
directory="https://localhost:$listen/dir"

now() { date +%s.%N; }
gitward_times=(); certbot_times=()
for ((round = 0; round < rounds; round++)); do
  # gitward: a repository of 20 ACME certificates, a fresh host.
  repo=$work/repo-$round host=$work/host-$round
  mkdir -p "$repo" "$host"
  git -C "$repo" init -q -b main
  printf 'apiVersion: gitward/v1\nkind: Issuer\nmetadata: {name: public}\nspec:\n  acme: {account: default}\n' > "$repo/issuer.yaml"
  for ((n = 0; n < count; n++)); do
    printf 'apiVersion: gitward/v1\nkind: Certificate\nmetadata: {name: site-%d}\nspec:\n  issuerRef: public\n  dnsNames: [site-%d.r%d.gitward.test]\n  keyAlgorithm: ECDSA-P256\n  duration: 90d\n  target: web\n' \
      "$n" "$n" "$round" > "$repo/site-$n.yaml"
  done
  git -C "$repo" add -A
  git -C "$repo" -c user.name=Bench -c user.email=bench@example.com commit -q -m "20 certificates"
  cat > "$host/gitward.yaml" <<YAML
repo: {url: $repo, branch: main}
stateDir: state
targets:
  web: {dir: out}
acme:
  default: {directory: "$directory", contact: "mailto:ops@gitward.test", http01Listen: "127.0.0.1:$http", trustedRoots: $work/tls-ca.pem}
YAML
  start=$(now)
  (cd "$host" && "$bin" reconcile --once --quiet --config gitward.yaml >/dev/null)
  gitward_times+=("$(echo "$(now) - $start" | bc)")
  [ "$(ls "$host/out" | wc -l)" = "$count" ] || { echo "gitward did not write $count certificates" >&2; exit 1; }

  # certbot: one run per certificate, its own fresh configuration directory.
  cb=$work/certbot-$round
  start=$(now)
  for ((n = 0; n < count; n++)); do
    REQUESTS_CA_BUNDLE=$work/tls-ca.pem certbot certonly --standalone --non-interactive --agree-tos \
      -m ops@gitward.test --server "$directory" --http-01-address 127.0.0.1 --http-01-port "$http" \
      --key-type ecdsa --elliptic-curve secp256r1 --config-dir "$cb/config" --work-dir "$cb/work" \
      --logs-dir "$cb/logs" -d "site-$n.r$round.certbot.gitward.test" >/dev/null 2>&1 \
      || { echo "certbot failed; see $cb/logs" >&2; tail -20 "$cb/logs/letsencrypt.log" >&2; exit 1; }
  done
  certbot_times+=("$(echo "$(now) - $start" | bc)")
  echo "round $round: gitward ${gitward_times[-1]} s, certbot ${certbot_times[-1]} s" >&2
done
python3 - "${gitward_times[*]}" "${certbot_times[*]}" <<'PY'
import statistics, sys
g = [float(x) for x in sys.argv[1].split()]
c = [float(x) for x in sys.argv[2].split()]
ratios = [a / b for a, b in zip(g, c)]
print(f"gitward reconcile, 20 ACME certificates   median {statistics.median(g):.2f} s")
print(f"certbot certonly ×20                      median {statistics.median(c):.2f} s")
print(f"gitward / certbot                         {statistics.median(ratios):.3f}×   (target: ≤ 0.5×)")
PY
