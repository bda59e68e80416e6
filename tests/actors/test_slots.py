"""``AccountSlots`` on a fake clock: grants, denials, the stagger and the room it tells.

``announce()`` is what the account tells the coordinator after each message: the
change of the room count both sides keep (a request takes one, a release gives
one back), and why there is no room when that is not just a full account.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from actors.slots import UNLIMITED, AccountSlots, Announce, Denial, Grant, ViewerPolicy
from domain.models import Account, Profile
from tests.actors.fakes import FakeClock, profile_account, simple_account


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


def granted(answer: Grant | Denial) -> Grant:
    assert isinstance(answer, Grant), answer
    return answer


def test_grants_up_to_the_limit_then_denies_full(clock: FakeClock):
    slots = AccountSlots(simple_account(1, 2), clock=clock)
    assert slots.announce() == Announce(change=2)  # the room it starts with
    granted(slots.request(1))
    granted(slots.request(2))
    assert slots.announce() == Announce()  # each request took the room it was given
    assert slots.request(3) == Denial("full")  # asked on a count that was out of date
    assert slots.announce() == Announce(change=1)  # the count goes back to the real 0
    assert slots.release(1)
    assert slots.announce() == Announce()  # the coordinator counted the release itself
    assert not slots.release(1)  # twice frees nothing, but it was counted twice on both sides
    assert slots.announce() == Announce(change=-1)


def test_unlimited_profile_never_denies_and_its_room_does_not_churn(clock: FakeClock):
    slots = AccountSlots(simple_account(1, 0), clock=clock)
    assert slots.announce() == Announce(change=UNLIMITED)
    for lease_id in range(1, 50):
        granted(slots.request(lease_id))
    assert slots.announce() == Announce()
    slots.release(1)
    assert slots.announce() == Announce()


def test_checks_take_the_login_dispatcharr_hands_out_last_and_the_default_when_full(
    clock: FakeClock,
):
    # Dispatcharr gives a new viewer the default login first, then the others in
    # order: a check takes them the other way round.
    slots = AccountSlots(profile_account(1, [1, 1, 1]), clock=clock)
    assert granted(slots.request(1)).profile.id == 102
    assert granted(slots.request(2)).profile.id == 101
    assert granted(slots.request(3)).profile.id == 100
    assert slots.request(4) == Denial("full")
    slots.release(2)
    assert granted(slots.request(5)).profile.id == 101  # not the default's next


def test_stagger_denies_inside_the_window_and_wakes_after_it(clock: FakeClock):
    slots = AccountSlots(simple_account(1, 3), stagger_delay=1.0, clock=clock)
    assert slots.announce() == Announce(change=3)
    granted(slots.request(1))
    # Room, but no opening before the delay: the count goes to 0 until then.
    assert slots.announce() == Announce(change=-2, wake_in=1.0, short="stagger")
    assert slots.request(2) == Denial("stagger")  # one already on its way
    assert slots.announce() == Announce(change=1, wake_in=1.0, short="stagger")
    clock.advance(0.4)
    later = slots.announce()
    assert (later.change, later.short) == (0, "stagger")
    assert later.wake_in == pytest.approx(0.6)
    clock.advance(0.6)
    assert slots.announce() == Announce(change=2)
    granted(slots.request(2))
    assert slots.announce() == Announce(change=-1, wake_in=1.0, short="stagger")


def test_both_slots_are_offered_again_after_a_stagger_window(clock: FakeClock):
    """The defect the count fixes: after a cycle the coordinator knew of 1 slot of 2 and
    nothing announced the second one until a lease was released."""
    slots = AccountSlots(simple_account(1, 2), stagger_delay=1.0, clock=clock)
    assert slots.announce() == Announce(change=2)
    # Cycle 1: both slots used, then both released.
    granted(slots.request(1))
    assert slots.announce() == Announce(change=-1, wake_in=1.0, short="stagger")
    clock.advance(1.0)
    assert slots.announce() == Announce(change=1)
    granted(slots.request(2))
    clock.advance(5.0)
    slots.release(1)
    slots.release(2)
    assert slots.announce() == Announce()  # the coordinator counts 2: both slots
    # Cycle 2: the first grant holds the second slot back for the delay only.
    clock.advance(60.0)
    granted(slots.request(3))
    assert slots.announce() == Announce(change=-1, wake_in=1.0, short="stagger")
    clock.advance(1.0)
    assert slots.announce() == Announce(change=1)
    assert granted(slots.request(4)).profile.id == 100
    assert slots.usage() == {100: (0, 2, 2)}


def test_the_room_is_told_once_and_releases_are_not_told_at_all(clock: FakeClock):
    slots = AccountSlots(simple_account(1, 3), clock=clock)
    assert slots.announce() == Announce(change=3)
    assert slots.announce() == Announce()
    granted(slots.request(1))
    granted(slots.request(2))
    slots.release(1)
    slots.release(2)
    assert slots.announce() == Announce()


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
    assert slots.announce() == Announce(change=2)
    granted(slots.request(1))
    granted(slots.request(2))
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

    assert slots.announce() == Announce(change=2)
    grant = granted(slots.request(1, default_only))
    assert (grant.profile.id, grant.url) == (100, "http://default/1.ts")
    assert slots.request(2, default_only) == Denial("no_usable_profile")
    # The room on the second login is not offered again and again ...
    assert slots.announce() == Announce(short="no_usable_profile")
    # ... but the default login freeing is (the release counted as room on both sides).
    slots.release(1)
    assert slots.announce() == Announce()
    assert granted(slots.request(2, default_only)).profile.id == 100


# --- viewer counts unknown: fail closed --------------------------------------------

WAIT = ViewerPolicy(when_unknown="wait", margin=1, stale_after=30.0)


def waiting_slots(account: Account, clock: FakeClock, policy: ViewerPolicy = WAIT) -> AccountSlots:
    return AccountSlots(account, clock=clock, viewers=policy)


def test_before_the_first_viewer_read_nothing_is_granted(clock: FakeClock):
    slots = waiting_slots(simple_account(1, 2), clock)
    assert slots.viewer_state() == "never_read"
    assert slots.free() == 0
    assert slots.announce() == Announce(short="viewer_count_unknown")
    assert slots.request(1) == Denial("viewer_count_unknown")
    slots.set_viewers({})
    assert slots.viewer_state() == "known"
    assert slots.announce() == Announce(change=3)  # from the denied request's -1 to 2
    granted(slots.request(1))
    granted(slots.request(2))


@pytest.mark.parametrize(
    ("limit", "viewers", "leases", "free_while_unknown"),
    [
        (2, 0, 0, 1),  # one slot kept for a viewer who may have started
        (2, 0, 1, 0),
        (3, 1, 0, 1),  # limit - last viewers - leases - margin
        (3, 1, 1, 0),
        (4, 0, 1, 2),
        (1, 0, 0, 0),  # a single slot is never taken while unknown
        (0, 3, 5, UNLIMITED),  # an unlimited login has room for anyone
    ],
)
def test_while_reads_fail_room_is_what_the_last_counts_leave_after_the_margin(
    clock: FakeClock, limit: int, viewers: int, leases: int, free_while_unknown: int
):
    slots = waiting_slots(simple_account(1, limit), clock)
    slots.set_viewers({100: viewers})
    for lease_id in range(leases):
        granted(slots.request(lease_id))
    slots.viewers_unknown()
    assert slots.viewer_state() == "read_failed"
    assert slots.free() == free_while_unknown
    answer = slots.request(99)
    if free_while_unknown:
        granted(answer)
    else:
        assert answer == Denial("viewer_count_unknown" if limit - viewers - leases else "full")


def test_a_failed_read_takes_the_assumed_worst_counts(clock: FakeClock):
    slots = waiting_slots(simple_account(1, 3), clock)
    slots.set_viewers({100: 0})
    slots.viewers_unknown({100: 1})  # the watcher's worst recent snapshot
    assert slots.usage() == {100: (1, 0, 3)}
    assert slots.free() == 1


def test_margin_is_kept_on_the_login_a_new_viewer_would_get(clock: FakeClock):
    """Dispatcharr gives a new viewer the default login first (it does not see our
    connections), so the kept slot is there and a check may take the second login."""
    slots = waiting_slots(profile_account(1, [1, 1]), clock)
    slots.set_viewers({})
    slots.viewers_unknown()
    assert granted(slots.request(1)).profile.id == 101
    assert slots.request(2) == Denial("viewer_count_unknown")
    # A viewer known on the default login: the next one would get the second login.
    other = waiting_slots(profile_account(1, [1, 1]), clock)
    other.set_viewers({100: 1})
    other.viewers_unknown()
    assert other.free() == 0


def test_reads_recovering_announce_the_room_again(clock: FakeClock):
    slots = waiting_slots(simple_account(1, 2), clock)
    slots.set_viewers({})
    assert slots.announce() == Announce(change=2)
    granted(slots.request(1))  # 1 left in the count
    slots.viewers_unknown()
    # The slot left is kept for a viewer who may have started: the count goes to 0.
    assert slots.announce() == Announce(change=-1, short="viewer_count_unknown")
    slots.set_viewers({})
    assert slots.announce() == Announce(change=1)


def test_counts_not_refreshed_go_stale(clock: FakeClock):
    """A viewer watcher that stopped reading (hung or gone) is the same case."""
    slots = waiting_slots(simple_account(1, 2), clock)
    slots.set_viewers({})
    clock.advance(30.0)
    assert slots.viewer_state() == "known"
    clock.advance(0.5)
    assert slots.viewer_state() == "stale"
    assert slots.free() == 1
    slots.set_viewers({}, read_at=clock.now - 40.0)  # an old snapshot is stale at once
    assert slots.viewer_state() == "stale"
    slots.set_viewers({})
    assert slots.free() == 2


def test_last_known_policy_trusts_the_last_counts(clock: FakeClock):
    """The opt-in old behaviour: no margin, and nobody assumed before the first read."""
    slots = waiting_slots(simple_account(1, 2), clock, ViewerPolicy(when_unknown="last_known"))
    assert slots.viewer_state() == "known"
    granted(slots.request(1))
    slots.viewers_unknown({100: 0})
    granted(slots.request(2))


def test_failed_read_before_any_good_one_of_this_account_uses_the_assumed_counts(
    clock: FakeClock,
):
    """An account that starts during an outage hears of it with the worst recent counts."""
    slots = waiting_slots(simple_account(1, 2), clock)
    slots.viewers_unknown({100: 0})
    assert slots.viewer_state() == "read_failed"
    assert slots.free() == 1
    never = waiting_slots(simple_account(1, 2), clock)
    never.viewers_unknown(None)  # no good read anywhere yet
    assert never.viewer_state() == "never_read"
    assert never.free() == 0


@pytest.mark.parametrize(("poll_s", "stale_s"), [(5.0, 60.0), (20.0, 60.0), (30.0, 90.0)])
def test_counts_polled_every_so_often_go_stale_after_three_polls_and_a_minute_at_least(
    poll_s: float, stale_s: float
) -> None:
    policy = ViewerPolicy.polled_every(poll_s, "last_known")

    assert (policy.stale_after, policy.when_unknown) == (stale_s, "last_known")
    assert ViewerPolicy.polled_every(poll_s).when_unknown == "wait"
