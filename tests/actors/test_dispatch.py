"""Dispatch as a table: events in, actions out, a fake clock, no threads."""

from __future__ import annotations

import pytest

from actors.dispatch import CoordinatorSettings, spread
from domain.models import OutcomeKind
from tests.actors.desk import Desk

A1, A2, B1, B2, B3 = 1, 2, 3, 4, 5


def seed_desk() -> Desk:
    return Desk({1: 1, 2: 2})


def seed_streams() -> dict[int, int]:
    return {A1: 1, A2: 1, B1: 2, B2: 2, B3: 2}


def test_seed_first_wave_asks_each_account_for_what_it_has_room_for() -> None:
    desk = seed_desk()
    assert desk.start(seed_streams()) == [
        ("request", 1, A1),
        ("request", 2, B1),
        ("request", 2, B2),
    ]
    assert desk.grant(A1, B1, B2) == [("start", A1), ("start", B1), ("start", B2)]


def test_seed_a_freed_slot_goes_straight_to_the_accounts_next_job() -> None:
    desk = seed_desk()
    desk.start(seed_streams())
    desk.grant(A1, B1, B2)
    assert desk.end(A1) == [("release", 1, A1), ("finish", A1, "ok", None), ("request", 1, A2)]
    assert desk.grant(A2) == [("start", A2)]
    assert desk.end(B1) == [("release", 2, B1), ("finish", B1, "ok", None), ("request", 2, B3)]
    desk.grant(B3)
    assert desk.end(A2) == [("release", 1, A2), ("finish", A2, "ok", None)]
    assert desk.end(B2) == [("release", 2, B2), ("finish", B2, "ok", None)]
    assert not desk.dispatch.idle
    assert desk.end(B3) == [("release", 2, B3), ("finish", B3, "ok", None)]
    assert desk.dispatch.idle


def test_a_full_account_never_holds_back_another() -> None:
    desk = Desk({1: 1, 2: 3})
    rows = desk.start({1: 1, 2: 1, 3: 2, 4: 2, 5: 2, 6: 2})
    assert [r for r in rows if r[0] == "request"] == [
        ("request", 1, 1),
        ("request", 2, 3),
        ("request", 2, 4),
        ("request", 2, 5),
    ]
    desk.grant(1, 3, 4, 5)
    assert desk.end(3) == [("release", 2, 3), ("finish", 3, "ok", None), ("request", 2, 6)]


def test_denied_job_waits_until_the_account_has_room_again() -> None:
    """A stagger delay or a viewer: the account denies, and says when it has room."""
    desk = Desk({1: 2})
    desk.start({1: 1, 2: 1, 3: 1})
    desk.grant(1)
    assert desk.deny(2) == []  # the room of the denied request was used up
    assert desk.room(1, 1) == [("request", 1, 2)]
    assert desk.grant(2) == [("start", 2)]
    assert desk.end(1) == [("release", 1, 1), ("finish", 1, "ok", None), ("request", 1, 3)]


def test_room_shrinking_stops_requests_until_it_grows() -> None:
    desk = Desk({1: 3})
    desk.start({i: 1 for i in range(1, 7)})
    desk.grant(1, 2, 3)
    assert desk.room(1, -2) == []  # limit lowered to 1 while three run
    assert desk.end(1) == [("release", 1, 1), ("finish", 1, "ok", None)]
    assert desk.end(2) == [("release", 1, 2), ("finish", 2, "ok", None)]
    assert desk.end(3) == [("release", 1, 3), ("finish", 3, "ok", None), ("request", 1, 4)]
    assert desk.room(1, 2) == [("request", 1, 5), ("request", 1, 6)]  # raised again


def test_limits_raised_start_waiting_jobs_at_once() -> None:
    desk = Desk({1: 1})
    desk.start({1: 1, 2: 1, 3: 1, 4: 1})
    desk.grant(1)
    assert desk.room(1, 2) == [("request", 1, 2), ("request", 1, 3)]


