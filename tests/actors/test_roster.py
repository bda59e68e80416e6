"""``Roster`` without actors: what a ``SetAccounts`` means, and the accounts' status."""

from __future__ import annotations

from dataclasses import replace

from actors.roster import Roster, shown_limit
from actors.slots import UNLIMITED
from tests.actors.fakes import profile_account, simple_account
from tests.logcapture import capture_logs


class FakeActor:
    """An account actor's handle: alive until the test says otherwise."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive


def always(_account_id: int) -> bool:
    return True


def test_new_accounts_start_actors_with_their_stagger_or_the_default() -> None:
    roster: Roster[FakeActor] = Roster(default_stagger=2.0)
    own, default = simple_account(1, 2, stagger=0.5), simple_account(2, 1)
    plan = roster.plan([own, default], always)
    assert [(c.account.id, c.stagger, c.actor) for c in plan.changes] == [
        (1, 0.5, None),
        (2, 2.0, None),
    ]
    assert plan.retired == ()


def test_a_running_actor_is_told_the_new_limits_and_gone_accounts_retire() -> None:
    roster: Roster[FakeActor] = Roster(0.0)
    one, two = FakeActor("one"), FakeActor("two")
    roster.add(simple_account(1, 2), one)
    roster.add(simple_account(2, 2), two)
    raised = simple_account(1, 5)
    plan = roster.plan([raised], always)
    assert [(c.account, c.actor) for c in plan.changes] == [(raised, one)]
    assert plan.retired == (2,)
    assert roster.limits() == {1: 5, 2: 2}  # the new definition is kept
    assert roster.drop(2) is two
    assert roster.drop(2) is None
    assert roster.actors() == [one]


def test_a_dead_actor_is_restarted_only_once_nothing_of_it_runs() -> None:
    roster: Roster[FakeActor] = Roster(0.0)
    dead = FakeActor("dead")
    dead.alive = False
    account = simple_account(1, 2)
    roster.add(account, dead)
    assert roster.plan([account], lambda _id: False).changes == ()
    with capture_logs() as logs:
        (change,) = roster.plan([account], always).changes
    assert change.actor is None
    assert [e["event"] for e in logs] == ["account_actor_restarted"]
    fresh = FakeActor("fresh")
    roster.add(account, fresh)
    assert roster.get(1) is fresh


def test_status_shows_limits_as_written_and_the_queue_of_each_account() -> None:
    roster: Roster[FakeActor] = Roster(1.5)
    actor = FakeActor("a")
    account = replace(profile_account(1, [2, 0]), reserve_for_viewers=1)
    roster.add(account, actor)
    (status,) = roster.status(lambda account_id: {"waiting": account_id * 10}).values()
    assert status["limit"] == 0  # one login is unlimited
    assert status["waiting"] == 10
    assert status["stagger_delay"] == 1.5
    assert status["reserve_for_viewers"] == 1
    assert status["actor"] is actor
    profiles = status["profiles"]
    assert isinstance(profiles, list)
    assert [p["max_streams"] for p in profiles] == [2, 0]
    assert (shown_limit(UNLIMITED), shown_limit(3)) == (0, 3)
