"""``PendingWrites``: store writes in order, kept while the database refuses them.

A results database can fail for a while: another process holds its lock, the
disk is full, the folder went away for a moment. A write that fails then is
not dropped: it waits, with every write after it (in order: a cycle's row
before its checks, its checks before its end), and the first write of a later
call tries them again, at most once every ``retry_every`` seconds (a locked
file makes each try wait out SQLite's busy timeout, and the sink has
write-backs to do meanwhile). Their number is bounded: past ``limit`` the
oldest are given up, and said so.

A write that can never succeed (a bug, a constraint broken, a damaged file:
not :attr:`StoreError.transient`) is logged and dropped alone: trying it
again would fail again and hold back the rest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from adapters.store import ResultStore, StoreError

logger = structlog.get_logger(__name__)

Write = Callable[[ResultStore], object]

RETRY_EVERY_S = 30.0
LIMIT = 200_000
"""Writes kept at most: twenty cycles of 10,000 streams (a few tens of MB)."""


@dataclass(frozen=True)
class _Pending:
    what: str
    write: Write
    stream_id: int | None


class PendingWrites:
    """Runs store writes in order; keeps those the store refused for a later try.

    Args:
        clock: monotonic seconds.
        retry_every: seconds between two tries while the store fails.
        limit: writes kept at most; beyond, the oldest are given up.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        retry_every: float = RETRY_EVERY_S,
        limit: int = LIMIT,
    ) -> None:
        self._clock = clock
        self._retry_every = retry_every
        self._limit = limit
        self._queue: deque[_Pending] = deque()
        self._failed_at: float | None = None
        """When the store last refused a write (``None``: it is working)."""
        self._dropped = 0

    @property
    def waiting(self) -> int:
        """Writes not yet in the store."""
        return len(self._queue)

    def retry_in(self) -> float:
        """Seconds until :meth:`retry` tries again (0: at once)."""
        if self._failed_at is None:
            return 0.0
        return max(0.0, self._failed_at + self._retry_every - self._clock())

    def add(
        self, store: ResultStore | None, what: str, write: Write, stream_id: int | None = None
    ) -> None:
        """Write now, after the writes still waiting (``what`` names it in the logs).

        Without a store (none is kept) there is nothing to write to: it is not kept.
        """
        if store is None:
            return
        self._queue.append(_Pending(what, write, stream_id))
        if len(self._queue) > self._limit:
            given_up = self._queue.popleft()
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                logger.error(
                    "store_writes_given_up",
                    dropped=self._dropped,
                    oldest=given_up.what,
                    limit=self._limit,
                )
        self.retry(store)

    def retry(self, store: ResultStore | None, *, now: bool = False) -> bool:
        """Try the waiting writes (unless the store failed less than ``retry_every`` ago,
        or ``now``); True when none is left."""
        if store is None or not self._queue:
            return not self._queue
        failed_at = self._failed_at
        if not now and failed_at is not None and self._clock() - failed_at < self._retry_every:
            return False
        while self._queue:
            pending = self._queue[0]
            try:
                pending.write(store)
            except StoreError as exc:
                if not exc.transient:
                    logger.error(
                        "store_write_failed",
                        what=pending.what,
                        stream_id=pending.stream_id,
                        error=str(exc),
                    )
                    self._queue.popleft()
                    continue
                self._failed_at = self._clock()
                logger.error(
                    "store_failed",
                    what=pending.what,
                    stream_id=pending.stream_id,
                    error=str(exc),
                    writes_waiting=len(self._queue),
                    retry_in_s=self._retry_every,
                )
                return False
            except Exception:  # a bug in this one write: it alone is lost
                logger.exception(
                    "store_write_crashed", what=pending.what, stream_id=pending.stream_id
                )
            self._queue.popleft()
        if failed_at is not None:
            self._failed_at = None
            logger.info("store_recovered", dropped=self._dropped)
        return True
