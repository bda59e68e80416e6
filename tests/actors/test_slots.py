"""``AccountSlots`` on a fake clock: grants, denials, the stagger and what the coordinator hears."""

from __future__ import annotations

from dataclasses import replace

import pytest

from actors.slots import UNLIMITED, AccountSlots, Announce, Denial, Grant
from domain.models import Profile
from tests.actors.fakes import profile_account, simple_account


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def granted(answer: Grant | Denial) -> Grant:
    assert isinstance(answer, Grant), answer
    return answer


def test_grants_up_to_the_limit_then_denies_full(clock: FakeClock):
    slots = AccountSlots(simple_account(1, 2), clock=clock)
    assert granted(slots.request(1)).free_after == 1
    assert granted(slots.request(2)).free_after == 0
    assert slots.request(3) == Denial("full")
    assert slots.announce() == Announce()
    assert slots.release(1)
    assert not slots.release(1)  # twice is harmless
    assert slots.announce() == Announce(free=1)
    assert slots.announce() == Announce()  # heard once


def test_unlimited_profile_never_denies(clock: FakeClock):
    slots = AccountSlots(simple_account(1, 0), clock=clock)
    for lease_id in range(1, 50):
        assert granted(slots.request(lease_id)).free_after == UNLIMITED


def test_second_profile_takes_over_when_the_default_is_full(clock: FakeClock):
    slots = AccountSlots(profile_account(1, [1, 1]), clock=clock)
    assert granted(slots.request(1)).profile.id == 100
    assert granted(slots.request(2)).profile.id == 101
    assert slots.request(3) == Denial("full")


def test_stagger_denies_inside_the_window_and_wakes_after_it(clock: FakeClock):
    slots = AccountSlots(simple_account(1, 3), stagger_delay=1.0, clock=clock)
    assert granted(slots.request(1)).free_after == 0  # room, but not before the delay
    assert slots.request(2) == Denial("stagger")
    assert slots.announce() == Announce(wake_in=1.0)
    clock.advance(0.4)
    assert slots.announce() == Announce(wake_in=pytest.approx(0.6))
    clock.advance(0.6)
    assert slots.announce() == Announce(free=2)
    assert granted(slots.request(2)).free_after == 0


def test_a_grant_inside_the_stagger_window_does_not_lose_the_free_slot(clock: FakeClock):
    """The defect: after a cycle, the coordinator knew of 1 slot of 2; the grant said 0
    (stagger) and nothing announced the second slot until a lease was released."""
    slots = AccountSlots(simple_account(1, 2), stagger_delay=1.0, clock=clock)
    # Cycle 1: both slots used, then both released.
    granted(slots.request(1))
    assert slots.request(2) == Denial("stagger")
    clock.advance(1.0)
    assert slots.announce() == Announce(free=1)
    granted(slots.request(2))
    clock.advance(5.0)
    slots.release(1)
    assert slots.announce() == Announce(free=1)
    slots.release(2)
    assert slots.announce() == Announce(free=2)  # the coordinator hears of both slots
    # Cycle 2: the first grant falls in no stagger window; the second slot comes after it.
    clock.advance(60.0)
    assert granted(slots.request(3)).free_after == 0
    assert slots.announce() == Announce(wake_in=1.0)
    clock.advance(1.0)
    assert slots.announce() == Announce(free=1)
    assert granted(slots.request(4)).profile.id == 100
    assert slots.usage() == {100: (0, 2, 2)}


def test_room_the_coordinator_knows_of_is_not_announced_again(clock: FakeClock):
    slots = AccountSlots(simple_account(1, 3), clock=clock)
    assert slots.announce() == Announce()  # it starts out assuming plenty
    granted(slots.request(1))
    granted(slots.request(2))  # told: 1 left
    slots.release(1)
    assert slots.announce() == Announce(free=2)
    slots.release(2)
    assert slots.announce() == Announce(free=3)


def test_viewers_take_slots_and_preempt_the_newest_leases(clock: FakeClock):
    slots = AccountSlots(simple_account(1, 3), clock=clock)
    for lease_id in (1, 2, 3):
        granted(slots.request(lease_id))
    slots.set_viewers({100: 2})
    assert slots.leases_to_preempt(set()) == [3, 2]
    assert slots.leases_to_preempt({3}) == [2]
    assert slots.free() == 0


def test_reserve_for_viewers_is_kept_free(clock: FakeClock):
    slots = AccountSlots(replace(simple_account(1, 3), reserve_for_viewers=1), clock=clock)
    granted(slots.request(1))
    assert granted(slots.request(2)).free_after == 0
    assert slots.request(3) == Denial("full")


def test_lowered_limit_keeps_running_leases_and_grants_nothing_new(clock: FakeClock):
    slots = AccountSlots(simple_account(1, 3), clock=clock)
    for lease_id in (1, 2, 3):
        granted(slots.request(lease_id))
    slots.set_account(simple_account(1, 1))
    assert slots.leases_to_preempt(set()) == []
    slots.release(1)
    assert slots.request(4) == Denial("full")
    slots.release(2)
    slots.release(3)
    assert granted(slots.request(4)).profile.id == 100


def test_profiles_that_cannot_serve_the_stream_are_passed_over(clock: FakeClock):
    slots = AccountSlots(profile_account(1, [1, 1]), clock=clock)

    def default_only(profile: Profile) -> str | None:
        return "http://default/1.ts" if profile.id == 100 else None

    grant = granted(slots.request(1, default_only))
    assert (grant.profile.id, grant.url) == (100, "http://default/1.ts")
    assert slots.request(2, default_only) == Denial("no_usable_profile")
    # The room on the second login is not announced again and again ...
    assert slots.announce() == Announce()
    # ... but the default login freeing is.
    slots.release(1)
    assert slots.announce() == Announce(free=2)
    assert granted(slots.request(2, default_only)).profile.id == 100
