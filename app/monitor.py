"""``Monitor``: what the dashboard knows beyond the coordinator's status.

A listener of the coordinator and the scheduler (``CycleInventory``,
``CycleStarted``, ``ResultReady``, ``CycleFinished``), it keeps:

- the running cycle's progress per account, with an estimate of the time left
  (:class:`CycleProgress`);
- the last cycles' summaries, and the last failure of the source;
- the latest inventory (names of streams, channels and accounts for the
  dashboard) and, per channel, its order before and after the last reorder;
- which channels work (:class:`~app.alerts.ChannelHealth`), sending an alert
  when one loses its last working stream or gets one back, or a cycle fails;
- the event metrics of final results and cycles.

It only computes and tells: webhooks go out on the sender's own thread.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pykka
import structlog

from actors.messages import CycleFinished, CycleInventory, CycleStarted, GetStatus, ResultReady
from adapters.dispatcharr_source import JUDGED_STATUSES, plan_reorder
from adapters.store import StoreError, read_recent_checks
from app import alerts
from app.metrics import Metrics
from domain.models import CheckResult, Inventory
from domain.ports import ChannelOrder

logger = structlog.get_logger(__name__)

_RECENT_CYCLES = 10
_USER_STOPS = frozenset({"shutdown", "signal"})
"""Reasons of an abort that a person asked for: no alert."""
_WRITTEN = frozenset({"changed", "unchanged"})
"""Reorder outcomes after which the channel's order in the source is the planned one."""

# --- messages to the monitor (app-level, not part of the lease protocol) -----------


@dataclass(frozen=True)
class SourceFailed:
    """The inventory could not be read, so a cycle could not start."""

    error: str


@dataclass(frozen=True)
class ReorderCounts:
    """What the write-back answered for the channel reorder at a cycle's end.

    ``inventory`` is the very object the cycle was built from (messages are not
    copied), which names the cycle without the writer knowing cycle ids.
    """

    inventory: Inventory
    counts: Mapping[str, int]
    channels: Mapping[int, str] = field(default_factory=dict)
    """Each channel's outcome (``changed``, ``unchanged``, ``skipped``, ``failed``,
    ``planned``); a channel the writer did not name was not written."""
    orders: Mapping[int, ChannelOrder] = field(default_factory=dict)
    """The order the writer read and the order it left, where it read the channel."""


@dataclass(frozen=True)
class ManualCheck:
    """Cycle ``cycle_id`` is a check of one channel, started from the dashboard."""

    cycle_id: int
    channel_id: int


@dataclass(frozen=True)
class GetView:
    """Ask for a :class:`MonitorView`."""


@dataclass(frozen=True)
class MonitorView:
    """The latest inventory and the last reorder per channel (shared, never changed)."""

    inventory: Inventory | None
    reorders: Mapping[int, Mapping[str, Any]]
    """Per channel id: ``cycle_id``, ``at``, ``before``, ``after``, ``changed``,
    ``outcome``, ``written``."""
    working: Mapping[int, bool | None]
    """Per channel id: has a working stream (``None``: not known)."""
    orders: Mapping[int, Sequence[int]] = field(default_factory=dict)
    """Per channel id: its streams in the source's order as last known (the last
    full read, or what a reorder wrote since)."""


# --- the running cycle ----------------------------------------------------------


@dataclass
class _AccountProgress:
    streams: int = 0
    done: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


