"""``Cycles``: the coordinator's cycles over time, as a plain class (no threads).

One :class:`~actors.cycle.Cycle` runs at a time. This keeps it, plans its jobs
(their queue priority, and the stable streams not due this cycle), turns each
job's final outcome into results, remembers them (:class:`CheckMemory`, read
by the next cycle's plan), ends the cycle when its last job is done and
answers whoever waits for that: the ``CheckCycle``'s ``done`` and every
``AbortCycle``'s. It also keeps the last cycle's summary and whether cycles
fail at once (an actor the daemon needs has died). Listeners are told through
the injected ``announce``.

A cycle's start is logged at once (``cycle_started``), but its size per
account (``cycle_accounts``) and ``CycleStarted`` come from
:meth:`Cycles.announce_begun`, which the coordinator calls once the first
checks are asked for, so that they do not hold those up. Whatever comes next
of the cycle (a result, its end) announces it first if that has not happened
yet, so the listeners always hear ``CycleStarted`` first.
"""

from __future__ import annotations

import queue
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pykka
import structlog

from actors.actions import Finish
from actors.cycle import Cycle, Scorer, failed_unstarted, summary
from actors.messages import (
    AbortCycle,
    CheckCycle,
    CycleFinished,
    CycleRefused,
    CycleStarted,
    Job,
    ResultReady,
)
from domain.models import ProbeOutcome
from domain.priority import CheckMemory

logger = structlog.get_logger(__name__)

MANY_AT_ONCE = 50
"""With no global limit, more checks than this at once get a warning: each is an
ffmpeg process and a stream's bandwidth (1-8 Mbit/s), so a home machine and its
line run short long before an unlimited provider does, and starved checks read
working streams as stalled."""

Announce = Callable[[CycleStarted | ResultReady | CycleFinished], None]
"""Tells every listener one message."""


class CycleBusyError(RuntimeError):
    """A cycle was started while another one is still running."""


