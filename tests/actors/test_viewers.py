"""The viewer watcher: polling, the worst-case fallback, and feeding a real coordinator."""

from __future__ import annotations

from typing import Any

import pykka
import pytest

from actors.account import ViewerFeed
from actors.messages import RunNow, UnwatchViewers, ViewersSeen, ViewersUnknown, WatchViewers
from actors.timers import CallLater, Timers
from actors.viewers import ViewerWatcher, worst_of
from domain.models import ViewerSnapshot
from domain.ports import SourceError
from tests.actors import fakes
from tests.actors.conftest import Harness
from tests.actors.fakes import FakeClock, Inbox, Recorder, Script, on_fake_clock
from tests.logcapture import capture_logs

NOBODY = ViewerSnapshot()


class ScriptedViewers(Script[ViewerSnapshot]):
    """A viewer source that plays a script (snapshots or exceptions); the last step repeats."""

    def __init__(
        self,
        *script: ViewerSnapshot | Exception,
        clock: FakeClock | None = None,
        delay: float = 0.0,
    ) -> None:
        super().__init__(*script)
        self.clock = clock or FakeClock()
        self.delay = delay
        """Seconds of ``clock`` each read takes (a slow source)."""
        self.started: list[float] = []
        self.ended: list[float] = []

    def read(self) -> ViewerSnapshot:
        return self.play(self._reading)

    def _reading(self) -> None:
        self.started.append(self.clock.now)
        self.clock.advance(self.delay)
        self.ended.append(self.clock.now)


def start_watcher(
    source: ScriptedViewers,
    timers: CallLater,
    poll_interval: float = 3600.0,
    worst_window: float | None = None,
) -> tuple[pykka.ActorRef[Any], Inbox]:
    inbox = Inbox()
    recorder = Recorder.start(inbox)
    watcher = ViewerWatcher.start(source, timers, poll_interval, worst_window)
    watcher.tell(WatchViewers(recorder))
    return watcher, inbox


def snapshots(inbox: Inbox, count: int) -> list[ViewerSnapshot]:
    messages = inbox.wait_count(count)
    assert all(isinstance(m, ViewersSeen) for m in messages)
    return [m.snapshot for m in messages]


def unknown(inbox: Inbox, index: int) -> ViewersUnknown:
    message = inbox.wait_count(index + 1)[index]
    assert isinstance(message, ViewersUnknown), message
    return message


def test_worst_of_takes_the_maximum_per_profile_and_account():
    worst = worst_of(
        [
            ViewerSnapshot(profiles={11: 2}, accounts={1: 1}),
            ViewerSnapshot(profiles={11: 1, 12: 1}, accounts={2: 3}),
        ]
    )
    assert worst == ViewerSnapshot(profiles={11: 2, 12: 1}, accounts={1: 1, 2: 3})
    assert worst_of([]) == NOBODY


def test_reads_at_start_and_then_every_interval(timers: Timers):
    one = ViewerSnapshot(accounts={1: 1})
    two = ViewerSnapshot(accounts={1: 2})
    source = ScriptedViewers(one, one, two)
    with capture_logs() as logs:
        _watcher, inbox = start_watcher(source, timers, poll_interval=0.05)
        seen = snapshots(inbox, 4)
    assert seen[:4] == [one, one, two, two]  # sent every time, changed or not
    events = [e["event"] for e in logs]
    assert events.count("viewers_changed") == 2
    assert events.count("viewers_read") >= 4
    read = next(e for e in logs if e["event"] == "viewers_read")
    assert read["log_level"] == "debug"
    assert read["accounts_total"] == 1
    changed = [e for e in logs if e["event"] == "viewers_changed"]
    assert changed[1]["accounts"] == {1: 2}
    assert changed[1]["log_level"] == "info"


def test_next_read_is_planned_only_after_the_slow_one_ended():
    clock, timers = on_fake_clock()
    source = ScriptedViewers(NOBODY, clock=clock, delay=0.1)
    start_watcher(source, timers, poll_interval=0.05)
    for reads in range(1, 4):
        assert source.wait_calls(reads)
        planned = timers.wait_planned(reads)
        assert planned.due == pytest.approx(source.ended[-1] + 0.05)
        timers.advance_to(planned.due)
    assert source.wait_calls(4)
    # Each read starts a full interval after the previous one ended, not after it started.
    gaps = [
        started - ended
        for ended, started in zip(source.ended[:3], source.started[1:4], strict=True)
    ]
    assert gaps == pytest.approx([0.05, 0.05, 0.05])


def test_run_now_reads_at_once(timers: Timers):
    source = ScriptedViewers(NOBODY, ViewerSnapshot(profiles={11: 1}))
    watcher, inbox = start_watcher(source, timers)
    watcher.tell(RunNow())
    assert snapshots(inbox, 2)[1] == ViewerSnapshot(profiles={11: 1})


