#!/usr/bin/env bash
# Sets up the locked environment, then runs the whole test suite (arguments go to pytest).
# The test files run on as many workers as the CPU has cores (at most 4), a file on one worker, so
# that a file's module fixtures are made once, in pyproject's order (the longest first); `-n 0` runs
# everything in this one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --if-changed
exec .venv/bin/python -m pytest --numprocesses=auto --maxprocesses=4 --dist=loadfile --no-loadscope-reorder "$@"
