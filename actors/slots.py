"""An account's lease arithmetic, as a plain class: no threads, no messages.

Each profile is one provider login with its own limit (0 = unlimited). A viewer
holds a slot on the profile his channel plays through; a lease holds a slot on
the profile it was granted on. A profile never goes over its limit through a
grant; viewers may push it over, and then the newest leases are preempted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.models import Account, Profile

UNLIMITED = 1_000_000
"""What "free slots" reports for an account with an unlimited profile."""


@dataclass
class _ProfileState:
    profile: Profile
    viewers: int = 0
    leases: list[int] = field(default_factory=list)
    """Lease ids in grant order, oldest first."""

    @property
    def limit(self) -> int:
        return self.profile.max_streams

    def free(self) -> int:
        if self.limit == 0:
            return UNLIMITED
        return max(0, self.limit - self.viewers - len(self.leases))


class AccountSlots:
    """Who holds which slot of one account: viewers and leases per profile."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self._profiles: dict[int, _ProfileState] = {}
        self._lease_profile: dict[int, int] = {}
        self._retired: dict[int, _ProfileState] = {}
        self.set_account(account)

    # --- reading ------------------------------------------------------------------

    @property
    def lease_count(self) -> int:
        """Leases held now."""
        return len(self._lease_profile)

    def free(self) -> int:
        """Slots a new check could take now, after the viewer reserve."""
        total = sum(state.free() for state in self._profiles.values())
        return max(0, min(total, UNLIMITED) - self.account.reserve_for_viewers)

    def usage(self) -> dict[int, tuple[int, int, int]]:
        """Per profile id: (viewers, leases, limit)."""
        states = list(self._profiles.values()) + list(self._retired.values())
        return {s.profile.id: (s.viewers, len(s.leases), s.limit) for s in states}

    def over_limit(self) -> bool:
        """True if some profile has more viewers plus leases than its limit."""
        return any(s.limit and s.viewers + len(s.leases) > s.limit for s in self._profiles.values())

    # --- changing -----------------------------------------------------------------

    def grant(self, lease_id: int) -> Profile | None:
        """Take a slot for ``lease_id`` on the first profile with room, default first."""
        if self.free() <= 0:
            return None
        for state in self._profiles.values():
            if state.free() > 0:
                state.leases.append(lease_id)
                self._lease_profile[lease_id] = state.profile.id
                return state.profile
        return None

    def release(self, lease_id: int) -> bool:
        """Give a lease's slot back; False if it was not held (already released)."""
        profile_id = self._lease_profile.pop(lease_id, None)
        if profile_id is None:
            return False
        state = self._profiles.get(profile_id) or self._retired.get(profile_id)
        if state is not None:
            state.leases.remove(lease_id)
            if profile_id in self._retired and not state.leases:
                del self._retired[profile_id]
        return True

    def set_viewers(self, viewers: dict[int, int]) -> None:
        """Replace the viewer snapshot (connections per profile id)."""
        for profile_id, state in self._profiles.items():
            state.viewers = max(0, viewers.get(profile_id, 0))

    def set_account(self, account: Account) -> None:
        """Take new limits and profiles; leases on vanished profiles stay counted until released."""
        self.account = account
        old = {**self._retired, **self._profiles}
        self._profiles = {}
        for profile in account.usable_profiles():
            previous = old.pop(profile.id, None)
            state = _ProfileState(profile)
            if previous is not None:
                state.viewers = previous.viewers
                state.leases = previous.leases
            self._profiles[profile.id] = state
        self._retired = {pid: s for pid, s in old.items() if s.leases}

    def leases_to_preempt(self, already: set[int]) -> list[int]:
        """The newest leases that must go so viewers fit, skipping ``already`` cancelled ones.

        Leases being cancelled still hold their connection until released, so
        they count as going, not as free room. A limit lowered below the running
        checks preempts nothing by itself: those checks end on their own and no
        new lease is granted until the profile is under its limit.
        """
        chosen: list[int] = []
        for state in self._profiles.values():
            if state.limit == 0 or state.viewers == 0:
                continue
            live = [lease for lease in state.leases if lease not in already]
            excess = state.viewers + len(live) - state.limit
            if excess > 0:
                chosen.extend(reversed(live[-excess:]))
        return chosen


def capacity(account: Account) -> int:
    """Connections the account allows in all: the sum of its active profiles' limits.

    Returns :data:`UNLIMITED` if any usable profile is unlimited.
    """
    limits = [p.max_streams for p in account.usable_profiles()]
    if not limits or any(limit == 0 for limit in limits):
        return UNLIMITED
    return sum(limits)
