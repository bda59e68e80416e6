"""The lease protocol end to end through real actors and a fake probe."""

from __future__ import annotations

import threading
from collections.abc import Sized
from dataclasses import replace
from typing import Any, cast

import pykka
import pytest

from actors.account import AccountActor, LearningFeed
from actors.coordinator import Coordinator, CoordinatorSettings
from actors.cycles import MANY_AT_ONCE
from actors.dispatch import Dispatch
from actors.jobs import jobs_for
from actors.learning import LearningSettings
from actors.loop import LoopActor
from actors.messages import (
    AbortCycle,
    CheckCycle,
    CycleFinished,
    CycleStarted,
    GetStatus,
    GetUsage,
    LimitsChanged,
    Preempt,
    ResultReady,
    SetAccounts,
)
from tests.actors.conftest import Harness, usage
from tests.actors.fakes import (
    Behaviour,
    FakeProbe,
    Inbox,
    Recorder,
    profile_account,
    simple_account,
    stream,
)
from tests.app.dashboard_setup import wait_for
from tests.logcapture import capture_logs

A1, A2, B1, B2, B3 = 1, 2, 3, 4, 5

QUIET_S = 0.2
"""How long a test watches for a check that must not start. A grant takes a few
milliseconds (requests, grants and starts are messages between threads), so a
check that the limits wrongly let through would open well within this."""


def seed_streams() -> list:
    return [
        stream(A1, 1, "A1"),
        stream(A2, 1, "A2"),
        stream(B1, 2, "B1"),
        stream(B2, 2, "B2"),
        stream(B3, 2, "B3"),
    ]


def all_leases_released() -> bool:
    for ref in pykka.ActorRegistry.get_by_class(AccountActor):
        if any(leases for _viewers, leases, _limit in usage(ref).values()):
            return False
    return True


def test_seed_scenario_first_wave_and_handover(harness: Harness):
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([simple_account(1, 1), simple_account(2, 2)], probe)
    with capture_logs() as logs:
        done = harness.begin(seed_streams())
        assert probe.wait_open(3)
        assert probe.running_ids() == {A1, B1, B2}

        probe.open_gate(A1)
        assert probe.started(A2)
        assert probe.running_ids() == {A2, B1, B2}

        probe.open_gate(B1)
        assert probe.started(B3)
        assert probe.running_ids() == {A2, B2, B3}

        for sid in (A2, B2, B3):
            probe.open_gate(sid)
        finished = done.get(timeout=10)

    assert sorted(r.stream_id for r in finished.results) == [1, 2, 3, 4, 5]
    assert all(r.status == "ok" for r in finished.results)
    assert probe.max_open["p100"] == 1
    assert probe.max_open["p200"] == 2
    assert all_leases_released()

    events = {entry["event"]: entry for entry in logs}
    assert events["cycle_started"]["streams"] == 5
    assert events["cycle_accounts"]["streams_by_account"] == {1: 2, 2: 3}
    assert events["cycle_accounts"]["limit_by_account"] == {1: 1, 2: 2}
    assert events["cycle_accounts"]["most_at_once"] == 3
    assert "cycle_account" not in events  # one line for all accounts
    assert events["cycle_finished"]["completed"] == 5
    assert events["cycle_finished"]["total"] == 5


def test_one_viewer_leaves_one_slot(harness: Harness):
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([simple_account(1, 2)], probe)
    harness.viewers(accounts={1: 1})
    status = harness.status()  # the viewer snapshot is in before the cycle starts
    assert status["accounts"][1]["limit"] == 2
    done = harness.begin([stream(1, 1), stream(2, 1)])
    assert probe.wait_open(1)
    first = probe.running_ids().pop()
    assert not probe.started(3 - first, timeout=QUIET_S)
    probe.open_gate(first)
    assert probe.started(3 - first)
    probe.open_gate(3 - first)
    finished = done.get(timeout=10)
    assert len(finished.results) == 2
    assert probe.max_open["p100"] == 1


def test_viewer_on_second_profile_counts_against_that_profile(harness: Harness):
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([profile_account(1, [1, 1])], probe)
    harness.viewers(profiles={101: 1})
    harness.status()
    done = harness.begin([stream(1, 1), stream(2, 1)])
    assert probe.wait_open(1)
    assert not probe.wait_open(2, timeout=QUIET_S)
    assert probe.open["p100"] == 1
    for sid in (1, 2):
        probe.open_gate(sid)
    done.get(timeout=10)
    assert probe.max_open.get("p101", 0) == 0


