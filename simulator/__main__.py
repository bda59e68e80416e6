"""``python -m simulator``: run the demo provider for a while and print its base URL."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import structlog

from simulator.demo import demo_provider, demo_setup
from simulator.server import ProviderSimulator


def main(argv: list[str] | None = None) -> int:
    """Run the demo simulator until ``--seconds`` pass or Ctrl-C; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--seconds", type=float, default=300.0, help="lifetime (default 300)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="sample cache folder")
    parser.add_argument(
        "--inventory", type=Path, default=None, help="also write the demo inventory JSON here"
    )
    args = parser.parse_args(argv)
    # stdout carries the base URL; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    accounts, streams = demo_provider()
    sim = ProviderSimulator(accounts, streams, cache_dir=args.cache_dir, lifetime_s=args.seconds)
    base_url = sim.start()
    try:
        if args.inventory is not None:
            args.inventory.write_text(json.dumps(demo_setup(base_url), indent=2) + "\n")
        print(base_url, flush=True)
        sim.wait_stopped()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
