#!/usr/bin/env bash
# The Dockerfile's runtime stage without Docker: a root file system holding only what
# gcr.io/distroless/cc-debian12 gives the binary (glibc, libgcc_s, OpenSSL 3 and the CA
# certificates, from this Debian 12 host), no shell, and the binary running in it as UID
# 65532. The demo must issue certificates there and `gitward healthcheck`, the image's
# HEALTHCHECK, must answer. Needs root (chroot, mknod).
#
#   scripts/check-runtime-image.sh BINARY
set -euo pipefail
binary=$(realpath "$1")
root=$(mktemp -d)
chmod 755 "$root"
demo_pid=""
cleanup() {
  if [ -n "$demo_pid" ]; then
    kill "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$root"
}
trap cleanup EXIT

libs=/lib/x86_64-linux-gnu
mkdir -p "$root$libs" "$root/lib64" "$root/usr/local/bin" "$root/etc/ssl/certs" \
  "$root/dev" "$root/tmp" "$root/home/nonroot"
for lib in libc.so.6 libm.so.6 libgcc_s.so.1 libssl.so.3 libcrypto.so.3; do
  cp -L "$libs/$lib" "$root$libs/"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cp "$binary" "$root/usr/local/bin/gitward"
mknod -m 666 "$root/dev/null" c 1 3
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/home/nonroot"

in_image=(env HOME=/home/nonroot chroot --userspec=65532:65532 "$root" /usr/local/bin/gitward)

# Anything the binary links beyond the image's libraries stops it here.
"${in_image[@]}" --version >/dev/null
# env and chroot exec the binary: this is the daemon's process.
"${in_image[@]}" demo /home/nonroot/demo >"$root/demo.log" 2>&1 &
demo_pid=$!
config=/home/nonroot/demo/.gitward/gitward.yaml
cert="$root/home/nonroot/demo/.gitward/tls/web-tls/api-example-com/cert.pem"
# The demo issues its import before it starts the daemon: wait for both.
healthy() { [ -f "$cert" ] && "${in_image[@]}" healthcheck --config "$config" >/dev/null 2>&1; }
for _ in $(seq 1 300); do
  healthy && break
  sleep 0.1
done
if ! [ -f "$cert" ] || ! "${in_image[@]}" healthcheck --config "$config"; then
  cat "$root/demo.log"
  echo "runtime image: the demo issued nothing or the daemon is not healthy" >&2
  exit 1
fi
openssl x509 -noout -checkend 0 -in "$cert" >/dev/null
echo "runtime image: the demo runs as UID 65532 with only the image's libraries; healthcheck answers"