def test_unlimited_account_runs_everything_at_once(harness: Harness):
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([simple_account(1, 0)], probe)
    done = harness.begin([stream(i, 1) for i in range(1, 9)])
    assert probe.wait_open(8)
    for i in range(1, 9):
        probe.open_gate(i)
    assert len(done.get(timeout=10).results) == 8


@pytest.mark.parametrize(("global_limit", "expected"), [(0, 16), (2, 2), (5, 5)])
def test_global_limit_caps_all_accounts(harness: Harness, global_limit: int, expected: int):
    """Unlimited (10 streams), max 3 and max 3 (10 each): 16 at once without a global limit."""
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start(
        [simple_account(1, 0), simple_account(2, 3), simple_account(3, 3)],
        probe,
        CoordinatorSettings(global_limit=global_limit),
    )
    streams = [stream(i, 1 + i % 3) for i in range(1, 31)]
    done = harness.begin(streams)
    assert probe.wait_open(expected)
    status = harness.status()  # every grant of the first wave is in
    assert (status["running"], status["requests_in_flight"]) == (expected, 0)
    for sid in range(1, 31):
        probe.open_gate(sid)
    finished = done.get(timeout=15)
    assert sorted(r.stream_id for r in finished.results) == list(range(1, 31))
    assert probe.max_total == expected


@pytest.mark.parametrize(("global_limit", "warned"), [(0, [MANY_AT_ONCE + 1]), (10, [])])
def test_no_global_limit_over_an_unlimited_account_is_warned_of(
    harness: Harness, global_limit: int, warned: list[int]
):
    probe = FakeProbe(default=Behaviour(duration=0.0))
    harness.start([simple_account(1, 0)], probe, CoordinatorSettings(global_limit=global_limit))
    with capture_logs() as logs:
        done = harness.begin([stream(i, 1) for i in range(1, MANY_AT_ONCE + 2)])
        assert len(done.get(timeout=15).results) == MANY_AT_ONCE + 1
    said = [line["most_at_once"] for line in logs if line["event"] == "checks_unbounded"]
    assert said == warned


def test_stagger_holds_back_only_its_own_account(harness: Harness):
    """The spacing itself is measured on the fake clock (test_schedule, test_slots); here
    the real actors: account 1 (stagger 2 s) opens one check, account 2 (none) all three."""
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([simple_account(1, 3, stagger=2.0), simple_account(2, 3)], probe)
    done = harness.begin([stream(i, 1) for i in range(1, 4)] + [stream(i, 2) for i in range(4, 7)])
    assert probe.wait_open(4)
    assert sorted(probe.running_ids()) == [1, 4, 5, 6]
    status = harness.status()["accounts"]
    assert (status[1]["waiting"], status[1]["waiting_for"]) == (2, "stagger")
    assert status[2]["waiting"] == 0
    harness.tell(AbortCycle("test"))
    finished = done.get(timeout=10)
    assert sorted(r.status for r in finished.results) == ["cancelled"] * 6
    assert all_leases_released()


def test_full_account_never_delays_another(harness: Harness):
    """A (max 1) with 2 gated streams does not hold back B's six checks."""
    probe = FakeProbe(
        behaviours={1: Behaviour(gated=True), 2: Behaviour(gated=True)},
        default=Behaviour(duration=0.0),
    )
    harness.start([simple_account(1, 1), simple_account(2, 3)], probe)
    done = harness.begin([stream(1, 1), stream(2, 1)] + [stream(i, 2) for i in range(3, 9)])
    for i in range(3, 9):
        assert probe.ended(i)
    # A's one slot is taken by one of its streams; B finished regardless.
    assert probe.wait_open(1)
    assert len(probe.running_ids() & {1, 2}) == 1
    probe.open_gate(1)
    probe.open_gate(2)
    assert len(done.get(timeout=10).results) == 8


