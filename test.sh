#!/usr/bin/env bash
# Sets up .venv (requirements, ffmpeg via imageio-ffmpeg) and runs lint, types and tests.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
.venv/bin/python -m ruff check .
.venv/bin/python -m ruff format --check .
.venv/bin/python -m mypy
# pytest exit code 5 (nothing collected) must fail the run, and it does: any non-zero exits.
exec .venv/bin/python -m pytest -q "$@"
