#!/usr/bin/env bash
# Installs the locked environment into .venv: exactly the set in uv.lock, nothing resolved anew.
# Needs only python3.10 and its pip; safe to run again (it then checks and changes nothing).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9

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
if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  echo "setup: installing uv $UV_VERSION into .tools" >&2
  "$PY" -m venv .tools
  .tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
.tools/bin/uv sync --frozen --python "$PY" --quiet