def test_release_happens_once_however_the_check_ends(harness: Harness):
    probe = FakeProbe(
        behaviours={
            1: Behaviour(kind="dead"),
            2: Behaviour(raises=True),
            3: Behaviour(kind="error"),
            4: Behaviour(hang=True),
            5: Behaviour(duration=0.01),
        }
    )
    settings = CoordinatorSettings(check_duration=0.2, check_timeout=0.3, retries=0)
    harness.start([simple_account(1, 1)], probe, settings)
    finished = harness.run([stream(i, 1) for i in range(1, 6)])
    by_id = {r.stream_id: r for r in finished.results}
    assert by_id[1].status == "dead"
    assert by_id[2].status == "error"
    assert (by_id[2].error or "").startswith("probe_crashed")
    assert by_id[3].status == "error"
    assert by_id[4].status == "dead"
    assert by_id[4].error == "timeout"
    assert by_id[5].status == "ok"
    assert probe.max_open["p100"] == 1
    assert all_leases_released()


def test_retries_do_not_hold_a_slot(harness: Harness):
    """Stream 1 is refused as busy (backoff 0.2 s, then 0.4 s); 2 and 3 run meanwhile."""
    probe = FakeProbe(behaviours={1: Behaviour(kind="busy")}, default=Behaviour(duration=0.0))
    settings = CoordinatorSettings(retries=2, busy_backoff=0.2)
    harness.start([simple_account(1, 1)], probe, settings)
    finished = harness.run([stream(1, 1), stream(2, 1), stream(3, 1)])
    by_id = {r.stream_id: r for r in finished.results}
    assert by_id[1].status == "error"
    assert by_id[1].error == "provider_busy"
    # The account's one slot went to the other streams during the first backoff
    # (they take milliseconds; the delays are the fake clock's matter, in test_dispatch).
    starts = [e.stream_id for e in probe.events if e.what == "start"]
    assert starts == [1, 2, 3, 1, 1]


def test_a_cancelled_check_ends_at_once_and_its_job_runs_again(harness: Harness):
    probe = FakeProbe(default=Behaviour(hang=True))
    harness.start([simple_account(1, 1)], probe)
    done = harness.begin([stream(1, 1)])
    assert probe.started(1)
    checks = harness.status()["checks"]
    assert [c["stream_id"] for c in checks] == [1]
    harness.tell(Preempt(1, (checks[0]["lease_id"],)))
    assert probe.ended(1, timeout=5.0)  # at once: far below the 30 s check timeout
    assert probe.wait_open(1)  # the job went back to the queue and runs again
    assert probe.calls[1] == 2
    harness.tell(AbortCycle("test"))
    finished = done.get(timeout=5)
    assert [r.status for r in finished.results] == ["cancelled"]
    assert all_leases_released()


def test_an_unresponsive_check_is_given_up_and_its_lease_released(harness: Harness):
    """A probe that ignores its cancel: after the deadline and the grace, the lease goes."""
    probe = FakeProbe(
        behaviours={1: Behaviour(duration=5.0, ignore_cancel=True)},
        default=Behaviour(duration=0.0),
    )
    settings = CoordinatorSettings(
        check_duration=0.05, check_timeout=0.05, unresponsive_grace=0.05, retries=0
    )
    harness.start([simple_account(1, 1)], probe, settings)
    finished = harness.run([stream(1, 1), stream(2, 1)])
    by_id = {r.stream_id: (r.status, r.error) for r in finished.results}
    assert by_id == {1: ("error", "probe_unresponsive"), 2: ("ok", None)}
    assert all_leases_released()


def test_limits_raised_while_running_start_waiting_jobs(harness: Harness):
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([simple_account(1, 1)], probe)
    done = harness.begin([stream(i, 1) for i in range(1, 5)])
    assert probe.wait_open(1)
    harness.tell(SetAccounts((simple_account(1, 3),)))
    assert probe.wait_open(3)
    # Lower to 1: nothing new starts until under the new limit.
    harness.tell(SetAccounts((simple_account(1, 1),)))
    harness.status()
    running = sorted(probe.running_ids())
    probe.open_gate(running[0])
    assert probe.wait_open(2)
    assert not probe.wait_open(3, timeout=QUIET_S)
    probe.open_gate(running[1])
    assert probe.wait_open(1)
    for i in range(1, 5):
        probe.open_gate(i)
    assert len(done.get(timeout=10).results) == 4
    assert all_leases_released()


def test_viewers_arriving_preempt_the_newest_check(harness: Harness):
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([simple_account(1, 2)], probe)
    done = harness.begin([stream(1, 1), stream(2, 1)])
    assert probe.wait_open(2)
    newest = max(probe.running_ids(), key=lambda sid: probe.first("start", sid))
    harness.viewers(accounts={1: 1})
    assert probe.ended(newest, timeout=5.0)
    assert probe.wait_open(1)
    oldest = ({1, 2} - {newest}).pop()
    probe.open_gate(oldest)
    assert probe.started(newest, timeout=5)  # re-queued and started again once room appeared
    probe.open_gate(newest)
    finished = done.get(timeout=10)
    assert sorted(r.status for r in finished.results) == ["ok", "ok"]
    assert probe.calls[newest] == 2


