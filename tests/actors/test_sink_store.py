"""The result sink keeps what a locked results database refused, and stores it later.

Before, a cycle whose row could not be written (the file locked by another
process for longer than the busy timeout) lost every result of that cycle
from the history, without a word per result.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from actors.messages import CycleFinished, CycleStarted, Flush, ResultReady
from actors.sink import ResultSink
from adapters.sources import NullWriter
from adapters.store import ResultStore
from domain.models import CheckResult
from tests.adapters.test_pending_writes import locked


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
