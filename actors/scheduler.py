"""``Scheduler``: when the next cycle runs, and what it checks.

At each start it reads the inventory afresh (limits included, so a changed
``max_streams`` takes effect without a restart), hands the accounts to the
coordinator and the inventory to the listeners, then asks for the cycle. One
cycle at a time: the next start is planned only when the running cycle has
finished (the scheduler listens to the coordinator for ``CycleFinished``), from
the cron expression or ``interval`` after the previous start. Reading the
inventory blocks this actor's own thread, which only gets ticks and ``RunNow``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any, Protocol

import pykka
import structlog
from croniter import croniter

from actors.jobs import jobs_for
from actors.messages import (
    CheckCycle,
    CycleFinished,
    CycleInventory,
    CycleRefused,
    CycleStarted,
    GetStatus,
    ResultReady,
    RunNow,
    SetAccounts,
    Subscribe,
    TakeCycleId,
)
from actors.supervisor import SupervisedActor
from actors.tell import tell_quietly
from actors.timers import CallLater, PendingTick, Tick
from domain.ports import InventorySource
from domain.priority import marked_streams

logger = structlog.get_logger(__name__)


class Schedule(Protocol):
    """When cycles run: the config's ``[schedule]`` (``app.config.ScheduleSection``)."""

    @property
    def cron(self) -> str:
        """A cron expression; when set, the interval is ignored."""

    @property
    def interval(self) -> str | float:
        """The interval as written, for messages."""

    @property
    def interval_s(self) -> float:
        """The interval in seconds."""

    @property
    def run_at_start(self) -> bool:
        """Run a cycle as soon as the scheduler starts."""


def next_delay(cron: str, now: datetime) -> float:
    """Seconds from ``now`` to the next fire time of ``cron`` (strictly after ``now``).

    Args:
        cron: a cron expression (5 fields, as croniter reads it).
        now: the current time; naive means local time (the delay then follows
            the local clock through DST changes), aware is taken as it is.

    Returns:
        The delay in seconds, never negative.

    Raises:
        ValueError: ``cron`` is not a valid cron expression.
    """
    if not croniter.is_valid(cron):
        message = f"not a valid cron expression: {cron!r}"
        raise ValueError(message)
    fire: datetime = croniter(cron, now).get_next(datetime)
    if now.tzinfo is None:
        delay = fire.timestamp() - now.timestamp()
    else:
        delay = (fire - now).total_seconds()
    return max(0.0, delay)


def _local_now() -> datetime:
    return datetime.now()


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.isoformat(timespec="seconds")


