"""``CheckerActor``: one per running check, owning one probe run.

The probe blocks, so it runs on a worker thread; the actor's mailbox stays
free for ``Cancel``, which cancels the probe's token (the ffmpeg probe kills its
process group on it). Whatever happens, the coordinator hears exactly once how
the check ended: from the probe's return, from ``on_stop`` if the actor was
stopped first, or ``CheckerDied`` from ``on_failure`` if it crashed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import pykka
import structlog

from actors.messages import Cancel, CheckerDied, CheckFinished, Job, Lease
from actors.tell import tell_quietly
from actors.workers import BlockingWork
from domain.cancel import CancelToken
from domain.models import Probe, ProbeOutcome, ProbeRequest
from domain.urls import redact_url

logger = structlog.get_logger(__name__)


def utc_now() -> str:
    """The current time as ISO 8601 UTC, as reports and Dispatcharr want it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class _ProbeDone:
    """Private: the probe thread has returned."""

    outcome: ProbeOutcome


class CheckerActor(pykka.ThreadingActor):
    """Runs ``probe`` for one job through one lease and reports ``CheckFinished``.

    Args:
        coordinator: gets ``CheckFinished`` or ``CheckerDied``.
        job: the job being checked.
        lease: the lease the check holds (its URL is the one to open).
        probe: the probe function (ffmpeg in production, fakes in tests).
        request: what the probe is asked to do.
        workers: the threads blocking probe runs go to.

    The coordinator enforces the hard time limit by sending ``Cancel("timeout")``.
    """

    use_daemon_thread = True

    def __init__(
        self,
        coordinator: pykka.ActorRef[Any],
        job: Job,
        lease: Lease,
        probe: Probe,
        request: ProbeRequest,
        workers: BlockingWork,
    ) -> None:
        super().__init__()
        self._coordinator = coordinator
        self._job = job
        self._lease = lease
        self._probe = probe
        self._request = request
        self._workers = workers
        self._token = CancelToken()
        self._reported = False
        self._probe_returned = False
        self._started_at = utc_now()

    def on_start(self) -> None:
        """Start the probe on a worker thread."""
        self._workers.run(self._run_probe)

    def on_receive(self, message: Any) -> Any:
        """Handle ``Cancel`` and the probe thread's return."""
        match message:
            case Cancel(reason=reason):
                self._token.cancel(reason)
            case _ProbeDone(outcome=outcome):
                self._probe_returned = True
                self._report(self._final_outcome(outcome))
                self.stop()
            case _:
                return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        """Stopped before the probe returned: kill it and report a cancel."""
        self._cleanup()
        if not self._reported:
            self._report(ProbeOutcome(kind="cancelled", reason="checker_stopped"))

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Crashed: kill the probe; the coordinator releases the lease."""
        self._cleanup()
        if not self._reported:
            self._reported = True
            tell_quietly(
                self._coordinator,
                CheckerDied(lease_id=self._lease.lease_id, reason=repr(exception_value)),
            )

    # --- internals ----------------------------------------------------------------

    def _run_probe(self) -> None:
        """Probe thread: never raises; hands the outcome to the actor."""
        try:
            outcome = self._probe(self._request, self._token)
        except Exception as exc:
            logger.exception(
                "probe_crashed", stream_id=self._request.stream_id, url=redact_url(self._lease.url)
            )
            outcome = ProbeOutcome(kind="error", reason=f"probe_crashed: {type(exc).__name__}")
        tell_quietly(self.actor_ref, _ProbeDone(outcome))

    def _final_outcome(self, outcome: ProbeOutcome) -> ProbeOutcome:
        """A probe cancelled by the hard time limit saw no usable stream: dead, timeout."""
        if self._token.reason == "timeout" and outcome.kind in ("cancelled", "error"):
            return ProbeOutcome(kind="dead", info=outcome.info, reason="timeout")
        return outcome

    def _report(self, outcome: ProbeOutcome) -> None:
        if self._reported:
            return
        self._reported = True
        tell_quietly(
            self._coordinator,
            CheckFinished(
                lease_id=self._lease.lease_id,
                job_id=self._job.job_id,
                outcome=outcome,
                started_at=self._started_at,
                finished_at=utc_now(),
            ),
        )

    def _cleanup(self) -> None:
        if not self._probe_returned:
            self._token.cancel("checker_stopped")
