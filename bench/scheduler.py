"""Benchmark of the actor scheduler with a probe that sleeps each stream's duration.

Usage::

    python -m bench.scheduler bench/scenarios/seed.json
    python -m bench.scheduler --generate 10000 200   # 10,000 streams over 200 accounts
    python -m bench.scheduler --generate 2000 40 --global-limit 30
    python -m bench.scheduler --suite --runs 3       # every bench/scenarios/*.json

``large_2000.json`` and ``large_10000.json`` in ``bench/scenarios`` are the two
generated cases above, as files (``{"generate": {...}}``).

Prints one JSON object: ``makespan_s``, ``lower_bound_s`` (the longest of: each
account's total duration over its free slots, the total over the global limit,
the longest single check), ``ratio``, ``max_concurrency`` per account id,
``lower_bound_held_s`` and ``ratio_held`` (the same bound on the seconds each
check really held its connection: a sleep ends a little later than asked, by
the timer's slack and the wait for the interpreter lock, and the scheduler
cannot win that back), ``violations``, ``idle_slot_latency_ms`` (p50/p99 from a slot freeing while a
check that could use it waits, to the next such check starting; a slot the
global limit keeps idle is not counted, the global slot it frees is),
``overhead_ms_per_check`` (CPU time of the whole process per check: the probe
only sleeps, so every CPU cycle is ours), ``first_check_ms`` (from the cycle's
start to its first check starting), ``threads_max`` (threads alive at the
cycle's end: the pool keeps its threads) and ``max_rss_mb``.

``--suite`` runs every scenario file of a folder ``--runs`` times, each in its
own process (so that ``max_rss_mb`` is the scenario's), and prints one line
per run: the machine's load average, the warm and cold ratio, the idle-slot
latency p50/p99, CPU per check, memory, violations.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka
import structlog

from actors.account import ViewerFeed
from actors.coordinator import Coordinator, CoordinatorSettings
from actors.jobs import jobs_for
from actors.messages import CheckCycle, CycleFinished, SetAccounts
from actors.slots import UNLIMITED, ViewerPolicy, capacity
from actors.timers import Timers
from actors.viewers import ViewerWatcher
from app.runtime import tune_gc
from domain.cancel import CancelToken
from domain.models import (
    Account,
    ProbeOutcome,
    ProbeRequest,
    Profile,
    Stream,
    StreamInfo,
    ViewerSnapshot,
)


@dataclass(frozen=True)
class Scenario:
    """A benchmark input: accounts, streams with durations, viewers, global limit."""

    global_limit: int
    accounts: tuple[Account, ...]
    streams: tuple[Stream, ...]
    durations: dict[int, float]
    viewers: dict[int, int]


def load_scenario(data: dict[str, Any]) -> Scenario:
    """Build a scenario from the JSON shape documented in the README.

    A file holding ``{"generate": {"streams": N, "accounts": M, "global_limit":
    L, "seed": S, "scale": X}}`` stands for the scenario :func:`generate` makes
    of those.
    """
    if "generate" in data:
        spec = data["generate"]
        data = generate(
            int(spec["streams"]),
            int(spec["accounts"]),
            seed=int(spec.get("seed", 7)),
            global_limit=int(spec.get("global_limit", 0)),
            scale=float(spec.get("scale", 1.0)),
        )
    accounts = []
    for raw in data["accounts"]:
        profiles = tuple(
            Profile(
                id=int(p["id"]),
                name=str(p.get("name", "")),
                max_streams=int(p.get("max_streams", 0)),
                is_default=bool(p.get("is_default", False)),
            )
            for p in raw.get("profiles", ())
        )
        accounts.append(
            Account(
                id=int(raw["id"]),
                name=str(raw.get("name", raw["id"])),
                max_streams=int(raw.get("max_streams", 0)),
                profiles=profiles,
                stagger_delay=0.0,
            )
        )
    streams = tuple(
        Stream(
            id=int(s["id"]),
            name=str(s.get("name", s["id"])),
            account_id=int(s["m3u_account"]),
            url=f"http://127.0.0.1:9/live/u/p/{s['id']}.ts",
        )
        for s in data["streams"]
    )
    durations = {int(s["id"]): float(s["duration_s"]) for s in data["streams"]}
    viewers = {int(k): int(v) for k, v in data.get("viewers", {}).items()}
    return Scenario(int(data.get("global_limit", 0)), tuple(accounts), streams, durations, viewers)


def generate(
    streams: int, accounts: int, seed: int = 7, global_limit: int = 0, scale: float = 1.0
) -> dict[str, Any]:
    """A large random scenario: limits 0/1/2/3/5, durations 10-50 ms times ``scale``.

    At ``scale`` 1 a check is far shorter than any real one (1.5-30 s), so the
    ratio mostly measures the fixed cost of a hand-over between threads; a
    larger ``scale`` shows how the same schedule fares with longer checks.
    """
    rng = random.Random(seed)
    return {
        "global_limit": global_limit,
        "accounts": [
            {"id": a, "name": f"acc{a}", "max_streams": rng.choice([0, 1, 2, 3, 5])}
            for a in range(1, accounts + 1)
        ],
        "streams": [
            {
                "id": i,
                "name": f"s{i}",
                "m3u_account": 1 + i % accounts,
                "duration_s": round(rng.uniform(0.01, 0.05) * scale, 4),
            }
            for i in range(1, streams + 1)
        ],
        "viewers": {},
    }


class SleepProbe:
    """Sleeps the stream's duration (on the cancel token) and records when each
    connection opened and closed.

    It takes no lock: a lock that every check takes twice is a cost the real
    probe does not have (each ffmpeg run has its own), and with thousands of
    checks at once a probe thread that lost the interpreter lock while holding
    it kept others waiting for it. Appending to a list is atomic, and each
    stamp is taken before it is appended, so the records sorted by time give
    the connections open at each instant (:meth:`tally`).
    """

    def __init__(self, scenario: Scenario) -> None:
        self._durations = scenario.durations
        self._limits = {a.id: _free_slots(a, scenario.viewers) for a in scenario.accounts}
        self._global = scenario.global_limit
        self.reset()

    def reset(self) -> None:
        """Forget what was recorded (between cycles)."""
        self.events: list[tuple[float, str, int]] = []
        self.held: dict[int, float] = {}
        """Seconds each stream's check held its connection, as measured here."""

    def __call__(self, request: ProbeRequest, token: CancelToken) -> ProbeOutcome:
        account = request.account_id
        events = self.events
        opened = time.perf_counter()
        events.append((opened, "start", account))
        token.wait(self._durations[request.stream_id])
        closed = time.perf_counter()
        events.append((closed, "end", account))
        self.held[request.stream_id] = closed - opened
        return ProbeOutcome(kind="ok", info=StreamInfo(resolution="1280x720", height=720))

    def tally(self) -> tuple[dict[int, int], int]:
        """The most connections open at once per account, and the violations: each
        opening beyond its account's limit or the global one counts once (a
        closing and an opening at the same instant close first)."""
        open_now: dict[int, int] = defaultdict(int)
        max_open: dict[int, int] = defaultdict(int)
        total = violations = 0
        for _, kind, account in sorted(self.events):  # "end" sorts before "start"
            if kind == "end":
                open_now[account] -= 1
                total -= 1
                continue
            open_now[account] += 1
            total += 1
            max_open[account] = max(max_open[account], open_now[account])
            limit = self._limits[account]
            if limit < UNLIMITED and open_now[account] > limit:
                violations += 1
            if self._global and total > self._global:
                violations += 1
        return dict(max_open), violations


