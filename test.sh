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
# Simulator samples are made once and kept in var/ (gitignored) for later runs and every worker.
export IPTV_CHECKD_CACHE="${IPTV_CHECKD_CACHE:-$PWD/var/samples}"
# Most tests wait on real-time streams, not on the CPU: four workers (pytest-xdist) keep the
# suite well inside its five minutes on two cores. PYTEST_WORKERS=0 runs in one process.
# pytest exit code 5 (nothing collected) must fail the run, and it does: any non-zero exits.
exec .venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-4}" "$@"
