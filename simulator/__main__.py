"""``python -m simulator``: run the demo provider for a while and print its base URL.

It serves the demo's logins and streams (``--inventory`` writes their
inventory) and also the two accounts of ``config/example-inventory.json``
(logins ``a``/``a``, 1 connection, and ``b``/``b``, 2 connections; streams
1-5), so ``python -m simulator --port 8001`` is the provider the example
config expects.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import structlog

from simulator.demo import demo_provider, demo_setup
from simulator.server import ProviderSimulator, SimAccount, SimStream

EXAMPLE_ACCOUNTS = (SimAccount("a", "a", 1), SimAccount("b", "b", 2))
"""The provider logins of ``config/example-inventory.json``, with its limits."""
EXAMPLE_STREAMS = {
    1: SimStream("ok", "fhd"),
    2: SimStream("lowres"),
    3: SimStream("ok", "hd"),
    4: SimStream("hevc"),
    5: SimStream("ok", "hd"),
}
"""Its streams 1-5; every one plays (the demo's own streams show the failures)."""


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until ``--seconds`` pass or Ctrl-C; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--seconds", type=float, default=300.0, help="lifetime (default 300)")
    parser.add_argument(
        "--port", type=int, default=0, help="loopback port to listen on (default: a free one)"
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="sample cache folder")
    parser.add_argument(
        "--inventory", type=Path, default=None, help="also write the demo inventory JSON here"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0-65535, got {args.port}")
    # stdout carries the base URL; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    accounts, streams = demo_provider()
    accounts += EXAMPLE_ACCOUNTS
    streams = {**EXAMPLE_STREAMS, **streams}
    sim = ProviderSimulator(
        accounts, streams, cache_dir=args.cache_dir, lifetime_s=args.seconds, port=args.port
    )
    try:
        base_url = sim.start()
    except OSError as exc:
        print(f"error: 127.0.0.1:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
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
