#!/usr/bin/env bash
# Sets up the locked environment, then runs the main job (arguments go to `runner.py run`; --gpu
# first installs the gpu extra: `bash scripts/run.sh --gpu --preset=shakespeare_char_gpu ...`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--gpu" ]; then
  shift
  bash scripts/setup.sh --gpu
else
  bash scripts/setup.sh
fi
exec .venv/bin/python runner.py run "$@"
