"""The process shell: builds the actors from the config, starts and stops them in order.

Start order: timers, supervisor, result sink, viewer watcher, coordinator
(which starts the account actors; they subscribe to the watcher), scheduler.
The supervisor hears of any of the long-lived ones dying (``actors/supervisor.py``):
the running cycle fails cleanly and the daemon stops with a failure (exit 1),
for systemd to restart. The dashboard's monitor (and its webhook sender) start
before the sink, the status server last. Stop order is the reverse, in a
``finally``: the running cycle is aborted (probes killed, leases released), the
sink flushes, the alerts still queued are sent (for a few seconds at most),
then every actor stops, with ``ActorRegistry.stop_all`` as the safety net.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pykka
import structlog

from actors.account import LearningFeed, ViewerFeed
from actors.coordinator import Coordinator, CoordinatorSettings, Scorer
from actors.cycles import unbounded
from actors.jobs import jobs_for
from actors.learning import LearningSettings
from actors.messages import (
    AbortCycle,
    CheckCycle,
    CycleFinished,
    CycleInventory,
    Flush,
    GetStatus,
    SetAccounts,
    Supervise,
)
from actors.roster import shown_limit
from actors.scheduler import Scheduler
from actors.sink import ResultSink
from actors.slots import ViewerPolicy, capacity
from actors.supervisor import Supervisor
from actors.timers import Timers
from actors.viewers import ViewerWatcher
from adapters.store import ResultStore, StoreError, load_learned, read_recent_checks
from app.alerts import WebhookSender
from app.config import AccountOverride, Config
from app.dashboard import Controls, Dashboard
from app.metrics import Metrics
from app.monitor import Monitor, known_streams
from app.observed import MeteredWriter, ObservedInventory
from app.sources import Sources
from app.status import InsecureListenError, StatusServer, listen_problem
from domain.learned import LearnedLogin
from domain.models import CheckResult, Inventory, Probe, StreamInfo
from domain.ports import InventorySource
from domain.priority import STABLE_AFTER, CheckMemory, marked_streams
from domain.score import score

logger = structlog.get_logger(__name__)

_STOP_BUDGET_S = 4.0
"""Seconds :meth:`Daemon.stop` may take in all: SIGTERM ends the daemon within 5 s."""
_STOP_GRACE_S = 1.0
"""Of that, seconds given to the actors that hold neither probes nor results."""
_ALERTS_DRAIN_S = 5.0
"""Seconds a stopping daemon still spends sending the alerts it has queued (within the budget)."""


def coordinator_settings(config: Config) -> CoordinatorSettings:
    """The coordinator's view of ``[concurrent_streams]`` and ``[check]``."""
    streams = config.concurrent_streams
    check = config.check
    return CoordinatorSettings(
        global_limit=streams.global_limit if streams.enabled else 1,
        stagger_delay=streams.stagger_delay,
        check_duration=check.duration,
        check_timeout=check.timeout,
        retries=check.retries,
        retry_delay=check.retry_delay,
        busy_backoff=check.busy_backoff,
        max_requeues=check.max_requeues,
        user_agent=check.user_agent or None,
        learn_providers=config.learning.enabled,
        stable_every=check.stable_every,
        max_wait=check.max_wait,
    )


def learning_settings(config: Config) -> LearningSettings:
    """How accounts learn their logins (``[learning]``)."""
    return config.learning.settings()


def learned_logins(database: Path) -> dict[int, list[LearnedLogin]]:
    """What the accounts learned before, from the results store (read once at start).

    A missing or unreadable store just means nothing was learned yet.
    """
    if not database.exists():
        return {}
    try:
        store = ResultStore(database)
        try:
            return load_learned(store)
        finally:
            store.close()
    except StoreError as exc:
        logger.warning("learned_unreadable", database=str(database), error=str(exc))
        return {}


def viewer_policy(config: Config) -> ViewerPolicy:
    """What accounts assume while viewer counts are unknown (``[viewers]``)."""
    section = config.viewers
    return ViewerPolicy.polled_every(section.poll_interval, section.when_unknown)


