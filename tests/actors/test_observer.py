"""The coordinator tells its observer of denials, preemptions and every attempt."""

from __future__ import annotations

import threading

import pykka

from actors.account import AccountActor
from actors.coordinator import Coordinator, CoordinatorSettings
from actors.jobs import jobs_for
from actors.messages import CheckCycle, CycleFinished, GetStatus, SetAccounts, ViewersSeen
from actors.observer import Attempt, CheckObserver
from actors.timers import Timers
from domain.models import ViewerSnapshot
from tests.actors.desk import Desk
from tests.actors.fakes import Behaviour, FakeProbe, profile_account, simple_account, stream


class RecordingObserver(CheckObserver):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.denied: list[tuple[int, str]] = []
        self.preempted: list[tuple[int, int]] = []
        self.attempts: list[tuple[int, int, str, str | None, float]] = []

    def lease_denied(self, account_id: int, reason: str) -> None:
        with self.lock:
            self.denied.append((account_id, reason))

    def check_preempted(self, account_id: int, profile_id: int) -> None:
        with self.lock:
            self.preempted.append((account_id, profile_id))

    def attempt_ended(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.append(
                (
                    attempt.account_id,
                    attempt.profile_id,
                    attempt.kind,
                    attempt.reason,
                    attempt.connection_s,
                )
            )


def start(observer: RecordingObserver, probe: FakeProbe, accounts, timers: Timers, **settings):
    coordinator = Coordinator.start(
        probe, CoordinatorSettings(**settings), (), None, timers, None, observer=observer
    )
    coordinator.tell(SetAccounts(tuple(accounts)))
    return coordinator


def tell_accounts(message) -> None:
    """What a viewer watcher does: every account actor hears the snapshot."""
    for ref in pykka.ActorRegistry.get_by_class(AccountActor):
        ref.ask(message, timeout=5)


def run(coordinator, streams, timeout: float = 10.0) -> CycleFinished:
    done: pykka.ThreadingFuture[CycleFinished] = pykka.ThreadingFuture()
    coordinator.tell(CheckCycle(1, jobs_for(streams), done))
    return done.get(timeout=timeout)


def test_every_attempt_is_observed_with_its_connection_time(timers: Timers):
    observer = RecordingObserver()
    probe = FakeProbe({1: Behaviour(duration=0.2), 2: Behaviour(kind="busy")})
    coordinator = start(
        observer, probe, [simple_account(1, 1)], timers, retries=1, busy_backoff=0.01
    )
    finished = run(coordinator, [stream(1, 1), stream(2, 1)])
    assert sorted(r.status for r in finished.results) == ["error", "ok"]
    kinds = sorted(a[2] for a in observer.attempts)
    assert kinds == ["busy", "busy", "ok"]  # the refusal, its retry, the good one
    ok = next(a for a in observer.attempts if a[2] == "ok")
    assert ok[0] == 1
    assert ok[1] == 100  # its one login (the seconds it held it: on the fake clock below)
    # One slot, two streams: the coordinator asks only where the account's room
    # count says a grant can come, so the full account is never asked and denies nothing.
    assert observer.denied == []


def test_each_attempt_is_observed_with_the_seconds_it_held_its_connection():
    observer = RecordingObserver()
    settings = CoordinatorSettings(retries=1, busy_backoff=10.0)
    desk = Desk({1: 1}, settings, observer=observer)
    desk.start({1: 1})
    desk.grant(1)
    desk.clock.now = 2.5
    desk.end(1, "busy", "full")
    assert desk.at(12.5) == [("request", 1, 1)]  # the retry, after its backoff
    desk.grant(1)
    desk.clock.now = 20.0
    desk.end(1, "ok")
    assert observer.attempts == [(1, 100, "busy", "full", 2.5), (1, 100, "ok", None, 7.5)]


def test_preemptions_are_observed_per_login(timers: Timers):
    observer = RecordingObserver()
    probe = FakeProbe(default=Behaviour(gated=True))
    coordinator = start(observer, probe, [profile_account(1, [1, 1])], timers)
    done: pykka.ThreadingFuture[CycleFinished] = pykka.ThreadingFuture()
    coordinator.tell(CheckCycle(1, jobs_for([stream(1, 1), stream(2, 1)]), done))
    assert probe.wait_open(2)
    status = coordinator.ask(GetStatus(), timeout=5)
    login_of = {c["stream_id"]: c["profile_id"] for c in status["checks"]}
    tell_accounts(ViewersSeen(ViewerSnapshot(profiles={101: 1})))
    victim = next(sid for sid, pid in login_of.items() if pid == 101)
    assert probe.ended(victim, timeout=5)
    for sid in (1, 2):
        probe.open_gate(sid)
    tell_accounts(ViewersSeen(ViewerSnapshot()))
    assert len(done.get(timeout=10).results) == 2
    assert observer.preempted == [(1, 101)]
    assert ("cancelled", "preempted") in {(a[2], a[3]) for a in observer.attempts}


def test_status_names_each_login_and_the_account_actor(timers: Timers):
    observer = RecordingObserver()
    coordinator = start(
        observer, FakeProbe(), [profile_account(1, [2, 1], stagger=0.5)], timers, stagger_delay=0
    )
    account = coordinator.ask(GetStatus(), timeout=5)["accounts"][1]
    assert [p["id"] for p in account["profiles"]] == [100, 101]
    assert [p["max_streams"] for p in account["profiles"]] == [2, 1]
    assert account["profiles"][0]["is_default"]
    assert account["stagger_delay"] == 0.5
    assert account["reserve_for_viewers"] == 0
    assert account["actor"].is_alive()
