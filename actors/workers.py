"""Threads for blocking work (probe runs), reused instead of made per check.

The pool never queues work behind other work: it grows to as many threads as
checks run at once (the accounts' limits bound that), and a finished probe's
thread waits idle for the next check. Starting an OS thread costs more than a
whole check's bookkeeping, so reuse is what keeps the per-check overhead low.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

_NEVER_QUEUE = 100_000


class BlockingWork:
    """Runs blocking calls on reusable threads; never makes one wait for another."""

    def __init__(self, name: str = "probe") -> None:
        self._pool = ThreadPoolExecutor(max_workers=_NEVER_QUEUE, thread_name_prefix=name)

    def run(self, fn: Callable[[], object]) -> None:
        """Start ``fn`` now on an idle or new thread."""
        self._pool.submit(fn)

    def stop(self) -> None:
        """Stop taking work; running calls finish on their own (their probes were cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
