"""Threads for blocking work (probe runs), reused instead of made per check.

The pool never queues work behind other work: each call goes to an idle
thread, or to a new one when none is idle (the accounts' limits bound how many
run at once), and a finished call's thread waits idle for the next. Starting an
OS thread waits for the thread to come up, which costs more than a whole
check's bookkeeping; so new threads are started by a spawner thread of the
pool, never by the caller (the coordinator's mailbox must not wait on it).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import structlog

logger = structlog.get_logger(__name__)

_STOP = None

T = TypeVar("T")


class BlockingWork:
    """Runs blocking calls on reusable threads; never makes one wait for another.

    Args:
        name: prefix of the threads' names.
    """

    def __init__(self, name: str = "probe") -> None:
        self._name = name
        self._work: queue.SimpleQueue[
            tuple[Callable[[], object], Callable[[object], object]] | None
        ]
        self._work = queue.SimpleQueue()
        self._spawn: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._lock = threading.Lock()
        """Guards the thread count and ``_stopped`` between the spawner and ``stop``."""
        self._idle: queue.SimpleQueue[None] = queue.SimpleQueue()
        """One item for each thread waiting for work that no call has been promised to
        yet. A queue, not a count under a lock: a pool thread that lost the GIL while
        holding that lock made the caller (the loop thread) wait for it."""
        self._threads = 0
        self._stopped = False
        self._spawner = threading.Thread(target=self._spawn_loop, name=f"{name}-spawner")
        self._spawner.daemon = True
        self._spawner.start()

    @property
    def threads(self) -> int:
        """Threads the pool has started (busy or idle)."""
        return self._threads

    def run(self, fn: Callable[[], T], then: Callable[[T], object] = lambda _result: None) -> None:
        """Run ``fn`` now on an idle thread, or on a new one, then ``then(its result)``.

        The thread counts as idle again before ``then`` runs: a call that
        ``then`` causes (a report that leads to the next check) finds it idle.
        Returns at once. Calls come from one thread (the coordinator's turns),
        and so does ``stop``: after it, a call does nothing.
        """
        if self._stopped:
            return
        try:
            self._idle.get_nowait()  # an idle thread is promised to this call
            spawn = False
        except queue.Empty:
            spawn = True
        self._work.put((fn, then))  # type: ignore[arg-type]  # T is erased in the queue
        if spawn:
            self._spawn.put(True)

    def stop(self) -> None:
        """Stop taking work; running calls finish on their own (their probes were cancelled)."""
        with self._lock:
            self._stopped = True
            threads = self._threads
        self._spawn.put(False)
        for _ in range(threads + 1):
            self._work.put(_STOP)

    def _spawn_loop(self) -> None:
        while self._spawn.get():
            with self._lock:
                self._threads += 1
                number = self._threads
            thread = threading.Thread(target=self._worker, name=f"{self._name}-{number}")
            thread.daemon = True
            thread.start()

    def _worker(self) -> None:
        # Each thread starts with a call promised to it (it was spawned for one),
        # and promises itself as idle again after each call.
        while (item := self._work.get()) is not _STOP:
            fn, then = item
            try:
                result = fn()
            except Exception:
                logger.exception("blocking_work_failed")
                self._idle.put(None)
                continue
            self._idle.put(None)
            try:
                then(result)
            except Exception:
                logger.exception("blocking_work_failed")
