"""Random accounts, profiles, limits, viewers, durations and failures through the real actors.

The fake probe checks, at the instant each connection opens, that viewers plus
open connections on its profile are within the profile's limit and that the
total is within the global limit. At the end every stream has exactly one
result and no account holds a lease.
"""

from __future__ import annotations

import pykka
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.account import AccountActor
from actors.coordinator import CoordinatorSettings
from actors.timers import Timers
from tests.actors.conftest import Harness, usage
from tests.actors.fakes import Behaviour, FakeProbe, profile_account, stream

behaviours = st.one_of(
    st.builds(Behaviour, duration=st.floats(0, 0.015)),
    st.builds(
        Behaviour, duration=st.floats(0, 0.01), kind=st.sampled_from(["dead", "error", "busy"])
    ),
    st.just(Behaviour(raises=True)),
)


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    n_accounts = draw(st.integers(1, 4))
    accounts = [
        profile_account(a, draw(st.lists(st.integers(0, 3), min_size=1, max_size=3)))
        for a in range(1, n_accounts + 1)
    ]
    viewers = {
        p.id: draw(st.integers(0, p.max_streams))
        for account in accounts
        for p in account.profiles
        if p.max_streams
    }
    n_streams = draw(st.integers(1, 14))
    streams = [stream(i, draw(st.integers(1, n_accounts))) for i in range(1, n_streams + 1)]
    plan = {i: draw(behaviours) for i in range(1, n_streams + 1)}
    return {
        "accounts": accounts,
        "viewers": viewers,
        "streams": streams,
        "plan": plan,
        "global_limit": draw(st.integers(0, 4)),
        "retries": draw(st.integers(0, 1)),
        "bump": draw(st.booleans()),
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_limits_hold_and_every_stream_gets_one_result(scenario: dict) -> None:
    timers = Timers()
    try:
        _run(scenario, timers)
    finally:
        pykka.ActorRegistry.stop_all()
        timers.stop()


def _run(scenario: dict, timers: Timers) -> None:
    limits = {f"p{p.id}": p.max_streams for a in scenario["accounts"] for p in a.profiles}
    seen_viewers = {f"p{pid}": n for pid, n in scenario["viewers"].items()}
    global_limit = scenario["global_limit"]

    def check(login: str, open_now: dict[str, int], total: int) -> str | None:
        limit = limits.get(login, 0)
        if limit and open_now[login] + seen_viewers.get(login, 0) > limit:
            return (
                f"{login}: {open_now[login]} open + {seen_viewers.get(login, 0)} viewers > {limit}"
            )
        if global_limit and total > global_limit:
            return f"total {total} > global {global_limit}"
        return None

    probe = FakeProbe(behaviours=scenario["plan"])
    probe.limit_check = check
    harness = Harness(timers)
    harness.start(
        scenario["accounts"],
        probe,
        CoordinatorSettings(
            global_limit=global_limit,
            retries=scenario["retries"],
            retry_delay=0.005,
            busy_backoff=0.005,
            check_duration=0.5,
            check_timeout=0.5,
            max_wait=0.5,
        ),
    )
    harness.viewers(profiles=scenario["viewers"])
    done = harness.begin(scenario["streams"])
    if scenario["bump"]:
        bumped = {pid: n + 1 for pid, n in scenario["viewers"].items()}
        # Viewers arriving mid-cycle find checks already holding slots; those are
        # preempted (tested on their own). The limits checked here stay the ones
        # before the bump, which the new viewers only make stricter for the actors.
        harness.viewers(profiles=bumped)
    finished = done.get(timeout=20)

    assert probe.violations == []
    for result in finished.results:
        if result.status == "cancelled":  # only when viewers held every slot too long
            assert result.error in ("viewers_held_account", "no_free_slot")
    ids = sorted(r.stream_id for r in finished.results)
    assert ids == sorted(s.id for s in scenario["streams"])
    for ref in pykka.ActorRegistry.get_by_class(AccountActor):
        held = usage(ref)
        assert all(leases == 0 for _v, leases, _l in held.values()), held
