"""An account's lease arithmetic, as a plain class: no threads, no messages.

Each profile is one provider login with its own limit (0 = unlimited). A viewer
holds a slot on the profile his channel plays through; a lease holds a slot on
the profile it was granted on. A profile never goes over its limit through a
grant; viewers may push it over, and then the newest leases are preempted.

The class also keeps what the coordinator was last told about free room, and
the stagger delay between two openings, on an injected clock: the account actor
feeds it events and carries out what it answers (grant or deny, announce room
now, or look again after a delay).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from domain.models import Account, Profile

UNLIMITED = 1_000_000
"""What "free slots" reports for an account with an unlimited profile."""

Clock = Callable[[], float]


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


UrlFor = Callable[[Profile], str | None]
"""The URL a check would open through a profile, or ``None`` if that profile can't serve it."""


@dataclass(frozen=True)
class Grant:
    """A lease was taken on ``profile``; ``free_after`` is the room the coordinator is told of."""

    profile: Profile
    free_after: int
    url: str | None = None
    """What ``url_for`` gave for the profile (``None`` without ``url_for``)."""


@dataclass(frozen=True)
class Denial:
    """No lease now, and why.

    ``"stagger"``: too soon after the last opening; ``"full"``: no room;
    ``"no_usable_profile"``: only profiles that can't serve this stream have room.
    """

    reason: str


@dataclass(frozen=True)
class Announce:
    """What to tell the coordinator after a change.

    ``free > 0``: send ``SlotsFreed(free)`` now. ``wake_in``: room exists but the
    stagger delay holds it back; look again (call :meth:`AccountSlots.announce`)
    after that many seconds. Neither: the coordinator already knows enough.
    """

    free: int = 0
    wake_in: float | None = None


class AccountSlots:
    """Who holds which slot of one account, and what the coordinator knows of it.

    Args:
        account: the account, its profiles and limits.
        stagger_delay: minimum seconds between two openings (0 = off).
        clock: monotonic seconds (``time.monotonic``; a fake one in tests).
    """

    def __init__(
        self, account: Account, stagger_delay: float = 0.0, clock: Clock = time.monotonic
    ) -> None:
        self.account = account
        self.stagger_delay = stagger_delay
        self._clock = clock
        self._profiles: dict[int, _ProfileState] = {}
        self._lease_profile: dict[int, int] = {}
        self._retired: dict[int, _ProfileState] = {}
        self._last_open = -float("inf")
        self._told = UNLIMITED
        """The room the coordinator last heard of (its ``free_hint``); it starts out
        assuming plenty, and only a grant, a denial or an announcement changes it."""
        self.set_account(account, stagger_delay)

    # --- reading ------------------------------------------------------------------

    def free(self) -> int:
        """Slots a new check could take, after the viewer reserve (stagger aside)."""
        total = sum(state.free() for state in self._profiles.values())
        return max(0, min(total, UNLIMITED) - self.account.reserve_for_viewers)

    def stagger_wait(self) -> float:
        """Seconds until the stagger delay allows the next opening (0 or less: now)."""
        if self.stagger_delay <= 0:
            return 0.0
        return self._last_open + self.stagger_delay - self._clock()

    def usage(self) -> dict[int, tuple[int, int, int]]:
        """Per profile id: (viewers, leases, limit)."""
        states = list(self._profiles.values()) + list(self._retired.values())
        return {s.profile.id: (s.viewers, len(s.leases), s.limit) for s in states}

    # --- leases -------------------------------------------------------------------

    def request(self, lease_id: int, url_for: UrlFor | None = None) -> Grant | Denial:
        """Take a slot for ``lease_id`` on the first profile with room, default first.

        Args:
            lease_id: the new lease's id.
            url_for: the URL each profile would open for the stream; a profile
                for which it gives ``None`` is passed over.
        """
        if self.stagger_wait() > 0:
            self._told = 0
            return Denial("stagger")
        if self.free() <= 0:
            self._told = 0
            return Denial("full")
        for state in self._profiles.values():
            if state.free() <= 0:
                continue
            url = url_for(state.profile) if url_for is not None else None
            if url_for is not None and url is None:
                continue
            state.leases.append(lease_id)
            self._lease_profile[lease_id] = state.profile.id
            self._last_open = self._clock()
            self._told = 0 if self.stagger_wait() > 0 else self.free()
            return Grant(state.profile, self._told, url)
        # The room there is can't serve this stream: count it as known to the
        # coordinator, so that only more room (say the default login freeing) is
        # announced, not this same room again and again.
        self._told = self.free()
        return Denial("no_usable_profile")

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

    def announce(self) -> Announce:
        """What the coordinator must hear now, after any change (or a stagger wake-up).

        The coordinator asks for leases only up to the room it last heard of, so
        it must hear whenever there is more: at once, or once the stagger delay
        allows the next opening. A grant inside the stagger window tells it
        "no room" while a slot is still free; that slot is announced after the
        delay instead of being lost until some lease is released.
        """
        room = self.free()
        if room <= self._told:
            return Announce()
        wait = self.stagger_wait()
        if wait > 0:
            return Announce(wake_in=wait)
        self._told = room
        return Announce(free=room)

    # --- viewers and limits -------------------------------------------------------

    def set_viewers(self, viewers: dict[int, int]) -> None:
        """Replace the viewer snapshot (connections per profile id)."""
        for profile_id, state in self._profiles.items():
            state.viewers = max(0, viewers.get(profile_id, 0))

    def set_account(self, account: Account, stagger_delay: float | None = None) -> None:
        """Take new limits and profiles; leases on vanished profiles stay counted until released."""
        self.account = account
        if stagger_delay is not None:
            self.stagger_delay = stagger_delay
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
