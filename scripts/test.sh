#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run all of it:
# lint, types, and pytest (real softflowd, tshark and nfdump; no test skips for a missing tool).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k conformance`.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
missing=()
command -v tshark >/dev/null 2>&1 || missing+=(tshark)
command -v softflowd >/dev/null 2>&1 || missing+=(softflowd)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # test certificates (Kibana import over TLS)
command -v nfcapd >/dev/null 2>&1 || missing+=(nfdump)  # nfcapd + nfdump: archive replay tests
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# Broker's Python bindings: the real Broker peer of tests/test_zeek_broker.py.
[ -f /usr/lib/python3/dist-packages/broker/__init__.py ] || missing+=(python3-broker)
# The C extension (tunnelhound.normalize._kernels) is built by pip: a compiler and Python.h.
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
[ -e /usr/include/arpa/inet.h ] || missing+=(libc6-dev) # a gcc Recommends, not a Depends
$python -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
  missing+=(python3-dev)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== installing ${missing[*]} (apt)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($python --version)"
  $python -m venv .venv
fi
echo "== installing tunnelhound and test dependencies (pip)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== zeek scripts (zeek-script parse, zeek-format unchanged)"
for script in zeek-scripts/scripts/*.zeek zeek-scripts/testing/tests/*.zeek; do
  .venv/bin/zeek-script parse "$script" >/dev/null
  .venv/bin/zeek-format "$script" | cmp -s - "$script" || { echo "zeek-format would change $script"; exit 1; }
done
command -v zeek >/dev/null 2>&1 || echo "NOT RUN: zeek-scripts/testing btest tests (no zeek binary on PATH)"
echo "== pytest"
.venv/bin/python -m pytest "$@"
