"""What the coordinator tells an observer (the daemon's metrics) as things happen.

The observer is called on the coordinator's own thread, so its methods must be
quick and must not block or raise: they count (Prometheus counters and
histograms are thread-safe) and return. Listeners hear only final results;
denials, preemptions and every single attempt (retries, provider refusals,
preempted checks) are seen only here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attempt:
    """One check attempt that released its lease."""

    account_id: int
    profile_id: int
    kind: str
    """The probe's outcome (``ok``, ``dead``, ``error``, ``busy`` for a provider
    refusal, ``cancelled``), before any retry decision."""
    reason: str | None
    connection_s: float
    """Seconds it held the connection (lease granted to released)."""


class CheckObserver:
    """Counts what happens to leases and checks; this base observes nothing (tests,
    and a coordinator started without metrics)."""

    def lease_denied(self, account_id: int, reason: str) -> None:
        """An account denied a lease (``full``, ``stagger``...)."""

    def check_preempted(self, account_id: int, profile_id: int) -> None:
        """A running check is cancelled because a viewer needs its slot."""

    def attempt_ended(self, attempt: Attempt) -> None:
        """One check attempt released its lease."""
