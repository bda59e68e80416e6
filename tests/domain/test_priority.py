"""Job priority and the stable-stream decision, as tables."""

from __future__ import annotations

import pytest

from domain.models import CheckResult, Status
from domain.priority import LastCheck, Seen, due, is_stable, job_priority, priority

OLD = "2026-01-01T00:00:00Z"
NEW = "2026-01-02T00:00:00Z"


def test_priority_order_marked_never_failed_then_oldest_first():
    # (marked, last check, cycles since it)
    streams: dict[str, tuple[bool, LastCheck | None, int]] = {
        "rest_new": (False, LastCheck("ok", NEW), 1),
        "rest_old": (False, LastCheck("ok", OLD), 3),
        "dead_new": (False, LastCheck("dead", NEW), 1),
        "error_old": (False, LastCheck("error", OLD), 3),
        "never": (False, None, 1),
        "cancelled": (False, LastCheck("cancelled", NEW), 1),
        "marked_ok": (True, LastCheck("ok", NEW), 1),
        "marked_never": (True, None, 1),
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


def test_streams_checked_in_the_same_cycle_rank_the_same():
    # The queue then keeps its longest-first order among them.
    assert priority(False, LastCheck("ok", OLD)) == priority(False, LastCheck("ok", NEW))


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


# --- CheckMemory: what the coordinator remembers -----------------------------------


def _result(
    stream_id: int, status: Status = "ok", at: str = OLD, resolution: str = "1920x1080"
) -> CheckResult:
    return CheckResult(
        stream_id, 1, None, status, resolution=resolution, video_codec="h264", finished_at=at
    )


def test_memory_makes_a_stream_stable_after_three_equal_checks_and_skips_it():
    from domain.priority import CheckMemory

    memory = CheckMemory()
    for _ in range(3):
        memory.next_cycle()
        assert memory.due([1], 2, marked=False)
        memory.record(_result(1))
    memory.next_cycle()
    assert not memory.due([1], 2, marked=False)  # checked in the previous cycle
    assert memory.due([1], 2, marked=True)  # a marked channel: every cycle
    assert memory.due([1, 2], 2, marked=False)  # the job's other stream is not stable
    memory.next_cycle()  # the skipped cycle recorded nothing for it
    assert memory.due([1], 2, marked=False)  # 2 cycles ago: its turn


def test_memory_sends_a_changed_or_failed_stream_back_to_every_cycle():
    from domain.priority import CheckMemory

    memory = CheckMemory()
    for _ in range(3):
        memory.next_cycle()
        memory.record(_result(1))
    memory.next_cycle()
    memory.record(_result(1, resolution="1280x720"))  # changed
    memory.next_cycle()
    assert memory.due([1], 3, marked=False)
    memory.record(_result(1, "dead"))
    memory.next_cycle()
    assert memory.due([1], 3, marked=False)
    memory.record(_result(1, "cancelled"))  # says nothing: not remembered
    assert memory.history(1)[0].status == "dead"


def test_memory_ranks_jobs_and_restores_from_the_store():
    from domain.priority import CheckMemory

    memory = CheckMemory()
    memory.restore(
        {
            1: [(_result(1, at=NEW), 1), (_result(1, at=OLD), 2), (_result(1, at=OLD), 3)],
            2: [(_result(2, "dead", at=NEW), 1)],
            3: [(_result(3, "cancelled", at=NEW), 1), (_result(3, at=OLD), 2)],
        }
    )
    memory.next_cycle()
    assert memory.priority([1], marked=False) == priority(False, LastCheck("ok", NEW))
    assert memory.priority([2], marked=False) == priority(False, LastCheck("dead", NEW))
    assert memory.priority([3], marked=False) == priority(False, LastCheck("ok", OLD), 2)
    assert memory.priority([9], marked=False) == priority(False, None)
    assert memory.priority([1], marked=True)[0] == 0
    assert [seen.cycles_ago for seen in memory.history(1)] == [1, 2, 3]
    assert not memory.due([1], 2, marked=False)  # stable, checked last cycle
    assert memory.due([3], 2, marked=False)  # a cancelled check breaks the run


def test_marked_streams_by_channel_id_name_or_uuid():
    from domain.models import Channel, Inventory
    from domain.priority import marked_streams

    inventory = Inventory(
        accounts=(),
        streams=(),
        channels=(
            Channel(7, "News", (1, 2)),
            Channel(8, "Sports", (3,), uuid="6F1C-AB"),
            Channel(9, "Movies", (4,)),
        ),
    )
    assert marked_streams(inventory, ()) == frozenset()
    assert marked_streams(inventory, (7,)) == {1, 2}
    assert marked_streams(inventory, ("news ", "6f1c-ab")) == {1, 2, 3}
    assert marked_streams(inventory, ("nothing",)) == frozenset()