class CycleProgress:
    """One cycle's progress per account and the time it will still take.

    The estimate per account is its elapsed time times remaining over done:
    accounts check in parallel, so the cycle ends with the slowest, and the
    cycle's estimate is the largest. Unknown (``None``) until every account
    with streams left has finished one.

    Args:
        cycle_id: the coordinator's cycle id.
        streams: streams in the cycle.
        started_at: the cycle's start (ISO 8601).
        per_account: streams per account id, if the inventory is known.
        started: the monotonic clock at the start.
        kind: ``"full"`` or ``"channel"`` (a one-channel check from the dashboard).
    """

    def __init__(
        self,
        cycle_id: int,
        streams: int,
        started_at: str,
        per_account: Mapping[int, int],
        started: float,
        kind: str = "full",
    ) -> None:
        self.cycle_id = cycle_id
        self.streams = streams
        self.started_at = started_at
        self.started = started
        self.kind = kind
        self.accounts = {aid: _AccountProgress(streams=n) for aid, n in per_account.items()}
        self.statuses: Counter[str] = Counter()
        self.done = 0

    def add(self, result: CheckResult) -> None:
        """Count one final result."""
        self.done += 1
        self.statuses[result.status] += 1
        account = self.accounts.setdefault(result.account_id, _AccountProgress())
        account.done += 1
        account.statuses[result.status] += 1
        account.streams = max(account.streams, account.done)

    def view(self, now: float) -> dict[str, Any]:
        """Progress as JSON-safe data, with estimates in seconds."""
        elapsed = max(0.0, now - self.started)
        accounts: dict[int, dict[str, Any]] = {}
        etas: list[float | None] = []
        for account_id, account in sorted(self.accounts.items()):
            left = max(0, account.streams - account.done)
            eta: float | None
            if left == 0:
                eta = 0.0
            elif account.done == 0:
                eta = None
            else:
                eta = round(elapsed * left / account.done, 1)
            etas.append(eta)
            accounts[account_id] = {
                "streams": account.streams,
                "done": account.done,
                "alive": account.statuses["ok"],
                "dead": account.statuses["dead"],
                "errors": account.statuses["error"],
                "eta_s": eta,
            }
        overall: float | None = 0.0
        if self.done < self.streams:
            known = [e for e in etas if e is not None]
            overall = max(known) if known and len(known) == len(etas) else None
        return {
            "cycle_id": self.cycle_id,
            "kind": self.kind,
            "streams": self.streams,
            "done": self.done,
            "alive": self.statuses["ok"],
            "dead": self.statuses["dead"],
            "errors": self.statuses["error"],
            "cancelled": self.statuses["cancelled"],
            "started_at": self.started_at,
            "elapsed_s": round(elapsed, 1),
            "eta_s": overall,
            "accounts": accounts,
        }


def plan_orders(
    inventory: Inventory, results: tuple[CheckResult, ...]
) -> dict[int, dict[str, Any]]:
    """Each checked channel's order before and after the reorder rule (the write-back's own).

    Channels none of whose streams were judged this cycle are left out (the
    write-back leaves them alone too).
    """
    scores = {r.stream_id: (r.status, r.score) for r in results if r.status in JUDGED_STATUSES}
    orders: dict[int, dict[str, Any]] = {}
    for channel in inventory.channels:
        if not any(sid in scores for sid in channel.stream_ids):
            continue
        before = list(channel.stream_ids)
        after = plan_reorder(before, scores) if len(set(before)) > 1 else None
        orders[channel.id] = {
            "before": before,
            "after": after if after is not None else before,
            "changed": after is not None and after != before,
        }
    return orders


def known_streams(database: Path) -> dict[int, bool]:
    """Whether each stream worked at its last ``ok``/``dead`` check, from the results store.

    Read once at start, before the sink opens the store; an unreadable store
    just means nothing is known.
    """
    try:
        # The latest few cycles are enough: a full cycle checks every stream.
        latest = read_recent_checks(database, per_stream=1, cycles=3)
    except StoreError as exc:
        logger.warning("monitor_history_unreadable", error=str(exc))
        return {}
    return {
        sid: rows[0].status == "ok"
        for sid, rows in latest.items()
        if rows and rows[0].status in ("ok", "dead")
    }


