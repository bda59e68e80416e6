"""The account actor through a real coordinator: stagger, viewers and the lease protocol."""

from __future__ import annotations

import time

from structlog.testing import capture_logs

from domain.models import Account, Profile
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


def test_a_profile_whose_rewrite_matches_nothing_is_not_used(harness: Harness):
    """The second login's pattern is valid but matches none of the URLs: using it would
    open the default login's URL while counting against the second login."""
    account = Account(
        id=1,
        name="acc1",
        max_streams=1,
        profiles=(
            Profile(id=100, max_streams=1, is_default=True),
            Profile(
                id=101,
                name="second",
                max_streams=1,
                search_pattern="/nomatch/",
                replace_pattern="/live/p101/",
            ),
        ),
    )
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([account], probe)
    with capture_logs() as logs:
        done = harness.begin([stream(1, 1), stream(2, 1), stream(3, 1)])
        assert probe.wait_open(1)
        assert not probe.wait_open(2, timeout=0.3)  # 0.3 s: the second grant would be at once
        for sid in (1, 2, 3):
            probe.open_gate(sid)
        finished = done.get(timeout=10)
    assert [r.status for r in finished.results] == ["ok"] * 3
    assert {r.profile_id for r in finished.results} == {100}
    assert probe.max_open["base"] == 1  # the default login's URL, never twice at once
    unchanged = [e for e in logs if e["event"] == "profile_url_unchanged"]
    assert len(unchanged) == 1  # once per profile, not per stream
    assert unchanged[0]["profile_id"] == 101
    assert unchanged[0]["log_level"] == "warning"
