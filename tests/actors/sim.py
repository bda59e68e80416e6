"""A discrete-event simulation of the lease protocol over :class:`Dispatch`, on a fake clock.

The coordinator's side is the real :class:`Dispatch`; each account is the real
:class:`AccountSlots` (its room count and stagger included, on the same fake
clock), carried out as ``AccountActor`` does; a check holds its connection for
its duration. Every
message takes ``latency`` seconds (random per message when a generator is
given) and each channel keeps its order, as a pykka mailbox does. The clock
only jumps from one event to the next, so a cycle of minutes runs in
milliseconds.

It records every connection opening and closing, so a test can check the
limits at every instant, and the time every check started and ended.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from actors import actions
from actors.dispatch import CoordinatorSettings, Dispatch
from actors.jobs import jobs_for
from actors.messages import Lease, RequestLease
from actors.slots import UNLIMITED, AccountSlots, Denial, capacity
from domain.models import Account, ProbeOutcome, Stream
from tests.actors.fakes import FakeClock


@dataclass(frozen=True)
class Scenario:
    """Accounts, streams with their check durations, viewers per profile, global limit."""

    accounts: tuple[Account, ...]
    streams: tuple[Stream, ...]
    durations: dict[int, float]
    viewers: dict[int, int] = field(default_factory=dict)
    global_limit: int = 0
    stagger: dict[int, float] = field(default_factory=dict)
    """Seconds between two openings, per account id (none if absent)."""

    def slots(self, account: Account) -> int:
        """Connections the account leaves for checks (UNLIMITED if it has no limit)."""
        usable = 0
        for profile in account.usable_profiles():
            if profile.max_streams == 0:
                return UNLIMITED
            usable += max(0, profile.max_streams - self.viewers.get(profile.id, 0))
        return max(0, usable - account.reserve_for_viewers)

    def lower_bound(self) -> float:
        """No schedule can finish sooner: the longest check, each account's work over its
        slots, all work over the global limit."""
        work: dict[int, float] = defaultdict(float)
        for s in self.streams:
            work[s.account_id] += self.durations[s.id]
        bounds = [max(self.durations.values(), default=0.0)]
        for account in self.accounts:
            slots = self.slots(account)
            if slots < UNLIMITED and work[account.id]:
                bounds.append(work[account.id] / max(slots, 1))
        if self.global_limit:
            bounds.append(sum(self.durations.values()) / self.global_limit)
        return max(bounds)


@dataclass
class _Account:
    """An account actor: its slots, and what it last told (as ``AccountActor`` keeps)."""

    slots: AccountSlots
    short: str | None = None
    wake_token: int = 0
    """The current stagger wake-up (an older one that fires is ignored)."""

    def could_open(self) -> bool:
        """A check could open a connection on the account now."""
        return self.slots.stagger_wait() <= 0 and self.slots.free() > 0


@dataclass
class CycleRun:
    """What one simulated cycle did."""

    makespan: float
    finished: dict[int, ProbeOutcome]
    """job id -> final outcome."""
    intervals: list[tuple[float, float, int, int]]
    """(opened, closed, account id, profile id) of every connection."""
    idle_violations: list[str]
    """Moments when an account had work and room and the budget had room, yet nothing started."""


class Simulation:
    """Runs cycles of a scenario through one ``Dispatch`` (its history carries over).

    Args:
        scenario: what to check.
        settings: the dispatch's settings (``global_limit`` is taken from the scenario).
        latency: seconds each message takes, or a function of a random generator.
        outcome: the outcome of each check by stream id (default: all ok).
        watch_idle: check at every quiet instant that no slot sits idle with
            work for it (costs time on thousands of checks).
    """

    def __init__(
        self,
        scenario: Scenario,
        settings: CoordinatorSettings | None = None,
        latency: Callable[[], float] | float = 0.0,
        outcome: Callable[[int, int], ProbeOutcome] | None = None,
        *,
        watch_idle: bool = True,
    ) -> None:
        self._watch_idle = watch_idle
        self.scenario = scenario
        base = settings or CoordinatorSettings(retries=0, check_duration=1.0)
        self.settings = CoordinatorSettings(
            **{**base.__dict__, "global_limit": scenario.global_limit}
        )
        self.clock = FakeClock()
        self.dispatch = Dispatch(self.settings, self.clock)
        self._latency = latency if callable(latency) else (lambda: float(latency))
        self._outcome = outcome or (lambda _sid, _n: ProbeOutcome(kind="ok"))
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._channel_free: dict[object, float] = defaultdict(float)
        self._lease_ids = itertools.count(1)
        self._accounts: dict[int, _Account] = {}
        self._wake_token = 0
        self._runs: dict[int, int] = defaultdict(int)
        """stream id -> how many times its check ran."""
        self._open: dict[int, tuple[float, int, int]] = {}
        """lease id -> (opened, account id, profile id) while its connection is open."""
        self._cancellers: dict[int, Callable[[], None]] = {}

        self._in_flight = 0
        """Messages sent and not yet delivered."""
        for account in scenario.accounts:
            slots = AccountSlots(account, scenario.stagger.get(account.id, 0.0), self.clock)
            slots.set_viewers({p.id: scenario.viewers.get(p.id, 0) for p in slots.account.profiles})
            self._accounts[account.id] = _Account(slots)
            self._feed(self.dispatch.set_account(account.id, capacity(account), fresh=True))
            self._account_sync(account.id)
        self._drain()

    # --- reading ------------------------------------------------------------------

    def leases_held(self) -> int:
        """Leases the accounts hold now."""
        return sum(
            leases
            for account in self._accounts.values()
            for _, leases, _ in account.slots.usage().values()
        )

    def rooms_agree(self) -> bool:
        """With every message delivered, both sides count each account's room the same,
        and that is the account's real room."""
        for account_id, account in self._accounts.items():
            told = account.slots.room
            if account.slots.announce().change or told != self.dispatch.room(account_id):
                return False
        return True

    # --- running ------------------------------------------------------------------

    def cycle(self) -> CycleRun:
        """Run one cycle of every stream to its end."""
        self._finished: dict[int, ProbeOutcome] = {}
        self._intervals: list[tuple[float, float, int, int]] = []
        self._idle: list[str] = []
        started = self._last_finish = self.clock.now
        jobs = jobs_for(self.scenario.streams)
        self._feed(self.dispatch.start(jobs))
        self._drain()
        assert self.dispatch.idle, "the cycle ended with jobs left"
        assert len(self._finished) == len(jobs)
        makespan = self._last_finish - started
        return CycleRun(makespan, self._finished, self._intervals, self._idle)

    def _drain(self) -> None:
        while self._queue:
            at, _, event = heapq.heappop(self._queue)
            self.clock.now = max(self.clock.now, at)
            event()
            if self._watch_idle and (not self._queue or self._queue[0][0] > self.clock.now):
                self._check_idle()

    def _later(self, delay: float, event: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (self.clock.now + delay, next(self._seq), event))

    def _message(self, channel: object, event: Callable[[], None]) -> None:
        """Deliver ``event`` after the latency, in order with the channel's earlier ones."""
        at = max(self.clock.now + self._latency(), self._channel_free[channel])
        self._channel_free[channel] = at
        self._in_flight += 1

        def deliver() -> None:
            self._in_flight -= 1
            event()

        heapq.heappush(self._queue, (at, next(self._seq), deliver))

    # --- the coordinator's side ---------------------------------------------------

    def _feed(self, todo: list[actions.Action]) -> None:
        for action in todo:
            match action:
                case actions.Request(account_id=account_id, request=request):
                    self._send(account_id, partial(self._on_request, account_id, request))
                case actions.Release(account_id=account_id, lease_id=lease_id):
                    self._send(account_id, partial(self._on_release, account_id, lease_id))
                case actions.StartCheck(job=job, lease=lease):
                    self._start_check(job.stream.id, lease)
                case actions.CancelCheck(lease_id=lease_id):
                    self._cancel_check(lease_id)
                case actions.AbandonCheck(lease_id=lease_id):
                    self._close(lease_id)
                case actions.Finish(job=job, outcome=outcome):
                    assert job.job_id not in self._finished, f"job {job.job_id} finished twice"
                    self._finished[job.job_id] = outcome
                    self._last_finish = self.clock.now
                case actions.WakeAt(at=at):
                    self._wake_token += 1
                    token = self._wake_token
                    self._later(max(0.0, at - self.clock.now), partial(self._tick, token))
                case actions.DropAccount():
                    pass

    def _tick(self, token: int) -> None:
        if token == self._wake_token:
            self._feed(self.dispatch.tick())

    def _to_coordinator(self, sender: object, event: Callable[[], list[actions.Action]]) -> None:
        self._message(("up", sender), lambda: self._feed(event()))

    # --- the accounts' side -------------------------------------------------------

    def _send(self, account_id: int, event: Callable[[], None]) -> None:
        self._message(("down", account_id), event)

    def _on_request(self, account_id: int, request: RequestLease) -> None:
        account = self._accounts[account_id]
        lease_id = next(self._lease_ids)
        answer = account.slots.request(lease_id)
        if isinstance(answer, Denial):
            denied = partial(self.dispatch.denied, request.request_id, answer.reason)
            self._to_coordinator(account_id, denied)
        else:
            lease = Lease(lease_id, account_id, answer.profile.id, request.stream.url)
            granted = partial(self.dispatch.granted, request.request_id, lease)
            self._to_coordinator(account_id, granted)
        self._account_sync(account_id)

    def _on_release(self, account_id: int, lease_id: int) -> None:
        account = self._accounts[account_id]
        assert lease_id not in self._open, f"lease {lease_id} released while its check runs"
        account.slots.release(lease_id)
        self._account_sync(account_id)

    def _account_sync(self, account_id: int) -> None:
        """After each message, as ``AccountActor._announce``."""
        account = self._accounts[account_id]
        announce = account.slots.announce()
        if announce.change or announce.short != account.short:
            account.short = announce.short
            told = partial(self.dispatch.room_changed, account_id, announce.change, announce.short)
            self._to_coordinator(account_id, told)
        if announce.wake_in is not None:
            account.wake_token += 1
            wake = partial(self._account_wake, account_id, account.wake_token)
            self._later(announce.wake_in, wake)

    def _account_wake(self, account_id: int, token: int) -> None:
        if token == self._accounts[account_id].wake_token:
            self._account_sync(account_id)

    # --- checks -------------------------------------------------------------------

    def _start_check(self, stream_id: int, lease: Lease) -> None:
        """The checker starts (a message's latency), holds the connection, reports."""
        self._runs[stream_id] += 1
        attempt = self._runs[stream_id]
        lease_id = lease.lease_id
        ended = False

        def open_connection() -> None:
            if ended:
                return  # cancelled before it opened
            self._open[lease_id] = (self.clock.now, lease.account_id, lease.profile_id)
            duration = self.scenario.durations[stream_id]
            self._later(duration, lambda: end(self._outcome(stream_id, attempt)))

        def end(outcome: ProbeOutcome) -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            self._cancellers.pop(lease_id, None)
            self._close(lease_id)
            self._to_coordinator(
                ("checker", lease_id), lambda: self.dispatch.check_finished(lease_id, outcome)
            )

        self._message(("checker", lease_id), open_connection)
        self._cancellers[lease_id] = lambda: end(ProbeOutcome(kind="cancelled"))

    def _cancel_check(self, lease_id: int) -> None:
        cancel = self._cancellers.get(lease_id)
        if cancel is not None:
            self._message(("checker", lease_id), cancel)

    def _close(self, lease_id: int) -> None:
        opened = self._open.pop(lease_id, None)
        if opened is not None:
            start, account_id, profile_id = opened
            self._intervals.append((start, self.clock.now, account_id, profile_id))

    # --- checks on the schedule ---------------------------------------------------

    def _check_idle(self) -> None:
        """With no message in flight, no slot may sit idle while work for it waits."""
        if self._in_flight:
            return
        limit = self.scenario.global_limit
        if limit and self.dispatch.counts()["running"] >= limit:
            return
        for account_id, account in self._accounts.items():
            waiting, _running = self.dispatch.account_counts(account_id)
            if waiting and account.could_open():
                self._idle.append(
                    f"t={self.clock.now:.3f}: account {account_id} idle, {waiting} wait"
                )


def random_latency(rng: random.Random, most: float) -> Callable[[], float]:
    """Message latencies drawn from 0..``most`` seconds."""
    return lambda: rng.uniform(0.0, most)
