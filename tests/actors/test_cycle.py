"""The cycle's bookkeeping without threads: one result per stream, scores, the summary."""

from __future__ import annotations

from dataclasses import replace

from actors.cycle import Cycle, summary
from actors.jobs import jobs_for
from domain.models import ProbeOutcome, StreamInfo
from tests.actors.fakes import FakeClock, stream

HD = StreamInfo(resolution="1920x1080", height=1080, fps=25.0, video_codec="h264")


def make_cycle(clock: FakeClock) -> tuple[Cycle, list]:
    twin = replace(stream(3, 1), id=4)  # same URL as stream 3: one job for both
    jobs = list(jobs_for([stream(1, 1), stream(2, 2), stream(3, 1), twin]))
    cycle = Cycle(7, jobs, lambda info: 0.5 if info.height else 0.0, clock, lambda: "T")
    return cycle, jobs


def test_each_job_gives_one_scored_result_per_stream_once() -> None:
    cycle, jobs = make_cycle(FakeClock())
    assert cycle.streams == 4
    ok = cycle.record(jobs[0], ProbeOutcome(kind="ok", info=HD), 11, "s", "f")
    assert [(r.stream_id, r.status, r.score, r.profile_id, r.error) for r in ok] == [
        (1, "ok", 0.5, 11, None)
    ]
    assert (ok[0].started_at, ok[0].finished_at, ok[0].resolution) == ("s", "f", "1920x1080")
    assert cycle.record(jobs[0], ProbeOutcome(kind="dead")) == []
    dead = cycle.record(jobs[2], ProbeOutcome(kind="dead", info=HD, reason="stalled"))
    assert [(r.stream_id, r.status, r.score, r.error) for r in dead] == [
        (3, "dead", 0.0, "stalled"),
        (4, "dead", 0.0, "stalled"),
    ]
    assert dead[0].started_at == "T"  # a job that never ran gets the time it ended
    assert not cycle.complete


def test_statuses_other_than_ok_dead_cancelled_are_errors() -> None:
    cycle, jobs = make_cycle(FakeClock())
    (busy,) = cycle.record(jobs[1], ProbeOutcome(kind="busy", reason="provider_busy"))
    assert (busy.status, busy.error) == ("error", "provider_busy")


def test_the_finished_cycle_sums_up_its_results() -> None:
    clock = FakeClock(100.0)
    cycle, jobs = make_cycle(clock)
    cycle.record(jobs[0], ProbeOutcome(kind="ok", info=HD))
    cycle.record(jobs[1], ProbeOutcome(kind="cancelled", reason="shutdown"))
    assert cycle.status(aborting=True)["done"] == 2
    cycle.record(jobs[2], ProbeOutcome(kind="dead"))
    assert cycle.complete
    clock.now = 112.3456
    finished = cycle.finish(aborted=True)
    assert (finished.cycle_id, finished.duration_s, finished.aborted) == (7, 12.346, True)
    assert len(finished.results) == 4
    assert summary(finished, cycle.streams) == {
        "cycle_id": 7,
        "started_at": "T",
        "finished_at": "T",
        "duration_s": 12.346,
        "streams": 4,
        "alive": 1,
        "dead": 2,
        "aborted": True,
    }