def test_failed_read_says_unknown_with_the_worst_recent_snapshot_not_zero(timers: Timers):
    busy = ViewerSnapshot(profiles={11: 2}, accounts={1: 1})
    quieter = ViewerSnapshot(profiles={11: 1, 12: 1})
    source = ScriptedViewers(busy, quieter, SourceError("viewers: connection refused"))
    watcher, inbox = start_watcher(source, timers)
    with capture_logs() as logs:
        watcher.tell(RunNow())
        watcher.tell(RunNow())
        failed_read = unknown(inbox, 2)
    assert failed_read.assumed == ViewerSnapshot(profiles={11: 2, 12: 1}, accounts={1: 1})
    assert failed_read.error == "viewers: connection refused"
    failed = next(e for e in logs if e["event"] == "viewers_read_failed")
    assert failed["log_level"] == "warning"
    assert failed["error"] == "viewers: connection refused"
    assert watcher.is_alive()


def test_failed_read_falls_back_on_the_newest_once_the_window_passed(timers: Timers):
    busy = ViewerSnapshot(accounts={1: 3})
    quieter = ViewerSnapshot(accounts={1: 1})
    source = ScriptedViewers(busy, quieter, RuntimeError("bad json"))
    watcher, inbox = start_watcher(source, timers, worst_window=0.0)
    watcher.tell(RunNow())
    watcher.tell(RunNow())
    assert unknown(inbox, 2).assumed == quieter


def test_failed_read_before_any_good_one_says_unknown_without_counts(timers: Timers):
    later = ViewerSnapshot(accounts={1: 1})
    source = ScriptedViewers(SourceError("down"), ValueError(), later)
    with capture_logs() as logs:
        watcher, inbox = start_watcher(source, timers)
        watcher.tell(RunNow())
        assert source.wait_calls(2)
        watcher.tell(RunNow())
        messages = inbox.wait_count(3)
    assert [type(m) for m in messages] == [ViewersUnknown, ViewersUnknown, ViewersSeen]
    assert messages[0].assumed is None
    assert messages[2].snapshot == later
    failures = [e for e in logs if e["event"] == "viewers_read_failed"]
    assert len(failures) == 2
    assert failures[0]["assumed"] is None
    assert failures[1]["error"] == "ValueError()"


def test_bad_poll_interval_fails_fast(timers: Timers):
    with pytest.raises(ValueError, match="poll_interval"):
        ViewerWatcher.start(ScriptedViewers(NOBODY), timers, 0)


def test_a_subscriber_gets_the_current_state_at_once_and_every_read_after(timers: Timers):
    one = ViewerSnapshot(accounts={1: 1})
    source = ScriptedViewers(one, SourceError("down"))
    watcher = ViewerWatcher.start(source, timers, 3600.0)
    early, late = Inbox(), Inbox()
    watcher.tell(WatchViewers(Recorder.start(early)))
    assert snapshots(early, 1) == [one]
    watcher.tell(RunNow())
    assert unknown(early, 1).assumed == one
    watcher.tell(WatchViewers(Recorder.start(late)))
    assert unknown(late, 0).assumed == one  # a newcomer hears of the failure too
    gone = Inbox()
    leaving = Recorder.start(gone)
    watcher.tell(WatchViewers(leaving))
    gone.wait_count(1)
    watcher.tell(UnwatchViewers(leaving))
    watcher.tell(RunNow())
    assert unknown(early, 2).error == "down"
    leaving.stop()  # after every message sent to it before
    assert len(gone.messages) == 1  # nothing after it left
    assert watcher.is_alive()


def test_stop_cancels_the_pending_read(timers: Timers):
    source = ScriptedViewers(NOBODY)
    watcher, _inbox = start_watcher(source, timers, poll_interval=0.1)
    assert source.wait_calls(1)
    watcher.stop(timeout=5)
    assert not source.wait_calls(2, timeout=0.3)


def test_viewer_arriving_preempts_and_a_failed_read_keeps_his_slot(harness: Harness):
    """Watcher -> account actor (subscribed) -> preemption of the gated check."""
    probe = fakes.FakeProbe(default=fakes.Behaviour(gated=True))
    source = ScriptedViewers(
        NOBODY, ViewerSnapshot(accounts={1: 1}), SourceError("viewers: timeout"), NOBODY
    )
    watcher = ViewerWatcher.start(source, harness.timers, 3600.0)
    harness.start([fakes.simple_account(1, 1)], probe, viewers=ViewerFeed(watcher))
    done = harness.begin([fakes.stream(1, 1)])
    assert probe.started(1)
    assert probe.calls[1] == 1

    watcher.tell(RunNow())  # a viewer starts watching on the 1-slot account
    assert probe.ended(1, timeout=5)
    assert not probe.wait_open(1, timeout=0.2)  # the re-queued check waits for the slot

    watcher.tell(RunNow())  # the source fails: the viewer is still assumed there
    assert source.wait_calls(3)
    assert not probe.wait_open(1, timeout=0.3)
    assert probe.calls[1] == 1

    watcher.tell(RunNow())  # the viewer left: the check runs again
    probe.open_gate(1)  # (cancelling it already opened its gate)
    finished = done.get(timeout=10)
    assert [r.status for r in finished.results] == ["ok"]
    assert probe.calls[1] == 2
    assert probe.max_open["p100"] == 1
