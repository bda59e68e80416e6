"""ProviderLearning: event in, lesson out, on a fake clock (no threads, milliseconds)."""

from __future__ import annotations

import pytest

from actors.learning import LearnedLogin, LearningSettings, ProviderLearning
from tests.actors.fakes import FakeClock

P = 11
"""The login (profile id) most tests use."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


def learner(clock: FakeClock, **settings: float) -> ProviderLearning:
    return ProviderLearning(clock, LearningSettings(**settings))


# --- the effective limit ------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "held_at_refusals", "expected"),
    [
        (3, [1], 1),  # real cap 1 under a configured 3: one refusal, one step down
        (3, [2, 1], 1),  # a burst of openings: the second refusal lowers further
        (3, [2], 2),
        (3, [1, 2], 1),  # never raised by a refusal
        (0, [4], 4),  # an unlimited login learns a cap too
        (2, [2], 2),  # viewers came in: nothing to lower
    ],
)
def test_a_refusal_lowers_the_limit_to_what_was_held(clock, configured, held_at_refusals, expected):
    learning = learner(clock)
    for held in held_at_refusals:
        learning.refused(P, held=held, configured=configured)
    assert learning.limit(P, configured) == expected


def test_lessons_say_what_changed(clock):
    learning = learner(clock)
    assert learning.refused(P, held=2, configured=3).lesson == "lowered"
    assert learning.refused(P, held=2, configured=3).lesson == "none"
    assert learning.limit(P, 3) == 2


def test_logins_learn_separately_and_others_keep_their_limit(clock):
    learning = learner(clock)
    learning.refused(P, held=1, configured=3)
    assert learning.limit(P, 3) == 1
    assert learning.limit(12, 3) == 3
    assert learning.status({P: 3, 12: 3}) == {
        P: {"learned_limit": 1, "release_lag_s": 0.0},
        12: {"learned_limit": None, "release_lag_s": 0.0},
    }


def test_a_configured_limit_below_the_learned_one_wins(clock):
    learning = learner(clock)
    learning.refused(P, held=2, configured=4)
    assert learning.limit(P, 1) == 1


def test_after_a_quiet_period_it_probes_one_step_up_never_above_configured(clock):
    learning = learner(clock, quiet_period_s=60)
    learning.refused(P, held=1, configured=3)
    clock.advance(59.9)
    assert not learning.probe_up(P, 3)
    assert learning.limit(P, 3) == 1
    clock.advance(0.1)
    assert learning.probe_up(P, 3)
    assert learning.limit(P, 3) == 2
    assert not learning.probe_up(P, 3)  # the next step needs another quiet period
    clock.advance(60)
    assert learning.probe_up(P, 3)
    assert learning.limit(P, 3) == 3
    assert learning.snapshot() == []  # back at the configured limit: nothing learned
    clock.advance(600)
    assert not learning.probe_up(P, 3)
    assert learning.limit(P, 3) == 3


def test_a_refusal_restarts_the_quiet_period(clock):
    learning = learner(clock, quiet_period_s=60)
    learning.refused(P, held=2, configured=3)
    clock.advance(50)
    learning.refused(P, held=1, configured=3)
    clock.advance(50)
    assert not learning.probe_up(P, 3)
    clock.advance(10)
    assert learning.probe_up(P, 3)
    assert learning.limit(P, 3) == 2


def test_probing_up_and_refused_again_costs_one_refusal_per_step(clock):
    learning = learner(clock, quiet_period_s=60)
    learning.refused(P, held=1, configured=3)
    clock.advance(60)
    assert learning.probe_up(P, 3)
    assert learning.refused(P, held=1, configured=3).lesson == "lowered"
    assert learning.limit(P, 3) == 1


def test_nothing_learned_leaves_the_configured_limit_and_no_grace(clock):
    learning = learner(clock)
    learning.opened(P)
    learning.closed(P)  # a dead stream's connection closing is just a close
    learning.succeeded(P)
    assert learning.limit(P, 2) == 2
    assert learning.release_lag(P) == 0.0
    assert learning.cooling(P) == 0
    assert learning.snapshot() == []
    assert not learning.probe_up(P, 2)


# --- the release lag -----------------------------------------------------------------


def test_a_refusal_right_after_our_close_teaches_a_release_lag_not_a_lower_limit(clock):
    learning = learner(clock, first_grace_s=3.0)
    learning.opened(P)
    assert learning.closed(P) is None  # no grace known yet: the slot is free at once
    clock.advance(0.02)
    refused = learning.refused(P, held=1, configured=2)
    assert refused.lesson == "release_lag"
    assert refused.release_lag_s == 3.0
    assert learning.limit(P, 2) == 2
    # The slot our close freed waits the grace out, counted from the close.
    assert learning.cooling(P) == 1
    assert learning.next_change() == pytest.approx(clock.now - 0.02 + 3.0)
    clock.advance(2.97)
    assert learning.cooling(P) == 1
    clock.advance(0.02)
    assert learning.cooling(P) == 0
    assert learning.next_change() is None


def test_every_later_close_waits_the_grace(clock):
    learning = learner(clock, first_grace_s=3.0)
    learning.closed(P)
    clock.advance(0.01)
    learning.refused(P, held=0, configured=2)
    clock.advance(10)
    assert learning.cooling(P) == 0
    until = learning.closed(P)
    assert until == clock.now + 3.0
    assert learning.cooling(P) == 1


def test_a_long_measured_gap_sets_twice_the_gap(clock):
    learning = learner(clock, first_grace_s=3.0)
    learning.closed(P)
    clock.advance(2.5)
    assert learning.refused(P, held=0, configured=1).release_lag_s == 5.0


def test_closes_before_the_lesson_also_cool(clock):
    learning = learner(clock, first_grace_s=3.0)
    learning.closed(P)  # check A
    clock.advance(0.01)
    learning.closed(P)  # check B, closed before the refusal came back
    clock.advance(0.05)
    learning.refused(P, held=0, configured=2)
    assert learning.cooling(P) == 2


def test_a_refusal_of_a_connection_granted_before_the_lesson_teaches_nothing_more(clock):
    learning = learner(clock, first_grace_s=3.0)
    learning.closed(P)
    clock.advance(0.01)
    granted_early = clock.now
    clock.advance(0.05)
    assert learning.refused(P, held=0, configured=2).lesson == "release_lag"
    clock.advance(0.05)
    second = learning.refused(P, held=0, configured=2, granted_at=granted_early)
    assert second.lesson == "release_lag"
    assert (second.release_lag_s, learning.limit(P, 2), learning.held(P)) == (3.0, 2, False)


def test_refused_after_the_grace_with_nothing_held_grows_the_grace(clock):
    learning = learner(clock, first_grace_s=3.0, max_grace_s=10.0)
    learning.closed(P)
    clock.advance(0.01)
    learning.refused(P, held=0, configured=1)
    clock.advance(3.0)
    granted = clock.now
    clock.advance(0.05)
    refused = learning.refused(P, held=0, configured=1, granted_at=granted)
    assert refused.lesson == "longer_lag"
    assert refused.release_lag_s == pytest.approx(2 * 3.06)
    learning.closed(P)
    clock.advance(6.2)
    assert learning.refused(P, held=0, configured=1, granted_at=clock.now).release_lag_s == 10.0


def test_refused_after_the_grace_with_others_held_lowers_the_limit(clock):
    # Taken for a lag at first, the second refusal shows the real cap.
    learning = learner(clock, first_grace_s=3.0)
    learning.closed(P)
    clock.advance(0.01)
    assert learning.refused(P, held=1, configured=3).lesson == "release_lag"
    clock.advance(3.0)
    refused = learning.refused(P, held=1, configured=3, granted_at=clock.now)
    assert refused.lesson == "lowered"
    assert learning.limit(P, 3) == 1


def test_a_slot_in_its_grace_counts_as_held_when_a_third_slot_is_refused(clock):
    # Configured 3, real cap 2, release lag known: one running, one cooling.
    learning = learner(clock, first_grace_s=3.0)
    learning.closed(P)
    clock.advance(0.01)
    learning.refused(P, held=1, configured=3)
    clock.advance(5)
    learning.closed(P)
    clock.advance(0.5)
    refused = learning.refused(P, held=1, configured=3, granted_at=clock.now)
    assert (refused.lesson, learning.limit(P, 3)) == ("lowered", 2)


def learned_grace(clock: FakeClock, grace: float, **settings: float) -> ProviderLearning:
    """A login that learned a release grace of ``grace`` (first one, then grown)."""
    learning = learner(clock, **settings)
    learning.closed(P)
    clock.advance(grace / 2)  # a gap of half the grace: the first grace is twice the gap
    assert learning.refused(P, held=0, configured=1).release_lag_s == grace
    return learning


def test_a_quiet_period_halves_the_grace_down_to_none(clock):
    # A provider's lag can pass: before, a grace learned once was waited out
    # after every check on that login for ever (30 s at most, per check).
    learning = learned_grace(clock, 12.0, quiet_period_s=600, first_grace_s=3.0)
    clock.advance(599)
    assert not learning.relax_grace(P)
    clock.advance(1)
    steps = [learning.relax_grace(P), learning.relax_grace(P)]  # one step per quiet period
    assert steps == [True, False]
    assert learning.release_lag(P) == 6.0
    clock.advance(600)
    assert learning.relax_grace(P)
    assert learning.release_lag(P) == 3.0
    clock.advance(600)
    assert learning.relax_grace(P)
    assert learning.release_lag(P) == 0.0  # half of 3 s is below first_grace_s: none
    clock.advance(600)
    assert not learning.relax_grace(P)
    assert learning.snapshot() == []  # nothing learned is left to keep


def test_a_lag_refusal_after_relaxing_puts_the_grace_back(clock):
    learning = learned_grace(clock, 12.0, quiet_period_s=600, first_grace_s=3.0)
    clock.advance(600)
    assert learning.relax_grace(P)
    learning.closed(P)
    clock.advance(7.0)  # the provider still counts it after the relaxed 6 s
    refused = learning.refused(P, held=0, configured=1)
    assert (refused.lesson, refused.release_lag_s, learning.limit(P, 1)) == ("release_lag", 12.0, 1)
    assert learning.cooling(P) == 1  # the slot freed 7 s ago waits the 12 s out
    clock.advance(599)
    assert not learning.relax_grace(P)  # the quiet period starts again at the refusal


def test_a_refusal_keeps_the_grace_from_relaxing(clock):
    learning = learned_grace(clock, 6.0, quiet_period_s=600, first_grace_s=3.0)
    clock.advance(500)
    learning.refused(P, held=1, configured=3)  # anything "full" on the login
    clock.advance(200)
    assert not learning.relax_grace(P)
    clock.advance(400)
    assert learning.relax_grace(P)


def test_a_restored_grace_relaxes_too(clock):
    snapshot = [LearnedLogin(P, limit=None, release_lag_s=8.0, since_refusal_s=550.0)]
    restored = ProviderLearning(clock, LearningSettings(quiet_period_s=600), snapshot)
    clock.advance(49)
    assert not restored.relax_grace(P)
    clock.advance(1)
    assert restored.relax_grace(P)
    assert restored.release_lag(P) == 4.0


def test_a_limit_probed_up_and_a_grace_relaxed_never_come_together(clock):
    # Both wait a quiet period; taken together, the refusal a too-high limit
    # then earns would be read as a lag (the grace back, the limit left high).
    learning = learned_grace(clock, 6.0, quiet_period_s=600, first_grace_s=3.0)
    # A "full" with one check held and the closed slot still cooling: the cap is 2.
    learning.refused(P, held=1, configured=4)
    assert learning.limit(P, 4) == 2
    clock.advance(600)
    assert learning.probe_up(P, 4)
    assert not learning.relax_grace(P)  # the next quiet period is the grace's
    clock.advance(600)
    assert learning.relax_grace(P)
    assert not learning.probe_up(P, 4)
    assert (learning.limit(P, 4), learning.release_lag(P)) == (3, 3.0)


def test_a_relaxed_grace_waits_a_quiet_period_again_after_a_restart(clock):
    learning = learned_grace(clock, 12.0, quiet_period_s=600, first_grace_s=3.0)
    clock.advance(600)
    assert learning.relax_grace(P)
    clock.advance(10)
    restored = ProviderLearning(clock, LearningSettings(quiet_period_s=600), learning.snapshot())
    assert restored.release_lag(P) == 6.0
    assert not restored.relax_grace(P)  # 10 s after the last step, not a quiet period
    clock.advance(590)
    assert restored.relax_grace(P)


def test_a_close_after_the_refused_connection_was_granted_is_no_release_lag(clock):
    # Three checks granted at once on a login whose real cap is 1; one of them
    # ends (closes) just before the refusal of another is heard. That close came
    # after the refused connection was granted: it cannot linger in the count,
    # the cap can. Seen in CI: read as a lag, the limit stayed 3 and a stream
    # was refused twice.
    learning = learner(clock, first_grace_s=3.0)
    granted = clock.now
    clock.advance(0.5)
    learning.closed(P)  # stream 1 ends
    clock.advance(0.05)
    refused = learning.refused(P, held=1, configured=3, granted_at=granted)  # stream 3
    assert (refused.lesson, learning.limit(P, 3), learning.release_lag(P)) == ("lowered", 1, 0.0)


def test_a_close_long_ago_is_no_release_lag(clock):
    learning = learner(clock, lag_window_s=10.0)
    learning.closed(P)
    clock.advance(10.5)
    assert learning.refused(P, held=1, configured=2).lesson == "lowered"
    assert learning.release_lag(P) == 0.0


# --- holds -------------------------------------------------------------------------


def test_a_refusal_nothing_of_ours_explains_holds_the_login_doubling(clock):
    learning = learner(clock, hold_s=10.0, max_hold_s=25.0)
    refused = learning.refused(P, held=0, configured=2)
    assert (refused.lesson, refused.hold_until) == ("held", clock.now + 10.0)
    assert learning.held(P)
    assert learning.next_change() == clock.now + 10.0
    assert learning.limit(P, 2) == 2  # held, not lowered: the cap itself is unknown
    clock.advance(10.0)
    assert not learning.held(P)
    learning.opened(P)
    assert learning.refused(P, held=0, configured=2).hold_until == clock.now + 20.0
    clock.advance(20.0)
    assert learning.refused(P, held=0, configured=2).hold_until == clock.now + 25.0
    learning.succeeded(P)
    clock.advance(25.0)
    assert learning.refused(P, held=0, configured=2).hold_until == clock.now + 10.0


# --- over a restart ----------------------------------------------------------------


def test_snapshot_and_restore_keep_limits_grace_and_the_quiet_period(clock):
    learning = learner(clock, quiet_period_s=60, first_grace_s=3.0)
    learning.refused(P, held=1, configured=3)
    learning.closed(12)
    clock.advance(0.01)
    learning.refused(12, held=0, configured=1)
    clock.advance(20)
    snapshot = learning.snapshot()
    assert [(s.profile_id, s.limit, s.release_lag_s) for s in snapshot] == [
        (P, 1, 0.0),
        (12, None, 3.0),
    ]
    assert [s.since_refusal_s for s in snapshot] == pytest.approx([20.01, 20.0])
    # A new process, a new clock: what is left of the quiet period carries over.
    fresh = FakeClock(5.0)
    restored = ProviderLearning(fresh, LearningSettings(quiet_period_s=60), snapshot)
    assert restored.limit(P, 3) == 1
    assert restored.release_lag(12) == 3.0
    assert restored.cooling(12) == 0  # closes of the old process are gone
    fresh.advance(39.9)
    assert not restored.probe_up(P, 3)
    fresh.advance(0.2)
    assert restored.probe_up(P, 3)
    assert restored.limit(P, 3) == 2


def test_restored_values_are_clamped(clock):
    bad = [LearnedLogin(P, limit=0, release_lag_s=500.0, since_refusal_s=-5)]
    restored = ProviderLearning(clock, LearningSettings(max_grace_s=30.0), bad)
    assert restored.limit(P, 3) == 1
    assert restored.release_lag(P) == 30.0


# --- a stream the provider refuses on its own ------------------------------------


def test_a_stream_refused_again_undoes_what_its_first_refusal_taught(clock):
    learning = learner(clock)
    assert learning.refused(P, held=1, configured=2, stream_id=5).lesson == "lowered"
    assert learning.limit(P, 2) == 1
    # Checked again once the login had room as learned, and refused again.
    clock.advance(4)
    again = learning.refused(P, held=0, configured=2, stream_id=5, repeated=True)
    assert again.lesson == "forgiven"
    assert learning.limit(P, 2) == 2
    assert learning.snapshot() == []


def test_undoing_a_hold_and_a_grace(clock):
    learning = learner(clock, first_grace_s=3.0)
    assert learning.refused(P, held=0, configured=2, stream_id=5).lesson == "held"
    learning.refused(P, held=0, configured=2, stream_id=5, repeated=True)
    assert not learning.held(P)
    learning.closed(P)
    clock.advance(0.01)
    assert learning.refused(P, held=1, configured=2, stream_id=6).lesson == "release_lag"
    assert learning.cooling(P) == 1
    assert learning.refused(P, held=0, configured=2, stream_id=6, repeated=True).lesson == (
        "forgiven"
    )
    assert (learning.release_lag(P), learning.cooling(P)) == (0.0, 0)


def test_each_stream_takes_back_only_its_own_evidence(clock):
    learning = learner(clock)
    learning.refused(P, held=2, configured=3, stream_id=5)  # lowered to 2
    learning.refused(P, held=1, configured=3, stream_id=6)  # lowered to 1
    # Stream 5 is refused on its own: its evidence (cap <= 2) goes, stream 6's stands.
    assert learning.refused(P, held=0, configured=3, stream_id=5, repeated=True).lesson == (
        "forgiven"
    )
    assert learning.limit(P, 3) == 1
    learning.refused(P, held=1, configured=3, stream_id=7)  # nothing new: not a lesson
    assert learning.refused(P, held=0, configured=3, stream_id=6, repeated=True).lesson == (
        "forgiven"
    )
    assert learning.limit(P, 3) == 3  # no evidence left: as configured
    assert learning.refused(P, held=0, configured=3, stream_id=8, repeated=True).lesson == "none"


def test_streams_refused_on_their_own_leave_no_lower_limit_behind(clock):
    # Two channels outside the subscription each answer 403 while others run:
    # each first refusal lowers the limit; retried, each is forgiven, in any order.
    learning = learner(clock)
    assert learning.refused(P, held=4, configured=5, stream_id=21).lesson == "lowered"
    assert learning.refused(P, held=3, configured=5, stream_id=22).lesson == "lowered"
    assert learning.limit(P, 5) == 3
    for stream_id in (21, 22):
        again = learning.refused(P, held=0, configured=5, stream_id=stream_id, repeated=True)
        assert again.lesson == "forgiven"
    assert learning.limit(P, 5) == 5
    assert learning.snapshot() == []


@pytest.mark.parametrize(
    ("again", "gap_s", "left"),
    [
        # Refused again in the cycle next to another of our checks (the dispatch
        # sent it back once more): a lower cap; forgiving the stream takes back both.
        (True, 5.0, (3, 0.0)),
        # Its refusal of a later cycle, its first there: only that lesson is undone,
        # the release lag of the cycle before stands.
        (False, 60.0, (3, 3.0)),
    ],
)
def test_forgiving_a_stream_undoes_what_its_refusals_of_the_cycle_taught(clock, again, gap_s, left):
    learning = learner(clock, first_grace_s=3.0)
    learning.closed(P)
    clock.advance(0.01)
    assert learning.refused(P, held=1, configured=3, stream_id=5).lesson == "release_lag"
    clock.advance(gap_s)
    second = learning.refused(P, held=1, configured=3, stream_id=5, again=again)
    assert second.lesson == "lowered"
    assert (learning.limit(P, 3), learning.release_lag(P)) == (1, 3.0)
    clock.advance(5)
    third = learning.refused(P, held=0, configured=3, stream_id=5, repeated=True)
    assert third.lesson == "forgiven"
    assert (learning.limit(P, 3), learning.release_lag(P)) == left


def test_a_stream_refused_again_with_nothing_held_on_its_login_is_the_stream(clock):
    # ``again``: another of our checks ran on the account, but on another login.
    learning = learner(clock)
    assert learning.refused(P, held=1, configured=2, stream_id=5).lesson == "lowered"
    clock.advance(4)
    again = learning.refused(P, held=0, configured=2, stream_id=5, again=True)
    assert again.lesson == "forgiven"
    assert learning.limit(P, 2) == 2