class Monitor(pykka.ThreadingActor):
    """Progress, recent cycles, reorders, channel health and alerts (a listener).

    Args:
        metrics: counts final results and cycles.
        known: what is known of streams from before (:func:`known_streams`).
        send_alert: queues one alert (the webhook sender's ``send``), or ``None``.
        clock: a monotonic clock (tests pass their own).
    """

    use_daemon_thread = True

    def __init__(
        self,
        metrics: Metrics,
        known: Mapping[int, bool] | None = None,
        send_alert: Callable[[dict[str, Any]], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._metrics = metrics
        self._send_alert = send_alert
        self._clock = clock
        self._inventories: dict[int, Inventory] = {}
        self._inventory: Inventory | None = None
        self._manual: dict[int, int] = {}
        self._progress: CycleProgress | None = None
        self._recent: deque[dict[str, Any]] = deque(maxlen=_RECENT_CYCLES)
        self._by_inventory: dict[int, dict[str, Any]] = {}
        """The summaries of recent cycles by ``id()`` of their inventory (kept alive
        in ``_kept``, so an id is never reused while it is a key here)."""
        self._kept: deque[Inventory] = deque(maxlen=_RECENT_CYCLES)
        self._last_failure: dict[str, Any] | None = None
        self._reorders: dict[int, dict[str, Any]] = {}
        self._orders: dict[int, list[int]] = {}
        """Each channel's order in the source as last known (see ``MonitorView.orders``)."""
        self._health = alerts.ChannelHealth(known)
        self._results_seen = 0
        self._alerts_queued = 0

    def on_receive(self, message: Any) -> Any:
        """Dispatch one event; every branch returns at once."""
        match message:
            case CycleInventory(cycle_id=cycle_id, inventory=inventory):
                self._inventories[cycle_id] = inventory
                if cycle_id not in self._manual:  # a channel check's is a small part
                    self._inventory = inventory
                    self._orders = {c.id: list(c.stream_ids) for c in inventory.channels}
            case ManualCheck(cycle_id=cycle_id, channel_id=channel_id):
                self._manual[cycle_id] = channel_id
            case CycleStarted():
                self._on_started(message)
            case ResultReady(result=result):
                self._on_result(message.cycle_id, result)
            case CycleFinished():
                self._on_finished(message)
            case SourceFailed(error=error):
                self._on_source_failed(error)
            case ReorderCounts(inventory=inventory, counts=counts):
                summary = self._by_inventory.get(id(inventory))
                if summary is not None:
                    summary["reorder"] = dict(counts)
                    self._reorders_written(summary["cycle_id"], message)
            case GetStatus():
                return self._status()
            case GetView():
                return MonitorView(
                    self._inventory,
                    dict(self._reorders),
                    self._working(),
                    dict(self._orders),
                )
            case _:
                return super().on_receive(message)
        return None

    # --- events ---------------------------------------------------------------------

    def _on_started(self, message: CycleStarted) -> None:
        inventory = self._inventories.get(message.cycle_id)
        per_account: Counter[int] = Counter()
        if inventory is not None:
            for stream in inventory.streams:
                per_account[stream.account_id] += 1
        kind = "channel" if message.cycle_id in self._manual else "full"
        self._progress = CycleProgress(
            message.cycle_id,
            message.streams,
            message.started_at,
            per_account,
            self._clock(),
            kind,
        )

    def _on_result(self, cycle_id: int, result: CheckResult) -> None:
        self._results_seen += 1
        self._metrics.result(result)
        progress = self._progress
        if progress is not None and progress.cycle_id == cycle_id:
            progress.add(result)

    def _on_finished(self, finished: CycleFinished) -> None:
        self._metrics.cycle_finished(finished)
        progress = self._progress
        self._progress = None
        inventory = self._inventories.pop(finished.cycle_id, None)
        channel_id = self._manual.pop(finished.cycle_id, None)
        statuses = Counter(r.status for r in finished.results)
        summary: dict[str, Any] = {
            "cycle_id": finished.cycle_id,
            "kind": "channel" if channel_id is not None else "full",
            "channel_id": channel_id,
            "started_at": finished.started_at,
            "finished_at": finished.finished_at,
            "duration_s": finished.duration_s,
            "streams": len(finished.results),
            "alive": statuses["ok"],
            "dead": statuses["dead"],
            "errors": statuses["error"],
            "cancelled": statuses["cancelled"],
            "aborted": finished.aborted,
            "reorder": None,
        }
        if progress is not None and progress.cycle_id == finished.cycle_id:
            summary["streams"] = max(summary["streams"], progress.streams)
        self._recent.appendleft(summary)
        if inventory is not None:
            if len(self._kept) == self._kept.maxlen:
                self._by_inventory.pop(id(self._kept[0]), None)
            self._kept.append(inventory)
            self._by_inventory[id(inventory)] = summary
            self._alert_channels(inventory, finished)
            if not finished.aborted:
                for cid, order in plan_orders(inventory, finished.results).items():
                    self._reorders[cid] = {
                        "cycle_id": finished.cycle_id,
                        "at": finished.finished_at,
                        **order,
                        "outcome": "pending",  # until the write-back says (ReorderCounts)
                        "written": False,
                    }
        if finished.aborted:
            reasons = {r.error for r in finished.results if r.status == "cancelled" and r.error}
            if not reasons & _USER_STOPS:
                why = ", ".join(sorted(str(r) for r in reasons)) or "aborted"
                self._alert(alerts.cycle_alert("aborted", why, finished.cycle_id))

    def _reorders_written(self, cycle_id: int, told: ReorderCounts) -> None:
        """What the write-back did with each channel the cycle planned an order for.

        ``not_written``: nothing writes orders back (the file source);
        ``disabled``: reordering is off; ``failed``: the whole reorder failed;
        else the writer's own outcome per channel, with the order it read
        (fresher than the cycle's) and the one it left.
        """
        counts = told.counts
        unnamed = "disabled" if counts.get("disabled") else "not_written"
        if counts.get("error"):
            unnamed = "failed"
        for cid, record in self._reorders.items():
            if record["cycle_id"] != cycle_id:
                continue
            outcome = told.channels.get(cid, unnamed)
            written = outcome in _WRITTEN
            updated = {**record, "outcome": outcome, "written": written}
            if cid in told.orders:
                before, after = told.orders[cid]
                updated.update(before=list(before), after=list(after), changed=before != after)
            if written:
                self._orders[cid] = list(updated["after"])
            self._reorders[cid] = updated

    def _on_source_failed(self, error: str) -> None:
        self._metrics.cycle_failed()
        self._last_failure = {"at": alerts.utc_now(), "error": error}
        self._alert(alerts.cycle_alert("source_failed", error))

    def _alert_channels(self, inventory: Inventory, finished: CycleFinished) -> None:
        for change in self._health.update(inventory.channels, finished.results):
            logger.info(
                "channel_down" if not change.working else "channel_up",
                channel_id=change.channel.id,
                cycle_id=finished.cycle_id,
            )
            self._alert(alerts.channel_alert(change, finished.cycle_id))

    def _alert(self, alert: dict[str, Any]) -> None:
        if self._send_alert is not None and self._send_alert(alert):
            self._alerts_queued += 1

    # --- answers --------------------------------------------------------------------

    def _working(self) -> dict[int, bool | None]:
        if self._inventory is None:
            return {}
        return {c.id: self._health.channel_works(c) for c in self._inventory.channels}

    def _status(self) -> dict[str, Any]:
        progress = self._progress
        return {
            "progress": progress.view(self._clock()) if progress is not None else None,
            "recent_cycles": list(self._recent),
            "last_failure": self._last_failure,
            "results_seen": self._results_seen,
            "alerts_queued": self._alerts_queued,
            "alerts_enabled": self._send_alert is not None,
        }