def _free_slots(account: Account, viewers: dict[int, int]) -> int:
    total = capacity(account)
    if total >= UNLIMITED:
        return UNLIMITED
    return max(0, total - viewers.get(account.id, 0))


def lower_bound(scenario: Scenario, durations: dict[int, float] | None = None) -> float:
    """No schedule can finish sooner than this (with ``durations``: what the checks took)."""
    durations = scenario.durations if durations is None else durations
    per_account: dict[int, list[float]] = defaultdict(list)
    for stream in scenario.streams:
        per_account[stream.account_id].append(durations[stream.id])
    bounds = [max(durations.values(), default=0.0)]
    by_id = {a.id: a for a in scenario.accounts}
    for account_id, taken in per_account.items():
        slots = _free_slots(by_id[account_id], scenario.viewers)
        if slots < UNLIMITED:
            bounds.append(sum(taken) / max(slots, 1))
    if scenario.global_limit:
        bounds.append(sum(durations.values()) / scenario.global_limit)
    return max(bounds)


def idle_slot_latencies(events: list[tuple[float, str, int]], scenario: Scenario) -> list[float]:
    """Seconds from each slot freeing while a check that could use it waits, to the next start.

    At every instant the usable idle slots are ``min(global room, sum over
    accounts of min(free slots, checks not started))``: a slot the global limit
    rightly keeps idle is not usable, and the global slot that frees it is. A
    check ending adds at most one usable idle slot, a check starting takes one;
    each start is paired with the oldest. The first wave is not counted: no
    slot freed for it.
    """
    slots = {a.id: _free_slots(a, scenario.viewers) for a in scenario.accounts}
    waiting: dict[int, int] = defaultdict(int)
    for stream in scenario.streams:
        waiting[stream.account_id] += 1
    open_now: dict[int, int] = defaultdict(int)
    limit = scenario.global_limit or UNLIMITED
    # Kept up to date event by event (only the event's account changes), so
    # that 20,000 events over 200 accounts take milliseconds, not seconds.
    share = {a: min(slots[a], n) for a, n in waiting.items()}
    per_account = sum(share.values())
    total_open = 0

    def usable() -> int:
        return min(limit - total_open, per_account)

    def update(account: int) -> None:
        nonlocal per_account
        new = min(slots[account] - open_now[account], waiting[account])
        per_account += new - share[account]
        share[account] = new

    ordered = sorted(events)
    idle_since: deque[float | None] = deque([None] * usable())  # None: the first wave's
    latencies = []
    for at, kind, account in ordered:
        before = usable()
        if kind == "end":
            open_now[account] -= 1
            total_open -= 1
            update(account)
            idle_since.extend([at] * (usable() - before))
            continue
        open_now[account] += 1
        total_open += 1
        waiting[account] -= 1
        update(account)
        if idle_since:
            since = idle_since.popleft()
            if since is not None:
                latencies.append(at - since)
    return latencies