def make_scorer(config: Config) -> Scorer:
    """The score function with the configured weights."""
    weights = config.score

    def scorer(info: StreamInfo) -> float:
        return score(info, weights)

    return scorer


def make_probe(config: Config) -> Probe:
    """The real ffmpeg probe (config's binary, else PATH, else imageio-ffmpeg's)."""
    from adapters.ffmpeg import DEFAULT_SETTLE, FfmpegProbe, find_ffmpeg

    return FfmpegProbe(
        find_ffmpeg(config.check.ffmpeg),
        config.check.user_agent or None,
        settle=DEFAULT_SETTLE if config.check.adaptive else None,
    )


def check_memory(database: Path, stable_every: int = 1) -> CheckMemory:
    """Each stream's recent checks, from the results store (read once at start).

    Enough cycles are read for ``stable_every``; a check's age in cycles is the
    number of cycles that started after it, plus one. A missing or unreadable
    store just means nothing is remembered.
    """
    memory = CheckMemory()
    if not database.exists():
        return memory
    cycles = STABLE_AFTER * max(1, stable_every) + 2
    try:
        recent = read_recent_checks(database, per_stream=STABLE_AFTER, cycles=cycles)
        store = ResultStore(database)
        try:
            starts = sorted(c.started_at for c in store.cycles(limit=cycles))
        finally:
            store.close()
    except StoreError as exc:
        logger.warning("history_unreadable", database=str(database), error=str(exc))
        return memory

    def cycles_ago(result: CheckResult) -> int:
        checked = result.started_at or result.finished_at or ""
        return 1 + len(starts) - bisect.bisect_right(starts, checked)

    memory.restore({sid: [(r, cycles_ago(r)) for r in results] for sid, results in recent.items()})
    return memory


def check_times(database: Path) -> dict[int, float]:
    """Seconds each stream's latest ok/dead check took, from the results store.

    A missing or unreadable store just means no history.
    """
    if not database.exists():
        return {}
    try:
        with ResultStore(database) as store:
            latest = store.latest()
    except StoreError as exc:
        logger.warning("history_unreadable", database=str(database), error=str(exc))
        return {}
    return _check_times(latest)


def _check_times(latest: Mapping[int, CheckResult]) -> dict[int, float]:
    times: dict[int, float] = {}
    for stream_id, result in latest.items():
        if result.status not in ("ok", "dead") or not result.started_at or not result.finished_at:
            continue
        try:
            started = datetime.fromisoformat(result.started_at)
            finished = datetime.fromisoformat(result.finished_at)
        except ValueError:
            continue
        seconds = (finished - started).total_seconds()
        if seconds >= 0:
            times[stream_id] = seconds
    return times


def unknown_overrides(inventory: Inventory, overrides: Mapping[int, AccountOverride]) -> list[int]:
    """The ids of ``[accounts."<id>"]`` overrides that name no account of ``inventory``."""
    known = {account.id for account in inventory.accounts}
    return sorted(set(overrides) - known)


def unbounded_checks(config: Config, inventory: Inventory) -> tuple[int, list[int]] | None:
    """What :func:`actors.cycles.unbounded` says of a cycle of ``inventory``."""
    streams = config.concurrent_streams
    if not streams.enabled:  # one check at a time
        return None
    jobs = Counter(job.account_id for job in jobs_for(inventory.streams))
    limits = {account.id: shown_limit(capacity(account)) for account in inventory.accounts}
    return unbounded(jobs, limits, streams.global_limit)


def _warn_unknown_overrides(inventory: Inventory, overrides: Mapping[int, AccountOverride]) -> None:
    unknown = unknown_overrides(inventory, overrides)
    if unknown:
        # A typo or a deleted account: the override silently doing nothing is worse.
        logger.warning("account_override_unknown", account_ids=unknown)


class WarnUnknownOverrides:
    """An inventory source that logs, at every load, the overrides that name no account.

    Args:
        source: The inventory source of the config.
        overrides: ``config.accounts``.
    """

    def __init__(self, source: InventorySource, overrides: Mapping[int, AccountOverride]) -> None:
        self._source = source
        self._overrides = overrides

    def load(self) -> Inventory:
        """The source's inventory; ``account_override_unknown`` logged when it applies."""
        inventory = self._source.load()
        _warn_unknown_overrides(inventory, self._overrides)
        return inventory


