"""Dispatch with accounts that learn: a refused job waits in its queue, holding no slot."""

from __future__ import annotations

from actors.dispatch import CoordinatorSettings, Release
from domain.models import ProbeOutcome
from tests.actors.desk import Desk

LEARNING = CoordinatorSettings(retries=2, busy_backoff=10.0, learn_providers=True, max_refusals=2)


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
    assert [r.outcome for r in releases] == ["busy", "ok"]


def test_a_job_refused_too_often_ends_as_provider_busy() -> None:
    desk = Desk({1: 1}, LEARNING)
    desk.start({1: 1})
    for _ in range(2):
        desk.grant(1)
        assert desk.end(1, "busy", "http_458") == [("release", 1, 1), ("request", 1, 1)]
    desk.grant(1)
    assert desk.end(1, "busy", "http_458") == [
        ("release", 1, 1),
        ("finish", 1, "error", "provider_busy"),
    ]


def test_without_learning_busy_still_backs_off() -> None:
    desk = Desk({1: 1}, CoordinatorSettings(retries=2, busy_backoff=10.0), wakes=True)
    desk.start({1: 1})
    desk.grant(1)
    assert desk.end(1, "busy", "full") == [("release", 1, 1), ("wake", 10.0)]
