"""Cycle ids are the results database's; a cycle cut off by a crash is aborted at the next start."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from actors.messages import CycleFinished, CycleStarted, GetStatus
from adapters.store import ResultStore
from app.config import load_config
from app.daemon import Daemon
from app.sources import build_sources
from tests.actors.fakes import FakeProbe, Inbox, Recorder
from tests.app.test_cli import good_inventory
from tests.app.test_config import write

ROOT = Path(__file__).resolve().parents[2]


def crashed_database(path: Path) -> int:
    """A database whose newest cycle started and never finished; returns that cycle's id."""
    now = datetime.now(UTC).isoformat()  # recent: history_days must not prune it
    with ResultStore(path) as store:
        for _ in range(6):
            done = store.start_cycle(now, 1)
            store.finish_cycle(done, now, 1, 1, 0)
    # The crashed cycle's owner must be a process that is gone, as after a crash.
    crash = (
        "import sys; from pathlib import Path; from adapters.store import ResultStore; "
        "print(ResultStore(Path(sys.argv[1])).start_cycle(sys.argv[2], 1))"
    )
    child = subprocess.run(
        [sys.executable, "-c", crash, str(path), now],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=True,
    )
    return int(child.stdout)


def events(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_once_marks_the_crashed_cycle_and_logs_the_database_id(tmp_path: Path):
    database = tmp_path / "results.sqlite"
    crashed = crashed_database(database)
    (tmp_path / "inventory.json").write_text(json.dumps(good_inventory()))
    config = tmp_path / "config.toml"
    config.write_text(
        '[source]\npath = "inventory.json"\n[status]\nlisten = ""\n'
        "[check]\nduration = 1\ntimeout = 1\nretries = 0\nmax_wait = 5\n"
        '[log]\nformat = "json"\n'
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    logged = events(result.stderr)
    (marked,) = [e for e in logged if e["event"] == "cycles_marked_aborted"]
    assert marked["cycle_ids"] == [crashed]
    started = {e["cycle_id"] for e in logged if e["event"] == "cycle_started"}
    raw = sqlite3.connect(database)
    try:
        rows = raw.execute("SELECT id, finished_at IS NOT NULL, aborted FROM cycles").fetchall()
    finally:
        raw.close()
    assert (crashed, 1, 1) in rows  # marked aborted, with an end
    newest = max(row[0] for row in rows)
    assert newest == crashed + 1
    assert started == {newest}  # the log names the cycle as the database does
    assert (newest, 1, 0) in rows


def test_scheduled_cycles_take_the_database_ids(tmp_path: Path):
    database = tmp_path / "results.sqlite"
    crashed = crashed_database(database)
    (tmp_path / "inventory.json").write_text(json.dumps(good_inventory()))
    config = load_config(
        write(
            tmp_path,
            '[source]\npath = "inventory.json"\n[status]\nlisten = ""\n'
            '[schedule]\ninterval = "1h"\n',
        )
    )
    inbox = Inbox()
    recorder = Recorder.start(inbox)
    daemon = Daemon(config, build_sources(config), FakeProbe(), extra_listeners=(recorder,))
    daemon.start(scheduled=True)
    try:
        (started,) = inbox.wait_for(CycleStarted, timeout=10)
        (finished,) = inbox.wait_for(CycleFinished, timeout=10)
        status = daemon.coordinator.ask(GetStatus(), block=True, timeout=5)
    finally:
        daemon.stop()
    assert started.cycle_id == finished.cycle_id == crashed + 1
    assert status["last_cycle"]["cycle_id"] == crashed + 1  # what the status page shows
    with ResultStore(database) as store:
        newest = store.cycles(limit=1)[0]
    assert newest.id == crashed + 1
    assert newest.finished_at is not None
    assert newest.aborted is False
