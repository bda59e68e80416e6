#!/usr/bin/env bash
# Sets up .venv (requirements, ffmpeg via imageio-ffmpeg) and runs the daemon.
# With no arguments it runs the self-contained demo against the built-in provider simulator.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
if [ "$#" -eq 0 ]; then
  set -- demo
fi
exec .venv/bin/python main.py "$@"
