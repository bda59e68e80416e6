"""``Cycles`` without threads: planning, results, the end of a cycle and who hears of it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import MutableMapping
from typing import Any

import pykka
import pytest

from actors.actions import Finish
from actors.cycles import MANY_AT_ONCE, CycleBusyError, Cycles, most_at_once
from actors.jobs import jobs_for
from actors.messages import (
    AbortCycle,
    CheckCycle,
    CycleFinished,
    CycleStarted,
    ResultReady,
)
from domain.models import ProbeOutcome, StreamInfo
from domain.priority import CheckMemory
from tests.actors.fakes import FakeClock, stream
from tests.logcapture import capture_logs

OK = ProbeOutcome(kind="ok", info=StreamInfo(resolution="1920x1080"))


def keeper(
    stable_every: int = 1, clock: FakeClock | None = None, global_limit: int = 0
) -> tuple[Cycles, list[object]]:
    heard: list[object] = []
    cycles = Cycles(
        heard.append,
        lambda info: 0.5 if info.resolution else 0.0,
        CheckMemory(),
        stable_every,
        clock or FakeClock(),
        lambda: "2026-01-01T00:00:00Z",
        global_limit=global_limit,
    )
    return cycles, heard


def cycle(cycle_id: int, *stream_ids: int) -> CheckCycle:
    done: pykka.ThreadingFuture[CycleFinished] = pykka.ThreadingFuture()
    return CheckCycle(cycle_id, jobs_for([stream(s, 1) for s in stream_ids]), done)


def finish_all(cycles: Cycles, jobs: list, outcome: ProbeOutcome = OK) -> None:
    for job in jobs:
        cycles.record(Finish(job, outcome, profile_id=100))
    cycles.end(aborted=False)


def test_a_cycle_is_announced_scored_ended_and_its_caller_answered() -> None:
    clock = FakeClock()
    cycles, heard = keeper(clock=clock)
    message = cycle(1, 1, 2)
    jobs = cycles.begin(message, {1: 2})
    assert heard == []  # announced once the first checks are asked for
    cycles.announce_begun()
    cycles.announce_begun()
    assert heard == [CycleStarted(1, 2, "2026-01-01T00:00:00Z")]
    assert cycles.status(aborting=False) == {
        "cycle_id": 1,
        "streams": 2,
        "done": 0,
        "started_at": "2026-01-01T00:00:00Z",
        "aborting": False,
    }
    cycles.record(Finish(jobs[0], OK, profile_id=100))
    cycles.end(aborted=False)  # one job is still open: not the end
    assert cycles.running is not None
    assert [type(m) for m in heard] == [CycleStarted, ResultReady]
    ready = heard[1]
    assert isinstance(ready, ResultReady)
    assert (ready.result.stream_id, ready.result.score, ready.result.profile_id) == (1, 0.5, 100)
    cycles.record(Finish(jobs[0], OK))  # a second outcome for a job counts nothing
    clock.now = 12.5
    cycles.record(Finish(jobs[1], ProbeOutcome(kind="dead", reason="no_video")))
    cycles.end(aborted=False)
    assert cycles.running is None
    finished = heard[-1]
    assert isinstance(finished, CycleFinished)
    assert [r.status for r in finished.results] == ["ok", "dead"]
    assert finished.duration_s == 12.5
    assert message.done is not None
    assert message.done.get(timeout=0) == finished
    assert cycles.last is not None
    assert (cycles.last["alive"], cycles.last["dead"], cycles.last["aborted"]) == (1, 1, False)


def test_a_finished_cycle_is_not_kept_alive_between_cycles() -> None:
    """Once its caller has the results (10,000 on a large install), only the
    summary stays; and the next cycle's start does not pay for freeing them."""
    cycles, heard = keeper()
    message = cycle(1, 1, 2)
    finish_all(cycles, cycles.begin(message, {1: 2}))
    assert message.done is not None
    finished = message.done.get(timeout=0)
    gone = weakref.ref(finished)
    heard.clear()
    del finished, message
    gc.collect()
    assert gone() is None
    assert cycles.last is not None


