"""WriteQueue: bounded threads, one key at a time in order, join, failures contained."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from adapters.write_queue import WriteQueue
from tests.logcapture import capture_logs

WAIT_S = 10.0


class Gate:
    """A write function that records batches and blocks until opened."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.lock = threading.Condition()
        self.running = 0
        self.most = 0
        self.batches: list[list[tuple[str, int]]] = []

    def __call__(self, batch: Sequence[tuple[str, int]]) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.batches.append(list(batch))
            self.lock.notify_all()
        try:
            assert self.opened.wait(WAIT_S)
        finally:
            with self.lock:
                self.running -= 1

    def wait_running(self, count: int) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: self.running >= count, WAIT_S)


def key(item: tuple[str, int]) -> str:
    return item[0]


def test_never_more_batches_at_once_than_the_concurrency():
    gate = Gate()
    queue = WriteQueue(gate, key, concurrency=3, max_batch=2)

    for n in range(20):
        queue.put((f"k{n}", n))
    assert gate.wait_running(3)
    assert gate.running == 3
    assert not queue.join(timeout=0.05)
    gate.opened.set()

    assert queue.join(timeout=WAIT_S)
    assert gate.most == 3
    assert all(len(batch) <= 2 for batch in gate.batches)
    assert sorted(n for batch in gate.batches for _, n in batch) == list(range(20))


def test_items_of_one_key_run_one_at_a_time_in_order():
    gate = Gate()
    queue = WriteQueue(gate, key, concurrency=4, max_batch=10)

    queue.put(("a", 1))
    assert gate.wait_running(1)  # "a" is busy now
    for n in range(2, 6):
        queue.put(("a", n))
        queue.put((f"b{n}", n))
    gate.opened.set()

    assert queue.join(timeout=WAIT_S)
    of_a = [n for batch in gate.batches for k, n in batch if k == "a"]
    assert of_a == [1, 2, 3, 4, 5]
    for batch in gate.batches:
        assert len([k for k, _ in batch if k == "a"]) <= 1  # never twice in one batch


def test_a_failing_batch_is_logged_and_the_rest_goes_on():
    done: list[int] = []

    def write(batch: Sequence[tuple[str, int]]) -> None:
        if any(n == 3 for _, n in batch):
            raise RuntimeError("boom")
        done.extend(n for _, n in batch)

    queue = WriteQueue(write, key, concurrency=1, max_batch=1)
    with capture_logs() as logs:
        for n in range(6):
            queue.put((f"k{n}", n))
        assert queue.join(timeout=WAIT_S)

    assert done == [0, 1, 2, 4, 5]
    assert [entry["event"] for entry in logs] == ["write_batch_failed"]


def test_an_idle_queue_holds_no_thread():
    queue = WriteQueue(lambda batch: None, key, concurrency=2, name="idle-test")
    for n in range(5):
        queue.put((f"k{n}", n))
    assert queue.join(timeout=WAIT_S)
    assert queue.pending == 0
    workers = [t for t in threading.enumerate() if t.name.startswith("idle-test")]
    for worker in workers:  # each ends by itself once the queue is empty
        worker.join(WAIT_S)
    assert not any(worker.is_alive() for worker in workers)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="concurrency"):
        WriteQueue(lambda batch: None, key, concurrency=0)
