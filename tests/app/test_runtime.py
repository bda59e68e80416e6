"""The entry points set the interpreter up once: the collector's thresholds, start-up frozen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.runtime import GC_THRESHOLDS

ROOT = Path(__file__).resolve().parents[2]

# main.py as `python main.py validate` runs it; the child reports its collector at exit.
CHILD = """
import atexit, gc, runpy, sys
atexit.register(lambda: print(gc.get_threshold(), gc.get_freeze_count() > 0))
sys.argv = ["main.py", "validate", "--config", sys.argv[1]]
runpy.run_path("main.py", run_name="__main__")
"""


def test_main_py_tunes_the_collector_before_the_command_runs(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "missing.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr  # the missing config: bad input, as always
    assert done.stdout.strip() == f"{GC_THRESHOLDS} True"
