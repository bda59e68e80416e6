from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.store import SCHEMA_VERSION, CycleRecord, ResultStore, StoreError, check_database
from domain.models import CheckResult

ROOT = Path(__file__).resolve().parents[2]


def result(stream_id: int, finished_at: str, status: str = "ok", **kw) -> CheckResult:
    return CheckResult(
        stream_id=stream_id,
        account_id=kw.pop("account_id", 1),
        profile_id=kw.pop("profile_id", 11),
        status=status,  # type: ignore[arg-type]
        started_at=kw.pop("started_at", finished_at),
        finished_at=finished_at,
        **kw,
    )


def iso(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).isoformat(timespec="seconds").replace("+00:00", "Z")


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "results.sqlite"


@pytest.fixture
def store(db_path):
    with ResultStore(db_path) as s:
        yield s


def test_rows_survive_reopening(db_path):
    full = result(
        1,
        "2026-08-20T10:00:10Z",
        resolution="1920x1080",
        fps=25.0,
        video_codec="h264",
        audio_codec="aac",
        bitrate_kbps=4500.0,
        score=0.83,
        started_at="2026-08-20T10:00:00Z",
    )
    dead = result(2, "2026-08-20T10:00:11Z", status="dead", error="http_404", profile_id=None)
    with ResultStore(db_path) as store:
        cycle = store.start_cycle("2026-08-20T10:00:00Z", 2)
        store.record(cycle, full)
        store.record(cycle, dead)
        store.finish_cycle(cycle, "2026-08-20T10:00:12Z", checked=2, alive=1, dead=1)
    with ResultStore(db_path) as store:
        assert store.latest() == {1: full, 2: dead}
        assert store.cycles() == [
            CycleRecord(
                id=cycle,
                started_at="2026-08-20T10:00:00Z",
                finished_at="2026-08-20T10:00:12Z",
                streams=2,
                checked=2,
                alive=1,
                dead=1,
            )
        ]


def test_latest_view_takes_each_streams_newest_row(store):
    first = store.start_cycle("2026-08-20T10:00:00Z", 2)
    store.record(first, result(1, "2026-08-20T10:00:05Z", score=0.5))
    store.record(first, result(2, "2026-08-20T10:00:06Z", status="dead"))
    second = store.start_cycle("2026-08-20T16:00:00Z", 1)
    store.record(second, result(1, "2026-08-20T16:00:05Z", status="error", error="timeout"))
    latest = store.latest()
    assert latest[1].status == "error"
    assert latest[1].error == "timeout"
    assert latest[2].status == "dead"
    assert [r.finished_at for r in store.history(1)] == [
        "2026-08-20T16:00:05Z",
        "2026-08-20T10:00:05Z",
    ]
    assert len(store.history(1, limit=1)) == 1
    assert store.history(99) == []
    assert [c.id for c in store.cycles()] == [second, first]
    assert store.cycles()[0].finished_at is None


def test_wal_mode_and_schema_version(store, db_path):
    store.latest()  # opens the working connection
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    finally:
        raw.close()
    assert {"cycles", "checks", "latest_checks", "checks_stream_finished"} <= names


def test_synchronous_is_normal(store):
    store.latest()
    assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_reopening_does_not_migrate_again(db_path):
    ResultStore(db_path).close()
    ResultStore(db_path).close()  # would fail with "table cycles already exists"


def test_folder_is_created(tmp_path):
    path = tmp_path / "var" / "lib" / "r.sqlite"
    ResultStore(path).close()
    assert path.exists()


