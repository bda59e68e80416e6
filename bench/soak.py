"""``python -m bench.soak``: many cycles through one set of actors, for what a daemon
left running for months keeps.

Runs a scenario ``--cycles`` times through the real actors (``bench.scheduler``'s
set-up and sleep probe) and prints a JSON line after the first cycle and every
``--every`` cycles: the process's resident memory, the objects the garbage
collector tracks (after a collection), the threads alive. What grows from one
line to the next, cycle after cycle, is a leak. The last line sums up the growth
from the second line on (the first cycles fill caches that then stay: the
checker pool's threads, each stream's history), per 1,000 cycles.

A cycle that gets no result within ``--stall-after`` seconds ends the run with
``stalled``: a cycle with nothing running that never ends is a lost wake-up.

The default scenario is small and fast (40 streams of 2 ms over 5 accounts of
2 slots), so that a thousand cycles take seconds; ``--scenario`` takes any
scenario file of ``bench/scenarios``. The bench keeps nothing per cycle itself.

Usage::

    python -m bench.soak --cycles 2000 --every 500
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykka
import structlog

from actors.jobs import jobs_for
from actors.messages import CheckCycle, CycleFinished
from app.config import load_config
from app.daemon import Daemon
from app.runtime import tune_gc
from app.sources import build_sources
from bench.scheduler import Scenario, SleepProbe, load_scenario, running

SMALL: dict[str, Any] = {
    "global_limit": 0,
    "accounts": [{"id": a, "name": f"A{a}", "max_streams": 2} for a in range(1, 6)],
    "streams": [
        {"id": s, "name": f"S{s}", "m3u_account": 1 + s % 5, "duration_s": 0.002}
        for s in range(1, 41)
    ],
}
"""The default scenario: 40 streams of 2 ms over 5 accounts of 2 slots."""

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss_mb() -> float:
    """Resident memory now (not the peak: a leak shows as a rise that stays)."""
    with open("/proc/self/statm") as statm:
        return round(int(statm.read().split()[1]) * _PAGE_MB, 1)


def _figures(cycle: int, results: int) -> dict[str, Any]:
    gc.collect()
    return {
        "cycle": cycle,
        "results": results,
        "rss_mb": _rss_mb(),
        "gc_objects": len(gc.get_objects()),
        "threads": threading.active_count(),
    }


Report = Callable[[dict[str, Any]], None]
"""Given each line of figures as it comes."""


def soak(
    scenario: Scenario,
    cycles: int,
    every: int,
    stall_after: float = 120.0,
    report: Report = lambda _line: None,
) -> list[dict[str, Any]]:
    """Run ``cycles`` cycles; the figures after the first and every ``every``-th
    (each also given to ``report`` as it comes), then the summary."""
    with running(scenario) as (coordinator, probe):

        def one_cycle(cycle_id: int) -> CycleFinished:
            probe.reset()  # it records every check's start and end
            done: pykka.ThreadingFuture[CycleFinished] = pykka.ThreadingFuture()
            coordinator.tell(CheckCycle(cycle_id, jobs_for(scenario.streams), done))
            return done.get(timeout=stall_after)

        return _cycles(cycles, every, stall_after, one_cycle, report)


def soak_daemon(
    data: dict[str, Any],
    cycles: int,
    every: int,
    folder: Path,
    stall_after: float = 120.0,
    report: Report = lambda _line: None,
) -> list[dict[str, Any]]:
    """:func:`soak` through the whole daemon: a file inventory made from ``data``,
    the results store (SQLite, in ``folder``; its size is in the figures), the
    sink, the monitor and the metrics; the checks sleep as ``bench.scheduler``'s do."""
    scenario = load_scenario(data)
    (folder / "inventory.json").write_text(json.dumps(_inventory(data)))
    (folder / "config.toml").write_text(_DAEMON_CONFIG)
    config = load_config(folder / "config.toml")
    sources = build_sources(config)
    probe = SleepProbe(scenario)
    daemon = Daemon(config, sources, probe)
    database = folder / "results.sqlite"
    daemon.start(scheduled=False, status=False)
    try:
        inventory = sources.inventory.load()

        def one_cycle(_cycle_id: int) -> CycleFinished:
            probe.reset()
            return daemon.run_cycle(inventory, timeout=stall_after)

        def size() -> dict[str, Any]:
            return {"database_mb": round(database.stat().st_size / 2**20, 2)}

        return _cycles(cycles, every, stall_after, one_cycle, report, size)
    finally:
        daemon.stop()


