"""The floor that handing checks between threads puts under any schedule here.

Usage::

    python -m bench.handoff                                 # large_2000's checks
    python -m bench.handoff bench/scenarios/large_2000.json --work 0 100 200 300 --runs 3

No actor, no lease, no account: the scenario's checks run on as many reused
threads as its global limit allows, in one of two orders: ``longest`` first,
or ``tail`` as the dispatch orders an account's queue (its shortest checks
last, longest first, the longer ones before them spread over their lengths:
:func:`actors.dispatch.place`). Each thread sleeps a check's
duration on a lock with a timeout (as the scheduler bench's probe waits on its
cancel token) and hands it back through a queue to one deciding thread. That
thread spends ``--work`` µs of CPU on it (spinning on ``time.thread_time``:
Python holding the interpreter lock, as the coordinator's and the accounts'
turns do) and hands the next check to the pool. So the figure is what the hand
over between threads alone costs, at that much Python per check, with nothing
of the scheduler in the way.

With ``--ahead`` each work value is also run with the next check handed over
in advance: the deciding thread gives each thread its next check while the
current one still runs (it spends the same ``--work`` on it), and the thread
starts it the moment the current one ends, so the deciding thread is off the
path from one check to the next. That is the floor of a design in which a
check's successor on its slot is settled before the check ends.

Prints one JSON object: the bound (the checks' total over the threads, or the
longest check) and, for each order, the ratio a plain list schedule of that
order reaches with no hand-over at all (``list_schedule_ratio``) and for each
work value the ratio of every run, the most checks that ran at once and the
checks run (``work_us``; ``ahead_work_us`` the same with ``--ahead``). The runs
alternate between the orders.
"""

from __future__ import annotations

import argparse
import heapq
import json
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from actors.dispatch import spread, tail_threshold
from bench.scheduler import load_scenario

ORDERS = ("longest", "tail")

_DEFAULT = Path(__file__).parent / "scenarios" / "large_2000.json"


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def in_order(durations: Sequence[float], order: str, slots: int) -> list[float]:
    """The checks in ``order`` (one of :data:`ORDERS`) for ``slots`` threads."""
    ordered = sorted(durations, reverse=True)
    threshold = tail_threshold(ordered, slots) if order == "tail" else None
    if threshold is None:
        return ordered
    longer = [duration for duration in ordered if duration > threshold]
    return sorted(longer, key=spread) + ordered[len(longer) :]


def list_schedule(durations: Sequence[float], slots: int) -> float:
    """When the checks, in this order, end on ``slots`` slots with no hand-over time."""
    ends = [0.0] * slots
    for duration in durations:
        heapq.heappush(ends, heapq.heappop(ends) + duration)
    return max(ends)


def run_once(durations: Sequence[float], slots: int, work_s: float) -> dict[str, float | int]:
    """Run every check once on ``slots`` threads; the seconds it took and what ran at once."""
    ended: queue.SimpleQueue[float] = queue.SimpleQueue()
    work: queue.SimpleQueue[float | None] = queue.SimpleQueue()
    running = [0, 0]  # now, most at once (changed by the deciding thread only)

    def pool_thread() -> None:
        while (duration := work.get()) is not None:
            gate = threading.Lock()
            gate.acquire()
            gate.acquire(timeout=duration)
            ended.put(duration)

    threads = [threading.Thread(target=pool_thread, daemon=True) for _ in range(slots)]
    for thread in threads:
        thread.start()
    pending = iter(durations)
    checks = 0
    started = time.perf_counter()
    try:

        def hand_next() -> None:
            nonlocal checks
            duration = next(pending, None)
            if duration is not None:
                checks += 1
                running[0] += 1
                running[1] = max(running[1], running[0])
                work.put(duration)

        for _ in range(slots):
            hand_next()
        while running[0]:
            ended.get()
            running[0] -= 1
            _spin(work_s)
            hand_next()
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "most_at_once": running[1], "checks": checks}
    finally:
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join(timeout=5)


