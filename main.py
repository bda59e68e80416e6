"""Command-line entry point: ``python main.py {run,once,validate,demo}``."""

from __future__ import annotations

import sys

from app.cli import main
from app.runtime import tune_gc

if __name__ == "__main__":
    tune_gc()
    sys.exit(main())