def _cycles(
    cycles: int,
    every: int,
    stall_after: float,
    one_cycle: Callable[[int], CycleFinished],
    report: Report,
    more: Callable[[], dict[str, Any]] = dict,
) -> list[dict[str, Any]]:
    """``one_cycle`` for each cycle, the figures (and ``more``) at the first, every
    ``every``-th and the last, then the growth; a cycle timed out ends the run."""
    lines: list[dict[str, Any]] = []

    def note(line: dict[str, Any]) -> None:
        lines.append(line)
        report(line)

    for cycle_id in range(1, cycles + 1):
        try:
            finished = one_cycle(cycle_id)
        except pykka.Timeout:
            note({"stalled": cycle_id, "after_s": stall_after})
            return lines
        if cycle_id == 1 or cycle_id % every == 0 or cycle_id == cycles:
            note({**_figures(cycle_id, len(finished.results)), **more()})
    note(_growth(lines))
    return lines


_DAEMON_CONFIG = """
[source]
type = "file"
path = "inventory.json"

[concurrent_streams]
global_limit = 0
stagger_delay = 0

[check]
retries = 0

[results]
database = "results.sqlite"

[log]
level = "error"
"""


def _inventory(data: dict[str, Any]) -> dict[str, Any]:
    """The scenario as an inventory file: a channel per ten streams."""
    streams = [
        {
            **{k: v for k, v in s.items() if k != "duration_s"},
            "url": f"http://127.0.0.1:9/{s['id']}.ts",
        }
        for s in data["streams"]
    ]
    ids = [s["id"] for s in streams]
    channels = [
        {"id": n + 1, "name": f"C{n + 1}", "streams": ids[at : at + 10]}
        for n, at in enumerate(range(0, len(ids), 10))
    ]
    return {"accounts": data["accounts"], "streams": streams, "channels": channels}


def _growth(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Growth from the second line to the last, per 1,000 cycles."""
    if len(lines) < 3:  # the first, a second and a last
        return {"growth_per_1000_cycles": None}
    first, last = lines[1], lines[-1]
    per = 1000 / (last["cycle"] - first["cycle"])
    return {
        "growth_per_1000_cycles": {
            "from_cycle": first["cycle"],
            "rss_mb": round((last["rss_mb"] - first["rss_mb"]) * per, 2),
            "gc_objects": round((last["gc_objects"] - first["gc_objects"]) * per, 1),
            "threads": round((last["threads"] - first["threads"]) * per, 1),
        }
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--cycles``, ``--every``, ``--scenario``; exit 1 if a cycle stalled."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--cycles", type=int, default=1000, help="cycles to run (default 1000)")
    parser.add_argument("--every", type=int, default=250, help="figures every N cycles")
    parser.add_argument("--scenario", type=Path, default=None, help="a scenario JSON file")
    parser.add_argument("--stall-after", type=float, default=120.0, help="seconds per cycle")
    parser.add_argument(
        "--daemon", action="store_true", help="the whole daemon: store, sink, monitor, metrics"
    )
    args = parser.parse_args(argv)
    data = json.loads(args.scenario.read_text()) if args.scenario else SMALL
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(40),  # errors only
        cache_logger_on_first_use=True,
    )
    tune_gc()  # the daemon's own runtime settings
    cycles, every = max(1, args.cycles), max(1, args.every)

    def report(line: dict[str, Any]) -> None:
        print(json.dumps(line), flush=True)

    if args.daemon:
        with tempfile.TemporaryDirectory(prefix="soak-") as folder:
            lines = soak_daemon(data, cycles, every, Path(folder), args.stall_after, report)
    else:
        lines = soak(load_scenario(data), cycles, every, args.stall_after, report)
    return 1 if any("stalled" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
