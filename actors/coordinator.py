"""``Coordinator``: the queue of pending checks, the global budget and who holds which lease.

It never waits: every decision is taken when a message arrives (a cycle, a
grant, a denial, freed slots, a finished check), by :meth:`Coordinator._pump`,
which asks accounts for leases while the global budget has room. A job holds no
slot while it waits; a lease exists only while its checker runs.
"""

from __future__ import annotations

import itertools
import queue
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import pykka
import structlog

from actors.account import AccountActor, ViewerFeed
from actors.checker import CheckerActor, utc_now
from actors.messages import (
    AbortCycle,
    AccountFailed,
    Cancel,
    CheckCycle,
    CheckerDied,
    CheckFinished,
    CycleFinished,
    CycleStarted,
    GetStatus,
    Job,
    JobReady,
    Lease,
    LeaseDenied,
    LeaseExpired,
    LeaseGranted,
    LimitsChanged,
    Preempt,
    ReleaseLease,
    RequestLease,
    ResultReady,
    SetAccounts,
    SlotsFreed,
    Subscribe,
)
from actors.observer import CheckObserver, NullObserver
from actors.slots import UNLIMITED, capacity
from actors.supervisor import report_failure
from actors.tell import tell_quietly
from actors.timers import TimerHandle, Timers
from actors.workers import BlockingWork
from domain.models import Account, CheckResult, Probe, ProbeOutcome, ProbeRequest, StreamInfo

logger = structlog.get_logger(__name__)

ACCOUNT_UNAUTHORIZED = "account_unauthorized"
"""The probe's reason for an HTTP 401: the account's login is refused, not the stream."""

Scorer = Callable[[StreamInfo], float]


@dataclass(frozen=True)
class _WaitExpired:
    """Private: the cycle's ``max_wait`` is over."""

    cycle_id: int


@dataclass(frozen=True)
class _HardLimit:
    """Private: a check reached ``check.duration + check.timeout``."""

    lease_id: int


class CycleBusyError(RuntimeError):
    """A cycle was started while another one is still running."""


@dataclass(frozen=True)
class CoordinatorSettings:
    """How checks run; built from the config's ``[concurrent_streams]`` and ``[check]``."""

    global_limit: int = 0
    """Checks running at once over all accounts; 0 = unlimited."""
    stagger_delay: float = 0.0
    """Default seconds between two openings on one account (accounts may override)."""
    check_duration: float = 10.0
    check_timeout: float = 30.0
    retries: int = 2
    retry_delay: float = 5.0
    busy_backoff: float = 10.0
    max_requeues: int = 10
    user_agent: str | None = None
    max_wait: float = 3600.0
    """Seconds a cycle's jobs may wait for a free slot (viewers may hold them all);
    after that the jobs still waiting end as ``cancelled`` with ``no_free_slot``."""
    watchdog_grace: float = 15.0
    """Seconds past a check's own hard limit before the coordinator gives up on it."""

    @property
    def hard_limit(self) -> float:
        """Seconds after which a checker cancels its probe as a timeout."""
        return self.check_duration + self.check_timeout


@dataclass
class _AccountEntry:
    ref: pykka.ActorRef[Any]
    account: Account
    capacity: int
    waiting: deque[Job] = field(default_factory=deque)
    waiting_work: float = 0.0
    """Sum of the waiting jobs' expected seconds."""
    in_flight: int = 0
    running: int = 0
    free_hint: int = UNLIMITED
    retired: bool = False
    waiting_for: str | None = None
    """Why its jobs wait: the reason of the last denial (cleared by a grant)."""
    unauthorized: bool = False
    """The provider refused the login (401) this cycle: its jobs end without a connection."""

    returned: int = 0
    """Jobs put back at the front since the last pop: requests are answered in
    order, so a later denial goes behind the earlier ones and the order holds."""

    def push(self, job: Job, *, front: bool = False) -> None:
        """Queue a job (at the front when it lost its turn through a denial)."""
        if front:
            self.waiting.insert(self.returned, job)
            self.returned += 1
        else:
            self.waiting.append(job)
        self.waiting_work += job.expected_s

    def pop(self) -> Job:
        """Take the next job."""
        self.returned = 0
        job = self.waiting.popleft()
        self.waiting_work = max(0.0, self.waiting_work - job.expected_s)
        return job


@dataclass
class _Running:
    job: Job
    lease: Lease
    checker: pykka.ActorRef[Any]
    watchdog: TimerHandle
    started: float = field(default_factory=time.monotonic)
    cancelling: bool = False


