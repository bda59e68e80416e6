"""The result sink keeps what a locked results database refused, and stores it later.

Before, a cycle whose row could not be written (the file locked by another
process for longer than the busy timeout) lost every result of that cycle
from the history, without a word per result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from actors.messages import CycleFinished, CycleStarted, Flush, ResultReady
from actors.sink import ResultSink
from actors.timers import Timers
from adapters.sources import NullWriter
from adapters.store import ResultStore
from domain.models import CheckResult
from tests.adapters.test_pending_writes import locked
from tests.app.dashboard_setup import wait_for
from tests.logcapture import capture_logs


def opener(path: Path) -> Callable[[], ResultStore]:
    return lambda: ResultStore(path, busy_timeout=0.05)


def result(stream_id: int) -> CheckResult:
    return CheckResult(stream_id=stream_id, account_id=1, profile_id=None, status="ok")


def test_a_cycle_that_started_while_the_database_was_locked_is_stored_in_full(tmp_path: Path):
    path = tmp_path / "results.db"
    ResultStore(path).close()
    sink = ResultSink.start(opener(path), NullWriter(), retry_every=0.0)
    try:
        with locked(path):
            sink.tell(CycleStarted(cycle_id=5, streams=2, started_at="2026-12-01T10:00:00Z"))
            sink.tell(ResultReady(5, result(1)))
            sink.ask(Flush(), timeout=10)
        sink.tell(ResultReady(5, result(2)))
        finished = CycleFinished(
            5, (result(1), result(2)), "2026-12-01T10:00:00Z", "2026-12-01T10:01:00Z", 60.0
        )
        sink.tell(finished)
        sink.ask(Flush(), timeout=10)
    finally:
        sink.stop()
    with ResultStore(path) as store:
        assert sorted(store.latest()) == [1, 2]
        (cycle,) = store.cycles()
        assert (cycle.id, cycle.checked, cycle.alive) == (5, 2, 2)


def test_writes_still_refused_at_stop_are_tried_once_more(tmp_path: Path):
    path = tmp_path / "results.db"
    ResultStore(path).close()
    sink = ResultSink.start(opener(path), NullWriter(), retry_every=3600.0)
    with locked(path):
        sink.tell(CycleStarted(cycle_id=1, streams=1, started_at="2026-12-01T10:00:00Z"))
        sink.ask(Flush(), timeout=10)
    sink.tell(ResultReady(1, result(3)))  # within retry_every of the failure: waits
    sink.stop()  # the last try lands them
    with ResultStore(path) as store:
        assert sorted(store.latest()) == [3]


def test_the_last_try_at_stop_is_short_and_says_what_is_lost(tmp_path: Path):
    # With SQLite's usual 5 s busy timeout the stop took 5 s, past the
    # daemon's 4 s stop budget: the process ended mid-try, losing the writes
    # without a word.
    path = tmp_path / "results.db"
    ResultStore(path).close()
    sink = ResultSink.start(lambda: ResultStore(path), NullWriter(), retry_every=3600.0)
    with locked(path):
        sink.tell(CycleStarted(cycle_id=1, streams=1, started_at="2026-12-01T10:00:00Z"))
        sink.ask(Flush(), timeout=10)  # the start waited its 5 s, and was refused
        with capture_logs() as logs:
            began = time.monotonic()
            sink.stop()
            took = time.monotonic() - began
    assert took < 2.0
    assert [e["writes"] for e in logs if e["event"] == "store_writes_lost"] == [1]


def test_refused_writes_are_tried_again_without_another_message(tmp_path: Path):
    path = tmp_path / "results.db"
    ResultStore(path).close()
    timers = Timers()
    sink = ResultSink.start(opener(path), NullWriter(), retry_every=0.2, timers=timers)
    try:
        with locked(path):
            sink.tell(CycleStarted(cycle_id=4, streams=1, started_at="2026-12-01T10:00:00Z"))
            sink.tell(ResultReady(4, result(8)))
            sink.ask(Flush(), timeout=10)

        def stored() -> bool:
            with ResultStore(path) as store:
                return sorted(store.latest()) == [8]

        assert wait_for(stored, timeout=10)  # the sink woke by itself
    finally:
        sink.stop()
        timers.stop()
