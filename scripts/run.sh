#!/usr/bin/env bash
# Sets up the locked environment, then runs the main job (arguments go to `runner.py run`; --gpu
# first installs the gpu extra: `bash scripts/run.sh --gpu --train_preset=shakespeare_char_gpu ...`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--gpu" ]; then
  shift
  bash scripts/setup.sh --gpu
else
  bash scripts/setup.sh --if-changed
fi
# A checkout with the shared data beside it (the project's own machines and CI, which are offline)
# trains on that copy of Tiny Shakespeare; elsewhere runner.py downloads it, as nanoGPT does.
if [ -z "${NANOGPT_TFX_SHAKESPEARE:-}" ] && [ -f ../shared/data/tinyshakespeare.txt ]; then
  export NANOGPT_TFX_SHAKESPEARE="$(cd ../shared/data && pwd)/tinyshakespeare.txt"
fi
exec .venv/bin/python runner.py run "$@"
