"""Lease messages in batches: an account handles a ``Batch`` in order and answers as one."""

from __future__ import annotations

import queue
from dataclasses import replace
from typing import Any

import pykka

from actors.account import AccountActor
from actors.messages import (
    Batch,
    GetUsage,
    Job,
    LeaseDenied,
    LeaseGranted,
    ReleaseLease,
    RequestLease,
    RoomChanged,
    bundle,
)
from actors.timers import Timers
from tests.actors.fakes import simple_account, stream


class Recorder(pykka.ThreadingActor):
    """Stands for the coordinator: every message it is told goes to ``seen``."""

    def __init__(self, seen: queue.SimpleQueue[Any]) -> None:
        super().__init__()
        self._seen = seen

    def on_receive(self, message: Any) -> None:
        self._seen.put(message)


def _request(request_id: int) -> RequestLease:
    return RequestLease(request_id=request_id, job_id=request_id, stream=stream(request_id, 1))


def test_an_account_answers_a_batch_in_order_with_one_batch(timers: Timers) -> None:
    seen: queue.SimpleQueue[Any] = queue.SimpleQueue()
    coordinator = Recorder.start(seen)
    account = AccountActor.start(simple_account(1, 1), coordinator, timers)
    assert seen.get(timeout=5) == RoomChanged(1, 1, None)  # its room as it starts

    account.tell(Batch((_request(1), _request(2))))
    answers = seen.get(timeout=5)
    assert isinstance(answers, Batch)
    # One slot: the first asked gets it; the room both count is then told once.
    granted, denied, room = answers.messages
    assert isinstance(granted, LeaseGranted)
    assert granted.request_id == 1
    assert denied == LeaseDenied(request_id=2, account_id=1, reason="full")
    assert room == RoomChanged(1, 1, None)  # two asked of a room of one: one given back

    # The slot freed and asked for again in one batch goes straight to the request.
    account.tell(Batch((ReleaseLease(granted.lease.lease_id, "ok", 1), _request(3))))
    again = seen.get(timeout=5)
    assert isinstance(again, LeaseGranted)  # a batch of one answer is the answer itself
    assert again.request_id == 3
    usage = account.ask(GetUsage(), block=False).get(timeout=5)
    assert [used[1] for used in usage.values()] == [1]  # the first released, the new one held


def test_bundle_sends_one_message_as_it_is() -> None:
    release = ReleaseLease(7)
    assert bundle([release]) is release
    assert bundle([release, _request(1)]) == Batch((release, _request(1)))


def test_evolve_is_replace() -> None:
    job = Job(job_id=1, stream=stream(1, 1), stream_ids=(1, 2), attempt=1, marked=True)
    assert job.evolve(expected_s=2.5) == replace(job, expected_s=2.5)
    assert job.evolve(priority=(0, -3)) == replace(job, priority=(0, -3))
    both = job.evolve(expected_s=1.0, priority=(2, 0))
    assert both == replace(job, expected_s=1.0, priority=(2, 0))
    assert job.expected_s != 1.0  # the original is untouched
    assert hash(both) == hash(replace(job, expected_s=1.0, priority=(2, 0)))
