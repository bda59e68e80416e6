"""``Supervisor``: hears of a long-lived actor dying, fails the running cycle, stops the daemon.

pykka has no links or monitors, so each long-lived actor (coordinator, result
sink, viewer watcher, scheduler) tells the supervisor ``ActorFailed`` from its
``on_failure`` (and from ``on_start``, which pykka does not route there).
Nothing polls. The supervisor logs the death as an error, has the coordinator
fail the running cycle (every open job ends ``error`` with a reason naming the
dead actor; a dead coordinator does that itself before it goes) and calls the
daemon's ``on_fatal``, which stops the process with exit code 1 so that
systemd (``Restart=on-failure``) starts it afresh. Restarting one actor in
place would leave the others holding its dead ref; a crash is a bug, and a
clean restart of the whole process is the one recovery that is always right.

Account actors and checks are not supervised here: the coordinator looks
after them (a check whose probe crashes, or never answers its cancel, still has
its lease released; a crashed account actor's checks end as errors and it is
started afresh at the next cycle).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar

import pykka
import structlog

from actors.messages import AbortCycle, ActorFailed, Supervise
from actors.tell import tell_quietly

logger = structlog.get_logger(__name__)


def report_failure(
    supervisor: pykka.ActorRef[Any] | None, actor: str, error: BaseException | None
) -> None:
    """Tell the supervisor (if any) that ``actor`` died of ``error``; never raises."""
    if supervisor is not None:
        tell_quietly(supervisor, ActorFailed(actor=actor, error=repr(error)))


class SupervisedActor(pykka.ThreadingActor):
    """A long-lived actor whose crash the supervisor hears of, in ``on_start`` too.

    pykka calls ``on_failure`` only for a crash in ``on_receive``; this base
    reports one in ``on_start`` the same way. A subclass names itself in
    ``actor_name`` (as ``ActorFailed`` says it), starts in :meth:`start_up`
    and lets go of what it holds in :meth:`wind_down`, which runs on a stop
    and on a crash alike.

    Args:
        supervisor: told ``ActorFailed`` when the actor crashes; ``None``: nobody.
    """

    use_daemon_thread = True
    actor_name: ClassVar[str]

    def __init__(self, supervisor: pykka.ActorRef[Any] | None = None) -> None:
        super().__init__()
        self._supervisor = supervisor

    def on_start(self) -> None:
        """Run :meth:`start_up`; a crash there is reported as in ``on_failure``."""
        try:
            self.start_up()
        except Exception:
            self.on_failure(*sys.exc_info())
            raise

    def on_stop(self) -> None:
        """Let go of what the actor holds."""
        self.wind_down(None)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Let go of what the actor holds when crashing too, and tell the supervisor.

        The supervisor is told even when letting go fails as well: a dead actor
        nobody hears of would leave a daemon that runs and checks nothing.
        """
        try:
            self.wind_down(exception_value)
        finally:
            report_failure(self._supervisor, self.actor_name, exception_value)

    def start_up(self) -> None:
        """What the actor does when it starts (on its own thread); nothing by default."""

    def wind_down(self, error: BaseException | None) -> None:
        """Let go of timers, threads and files; ``error``: what it crashed of, if it did."""


class Supervisor(pykka.ThreadingActor):
    """Turns the death of a long-lived actor into a failed cycle and a daemon stop.

    Args:
        on_fatal: called once, on the supervisor's thread, with a one-line reason
            (the daemon records it and stops; it must not block).
    """

    use_daemon_thread = True

    def __init__(self, on_fatal: Callable[[str], None]) -> None:
        super().__init__()
        self._on_fatal = on_fatal
        self._coordinator: pykka.ActorRef[Any] | None = None
        self._failed: list[str] = []

    def on_receive(self, message: Any) -> Any:
        """``Supervise`` names the coordinator; ``ActorFailed`` reports a death."""
        match message:
            case Supervise(coordinator=coordinator):
                self._coordinator = coordinator
                for actor in self._failed:  # died before the coordinator was known
                    self._fail_cycles(actor)
            case ActorFailed():
                self._on_failed(message)
            case _:
                return super().on_receive(message)
        return None

    def _on_failed(self, message: ActorFailed) -> None:
        first = not self._failed
        self._failed.append(message.actor)
        logger.error(
            "actor_failed",
            actor=message.actor,
            error=message.error,
            action="failing the running cycle and stopping the daemon (exit 1)",
        )
        self._fail_cycles(message.actor)
        if first:
            try:
                self._on_fatal(f"{message.actor} failed: {message.error}")
            except Exception:  # the supervisor must outlive what it reports
                logger.exception("supervisor_on_fatal_failed")

    def _fail_cycles(self, actor: str) -> None:
        """Fail the running cycle, and any later one, through the coordinator."""
        if actor != "coordinator" and self._coordinator is not None:
            tell_quietly(self._coordinator, AbortCycle(reason=f"{actor}_failed", error=True))
