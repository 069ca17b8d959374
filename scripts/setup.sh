#!/usr/bin/env bash
# Installs the locked environment into .venv: exactly the set in uv.lock, nothing resolved anew.
# Needs only python3.10 and its pip; safe to run again (it then checks and changes nothing).
#   bash scripts/setup.sh          # CPU (or as the last --gpu/--cpu chose: .venv remembers it)
#   bash scripts/setup.sh --gpu    # + the locked gpu extra: CUDA and cuDNN wheels for TensorFlow (NVIDIA GPUs)
#   bash scripts/setup.sh --cpu    # without it again
#   bash scripts/setup.sh --if-changed   # (scripts/run.sh, scripts/test.sh) nothing when uv.lock,
#                                        # pyproject.toml, Python and the extras are those of the last
#                                        # sync here (uv's check of .venv takes ~2 s of every command)
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
# `uv sync` installs exactly the set asked for, so the gpu extra is remembered: a later plain
# setup (scripts/test.sh, scripts/run.sh) keeps it.
EXTRAS_FILE=.venv/nanogpt-tfx-extras
SYNCED_FILE=.venv/nanogpt-tfx-synced  # what the last sync installed from (see synced_key)
WANT=$(cat "$EXTRAS_FILE" 2>/dev/null || true)
IF_CHANGED=
for arg in "$@"; do
  case "$arg" in
    --gpu) WANT=gpu ;;
    --cpu) WANT= ;;
    --if-changed) IF_CHANGED=1 ;;
    *) echo "setup.sh: unknown option $arg (known: --gpu, --cpu, --if-changed)" >&2; exit 2 ;;
  esac
done
EXTRAS=()
if [ "$WANT" = gpu ]; then EXTRAS=(--extra gpu); fi

find_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  if command -v python3.10 >/dev/null 2>&1 && python3.10 --version >/dev/null 2>&1; then
    command -v python3.10; return
  fi
  # pyenv installs that are not the global version are not on PATH as python3.10.
  for candidate in "$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python3.10; do
    if [ -x "$candidate" ]; then echo "$candidate"; return; fi
  done
  echo "python3.10 not found: install Python 3.10 or set PYTHON=/path/to/python3.10" >&2
  exit 1
}

PY=$(find_python)
synced_key() {
  { cat uv.lock pyproject.toml; echo "$WANT $UV_VERSION"; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}
if [ -n "$IF_CHANGED" ] && [ -x .venv/bin/python ] && [ "$(cat "$SYNCED_FILE" 2>/dev/null)" = "$(synced_key)" ]; then
  exit 0
fi
if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  echo "setup: installing uv $UV_VERSION into .tools" >&2
  "$PY" -m venv .tools
  .tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
# ${EXTRAS[@]+...}: an empty array under `set -u` in bash < 4.4
.tools/bin/uv sync --frozen --python "$PY" --quiet ${EXTRAS[@]+"${EXTRAS[@]}"}
echo "$WANT" > "$EXTRAS_FILE"
synced_key > "$SYNCED_FILE"
