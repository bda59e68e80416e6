"""``python -m bench.cycles``: the demo's cycles, one after another, with their figures.

Runs the daemon (real ffmpeg) against the demo's loopback provider for several
cycles in a row and prints one JSON line per cycle: its duration, the most
checks open at once per provider login, and the connections the provider
refused. Later cycles should take as long as the first (same parallelism).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import structlog

from app.daemon import Daemon
from app.demo import demo_config
from app.sources import build_sources
from domain.models import CheckResult
from simulator.demo import demo_provider, demo_setup
from simulator.server import ProviderSimulator


def most_at_once(results: tuple[CheckResult, ...]) -> dict[int, int]:
    """The most checks running at once per account, from the results' start and end times."""
    edges: dict[int, list[tuple[datetime, int]]] = {}
    for result in results:
        if result.started_at is None or result.finished_at is None or result.profile_id is None:
            continue  # never ran (no lease)
        start = datetime.fromisoformat(result.started_at)
        end = datetime.fromisoformat(result.finished_at)
        edges.setdefault(result.account_id, []).extend([(start, 1), (end, -1)])
    most: dict[int, int] = {}
    for account_id, points in edges.items():
        running = 0
        for _at, step in sorted(points):
            running += step
            most[account_id] = max(most.get(account_id, 0), running)
    return dict(sorted(most.items()))


def run(cycles: int, stagger: float) -> list[dict[str, object]]:
    """Run ``cycles`` demo cycles with ``stagger_delay = stagger``; one dict per cycle."""
    accounts, streams = demo_provider()
    simulator = ProviderSimulator(accounts, streams, lifetime_s=600.0)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cycles-") as tmp:
        folder = Path(tmp)
        base_url = simulator.start()
        try:
            (folder / "inventory.json").write_text(json.dumps(demo_setup(base_url)))
            config = demo_config(folder)
            config = replace(
                config,
                concurrent_streams=replace(config.concurrent_streams, stagger_delay=stagger),
            )
            sources = build_sources(config)
            daemon = Daemon(config, sources)
            daemon.start(scheduled=False)
            try:
                for cycle in range(1, cycles + 1):
                    refused_before = len(simulator.stats().refused)
                    finished = daemon.run_cycle(sources.inventory.load(), timeout=300)
                    refused = len(simulator.stats().refused) - refused_before
                    rows.append(
                        {
                            "cycle": cycle,
                            "duration_s": finished.duration_s,
                            "results": len(finished.results),
                            "most_at_once": most_at_once(finished.results),
                            "refused": refused,
                        }
                    )
            finally:
                daemon.stop()
        finally:
            simulator.stop()
    return rows


def main() -> None:
    """Print one JSON line per cycle."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--stagger", type=float, default=1.0)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    for row in run(args.cycles, args.stagger):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
