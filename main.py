"""Command-line entry point: ``python main.py {run,once,validate,demo}``."""

from __future__ import annotations

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
