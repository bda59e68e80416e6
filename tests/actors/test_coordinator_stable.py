"""check.stable_every through the real coordinator: stable streams skip cycles, others never."""

from __future__ import annotations

from actors.dispatch import CoordinatorSettings
from tests.actors.conftest import Harness
from tests.actors.fakes import Behaviour, FakeProbe, simple_account, stream


def test_a_stable_stream_is_checked_every_n_cycles_a_failing_one_every_cycle(harness: Harness):
    probe = FakeProbe({2: Behaviour(kind="dead")})
    harness.start([simple_account(1, 2)], probe, CoordinatorSettings(stable_every=2))
    streams = [stream(1, 1), stream(2, 1)]
    checked = []
    for _ in range(6):
        finished = harness.run(streams)
        checked.append(sorted(r.stream_id for r in finished.results))
    # Three ok checks make stream 1 stable; from then on it is checked every other cycle.
    assert checked == [[1, 2], [1, 2], [1, 2], [2], [1, 2], [2]]
    assert probe.calls[1] == 4
    assert probe.calls[2] == 6


def test_stable_every_1_checks_every_stream_every_cycle(harness: Harness):
    probe = FakeProbe()
    harness.start([simple_account(1, 1)], probe)
    for _ in range(4):
        assert [r.stream_id for r in harness.run([stream(1, 1)]).results] == [1]