def run_ahead(durations: Sequence[float], slots: int, work_s: float) -> dict[str, float | int]:
    """:func:`run_once` with each thread given its next check while the current one runs."""
    ended: queue.SimpleQueue[int] = queue.SimpleQueue()
    own: list[queue.SimpleQueue[float | None]] = [queue.SimpleQueue() for _ in range(slots)]

    def pool_thread(number: int) -> None:
        work = own[number]
        while (duration := work.get()) is not None:
            gate = threading.Lock()
            gate.acquire()
            gate.acquire(timeout=duration)
            ended.put(number)

    threads = [
        threading.Thread(target=pool_thread, args=(number,), daemon=True) for number in range(slots)
    ]
    for thread in threads:
        thread.start()
    pending = iter(durations)
    handed = done = most = 0
    started = time.perf_counter()
    try:

        def hand_next(number: int) -> None:
            nonlocal handed
            duration = next(pending, None)
            if duration is not None:
                handed += 1
                own[number].put(duration)

        for number in range(slots):
            hand_next(number)  # the first check ...
        for number in range(slots):
            hand_next(number)  # ... and the next, in advance
        while done < handed:
            most = max(most, min(slots, handed - done))  # a thread runs one at a time
            number = ended.get()
            done += 1
            _spin(work_s)
            hand_next(number)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "most_at_once": most, "checks": handed}
    finally:
        for work in own:
            work.put(None)
        for thread in threads:
            thread.join(timeout=5)


def measure(
    durations: Sequence[float],
    slots: int,
    work_us: Sequence[float],
    runs: int,
    orders: Sequence[str] = ORDERS,
    *,
    ahead: bool = False,
) -> dict[str, object]:
    """The bound, and per order its list schedule's ratio and each work value's runs
    (``ahead``: also with the next check handed over in advance)."""
    bound = max(sum(durations) / slots, max(durations, default=0.0))
    checks = {order: in_order(durations, order, slots) for order in orders}
    ways = {"work_us": run_once, **({"ahead_work_us": run_ahead} if ahead else {})}
    runs_by: dict[tuple[str, str, float], list[dict[str, float | int]]] = {}
    for _ in range(runs):
        for us in work_us:
            for order in orders:  # alternating, so that the machine's drift hits all alike
                for way, run in ways.items():
                    figures = run(checks[order], slots, us / 1e6)
                    runs_by.setdefault((way, order, us), []).append(figures)
    by_order: dict[str, object] = {}
    for order in orders:
        by_order[order] = {
            "list_schedule_ratio": round(list_schedule(checks[order], slots) / bound, 4),
            **{way: _by_work(runs_by, way, order, work_us, bound) for way in ways},
        }
    return {
        "checks": len(durations),
        "threads": slots,
        "bound_s": round(bound, 4),
        "orders": by_order,
    }


def _by_work(
    runs_by: dict[tuple[str, str, float], list[dict[str, float | int]]],
    way: str,
    order: str,
    work_us: Sequence[float],
    bound: float,
) -> dict[str, object]:
    by_work: dict[str, object] = {}
    for us in work_us:
        results = runs_by[(way, order, us)]
        by_work[f"{us:g}"] = {
            "ratios": [round(float(r["seconds"]) / bound, 4) for r in results],
            "most_at_once": max(int(r["most_at_once"]) for r in results),
            "checks": [int(r["checks"]) for r in results],
        }
    return by_work


def main(argv: list[str] | None = None) -> int:
    """Command line: a scenario file with a global limit, the work values, the runs."""
    parser = argparse.ArgumentParser(prog="python -m bench.handoff", description=__doc__)
    parser.add_argument("scenario", nargs="?", type=Path, default=_DEFAULT)
    parser.add_argument("--work", nargs="+", type=float, default=[0, 100, 200, 300])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--order", choices=ORDERS, nargs="+", default=list(ORDERS))
    parser.add_argument(
        "--ahead",
        action="store_true",
        help="also run each work value with the next check handed over in advance",
    )
    args = parser.parse_args(argv)
    scenario = load_scenario(json.loads(args.scenario.read_text()))
    if scenario.global_limit <= 0:
        parser.error(f"{args.scenario}: needs a global limit (the threads to run the checks on)")
    durations = [scenario.durations[stream.id] for stream in scenario.streams]
    result = measure(
        durations,
        scenario.global_limit,
        args.work,
        max(1, args.runs),
        args.order,
        ahead=args.ahead,
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
