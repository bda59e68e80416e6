"""``Coordinator``: a thin actor over :class:`Dispatch` and :class:`Cycle`.

Every message becomes one event of the dispatch (which decides: who gets a
lease, what is retried, when a check has run out of time) and the coordinator
carries out the actions it returns: telling account actors, starting and
cancelling checks (on the pool threads of :class:`Checkers`), recording results
in the cycle and telling listeners. It never waits, and it owns the account
actors: it starts, updates and retires them from ``SetAccounts``.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import pykka
import structlog

from actors.account import AccountActor, LearningFeed, ViewerFeed
from actors.checker import Checkers, utc_now
from actors.cycle import Cycle, Scorer, failed_unstarted, summary
from actors.dispatch import (
    AbandonCheck,
    Action,
    CancelCheck,
    CoordinatorSettings,
    Dispatch,
    DropAccount,
    Finish,
    Release,
    Request,
    StartCheck,
    WakeAt,
)
from actors.inbox import QuickActor
from actors.messages import (
    AbortCycle,
    AccountFailed,
    Batch,
    CheckCycle,
    CheckFinished,
    CycleFinished,
    CycleRefused,
    CycleStarted,
    GetStatus,
    Job,
    LeaseDenied,
    LeaseGranted,
    LimitsChanged,
    Preempt,
    ReleaseLease,
    RequestLease,
    ResultReady,
    RoomChanged,
    SetAccounts,
    Subscribe,
    bundle,
)
from actors.observer import CheckObserver, NullObserver
from actors.slots import UNLIMITED, capacity
from actors.supervisor import report_failure
from actors.tell import tell_quietly
from actors.timers import PendingTick, Tick, Timers
from domain.models import Account, Probe, ProbeOutcome
from domain.priority import CheckMemory

__all__ = ["Coordinator", "CoordinatorSettings", "CycleBusyError", "Scorer"]

logger = structlog.get_logger(__name__)


class CycleBusyError(RuntimeError):
    """A cycle was started while another one is still running."""


@dataclass
class _AccountActor:
    ref: pykka.ActorRef[Any]
    account: Account


class Coordinator(QuickActor):
    """Grants checks to accounts without blocking; owns the queue and the global limit.

    Args:
        probe: the probe every check runs.
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
        learning: how account actors learn their logins' real caps and release
            lags, and what they learned before; ``None``: they trust the
            configured limits (and ``settings.learn_providers`` is ignored).
        memory: each stream's recent checks (from the results store): the
            queue's priority and ``stable_every`` read them; empty if ``None``.
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
        learning: LearningFeed | None = None,
        memory: CheckMemory | None = None,
    ) -> None:
        super().__init__()
        self._memory = memory or CheckMemory()
        self._viewers = viewers
        self._learning = learning
        if learning is None:
            settings = replace(settings, learn_providers=False)
        self._supervisor = supervisor
        self._observer: CheckObserver = observer or NullObserver()
        self._settings = settings
        self._listeners = list(listeners)
        self._scorer: Scorer = scorer or (lambda _info: 0.0)
        self._own_timers = timers is None
        self._timers = timers or Timers()
        self._wake = PendingTick(self._timers)
        self._checkers = Checkers(self.actor_ref, probe, settings)
        self._dispatch = Dispatch(settings, time.monotonic, history, self._observer)
        self._accounts: dict[int, _AccountActor] = {}
        self._cycle: Cycle | None = None
        self._cycle_done: pykka.Future[CycleFinished] | None = None
        self._last_cycle: dict[str, Any] | None = None
        self._abort_waiters: list[pykka.Future[CycleFinished | None]] = []
        self._failing: ProbeOutcome | None = None
        """Set by an error abort (an actor died): later cycles fail at once."""

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
                for job in cycle.open_jobs():
                    self._record(Finish(job, outcome))
                self._maybe_finish_cycle(aborted=True)
            except Exception:  # the state may be what crashed; the future must still resolve
                logger.exception("cycle_fail_failed", cycle_id=cycle.cycle_id)
                _resolve(self._cycle_done, None, RuntimeError(reason))
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
        finished = failed_unstarted(message.cycle_id, message.jobs, outcome, utc_now())
        for listener in self._listeners:
            tell_quietly(listener, finished)
        _resolve(message.done, finished)

    def _shutdown(self) -> None:
        self._wake.cancel()
        self._checkers.stop()
        for entry in self._accounts.values():
            entry.ref.stop(block=False)
        if self._own_timers:
            self._timers.stop()

    # --- messages -----------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:  # noqa: PLR0912 - one branch per message
        """Feed one message into the dispatch and carry out what it decides."""
        dispatch = self._dispatch
        match message:
            case LeaseGranted(request_id=request_id, lease=lease):
                self._perform(dispatch.granted(request_id, lease))
            case LeaseDenied(request_id=request_id, account_id=account_id, reason=reason):
                self._observer.lease_denied(account_id, reason)
                self._perform(dispatch.denied(request_id, reason))
            case RoomChanged(account_id=account_id, change=change, short=short):
                self._perform(dispatch.room_changed(account_id, change, short))
            case CheckFinished():
                self._checkers.ended(message.lease_id)
                actions = dispatch.check_finished(
                    message.lease_id, message.outcome, message.started_at, message.finished_at
                )
                self._perform(actions)
            case Preempt(lease_ids=lease_ids):
                self._perform(dispatch.preempt(lease_ids))
            case Tick():
                if self._wake.fired(message):
                    self._perform(dispatch.tick())
            case AccountFailed(account_id=account_id):
                self._perform(dispatch.account_lost(account_id, "account_actor_failed"))
            case CheckCycle():
                self._on_cycle(message)
            case SetAccounts(accounts=accounts):
                self._on_set_accounts(accounts)
            case AbortCycle():
                self._on_abort(message)
            case Subscribe(listener=listener):
                if listener not in self._listeners:
                    self._listeners.append(listener)
            case Batch(messages=messages):  # an account's answers to one batch
                for each in messages:
                    self.on_receive(each)
            case GetStatus():
                return self._status()
            case _:
                return super().on_receive(message)
        return None

    def _on_set_accounts(self, accounts: Iterable[Account]) -> None:
        seen: set[int] = set()
        for account in accounts:
            seen.add(account.id)
            entry = self._accounts.get(account.id)
            stagger = self._stagger_for(account)
            if entry is not None and not entry.ref.is_alive():
                if not self._dispatch.can_restart(account.id):
                    continue  # its checks still run; the next cycle's accounts restart it
                logger.warning("account_actor_restarted", account_id=account.id)
                entry = None
            if entry is None:
                ref = AccountActor.start(
                    account,
                    self.actor_ref,
                    self._timers,
                    stagger,
                    self._viewers,
                    learning=self._learning,
                )
                self._accounts[account.id] = _AccountActor(ref, account)
                self._perform(self._dispatch.set_account(account.id, capacity(account), fresh=True))
                continue
            entry.account = account
            tell_quietly(entry.ref, LimitsChanged(account, stagger))
            self._perform(self._dispatch.set_account(account.id, capacity(account)))
        for account_id in list(self._accounts):
            if account_id not in seen:
                self._perform(self._dispatch.retire_account(account_id))

    def _stagger_for(self, account: Account) -> float:
        if account.stagger_delay is not None:
            return account.stagger_delay
        return self._settings.stagger_delay

    def _on_cycle(self, message: CheckCycle) -> None:
        if self._failing is not None:
            self._fail_unstarted(message, self._failing)
            return
        if self._cycle is not None:
            running = self._cycle.cycle_id
            logger.warning(
                "cycle_overlap_skipped", cycle_id=message.cycle_id, running_cycle=running
            )
            error = CycleBusyError("a cycle is already running")
            if message.done is not None:
                message.done.set_exception(exc_info=(CycleBusyError, error, None))
            if message.requester is not None:
                tell_quietly(message.requester, CycleRefused(message.cycle_id, str(error)))
            return
        jobs = self._plan(message)
        cycle = Cycle(message.cycle_id, jobs, self._scorer, time.monotonic, utc_now)
        self._cycle = cycle
        self._cycle_done = message.done
        cycle.log_started({a: _shown_limit(capacity(e.account)) for a, e in self._accounts.items()})
        started = CycleStarted(cycle.cycle_id, cycle.streams, cycle.started_at)
        for listener in self._listeners:
            tell_quietly(listener, started)
        self._perform(self._dispatch.start(jobs))

    def _plan(self, message: CheckCycle) -> list[Job]:
        """The cycle's jobs with their priority, less the stable ones not due (``stable_every``)."""
        memory = self._memory
        memory.next_cycle()
        every = self._settings.stable_every
        planned: list[Job] = []
        skipped = 0
        for job in message.jobs:
            if not memory.due(job.stream_ids, every, marked=job.marked):
                skipped += len(job.stream_ids)
                continue
            key = memory.priority(job.stream_ids, marked=job.marked)
            planned.append(job.evolve(priority=key))
        if skipped:
            logger.info(
                "cycle_stable_skipped",
                cycle_id=message.cycle_id,
                streams=skipped,
                stable_every=every,
                hint="healthy and unchanged for a while: checked every stable_every cycles",
            )
        return planned

    def _on_abort(self, message: AbortCycle) -> None:
        if message.error and self._failing is None:
            self._failing = ProbeOutcome(kind="error", reason=message.reason)
        cycle = self._cycle
        if cycle is None:
            if message.done is not None:
                message.done.set(None)
            return
        if message.done is not None:
            self._abort_waiters.append(message.done)
        log = logger.error if message.error else logger.warning
        log("cycle_aborting", cycle_id=cycle.cycle_id, reason=message.reason)
        self._perform(self._dispatch.abort(message.reason, error=message.error))

    # --- carrying out -------------------------------------------------------------

    def _perform(self, actions: Iterable[Action]) -> None:
        """Carry out the dispatch's actions in order, then end the cycle if it is complete.

        Results go to the listeners last: a freed slot's next request is not
        kept waiting behind them. What goes to one account goes as one
        message (a :class:`Batch` if there are several), in order.
        """
        pending = deque(actions)
        finished: list[Finish] = []
        mail: dict[int, list[Request | Release]] = {}
        while pending:
            action = pending.popleft()
            if isinstance(action, Finish):
                finished.append(action)
            elif isinstance(action, Request | Release):
                mail.setdefault(action.account_id, []).append(action)
            else:
                if isinstance(action, DropAccount) and mail:  # its last release goes first
                    pending.extend(self._post(mail))
                    mail = {}
                pending.extend(self._carry_out(action))
            if not pending and mail:
                pending.extend(self._post(mail))
                mail = {}
        for finish in finished:
            self._record(finish)
        self._maybe_finish_cycle()

    def _post(self, mail: dict[int, list[Request | Release]]) -> list[Action]:
        """Tell each account its releases and requests; returns what the dispatch
        decides for an account whose actor turns out gone."""
        more: list[Action] = []
        for account_id, actions in mail.items():
            messages = [_lease_message(action) for action in actions]
            asks = any(isinstance(action, Request) for action in actions)
            entry = self._accounts.get(account_id)
            if entry is None:
                if asks:
                    more.extend(self._dispatch.account_lost(account_id, "account_actor_dead"))
            elif not tell_quietly(entry.ref, bundle(messages)) and asks:
                more.extend(self._dispatch.account_lost(account_id, "account_actor_dead"))
        return more

    def _carry_out(self, action: Action) -> list[Action]:
        """One action (not a lease message: see ``_post``)."""
        match action:
            case StartCheck(job=job, lease=lease, others_running=others):
                self._checkers.start(job, lease, others)
            case CancelCheck(lease_id=lease_id, reason=reason):
                self._checkers.cancel(lease_id, reason)
            case AbandonCheck(lease_id=lease_id):
                self._checkers.cancel(lease_id, "unresponsive")
                self._checkers.ended(lease_id)
            case WakeAt(at=at):
                self._wake.set(at - time.monotonic(), self.actor_ref)
            case DropAccount(account_id=account_id):
                entry = self._accounts.pop(account_id, None)
                if entry is not None:
                    entry.ref.stop(block=False)
        return []

    def _record(self, finish: Finish) -> None:
        cycle = self._cycle
        if cycle is None:
            return
        results = cycle.record(
            finish.job, finish.outcome, finish.profile_id, finish.started_at, finish.finished_at
        )
        for result in results:
            self._memory.record(result)
            ready = ResultReady(cycle.cycle_id, result)
            for listener in self._listeners:
                tell_quietly(listener, ready)

    def _maybe_finish_cycle(self, *, aborted: bool = False) -> None:
        cycle = self._cycle
        if cycle is None or not cycle.complete:
            return
        self._cycle = None
        # A max_wait expiry is not an abort: every stream has its result (once exits 0).
        dispatch = self._dispatch
        ending_early = dispatch.draining is not None and not dispatch.wait_expired
        finished = cycle.finish(aborted=aborted or ending_early)
        self._last_cycle = summary(finished, cycle.streams)
        for listener in self._listeners:
            tell_quietly(listener, finished)
        _resolve(self._cycle_done, finished)
        for waiter in self._abort_waiters:
            _resolve(waiter, finished)
        self._abort_waiters.clear()

    # --- status -------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        cycle = self._cycle
        dispatch = self._dispatch
        accounts = {}
        for account_id, entry in self._accounts.items():
            account = entry.account
            accounts[account_id] = {
                "name": account.name,
                "limit": _shown_limit(capacity(account)),
                **dispatch.account_status(account_id),
                # For the dashboard's per-login bars: the configured logins,
                # and the account actor to ask for its usage (GetUsage).
                "stagger_delay": self._stagger_for(account),
                "reserve_for_viewers": account.reserve_for_viewers,
                "profiles": [
                    {
                        "id": p.id,
                        "name": p.name,
                        "is_default": p.is_default,
                        "max_streams": p.max_streams,
                    }
                    for p in account.usable_profiles()
                ],
                "actor": entry.ref,
            }
        aborting = dispatch.draining is not None
        return {
            "cycle": None if cycle is None else cycle.status(aborting=aborting),
            "last_cycle": self._last_cycle,
            "global_limit": self._settings.global_limit,
            **dispatch.counts(),
            "accounts": accounts,
            "checks": [
                {
                    "lease_id": lease_id,
                    "stream_id": job.stream.id,
                    "account_id": lease.account_id,
                    "profile_id": lease.profile_id,
                }
                for lease_id, job, lease in dispatch.running()
            ],
        }


def _lease_message(action: Request | Release) -> RequestLease | ReleaseLease:
    if isinstance(action, Request):
        return action.request
    return ReleaseLease(action.lease_id, action.outcome, action.stream_id, action.repeated)


def _shown_limit(limit: int) -> int:
    """Limits as users write them: 0 means unlimited."""
    return 0 if limit >= UNLIMITED else limit


def _resolve(
    future: pykka.Future[Any] | None, value: Any, error: BaseException | None = None
) -> None:
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