@dataclass
class _Actors:
    timers: Timers
    supervisor: pykka.ActorRef[Any]
    sink: pykka.ActorRef[Any]
    coordinator: pykka.ActorRef[Any]
    watcher: pykka.ActorRef[Any]
    monitor: pykka.ActorRef[Any]
    listeners: tuple[pykka.ActorRef[Any], ...]
    """Told of every cycle: the monitor, the sink, the extra listeners."""
    alerts: WebhookSender | None = None
    scheduler: pykka.ActorRef[Any] | None = None
    status: StatusServer | None = None


class Daemon:
    """All actors of one daemon process, wired from a config.

    Args:
        config: the validated config.
        sources: where inventory and viewers come from, where results go.
        probe: the probe (ffmpeg unless a test hands another one).
        extra_listeners: more actors told about cycles (the demo's printer).
    """

    def __init__(
        self,
        config: Config,
        sources: Sources,
        probe: Probe | None = None,
        extra_listeners: tuple[pykka.ActorRef[Any], ...] = (),
    ) -> None:
        self.config = config
        self.sources = sources
        self.probe = probe or make_probe(config)
        self._extra = extra_listeners
        self._actors: _Actors | None = None
        self._first_cycle_id = 1
        self._cycle_ids = itertools.count(1)
        self._on_failure: Callable[[str], None] | None = None
        self.failure: str | None = None
        """Why the daemon must stop: a long-lived actor died (``None`` while all is well)."""
        self.metrics = Metrics()
        """This daemon's metrics, in a registry of its own."""
        self._history: dict[int, float] | None = None

    @property
    def status_address(self) -> str | None:
        """Where the status page listens, if it does."""
        if self._actors is None or self._actors.status is None:
            return None
        return self._actors.status.address

    @property
    def monitor(self) -> pykka.ActorRef[Any]:
        """The dashboard's monitor (after :meth:`start`)."""
        assert self._actors is not None, "daemon not started"
        return self._actors.monitor

    @property
    def coordinator(self) -> pykka.ActorRef[Any]:
        """The coordinator (after :meth:`start`)."""
        assert self._actors is not None, "daemon not started"
        return self._actors.coordinator

    def open_store(self) -> None:
        """Open the results store in the calling thread, before any actor starts.

        Creates and migrates the file, marks the cycles a crash cut off as
        aborted, reads the check times of the last checks and the next cycle
        id, so a database that cannot be used stops the start here, with one
        message, instead of killing the sink later. Called by :meth:`start`
        when not called before.

        Raises:
            StoreError: The database cannot be opened or written; names the file.
        """
        if self._history is not None:
            return
        database = self.config.results.database
        with ResultStore(database) as store:
            aborted = store.abort_unfinished()
            self._history = _check_times(store.latest())
            first_cycle_id = store.next_cycle_id()
        if aborted:
            logger.warning("cycles_marked_aborted", cycle_ids=aborted, database=str(database))
        # Cycle ids are the database's, in logs and on the status page alike.
        self._first_cycle_id = first_cycle_id
        self._cycle_ids = itertools.count(first_cycle_id)

    def start(
        self,
        *,
        scheduled: bool,
        on_failure: Callable[[str], None] | None = None,
        status: bool = True,
    ) -> None:
        """Start the actors; with ``scheduled`` cycles run on the config's schedule.

        Args:
            scheduled: run cycles on the config's schedule (``run``), or only
                through :meth:`run_cycle` (``once``).
            on_failure: called once (on another thread, must not block) when a
                long-lived actor died; the running cycle has been failed, and the
                caller should :meth:`stop` and exit non-zero (:attr:`failure` says why).
            status: serve the status page when ``status.listen`` is set
                (``once`` does only when asked).

        Raises:
            StoreError: The results database cannot be used (before any actor starts).
        """
        self.open_store()
        assert self._history is not None
        config = self.config
        token = config.status.token()
        problem = listen_problem(config.status, token)
        if problem is not None:
            raise InsecureListenError(problem)
        self._on_failure = on_failure
        timers = Timers()
        supervisor = Supervisor.start(self._fatal)
        database = config.results.database
        # Read before the sink opens the store (open_store made and migrated it).
        known = known_streams(database)
        learned = learned_logins(database) if config.learning.enabled else {}
        memory = check_memory(database, config.check.stable_every)
        metrics = self.metrics
        sender = None
        if config.alerts.enabled:
            alerts = config.alerts
            sender = WebhookSender(
                alerts.webhook_url,
                timeout=alerts.timeout,
                retries=alerts.retries,
                retry_delay=alerts.retry_delay,
                count=metrics.alert,
            )
            sender.start()
        monitor = Monitor.start(metrics, known, sender.send if sender else None)
        writer = MeteredWriter(
            self.sources.writer, metrics, monitor, dry_run=config.results.dry_run
        )
        sink = ResultSink.start(
            lambda: ResultStore(database),
            writer,
            config.results.history_days,
            supervisor,
            timers=timers,
        )
        # The monitor comes first, so it hears of a cycle's end before the sink's
        # reorder answer for that cycle (see MeteredWriter).
        listeners: tuple[pykka.ActorRef[Any], ...] = (monitor, sink, *self._extra)
        watcher = ViewerWatcher.start(
            self.sources.viewers, timers, config.viewers.poll_interval, None, supervisor
        )
        coordinator = Coordinator.start(
            self.probe,
            coordinator_settings(config),
            listeners,
            make_scorer(config),
            timers,
            self._history,
            ViewerFeed(watcher, viewer_policy(config)),
            supervisor,
            observer=metrics,
            learning=LearningFeed(learning_settings(config), learned, sink)
            if config.learning.enabled
            else None,
            memory=memory,
        )
        supervisor.tell(Supervise(coordinator))
        self._actors = _Actors(
            timers, supervisor, sink, coordinator, watcher, monitor, listeners, sender
        )
        if scheduled:
            scheduler = Scheduler.start(
                coordinator,
                WarnUnknownOverrides(
                    ObservedInventory(self.sources.inventory, monitor), config.accounts
                ),
                timers,
                config.schedule,
                listeners,
                supervisor=supervisor,
                priority_channels=config.check.priority_channels,
                first_cycle_id=self._first_cycle_id,
            )
            self._actors.scheduler = scheduler
        if status and config.status.enabled:
            scheduler_ref = self._actors.scheduler
            dashboard = Dashboard(
                coordinator,
                scheduler_ref,
                monitor,
                database,
                config.status.history,
                token_required=token is not None,
            )
            controls = Controls(coordinator, scheduler_ref, monitor, (sink, *self._extra))
            try:
                self._actors.status = StatusServer(
                    config.status.host,
                    config.status.port,
                    dashboard,
                    metrics,
                    controls,
                    token=token,
                    loopback=config.status.loopback,
                )
                self._actors.status.start()
            except OSError as exc:
                logger.error("status_bind_failed", listen=config.status.listen, error=str(exc))
        logger.info("daemon_started", scheduled=scheduled, source=config.source.type)

    def _fatal(self, reason: str) -> None:
        """The supervisor's report (on its thread): remember why, and tell the caller."""
        if self.failure is None:
            self.failure = reason
        logger.error("daemon_failing", reason=reason, exit_code=1)
        if self._on_failure is not None:
            self._on_failure(reason)

    def run_cycle(
        self,
        inventory: Inventory,
        timeout: float | None = None,
        on_checked: Callable[[CycleFinished], object] | None = None,
        interrupted: threading.Event | None = None,
    ) -> CycleFinished:
        """Check ``inventory`` once and wait until every result is stored and written back.

        ``on_checked`` hears the cycle's end before the wait for the write-back
        (``once`` then has its report, whatever a hung Dispatcharr does after).
        ``interrupted`` (a signal came) set by the time the cycle is asked for
        aborts it: an abort sent before would have found no cycle to end.
        """
        actors = self._actors
        assert actors is not None, "daemon not started"
        cycle_id = next(self._cycle_ids)
        _warn_unknown_overrides(inventory, self.config.accounts)
        actors.coordinator.tell(SetAccounts(inventory.accounts))
        for listener in actors.listeners:
            listener.tell(CycleInventory(cycle_id, inventory))
        done: pykka.ThreadingFuture[CycleFinished] = pykka.ThreadingFuture()
        marked = marked_streams(inventory, self.config.check.priority_channels)
        actors.coordinator.tell(CheckCycle(cycle_id, jobs_for(inventory.streams, marked), done))
        if interrupted is not None and interrupted.is_set():
            actors.coordinator.tell(AbortCycle("signal"))
        finished = done.get(timeout=timeout)
        if on_checked is not None:
            on_checked(finished)
        try:
            actors.sink.ask(Flush(), timeout=timeout)
        except pykka.ActorDeadError:
            if self.failure is None:
                raise
            # The sink died (the supervisor has it in hand): the results are
            # still the caller's, only storing them failed.
            logger.error("results_not_stored", cycle_id=cycle_id, reason=self.failure)
        return finished

    def stop(self) -> None:
        """Abort the running cycle (probes killed, leases released), flush, stop everything.

        Takes :data:`_STOP_BUDGET_S` at most: an actor stuck in a call to a hung
        Dispatcharr (the scheduler reading the inventory, the watcher reading
        viewers, the sink writing back) is asked to stop but not waited for
        past the budget; it runs on a daemon thread, so it does not keep the
        process alive, and what it still had to do is logged as incomplete.
        """
        actors = self._actors
        if actors is None:
            return
        self._actors = None
        deadline = time.monotonic() + _STOP_BUDGET_S

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        try:
            if actors.status is not None:
                actors.status.stop()
            # No waiting for these: an actor blocked in I/O sees its stop only
            # when the call returns, and the running cycle must be aborted now.
            for ref in (actors.scheduler, actors.watcher):
                if ref is not None:
                    ref.stop(block=False)
            # Each step on its own: an actor that died must not keep the others
            # from stopping in order.
            try:
                aborted: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
                actors.coordinator.tell(AbortCycle("shutdown", aborted))
                aborted.get(timeout=left())
            except (pykka.Timeout, pykka.ActorDeadError) as exc:
                logger.warning("daemon_stop_incomplete", step="abort", error=repr(exc))
            try:
                actors.sink.ask(Flush(), timeout=left())
            except (pykka.Timeout, pykka.ActorDeadError) as exc:
                logger.warning("daemon_stop_incomplete", step="flush", error=repr(exc))
            try:
                actors.monitor.ask(GetStatus(), timeout=left())  # its alerts are queued
            except (pykka.Timeout, pykka.ActorDeadError) as exc:
                logger.warning("daemon_stop_incomplete", step="monitor", error=repr(exc))
        finally:
            if actors.alerts is not None:
                actors.alerts.stop(timeout=min(left(), _ALERTS_DRAIN_S))
            busy = _stop_and_wait((actors.coordinator, actors.sink), left())
            # The others hold no probe and no result: a short wait is enough,
            # one blocked on Dispatcharr would not answer within the budget anyway.
            others = reversed(pykka.ActorRegistry.get_all())  # last started first
            busy += _stop_and_wait(tuple(others), min(left(), _STOP_GRACE_S))
            if busy:
                logger.warning("daemon_stop_incomplete", still_busy=sorted(busy))
            actors.timers.stop()
            logger.info("daemon_stopped")


def _stop_and_wait(refs: tuple[pykka.ActorRef[Any], ...], timeout: float) -> list[str]:
    """Ask every actor in ``refs`` to stop; wait ``timeout`` in all; name those still running."""
    deadline = time.monotonic() + timeout
    stopping = [(ref, ref.stop(block=False)) for ref in refs]
    busy = []
    for ref, future in stopping:
        try:
            future.get(timeout=max(0.0, deadline - time.monotonic()))
        except pykka.Timeout:
            busy.append(ref.actor_class.__name__)
    return busy
