#!/usr/bin/env bash
# Sets up the locked environment, then runs the main job (arguments go to `runner.py run`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python runner.py run "$@"