def test_stable_streams_are_left_out_of_the_plan_until_due() -> None:
    cycles, _heard = keeper(stable_every=2)
    planned = []
    for cycle_id in range(1, 6):
        jobs = cycles.begin(cycle(cycle_id, 1), {})
        planned.append([job.stream.id for job in jobs])
        finish_all(cycles, jobs)
    # Three ok checks make the stream stable: from then on every other cycle.
    assert planned == [[1], [1], [1], [], [1]]


def test_the_plan_ranks_a_stream_that_failed_before_one_that_played() -> None:
    cycles, _heard = keeper()
    jobs = cycles.begin(cycle(1, 1, 2), {})
    cycles.record(Finish(jobs[0], OK))
    cycles.record(Finish(jobs[1], ProbeOutcome(kind="error", reason="timeout")))
    cycles.end(aborted=False)
    ranked = {job.stream.id: cycles.rank(job) for job in cycles.begin(cycle(2, 1, 2), {})}
    assert ranked[2] < ranked[1]


def test_a_cycle_asked_for_while_one_runs_is_refused() -> None:
    cycles, heard = keeper()
    cycles.begin(cycle(1, 1), {})
    cycles.announce_begun()
    second = cycle(2, 2)
    with capture_logs() as logs:
        refused = cycles.refuse(second)
    assert (refused.cycle_id, refused.reason) == (2, "a cycle is already running")
    assert second.done is not None
    with pytest.raises(CycleBusyError):
        second.done.get(timeout=0)
    assert logs[0]["event"] == "cycle_overlap_skipped"
    assert logs[0]["running_cycle"] == 1
    assert len(heard) == 1  # only the first cycle's start


def test_an_abort_without_a_cycle_is_answered_at_once_an_error_one_fails_later_cycles() -> None:
    cycles, heard = keeper()
    done: pykka.ThreadingFuture[CycleFinished | None] = pykka.ThreadingFuture()
    assert cycles.abort(AbortCycle("sink_failed", done, error=True)) is None
    assert done.get(timeout=0) is None
    assert cycles.failing == ProbeOutcome(kind="error", reason="sink_failed")
    later = cycle(1, 1, 2)
    cycles.fail_unstarted(later, cycles.failing)
    (finished,) = heard
    assert isinstance(finished, CycleFinished)
    assert finished.aborted
    assert [(r.status, r.error) for r in finished.results] == [("error", "sink_failed")] * 2
    assert later.done is not None
    assert later.done.get(timeout=0) == finished


def test_an_abort_waits_for_the_cycle_to_end() -> None:
    cycles, _heard = keeper()
    jobs = cycles.begin(cycle(1, 1), {})
    done: pykka.ThreadingFuture[CycleFinished | None] = pykka.ThreadingFuture()
    running = cycles.abort(AbortCycle("shutdown", done))
    assert running is not None
    assert running.cycle_id == 1
    assert cycles.failing is None
    with pytest.raises(pykka.Timeout):
        done.get(timeout=0)
    cycles.record(Finish(jobs[0], ProbeOutcome(kind="cancelled", reason="shutdown")))
    cycles.end(aborted=True)
    answer = done.get(timeout=0)
    assert answer is not None
    assert answer.aborted


def test_fail_open_gives_every_open_job_the_outcome_and_ends_the_cycle() -> None:
    cycles, heard = keeper()
    message = cycle(1, 1, 2)
    jobs = cycles.begin(message, {})
    cycles.record(Finish(jobs[0], OK))
    cycles.fail_open(ProbeOutcome(kind="error", reason="coordinator_stopped"))
    assert cycles.running is None
    finished = heard[-1]
    assert isinstance(finished, CycleFinished)
    assert finished.aborted
    assert [(r.stream_id, r.error) for r in finished.results] == [
        (1, None),
        (2, "coordinator_stopped"),
    ]
    assert message.done is not None
    assert message.done.get(timeout=0) == finished