def test_preempted_check_goes_back_to_the_queue_and_runs_again() -> None:
    desk = Desk({1: 2})
    desk.start({1: 1, 2: 1})
    desk.grant(1, 2)
    assert desk.preempt(2) == [("cancel", 2, "preempted")]
    assert desk.preempt(2) == []  # already being cancelled
    # The release gives room back and the job is asked for again at once; the
    # account, whose slot the viewer now holds, takes that room back and denies.
    assert desk.end(2, "cancelled", "preempted") == [("release", 1, 2), ("request", 1, 2)]
    assert desk.room(1, -1) == []
    assert desk.deny(2) == []
    assert desk.room(1, 1) == []  # the account's count after its denial: back to 0
    assert desk.end(1) == [("release", 1, 1), ("finish", 1, "ok", None), ("request", 1, 2)]
    desk.grant(2)
    assert desk.end(2) == [("release", 1, 2), ("finish", 2, "ok", None)]
    assert desk.dispatch.idle


def test_a_job_cancelled_too_often_ends_cancelled() -> None:
    desk = Desk({1: 1}, CoordinatorSettings(max_requeues=1))
    desk.start({1: 1})
    desk.grant(1)
    assert desk.end(1, "cancelled", "preempted") == [("release", 1, 1), ("request", 1, 1)]
    desk.grant(1)
    assert desk.end(1, "cancelled", "preempted") == [
        ("release", 1, 1),
        ("finish", 1, "cancelled", "preempted"),
    ]


def test_errors_are_retried_after_the_retry_delay_without_holding_a_slot() -> None:
    desk = Desk({1: 1}, CoordinatorSettings(retries=1, retry_delay=5.0), wakes=True)
    desk.start({1: 1, 2: 1})
    desk.grant(1)
    desk.clock.now = 1.0
    assert desk.end(1, "error", "http_500") == [
        ("release", 1, 1),
        ("request", 1, 2),  # the slot goes to the next job during the delay
        ("wake", 6.0),
    ]
    assert desk.grant(2) == [("start", 2)]
    assert desk.at(5.9) == [("wake", 6.0)]
    assert desk.at(6.0) == [("wake", 41.0)]  # due, but the account is busy: it waits its turn
    assert desk.end(2) == [("release", 1, 2), ("finish", 2, "ok", None), ("request", 1, 1)]
    desk.grant(1)
    assert desk.end(1, "error", "http_500") == [
        ("release", 1, 1),
        ("finish", 1, "error", "http_500"),
    ]


def test_provider_busy_backs_off_doubling_then_ends_as_an_error() -> None:
    desk = Desk({1: 1}, CoordinatorSettings(retries=2, busy_backoff=10.0), wakes=True)
    desk.start({1: 1})
    desk.grant(1)
    assert desk.end(1, "busy", "full") == [("release", 1, 1), ("wake", 10.0)]
    assert desk.at(10.0) == [("request", 1, 1), ("wake", 600.0)]
    desk.grant(1)
    assert desk.end(1, "busy", "full") == [("release", 1, 1), ("wake", 30.0)]
    assert desk.at(30.0) == [("request", 1, 1), ("wake", 600.0)]
    desk.grant(1)
    assert desk.end(1, "busy", "full") == [
        ("release", 1, 1),
        ("finish", 1, "error", "provider_busy"),
    ]


@pytest.mark.parametrize(
    ("kind", "reason", "final"),
    [
        ("ok", None, ("ok", None)),
        ("dead", "http_404", ("dead", "http_404")),
        ("dead", "timeout", ("dead", "timeout")),
        ("error", "probe_crashed: RuntimeError", ("error", "probe_crashed: RuntimeError")),
        ("busy", "full", ("error", "provider_busy")),
    ],
)
def test_every_final_outcome_releases_once_and_finishes_once(
    kind: OutcomeKind, reason: str | None, final: tuple[str, str | None]
) -> None:
    desk = Desk({1: 1}, CoordinatorSettings(retries=0))
    desk.start({1: 1})
    desk.grant(1)
    assert desk.end(1, kind, reason) == [("release", 1, 1), ("finish", 1, *final)]
    assert desk.end(1) == []  # a second report changes nothing
    assert desk.dispatch.idle


