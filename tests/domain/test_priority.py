"""Job priority and the stable-stream decision, as tables."""

from __future__ import annotations

import pytest

from domain.priority import LastCheck, Seen, due, is_stable, job_priority, priority

OLD = "2026-01-01T00:00:00Z"
NEW = "2026-01-02T00:00:00Z"


def test_priority_order_marked_never_failed_then_oldest_first():
    streams = {
        "rest_new": (False, LastCheck("ok", NEW)),
        "rest_old": (False, LastCheck("ok", OLD)),
        "dead_new": (False, LastCheck("dead", NEW)),
        "error_old": (False, LastCheck("error", OLD)),
        "never": (False, None),
        "cancelled": (False, LastCheck("cancelled", NEW)),
        "marked_ok": (True, LastCheck("ok", NEW)),
        "marked_never": (True, None),
    }
    order = sorted(streams, key=lambda name: priority(*streams[name]))
    assert order == [
        "marked_never",
        "marked_ok",
        "never",
        "cancelled",
        "error_old",
        "dead_new",
        "rest_old",
        "rest_new",
    ]


def test_a_job_takes_its_most_urgent_stream():
    keys = [priority(False, LastCheck("ok", OLD)), priority(False, LastCheck("dead", NEW))]
    assert job_priority(keys) == priority(False, LastCheck("dead", NEW))
    assert job_priority([]) == priority(False, None)


OK = Seen("ok", ("1920x1080", "h264", "aac", 25.0), cycles_ago=1)


def _history(*items: Seen) -> list[Seen]:
    return list(items)


def _ago(seen: Seen, cycles: int) -> Seen:
    return Seen(seen.status, seen.figures, cycles)


@pytest.mark.parametrize(
    ("stable_every", "history", "marked", "expected"),
    [
        (1, [OK, OK, OK], False, True),  # the default: every stream every cycle
        (3, [], False, True),  # never checked
        (3, [OK, OK], False, True),  # not yet healthy for long enough
        (3, [OK, OK, OK], False, False),  # stable, checked in the previous cycle
        (3, [_ago(OK, 2), OK, OK], False, False),
        (3, [_ago(OK, 3), OK, OK], False, True),  # its turn again
        (3, [OK, OK, OK], True, True),  # marked channels are always checked
        (3, [Seen("dead", (), 1), OK, OK], False, True),  # failed: back to every cycle
        (3, [Seen("error", (), 1), OK, OK], False, True),
        (3, [Seen("ok", ("1280x720", "h264", "aac", 25.0), 1), OK, OK], False, True),  # changed
        (3, [OK, Seen("dead", (), 2), OK, OK], False, True),  # recovered, not stable yet
    ],
)
def test_stable_every(stable_every, history, marked, expected):
    assert due(stable_every, history, marked=marked) is expected


def test_is_stable_needs_three_equal_ok_checks():
    assert is_stable([OK, OK, OK, Seen("dead")])
    assert not is_stable([OK, OK])
