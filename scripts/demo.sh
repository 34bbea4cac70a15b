#!/usr/bin/env bash
# Install Tunnelhound into .venv and replay the bundled lab capture (NetFlow v9 from
# softflowd) through the whole pipeline; ECS flow documents go to ./demo-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || $python -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
mkdir -p demo-output
.venv/bin/tunnelhound demo -o demo-output "$@"
echo "ECS flow documents: $(ls demo-output/*.ndjson)"
