"""The account actor through a real coordinator: stagger, viewers and the lease protocol."""

from __future__ import annotations

import time

from tests.actors.conftest import Harness
from tests.actors.fakes import Behaviour, FakeProbe, max_concurrent, simple_account, stream


def test_later_cycles_run_as_many_checks_at_once_as_the_first(harness: Harness):
    """A grant inside the stagger window must not hide the slot that is still free.

    Two checks of 0.3 s on a 2-slot account with a 0.05 s stagger: the second
    check can overlap the first only if the account reports its second slot
    once the stagger delay passed; otherwise it waits for the first to end.
    """
    probe = FakeProbe(default=Behaviour(duration=0.3))
    harness.start([simple_account(1, 2, stagger=0.05)], probe)
    most = []
    for cycle in range(3):
        since = time.monotonic()
        finished = harness.run([stream(10 * cycle + 1, 1), stream(10 * cycle + 2, 1)])
        assert len(finished.results) == 2
        with probe.lock:
            most.append(max_concurrent(probe.events, 1, since))
    assert most == [2, 2, 2]