class Scheduler(SupervisedActor):
    """Starts check cycles on the schedule, or at once on ``RunNow``; never two at once.

    It subscribes itself to the coordinator when it starts, so it hears
    ``CycleFinished`` (a second ``Subscribe`` from the app is harmless).

    Messages: ``RunNow`` (start now, or log ``cycle_skipped_overlap`` when a
    cycle runs), ``CycleFinished`` (plan the next start), ``GetStatus``
    (answers a dict: the running cycle, the next start, the last source error).

    Args:
        coordinator: gets ``SetAccounts`` and ``CheckCycle``.
        source: where the inventory is read, afresh for each cycle.
        timers: the shared timer thread.
        schedule: ``[schedule]``: ``cron``, or else ``interval``, and ``run_at_start``.
        listeners: told ``CycleInventory`` before each cycle (the result sink).
        clock: the local wall clock, for cron and the logged start times.
        first_cycle_id: the id of the first cycle; later ones count up.
        failure_retry: seconds before a failed source read is tried again (doubling).
        supervisor: told ``ActorFailed`` if the scheduler crashes.
        priority_channels: channels (ids, names, UUIDs) whose jobs are marked to
            go first (``check.priority_channels``).
        monotonic: monotonic seconds, which ``interval`` counts in (a test's fake
            clock, with ``timers`` on the same clock).

    Raises:
        ValueError: the cron expression or the interval is not usable.
    """

    actor_name = "scheduler"

    def __init__(
        self,
        coordinator: pykka.ActorRef[Any],
        source: InventorySource,
        timers: CallLater,
        schedule: Schedule,
        listeners: tuple[pykka.ActorRef[Any], ...] = (),
        clock: Callable[[], datetime] | None = None,
        first_cycle_id: int = 1,
        failure_retry: float = 60.0,
        supervisor: pykka.ActorRef[Any] | None = None,
        priority_channels: Collection[int | str] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(supervisor)
        self._priority_channels = tuple(priority_channels)
        self._cron = schedule.cron.strip()
        self._interval = 0.0
        if self._cron:
            next_delay(self._cron, datetime.now())  # fail fast on a bad expression
        else:
            self._interval = schedule.interval_s
            if self._interval <= 0:
                message = f"schedule interval must be positive, got {schedule.interval!r}"
                raise ValueError(message)
        self._coordinator = coordinator
        self._source = source
        self._run_at_start = schedule.run_at_start
        self._listeners = listeners
        self._clock = clock or _local_now
        self._cycle_ids = itertools.count(first_cycle_id)
        self._running: int | None = None
        self._monotonic = monotonic
        self._last_start = monotonic()
        """Monotonic time of the last start attempt: the interval counts from it."""
        self._tick = PendingTick(timers)
        self._next_at: str | None = None
        self._last_error: str | None = None
        self._cycles_started = 0
        self._failure_retry = failure_retry
        self._failures = 0
        """Source failures in a row: the retry delay doubles with each one."""
        self._refused = False
        """The last start was refused (another cycle ran): start when that one ends."""

    # --- life cycle ---------------------------------------------------------------

    def start_up(self) -> None:
        """Listen to the coordinator, then start a cycle or plan the first one."""
        tell_quietly(self._coordinator, Subscribe(self.actor_ref))
        if self._run_at_start:
            self._start_cycle("start")
        else:
            self._last_start = self._monotonic()
            self._plan_next()

    def wind_down(self, error: BaseException | None) -> None:
        """Drop the planned start (a running cycle is the coordinator's to abort)."""
        self._tick.cancel()

    def on_receive(self, message: Any) -> Any:
        """Dispatch one message; only starting a cycle blocks (reading the inventory)."""
        match message:
            case Tick():
                if self._tick.fired(message):
                    self._start_cycle("schedule")
            case RunNow():
                self._start_cycle("run_now")
            case TakeCycleId():
                return next(self._cycle_ids)
            case CycleFinished():
                self._on_finished(message)
            case CycleRefused():
                self._on_refused(message)
            case CycleStarted() | ResultReady():
                pass  # listener traffic we do not need
            case GetStatus():
                return self._status()
            case _:
                return super().on_receive(message)
        return None

    # --- cycles -------------------------------------------------------------------

    def _start_cycle(self, reason: str) -> None:
        if self._running is not None:
            logger.warning("cycle_skipped_overlap", running_cycle_id=self._running, reason=reason)
            return
        self._tick.cancel()
        self._next_at = None
        self._refused = False
        self._last_start = self._monotonic()
        try:
            inventory = self._source.load()
        except Exception as exc:  # noqa: BLE001 - the daemon never dies of a source failure
            self._last_error = str(exc) or repr(exc)
            logger.error("cycle_source_failed", error=self._last_error, reason=reason)
            self._failures += 1
            self._plan_next()
            return
        self._last_error = None
        self._failures = 0
        cycle_id = next(self._cycle_ids)
        self._running = cycle_id
        self._cycles_started += 1
        jobs = jobs_for(inventory.streams, marked_streams(inventory, self._priority_channels))
        logger.info(
            "cycle_triggered",
            cycle_id=cycle_id,
            reason=reason,
            accounts=len(inventory.accounts),
            streams=len(inventory.streams),
            jobs=len(jobs),
        )
        tell_quietly(self._coordinator, SetAccounts(inventory.accounts))
        for listener in self._listeners:
            tell_quietly(listener, CycleInventory(cycle_id, inventory))
        # A finished cycle reaches us as a listener (CycleFinished); a refused
        # one (another cycle runs) as CycleRefused, or we would wait for it.
        tell_quietly(self._coordinator, CheckCycle(cycle_id, jobs, requester=self.actor_ref))

    def _on_finished(self, message: CycleFinished) -> None:
        if message.cycle_id != self._running:
            if self._refused and self._running is None:
                # The cycle that kept ours out (a channel check) is over: ours
                # runs now, not a whole interval (or a cron day) later.
                self._refused = False
                self._start_cycle("after_refused")
            return  # not ours (or heard twice)
        self._running = None
        self._plan_next()

    def _on_refused(self, message: CycleRefused) -> None:
        if message.cycle_id != self._running:
            return
        self._running = None
        self._refused = True
        logger.warning("cycle_refused", cycle_id=message.cycle_id, error=message.reason)
        self._plan_next()

    # --- planning -----------------------------------------------------------------

    def _plan_next(self) -> None:
        """Plan the next start: cron's next fire time, or ``interval`` after the last start."""
        if self.actor_stopped.is_set():
            return
        now = self._clock()
        if self._cron:
            delay = next_delay(self._cron, now)
        else:
            delay = max(0.0, self._last_start + self._interval - self._monotonic())
        if self._failures:
            # The source failed (Dispatcharr down?): try again sooner than the
            # schedule would, backing off, never later than the schedule.
            retry = self._failure_retry * 2 ** (self._failures - 1)
            delay = min(delay, retry)
        self._tick.set(delay, self.actor_ref)
        self._next_at = _iso(now + timedelta(seconds=delay))
        logger.info("cycle_scheduled", next_start=self._next_at, delay_s=round(delay, 3))

    def _status(self) -> dict[str, Any]:
        return {
            "running_cycle_id": self._running,
            "next_start": self._next_at,
            "cycles_started": self._cycles_started,
            "last_source_error": self._last_error,
            "cron": self._cron or None,
            "interval_s": None if self._cron else self._interval,
        }
