"""No actor failure goes unnoticed: a long-lived actor dying fails the cycle and stops the daemon.

Each test starts the real daemon wiring (supervisor, sink with a real SQLite
file, viewer watcher, coordinator, scheduler) with a gated fake probe, kills
one actor while a cycle runs, and checks that every job of the cycle gets a
result naming the failure, that the daemon hears of it (its ``on_failure``)
and that it then stops.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors.coordinator import Coordinator
from actors.messages import (
    CycleFinished,
    ResultReady,
    SetAccounts,
    WatchViewers,
)
from actors.scheduler import Scheduler
from actors.sink import ResultSink
from actors.viewers import ViewerWatcher
from adapters.store import ResultStore
from app.cli import main
from app.config import (
    CheckSection,
    ConcurrentStreamsSection,
    Config,
    ResultsSection,
    ScheduleSection,
    SourceSection,
    StatusSection,
    ViewersSection,
)
from app.daemon import Daemon
from app.sources import build_sources
from simulator.server import SimAccount, SimStream
from tests.actors.fakes import Behaviour, FakeProbe, Inbox, Recorder
from tests.app.conftest import write_config, write_inventory
from tests.logcapture import capture_logs
from tests.sim_fixtures import ProviderFactory

STREAMS = (1, 2, 3)


class Unreadable:
    """A field value whose comparison raises: a message that makes its handler crash."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("a bug in the handler")

    __ne__ = __eq__
    __hash__ = object.__hash__


def one_of(actor_class: type[pykka.Actor]) -> pykka.ActorRef[Any]:
    refs = pykka.ActorRegistry.get_by_class(actor_class)
    assert len(refs) == 1, refs
    return refs[0]


KILLS: dict[str, Callable[[Daemon], None]] = {
    # SetAccounts(None) is the report: it hung the cycle for ever.
    "coordinator": lambda daemon: daemon.coordinator.tell(SetAccounts(None)),  # type: ignore[arg-type]
    "result_sink": lambda _d: one_of(ResultSink).tell(ResultReady(1, None)),  # type: ignore[arg-type]
    "viewer_watcher": lambda _d: one_of(ViewerWatcher).tell(WatchViewers(None)),  # type: ignore[arg-type]
    "scheduler": lambda _d: one_of(Scheduler).tell(
        CycleFinished(Unreadable(), (), "", "", 0.0)  # type: ignore[arg-type]
    ),
}


def config_for(folder: Path, *, database: Path | None = None) -> Config:
    inventory = {
        "accounts": [{"id": 1, "name": "one", "max_streams": 1}],
        "streams": [
            {"id": sid, "name": f"s{sid}", "m3u_account": 1, "url": f"http://127.0.0.1:9/{sid}.ts"}
            for sid in STREAMS
        ],
        "channels": [{"id": 7, "name": "c", "streams": list(STREAMS)}],
    }
    (folder / "inventory.json").write_text(json.dumps(inventory))
    return Config(
        source=SourceSection(type="file", path=folder / "inventory.json"),
        concurrent_streams=ConcurrentStreamsSection(enabled=True, global_limit=4, stagger_delay=0),
        check=CheckSection(duration=5.0, timeout=5.0, retries=0),
        viewers=ViewersSection(poll_interval=3600.0),
        schedule=ScheduleSection(interval="1h", run_at_start=True),
        results=ResultsSection(database=database or folder / "results.sqlite", reorder=False),
        status=StatusSection(listen=""),
    )


class Running:
    """A started daemon, what its listener heard, and whether it reported a failure."""

    def __init__(self, daemon: Daemon, inbox: Inbox, probe: FakeProbe) -> None:
        self.daemon = daemon
        self.inbox = inbox
        self.probe = probe
        self.failed = threading.Event()
        self.reasons: list[str] = []

    def on_failure(self, reason: str) -> None:
        self.reasons.append(reason)
        self.failed.set()

    def finished(self, timeout: float = 10.0) -> CycleFinished:
        cycle: CycleFinished = self.inbox.wait_for(CycleFinished, timeout=timeout)[0]
        return cycle


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    daemons: list[Daemon] = []

    def start(
        *,
        scheduled: bool = True,
        database: Path | None = None,
        before_start: Callable[[], object] | None = None,
    ) -> Running:
        config = config_for(tmp_path, database=database)
        inbox = Inbox()
        probe = FakeProbe(default=Behaviour(gated=True))
        daemon = Daemon(config, build_sources(config), probe, (Recorder.start(inbox),))
        daemons.append(daemon)
        run = Running(daemon, inbox, probe)
        if before_start is not None:
            daemon.open_store()  # the start-up check passes ...
            before_start()  # ... and then something changes before the actors start
        daemon.start(scheduled=scheduled, on_failure=run.on_failure)
        return run

    yield start
    for daemon in daemons:
        daemon.stop()


