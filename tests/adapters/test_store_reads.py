"""The dashboard's read-only queries on the results store, beside a writing ResultStore."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.store import ResultStore, StoreError, read_cycles, read_recent_checks
from domain.models import CheckResult


def result(stream_id: int, n: int, status: str = "ok", bitrate: float | None = None):
    at = f"2026-01-01T00:{n:02d}:00Z"
    return CheckResult(
        stream_id=stream_id,
        account_id=1,
        profile_id=11,
        status=status,  # type: ignore[arg-type]
        bitrate_kbps=bitrate,
        started_at=at,
        finished_at=at,
    )


def fill(path: Path, cycles: int) -> None:
    with ResultStore(path) as store:
        for n in range(cycles):
            cycle = store.start_cycle(f"2026-01-01T00:{n:02d}:00Z", 3)
            store.record(cycle, result(1, n, "ok", 1000.0 + n))
            store.record(cycle, result(2, n, "dead" if n % 2 else "ok", None))
            store.record(cycle, result(3, n, "cancelled"))
            store.finish_cycle(cycle, f"2026-01-01T00:{n:02d}:30Z", 2, 1, 1)


def test_recent_checks_newest_first_without_cancelled(tmp_path: Path):
    path = tmp_path / "results.sqlite"
    fill(path, 6)
    recent = read_recent_checks(path, per_stream=4)
    assert sorted(recent) == [1, 2]  # stream 3 was only ever cancelled
    assert [r.bitrate_kbps for r in recent[1]] == [1005.0, 1004.0, 1003.0, 1002.0]
    assert [r.status for r in recent[2]] == ["dead", "ok", "dead", "ok"]


def test_recent_checks_read_only_the_latest_cycles(tmp_path: Path):
    path = tmp_path / "results.sqlite"
    fill(path, 6)
    recent = read_recent_checks(path, per_stream=10, cycles=2)
    assert [r.bitrate_kbps for r in recent[1]] == [1005.0, 1004.0]


def test_reads_beside_a_writer_in_another_thread(tmp_path: Path):
    path = tmp_path / "results.sqlite"
    store = ResultStore(path)
    try:
        cycle = store.start_cycle("2026-01-01T00:00:00Z", 1)
        store.record(cycle, result(1, 0, "ok", 900.0))
        # The writer's connection stays open (WAL): the reader sees committed rows.
        assert read_recent_checks(path)[1][0].bitrate_kbps == 900.0
        assert read_cycles(path)[0].finished_at is None
        store.finish_cycle(cycle, "2026-01-01T00:01:00Z", 1, 1, 0)
        assert read_cycles(path)[0].alive == 1
    finally:
        store.close()


def test_missing_file_reads_empty_and_is_not_created(tmp_path: Path):
    path = tmp_path / "none.sqlite"
    assert read_recent_checks(path) == {}
    assert read_cycles(path) == []
    assert not path.exists()


def test_a_file_that_is_no_database_names_the_file(tmp_path: Path):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match=r"bad\.sqlite"):
        read_cycles(path)
