#!/usr/bin/env bash
# Idempotent set-up: a venv in .venv with the project and its extras, then every
# scripts/setup.d/*.sh step (system tools, cached data). Re-runs are fast: the pip
# step is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.hyflexpim-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing Python packages into .venv (first time takes a few minutes)" >&2
  log=.venv/pip-install.log
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         .venv/bin/python -m pip install -e ".[dev,algo]"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "[setup] pip install failed; full log in $log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
for step in scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  bash "$step"
done