def test_duplicate_urls_are_checked_once(harness: Harness):
    probe = FakeProbe()
    harness.start([simple_account(1, 1)], probe)
    twin = stream(2, 1)
    twin = type(twin)(id=2, name="twin", account_id=1, url=stream(1, 1).url)
    finished = harness.run([stream(1, 1), twin])
    assert sorted(r.stream_id for r in finished.results) == [1, 2]
    assert sum(probe.calls.values()) == 1


def test_overlapping_cycle_is_refused(harness: Harness):
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([simple_account(1, 1)], probe)
    first = harness.begin([stream(1, 1)])
    assert probe.started(1)
    second = harness.begin([stream(2, 1)])
    with pytest.raises(RuntimeError, match="already running"):
        second.get(timeout=5)
    probe.open_gate(1)
    assert len(first.get(timeout=5).results) == 1


def test_a_stopped_listener_does_not_stop_the_cycle(harness: Harness):
    class Listener(pykka.ThreadingActor):
        pass

    listener = Listener.start()
    probe = FakeProbe(default=Behaviour(duration=0.01))
    harness.start([simple_account(1, 1)], probe, listeners=(listener,))
    listener.stop()
    finished = harness.run([stream(1, 1), stream(2, 1)])
    assert len(finished.results) == 2
    assert harness.status()["running"] == 0


def test_abort_with_requests_in_flight_still_finishes_the_cycle(harness: Harness):
    probe = FakeProbe(default=Behaviour(hang=True))
    harness.start([simple_account(1, 1)], probe)
    harness.status()  # the account actor is up
    done = harness.begin([stream(1, 1), stream(2, 1), stream(3, 1)])
    harness.tell(AbortCycle("test"))  # before the account answers
    finished = done.get(timeout=5)
    assert sorted(r.status for r in finished.results) == ["cancelled"] * 3
    assert all_leases_released()


def test_second_profile_takes_the_next_check_with_its_own_url(harness: Harness):
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([profile_account(1, [1, 1])], probe)
    done = harness.begin([stream(1, 1), stream(2, 1), stream(3, 1)])
    assert probe.wait_open(2)
    assert dict(probe.open) == {"p100": 1, "p101": 1}  # default login first, then the second
    assert not probe.wait_open(3, timeout=QUIET_S)
    for sid in (1, 2, 3):
        probe.open_gate(sid)
    finished = done.get(timeout=10)
    assert [r.status for r in finished.results] == ["ok"] * 3
    assert {r.profile_id for r in finished.results} == {100, 101}  # both logins were used


def test_reserve_for_viewers_keeps_slots_free(harness: Harness):
    probe = FakeProbe(default=Behaviour(gated=True))
    account = replace(simple_account(1, 3), reserve_for_viewers=1)
    harness.start([account], probe)
    done = harness.begin([stream(i, 1) for i in range(1, 5)])
    assert probe.wait_open(2)
    assert not probe.wait_open(3, timeout=QUIET_S)
    for sid in range(1, 5):
        probe.open_gate(sid)
    assert len(done.get(timeout=10).results) == 4
    assert probe.max_open["p100"] == 2


def test_a_crashed_account_actor_costs_its_checks_not_the_cycle(harness: Harness):
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([simple_account(1, 1), simple_account(2, 1)], probe)
    done = harness.begin([stream(1, 1), stream(2, 1), stream(3, 2)])
    assert probe.wait_open(2)
    account_1 = next(
        ref for ref in pykka.ActorRegistry.get_by_class(AccountActor) if usage(ref).get(100)
    )
    account_1.tell(LimitsChanged(None, 0.0))  # type: ignore[arg-type]  # a bug: it crashes
    for sid in (1, 2, 3):
        probe.open_gate(sid)
    finished = done.get(timeout=10)
    by_id = {r.stream_id: r for r in finished.results}
    assert by_id[1].status == "ok"
    assert by_id[2].status == "error"
    assert (by_id[2].error or "").startswith("account_actor")
    assert by_id[3].status == "ok"
    # The next cycle's accounts bring a fresh actor for account 1.
    harness.tell(SetAccounts((simple_account(1, 1), simple_account(2, 1))))
    done = harness.begin([stream(4, 1)])
    assert probe.started(4)
    probe.open_gate(4)
    assert [r.status for r in done.get(timeout=10).results] == ["ok"]


