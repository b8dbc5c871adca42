#!/usr/bin/env bash
# What teams do by hand, as the peer of a cold reconcile: a root and an issuing CA, then N
# ECDSA-P256 server certificates (two DNS names, serverAuth, 90 days, random 128-bit serial)
# issued with the openssl CLI and written as cert, chain, fullchain, ca and key files.
#
#   scripts/openssl-peer.sh DIR N
set -euo pipefail
dir=$1
count=$2
mkdir -p "$dir/ca"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout ca/root.key \
  -subj "/CN=Example Root CA" -days 3650 -out ca/root.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca/issuing.key \
  -subj "/CN=Example Issuing CA 0" -out ca/issuing.csr 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nnameConstraints=critical,permitted;DNS:example.com\n' > ca/issuing.ext
openssl x509 -req -in ca/issuing.csr -CA ca/root.pem -CAkey ca/root.key -days 1825 \
  -extfile ca/issuing.ext -set_serial "0x$(openssl rand -hex 16)" -out ca/issuing.pem 2>/dev/null
for ((n = 0; n < count; n++)); do
  name=$(printf 'svc-%05d' "$n")
  mkdir -p "$name"
  printf 'subjectAltName=DNS:%s.example.com,DNS:%s-%d.example.com\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
    "$name" "$name" "$n" > "$name/ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name/key.pem" \
    -subj "/CN=$name.example.com" -out "$name/csr" 2>/dev/null
  openssl x509 -req -in "$name/csr" -CA ca/issuing.pem -CAkey ca/issuing.key -days 90 \
    -extfile "$name/ext" -set_serial "0x$(openssl rand -hex 16)" -out "$name/cert.pem" 2>/dev/null
  cp ca/issuing.pem "$name/chain.pem"
  cp ca/root.pem "$name/ca.pem"
  cat "$name/cert.pem" "$name/chain.pem" > "$name/fullchain.pem"
  rm "$name/csr" "$name/ext"
done
