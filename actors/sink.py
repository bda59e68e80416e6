"""``ResultSink``: the results store (SQLite) and the write-back, in one I/O actor.

Every result is committed to SQLite as it arrives, so history survives a kill
(and so is what the accounts learned of their logins, ``LoginsLearned``);
then it is written back (Dispatcharr's ``stream_stats``). When the cycle ends,
channels are ordered best first. A failure of the store or the write-back costs
that one write: it is logged and the sink goes on.
"""

from __future__ import annotations

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
from adapters.store import ResultStore, StoreError, save_learned
from domain.models import CheckResult, Inventory
from domain.ports import ResultWriter, SourceError

T = TypeVar("T")

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
    """

    actor_name = "result_sink"

    def __init__(
        self,
        store_factory: Callable[[], ResultStore | None],
        writer: ResultWriter,
        history_days: int = 0,
        supervisor: pykka.ActorRef[Any] | None = None,
    ) -> None:
        super().__init__(supervisor)
        self._store_factory = store_factory
        self._writer = writer
        self._history_days = history_days
        self._store: ResultStore | None = None
        self._db_cycles: dict[int, int] = {}
        self._inventories: dict[int, Inventory] = {}
        self.written = 0

    def start_up(self) -> None:
        """Open the store in this actor's own thread (a sink that died here silently
        would store and write back nothing: the supervisor hears of it)."""
        self._store = self._store_factory()

    def wind_down(self, error: BaseException | None) -> None:
        """Close the store; everything received was already committed."""
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
                store = self._store
                if store is not None:
                    _guarded("store_failed", lambda: save_learned(store, account_id, logins))
            case Flush():
                # The writer may queue its writes: "written" means written.
                _guarded("writeback_failed", self._writer.flush)
                return self.written
            case _:
                return super().on_receive(message)
        return None

    def _on_started(self, message: CycleStarted) -> None:
        store = self._store
        if store is not None:
            db_cycle = _guarded(
                "store_failed",
                lambda: store.start_cycle(message.started_at, message.streams, message.cycle_id),
            )
            if db_cycle is not None:
                if db_cycle != message.cycle_id:  # another process on the file took the id
                    logger.warning("cycle_id_taken", cycle_id=message.cycle_id, stored_as=db_cycle)
                self._db_cycles[message.cycle_id] = db_cycle

    def _on_result(self, message: ResultReady) -> None:
        result = message.result
        store = self._store
        db_cycle = self._db_cycles.get(message.cycle_id)
        if store is not None and db_cycle is not None:
            _guarded("store_failed", lambda: store.record(db_cycle, result), result.stream_id)
        if _guarded(
            "writeback_failed", lambda: _done(self._writer.write_result, result), result.stream_id
        ):
            self.written += 1

    def _on_finished(self, message: CycleFinished) -> None:
        results = message.results
        store = self._store
        db_cycle = self._db_cycles.pop(message.cycle_id, None)
        if store is not None and db_cycle is not None:
            alive = sum(1 for r in results if r.status == "ok")
            dead = sum(1 for r in results if r.status == "dead")
            _guarded(
                "store_failed",
                lambda: store.finish_cycle(
                    db_cycle,
                    message.finished_at,
                    alive + dead,
                    alive,
                    dead,
                    aborted=message.aborted,
                ),
            )
            if self._history_days:
                _guarded("store_failed", lambda: store.prune(self._history_days))
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
    except (StoreError, SourceError) as exc:
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