def resolve(
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


def plan(cycle_id: int, jobs: Iterable[Job], memory: CheckMemory, stable_every: int) -> list[Job]:
    """The cycle's jobs less the stable ones not due (``stable_every``).

    It counts the cycle in ``memory`` (a stream's cycles unchecked grow by one),
    so that :meth:`Cycles.rank` ranks the jobs for this cycle.
    """
    memory.next_cycle()
    if stable_every <= 1:  # every job is due: no history read
        return list(jobs)
    planned: list[Job] = []
    skipped = 0
    for job in jobs:
        if not memory.due(job.stream_ids, stable_every, marked=job.marked):
            skipped += len(job.stream_ids)
            continue
        planned.append(job)
    if skipped:
        logger.info(
            "cycle_stable_skipped",
            cycle_id=cycle_id,
            streams=skipped,
            stable_every=stable_every,
            hint="healthy and unchanged for a while: checked every stable_every cycles",
        )
    return planned


class Cycles:
    """The running cycle, who waits for its end, and what the last one was.

    Args:
        announce: tells the listeners ``CycleStarted``, ``ResultReady`` and ``CycleFinished``.
        scorer: quality score of a stream that played.
        memory: each stream's recent checks; the plan reads them, results add to them.
        stable_every: ``check.stable_every``.
        clock: monotonic seconds, for a cycle's duration.
        wall: the current time as ISO 8601 UTC, for the timestamps.
        global_limit: checks at once over all accounts (0 = unlimited), for the
            cycle's log line and the warning of :data:`MANY_AT_ONCE`.
    """

    def __init__(
        self,
        announce: Announce,
        scorer: Scorer,
        memory: CheckMemory,
        stable_every: int,
        clock: Callable[[], float],
        wall: Callable[[], str],
        *,
        global_limit: int = 0,
    ) -> None:
        self._announce = announce
        self._global_limit = global_limit
        self._warned_at_once = 0
        self._scorer = scorer
        self._memory = memory
        self._stable_every = stable_every
        self._clock = clock
        self._wall = wall
        self._running: Cycle | None = None
        self._done: pykka.Future[CycleFinished] | None = None
        self._abort_waiters: list[pykka.Future[CycleFinished | None]] = []
        self._last: dict[str, Any] | None = None
        self._unannounced: tuple[Cycle, Mapping[int, int]] | None = None
        """The cycle begun and not yet announced, with the limits for its log line."""
        self.failing: ProbeOutcome | None = None
        """Set by an error abort (an actor died): later cycles fail at once."""

    @property
    def running(self) -> Cycle | None:
        """The cycle that runs now, if one does."""
        return self._running

    @property
    def last(self) -> dict[str, Any] | None:
        """The last finished cycle, as the status page shows it."""
        return self._last

    def status(self, *, aborting: bool) -> dict[str, Any] | None:
        """The running cycle for the status page, or ``None``."""
        cycle = self._running
        return None if cycle is None else cycle.status(aborting=aborting)

    def begin(self, message: CheckCycle, limits: Mapping[int, int]) -> list[Job]:
        """Start the cycle (none may be running); the jobs for the dispatch (each
        job's queue priority is :meth:`rank`).

        Args:
            message: the cycle asked for.
            limits: each account's limit (0 = unlimited), for the log.
        """
        assert self._running is None, "a cycle is running"
        jobs = plan(message.cycle_id, message.jobs, self._memory, self._stable_every)
        cycle = Cycle(message.cycle_id, jobs, self._scorer, self._clock, self._wall)
        self._running = cycle
        self._done = message.done
        self._unannounced = (cycle, limits)
        cycle.log_started()
        return jobs

    def announce_begun(self) -> None:
        """Log the cycle's accounts and tell the listeners ``CycleStarted``, unless done."""
        if self._unannounced is None:
            return
        cycle, limits = self._unannounced
        self._unannounced = None
        jobs = Counter(job.account_id for job in cycle.open_jobs())
        cycle.log_accounts(limits, most_at_once(jobs, limits, self._global_limit))
        found = unbounded(jobs, limits, self._global_limit)
        if found is not None and found[0] > self._warned_at_once:
            at_once, unlimited = found
            self._warned_at_once = at_once  # said again only if it grows
            logger.warning(
                "checks_unbounded",
                cycle_id=cycle.cycle_id,
                most_at_once=at_once,
                unlimited_accounts=unlimited,
                hint="concurrent_streams.global_limit = 0: every check the accounts allow "
                "runs at once, each an ffmpeg process and a stream's bandwidth; "
                "set a global_limit (the default is 10)",
            )
        self._announce(CycleStarted(cycle.cycle_id, cycle.streams, cycle.started_at))

    def rank(self, job: Job) -> tuple[int, int]:
        """A job's place in its account's queue in the cycle begun (``Job.priority``):
        marked channels, never checked, failed, the rest; the longest unchecked first."""
        return self._memory.priority(job.stream_ids, marked=job.marked)

    def refuse(self, message: CheckCycle) -> CycleRefused:
        """A cycle asked for while one runs: its ``done`` fails with :class:`CycleBusyError`;
        what to tell its requester."""
        self.announce_begun()
        running = None if self._running is None else self._running.cycle_id
        logger.warning("cycle_overlap_skipped", cycle_id=message.cycle_id, running_cycle=running)
        error = CycleBusyError("a cycle is already running")
        resolve(message.done, None, error)
        return CycleRefused(message.cycle_id, str(error))

    def fail_unstarted(self, message: CheckCycle, outcome: ProbeOutcome) -> None:
        """A cycle that will never start: its caller still gets a result for every job."""
        self.announce_begun()
        finished = failed_unstarted(message.cycle_id, message.jobs, outcome, self._wall())
        self._announce(finished)
        resolve(message.done, finished)

    def record(self, finish: Finish) -> None:
        """A job's final outcome: its results are remembered and announced."""
        cycle = self._running
        if cycle is None:
            return
        self.announce_begun()
        results = cycle.record(
            finish.job, finish.outcome, finish.profile_id, finish.started_at, finish.finished_at
        )
        for result in results:
            self._memory.record(result)
            self._announce(ResultReady(cycle.cycle_id, result))

    def end(self, *, aborted: bool) -> None:
        """End the running cycle if its every job has its result, and answer who waits."""
        cycle = self._running
        if cycle is None or not cycle.complete:
            return
        self.announce_begun()
        self._running = None
        finished = cycle.finish(aborted=aborted)
        self._last = summary(finished, cycle.streams)
        self._announce(finished)
        resolve(self._done, finished)
        self._done = None  # its results are the caller's now, not kept till the next start
        for waiter in self._abort_waiters:
            resolve(waiter, finished)
        self._abort_waiters.clear()

    def abort(self, message: AbortCycle) -> Cycle | None:
        """An abort asked for: the cycle that runs, if one does (its caller is answered
        when it ends; else at once).

        With ``error`` every later cycle fails at once (:attr:`failing`).
        """
        if message.error and self.failing is None:
            self.failing = ProbeOutcome(kind="error", reason=message.reason)
        if self._running is None:
            resolve(message.done, None)
            return None
        self.announce_begun()
        if message.done is not None:
            self._abort_waiters.append(message.done)
        return self._running

    def fail_open(self, outcome: ProbeOutcome) -> None:
        """End the running cycle now, every open job with ``outcome`` (the coordinator goes).

        If that fails (the state may be what crashed), the cycle's caller still
        gets an error instead of waiting for ever.
        """
        cycle = self._running
        if cycle is None:
            return
        try:
            for job in cycle.open_jobs():
                self.record(Finish(job, outcome))
            self.end(aborted=True)
        except Exception:
            logger.exception("cycle_fail_failed", cycle_id=cycle.cycle_id)
            resolve(self._done, None, RuntimeError(outcome.reason))


def most_at_once(jobs: Mapping[int, int], limits: Mapping[int, int], global_limit: int) -> int:
    """The most checks a cycle can run at once: each account's jobs up to its limit
    (``limits``: 0 = unlimited; the jobs of an account not in it end unchecked), in
    all up to ``global_limit`` (0 = none)."""
    total = 0
    for account_id, count in jobs.items():
        limit = limits.get(account_id)
        if limit is not None:
            total += min(count, limit) if limit > 0 else count
    return min(total, global_limit) if global_limit > 0 else total


def unbounded(
    jobs: Mapping[int, int], limits: Mapping[int, int], global_limit: int
) -> tuple[int, list[int]] | None:
    """With no global limit, :func:`most_at_once` and the unlimited accounts among
    ``jobs``, when that is more than :data:`MANY_AT_ONCE`; else ``None``."""
    if global_limit > 0:
        return None
    at_once = most_at_once(jobs, limits, 0)
    if at_once <= MANY_AT_ONCE:
        return None
    return at_once, sorted(a for a in jobs if limits.get(a) == 0)
