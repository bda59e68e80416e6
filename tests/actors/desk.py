"""A fake clock and a shorthand for driving :class:`Dispatch` in table tests.

Actions are turned into short tuples so that a test reads as event in, actions
out: ``("request", account, stream)``, ``("release", account, stream)``,
``("start", stream)``, ``("cancel", stream, reason)``, ``("abandon", stream)``,
``("finish", stream, kind, reason)``, ``("wake", at)``, ``("drop", account)``.
"""

from __future__ import annotations

from collections.abc import Iterable

from actors import actions
from actors.dispatch import CoordinatorSettings, Dispatch
from actors.jobs import jobs_for
from actors.messages import Job, Lease
from actors.observer import CheckObserver
from domain.models import OutcomeKind, ProbeOutcome
from tests.actors.fakes import FakeClock, stream

Row = tuple[object, ...]


class Desk:
    """A ``Dispatch`` with accounts whose room the test gives, and names for what happens.

    Args:
        accounts: account id -> room it starts with (``capacity`` the same unless given).
        settings: the dispatch's settings.
        capacity: account id -> capacity, where it differs from the room.
        history: seconds each stream's last check took.
        wakes: show ``WakeAt`` in the rows (only the timer tests care).
        observer: told of every attempt's end and of preemptions.
    """

    def __init__(
        self,
        accounts: dict[int, int],
        settings: CoordinatorSettings | None = None,
        capacity: dict[int, int] | None = None,
        history: dict[int, float] | None = None,
        *,
        wakes: bool = False,
        observer: CheckObserver | None = None,
    ) -> None:
        self.clock = FakeClock()
        self._wakes = wakes
        self.dispatch = Dispatch(settings or CoordinatorSettings(), self.clock, history, observer)
        self.requests: dict[int, int] = {}
        """stream id -> request id of its latest request."""
        self.leases: dict[int, int] = {}
        """stream id -> lease id of its latest grant."""
        self._streams: dict[int, int] = {}
        """lease id -> stream id."""
        self._jobs: dict[int, Job] = {}
        self._lease_ids = iter(range(1000, 100_000))
        for account_id, room in accounts.items():
            limit = (capacity or {}).get(account_id, room)
            self.dispatch.set_account(account_id, limit, fresh=True)
            self.dispatch.room_changed(account_id, room)

    # --- events -------------------------------------------------------------------

    def start(self, streams: dict[int, int]) -> list[Row]:
        """A cycle of one job per stream (stream id -> account id)."""
        jobs = jobs_for(stream(sid, account) for sid, account in streams.items())
        self._jobs.update({job.stream.id: job for job in jobs})
        return self.rows(self.dispatch.start(jobs))

    def grant(self, *stream_ids: int) -> list[Row]:
        rows: list[Row] = []
        for sid in stream_ids:
            job = self._jobs[sid]
            lease_id = next(self._lease_ids)
            self.leases[sid] = lease_id
            self._streams[lease_id] = sid
            lease = Lease(lease_id, job.account_id, job.account_id * 100, job.stream.url)
            rows += self.rows(self.dispatch.granted(self.requests[sid], lease))
        return rows

    def deny(self, stream_id: int) -> list[Row]:
        return self.rows(self.dispatch.denied(self.requests[stream_id]))

    def end(self, stream_id: int, kind: OutcomeKind = "ok", reason: str | None = None) -> list[Row]:
        outcome = ProbeOutcome(kind=kind, reason=reason)
        return self.rows(self.dispatch.check_finished(self.leases[stream_id], outcome))

    def preempt(self, *stream_ids: int) -> list[Row]:
        return self.rows(self.dispatch.preempt(self.leases[sid] for sid in stream_ids))

    def room(self, account_id: int, change: int) -> list[Row]:
        return self.rows(self.dispatch.room_changed(account_id, change))

    def at(self, now: float) -> list[Row]:
        """Move the clock to ``now`` and run the timers due."""
        self.clock.now = now
        return self.rows(self.dispatch.tick())

    # --- reading --------------------------------------------------------------------

    @staticmethod
    def requested(rows: list[Row]) -> list[int]:
        """The stream ids the rows ask leases for, in order."""
        return [row[2] for row in rows if row[0] == "request" and isinstance(row[2], int)]

    # --- actions ------------------------------------------------------------------

    def rows(self, todo: Iterable[actions.Action]) -> list[Row]:
        rows = [self._row(action) for action in todo]
        return [row for row in rows if self._wakes or row[0] != "wake"]

    def _row(self, action: actions.Action) -> Row:  # noqa: PLR0911 - one row per kind of action
        match action:
            case actions.Request(account_id=account_id, request=request):
                self.requests[request.stream.id] = request.request_id
                return ("request", account_id, request.stream.id)
            case actions.Release(account_id=account_id, lease_id=lease_id):
                return ("release", account_id, self._streams[lease_id])
            case actions.StartCheck(job=job):
                return ("start", job.stream.id)
            case actions.CancelCheck(lease_id=lease_id, reason=reason):
                return ("cancel", self._streams[lease_id], reason)
            case actions.AbandonCheck(lease_id=lease_id):
                return ("abandon", self._streams[lease_id])
            case actions.Finish(job=job, outcome=outcome):
                return ("finish", job.stream.id, outcome.kind, outcome.reason)
            case actions.WakeAt(at=at):
                return ("wake", round(at, 6))
            case actions.DropAccount(account_id=account_id):
                return ("drop", account_id)
        raise AssertionError(action)
