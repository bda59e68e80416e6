"""What the daemon learned about one provider login, as stored and restored."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LearnedLogin:
    """The learned state of one login (profile), as the results store keeps it."""

    profile_id: int
    limit: int | None = None
    """The effective limit, or ``None`` when nothing lowered it."""
    release_lag_s: float = 0.0
    """The release grace waited before a freed slot is reused; 0 = none."""
    since_refusal_s: float | None = None
    """Seconds since its last refusal (or last step up) when the state was taken."""
