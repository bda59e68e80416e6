"""The source ports, wrapped so the dashboard hears what happened through them.

- :class:`ObservedInventory`: a failed read of the inventory (a cycle that could
  not start) is told to the monitor, then raised as before.
- :class:`MeteredWriter`: every write-back request is counted by result, and the
  reorder's counts are told to the monitor.

They change nothing else: the same calls, the same answers, the same errors.
"""

from __future__ import annotations

from typing import Any

import pykka

from actors.tell import tell_quietly
from adapters.sources import DispatcharrWriter, NullWriter
from app.metrics import Metrics
from app.monitor import ReorderCounts, SourceFailed
from domain.models import CheckResult, Inventory
from domain.ports import InventorySource, Reordered, ResultWriter


class ObservedInventory:
    """An :class:`~domain.ports.InventorySource` whose failures the monitor hears of."""

    def __init__(self, source: InventorySource, monitor: pykka.ActorRef[Any]) -> None:
        self._source = source
        self._monitor = monitor

    def load(self) -> Inventory:
        """Read the inventory; a failure is told to the monitor and raised."""
        try:
            return self._source.load()
        except Exception as exc:
            tell_quietly(self._monitor, SourceFailed(str(exc) or repr(exc)))
            raise


class MeteredWriter:
    """A :class:`~domain.ports.ResultWriter` whose requests are counted.

    Nothing is counted for the file source's :class:`~adapters.sources.NullWriter`
    (it sends nothing); in a dry run a stats write counts as ``dry_run``.
    """

    def __init__(
        self,
        writer: ResultWriter,
        metrics: Metrics,
        monitor: pykka.ActorRef[Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> None:
        self._writer = writer
        self._metrics = metrics
        self._monitor = monitor
        self._counted = not isinstance(writer, NullWriter)
        self._ok = "dry_run" if dry_run else "ok"
        # A writer that queues its writes (Dispatcharr's) says how each ended.
        self._queued = isinstance(writer, DispatcharrWriter)
        if isinstance(writer, DispatcharrWriter):
            writer.set_observer(self._stats_ended)

    def write_result(self, result: CheckResult) -> None:
        """Write one stream's stats; counted as ``ok`` or ``failed``."""
        try:
            self._writer.write_result(result)
        except Exception:
            self._count("stats", "failed")
            raise
        if not self._queued and result.status != "cancelled":  # nothing sent if cancelled
            self._count("stats", self._ok)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for the wrapped writer's queued writes."""
        return self._writer.flush(timeout)

    def _stats_ended(self, written: bool) -> None:
        self._count("stats", self._ok if written else "failed")

    def reorder(self, inventory: Inventory, results: tuple[CheckResult, ...]) -> dict[str, int]:
        """Reorder the channels; each channel counted by its outcome."""
        try:
            counts = self._writer.reorder(inventory, results)
        except Exception:
            self._count("reorder", "failed")
            if self._monitor is not None:  # else the page says "being written" for ever
                tell_quietly(self._monitor, ReorderCounts(inventory, {"error": 1}))
            raise
        for outcome, count in counts.items():
            if outcome != "disabled":
                self._count("reorder", outcome, count)
        if self._monitor is not None:
            done = counts if isinstance(counts, Reordered) else Reordered(counts)
            told = ReorderCounts(inventory, dict(counts), done.channels, done.orders)
            tell_quietly(self._monitor, told)
        return counts

    def _count(self, kind: str, result: str, count: int = 1) -> None:
        if self._counted:
            self._metrics.writeback_request(kind, result, count)
