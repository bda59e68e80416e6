"""Store writes that a locked database refuses wait, in order, and land once it is free.

A real SQLite file, locked by a second connection as another process would
(``BEGIN EXCLUSIVE``), with a short busy timeout; a fake clock for the retry pace.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from adapters.pending_writes import PendingWrites
from adapters.store import ResultStore
from domain.models import CheckResult


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def locked(path: Path) -> Iterator[None]:
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


def result(stream_id: int) -> CheckResult:
    return CheckResult(stream_id=stream_id, account_id=1, profile_id=None, status="ok")


def starts_cycle(started_at: str) -> Callable[[ResultStore], object]:
    return lambda store: store.start_cycle(started_at, 1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultStore]:
    with ResultStore(tmp_path / "results.db", busy_timeout=0.05) as opened:
        yield opened


def test_refused_writes_wait_in_order_and_land_at_the_next_try(store: ResultStore):
    clock = Clock()
    pending = PendingWrites(clock, retry_every=30.0)
    cycles: list[int] = []
    with locked(store.path):
        pending.add(store, "start", lambda s: cycles.append(s.start_cycle("t0", 2)))
        pending.add(store, "check 1", lambda s: s.record(cycles[0], result(1)))
        assert pending.waiting == 2
        clock.now += 10.0
        assert not pending.retry(store)  # too soon: not even tried
    assert pending.waiting == 2
    clock.now += 10.0
    pending.add(store, "check 2", lambda s: s.record(cycles[0], result(2)))  # too soon still
    assert pending.waiting == 3
    clock.now += 11.0
    assert pending.retry(store)
    assert pending.waiting == 0
    assert [c.id for c in store.cycles()] == cycles
    assert sorted(store.latest()) == [1, 2]


def test_a_write_that_crashes_is_dropped_alone(store: ResultStore):
    pending = PendingWrites(Clock())

    def crash(_store: ResultStore) -> None:
        raise KeyError("a bug")

    cycle: list[int] = []
    pending.add(store, "start", lambda s: cycle.append(s.start_cycle("t0", 1)))
    pending.add(store, "bug", crash)
    pending.add(store, "check", lambda s: s.record(cycle[0], result(7)))
    assert pending.waiting == 0
    assert sorted(store.latest()) == [7]


def test_past_the_limit_the_oldest_writes_are_given_up(store: ResultStore):
    pending = PendingWrites(Clock(), retry_every=0.0, limit=2)
    with locked(store.path):
        for started_at in ("a", "b", "c"):
            pending.add(store, started_at, starts_cycle(started_at))
        assert pending.waiting == 2
    assert pending.retry(store)
    assert sorted(c.started_at for c in store.cycles()) == ["b", "c"]  # "a" was given up


def test_a_write_that_can_never_land_is_dropped_and_holds_nothing_back(store: ResultStore):
    pending = PendingWrites(Clock())
    cycle: list[int] = []
    pending.add(store, "start", lambda s: cycle.append(s.start_cycle("t0", 1)))
    # A check of a cycle the file does not have: a foreign key broken, for ever.
    pending.add(store, "orphan", lambda s: s.record(cycle[0] + 99, result(5)))
    pending.add(store, "check", lambda s: s.record(cycle[0], result(6)))
    assert pending.waiting == 0
    assert sorted(store.latest()) == [6]


def test_retry_in_says_when_the_next_try_is_due(store: ResultStore):
    clock = Clock()
    pending = PendingWrites(clock, retry_every=30.0)
    assert pending.retry_in() == 0.0
    with locked(store.path):
        pending.add(store, "start", lambda s: s.start_cycle("t0", 1))
    clock.now += 12.0
    assert pending.retry_in() == pytest.approx(18.0)