def test_a_result_before_the_start_was_announced_announces_it_first() -> None:
    cycles, heard = keeper()
    with capture_logs() as logs:
        jobs = cycles.begin(cycle(1, 1, 2), {1: 2})
        assert heard == []
        cycles.record(Finish(jobs[0], OK))
        cycles.record(Finish(jobs[1], OK))
        cycles.end(aborted=False)
        cycles.announce_begun()  # too late: nothing more
    assert [type(m) for m in heard] == [CycleStarted, ResultReady, ResultReady, CycleFinished]
    events = [line["event"] for line in logs]
    assert events[:2] == ["cycle_started", "cycle_accounts"]
    assert events.count("cycle_started") == 1


def _begun(
    cycles: Cycles, message: CheckCycle, limits: dict[int, int]
) -> list[MutableMapping[str, Any]]:
    with capture_logs() as logs:
        cycles.begin(message, limits)
        cycles.announce_begun()
    return logs


def _many(cycle_id: int, count: int, account_id: int = 1) -> CheckCycle:
    streams = [stream(sid, account_id) for sid in range(1, count + 1)]
    return CheckCycle(cycle_id, jobs_for(streams))


def test_no_global_limit_and_an_unlimited_account_warns_how_many_checks_may_run_at_once() -> None:
    cycles, _ = keeper(global_limit=0)

    logs = _begun(cycles, _many(1, MANY_AT_ONCE + 1), {1: 0})

    warning = next(line for line in logs if line["event"] == "checks_unbounded")
    assert warning["log_level"] == "warning"
    assert warning["most_at_once"] == MANY_AT_ONCE + 1
    assert warning["unlimited_accounts"] == [1]
    assert "global_limit" in str(warning["hint"])
    accounts = next(line for line in logs if line["event"] == "cycle_accounts")
    assert accounts["most_at_once"] == MANY_AT_ONCE + 1


@pytest.mark.parametrize(
    ("global_limit", "limit", "at_once"),
    [
        (0, 5, 5),  # the account's limit bounds it
        (10, 0, 10),  # the global limit does
        (0, 0, MANY_AT_ONCE),  # few enough
    ],
)
def test_checks_bounded_by_a_limit_or_few_enough_raise_no_warning(
    global_limit: int, limit: int, at_once: int
) -> None:
    cycles, _ = keeper(global_limit=global_limit)
    count = MANY_AT_ONCE if at_once == MANY_AT_ONCE else MANY_AT_ONCE * 2

    logs = _begun(cycles, _many(1, count), {1: limit})

    assert [line for line in logs if line["event"] == "checks_unbounded"] == []
    accounts = next(line for line in logs if line["event"] == "cycle_accounts")
    assert accounts["most_at_once"] == at_once


def test_the_unbounded_warning_is_said_again_only_when_its_figure_grows() -> None:
    cycles, _ = keeper(global_limit=0)
    warned = []
    for cycle_id, count in [(1, 80), (2, 80), (3, 70), (4, 90)]:
        logs = _begun(cycles, _many(cycle_id, count), {1: 0})
        warned += [line["most_at_once"] for line in logs if line["event"] == "checks_unbounded"]
        running = cycles.running
        assert running is not None
        finish_all(cycles, running.open_jobs())

    assert warned == [80, 90]


def test_most_at_once_counts_each_account_up_to_its_limit_and_all_up_to_the_global_one() -> None:
    jobs = {1: 80, 2: 10, 3: 4, 9: 500}  # account 9 is unknown: its jobs end unchecked

    assert most_at_once(jobs, {1: 0, 2: 3, 3: 5}, 0) == 80 + 3 + 4
    assert most_at_once(jobs, {1: 0, 2: 3, 3: 5}, 20) == 20
    assert most_at_once({}, {1: 0}, 0) == 0