def test_unauthorized_account_ends_its_jobs_without_opening_more(harness: Harness):
    """A 401 is the account's problem: its other jobs end error/account_unauthorized, unopened."""
    unauthorized = Behaviour(kind="error", reason="account_unauthorized")
    probe = FakeProbe(
        behaviours={1: unauthorized, 2: Behaviour(gated=True)}, default=Behaviour(duration=0.0)
    )
    settings = CoordinatorSettings(retries=2, retry_delay=0.01)
    harness.start([simple_account(1, 2), simple_account(2, 1)], probe, settings)
    with capture_logs() as logs:
        done = harness.begin([stream(sid, 1) for sid in (1, 2, 3, 4, 5)] + [stream(9, 2)])
        assert probe.ended(1)
        assert probe.started(2)
        probe.open_gate(2)  # the check already running on the account ends on its own
        finished = done.get(timeout=10)
    by_id = {r.stream_id: r for r in finished.results}
    assert by_id[1].status == "error"
    assert by_id[1].error == "account_unauthorized"
    assert by_id[2].status == "ok"  # judged before the account was known to be refused
    for sid in (3, 4, 5):
        assert (by_id[sid].status, by_id[sid].error) == ("error", "account_unauthorized")
        assert probe.calls[sid] == 0  # never opened
    assert probe.calls[1] == 1  # not retried
    assert by_id[9].status == "ok"  # another account is not affected
    events = [e for e in logs if e["event"] == "account_unauthorized"]
    assert len(events) == 1
    assert events[0]["log_level"] == "error"
    assert events[0]["account_id"] == 1
    assert all_leases_released()

    # The next cycle tries the account again (the password may have been fixed).
    probe.behaviours[1] = Behaviour(duration=0.0)
    finished = harness.run([stream(1, 1), stream(3, 1)])
    assert [r.status for r in finished.results] == ["ok", "ok"]


def test_denied_requests_keep_their_order_in_the_queue(harness: Harness):
    """The first requests of a cycle may all be denied (stagger, unknown viewers); their
    jobs go back to the front in the order they had, longest expected first."""
    probe = FakeProbe(default=Behaviour(duration=0.0))
    harness.start([simple_account(1, 1, stagger=0.05)], probe)
    finished = harness.run([stream(sid, 1) for sid in (1, 2, 3, 4)])
    assert len(finished.results) == 4
    with probe.lock:
        order = [e.stream_id for e in probe.events if e.what == "start"]
    assert order == [1, 2, 3, 4]


def test_a_cycle_with_nothing_to_check_ends_and_the_coordinator_lives_on(harness: Harness):
    # An empty inventory (or every stream skipped by stable_every) is a cycle too.
    inbox = Inbox()
    listener = Recorder.start(inbox)
    harness.start([simple_account(1, 1)], FakeProbe(), listeners=(listener,))
    finished = harness.run([])
    assert (finished.results, finished.aborted) == ((), False)
    assert [type(m) for m in inbox.wait_count(2)] == [CycleStarted, CycleFinished]
    assert harness.status()["cycle"] is None  # still answering: not crashed
    assert len(harness.run([stream(1, 1)]).results) == 1


def test_a_result_that_comes_at_once_follows_its_cycle_started(harness: Harness):
    # A stream of an account nobody knows ends before any lease is asked for.
    inbox = Inbox()
    listener = Recorder.start(inbox)
    harness.start([simple_account(1, 1)], FakeProbe(), listeners=(listener,))
    finished = harness.run([stream(1, 9)])
    assert [r.error for r in finished.results] == ["unknown_account"]
    kinds = [type(m) for m in inbox.wait_count(3)]
    assert kinds == [CycleStarted, ResultReady, CycleFinished]


