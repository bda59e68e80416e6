"""``ResultSink``: the results store (SQLite) and the write-back, in one I/O actor.

Every result is committed to SQLite as it arrives, so history survives a kill
(and so is what the accounts learned of their logins, ``LoginsLearned``);
then it is written back (Dispatcharr's ``stream_stats``). When the cycle ends,
channels are ordered best first. A failure of the store or the write-back costs
that one write: it is logged and the sink goes on. A store write the
database refuses is not lost: it waits, in order, and is tried again
(:class:`~adapters.pending_writes.PendingWrites`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pykka
import structlog

from actors.messages import (
    CycleFinished,
    CycleInventory,
    CycleStarted,
    Flush,
    LoginsLearned,
    ResultReady,
)
from actors.supervisor import SupervisedActor
from actors.timers import CallLater, PendingTick, Tick
from adapters.pending_writes import RETRY_EVERY_S, PendingWrites
from adapters.store import ResultStore, save_learned
from domain.models import CheckResult, Inventory
from domain.ports import ResultWriter, SourceError

T = TypeVar("T")

FINAL_TRY_S = 0.5
"""Seconds the last try at stop waits for another process's lock on the file."""

logger = structlog.get_logger(__name__)


class ResultSink(SupervisedActor):
    """Stores and writes back results; orders channels after each cycle.

    Args:
        store_factory: opens the results store (called in the actor's thread,
            which then owns the SQLite connection).
        writer: the write-back (Dispatcharr or nothing).
        history_days: rows older than this are pruned after each cycle (0 = keep).
        supervisor: told ``ActorFailed`` if the sink crashes (also while opening
            the store), since results then go nowhere.
        retry_every: seconds between two tries of the writes the store refused.
        clock: monotonic seconds (for ``retry_every``).
        timers: wake the sink for those tries when nothing else comes (none: only
            the next message tries them, and the stop).
    """

    actor_name = "result_sink"

    def __init__(
        self,
        store_factory: Callable[[], ResultStore | None],
        writer: ResultWriter,
        history_days: int = 0,
        supervisor: pykka.ActorRef[Any] | None = None,
        retry_every: float = RETRY_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        timers: CallLater | None = None,
    ) -> None:
        super().__init__(supervisor)
        self._pending = PendingWrites(clock, retry_every)
        self._retry = PendingTick(timers) if timers is not None else None
        """Wakes the sink to try the refused writes again when no message comes."""
        self._store_factory = store_factory
        self._writer = writer
        self._history_days = history_days
        self._store: ResultStore | None = None
        self._db_cycles: dict[int, int] = {}
        self._unstored: set[int] = set()
        """Cycles whose start row was given up: their checks cannot be stored."""
        self._inventories: dict[int, Inventory] = {}
        self.written = 0

    def start_up(self) -> None:
        """Open the store in this actor's own thread (a sink that died here silently
        would store and write back nothing: the supervisor hears of it)."""
        self._store = self._store_factory()

    def wind_down(self, error: BaseException | None) -> None:
        """Close the store; what the store refused is tried once more first, briefly
        (the daemon's stop does not wait long)."""
        if self._retry is not None:
            self._retry.cancel()
        pending, store = self._pending, self._store
        if pending.waiting and store is not None:
            logger.warning("store_writes_waiting", writes=pending.waiting)
            store.set_busy_timeout(FINAL_TRY_S)
            if not pending.retry(store, now=True):
                logger.error("store_writes_lost", writes=pending.waiting)
        self._close()

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def on_receive(self, message: Any) -> Any:
        """Handle one event of the coordinator or the scheduler."""
        match message:
            case CycleInventory(cycle_id=cycle_id, inventory=inventory):
                self._inventories[cycle_id] = inventory
            case CycleStarted():
                self._on_started(message)
            case ResultReady():
                self._on_result(message)
            case CycleFinished():
                self._on_finished(message)
            case LoginsLearned(account_id=account_id, logins=logins):
                self._store_write(
                    f"learned logins of account {account_id}",
                    lambda store: save_learned(store, account_id, logins),
                )
            case Tick():
                if self._retry is not None and self._retry.fired(message):
                    self._pending.retry(self._store)
                    self._arm_retry()
            case Flush():
                # The writer may queue its writes: "written" means written.
                _guarded("writeback_failed", self._writer.flush)
                return self.written
            case _:
                return super().on_receive(message)
        return None

    def _store_write(
        self, what: str, write: Callable[[ResultStore], object], stream_id: int | None = None
    ) -> None:
        self._pending.add(self._store, what, write, stream_id)
        self._arm_retry()

    def _arm_retry(self) -> None:
        retry = self._retry
        if retry is not None and self._pending.waiting and not retry.pending:
            retry.set(self._pending.retry_in(), self.actor_ref)

    def _on_started(self, message: CycleStarted) -> None:
        def start(store: ResultStore) -> None:
            db_cycle = store.start_cycle(message.started_at, message.streams, message.cycle_id)
            if db_cycle != message.cycle_id:  # another process on the file took the id
                logger.warning("cycle_id_taken", cycle_id=message.cycle_id, stored_as=db_cycle)
            self._db_cycles[message.cycle_id] = db_cycle

        self._store_write(f"start of cycle {message.cycle_id}", start)

    def _on_result(self, message: ResultReady) -> None:
        result = message.result
        cycle_id = message.cycle_id

        def record(store: ResultStore) -> None:
            db_cycle = self._db_cycles.get(cycle_id)
            if db_cycle is not None:
                store.record(db_cycle, result)
            elif cycle_id not in self._unstored:  # its start could not be stored
                self._unstored.add(cycle_id)
                logger.error("cycle_results_not_stored", cycle_id=cycle_id)

        self._store_write(f"check of cycle {cycle_id}", record, result.stream_id)
        if _guarded(
            "writeback_failed", lambda: _done(self._writer.write_result, result), result.stream_id
        ):
            self.written += 1

    def _on_finished(self, message: CycleFinished) -> None:
        results = message.results
        alive = sum(1 for r in results if r.status == "ok")
        dead = sum(1 for r in results if r.status == "dead")

        def finish(store: ResultStore) -> None:
            db_cycle = self._db_cycles.get(message.cycle_id)
            if db_cycle is not None:
                store.finish_cycle(
                    db_cycle,
                    message.finished_at,
                    alive + dead,
                    alive,
                    dead,
                    aborted=message.aborted,
                )
            self._db_cycles.pop(message.cycle_id, None)
            self._unstored.discard(message.cycle_id)  # a months-long run keeps no ids

        self._store_write(f"end of cycle {message.cycle_id}", finish)
        days = self._history_days
        if days:
            self._store_write("prune", lambda store: store.prune(days))
        inventory = self._inventories.pop(message.cycle_id, None)
        if inventory is None or message.aborted:
            return
        counts = _guarded("reorder_failed", lambda: self._writer.reorder(inventory, results))
        if counts:
            logger.info("reorder_done", cycle_id=message.cycle_id, **counts)


def _guarded(event: str, action: Callable[[], T], stream_id: int | None = None) -> T | None:
    """Run one write and return its value, or ``None`` when it failed.

    A failure is logged and costs that write only, never the sink.
    """
    try:
        result = action()
    except SourceError as exc:
        logger.error(event, stream_id=stream_id, error=str(exc))
        return None
    except Exception:  # a bug in one write must not stop all later ones
        logger.exception(event, stream_id=stream_id)
        return None
    return result


def _done(action: Callable[[CheckResult], None], result: CheckResult) -> bool:
    """Run an action that returns nothing; True once it ran without raising."""
    action(result)
    return True
