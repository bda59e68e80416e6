"""``AccountSlots`` with a ``ProviderLearning``: refusals in, room and lessons out (fake clock)."""

from __future__ import annotations

import pytest

from actors.learning import LearnedLogin, LearningSettings, ProviderLearning
from actors.slots import AccountSlots, Announce, Denial, Grant
from tests.actors.fakes import FakeClock, profile_account, simple_account


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


def learning_slots(clock: FakeClock, limits: list[int], **settings: float) -> AccountSlots:
    learner = ProviderLearning(clock, LearningSettings(**settings))
    return AccountSlots(profile_account(1, limits), clock=clock, learning=learner)


def granted(answer: Grant | Denial) -> Grant:
    assert isinstance(answer, Grant), answer
    return answer


def test_a_refusal_below_the_configured_limit_lowers_the_room_and_is_reported(clock):
    slots = learning_slots(clock, [3])
    assert slots.announce() == Announce(change=3)
    for lease_id in (1, 2, 3):  # stagger 0: three openings at once
        granted(slots.request(lease_id))
    slots.release(2, "busy")  # the provider's real cap is 1
    slots.release(3, "busy")
    assert slots.usage() == {100: (0, 1, 1)}  # the limit in force
    assert slots.announce() == Announce(change=-2)  # the releases' room is not there
    assert slots.room == 0
    assert [(lesson.kind, lesson.limit) for lesson in slots.lessons] == [
        ("lowered", 2),
        ("lowered", 1),
    ]
    assert slots.usage_detail()[100] == {
        "viewers": 0,
        "leases": 1,
        "limit": 3,
        "learned_limit": 1,
        "release_lag_s": 0.0,
    }
    slots.release(1, "ok")
    assert slots.announce() == Announce()  # the last release gives exactly the one slot
    assert slots.room == 1


def test_a_dead_stream_never_lowers_a_limit(clock):
    slots = learning_slots(clock, [2])
    slots.announce()
    granted(slots.request(1))
    granted(slots.request(2))
    slots.release(1, "dead")
    slots.release(2, "error")
    assert slots.usage() == {100: (0, 0, 2)}
    assert slots.lessons == []


def test_a_lease_handed_back_unused_teaches_nothing(clock):
    slots = learning_slots(clock, [1])
    slots.announce()
    granted(slots.request(1))
    slots.release(1, None)
    clock.advance(0.01)
    granted(slots.request(2))
    slots.release(2, "busy")  # not right after a close of ours: a lower cap (none held)
    assert [lesson.kind for lesson in slots.lessons] == ["held"]


def test_the_release_lag_keeps_a_freed_slot_until_its_grace_is_over(clock):
    slots = learning_slots(clock, [2], first_grace_s=3.0)
    assert slots.announce() == Announce(change=2)
    granted(slots.request(1))
    granted(slots.request(2))
    slots.release(1, "ok")  # our close...
    granted(slots.request(3))
    clock.advance(0.05)
    slots.release(3, "busy")  # ...and the next opening refused: the provider still counts it
    assert [(lesson.kind, lesson.release_lag_s) for lesson in slots.lessons] == [
        ("release_lag", 3.0)
    ]
    assert slots.usage() == {100: (0, 1, 2)}  # the limit stays
    assert slots.free() == 0  # the slot is cooling
    announce = slots.announce()
    assert announce.change == -1  # the release's room is not there yet
    assert slots.next_learning_change() == pytest.approx(clock.now - 0.05 + 3.0)
    clock.advance(2.95)
    assert slots.free() == 1
    assert slots.announce() == Announce(change=1)
    granted(slots.request(4))
    # From now on every close waits the grace out before its slot is offered.
    slots.release(2, "ok")
    assert slots.announce() == Announce(change=-1)
    clock.advance(3.0)
    assert slots.announce() == Announce(change=1)


def test_checks_take_the_last_login_and_learn_per_login(clock):
    slots = learning_slots(clock, [2, 2])
    slots.announce()
    first = granted(slots.request(1))
    second = granted(slots.request(2))
    third = granted(slots.request(3))
    assert (first.profile.id, second.profile.id, third.profile.id) == (101, 101, 100)
    slots.release(2, "busy")  # the second login's real cap is 1
    assert slots.usage() == {100: (0, 1, 2), 101: (0, 1, 1)}
    slots.release(1, "ok")
    granted_next = granted(slots.request(4))
    assert granted_next.profile.id == 101


def test_after_a_quiet_period_the_lowered_login_gets_one_more_slot(clock):
    slots = learning_slots(clock, [3], quiet_period_s=60.0)
    slots.announce()
    granted(slots.request(1))
    granted(slots.request(2))
    slots.release(2, "busy")
    slots.release(1, "ok")
    slots.lessons.clear()
    assert slots.announce() == Announce(change=-2)  # limit 1, nothing held: 1 slot
    clock.advance(60.0)
    assert slots.announce() == Announce(change=1)
    assert [(lesson.kind, lesson.limit) for lesson in slots.lessons] == [("probed_up", 2)]


def test_a_held_login_offers_nothing_until_the_hold_ends(clock):
    slots = learning_slots(clock, [2, 1], hold_s=10.0)
    slots.announce()
    granted(slots.request(1))  # login 101
    slots.release(1, "busy")  # refused with nothing of ours on it: used elsewhere
    assert slots.lessons[-1].kind == "held"
    assert slots.usage()[101] == (0, 0, 1)
    assert granted(slots.request(2)).profile.id == 100  # the default login still serves
    assert slots.next_learning_change() == pytest.approx(clock.now + 10.0)
    clock.advance(10.0)
    assert granted(slots.request(3)).profile.id == 101


def test_restored_state_applies_from_the_start(clock):
    restored = [LearnedLogin(100, limit=1, release_lag_s=2.0, since_refusal_s=10.0)]
    learner = ProviderLearning(clock, LearningSettings(), restored)
    slots = AccountSlots(simple_account(1, 3), clock=clock, learning=learner)
    assert slots.announce() == Announce(change=1)
    detail = slots.usage_detail()[100]
    assert (detail["learned_limit"], detail["release_lag_s"]) == (1, 2.0)


def test_a_stream_refused_again_for_the_login_lowers_the_limit_further(clock):
    # Three at once on a real cap of 1; stream 2's refusal came while stream 3's
    # connection was on its way, so it showed a cap of 2.
    slots = learning_slots(clock, [3])
    slots.announce()
    for lease_id in (1, 2, 3):
        granted(slots.request(lease_id))
    slots.release(2, "busy", stream_id=2)
    slots.release(1, "ok", stream_id=1)
    assert slots.usage() == {100: (0, 1, 2)}
    slots.announce()
    granted(slots.request(4))  # stream 2 again, next to stream 3
    slots.release(4, "busy", stream_id=2, again=True)
    assert slots.usage() == {100: (0, 1, 1)}
    assert [lesson.kind for lesson in slots.lessons] == ["lowered", "lowered"]
