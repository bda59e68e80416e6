"""Within an account the job of highest priority starts first (``Job.priority``)."""

from __future__ import annotations

from dataclasses import replace

from actors.actions import Action, Request
from actors.dispatch import CoordinatorSettings, Dispatch
from actors.jobs import jobs_for
from actors.messages import Lease
from domain.models import ProbeOutcome
from domain.priority import LastCheck, priority
from tests.actors.fakes import FakeClock, stream

OLD = "2026-01-01T00:00:00Z"
NEW = "2026-01-02T00:00:00Z"


def _requested(actions: list[Action]) -> list[Request]:
    return [a for a in actions if isinstance(a, Request)]


def test_an_account_starts_its_jobs_in_priority_order_then_the_longest_first() -> None:
    dispatch = Dispatch(CoordinatorSettings(), FakeClock(), history={5: 30.0, 6: 2.0})
    dispatch.set_account(1, 1, fresh=True)
    keys = {
        1: priority(False, LastCheck("ok", NEW), 1),
        2: priority(False, LastCheck("ok", OLD), 4),  # left out of three cycles
        3: priority(False, LastCheck("dead", NEW)),
        4: priority(True, LastCheck("ok", NEW)),
        5: priority(False, None),
        6: priority(False, None),
    }
    jobs = jobs_for(stream(sid, 1) for sid in keys)
    dispatch.start([replace(job, priority=keys[job.stream.id]) for job in jobs])
    (request,) = _requested(dispatch.room_changed(1, 1))  # one slot: one job at a time
    order = []
    for lease_id in range(1, len(keys) + 1):
        order.append(request.request.stream.id)
        lease = Lease(lease_id, 1, 100, request.request.stream.url)
        dispatch.granted(request.request.request_id, lease)
        next_requests = _requested(dispatch.check_finished(lease_id, ProbeOutcome("ok")))
        if next_requests:
            (request,) = next_requests
    # Marked, never checked (the longer one first), failed, then the oldest-checked.
    assert order == [4, 5, 6, 3, 2, 1]
    assert dispatch.idle