@dataclass
class _Cycle:
    cycle_id: int
    started_at: str
    started_mono: float
    streams: int
    open_jobs: dict[int, Job]
    done: Any
    results: list[CheckResult] = field(default_factory=list)
    aborting: bool = False
    abort_outcome: ProbeOutcome | None = None
    """How the jobs an abort ends are reported (``error`` when an actor failed)."""
    wait_deadline: TimerHandle | None = None


class Coordinator(pykka.ThreadingActor):
    """Grants checks to accounts without blocking; owns the queue and the global limit.

    Args:
        probe: the probe every checker runs.
        settings: limits and check timings.
        listeners: actors told ``CycleStarted``, ``ResultReady`` and ``CycleFinished``.
        scorer: quality score of a stream that played.
        timers: the shared timer thread (one is made, and stopped with the actor, if None).
        history: seconds each stream's last check took (from the results store),
            so that even the first cycle after a restart starts the long ones first.
        viewers: the viewer watcher the account actors subscribe to, and what
            they assume while counts are unknown; ``None``: nobody watches.
        supervisor: told ``ActorFailed`` if the coordinator crashes (after it
            has given every open job an error result).
        observer: told of denials, preemptions and every attempt (the metrics).
    """

    use_daemon_thread = True

    def __init__(
        self,
        probe: Probe,
        settings: CoordinatorSettings,
        listeners: tuple[pykka.ActorRef[Any], ...] = (),
        scorer: Scorer | None = None,
        timers: Timers | None = None,
        history: Mapping[int, float] | None = None,
        viewers: ViewerFeed | None = None,
        supervisor: pykka.ActorRef[Any] | None = None,
        observer: CheckObserver | None = None,
    ) -> None:
        super().__init__()
        self._viewers = viewers
        self._supervisor = supervisor
        self._observer: CheckObserver = observer or NullObserver()
        self._probe = probe
        self._settings = settings
        self._listeners = list(listeners)
        self._abort_waiters: list[Any] = []
        self._scorer: Scorer = scorer or (lambda _info: 0.0)
        self._own_timers = timers is None
        self._timers = timers or Timers()
        self._workers = BlockingWork()
        self._accounts: dict[int, _AccountEntry] = {}
        self._requests: dict[int, Job] = {}
        self._running: dict[int, _Running] = {}
        self._delayed: dict[int, tuple[Job, TimerHandle]] = {}
        self._request_ids = itertools.count(1)
        self._cycle: _Cycle | None = None
        self._failing: ProbeOutcome | None = None
        """Set by an error abort (an actor died): later cycles fail at once."""
        self._last_cycle: dict[str, Any] | None = None
        self._budget_blocked = False
        self._history: dict[int, float] = dict(history or {})
        """Seconds each stream's last check took, for ordering the next cycle."""
        self._handlers: dict[type, Callable[[Any], Any]] = {
            LeaseGranted: self._on_granted,
            LeaseDenied: self._on_denied,
            SlotsFreed: self._on_slots_freed,
            CheckFinished: self._on_check_finished,
            Preempt: self._on_preempt,
            CheckerDied: self._on_checker_died,
            LeaseExpired: self._on_lease_expired,
            JobReady: self._on_job_ready,
            CheckCycle: self._on_cycle,
            SetAccounts: self._on_set_accounts,
            AbortCycle: self._on_abort,
            GetStatus: self._status,
            Subscribe: self._on_subscribe,
            AccountFailed: self._on_account_failed,
            _WaitExpired: self._on_wait_expired,
            _HardLimit: self._on_hard_limit,
        }

    # --- life cycle ---------------------------------------------------------------

    def on_stop(self) -> None:
        """Kill running checks, stop account actors and timers; no cycle is left hanging."""
        self._fail_open_work("coordinator_stopped")
        self._shutdown()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Crashed (a bug): every open job gets an error result, no probe outlives us,
        and the supervisor hears of it."""
        self._fail_open_work(f"coordinator_failed: {exception_value!r}")
        self._shutdown()
        report_failure(self._supervisor, "coordinator", exception_value)

    def _fail_open_work(self, reason: str) -> None:
        """End the running cycle and any cycle still in the mailbox with ``error`` results.

        Without this a caller waiting on a cycle's ``done`` would wait for ever:
        pykka drops the told messages of a dead actor.
        """
        outcome = ProbeOutcome(kind="error", reason=reason)
        cycle = self._cycle
        if cycle is not None:
            try:
                cycle.aborting = True
                cycle.abort_outcome = outcome
                for job in list(cycle.open_jobs.values()):
                    self._finish_job(job, outcome)
                self._maybe_finish_cycle()
            except Exception:  # the state may be what crashed; the future must still resolve
                logger.exception("cycle_fail_failed", cycle_id=cycle.cycle_id)
                _resolve(cycle.done, None, RuntimeError(reason))
        kept = []
        while not self.actor_inbox.empty():  # only this thread reads it (as pykka's teardown)
            envelope = self.actor_inbox.get()
            message = envelope.message
            if isinstance(message, CheckCycle):
                self._fail_unstarted(message, outcome)
            elif isinstance(message, AbortCycle):
                _resolve(message.done, None)
            else:
                kept.append(envelope)
        for envelope in kept:  # pykka answers the asks among them with ActorDeadError
            self.actor_inbox.put(envelope)

    def _fail_unstarted(self, message: CheckCycle, outcome: ProbeOutcome) -> None:
        """A cycle that never started: its caller still gets a result for every job."""
        now = utc_now()
        results = tuple(
            CheckResult(
                stream_id=stream_id,
                account_id=job.account_id,
                profile_id=None,
                status="error",
                started_at=now,
                finished_at=now,
                error=outcome.reason,
            )
            for job in message.jobs
            for stream_id in job.stream_ids
        )
        finished = CycleFinished(message.cycle_id, results, now, now, 0.0, aborted=True)
        logger.error("cycle_failed_unstarted", cycle_id=message.cycle_id, reason=outcome.reason)
        for listener in self._listeners:
            tell_quietly(listener, finished)
        _resolve(message.done, finished)

    def _shutdown(self) -> None:
        for run in self._running.values():
            run.watchdog.cancel()
            tell_quietly(run.checker, Cancel("shutdown"))
            run.checker.stop(block=False)
        for _job, handle in self._delayed.values():
            handle.cancel()
        for entry in self._accounts.values():
            entry.ref.stop(block=False)
        if self._own_timers:
            self._timers.stop()
        self._workers.stop()

    # --- dispatch -----------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Dispatch one message by its type; no handler waits on anything."""
        handler = self._handlers.get(type(message))
        if handler is None:
            return super().on_receive(message)
        return handler(message)

    # --- accounts -----------------------------------------------------------------

    def _stagger_for(self, account: Account) -> float:
        if account.stagger_delay is not None:
            return account.stagger_delay
        return self._settings.stagger_delay

    def _on_set_accounts(self, message: SetAccounts) -> None:
        accounts = message.accounts
        seen: set[int] = set()
        for account in accounts:
            seen.add(account.id)
            entry = self._accounts.get(account.id)
            if entry is not None and not entry.ref.is_alive() and not entry.running:
                logger.warning("account_actor_restarted", account_id=account.id)
                del self._accounts[account.id]
                entry = None
            if entry is None:
                ref = AccountActor.start(
                    account, self.actor_ref, self._timers, self._stagger_for(account), self._viewers
                )
                self._accounts[account.id] = _AccountEntry(ref, account, capacity(account))
                continue
            entry.account = account
            entry.capacity = capacity(account)
            entry.retired = False
            tell_quietly(entry.ref, LimitsChanged(account, self._stagger_for(account)))
        for account_id, entry in list(self._accounts.items()):
            if account_id not in seen:
                self._retire(account_id, entry)
        self._pump()
        self._maybe_finish_cycle()

    def _retire(self, account_id: int, entry: _AccountEntry) -> None:
        entry.retired = True
        while entry.waiting:
            self._finish_job(entry.pop(), ProbeOutcome(kind="error", reason="account_removed"))
        if entry.running == 0 and entry.in_flight == 0:
            entry.ref.stop(block=False)
            del self._accounts[account_id]

    # --- cycles -------------------------------------------------------------------

    def _on_cycle(self, message: CheckCycle) -> None:
        if self._failing is not None:
            self._fail_unstarted(message, self._failing)
            return
        if self._cycle is not None:
            logger.warning(
                "cycle_overlap_skipped",
                cycle_id=message.cycle_id,
                running_cycle=self._cycle.cycle_id,
            )
            if message.done is not None:
                message.done.set_exception(
                    exc_info=(CycleBusyError, CycleBusyError("a cycle is already running"), None)
                )
            return
        streams = sum(len(job.stream_ids) for job in message.jobs)
        cycle = _Cycle(
            cycle_id=message.cycle_id,
            started_at=utc_now(),
            started_mono=time.monotonic(),
            streams=streams,
            open_jobs={job.job_id: job for job in message.jobs},
            done=message.done,
        )
        self._cycle = cycle
        by_account = Counter[int]()
        for job in message.jobs:
            by_account[job.account_id] += len(job.stream_ids)
        logger.info("cycle_started", cycle_id=cycle.cycle_id, streams=streams)
        logger.info("cycle_accounts", cycle_id=cycle.cycle_id, streams_by_account=dict(by_account))
        for account_id, count in sorted(by_account.items()):
            entry = self._accounts.get(account_id)
            limit = _shown_limit(entry.capacity) if entry else None
            logger.info(
                "cycle_account",
                cycle_id=cycle.cycle_id,
                account_id=account_id,
                streams=count,
                limit=limit,
            )
        for listener in self._listeners:
            tell_quietly(listener, CycleStarted(cycle.cycle_id, streams, cycle.started_at))
        # Longest expected check first (what it took last cycle; unknown counts
        # as a full check): the tail of the cycle is then made of short ones.
        default = self._settings.check_duration
        expected = [
            replace(job, expected_s=self._history.get(job.stream.id, default))
            for job in message.jobs
        ]
        expected.sort(key=lambda job: job.expected_s, reverse=True)
        known = {job.stream.id for job in message.jobs}
        self._history = {sid: s for sid, s in self._history.items() if sid in known}
        for entry in self._accounts.values():
            entry.unauthorized = False
        for job in expected:
            entry = self._accounts.get(job.account_id)
            if entry is None or entry.retired:
                self._finish_job(job, ProbeOutcome(kind="error", reason="unknown_account"))
            else:
                entry.push(job)
        ref = self.actor_ref
        cycle.wait_deadline = self._timers.call_later(
            self._settings.max_wait, lambda: tell_quietly(ref, _WaitExpired(cycle.cycle_id))
        )
        self._pump()
        self._maybe_finish_cycle()

    def _on_wait_expired(self, message: _WaitExpired) -> None:
        cycle = self._cycle
        if cycle is None or cycle.cycle_id != message.cycle_id:
            return
        expired = ProbeOutcome(kind="cancelled", reason="no_free_slot")
        left = 0
        for entry in self._accounts.values():
            while entry.waiting:
                self._finish_job(entry.pop(), expired)
                left += 1
        for job, handle in list(self._delayed.values()):
            handle.cancel()
            self._finish_job(job, expired)
            left += 1
        self._delayed.clear()
        logger.warning("cycle_wait_expired", cycle_id=cycle.cycle_id, jobs=left)
        cycle.aborting = True  # what still runs finishes; nothing is re-queued
        self._maybe_finish_cycle()

    def _on_subscribe(self, message: Subscribe) -> None:
        if message.listener not in self._listeners:
            self._listeners.append(message.listener)

    def _on_abort(self, message: AbortCycle) -> None:
        reason = message.reason
        if message.error and self._failing is None:
            self._failing = ProbeOutcome(kind="error", reason=reason)
        cycle = self._cycle
        if cycle is None:
            if message.done is not None:
                message.done.set(None)
            return
        if message.done is not None:
            self._abort_waiters.append(message.done)
        cycle.aborting = True
        ended = ProbeOutcome(kind="error" if message.error else "cancelled", reason=reason)
        if cycle.abort_outcome is None or message.error:
            cycle.abort_outcome = ended
        log = logger.error if message.error else logger.warning
        log("cycle_aborting", cycle_id=cycle.cycle_id, reason=reason)
        for entry in self._accounts.values():
            while entry.waiting:
                self._finish_job(entry.pop(), ended)
        for job, handle in list(self._delayed.values()):
            handle.cancel()
            self._finish_job(job, ended)
        self._delayed.clear()
        for run in self._running.values():
            run.cancelling = True
            tell_quietly(run.checker, Cancel(reason))
        self._maybe_finish_cycle()

    def _maybe_finish_cycle(self) -> None:
        cycle = self._cycle
        if cycle is None or cycle.open_jobs:
            return
        self._cycle = None
        if cycle.wait_deadline is not None:
            cycle.wait_deadline.cancel()
        duration = time.monotonic() - cycle.started_mono
        finished = CycleFinished(
            cycle_id=cycle.cycle_id,
            results=tuple(cycle.results),
            started_at=cycle.started_at,
            finished_at=utc_now(),
            duration_s=round(duration, 3),
            aborted=cycle.aborting,
        )
        self._last_cycle = {
            "cycle_id": cycle.cycle_id,
            "started_at": cycle.started_at,
            "finished_at": finished.finished_at,
            "duration_s": finished.duration_s,
            "streams": cycle.streams,
            "alive": sum(1 for r in cycle.results if r.status == "ok"),
            "dead": sum(1 for r in cycle.results if r.status == "dead"),
            "aborted": cycle.aborting,
        }
        logger.info(
            "cycle_finished",
            cycle_id=cycle.cycle_id,
            completed=len(cycle.results),
            total=cycle.streams,
            alive=self._last_cycle["alive"],
            duration_s=finished.duration_s,
            aborted=cycle.aborting,
        )
        for listener in self._listeners:
            tell_quietly(listener, finished)
        if cycle.done is not None:
            cycle.done.set(finished)
        for waiter in self._abort_waiters:
            waiter.set(finished)
        self._abort_waiters.clear()

    # --- granting -----------------------------------------------------------------

    def _budget_left(self) -> int:
        limit = self._settings.global_limit
        if limit <= 0:
            return UNLIMITED
        return limit - len(self._requests) - len(self._running)

    def _pump(self, only: _AccountEntry | None = None) -> None:
        """Ask accounts for leases while the global budget has room.

        ``only`` names the one account an event concerned: while the global
        budget is not what holds checks back, no other account can have become
        ready, so the others are not scanned. Under a binding global limit every
        account is considered and the one with the most queued work per slot
        goes first, so the slowest account is never starved by quick ones.
        """
        budget = self._budget_left()
        if budget <= 0:
            self._budget_blocked = True
            return
        if only is not None and not self._budget_blocked:
            candidates: Iterable[_AccountEntry] = (only,)
        else:
            candidates = self._accounts.values()
        ready = [e for e in candidates if e.waiting and e.in_flight < e.free_hint and not e.retired]
        if budget < sum(len(e.waiting) for e in ready):
            ready.sort(key=_backlog_per_slot, reverse=True)
        for entry in ready:
            while entry.waiting and entry.in_flight < entry.free_hint and budget > 0:
                self._request(entry, entry.pop())
                budget -= 1
            if budget <= 0:
                self._budget_blocked = True
                return
        self._budget_blocked = False

    def _request(self, entry: _AccountEntry, job: Job) -> None:
        request = self._new_request(entry, job)
        if not tell_quietly(entry.ref, request):
            self._drop_requests(entry.account.id, "account_actor_dead")

    def _new_request(self, entry: _AccountEntry, job: Job) -> RequestLease:
        request_id = next(self._request_ids)
        self._requests[request_id] = job
        entry.in_flight += 1
        return RequestLease(request_id=request_id, job_id=job.job_id, stream=job.stream)

    def _drop_requests(self, account_id: int, reason: str) -> None:
        """An account actor is gone: its unanswered requests end as errors, not hang."""
        entry = self._accounts.get(account_id)
        lost = [rid for rid, job in self._requests.items() if job.account_id == account_id]
        logger.error("account_actor_lost", account_id=account_id, requests=len(lost))
        for request_id in lost:
            job = self._requests.pop(request_id)
            if entry is not None:
                entry.in_flight -= 1
            self._finish_job(job, ProbeOutcome(kind="error", reason=reason))
        if entry is not None:
            while entry.waiting:
                self._finish_job(entry.pop(), ProbeOutcome(kind="error", reason=reason))
        self._maybe_finish_cycle()

    def _on_account_failed(self, message: AccountFailed) -> None:
        self._drop_requests(message.account_id, "account_actor_failed")

    def _on_granted(self, message: LeaseGranted) -> None:
        lease = message.lease
        entry = self._accounts[lease.account_id]
        job = self._requests.pop(message.request_id, None)
        if job is None:  # its request was given up (account actor lost): hand it back
            tell_quietly(entry.ref, ReleaseLease(lease.lease_id))
            return
        entry.in_flight -= 1
        entry.free_hint = message.free_after
        entry.waiting_for = None
        cycle = self._cycle
        if entry.unauthorized:
            tell_quietly(entry.ref, ReleaseLease(lease.lease_id))
            self._finish_job(job, ProbeOutcome(kind="error", reason=ACCOUNT_UNAUTHORIZED))
            self._maybe_finish_cycle()
            return
        if cycle is None or cycle.aborting or job.job_id not in cycle.open_jobs:
            tell_quietly(entry.ref, ReleaseLease(lease.lease_id))
            if cycle is not None and job.job_id in cycle.open_jobs:
                self._finish_job(job, _aborted(cycle))
                self._maybe_finish_cycle()
            return
        request = ProbeRequest(
            url=lease.url,
            user_agent=lease.user_agent or self._settings.user_agent,
            duration=self._settings.check_duration,
            timeout=self._settings.check_timeout,
            stream_id=job.stream.id,
            account_id=lease.account_id,
            other_checks_running=entry.running,
        )
        checker = CheckerActor.start(
            self.actor_ref, job, lease, self._probe, request, self._workers
        )
        ref = self.actor_ref
        watchdog = self._timers.call_later(
            self._settings.hard_limit, lambda: tell_quietly(ref, _HardLimit(lease.lease_id))
        )
        self._running[lease.lease_id] = _Running(job, lease, checker, watchdog)
        entry.running += 1
        logger.debug(
            "check_started",
            stream_id=job.stream.id,
            account_id=lease.account_id,
            profile_id=lease.profile_id,
            lease_id=lease.lease_id,
        )
        self._pump(entry)

    def _on_denied(self, message: LeaseDenied) -> None:
        self._observer.lease_denied(message.account_id, message.reason)
        job = self._requests.pop(message.request_id, None)
        if job is None:  # its request was given up already
            return
        entry = self._accounts[message.account_id]
        entry.in_flight -= 1
        entry.free_hint = 0
        entry.waiting_for = message.reason
        cycle = self._cycle
        if cycle is None or cycle.aborting:
            self._finish_job(job, _aborted(cycle))
            self._maybe_finish_cycle()
            return
        if entry.unauthorized:
            self._finish_job(job, ProbeOutcome(kind="error", reason=ACCOUNT_UNAUTHORIZED))
            self._maybe_finish_cycle()
            return
        entry.push(job, front=True)
        self._pump(entry)

    def _on_slots_freed(self, message: SlotsFreed) -> None:
        entry = self._accounts.get(message.account_id)
        if entry is None:
            return
        entry.free_hint = message.free
        self._pump(entry)

    # --- ending checks ------------------------------------------------------------

    def _on_check_finished(self, message: CheckFinished) -> None:
        self._end_run(message.lease_id, message.outcome, message.started_at, message.finished_at)

    def _on_checker_died(self, message: CheckerDied) -> None:
        outcome = ProbeOutcome(kind="error", reason=f"checker_died: {message.reason}")
        self._end_run(message.lease_id, outcome)

    def _on_hard_limit(self, message: _HardLimit) -> None:
        """The check ran out of time: cancel it, and give it a grace period to report."""
        run = self._running.get(message.lease_id)
        if run is None:
            return
        tell_quietly(run.checker, Cancel("timeout"))
        ref = self.actor_ref
        run.watchdog = self._timers.call_later(
            self._settings.watchdog_grace,
            lambda: tell_quietly(ref, LeaseExpired(message.lease_id)),
        )

    def _on_lease_expired(self, message: LeaseExpired) -> None:
        lease_id = message.lease_id
        run = self._running.get(lease_id)
        if run is None:
            return
        logger.error("check_unresponsive", lease_id=lease_id, stream_id=run.job.stream.id)
        tell_quietly(run.checker, Cancel("unresponsive"))
        run.checker.stop(block=False)
        self._end_run(lease_id, ProbeOutcome(kind="error", reason="probe_unresponsive"))

    def _on_preempt(self, message: Preempt) -> None:
        for lease_id in message.lease_ids:
            run = self._running.get(lease_id)
            if run is None or run.cancelling:
                continue
            run.cancelling = True
            self._observer.check_preempted(run.lease.account_id, run.lease.profile_id)
            logger.info(
                "check_preempted",
                lease_id=lease_id,
                stream_id=run.job.stream.id,
                account_id=run.lease.account_id,
            )
            tell_quietly(run.checker, Cancel("preempted"))

    def _end_run(
        self,
        lease_id: int,
        outcome: ProbeOutcome,
        started_at: str | None = None,
        finished_at: str | None = None,
    ) -> None:
        """Release the lease (exactly once: the run is popped) and settle the job."""
        run = self._running.pop(lease_id, None)
        if run is None:
            return
        run.watchdog.cancel()
        held = time.monotonic() - run.started
        self._observer.attempt_ended(
            run.lease.account_id, run.lease.profile_id, outcome.kind, outcome.reason, held
        )
        if outcome.kind in ("ok", "dead"):
            self._history[run.job.stream.id] = held
        entry = self._accounts.get(run.lease.account_id)
        if entry is not None:
            entry.running -= 1
        self._settle(run.job, outcome, run.lease, started_at, finished_at)
        if entry is not None:
            follow = None
            if (
                entry.waiting
                and not entry.retired
                and not self._budget_blocked
                and self._budget_left() > 0
            ):
                # Hand the freed slot straight to this account's next job.
                follow = self._new_request(entry, entry.pop())
            if not tell_quietly(entry.ref, ReleaseLease(lease_id, follow)) and follow:
                self._drop_requests(entry.account.id, "account_actor_dead")
            if entry.retired and entry.running == 0 and entry.in_flight == 0:
                entry.ref.stop(block=False)
                del self._accounts[run.lease.account_id]
        self._pump(entry)
        self._maybe_finish_cycle()

    def _settle(
        self,
        job: Job,
        outcome: ProbeOutcome,
        lease: Lease,
        started_at: str | None,
        finished_at: str | None,
    ) -> None:
        """Final result, or back to the queue (now, or after a delay)."""
        cycle = self._cycle
        aborting = cycle is None or cycle.aborting
        settings = self._settings
        entry = self._accounts.get(job.account_id)
        refused = outcome.reason == ACCOUNT_UNAUTHORIZED  # by reason, whatever the kind
        if entry is not None and (refused or outcome.kind not in ("ok", "dead")):
            if refused and not entry.unauthorized:
                self._account_unauthorized(entry)
            if entry.unauthorized:
                outcome = ProbeOutcome(kind="error", info=outcome.info, reason=ACCOUNT_UNAUTHORIZED)
                self._finish_job(job, outcome, lease.profile_id, started_at, finished_at)
                return
        if outcome.kind == "cancelled" and not aborting and job.requeues < settings.max_requeues:
            self._enqueue(replace(job, requeues=job.requeues + 1), delay=0.0)
            return
        if outcome.kind in ("error", "busy") and not aborting and job.attempt < settings.retries:
            if outcome.kind == "busy":
                delay = settings.busy_backoff * (2**job.attempt)
            else:
                delay = settings.retry_delay
            logger.info(
                "check_retry",
                stream_id=job.stream.id,
                kind=outcome.kind,
                reason=outcome.reason,
                delay_s=delay,
                attempt=job.attempt + 1,
            )
            self._enqueue(replace(job, attempt=job.attempt + 1), delay=delay)
            return
        if outcome.kind == "busy":
            outcome = ProbeOutcome(kind="error", info=outcome.info, reason="provider_busy")
        if aborting and outcome.kind == "cancelled" and cycle is not None:
            outcome = replace(_aborted(cycle), info=outcome.info)
        self._finish_job(job, outcome, lease.profile_id, started_at, finished_at)

    def _account_unauthorized(self, entry: _AccountEntry) -> None:
        """The provider refused the account's login: end its jobs now, open nothing more.

        Checks already running on it end on their own (a stream judged ``ok`` or
        ``dead`` keeps its verdict); the next cycle tries the account again.
        """
        entry.unauthorized = True
        ended = ProbeOutcome(kind="error", reason=ACCOUNT_UNAUTHORIZED)
        jobs = 0
        while entry.waiting:
            self._finish_job(entry.pop(), ended)
            jobs += 1
        for job_id, (job, handle) in list(self._delayed.items()):
            if job.account_id == entry.account.id:
                handle.cancel()
                del self._delayed[job_id]
                self._finish_job(job, ended)
                jobs += 1
        logger.error(
            "account_unauthorized",
            account_id=entry.account.id,
            account=entry.account.name,
            cycle_id=self._cycle.cycle_id if self._cycle else None,
            jobs_ended=jobs,
            hint="the provider refused the login (HTTP 401): check the account's password",
        )

    def _enqueue(self, job: Job, delay: float) -> None:
        entry = self._accounts.get(job.account_id)
        if entry is None or entry.retired:
            self._finish_job(job, ProbeOutcome(kind="error", reason="account_removed"))
            return
        if delay <= 0:
            entry.push(job)
            return
        ref = self.actor_ref
        handle = self._timers.call_later(delay, lambda: tell_quietly(ref, JobReady(job.job_id)))
        self._delayed[job.job_id] = (job, handle)

    def _on_job_ready(self, message: JobReady) -> None:
        item = self._delayed.pop(message.job_id, None)
        if item is None:
            return
        self._enqueue(item[0], delay=0.0)
        self._pump(self._accounts.get(item[0].account_id))

    def _finish_job(
        self,
        job: Job,
        outcome: ProbeOutcome,
        profile_id: int | None = None,
        started_at: str | None = None,
        finished_at: str | None = None,
    ) -> None:
        cycle = self._cycle
        if cycle is None or cycle.open_jobs.pop(job.job_id, None) is None:
            return
        now = utc_now()
        info = outcome.info
        status = outcome.kind if outcome.kind in ("ok", "dead", "cancelled") else "error"
        score = round(self._scorer(info), 3) if status == "ok" else 0.0
        for stream_id in job.stream_ids:
            result = CheckResult(
                stream_id=stream_id,
                account_id=job.account_id,
                profile_id=profile_id,
                status=status,
                resolution=info.resolution,
                fps=info.fps,
                video_codec=info.video_codec,
                audio_codec=info.audio_codec,
                bitrate_kbps=info.bitrate_kbps,
                score=score,
                started_at=started_at or now,
                finished_at=finished_at or now,
                error=None if status == "ok" else outcome.reason,
                info=info,
            )
            cycle.results.append(result)
            for listener in self._listeners:
                tell_quietly(listener, ResultReady(cycle.cycle_id, result))

    # --- status -------------------------------------------------------------------

    def _status(self, _message: GetStatus | None = None) -> dict[str, Any]:
        cycle = self._cycle
        return {
            "cycle": None
            if cycle is None
            else {
                "cycle_id": cycle.cycle_id,
                "streams": cycle.streams,
                "done": len(cycle.results),
                "started_at": cycle.started_at,
                "aborting": cycle.aborting,
            },
            "last_cycle": self._last_cycle,
            "global_limit": self._settings.global_limit,
            "running": len(self._running),
            "requests_in_flight": len(self._requests),
            "delayed": len(self._delayed),
            "accounts": {
                account_id: {
                    "name": entry.account.name,
                    "limit": _shown_limit(entry.capacity),
                    "waiting": len(entry.waiting),
                    "running": entry.running,
                    "unauthorized": entry.unauthorized,
                    # e.g. "viewer_count_unknown": why its waiting checks wait
                    "waiting_for": entry.waiting_for if entry.waiting else None,
                    # For the dashboard's per-login bars: the configured logins,
                    # and the account actor to ask for its usage (GetUsage).
                    "stagger_delay": self._stagger_for(entry.account),
                    "reserve_for_viewers": entry.account.reserve_for_viewers,
                    "profiles": [
                        {
                            "id": p.id,
                            "name": p.name,
                            "is_default": p.is_default,
                            "max_streams": p.max_streams,
                        }
                        for p in entry.account.usable_profiles()
                    ],
                    "actor": entry.ref,
                }
                for account_id, entry in self._accounts.items()
            },
            "checks": [
                {
                    "lease_id": lease_id,
                    "stream_id": run.job.stream.id,
                    "account_id": run.lease.account_id,
                    "profile_id": run.lease.profile_id,
                    "checker": run.checker,
                }
                for lease_id, run in self._running.items()
            ],
        }


def _aborted(cycle: _Cycle | None) -> ProbeOutcome:
    """How a job the running abort ends is reported."""
    if cycle is not None and cycle.abort_outcome is not None:
        return cycle.abort_outcome
    return ProbeOutcome(kind="cancelled", reason="aborted")


def _resolve(future: Any, value: Any, error: BaseException | None = None) -> None:
    """Set a caller's future unless it is set already (pykka raises on a second set)."""
    if future is None:
        return
    try:
        if error is None:
            future.set(value)
        else:
            future.set_exception(exc_info=(type(error), error, None))
    except queue.Full:
        pass


def _backlog_per_slot(entry: _AccountEntry) -> float:
    """Expected seconds of queued work per slot of the account."""
    if entry.capacity >= UNLIMITED:
        return max((job.expected_s for job in entry.waiting), default=0.0)
    return entry.waiting_work / max(entry.capacity, 1)


def _shown_limit(capacity: int) -> int:
    """Limits as users write them: 0 means unlimited."""
    return 0 if capacity >= UNLIMITED else capacity
