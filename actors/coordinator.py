"""``Coordinator``: a thin actor over :class:`Dispatch`, :class:`Cycles` and :class:`Roster`.

Every message becomes one event of the dispatch (which decides: who gets a
lease, what is retried, when a check has run out of time) and the coordinator
carries out the actions it returns (:mod:`actors.actions`): telling account
actors, starting and cancelling checks (on the pool threads of
:class:`Checkers`), recording results in the running cycle. It never waits.
It owns the account actors: it starts, updates and retires them as the roster
decides from ``SetAccounts``. The lease protocol is told in
:mod:`actors.messages`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import pykka
import structlog

from actors import actions
from actors.account import AccountActor, LearningFeed, ViewerFeed
from actors.checker import Checkers, utc_now
from actors.cycle import Scorer
from actors.cycles import CycleBusyError, Cycles, resolve
from actors.dispatch import CoordinatorSettings, Dispatch
from actors.loop import Idle, LoopActor
from actors.messages import (
    AbortCycle,
    AccountFailed,
    Batch,
    CheckCycle,
    CheckFinished,
    CycleFinished,
    CycleStarted,
    GetStatus,
    LeaseDenied,
    LeaseGranted,
    LimitsChanged,
    LoginsLearned,
    Preempt,
    ResultReady,
    RoomChanged,
    SetAccounts,
    Subscribe,
    bundle,
)
from actors.observer import CheckObserver
from actors.outbox import Letter, Outbox
from actors.roster import Roster
from actors.slots import capacity
from actors.supervisor import SupervisedActor
from actors.tell import tell_quietly
from actors.timers import PendingTick, Tick, Timers
from domain.models import Account, Probe, ProbeOutcome, StreamInfo
from domain.priority import CheckMemory

__all__ = ["Coordinator", "CoordinatorSettings", "CycleBusyError", "Scorer"]

logger = structlog.get_logger(__name__)


_ENDED_PER_TURN = 64
"""Checks ended a coordinator turn settles at most (the rest wait for its next turn)."""


def _no_score(_info: StreamInfo) -> float:
    return 0.0


class Coordinator(SupervisedActor, LoopActor):
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

    actor_name = "coordinator"

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
        super().__init__(supervisor)
        self._viewers = viewers
        self._learning = learning
        if learning is None:
            settings = replace(settings, learn_providers=False)
        self._observer = observer or CheckObserver()
        self._settings = settings
        self._listeners = list(listeners)
        self._own_timers = timers is None
        self._timers = timers or Timers()
        self._wake = PendingTick(self._timers)
        self._checkers = Checkers(self.actor_ref, probe, settings)
        self._dispatch = Dispatch(settings, time.monotonic, history, self._observer)
        self._roster: Roster[pykka.ActorRef[Any]] = Roster(settings.stagger_delay)
        self._cycles = Cycles(
            self._announce,
            scorer or _no_score,
            memory or CheckMemory(),
            settings.stable_every,
            time.monotonic,
            utc_now,
            global_limit=settings.global_limit,
        )

    # --- life cycle ---------------------------------------------------------------

    def wind_down(self, error: BaseException | None) -> None:
        """Kill running checks, stop account actors and timers; no cycle is left hanging.

        After a crash (a bug) every open job gets an error result naming it.
        """
        reason = "coordinator_stopped" if error is None else f"coordinator_failed: {error!r}"
        self._fail_open_work(ProbeOutcome(kind="error", reason=reason))
        self._wake.cancel()
        self._checkers.stop()
        for ref in self._roster.actors():
            ref.stop(block=False)
        if self._own_timers:
            self._timers.stop()

    def _fail_open_work(self, outcome: ProbeOutcome) -> None:
        """End the running cycle and any cycle still in the mailbox with ``error`` results.

        Without this a caller waiting on a cycle's ``done`` would wait for ever:
        pykka drops the told messages of a dead actor.
        """
        self._cycles.fail_open(outcome)
        for message in self.take_all_of(CheckCycle, AbortCycle):
            if isinstance(message, CheckCycle):
                self._cycles.fail_unstarted(message, outcome)
            else:
                resolve(message.done, None)

    # --- messages -----------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Feed one message into the dispatch and carry out what it decides."""
        todo: list[actions.Action] = []
        if self._decide_keeping(message, todo):
            self._perform(todo)
            return None
        match message:
            case CheckCycle():
                self._on_cycle(message)
            case SetAccounts(accounts=accounts):
                self._on_set_accounts(accounts)
            case AbortCycle():
                self._on_abort(message)
            case LoginsLearned(account_id=account_id, logins=logins):
                if self._learning is not None:
                    self._learning = self._learning.updated(account_id, logins)
            case Subscribe(listener=listener):
                if listener not in self._listeners:
                    self._listeners.append(listener)
            case Batch(messages=messages):  # an account's answers to one batch
                self._on_batch(messages)
            case GetStatus():
                return self._status()
            case Idle():
                self._cycles.announce_begun()
            case _:
                return super().on_receive(message)
        return None

    def _decide(self, message: Any, todo: list[actions.Action]) -> bool:
        """Add what the dispatch decides on a lease, check or timer event to ``todo``;
        False (nothing added) for other mail."""
        dispatch = self._dispatch
        match message:
            case LeaseGranted(request_id=request_id, lease=lease):
                todo.extend(dispatch.granted(request_id, lease))
            case LeaseDenied(request_id=request_id, account_id=account_id, reason=reason):
                self._observer.lease_denied(account_id, reason)
                todo.extend(dispatch.denied(request_id, reason))
            case RoomChanged(account_id=account_id, change=change, short=short):
                todo.extend(dispatch.room_changed(account_id, change, short))
            case CheckFinished():
                self._checks_finished(message, todo)
            case Preempt(lease_ids=lease_ids):
                todo.extend(dispatch.preempt(lease_ids))
            case Tick():
                if self._wake.fired(message):
                    todo.extend(dispatch.tick())
            case AccountFailed(account_id=account_id):
                todo.extend(dispatch.account_lost(account_id, "account_actor_failed"))
            case _:
                return False
        return True

    def _decide_keeping(self, message: Any, todo: list[actions.Action]) -> bool:
        """``_decide``; after a fault, what ``todo`` holds by then is carried out first
        (the checks settled and the answers decided before it keep their results)."""
        try:
            return self._decide(message, todo)
        except Exception:
            self._perform(todo)
            raise

    def _checks_finished(self, first: CheckFinished, todo: list[actions.Action]) -> None:
        """``first`` and the checks that ended after it, as long as their reports come
        next in the mailbox (up to ``_ENDED_PER_TURN``): settled in one turn, their
        releases and next requests go to each account as one message."""
        ended: CheckFinished | None = first
        settled = 0
        while ended is not None:
            self._checkers.ended(ended.lease_id)
            todo.extend(
                self._dispatch.check_finished(
                    ended.lease_id, ended.outcome, ended.started_at, ended.finished_at
                )
            )
            settled += 1
            ended = self.take_next_if(CheckFinished) if settled < _ENDED_PER_TURN else None

    def _on_batch(self, messages: tuple[Any, ...]) -> None:
        """An account's answers, in order; what the dispatch decides on them is carried
        out once (the next requests to each account as one message)."""
        todo: list[actions.Action] = []
        for each in messages:
            if not self._decide_keeping(each, todo):
                self._perform(todo)
                todo = []
                self.on_receive(each)
        self._perform(todo)

    def _on_set_accounts(self, accounts: Iterable[Account]) -> None:
        roster, dispatch = self._roster, self._dispatch
        plan = roster.plan(accounts, dispatch.can_restart)
        for change in plan.changes:
            account = change.account
            if change.actor is None:
                ref = AccountActor.start(
                    account,
                    self.actor_ref,
                    self._timers,
                    change.stagger,
                    self._viewers,
                    learning=self._learning,
                )
                roster.add(account, ref)
                self._perform(dispatch.set_account(account.id, capacity(account), fresh=True))
            else:
                tell_quietly(change.actor, LimitsChanged(account, change.stagger))
                self._perform(dispatch.set_account(account.id, capacity(account)))
        for account_id in plan.retired:
            self._perform(dispatch.retire_account(account_id))

    def _on_cycle(self, message: CheckCycle) -> None:
        cycles = self._cycles
        if cycles.failing is not None:
            cycles.fail_unstarted(message, cycles.failing)
        elif cycles.running is not None:
            refused = cycles.refuse(message)
            if message.requester is not None:
                tell_quietly(message.requester, refused)
        else:
            jobs = cycles.begin(message, self._roster.limits())
            self._perform(self._dispatch.start(jobs, cycles.rank))
            self.tell_when_idle()  # its accounts' log line and CycleStarted: once these are out

    def _on_abort(self, message: AbortCycle) -> None:
        cycle = self._cycles.abort(message)
        if cycle is None:
            return
        log = logger.error if message.error else logger.warning
        log("cycle_aborting", cycle_id=cycle.cycle_id, reason=message.reason)
        self._perform(self._dispatch.abort(message.reason, error=message.error))

    def _status(self) -> dict[str, Any]:
        dispatch = self._dispatch
        return {
            "cycle": self._cycles.status(aborting=dispatch.draining is not None),
            "last_cycle": self._cycles.last,
            "global_limit": self._settings.global_limit,
            **dispatch.counts(),
            "accounts": self._roster.status(dispatch.account_status),
            "checks": dispatch.checks(),
        }

    # --- carrying out -------------------------------------------------------------

    def _perform(self, todo: Iterable[actions.Action]) -> None:
        """Carry out the dispatch's actions in the :class:`Outbox` order, then end
        the cycle if it is complete."""
        outbox = Outbox(todo)
        while (step := outbox.next()) is not None:
            if isinstance(step, tuple):
                outbox.add(self._post(step))
            else:
                self._carry_out(step)
        for finish in outbox.finished:
            self._cycles.record(finish)
        # A max_wait expiry is not an abort: every stream has its result (once exits 0).
        dispatch = self._dispatch
        self._cycles.end(aborted=dispatch.draining is not None and not dispatch.wait_expired)

    def _post(self, letters: tuple[Letter, ...]) -> list[actions.Action]:
        """Tell each account its letter; returns what the dispatch decides for an
        account whose actor turns out gone."""
        more: list[actions.Action] = []
        for letter in letters:
            ref = self._roster.get(letter.account_id)
            delivered = ref is not None and tell_quietly(ref, bundle(letter.messages))
            if not delivered and letter.asks:
                more.extend(self._dispatch.account_lost(letter.account_id, "account_actor_dead"))
        return more

    def _carry_out(self, action: actions.Action) -> None:
        """One action (not a lease message: see ``_post``)."""
        match action:
            case actions.StartCheck(job=job, lease=lease, others_running=others):
                self._checkers.start(job, lease, others)
            case actions.CancelCheck(lease_id=lease_id, reason=reason):
                self._checkers.cancel(lease_id, reason)
            case actions.AbandonCheck(lease_id=lease_id):
                self._checkers.cancel(lease_id, "unresponsive")
                self._checkers.ended(lease_id)
            case actions.WakeAt(at=at):
                self._wake.set(at - time.monotonic(), self.actor_ref)
            case actions.DropAccount(account_id=account_id):
                ref = self._roster.drop(account_id)
                if ref is not None:
                    ref.stop(block=False)

    def _announce(self, message: CycleStarted | ResultReady | CycleFinished) -> None:
        for listener in self._listeners:
            tell_quietly(listener, message)
