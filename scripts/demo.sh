#!/usr/bin/env bash
# Install Tunnelhound into .venv and replay the bundled lab capture (NetFlow v9 from
# softflowd: real tunnels, scans, exfiltration and beacons among benign traffic) through the
# whole pipeline; prints the detections, ECS flow and alert documents go to ./demo-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || $python -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
mkdir -p demo-output
.venv/bin/tunnelhound demo -o demo-output "$@"
echo "ECS documents: $(ls demo-output/*.ndjson | tr '\n' ' ')"