class _StaticViewers:
    """The scenario's viewers, the same at every read."""

    def __init__(self, snapshot: ViewerSnapshot) -> None:
        self._snapshot = snapshot

    def read(self) -> ViewerSnapshot:
        return self._snapshot


VIEWER_POLL_S = 5.0
"""How often the bench's watcher reads the viewer counts: the daemon's default
``[viewers] poll_interval`` (a test holds the two equal; the config module is not
imported here, its memory would count in ``max_rss_mb``)."""


def viewer_setup() -> tuple[float, ViewerPolicy]:
    """How often the watcher reads the viewer counts, and what accounts assume when
    they are old: as the daemon's defaults have it. Read less often than the
    policy's ``stale_after``, the counts go stale in the middle of a run, and an
    account that keeps its one slot for a viewer who may have come gets no check
    (until ``max_wait``)."""
    return VIEWER_POLL_S, ViewerPolicy.polled_every(VIEWER_POLL_S)


@contextmanager
def running(scenario: Scenario) -> Iterator[tuple[pykka.ActorRef[Any], SleepProbe]]:
    """One set of real actors for ``scenario``: its coordinator, told the accounts,
    and the probe every check sleeps in; all stopped afterwards."""
    timers = Timers()
    settings = CoordinatorSettings(
        global_limit=scenario.global_limit,
        check_duration=max(scenario.durations.values(), default=1.0),
        check_timeout=30.0,
        retries=0,
    )
    probe = SleepProbe(scenario)
    viewers = _StaticViewers(ViewerSnapshot(accounts=dict(scenario.viewers)))
    poll_s, policy = viewer_setup()
    watcher = ViewerWatcher.start(viewers, timers, poll_s)
    feed = ViewerFeed(watcher, policy)
    coordinator = Coordinator.start(probe, settings, (), None, timers, None, feed)
    try:
        coordinator.tell(SetAccounts(scenario.accounts))
        yield coordinator, probe
    finally:
        pykka.ActorRegistry.stop_all()
        timers.stop()


def run(scenario: Scenario, cycles: int = 2) -> dict[str, Any]:
    """Run the scenario ``cycles`` times through one set of real actors and measure each.

    The first cycle is cold; later ones order each queue by what the checks
    took last time, as the daemon does after its first cycle.
    """
    figures = []
    with running(scenario) as (coordinator, probe):
        for cycle_id in range(1, cycles + 1):
            probe.reset()
            figures.append(_one_cycle(coordinator, scenario, probe, cycle_id))
    result = figures[-1]
    result["cycle"] = len(figures)
    if len(figures) > 1:
        first = figures[0]
        result["cold_cycle"] = {
            key: first[key] for key in ("makespan_s", "ratio", "violations", "idle_slot_latency_ms")
        }
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def _one_cycle(
    coordinator: pykka.ActorRef[Any], scenario: Scenario, probe: SleepProbe, cycle_id: int
) -> dict[str, Any]:
    jobs = jobs_for(scenario.streams)
    done: pykka.ThreadingFuture[CycleFinished] = pykka.ThreadingFuture()
    cpu_before = time.process_time()
    started = time.perf_counter()
    coordinator.tell(CheckCycle(cycle_id, jobs, done))
    finished = done.get(timeout=3600)
    makespan = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    bound = lower_bound(scenario)
    # A sleep here ends later than asked (timer slack, the interpreter lock): the
    # bound on what the checks really held shows what the schedule itself lost.
    held_bound = lower_bound(scenario, {**scenario.durations, **probe.held})
    first = min((at for at, kind, _ in probe.events if kind == "start"), default=started)
    latencies = sorted(idle_slot_latencies(probe.events, scenario))
    max_open, violations = probe.tally()
    return {
        "streams": len(scenario.streams),
        "accounts": len(scenario.accounts),
        "results": len(finished.results),
        "makespan_s": round(makespan, 4),
        "lower_bound_s": round(bound, 4),
        "ratio": round(makespan / bound, 4) if bound else None,
        "lower_bound_held_s": round(held_bound, 4),
        "ratio_held": round(makespan / held_bound, 4) if held_bound else None,
        "max_concurrency": {str(k): v for k, v in sorted(max_open.items())},
        "violations": violations,
        "idle_slot_latency_ms": {
            "p50": round(_percentile(latencies, 0.50) * 1000, 3),
            "p99": round(_percentile(latencies, 0.99) * 1000, 3),
            "samples": len(latencies),
        },
        "overhead_ms_per_check": round(cpu * 1000 / max(len(jobs), 1), 4),
        "first_check_ms": round((first - started) * 1000, 1),
        "threads_max": threading.active_count(),  # the pool's threads outlive the cycle
    }


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, int(q * 100) - 1)]