def test_a_check_past_its_deadline_is_cancelled_then_given_up() -> None:
    settings = CoordinatorSettings(
        check_duration=10, check_timeout=5, unresponsive_grace=3, retries=0
    )
    desk = Desk({1: 1}, settings, wakes=True)
    desk.start({1: 1, 2: 1})
    assert desk.grant(1) == [("start", 1), ("wake", 15.0)]
    assert desk.at(14.9) == [("wake", 15.0)]
    assert desk.at(15.0) == [("cancel", 1, "timeout"), ("wake", 18.0)]
    assert desk.at(18.0) == [
        ("abandon", 1),
        ("release", 1, 1),
        ("finish", 1, "error", "probe_unresponsive"),
        ("request", 1, 2),
        ("wake", 600.0),
    ]
    assert desk.end(1, "dead", "timeout") == []  # too late: its run is over


def test_a_check_that_reports_after_its_timeout_cancel_ends_as_reported() -> None:
    settings = CoordinatorSettings(check_duration=10, check_timeout=5)
    desk = Desk({1: 1}, settings, wakes=True)
    desk.start({1: 1})
    desk.grant(1)
    assert desk.at(15.0) == [("cancel", 1, "timeout"), ("wake", 30.0)]
    assert desk.end(1, "dead", "timeout") == [("release", 1, 1), ("finish", 1, "dead", "timeout")]
    assert desk.at(30.0) == []  # its deadline went with it


def test_global_budget_counts_requests_in_flight_and_running_checks() -> None:
    desk = Desk({1: 0, 2: 3, 3: 3}, CoordinatorSettings(global_limit=2), capacity={1: 10**6})
    desk.room(1, 10**6)
    first = desk.requested(desk.start({i: 1 + i % 3 for i in range(1, 10)}))
    assert len(first) == 2
    desk.grant(*first)
    assert len(desk.requested(desk.end(first[0]))) == 1
    assert desk.dispatch.counts() == {"running": 1, "requests_in_flight": 1, "delayed": 0}


