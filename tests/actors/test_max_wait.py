"""``max_wait``: how long a cycle waits for slots that never free (viewers hold them)."""

from __future__ import annotations

from actors.account import ViewerFeed
from actors.coordinator import CoordinatorSettings
from actors.viewers import ViewerWatcher
from domain.models import ViewerSnapshot
from domain.ports import SourceError
from tests.actors.conftest import Harness
from tests.actors.desk import Desk
from tests.actors.fakes import Behaviour, FakeProbe, simple_account, stream


def test_jobs_on_an_account_viewers_hold_end_cancelled_with_the_reason(harness: Harness):
    probe = FakeProbe(default=Behaviour(duration=0.05))
    harness.start(
        [simple_account(1, 1), simple_account(2, 1)],
        probe,
        CoordinatorSettings(max_wait=0.5, check_duration=0.2, check_timeout=0.2),
    )
    harness.viewers(accounts={1: 1})  # account 1's only slot is a viewer's
    finished = harness.run([stream(1, 1), stream(2, 1), stream(3, 2)], timeout=10)
    by_id = {r.stream_id: r for r in finished.results}
    assert by_id[3].status == "ok"
    for sid in (1, 2):
        assert by_id[sid].status == "cancelled"
        assert by_id[sid].error == "viewers_held_account"
    assert probe.calls[1] == probe.calls[2] == 0


def test_a_cycle_that_keeps_progressing_is_not_cut_at_max_wait(harness: Harness):
    # Six checks of 0.3 s one at a time take 1.8 s, longer than max_wait: the
    # wait counts from the last check that started or ended, not from the cycle
    # start. The margins (max_wait 1 s, timeout 1 s) hold on a loaded machine.
    probe = FakeProbe(default=Behaviour(duration=0.3))
    harness.start(
        [simple_account(1, 1)],
        probe,
        CoordinatorSettings(max_wait=1.0, check_duration=1.0, check_timeout=1.0),
    )
    finished = harness.run([stream(sid, 1) for sid in range(1, 7)], timeout=15)
    assert finished.duration_s > 1.0
    assert sorted(r.status for r in finished.results) == ["ok"] * 6


class BrokenViewers:
    """A viewer source that never answers (a broken viewer file, Dispatcharr down)."""

    def read(self) -> ViewerSnapshot:
        message = "viewers.json: not JSON"
        raise SourceError(message)


def test_jobs_waiting_for_an_unknown_viewer_count_say_so(harness: Harness):
    # Fail closed: no check starts while the count is unknown; max_wait ends
    # the wait, and the reason says what was missing.
    probe = FakeProbe(default=Behaviour(duration=0.05))
    watcher = ViewerWatcher.start(BrokenViewers(), harness.timers, 3600.0)
    harness.start(
        [simple_account(1, 1)],
        probe,
        CoordinatorSettings(max_wait=0.5, check_duration=0.2, check_timeout=0.2),
        viewers=ViewerFeed(watcher),
    )
    harness.accounts_ready()
    finished = harness.run([stream(1, 1)], timeout=10)
    (result,) = finished.results
    assert (result.status, result.error) == ("cancelled", "viewer_count_unknown")
    assert probe.calls[1] == 0


# --- the same decisions in Dispatch, on a fake clock ----------------------------------


def test_dispatch_counts_max_wait_from_the_last_check_that_started_or_ended() -> None:
    desk = Desk({1: 1}, CoordinatorSettings(max_wait=30.0))
    desk.start({1: 1, 2: 1, 3: 1})
    desk.grant(1)
    desk.at(20.0)
    assert desk.end(1)[-1] == ("request", 1, 2)  # t=20: progress
    desk.grant(2)
    assert desk.at(30.0) == []  # 30 s after the start, 10 after the last progress
    assert desk.end(2)[-1] == ("request", 1, 3)
    desk.grant(3)
    assert desk.end(3) == [("release", 1, 3), ("finish", 3, "ok", None)]
    assert desk.dispatch.idle


def test_dispatch_names_why_the_jobs_left_waiting_end() -> None:
    # Account 1: our check runs there (no_free_slot); 2: viewers hold its slot;
    # 3: its viewer count is unknown (fail closed).
    desk = Desk({1: 1, 2: 0, 3: 0}, CoordinatorSettings(max_wait=30.0))
    desk.start({1: 1, 2: 1, 3: 2, 4: 3})
    desk.grant(1)
    desk.rows(desk.dispatch.room_changed(3, 0, "viewer_count_unknown"))
    assert sorted(desk.at(30.0)) == [
        ("finish", 2, "cancelled", "no_free_slot"),
        ("finish", 3, "cancelled", "viewers_held_account"),
        ("finish", 4, "cancelled", "viewer_count_unknown"),
    ]
    assert desk.dispatch.wait_expired
    desk.end(1)
    assert desk.dispatch.idle