_SUITE_HEADER = (
    f"{'scenario':<16} {'run':>3} {'load':>5} {'bound_s':>7} {'ratio':>6} {'held':>6} {'cold':>6} "
    f"{'p50_ms':>7} {'p99_ms':>7} {'cpu_ms':>6} {'first_ms':>8} {'rss_mb':>6} "
    f"{'viol':>4} {'results':>7}"
)


def suite(folder: Path, runs: int, cycles: int) -> int:
    """Run every scenario file of ``folder`` ``runs`` times, one process each; print a line each.

    Shipped scenarios first, generated ones after (the 10,000-stream one takes longest).
    """
    files = sorted(
        folder.glob("*.json"), key=lambda p: ("generate" in json.loads(p.read_text()), p.name)
    )
    print(_SUITE_HEADER, flush=True)
    for path in files:
        for run_number in range(1, runs + 1):
            load = os.getloadavg()[0]
            command = [sys.executable, "-m", "bench.scheduler", str(path), "--cycles", str(cycles)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{path.stem:<16} {run_number:>3} failed: {done.stderr.strip()[-300:]}")
                continue
            f = json.loads(done.stdout)
            latency = f["idle_slot_latency_ms"]
            cold = f.get("cold_cycle", {}).get("ratio")
            print(
                f"{path.stem:<16} {run_number:>3} {load:>5.2f} {f['lower_bound_s']:>7.3f} "
                f"{f['ratio']:>6.3f} {f['ratio_held']:>6.3f} "
                f"{cold if cold is not None else '-':>6} "
                f"{latency['p50']:>7.3f} {latency['p99']:>7.2f} "
                f"{f['overhead_ms_per_check']:>6.3f} {f['first_check_ms']:>8.1f} "
                f"{f['max_rss_mb']:>6.1f} {f['violations']:>4} {f['results']:>7}",
                flush=True,
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: a scenario file, ``--generate STREAMS ACCOUNTS`` or ``--suite``."""
    parser = argparse.ArgumentParser(prog="python -m bench.scheduler", description=__doc__)
    parser.add_argument("scenario", nargs="?", type=Path, help="scenario JSON file")
    parser.add_argument("--generate", nargs=2, type=int, metavar=("STREAMS", "ACCOUNTS"))
    parser.add_argument(
        "--global-limit", type=int, default=0, help="global limit of a generated scenario"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of a generated scenario")
    parser.add_argument("--cycles", type=int, default=2, help="cycles to run (default 2)")
    parser.add_argument(
        "--suite",
        nargs="?",
        type=Path,
        const=Path(__file__).parent / "scenarios",
        metavar="FOLDER",
        help="run every scenario file of FOLDER (default bench/scenarios), one line per run",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario with --suite")
    args = parser.parse_args(argv)
    if args.suite:
        return suite(args.suite, max(1, args.runs), max(1, args.cycles))
    if args.generate:
        streams, accounts = args.generate
        data = generate(streams, accounts, seed=args.seed, global_limit=args.global_limit)
    elif args.scenario:
        data = json.loads(args.scenario.read_text())
    else:
        parser.error("give a scenario file or --generate STREAMS ACCOUNTS")
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(40),  # errors only
        cache_logger_on_first_use=True,
    )
    tune_gc()  # the daemon's own runtime settings
    print(json.dumps(run(load_scenario(data), max(1, args.cycles)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