def test_under_a_binding_budget_the_account_with_most_work_per_slot_goes_first() -> None:
    """One big account (40 short checks, 2 slots) and ten small ones (2 long checks, 1 slot)."""
    history = {i: 0.15 for i in range(1, 41)} | {i: 0.4 for i in range(41, 61)}
    desk = Desk(
        {1: 2} | {a: 1 for a in range(2, 12)}, CoordinatorSettings(global_limit=6), history=history
    )
    streams = {i: 1 for i in range(1, 41)} | {41 + i: 2 + i // 2 for i in range(20)}
    rows = desk.start(streams)
    accounts = [r[1] for r in rows if r[0] == "request"]
    assert accounts[:2] == [1, 1]  # the big account is the critical path: both its slots
    assert len(accounts) == 6
    assert len(set(accounts[2:])) == 4  # then four small accounts, one slot each


def asked(rows: list[tuple[object, ...]]) -> int:
    """The stream of the last row, a lease request."""
    kind, _account, stream = rows[-1]
    assert kind == "request"
    assert isinstance(stream, int)
    return stream


def test_an_accounts_shortest_checks_go_last_longest_first() -> None:
    # Twenty checks of 1-20 s on one slot: the shortest six (30 %, and at least
    # four per slot) are its tail, run 6, 5, ... 1 s.
    history = {stream: float(stream) for stream in range(1, 21)}
    desk = Desk({1: 1}, history=history)
    order = [asked(desk.start({stream: 1 for stream in history}))]
    for _ in range(19):
        desk.grant(order[-1])
        order.append(asked(desk.end(order[-1])))
    assert order[-6:] == [6, 5, 4, 3, 2, 1]
    # ... and the longer ones before them in the order their lengths spread them to.
    assert order[:14] == sorted(range(7, 21), key=lambda stream: spread(float(stream)))
    assert order[:14] != sorted(range(7, 21), reverse=True)


def test_an_account_with_few_checks_per_slot_runs_them_longest_first() -> None:
    history = {stream: float(stream) for stream in range(1, 11)}
    desk = Desk({1: 3}, history=history)  # ten checks on three slots: all in the tail
    first = [row[2] for row in desk.start({stream: 1 for stream in history})]
    assert first == [10, 9, 8]


def test_checks_as_long_as_each_other_keep_their_jobs_order() -> None:
    desk = Desk({1: 1}, history={1: 2.0, 2: 2.0, 3: 2.0})
    assert desk.start({1: 1, 2: 1, 3: 1}) == [("request", 1, 1)]
    desk.grant(1)
    assert desk.end(1)[-1] == ("request", 1, 2)


def test_a_denied_job_gets_its_turn_back_before_the_others_of_its_rank() -> None:
    desk = Desk({1: 1}, history={stream: float(stream) for stream in range(1, 11)})
    first = asked(desk.start({stream: 1 for stream in range(1, 11)}))
    desk.deny(first)
    assert desk.room(1, 1)[-1] == ("request", 1, first)


def test_abort_cancels_running_and_ends_waiting_and_asked_for_jobs() -> None:
    desk = Desk({1: 2})
    desk.start({1: 1, 2: 1, 3: 1})
    desk.grant(1)  # 2 is asked for, 3 waits
    assert desk.rows(desk.dispatch.abort("shutdown")) == [
        ("finish", 3, "cancelled", "shutdown"),
        ("cancel", 1, "shutdown"),
    ]
    assert desk.grant(2) == [("release", 1, 2), ("finish", 2, "cancelled", "shutdown")]
    assert desk.end(1, "cancelled", "shutdown") == [
        ("release", 1, 1),
        ("finish", 1, "cancelled", "shutdown"),
    ]
    assert desk.dispatch.idle


def test_max_wait_ends_waiting_jobs_and_lets_running_ones_finish() -> None:
    desk = Desk({1: 1}, CoordinatorSettings(max_wait=30.0, retries=1, retry_delay=1.0))
    desk.start({1: 1, 2: 1, 3: 1})
    desk.grant(1)
    assert desk.at(30.0) == [
        ("finish", 2, "cancelled", "no_free_slot"),
        ("finish", 3, "cancelled", "no_free_slot"),
    ]
    assert desk.dispatch.draining == "no_free_slot"
    assert desk.end(1, "error", "http_500") == [  # not retried any more
        ("release", 1, 1),
        ("finish", 1, "error", "http_500"),
    ]
    assert desk.dispatch.idle


def test_a_retired_account_ends_its_waiting_jobs_and_drops_once_idle() -> None:
    desk = Desk({1: 1})
    desk.start({1: 1, 2: 1})
    desk.grant(1)
    assert desk.rows(desk.dispatch.retire_account(1)) == [("finish", 2, "error", "account_removed")]
    assert desk.end(1) == [("release", 1, 1), ("finish", 1, "ok", None), ("drop", 1)]


def test_jobs_of_an_unknown_account_end_as_errors() -> None:
    desk = Desk({1: 1})
    assert desk.start({1: 1, 2: 7}) == [
        ("finish", 2, "error", "unknown_account"),
        ("request", 1, 1),
    ]


def test_a_lost_account_actor_costs_its_requests_and_queue() -> None:
    desk = Desk({1: 2, 2: 1})
    desk.start({1: 1, 2: 1, 3: 1, 4: 2})
    desk.grant(1)
    assert desk.rows(desk.dispatch.account_lost(1, "account_actor_failed")) == [
        ("finish", 2, "error", "account_actor_failed"),
        ("finish", 3, "error", "account_actor_failed"),
    ]
    assert desk.grant(4) == [("start", 4)]  # the other account goes on
    assert desk.end(1) == [("release", 1, 1), ("finish", 1, "ok", None)]
    assert desk.dispatch.can_restart(1)


def test_the_global_budget_a_lost_account_held_goes_to_another_at_once() -> None:
    desk = Desk({1: 2, 2: 2}, CoordinatorSettings(global_limit=2))
    assert desk.requested(desk.start({1: 1, 2: 1, 3: 2, 4: 2})) == [1, 3]
    rows = desk.rows(desk.dispatch.account_lost(1, "account_actor_dead"))
    assert [row for row in rows if row[0] == "finish"] == [
        ("finish", 1, "error", "account_actor_dead"),
        ("finish", 2, "error", "account_actor_dead"),
    ]
    assert desk.requested(rows) == [4]  # not at the next event: there may be none for long


def test_a_grant_for_a_request_given_up_is_handed_back() -> None:
    desk = Desk({1: 1})
    desk.start({1: 1})
    desk.dispatch.account_lost(1, "account_actor_dead")
    assert desk.grant(1) == [("release", 1, 1)]


def test_the_first_cycle_after_a_restart_is_ordered_by_the_stored_check_times() -> None:
    desk = Desk({1: 1}, history={2: 30.0})
    assert desk.start({1: 1, 2: 1})[0] == ("request", 1, 2)


def test_check_times_are_learnt_for_the_next_cycle() -> None:
    desk = Desk({1: 1})
    desk.start({1: 1, 2: 1})
    desk.grant(1)
    desk.clock.now = 2.0
    desk.end(1)
    desk.grant(2)
    desk.clock.now = 9.0
    desk.end(2, "dead", "http_404")
    assert desk.dispatch.history == {1: 2.0, 2: 7.0}
    assert desk.start({1: 1, 2: 1})[0] == ("request", 1, 2)


def test_a_refused_login_ends_the_accounts_jobs_unopened_and_retries_nothing() -> None:
    desk = Desk({1: 2, 2: 1}, CoordinatorSettings(retries=2, retry_delay=1.0))
    desk.start({1: 1, 2: 1, 3: 1, 4: 1, 5: 2})
    desk.grant(1, 2, 5)
    assert desk.end(2, "error", "http_500") == [("release", 1, 2), ("request", 1, 3)]
    assert desk.end(1, "error", "account_unauthorized") == [
        ("release", 1, 1),
        ("finish", 4, "error", "account_unauthorized"),  # waiting
        ("finish", 2, "error", "account_unauthorized"),  # delayed for its retry
        ("finish", 1, "error", "account_unauthorized"),
    ]
    assert desk.grant(3) == [("release", 1, 3), ("finish", 3, "error", "account_unauthorized")]
    assert desk.end(5) == [("release", 2, 5), ("finish", 5, "ok", None)]  # others go on
    assert desk.dispatch.idle
    status = desk.dispatch.account_status(1)
    assert status["unauthorized"] is True
    desk.start({1: 1})  # the next cycle tries the login again
    assert desk.dispatch.account_status(1)["unauthorized"] is False


def test_an_error_abort_ends_the_jobs_as_errors() -> None:
    """An actor the cycle needs died: every job ends ``error`` with the reason."""
    desk = Desk({1: 1})
    desk.start({1: 1, 2: 1})
    desk.grant(1)
    assert desk.rows(desk.dispatch.abort("result_sink_failed", error=True)) == [
        ("finish", 2, "error", "result_sink_failed"),
        ("cancel", 1, "result_sink_failed"),
    ]
    assert desk.end(1, "cancelled", "result_sink_failed") == [
        ("release", 1, 1),
        ("finish", 1, "error", "result_sink_failed"),
    ]


def test_the_account_says_why_its_jobs_wait() -> None:
    desk = Desk({1: 0})
    desk.start({1: 1})
    assert desk.rows(desk.dispatch.room_changed(1, 0, "viewer_count_unknown")) == []
    assert desk.dispatch.account_status(1)["waiting_for"] == "viewer_count_unknown"
    assert desk.rows(desk.dispatch.room_changed(1, 1, None)) == [("request", 1, 1)]
    desk.grant(1)
    assert desk.dispatch.account_status(1)["waiting_for"] is None