@pytest.mark.parametrize("actor", sorted(KILLS))
def test_an_actor_dying_fails_the_cycle_and_stops_the_daemon(
    running: Callable[..., Running], actor: str
):
    run = running()
    assert run.probe.started(1)  # the scheduler's first cycle runs its first check
    with capture_logs() as logs:
        KILLS[actor](run.daemon)
        finished = run.finished()
        assert run.failed.wait(5)
    assert finished.aborted
    assert sorted(r.stream_id for r in finished.results) == list(STREAMS)  # every job
    for result in finished.results:
        assert result.status == "error", result
        assert result.error is not None
        assert result.error.startswith(f"{actor}_failed"), result.error
    assert run.probe.ended(1)  # the running check's probe was stopped
    assert run.reasons[0].startswith(f"{actor} failed")
    assert run.daemon.failure is not None
    failed = [e for e in logs if e["event"] == "actor_failed"]
    assert [e["actor"] for e in failed] == [actor]
    assert failed[0]["log_level"] == "error"
    stopping = threading.Thread(target=run.daemon.stop)
    stopping.start()
    stopping.join(15)
    assert not stopping.is_alive()  # it stops, with the dead actor among the others


def test_a_sink_that_cannot_open_its_store_fails_the_first_cycle(
    running: Callable[..., Running], tmp_path: Path
):
    """pykka does not call on_failure for on_start: the sink reports it itself.

    A database that is garbage at start stops the daemon before any actor
    (Daemon.open_store); here the file goes bad after that check.
    """
    database = tmp_path / "turns-bad.sqlite"
    with capture_logs() as logs:
        run = running(
            database=database,
            before_start=lambda: database.write_bytes(b"this is not a database" * 100),
        )
        assert run.failed.wait(5)
        finished = run.finished()
    assert run.reasons[0].startswith("result_sink failed")
    assert {r.status for r in finished.results} == {"error"}
    assert len(finished.results) == len(STREAMS)
    assert any(e["event"] == "actor_failed" and e["actor"] == "result_sink" for e in logs)


def test_once_gets_every_result_when_the_coordinator_dies(running: Callable[..., Running]):
    """The cycle future of ``run_cycle`` resolves: no more hanging "running" for ever."""
    run = running(scheduled=False)
    inventory = run.daemon.sources.inventory.load()
    box: dict[str, Any] = {}
    cycle = threading.Thread(target=lambda: box.update(done=run.daemon.run_cycle(inventory, 10)))
    cycle.start()
    assert run.probe.started(1)
    run.daemon.coordinator.tell(SetAccounts(None))  # type: ignore[arg-type]
    cycle.join(10)
    assert not cycle.is_alive()
    finished: CycleFinished = box["done"]
    assert [r.status for r in finished.results] == ["error"] * len(STREAMS)
    assert all(r.error and r.error.startswith("coordinator_failed") for r in finished.results)
    assert run.failed.wait(5)


def test_run_exits_1_when_an_actor_dies(provider: ProviderFactory, tmp_path: Path, capsys):
    """``main.py run``: the coordinator dies mid-check; the daemon stores the failed
    cycle, kills the probe and exits 1 (systemd's Restart=on-failure restarts it)."""
    sim = provider([SimAccount("ua", "pa", 1)], {1: SimStream("ok", "hd"), 2: SimStream("ok")})
    config = write_config(tmp_path, duration=20, timeout=5)
    write_inventory(tmp_path, sim, [(1, "ua", "pa", 1)], [(1, "one", 1), (2, "two", 1)])
    box: dict[str, int] = {}
    daemon = threading.Thread(
        target=lambda: box.update(code=main(["run", "--config", str(config)]))
    )
    daemon.start()
    try:
        assert sim.wait_for_connections("ua", 1, timeout=20)
        one_of(Coordinator).tell(SetAccounts(None))  # type: ignore[arg-type]
        daemon.join(20)
        assert not daemon.is_alive()
    finally:
        if daemon.is_alive():  # let it go: stop_all ends it
            pykka.ActorRegistry.stop_all()
            daemon.join(20)
    assert box["code"] == 1
    assert "error: coordinator failed" in capsys.readouterr().err
    assert sim.wait_until(lambda s: s.open_connections.get("ua", 0) == 0, timeout=3)
    store = ResultStore(tmp_path / "results.sqlite")
    try:
        latest = store.latest()
    finally:
        store.close()
    assert sorted(latest) == [1, 2]
    assert {r.status for r in latest.values()} == {"error"}
    assert all(r.error and r.error.startswith("coordinator_failed") for r in latest.values())
