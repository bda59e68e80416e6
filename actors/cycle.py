"""``Cycle``: one check cycle's bookkeeping and results, as a plain class.

It knows which jobs are still open, turns each job's final outcome into one
scored :class:`CheckResult` per stream (exactly once), and sums the cycle up
when the last job is done. The clocks are injected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from actors.messages import CycleFinished, Job
from domain.models import CheckResult, ProbeOutcome, StreamInfo

logger = structlog.get_logger(__name__)

Scorer = Callable[[StreamInfo], float]


class Cycle:
    """The open jobs and the results of one cycle.

    Args:
        cycle_id: the cycle's id.
        jobs: what the cycle checks.
        scorer: quality score of a stream that played.
        clock: monotonic seconds, for the cycle's duration.
        wall: the current time as ISO 8601 UTC, for the timestamps.
    """

    def __init__(
        self,
        cycle_id: int,
        jobs: Iterable[Job],
        scorer: Scorer,
        clock: Callable[[], float],
        wall: Callable[[], str],
    ) -> None:
        self.cycle_id = cycle_id
        self._open = {job.job_id: job for job in jobs}
        self._scorer = scorer
        self._clock = clock
        self._wall = wall
        self._started = clock()
        self.started_at = wall()
        self.streams = sum(len(job.stream_ids) for job in self._open.values())
        self.results: list[CheckResult] = []

    @property
    def complete(self) -> bool:
        """True once every job has its final result."""
        return not self._open

    def open_jobs(self) -> list[Job]:
        """The jobs without a final result yet."""
        return list(self._open.values())

    def log_started(self) -> None:
        """Log the cycle's size."""
        logger.info("cycle_started", cycle_id=self.cycle_id, streams=self.streams)

    def log_accounts(self, limits: Mapping[int, int], most_at_once: int) -> None:
        """Log the cycle's size per account (``limits``: 0 = unlimited) and the most
        checks it can run at once, before any result."""
        by_account = Counter[int]()
        for job in self._open.values():
            by_account[job.account_id] += len(job.stream_ids)
        # One line for all accounts, not one each: at 200 accounts the per-account
        # lines cost the coordinator milliseconds.
        accounts = sorted(by_account)
        logger.info(
            "cycle_accounts",
            cycle_id=self.cycle_id,
            streams_by_account={a: by_account[a] for a in accounts},
            limit_by_account={a: limits.get(a) for a in accounts},
            most_at_once=most_at_once,
        )

    def record(
        self,
        job: Job,
        outcome: ProbeOutcome,
        profile_id: int | None = None,
        started_at: str | None = None,
        finished_at: str | None = None,
    ) -> list[CheckResult]:
        """The job's final outcome: one result per stream, or none if it had one already."""
        if self._open.pop(job.job_id, None) is None:
            return []
        # The wall clock only for what the check did not say (a job that never ran).
        now = self._wall() if not (started_at and finished_at) else ""
        info = outcome.info
        status = outcome.kind if outcome.kind in ("ok", "dead", "cancelled") else "error"
        score = round(self._scorer(info), 3) if status == "ok" else 0.0
        results = [
            CheckResult(
                stream_id=stream_id,
                account_id=job.account_id,
                profile_id=profile_id,
                status=status,
                resolution=info.resolution,
                fps=info.fps,
                video_codec=info.video_codec,
                audio_codec=info.audio_codec,
                bitrate_kbps=info.bitrate_kbps,
                score=score,
                started_at=started_at or now,
                finished_at=finished_at or now,
                error=None if status == "ok" else outcome.reason,
                info=info,
            )
            for stream_id in job.stream_ids
        ]
        self.results.extend(results)
        return results

    def finish(self, *, aborted: bool) -> CycleFinished:
        """The cycle's end (call once it is complete); logs ``cycle_finished``."""
        finished = CycleFinished(
            cycle_id=self.cycle_id,
            results=tuple(self.results),
            started_at=self.started_at,
            finished_at=self._wall(),
            duration_s=round(self._clock() - self._started, 3),
            aborted=aborted,
        )
        logger.info(
            "cycle_finished",
            cycle_id=self.cycle_id,
            completed=len(self.results),
            total=self.streams,
            alive=sum(1 for r in self.results if r.status == "ok"),
            duration_s=finished.duration_s,
            aborted=aborted,
        )
        return finished

    def status(self, *, aborting: bool) -> dict[str, Any]:
        """The running cycle, for the status page."""
        return {
            "cycle_id": self.cycle_id,
            "streams": self.streams,
            "done": len(self.results),
            "started_at": self.started_at,
            "aborting": aborting,
        }


def failed_unstarted(
    cycle_id: int, jobs: Iterable[Job], outcome: ProbeOutcome, now: str
) -> CycleFinished:
    """A cycle that never started (the daemon is going down): an error result per stream."""
    results = tuple(
        CheckResult(
            stream_id=stream_id,
            account_id=job.account_id,
            profile_id=None,
            status="error",
            started_at=now,
            finished_at=now,
            error=outcome.reason,
        )
        for job in jobs
        for stream_id in job.stream_ids
    )
    logger.error("cycle_failed_unstarted", cycle_id=cycle_id, reason=outcome.reason)
    return CycleFinished(cycle_id, results, now, now, 0.0, aborted=True)


def summary(finished: CycleFinished, streams: int) -> dict[str, Any]:
    """The last cycle as the status page shows it."""
    return {
        "cycle_id": finished.cycle_id,
        "started_at": finished.started_at,
        "finished_at": finished.finished_at,
        "duration_s": finished.duration_s,
        "streams": streams,
        "alive": sum(1 for r in finished.results if r.status == "ok"),
        "dead": sum(1 for r in finished.results if r.status == "dead"),
        "aborted": finished.aborted,
    }
