"""Dispatch with accounts that learn: a refused job waits in its queue, holding no slot."""

from __future__ import annotations

from actors.actions import Release
from actors.dispatch import CoordinatorSettings
from domain.models import ProbeOutcome
from tests.actors.desk import Desk

LEARNING = CoordinatorSettings(retries=1, busy_backoff=10.0, learn_providers=True)


def test_a_refused_job_goes_back_to_its_queue_at_once_with_no_backoff() -> None:
    desk = Desk({1: 1}, LEARNING, wakes=True)
    assert desk.start({1: 1}) == [("request", 1, 1), ("wake", LEARNING.max_wait)]
    desk.grant(1)
    # No retry timer: the account offers room when it has learned what it needs.
    assert desk.end(1, "busy", "http_458") == [("release", 1, 1), ("request", 1, 1)]
    desk.grant(1)
    assert desk.end(1, "ok") == [("release", 1, 1), ("finish", 1, "ok", None)]


def test_the_release_tells_the_account_how_the_check_ended() -> None:
    desk = Desk({1: 2}, LEARNING)
    desk.start({1: 1, 2: 1})
    desk.grant(1, 2)
    refused = desk.dispatch.check_finished(desk.leases[1], ProbeOutcome("busy", reason="http_403"))
    played = desk.dispatch.check_finished(desk.leases[2], ProbeOutcome("ok"))
    releases = [a for a in [*refused, *played] if isinstance(a, Release)]
    assert [r.release.outcome for r in releases] == ["busy", "ok"]


def test_refused_again_it_is_the_stream_it_backs_off_and_the_account_is_told() -> None:
    desk = Desk({1: 1}, LEARNING, wakes=True)
    desk.start({1: 1})
    desk.grant(1)
    first = desk.dispatch.check_finished(desk.leases[1], ProbeOutcome("busy", reason="http_403"))
    (release,) = [a.release for a in first if isinstance(a, Release)]
    assert (release.stream_id, release.repeated, release.again) == (1, False, False)
    assert desk.rows(first) == [("release", 1, 1), ("request", 1, 1)]  # at once, no backoff
    desk.grant(1)  # its account had room again
    again = desk.dispatch.check_finished(desk.leases[1], ProbeOutcome("busy", reason="http_403"))
    (release,) = [a.release for a in again if isinstance(a, Release)]
    # The stream, not the login.
    assert (release.stream_id, release.repeated, release.again) == (1, True, False)
    assert desk.rows(again) == [("release", 1, 1), ("wake", 10.0)]  # backs off, as before
    assert desk.at(10.0) == [("request", 1, 1), ("wake", LEARNING.max_wait)]
    desk.grant(1)
    assert desk.end(1, "busy", "http_403") == [
        ("release", 1, 1),
        ("finish", 1, "error", "provider_busy"),
    ]


def test_without_learning_busy_still_backs_off() -> None:
    desk = Desk({1: 1}, CoordinatorSettings(retries=2, busy_backoff=10.0), wakes=True)
    desk.start({1: 1})
    desk.grant(1)
    assert desk.end(1, "busy", "full") == [("release", 1, 1), ("wake", 10.0)]


def test_refused_again_while_another_check_runs_there_the_login_is_still_full() -> None:
    """A cap learned from incomplete counts: three open at once on a login whose real
    cap is 1, and stream 2's refusal comes before stream 3's, whose connection is still
    on its way. Stream 2 comes back with a limit of 2 and is refused next to stream 3:
    the login, not the stream. It goes back to its queue once more."""
    desk = Desk({1: 3}, LEARNING, wakes=True)
    desk.start({1: 1, 2: 1, 3: 1})
    desk.grant(1, 2, 3)
    assert desk.end(2, "busy", "http_458") == [("release", 1, 2), ("request", 1, 2)]
    desk.grant(2)  # the account had room by the limit it learned (2)
    again = desk.dispatch.check_finished(desk.leases[2], ProbeOutcome("busy", reason="http_458"))
    (release,) = [a.release for a in again if isinstance(a, Release)]
    # Stream 1 or 3 held the login: it is still full, and the refusal teaches again.
    assert (release.stream_id, release.repeated, release.again) == (2, False, True)
    assert desk.rows(again) == [("release", 1, 2), ("request", 1, 2)]  # no backoff
    desk.grant(2)
    assert desk.end(2, "ok") == [("release", 1, 2), ("finish", 2, "ok", None)]


def test_refused_a_third_time_it_is_the_stream_whatever_else_runs() -> None:
    desk = Desk({1: 3}, LEARNING, wakes=True)
    desk.start({1: 1, 2: 1})
    desk.grant(1, 2)
    for refused_before in (0, 1):
        rows = desk.dispatch.check_finished(desk.leases[2], ProbeOutcome("busy", reason="http_403"))
        (release,) = [a.release for a in rows if isinstance(a, Release)]
        assert (release.repeated, release.again) == (False, refused_before == 1)
        assert desk.rows(rows) == [("release", 1, 2), ("request", 1, 2)]  # stream 1 runs
        desk.grant(2)
    third = desk.dispatch.check_finished(desk.leases[2], ProbeOutcome("busy", reason="http_403"))
    (release,) = [a.release for a in third if isinstance(a, Release)]
    assert (release.repeated, release.again) == (True, False)
    assert desk.rows(third) == [("release", 1, 2), ("wake", 10.0)]  # backs off, as before
