"""The scheduler: interval and cron planning, one cycle at a time, source failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pykka
import pytest

from actors.messages import (
    CycleFinished,
    CycleInventory,
    GetStatus,
    RunNow,
    Subscribe,
)
from actors.scheduler import Scheduler, next_delay
from actors.timers import CallLater
from app.config import ScheduleSection
from domain.models import Account, Inventory, Stream
from domain.ports import SourceError
from tests.actors.conftest import Harness, status_of
from tests.actors.fakes import (
    Behaviour,
    FakeProbe,
    Inbox,
    Recorder,
    Script,
    on_fake_clock,
    simple_account,
    stream,
)
from tests.logcapture import capture_logs

HOUR = 3600.0


def inventory(accounts: list[Account], streams: list[Stream]) -> Inventory:
    return Inventory(accounts=tuple(accounts), streams=tuple(streams))


class ScriptedInventory(Script[Inventory]):
    """An inventory source playing a script (inventories or exceptions); the last step repeats.

    With ``gate`` set, each load waits for it (a slow Dispatcharr).
    """

    def __init__(
        self,
        *script: Inventory | Exception,
        gate: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(*script)
        self.gate = gate
        self.clock = clock
        self.load_times: list[float] = []
        self.loading = threading.Event()

    def load(self) -> Inventory:
        return self.play(self._loading)

    def _loading(self) -> None:
        self.load_times.append(self.clock())
        self.loading.set()
        if self.gate is not None:
            assert self.gate.wait(5)


def start_scheduler(
    harness: Harness,
    source: ScriptedInventory,
    schedule: ScheduleSection,
    timers: CallLater | None = None,
    **kwargs: Any,
) -> tuple[pykka.ActorRef[Any], Inbox]:
    """Start a scheduler with a recorder as listener of both it and the coordinator.

    The recorder subscribes after the scheduler has subscribed itself, so it
    hears each ``CycleFinished`` after the scheduler does: once the recorder has
    it, a ``RunNow`` from the test lands behind it in the scheduler's mailbox.
    """
    assert harness.coordinator is not None
    inbox = Inbox()
    recorder = Recorder.start(inbox)
    scheduler = Scheduler.start(
        harness.coordinator, source, timers or harness.timers, schedule, (recorder,), **kwargs
    )
    if source.gate is None or not schedule.run_at_start:
        scheduler.ask(GetStatus(), timeout=5)  # on_start is over: it has subscribed
    harness.coordinator.tell(Subscribe(recorder))
    return scheduler, inbox


# --- cron, as a pure function ------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "now", "expected"),
    [
        ("0 3 * * *", datetime(2024, 1, 1, 2, 0, tzinfo=UTC), HOUR),
        ("0 3 * * *", datetime(2024, 1, 1, 3, 0, tzinfo=UTC), 24 * HOUR),  # strictly after
        ("0 3 * * *", datetime(2024, 1, 1, 3, 0, 1, tzinfo=UTC), 24 * HOUR - 1),
        ("*/15 * * * *", datetime(2024, 1, 1, 10, 7, 30, tzinfo=UTC), 450.0),
        ("0 0 * * 1", datetime(2024, 1, 6, 12, 0, tzinfo=UTC), 36 * HOUR),  # Sat -> Mon
    ],
)
def test_next_delay_of_cron(cron: str, now: datetime, expected: float):
    assert next_delay(cron, now) == pytest.approx(expected)


def test_next_delay_takes_naive_time_as_local():
    assert next_delay("0 3 * * *", datetime(2024, 1, 10, 2, 30)) == pytest.approx(1800.0)


def test_bad_cron_fails_fast(harness: Harness):
    harness.start([simple_account(1, 1)], FakeProbe())
    with pytest.raises(ValueError, match="cron"):
        next_delay("every night", datetime.now())
    with pytest.raises(ValueError, match="cron"):
        Scheduler.start(
            harness.coordinator, ScriptedInventory(), harness.timers, ScheduleSection(cron="nope")
        )


def test_cron_schedule_starts_at_the_fire_time(harness: Harness):
    accounts = [simple_account(1, 1)]
    harness.start(accounts, FakeProbe())
    clock, timers = on_fake_clock()
    source = ScriptedInventory(inventory(accounts, [stream(1, 1)]), clock=clock)
    before_three = datetime(2024, 1, 1, 2, 59, 59, 800_000, tzinfo=UTC)
    schedule = ScheduleSection(cron="0 3 * * *", run_at_start=False)
    with capture_logs() as logs:
        start_scheduler(
            harness, source, schedule, timers, clock=lambda: before_three, monotonic=clock
        )
        planned = timers.wait_planned(1)
        assert planned.due == pytest.approx(0.2)  # 03:00:00 is 0.2 s away
        assert source.calls == 0
        timers.advance_to(planned.due)
        assert source.wait_calls(1)
    assert source.load_times == [pytest.approx(0.2)]
    planned_log = next(e for e in logs if e["event"] == "cycle_scheduled")
    assert planned_log["next_start"] == "2024-01-01T03:00:00+00:00"


# --- interval ------------------------------------------------------------------------


def test_interval_runs_the_next_cycle_after_the_interval(harness: Harness):
    """The interval counts from the previous start, not from its end."""
    accounts = [simple_account(1, 1)]
    probe = FakeProbe({1: Behaviour(gated=True)}, default=Behaviour(duration=0.0))
    harness.start(accounts, probe)
    clock, timers = on_fake_clock()
    source = ScriptedInventory(inventory(accounts, [stream(1, 1), stream(2, 1)]), clock=clock)
    with capture_logs() as logs:
        _scheduler, inbox = start_scheduler(
            harness,
            source,
            ScheduleSection(interval=0.3),
            timers,
            first_cycle_id=7,
            monotonic=clock,
        )
        assert source.wait_calls(1)  # run_at_start: at once
        assert probe.started(1)
        clock.advance(0.1)  # the first cycle takes 0.1 s
        probe.open_gate(1)
        planned = timers.wait_planned(1)
        assert planned.due == pytest.approx(0.3)
        timers.advance_to(planned.due)
        assert source.wait_calls(2)
        cycles = inbox.wait_for(CycleInventory, 2)
    assert source.load_times == [0.0, pytest.approx(0.3)]
    assert [c.cycle_id for c in cycles[:2]] == [7, 8]
    scheduled = [e for e in logs if e["event"] == "cycle_scheduled"]
    assert scheduled[0]["delay_s"] == pytest.approx(0.2)
    assert datetime.fromisoformat(scheduled[0]["next_start"]).tzinfo is not None


def test_run_at_start_false_waits_for_the_interval(harness: Harness):
    accounts = [simple_account(1, 1)]
    harness.start(accounts, FakeProbe())
    clock, timers = on_fake_clock()
    source = ScriptedInventory(inventory(accounts, [stream(1, 1)]), clock=clock)
    schedule = ScheduleSection(interval=0.3, run_at_start=False)
    scheduler, _inbox = start_scheduler(harness, source, schedule, timers, monotonic=clock)
    planned = timers.wait_planned(1)
    assert planned.due == pytest.approx(0.3)
    assert source.calls == 0
    assert status_of(scheduler)["next_start"] is not None
    timers.advance_to(planned.due)
    assert source.wait_calls(1)
    assert source.load_times == [pytest.approx(0.3)]


def test_cycle_longer_than_the_interval_is_followed_at_once_never_overlapped(harness: Harness):
    accounts = [simple_account(1, 1)]
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start(accounts, probe)
    clock, timers = on_fake_clock()
    source = ScriptedInventory(inventory(accounts, [stream(1, 1)]), clock=clock)
    scheduler, _inbox = start_scheduler(
        harness, source, ScheduleSection(interval=0.2), timers, monotonic=clock
    )
    assert probe.started(1)
    clock.advance(0.5)  # the interval passes while the cycle runs
    assert status_of(scheduler)["running_cycle_id"] == 1
    assert timers.planned == []  # no start is planned while the cycle runs
    probe.open_gate(1)
    planned = timers.wait_planned(1)
    assert planned.due == pytest.approx(0.5)  # the due start comes right away
    timers.advance_to(planned.due)
    assert source.wait_calls(2)
    assert source.load_times == [0.0, pytest.approx(0.5)]


# --- one cycle at a time -------------------------------------------------------------


def test_run_now_while_a_cycle_runs_is_skipped_and_logged(harness: Harness):
    accounts = [simple_account(1, 1)]
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start(accounts, probe)
    source = ScriptedInventory(inventory(accounts, [stream(1, 1)]))
    scheduler, inbox = start_scheduler(harness, source, ScheduleSection(interval=HOUR))
    assert probe.started(1)
    with capture_logs() as logs:
        scheduler.ask(RunNow(), timeout=5)
    skipped = [e for e in logs if e["event"] == "cycle_skipped_overlap"]
    assert len(skipped) == 1
    assert skipped[0]["running_cycle_id"] == 1
    assert source.calls == 1

    probe.open_gate(1)
    inbox.wait_for(CycleFinished)
    scheduler.tell(RunNow())  # idle again: this one runs
    assert source.wait_calls(2)
    assert [c.cycle_id for c in inbox.wait_for(CycleInventory, 2)] == [1, 2]


def test_run_now_during_a_slow_inventory_read_starts_one_cycle(harness: Harness):
    accounts = [simple_account(1, 1)]
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start(accounts, probe)
    gate = threading.Event()
    source = ScriptedInventory(inventory(accounts, [stream(1, 1)]), gate=gate)
    scheduler, _inbox = start_scheduler(
        harness, source, ScheduleSection(interval=HOUR, run_at_start=False)
    )
    with capture_logs() as logs:
        for _ in range(3):
            scheduler.tell(RunNow())
        assert source.loading.wait(5)
        gate.set()
        status = status_of(scheduler)
    assert status["running_cycle_id"] == 1
    assert source.calls == 1
    assert [e["event"] for e in logs].count("cycle_skipped_overlap") == 2
    assert probe.started(1)
    probe.open_gate(1)


def test_a_cycle_refused_by_the_coordinator_does_not_stall_the_schedule(harness: Harness):
    accounts = [simple_account(1, 1)]
    probe = FakeProbe(behaviours={99: Behaviour(gated=True)})
    harness.start(accounts, probe)
    foreign = harness.begin([stream(99, 1)])  # someone else's cycle holds the coordinator
    assert probe.started(99)
    source = ScriptedInventory(inventory(accounts, [stream(1, 1)]))
    with capture_logs() as logs:
        _scheduler, inbox = start_scheduler(
            harness, source, ScheduleSection(interval=0.2), first_cycle_id=100
        )
        assert source.wait_calls(2)  # refused, yet the next start came on time
        probe.open_gate(99)
        foreign.get(timeout=5)
        finished = inbox.wait_for(CycleFinished, 2)
    assert finished[0].cycle_id == 1  # the foreign cycle
    assert finished[1].cycle_id > 100  # ours, once the coordinator was free
    refused = next(e for e in logs if e["event"] == "cycle_refused")
    assert refused["cycle_id"] == 100


def test_a_refused_start_runs_once_the_other_cycle_ends_not_a_whole_interval_later(
    harness: Harness,
):
    # A channel check from the dashboard at 02:59 must not cost the 03:00 cycle a day.
    accounts = [simple_account(1, 1)]
    probe = FakeProbe(behaviours={99: Behaviour(gated=True)})
    harness.start(accounts, probe)
    foreign = harness.begin([stream(99, 1)])
    assert probe.started(99)
    source = ScriptedInventory(inventory(accounts, [stream(1, 1)]))
    scheduler, inbox = start_scheduler(
        harness, source, ScheduleSection(interval=3600.0), first_cycle_id=100
    )
    assert source.wait_calls(1)  # the start at start-up, refused: a cycle runs
    probe.open_gate(99)
    foreign.get(timeout=5)
    finished = inbox.wait_for(CycleFinished, 2)
    assert finished[1].cycle_id > 100  # ours, right after the other one
    assert source.calls == 2
    assert status_of(scheduler)["next_start"] is not None  # and the schedule goes on


# --- the source ----------------------------------------------------------------------


def test_source_failure_is_logged_and_the_next_start_succeeds(harness: Harness):
    accounts = [simple_account(1, 1)]
    harness.start(accounts, FakeProbe())
    source = ScriptedInventory(
        SourceError("inventory.json: no such file"), inventory(accounts, [stream(1, 1)])
    )
    with capture_logs() as logs:
        scheduler, inbox = start_scheduler(harness, source, ScheduleSection(interval=0.2))
        finished = inbox.wait_for(CycleFinished)
    assert finished[0].cycle_id == 1  # the failed attempt used no cycle id
    assert [r.status for r in finished[0].results] == ["ok"]
    failed = [e for e in logs if e["event"] == "cycle_source_failed"]
    assert len(failed) == 1
    assert failed[0]["log_level"] == "error"
    assert failed[0]["error"] == "inventory.json: no such file"
    events = [e["event"] for e in logs]
    assert events.index("cycle_scheduled") > events.index("cycle_source_failed")
    assert scheduler.is_alive()


def test_limits_changed_between_cycles_reach_the_accounts(harness: Harness):
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([simple_account(1, 1)], probe)
    source = ScriptedInventory(
        inventory([simple_account(1, 1)], [stream(1, 1), stream(2, 1)]),
        inventory([simple_account(1, 2)], [stream(3, 1), stream(4, 1)]),
    )
    scheduler, inbox = start_scheduler(
        harness, source, ScheduleSection(interval=HOUR, run_at_start=False)
    )
    scheduler.tell(RunNow())
    assert probe.wait_open(1)
    assert not probe.wait_open(2, timeout=0.2)  # max_streams = 1
    probe.open_gate(1)
    probe.open_gate(2)
    inbox.wait_for(CycleFinished)

    scheduler.tell(RunNow())  # the provider now allows 2: no restart needed
    assert probe.wait_open(2)
    probe.open_gate(3)
    probe.open_gate(4)
    finished = inbox.wait_for(CycleFinished, 2)
    assert [f.cycle_id for f in finished] == [1, 2]
    assert probe.max_open["p100"] == 2


def test_stop_drops_the_planned_start(harness: Harness):
    accounts = [simple_account(1, 1)]
    harness.start(accounts, FakeProbe())
    source = ScriptedInventory(inventory(accounts, [stream(1, 1)]))
    scheduler, _inbox = start_scheduler(
        harness, source, ScheduleSection(interval=0.2, run_at_start=False)
    )
    scheduler.stop(timeout=5)
    assert not source.wait_calls(1, timeout=0.4)


def test_a_failed_source_is_retried_sooner_than_the_schedule(harness: Harness):
    accounts = [simple_account(1, 1)]
    harness.start(accounts, FakeProbe())
    source = ScriptedInventory(
        SourceError("Dispatcharr unavailable"), inventory(accounts, [stream(1, 1)])
    )
    scheduler, inbox = start_scheduler(
        harness, source, ScheduleSection(interval=HOUR), failure_retry=0.1
    )
    finished = inbox.wait_for(CycleFinished)  # an hour early: the retry after 0.1 s
    assert [r.status for r in finished[0].results] == ["ok"]
    assert scheduler.is_alive()
