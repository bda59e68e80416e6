"""One timer thread for the whole daemon: delayed messages without sleeping actors.

Actors never sleep in their mailbox; when something must happen later (a retry
delay, a stagger delay, a check's hard time limit) they ask for a callback here,
and the callback only ``tell``\\ s an actor or cancels a token, both instant.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pykka
import structlog

from actors.tell import tell_quietly

logger = structlog.get_logger(__name__)


class TimerHandle:
    """A scheduled callback; :meth:`cancel` makes it a no-op."""

    __slots__ = ("callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], object]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run the callback (harmless if it already ran)."""
        self.cancelled = True


class CallLater(Protocol):
    """What an actor needs of the timer service: :class:`Timers`, or a test's fake clock."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` after ``delay`` seconds."""
        ...


class Timers:
    """Runs callbacks at a monotonic deadline on one daemon thread."""

    def __init__(self, name: str = "timers") -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` after ``delay`` seconds (0 or less: as soon as possible)."""
        handle = TimerHandle(time.monotonic() + max(0.0, delay), callback)
        with self._cond:
            heapq.heappush(self._heap, (handle.due, next(self._counter), handle))
            if self._heap[0][2] is handle:
                self._cond.notify()
        return handle

    def stop(self) -> None:
        """Drop every pending callback and end the thread."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, handle = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            try:
                handle.callback()
            except Exception:
                logger.exception("timer_callback_failed")


@dataclass(frozen=True)
class Tick:
    """A delayed message to oneself; ``token`` tells a stale tick from the current one."""

    token: int


class PendingTick:
    """At most one pending :class:`Tick` for an actor.

    Setting a new tick or cancelling makes any tick already sent stale, so a
    tick that was in the mailbox when plans changed is ignored (``fired``).
    """

    def __init__(self, timers: CallLater) -> None:
        self._timers = timers
        self._handle: TimerHandle | None = None
        self._token = 0

    def set(self, delay: float, ref: pykka.ActorRef[Any]) -> None:
        """Send ``ref`` a :class:`Tick` after ``delay`` seconds, replacing any pending one."""
        self.cancel()
        tick = Tick(self._token)
        self._handle = self._timers.call_later(delay, lambda: tell_quietly(ref, tick))

    @property
    def pending(self) -> bool:
        """True while a tick is set and has not fired."""
        return self._handle is not None

    def cancel(self) -> None:
        """Drop the pending tick; one already sent goes stale."""
        self._token += 1
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def fired(self, tick: Tick) -> bool:
        """True if ``tick`` is the current one (and so no tick is pending any more)."""
        if tick.token != self._token:
            return False
        self._handle = None
        return True
