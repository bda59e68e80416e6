"""A queue of writes carried out by a few threads, in batches, one key at a time.

:class:`WriteQueue` takes items (e.g. check results) and hands them in
batches to a function on at most ``concurrency`` worker threads. It keeps
two promises:

- never more than ``concurrency`` batches run at once;
- items with the same key (e.g. one stream) are handled one after the other,
  in the order they were put, never in two batches at once.

Workers are started when items arrive and end when nothing is left, so an
idle queue holds no thread and nothing has to be closed. :meth:`WriteQueue.join`
waits until every item put so far has been handled. Threads are daemon
threads: a process that must stop is never held up by a hanging write.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Final, Generic, TypeVar, cast

import structlog

T = TypeVar("T")

log = structlog.get_logger(__name__)

MAX_BATCH: Final = 50
"""Most items one call of the write function gets."""


class WriteQueue(Generic[T]):
    """Hands queued items in batches to ``write`` on a few threads.

    Args:
        write: Handles one batch; its exceptions are logged and cost that batch.
        key: The key whose items must be handled one at a time, in order.
        concurrency: Batches at most at once (threads), at least 1.
        max_batch: Items at most per batch.
        name: Prefix of the worker threads' names.
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], None],
        key: Callable[[T], Hashable],
        *,
        concurrency: int,
        max_batch: int = MAX_BATCH,
        name: str = "write",
    ) -> None:
        if concurrency < 1 or max_batch < 1:
            message = f"concurrency and max_batch must be >= 1, got {concurrency}, {max_batch}"
            raise ValueError(message)
        self._write = write
        self._key = key
        self.concurrency = concurrency
        self._max_batch = max_batch
        self._name = name
        self._pending: deque[T] = deque()
        self._busy: set[Hashable] = set()
        self._workers = 0
        self._started = 0
        self._changed = threading.Condition()

    def put(self, item: T) -> None:
        """Queue ``item``; a worker takes it as soon as one is free."""
        with self._changed:
            self._pending.append(item)
            if self._workers >= self.concurrency:
                return
            self._workers += 1
            self._started += 1
            number = self._started
        thread = threading.Thread(target=self._work, name=f"{self._name}-{number}", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: write in the caller's thread instead
            log.warning("write_thread_unavailable", queue=self._name)
            self._work()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every item put so far has been handled; ``False`` on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending and self._workers == 0, timeout)

    @property
    def pending(self) -> int:
        """Items queued and not yet taken by a worker."""
        with self._changed:
            return len(self._pending)

    def _work(self) -> None:
        while True:
            with self._changed:
                batch = self._take()
                if not batch:
                    # Whatever is left waits for a key in a running batch; the
                    # worker running that batch takes it next.
                    self._workers -= 1
                    self._changed.notify_all()
                    return
                keys = {self._key(item) for item in batch}
                self._busy.update(keys)
            try:
                self._write(batch)
            except Exception:  # a bug in one batch must not stop the queue
                log.exception("write_batch_failed", queue=self._name, items=len(batch))
            finally:
                with self._changed:
                    self._busy.difference_update(keys)
                    self._changed.notify_all()

    def _take(self) -> list[T]:
        """The next batch (caller holds the lock): oldest first, no key twice or busy.

        The batch is the pending items shared among the allowed workers, so a
        backlog is spread over every worker rather than landing on one.
        """
        share = -(-len(self._pending) // self.concurrency)
        size = max(1, min(self._max_batch, share))
        batch: list[T] = []
        held: list[T] = []
        blocked: set[Hashable] = set()
        while self._pending and len(batch) < size:
            item = self._pending.popleft()
            key = self._key(item)
            if key in self._busy or key in blocked:
                blocked.add(key)  # later items of this key wait too: order is kept
                held.append(item)
                continue
            blocked.add(key)
            batch.append(item)
        self._pending.extendleft(reversed(held))
        return batch


R = TypeVar("R")


def map_on_daemon_threads(
    work: Callable[[T], R], items: Sequence[T], workers: int, name: str
) -> list[R]:
    """``[work(item) for item in items]`` on at most ``workers`` daemon threads, in order.

    Unlike a ``ThreadPoolExecutor`` (whose threads a stopping process waits
    for, and which go on through everything queued), the threads never hold up
    the process's exit. ``work`` must not raise.
    """
    results: list[R | None] = [None] * len(items)
    pending = iter(enumerate(items))
    lock = threading.Lock()

    def run() -> None:
        while True:
            with lock:
                taken = next(pending, None)
            if taken is None:
                return
            index, item = taken
            results[index] = work(item)

    threads = [
        threading.Thread(target=run, name=f"{name}-{n}", daemon=True)
        for n in range(max(1, min(workers, len(items))))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return cast("list[R]", results)
