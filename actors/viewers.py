"""``ViewerWatcher``: reads who is watching, every ``poll_interval``, and tells the accounts.

It is an I/O actor: the read blocks its own thread, which only ever gets timer
ticks, ``RunNow`` and subscriptions. The next tick is asked for only once the
current read is over, so a slow source never piles reads up. Account actors
subscribe (``WatchViewers``) and get every read straight from here. A failed
read never lowers the viewer counts: it is sent as ``ViewersUnknown`` with the
worst counts seen recently, because freeing a slot a viewer still holds would
let a check take his connection; the accounts then fail closed.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import pykka
import structlog

from actors.messages import RunNow, UnwatchViewers, ViewersSeen, ViewersUnknown, WatchViewers
from actors.supervisor import SupervisedActor
from actors.tell import tell_quietly
from actors.timers import CallLater, PendingTick, Tick
from domain.models import ViewerSnapshot
from domain.ports import ViewerSource

logger = structlog.get_logger(__name__)

_MIN_WORST_WINDOW_S = 60.0


def worst_of(snapshots: list[ViewerSnapshot]) -> ViewerSnapshot:
    """The per-profile and per-account maximum over ``snapshots``.

    Args:
        snapshots: viewer snapshots; a profile or account missing from one counts 0 there.

    Returns:
        A snapshot holding, for every profile and account, its highest count.
    """
    profiles: dict[int, int] = {}
    accounts: dict[int, int] = {}
    for snapshot in snapshots:
        for profile_id, count in snapshot.profiles.items():
            profiles[profile_id] = max(profiles.get(profile_id, 0), count)
        for account_id, count in snapshot.accounts.items():
            accounts[account_id] = max(accounts.get(account_id, 0), count)
    return ViewerSnapshot(profiles=profiles, accounts=accounts)


def _total(counts: dict[int, int]) -> int:
    return sum(counts.values())


class ViewerWatcher(SupervisedActor):
    """Polls a :class:`ViewerSource` and sends every read to its subscribers (the accounts).

    Every good read is sent as ``ViewersSeen`` (accounts take it idempotently).
    A failed read sends ``ViewersUnknown`` carrying the maximum over the good
    snapshots of the last ``worst_window`` seconds (the newest good snapshot
    always counts, however old), or no counts before the first good read.

    Messages: ``RunNow`` reads at once (and restarts the interval from there);
    ``WatchViewers`` subscribes an actor and sends it the current state at once
    (nothing before the first read); ``UnwatchViewers`` drops it.

    Args:
        source: where viewer counts are read.
        timers: the shared timer thread.
        poll_interval: seconds between the end of one read and the next.
        worst_window: seconds of good reads a failed read falls back on;
            default ``max(60, 3 * poll_interval)``.
        supervisor: told ``ActorFailed`` if the watcher crashes.

    Raises:
        ValueError: ``poll_interval`` is not positive or ``worst_window`` is negative.
    """

    actor_name = "viewer_watcher"

    def __init__(
        self,
        source: ViewerSource,
        timers: CallLater,
        poll_interval: float,
        worst_window: float | None = None,
        supervisor: pykka.ActorRef[Any] | None = None,
    ) -> None:
        super().__init__(supervisor)
        if poll_interval <= 0:
            message = f"viewers poll_interval must be positive, got {poll_interval!r}"
            raise ValueError(message)
        if worst_window is None:
            worst_window = max(_MIN_WORST_WINDOW_S, 3 * poll_interval)
        if worst_window < 0:
            message = f"viewers worst_window must not be negative, got {worst_window!r}"
            raise ValueError(message)
        self._subscribers: list[pykka.ActorRef[Any]] = []
        self._source = source
        self._poll_interval = poll_interval
        self._worst_window = worst_window
        self._history: deque[tuple[float, ViewerSnapshot]] = deque()
        self._last: ViewerSnapshot | None = None
        self._state: ViewersSeen | ViewersUnknown | None = None
        """What the last read told the subscribers (a new one gets it at once)."""
        self._tick = PendingTick(timers)

    # --- life cycle ---------------------------------------------------------------

    def start_up(self) -> None:
        """Read at once; the read schedules the next one."""
        self._poll()

    def wind_down(self, error: BaseException | None) -> None:
        """Drop the pending tick (after a crash the accounts' counts go stale: they fail
        closed)."""
        self._tick.cancel()

    def on_receive(self, message: Any) -> Any:
        """Poll on a current tick or ``RunNow``; anything else goes to pykka."""
        match message:
            case Tick():
                if self._tick.fired(message):
                    self._poll()
            case RunNow():
                self._poll()
            case WatchViewers(subscriber=subscriber):
                if subscriber not in self._subscribers:
                    self._subscribers.append(subscriber)
                if self._state is not None:
                    tell_quietly(subscriber, self._state)
            case UnwatchViewers(subscriber=subscriber):
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)
            case _:
                return super().on_receive(message)
        return None

    # --- polling ------------------------------------------------------------------

    def _poll(self) -> None:
        """Read once, send what it means, then ask for the next tick."""
        self._tick.cancel()
        try:
            self._read_and_send()
        finally:
            self._schedule()

    def _read_and_send(self) -> None:
        try:
            snapshot = self._source.read()
        except Exception as exc:  # noqa: BLE001 - a failed read must never kill the watcher
            self._on_failed_read(exc)
            return
        now = time.monotonic()
        self._history.append((now, snapshot))
        self._prune(now)
        logger.debug(
            "viewers_read",
            profiles_total=_total(snapshot.profiles),
            accounts_total=_total(snapshot.accounts),
        )
        if snapshot != self._last:
            logger.info(
                "viewers_changed",
                profiles=dict(snapshot.profiles),
                accounts=dict(snapshot.accounts),
                before=None if self._last is None else _shown(self._last),
            )
        self._last = snapshot
        self._send(ViewersSeen(snapshot, read_at=now))

    def _on_failed_read(self, exc: Exception) -> None:
        self._prune(time.monotonic())
        assumed = worst_of([s for _at, s in self._history]) if self._history else None
        error = str(exc) or repr(exc)
        logger.warning(
            "viewers_read_failed",
            error=error,
            error_type=type(exc).__name__,
            assumed=None if assumed is None else _shown(assumed),
        )
        self._send(ViewersUnknown(error=error, assumed=assumed))

    def _send(self, state: ViewersSeen | ViewersUnknown) -> None:
        """Tell every subscriber; one that is gone is dropped."""
        self._state = state
        self._subscribers = [ref for ref in self._subscribers if tell_quietly(ref, state)]

    def _prune(self, now: float) -> None:
        """Forget good reads older than the window, but always keep the newest."""
        while len(self._history) > 1 and now - self._history[0][0] > self._worst_window:
            self._history.popleft()

    # --- timer --------------------------------------------------------------------

    def _schedule(self) -> None:
        if not self.actor_stopped.is_set():
            self._tick.set(self._poll_interval, self.actor_ref)


def _shown(snapshot: ViewerSnapshot) -> dict[str, dict[int, int]]:
    return {"profiles": dict(snapshot.profiles), "accounts": dict(snapshot.accounts)}