def test_corrupt_file_names_the_path(db_path):
    db_path.write_bytes(b"this is not a database, just some text " * 200)
    with pytest.raises(StoreError) as info:
        ResultStore(db_path)
    assert str(db_path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unopenable_path_names_the_path(tmp_path):
    path = tmp_path / "a-directory"
    path.mkdir()
    with pytest.raises(StoreError, match="a-directory"):
        ResultStore(path)


def test_newer_schema_is_refused(db_path):
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        ResultStore(db_path)


def test_unknown_cycle_is_a_store_error(store):
    with pytest.raises(StoreError, match="stream 1"):
        store.record(12345, result(1, iso()))


def test_closed_store_refuses_work(db_path):
    store = ResultStore(db_path)
    store.latest()
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.latest()


def test_connection_belongs_to_the_first_thread_that_uses_it(db_path):
    store = ResultStore(db_path)  # constructed here, used first by the worker
    used = threading.Event()
    may_close = threading.Event()
    got: list[object] = []

    def work() -> None:
        cycle = store.start_cycle(iso(), 1)
        store.record(cycle, result(1, iso()))
        got.append(store.latest())
        used.set()
        may_close.wait(timeout=10)
        store.close()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert used.wait(timeout=10)
        assert got
        assert got[0]
        with pytest.raises(RuntimeError, match="second thread"):
            store.latest()
    finally:
        may_close.set()
        worker.join(timeout=10)
    with pytest.raises(StoreError, match="closed"):
        store.latest()


def test_prune_deletes_old_rows_and_empty_cycles(store):
    old = store.start_cycle("2000-01-01T00:00:00Z", 2)
    store.record(old, result(1, "2000-01-01T00:00:05Z"))
    store.record(old, result(2, "2000-01-01T00:00:06+00:00"))
    store.finish_cycle(old, "2000-01-01T00:00:07Z", 2, 2, 0)
    recent = store.start_cycle(iso(timedelta(days=-1)), 1)
    store.record(recent, result(1, iso(timedelta(days=-1))))
    assert store.prune(0) == 0
    assert store.prune(90) == 2
    assert [c.id for c in store.cycles()] == [recent]
    assert set(store.latest()) == {1}
    assert store.prune(90) == 0
    with pytest.raises(ValueError, match=">= 0"):
        store.prune(-1)


CHILD = textwrap.dedent(
    """
    import sqlite3, sys, time
    from pathlib import Path
    from adapters.store import ResultStore
    from domain.models import CheckResult

    path = Path(sys.argv[1])
    store = ResultStore(path)
    cycle = store.start_cycle("2026-08-20T10:00:00Z", 3)
    for stream_id in (1, 2):
        done = "2026-08-20T10:00:0%dZ" % stream_id
        store.record(cycle, CheckResult(stream_id=stream_id, account_id=1, profile_id=11,
                                        status="ok", finished_at=done))
    # A third row is in flight, not committed, when the process is killed.
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    raw.execute("INSERT INTO checks (cycle_id, stream_id, account_id, status, score) "
                "VALUES (?, 3, 1, 'ok', 1.0)", (cycle,))
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_killed_writer_leaves_a_readable_database(db_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    with ResultStore(db_path) as store:
        assert set(store.latest()) == {1, 2}
        (cycle,) = store.cycles()
        assert cycle.finished_at is None
        assert store._connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # and it is writable again: the dead writer's lock is gone
        store.finish_cycle(cycle.id, "2026-08-20T10:01:00Z", 2, 2, 0)


# --- many openers of one fresh file ------------------------------------------------

OPENER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from adapters.store import ResultStore
    go = Path(sys.argv[2])
    while not go.exists():  # every opener starts at the same moment
        time.sleep(0.001)
    ResultStore(Path(sys.argv[1])).close()
    print("opened")
    """
)


def schema_objects(db_path: Path) -> list[tuple[str, str]]:
    raw = sqlite3.connect(db_path)
    try:
        return raw.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall()
    finally:
        raw.close()


def test_threads_opening_a_fresh_file_at_once_all_succeed(tmp_path):
    # 100 fresh files, 16 openers each: the races (the migration, and the
    # switch to WAL, which SQLite may refuse at once with "database is locked"
    # instead of waiting) showed in about 1 file in 50.
    openers = 16
    errors: list[BaseException] = []
    for attempt in range(100):
        path = tmp_path / f"fresh-{attempt}.sqlite"
        barrier = threading.Barrier(openers)

        def open_it(path: Path = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait(timeout=10)
            try:
                ResultStore(path).close()
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(openers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        objects = schema_objects(path)
        assert len(objects) == len(set(objects))  # the schema exists once
        assert ("table", "cycles") in objects
    assert errors == []
    raw = sqlite3.connect(tmp_path / "fresh-0.sqlite")
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_processes_opening_a_fresh_file_at_once_all_succeed(tmp_path):
    path = tmp_path / "fresh.sqlite"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(path), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    go.touch()
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "opened"
    objects = schema_objects(path)
    assert len(objects) == len(set(objects))
    assert ("table", "checks") in objects


# --- check_database (validate): changes nothing -----------------------------------


def test_check_database_creates_nothing(tmp_path):
    missing = tmp_path / "new" / "results.sqlite"
    check_database(missing)
    assert not missing.parent.exists()
    existing = tmp_path / "results.sqlite"
    ResultStore(existing).close()
    before = sorted(p.name for p in tmp_path.iterdir())
    check_database(existing)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no -wal / -shm left


def test_check_database_refuses_what_open_would_refuse(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"garbage " * 500)
    with pytest.raises(StoreError, match=r"garbage\.sqlite: not a usable results database"):
        check_database(garbage)
    newer = tmp_path / "newer.sqlite"
    raw = sqlite3.connect(newer)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        check_database(newer)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="is not a folder"):
        check_database(blocker / "r.sqlite")
    with pytest.raises(StoreError, match="is a folder"):
        check_database(tmp_path)


# --- cycle ids and cycles cut off by a crash ---------------------------------------


def v1_database(path: Path) -> None:
    """A file as schema version 1 left it, with a cycle a crash cut off."""
    from adapters.store import _schema_v1

    raw = sqlite3.connect(path)
    _schema_v1(raw)
    raw.execute("PRAGMA user_version = 1")
    raw.execute(
        "INSERT INTO cycles (id, started_at, finished_at, streams, checked, alive, dead) "
        "VALUES (4, '2026-08-20T10:00:00Z', '2026-08-20T10:01:00Z', 1, 1, 1, 0)"
    )
    raw.execute(
        "INSERT INTO cycles (id, started_at, streams) VALUES (5, '2026-08-20T16:00:00Z', 3)"
    )
    for stream_id, status, finished in ((1, "ok", "16:00:20"), (2, "dead", "16:00:30")):
        raw.execute(
            "INSERT INTO checks (cycle_id, stream_id, account_id, status, score, finished_at) "
            "VALUES (5, ?, 1, ?, 0, ?)",
            (stream_id, status, f"2026-08-20T{finished}Z"),
        )
    raw.commit()
    raw.close()


def test_a_cycle_cut_off_by_a_crash_is_marked_aborted(db_path):
    v1_database(db_path)
    with ResultStore(db_path) as store:
        assert store.abort_unfinished() == [5]
        newest, older = store.cycles()
        assert newest == CycleRecord(
            id=5,
            started_at="2026-08-20T16:00:00Z",
            finished_at="2026-08-20T16:00:30Z",  # its last stored check
            streams=3,
            checked=2,
            alive=1,
            dead=1,
            aborted=True,
        )
        assert older.aborted is False
        assert older.finished_at == "2026-08-20T10:01:00Z"
        assert store.abort_unfinished() == []  # once only


def test_a_file_of_the_learned_logins_version_gets_the_later_columns(db_path):
    # Version 2 (learned logins) shipped before cycles.aborted: it comes as step 3.
    from adapters.store import _schema_learned_logins, _schema_v1

    raw = sqlite3.connect(db_path)
    _schema_v1(raw)
    _schema_learned_logins(raw)
    raw.execute("PRAGMA user_version = 2")
    raw.execute(
        "INSERT INTO cycles (id, started_at, streams) VALUES (1, '2026-08-20T16:00:00Z', 1)"
    )
    raw.commit()
    raw.close()
    with ResultStore(db_path) as store:
        assert store.abort_unfinished() == [1]
        assert store.cycles()[0].aborted is True
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    finally:
        raw.close()


def test_a_crashed_cycle_without_checks_ends_when_it_started(store):
    cycle = store.start_cycle("2026-08-20T10:00:00Z", 2)
    assert store.abort_unfinished() == [cycle]
    (record,) = store.cycles()
    assert record.finished_at == "2026-08-20T10:00:00Z"
    assert (record.checked, record.alive, record.dead, record.aborted) == (0, 0, 0, True)


def test_next_cycle_id_follows_the_stored_ones(db_path):
    v1_database(db_path)
    with ResultStore(db_path) as store:
        assert store.next_cycle_id() == 6
        assert store.start_cycle("2026-08-21T10:00:00Z", 1, cycle_id=6) == 6
        assert store.next_cycle_id() == 7
        store.finish_cycle(6, "2026-08-21T10:00:05Z", 1, 1, 0, aborted=True)
        assert store.cycles(limit=1)[0].aborted is True


def test_a_taken_cycle_id_gets_the_next_free_one(store):
    first = store.start_cycle("2026-08-20T10:00:00Z", 1, cycle_id=3)
    assert first == 3
    # Another process (once next to run) took 3 meanwhile: the row still gets stored.
    assert store.start_cycle("2026-08-20T11:00:00Z", 1, cycle_id=3) == 4


def test_next_cycle_id_of_a_fresh_file_is_1(store):
    assert store.next_cycle_id() == 1


# --- a cycle another live process is running is not a crash -----------------------

RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from adapters.store import ResultStore
    store = ResultStore(Path(sys.argv[1]))
    print(store.start_cycle("2026-08-20T10:00:00Z", 3), flush=True)
    sys.stdin.readline()  # runs until told to stop, then dies without finishing
    """
)


def test_a_cycle_another_running_process_owns_is_left_alone(db_path):
    # `once` started next to a running daemon on the same database must not mark
    # the daemon's running cycle aborted; once that process is gone, it is a crash.
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(db_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert runner.stdin is not None
    assert runner.stdout is not None
    try:
        running = int(runner.stdout.readline())
        with ResultStore(db_path) as store:
            assert store.abort_unfinished() == []
            (record,) = store.cycles()
            assert (record.id, record.finished_at, record.aborted) == (running, None, False)
    finally:
        runner.stdin.close()
        runner.wait(timeout=10)
        runner.stdout.close()
    with ResultStore(db_path) as store:
        assert store.abort_unfinished() == [running]
        assert store.cycles()[0].aborted is True
