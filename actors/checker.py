"""``Checkers``: the running checks of the coordinator, each on a reused pool thread.

A check is one probe run with its own cancel token. The probe blocks, so it
runs on a thread of the pool (reused from check to check: starting a thread per
check, or an actor per check, costs more than the rest of the check's
bookkeeping); the coordinator keeps the tokens and cancels a check by
cancelling its token (the ffmpeg probe kills its process group on it, at once).
Whatever happens, the coordinator hears exactly once how the check ended:
``CheckFinished`` from the pool thread when the probe returns, raises or the
thread itself fails.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pykka
import structlog

from actors.dispatch import CoordinatorSettings
from actors.messages import CheckFinished, Job, Lease
from actors.tell import tell_quietly
from actors.workers import BlockingWork
from domain.cancel import CancelToken
from domain.models import Probe, ProbeOutcome, ProbeRequest
from domain.urls import redact_url

logger = structlog.get_logger(__name__)


def utc_now() -> str:
    """The current time as ISO 8601 UTC, as reports and Dispatcharr want it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Checkers:
    """Starts and cancels checks; owned by the coordinator and used on its thread only.

    Args:
        coordinator: gets ``CheckFinished`` for every check started.
        probe: the probe function (ffmpeg in production, fakes in tests).
        settings: the check's duration and timeout, the default user agent.
        workers: the threads the probes run on (one is made, and stopped with
            :meth:`stop`, if None).
    """

    def __init__(
        self,
        coordinator: pykka.ActorRef[Any],
        probe: Probe,
        settings: CoordinatorSettings,
        workers: BlockingWork | None = None,
    ) -> None:
        self._coordinator = coordinator
        self._probe = probe
        self._settings = settings
        self._own_workers = workers is None
        self._workers = workers or BlockingWork("checker")
        self._tokens: dict[int, CancelToken] = {}

    def start(self, job: Job, lease: Lease, others_running: int) -> None:
        """Run the check now on a pool thread (``others_running``: on the same login)."""
        settings = self._settings
        request = ProbeRequest(
            url=lease.url,
            user_agent=lease.user_agent or settings.user_agent,
            duration=settings.check_duration,
            timeout=settings.check_timeout,
            stream_id=job.stream.id,
            account_id=lease.account_id,
            other_checks_running=others_running,
        )
        token = CancelToken()
        self._tokens[lease.lease_id] = token
        self._workers.run(lambda: self._run(job, lease, request, token), self._report)

    def cancel(self, lease_id: int, reason: str) -> None:
        """Cancel a running check (it still reports how it ended); the first reason wins."""
        token = self._tokens.get(lease_id)
        if token is not None:
            token.cancel(reason)

    def ended(self, lease_id: int) -> None:
        """The check's run is over (reported, or given up): forget its token."""
        self._tokens.pop(lease_id, None)

    def stop(self) -> None:
        """Cancel every running check (their probes are killed)."""
        for token in self._tokens.values():
            token.cancel("shutdown")
        self._tokens.clear()
        if self._own_workers:
            self._workers.stop()

    def _run(
        self, job: Job, lease: Lease, request: ProbeRequest, token: CancelToken
    ) -> CheckFinished:
        """Pool thread: runs the probe; never raises for the probe's faults."""
        started_at = utc_now()
        try:
            outcome = _final_outcome(self._probe(request, token), token)
        except Exception as exc:
            logger.exception(
                "probe_crashed", stream_id=request.stream_id, url=redact_url(lease.url)
            )
            outcome = ProbeOutcome(kind="error", reason=f"probe_crashed: {type(exc).__name__}")
        except BaseException as exc:  # the thread itself is going down: still report
            token.cancel("checker_died")
            outcome = ProbeOutcome(kind="error", reason=f"checker_died: {exc!r}")
            self._report(_finished(job, lease, outcome, started_at))
            raise
        return _finished(job, lease, outcome, started_at)

    def _report(self, finished: CheckFinished) -> None:
        tell_quietly(self._coordinator, finished)


def _finished(job: Job, lease: Lease, outcome: ProbeOutcome, started_at: str) -> CheckFinished:
    return CheckFinished(
        lease_id=lease.lease_id,
        job_id=job.job_id,
        outcome=outcome,
        started_at=started_at,
        finished_at=utc_now(),
    )


def _final_outcome(outcome: ProbeOutcome, token: CancelToken) -> ProbeOutcome:
    """A probe cancelled at the check's deadline saw no usable stream: dead, timeout."""
    if token.reason == "timeout" and outcome.kind in ("cancelled", "error"):
        return ProbeOutcome(kind="dead", info=outcome.info, reason="timeout")
    return outcome
