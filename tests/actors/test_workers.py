"""The pool of reused threads the checks run on."""

from __future__ import annotations

import threading

from actors.workers import BlockingWork


def test_a_call_never_waits_behind_another() -> None:
    pool = BlockingWork("t")
    release = threading.Event()
    started = threading.Semaphore(0)

    def blocked() -> None:
        started.release()
        release.wait(5)

    try:
        for _ in range(5):
            pool.run(blocked)
        for _ in range(5):  # all five run at once: none queued behind a busy thread
            assert started.acquire(timeout=5)
        assert pool.threads == 5
    finally:
        release.set()
        pool.stop()


def test_a_call_made_from_the_previous_ones_report_reuses_its_thread() -> None:
    """As a check's report leads to the next check: the reporting thread is idle by then."""
    pool = BlockingWork("t")
    done = threading.Event()
    names: list[str] = []

    def step(n: int) -> None:
        names.append(threading.current_thread().name)
        if n == 20:
            done.set()
            return
        pool.run(lambda: n + 1, step)

    try:
        pool.run(lambda: 1, step)
        assert done.wait(5)
        assert len(names) == 20
        assert pool.threads == 1
        assert set(names) == {"t-1"}
    finally:
        pool.stop()


def test_a_call_that_raises_costs_nothing_but_itself() -> None:
    pool = BlockingWork("t")
    ran = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    try:
        pool.run(boom)
        pool.run(ran.set)
        assert ran.wait(5)
    finally:
        pool.stop()