def test_a_check_knows_what_else_holds_its_login_viewers_included(harness: Harness):
    # The probe tells "full" (a hang-up on connect while the login holds other
    # connections) from a dead stream by this count: it is per login, and a
    # viewer counts as much as a check of ours.
    probe = FakeProbe(behaviours={1: Behaviour(gated=True)})
    harness.start([profile_account(1, [3, 1])], probe)
    harness.viewers(profiles={100: 2})  # two viewers on the default login
    done = harness.begin([stream(1, 1), stream(2, 1)])
    assert probe.started(1)
    assert probe.ended(2)
    by_login = {req.url.split("/")[4]: req.other_checks_running for req in probe.requests.values()}
    # The last login (1 slot, no viewer) holds nothing else; the default one its viewers
    # (and not our check on the other login).
    assert by_login == {"p101": 0, "p100": 2}
    probe.open_gate(1)
    assert len(done.get(timeout=10).results) == 2


def test_a_restarted_account_actor_keeps_what_its_logins_taught(timers):
    # An account actor that crashed is replaced by a fresh one: it starts from
    # what its logins taught until then, not from what was known at the
    # daemon's start (before, it forgot a lowered cap and paid for it in
    # refusals again).
    refused = Behaviour(kind="busy", reason="max_connections")
    probe = FakeProbe(behaviours={3: refused}, default=Behaviour(gated=True))
    learning = LearningFeed(LearningSettings())
    settings = CoordinatorSettings(retries=0)
    coordinator = Coordinator.start(
        probe, settings, (), None, timers, None, None, None, None, learning
    )
    try:
        account = simple_account(1, 3)
        coordinator.tell(SetAccounts((account,)))
        done: pykka.ThreadingFuture[CycleFinished] = pykka.ThreadingFuture()
        coordinator.tell(CheckCycle(1, jobs_for([stream(s, 1) for s in (1, 2, 3)]), done))
        assert probe.wait_open(2)
        assert probe.ended(3)  # refused while two others held the login: its cap is 2
        (actor,) = pykka.ActorRegistry.get_by_class(AccountActor)

        def learned(ref: pykka.ActorRef[AccountActor]) -> object:
            detail = cast(dict[int, dict[str, object]], ref.ask(GetUsage(detail=True), timeout=5))
            return detail[100]["learned_limit"]

        assert wait_for(lambda: learned(actor) == 2, timeout=5)  # once the release is in
        for sid in (1, 2):
            probe.open_gate(sid)
        done.get(timeout=10)
        actor.tell(LimitsChanged(None, 0.0))  # type: ignore[arg-type]  # a bug: it crashes
        assert wait_for(lambda: not actor.is_alive(), timeout=5)
        coordinator.tell(SetAccounts((account,)))  # the next cycle brings a fresh actor
        coordinator.ask(GetStatus(), timeout=5)
        (fresh,) = pykka.ActorRegistry.get_by_class(AccountActor)
        assert fresh is not actor
        assert learned(fresh) == 2
    finally:
        coordinator.stop()


class _Holder(LoopActor):
    """Holds the loop thread until its gate opens, so that mail queues behind it."""

    def __init__(self, gate: threading.Event, holding: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.holding = holding

    def on_receive(self, message: Any) -> None:
        self.holding.set()
        assert self.gate.wait(5)


def test_a_fault_among_checks_settled_in_one_turn_keeps_the_verdicts_settled_before_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled: list[int] = []
    check_finished = Dispatch.check_finished

    def third_fails(self: Dispatch, lease_id: int, *args: Any) -> Any:
        settled.append(lease_id)
        if len(settled) == 3:
            raise RuntimeError("boom")
        return check_finished(self, lease_id, *args)

    monkeypatch.setattr(Dispatch, "check_finished", third_fails)
    probe = FakeProbe(behaviours={i: Behaviour(gated=True) for i in range(1, 6)})
    coordinator = harness.start([simple_account(1, 5)], probe)
    done = harness.begin([stream(i, 1) for i in range(1, 6)])
    assert probe.wait_open(5)
    gate, holding = threading.Event(), threading.Event()
    _Holder.start(gate, holding).tell("hold")
    assert holding.wait(5)
    for i in range(1, 6):
        probe.open_gate(i)
    # The five reports wait behind the holder: the coordinator settles them in one turn.
    inbox = cast(Sized, coordinator.actor_inbox)  # a loop actor's mailbox counts its letters
    assert wait_for(lambda: len(inbox) == 5, timeout=5, interval=0.005)
    gate.set()

    finished = done.get(timeout=10)
    statuses = sorted(r.status for r in finished.results)
    assert statuses == ["error", "error", "error", "ok", "ok"]
    errors = [r.error for r in finished.results if r.status == "error"]
    assert all(e is not None and e.startswith("coordinator_failed") for e in errors)
