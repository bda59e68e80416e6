"""What :class:`~actors.dispatch.Dispatch` decides: the actions its carrier performs in order.

The coordinator carries them out on real actors and probe threads; the
simulation in ``tests/actors/sim.py`` on a fake clock. Each is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.messages import Job, Lease, ReleaseLease, RequestLease
from domain.models import ProbeOutcome


@dataclass(frozen=True)
class Request:
    """Send ``request`` to the account's actor."""

    account_id: int
    request: RequestLease


@dataclass(frozen=True)
class Release:
    """Send ``release`` to the account's actor (it says how the check ended, if it ran)."""

    account_id: int
    release: ReleaseLease

    @property
    def lease_id(self) -> int:
        """The lease given back."""
        return self.release.lease_id


@dataclass(frozen=True)
class StartCheck:
    """Start the check of ``job`` through ``lease``."""

    job: Job
    lease: Lease
    others_running: int
    """Other connections on this check's login when it was granted (ours and viewers')."""


@dataclass(frozen=True)
class CancelCheck:
    """Cancel the running check (its probe is killed); it still reports how it ended."""

    lease_id: int
    reason: str


@dataclass(frozen=True)
class AbandonCheck:
    """The check never reported after its cancel: forget it; its run is over."""

    lease_id: int


@dataclass(frozen=True)
class Finish:
    """The job's final outcome (for every stream of the job)."""

    job: Job
    outcome: ProbeOutcome
    profile_id: int | None = None
    started_at: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class WakeAt:
    """Call :meth:`Dispatch.tick` at ``at`` (clock seconds); replaces an earlier wake-up."""

    at: float


@dataclass(frozen=True)
class DropAccount:
    """A retired account has nothing left running: stop its actor."""

    account_id: int


Action = Request | Release | StartCheck | CancelCheck | AbandonCheck | Finish | WakeAt | DropAccount
