"""An account's lease arithmetic, as a plain class: no threads, no messages.

Each profile is one provider login with its own limit (0 = unlimited). A viewer
holds a slot on the profile his channel plays through; a lease holds a slot on
the profile it was granted on. A profile never goes over its limit through a
grant; viewers may push it over, and then the newest leases are preempted.
A check is granted on the login Dispatcharr would hand a new viewer last.

A profile's limit is its ``max_streams``, or lower where the account's
:class:`~actors.learning.ProviderLearning` found the provider's real cap
lower; a slot freed by one of our closes stays taken for the login's release
grace, and a held login offers nothing. What the learning changes is queued
in :attr:`AccountSlots.lessons` for the actor to log and keep.

The class also keeps the account's side of the room count (see
:mod:`actors.messages`: the requests the coordinator may still send, which a
request takes and a release gives back), the stagger delay between two
openings, and whether the viewer counts are known, on an injected clock: the
account actor feeds it events and carries out what it answers (grant or deny,
tell the coordinator how the room changed, or look again after a delay).

When viewer counts are unknown (before the first good read, while reads fail,
or when the last good read is older than ``stale_after``) and the policy is
``"wait"`` (the default), the account fails closed:

- before the first good read it grants nothing;
- afterwards it grants only where the last known counts leave room after
  keeping ``margin`` slots (default 1) for viewers who may have started
  meanwhile. Those slots are kept on the profile Dispatcharr would give a new
  viewer: the first, default first, whose known viewers are under its limit
  (Dispatcharr does not see our connections). So with one login the free room
  is ``limit - last_viewers - leases - margin``.

With ``"last_known"`` the last known counts (the worst of the recent good
reads, as the viewer watcher sends them) are taken as they are, and before the
first read nobody is assumed to watch: the behaviour before fail-closed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from actors.learning import ProviderLearning, RefusalLesson
from domain.models import Account, OutcomeKind, Profile

WhenUnknown = Literal["wait", "last_known"]
ViewerState = Literal["known", "never_read", "read_failed", "stale"]

UNLIMITED = 1_000_000
"""What "free slots" reports for an account with an unlimited profile."""

Clock = Callable[[], float]


@dataclass
class _ProfileState:
    profile: Profile
    viewers: int = 0
    leases: list[int] = field(default_factory=list)
    """Lease ids in grant order, oldest first."""
    learning: ProviderLearning | None = None

    @property
    def limit(self) -> int:
        """The limit in force: the configured one, or the lower one learned."""
        configured = self.profile.max_streams
        if self.learning is None:
            return configured
        return self.learning.limit(self.profile.id, configured)

    def free(self) -> int:
        learning = self.learning
        if learning is not None and learning.held(self.profile.id):
            return 0
        if self.limit == 0:
            return UNLIMITED
        # A slot our close freed stays taken while the provider still counts it.
        cooling = learning.cooling(self.profile.id) if learning is not None else 0
        return max(0, self.limit - self.viewers - len(self.leases) - cooling)


UrlFor = Callable[[Profile], str | None]
"""The URL a check would open through a profile, or ``None`` if that profile can't serve it."""


@dataclass(frozen=True)
class ViewerPolicy:
    """What an account assumes while its viewer counts are unknown (``[viewers]``)."""

    when_unknown: WhenUnknown = "wait"
    margin: int = 1
    """Slots kept for viewers who may have started while the counts are unknown."""
    stale_after: float = 60.0
    """Seconds after the last good read at which the counts count as unknown."""

    @classmethod
    def polled_every(cls, poll_interval: float, when_unknown: WhenUnknown = "wait") -> ViewerPolicy:
        """The policy for counts read every ``poll_interval`` seconds: counts not
        refreshed for three polls (and at least a minute) are unknown too. A read
        that failed says so at once; this covers a watcher that stopped."""
        return cls(when_unknown=when_unknown, stale_after=max(60.0, 3 * poll_interval))


FAIL_CLOSED = ViewerPolicy()
"""The default: no new lease while counts are unknown unless the last ones leave room."""
TRUST_LAST_KNOWN = ViewerPolicy(when_unknown="last_known")
"""The policy without a viewer source: nobody watches unless told."""


@dataclass(frozen=True)
class Grant:
    """A lease was taken on ``profile``."""

    profile: Profile
    url: str | None = None
    """What ``url_for`` gave for the profile (``None`` without ``url_for``)."""
    held: int = 0
    """Connections the profile holds besides this lease: our other leases, its viewers."""


@dataclass(frozen=True)
class Denial:
    """No lease now, and why.

    ``"stagger"``: too soon after the last opening; ``"full"``: no room;
    ``"viewer_count_unknown"``: there would be room, but the viewer counts are
    unknown and what is known leaves none (fail closed);
    ``"no_usable_profile"``: only profiles that can't serve this stream have room.
    """

    reason: str


@dataclass(frozen=True)
class Lesson:
    """Something the account learned about one login (see :mod:`actors.learning`)."""

    profile_id: int
    kind: RefusalLesson | Literal["probed_up", "grace_relaxed"]
    limit: int
    """The limit in force after it (0 = unlimited)."""
    configured: int
    release_lag_s: float
    hold_until: float | None = None


@dataclass(frozen=True)
class Announce:
    """What to tell the coordinator after a change.

    ``change``: send ``RoomChanged(change)`` now (0: its count is right).
    ``wake_in``: the stagger delay holds room back; look again (call
    :meth:`AccountSlots.announce`) after that many seconds. ``short``: why
    there is no room when it is not simply that every slot is taken (a
    :class:`Denial` reason), else ``None``: a full account is the normal case
    and not worth a message per check.
    """

    change: int = 0
    wake_in: float | None = None
    short: str | None = None


class AccountSlots:
    """Who holds which slot of one account, and what the coordinator knows of it.

    Args:
        account: the account, its profiles and limits.
        stagger_delay: minimum seconds between two openings (0 = off).
        clock: monotonic seconds (``time.monotonic``; a fake one in tests).
        viewers: what to assume while viewer counts are unknown.
        learning: what the account learns about its logins (on the same
            clock); ``None`` trusts the configured limits as they are.
    """

    def __init__(
        self,
        account: Account,
        stagger_delay: float = 0.0,
        clock: Clock = time.monotonic,
        viewers: ViewerPolicy = TRUST_LAST_KNOWN,
        learning: ProviderLearning | None = None,
    ) -> None:
        self.account = account
        self.learning = learning
        self._granted_at: dict[int, float] = {}
        self.lessons: list[Lesson] = []
        """What the learning changed, for the actor to log and keep (it empties it)."""
        self.stagger_delay = stagger_delay
        self._clock = clock
        self.policy = viewers
        self._viewers_at: float | None = None
        """Clock time of the last good viewer read; ``None`` before the first."""
        self._counts_known = False
        """Some counts were had: a good read, or the worst recent ones after a failure."""
        self._viewers_failing = False
        self._profiles: dict[int, _ProfileState] = {}
        self._lease_profile: dict[int, int] = {}
        self._retired: dict[int, _ProfileState] = {}
        self._last_open = -float("inf")
        self._room = 0
        """The room as the coordinator counts it: it starts at none, and the
        account's first announcement gives what it has."""
        self._unusable = 0
        """Free slots found unable to serve a stream (its URL unchanged by their
        login's rewrite): not offered again until the room grows past them."""
        self.set_account(account, stagger_delay)

    # --- reading ------------------------------------------------------------------

    def free(self) -> int:
        """Slots a new check could take, after the viewer reserve (stagger aside)."""
        return self._total(self._room_by_profile())

    def _total(self, room: list[tuple[_ProfileState, int]]) -> int:
        total = sum(free for _state, free in room)
        return max(0, min(total, UNLIMITED) - self.account.reserve_for_viewers)

    def _room_by_profile(self, *, fail_closed: bool = True) -> list[tuple[_ProfileState, int]]:
        """Free slots per profile, default first; while counts are unknown, fail closed."""
        states = list(self._profiles.values())
        if not fail_closed or self.viewer_state() == "known":
            return [(state, state.free()) for state in states]
        if not self._counts_known:
            return [(state, 0) for state in states]
        placed = {state.profile.id: 0 for state in states}
        for _ in range(self.policy.margin):
            # The next viewer gets the first login Dispatcharr sees room on: it
            # counts viewers only, never our connections.
            for state in states:
                if state.limit == 0:
                    break  # an unlimited login takes any number of viewers
                if state.viewers + placed[state.profile.id] < state.limit:
                    placed[state.profile.id] += 1
                    break
        room = {
            state.profile.id: max(0, state.free() - placed[state.profile.id]) for state in states
        }
        return [(state, room[state.profile.id]) for state in states]

    def viewer_state(self) -> ViewerState:
        """Whether the viewer counts can be trusted now (always, with ``"last_known"``)."""
        if self.policy.when_unknown == "last_known":
            return "known"
        if not self._counts_known:
            return "never_read"
        if self._viewers_failing:
            return "read_failed"
        if self._viewers_at is None or self._clock() - self._viewers_at > self.policy.stale_after:
            return "stale"
        return "known"

    def stagger_wait(self) -> float:
        """Seconds until the stagger delay allows the next opening (0 or less: now)."""
        if self.stagger_delay <= 0:
            return 0.0
        return self._last_open + self.stagger_delay - self._clock()

    @property
    def room(self) -> int:
        """The room as both sides count it (see :mod:`actors.messages`)."""
        return self._room

    def usage(self) -> dict[int, tuple[int, int, int]]:
        """Per profile id: (viewers, leases, limit in force)."""
        states = list(self._profiles.values()) + list(self._retired.values())
        return {s.profile.id: (s.viewers, len(s.leases), s.limit) for s in states}

    def usage_detail(self) -> dict[int, dict[str, int | float | None]]:
        """Per profile id: viewers, leases, the configured limit, and what was learned.

        ``learned_limit`` is ``None`` unless the provider's real cap was found
        lower; ``release_lag_s`` is the grace a freed slot waits (0: none).
        """
        states = list(self._profiles.values()) + list(self._retired.values())
        learning = self.learning
        detail: dict[int, dict[str, int | float | None]] = {}
        for s in states:
            configured = s.profile.max_streams
            in_force = s.limit
            detail[s.profile.id] = {
                "viewers": s.viewers,
                "leases": len(s.leases),
                "limit": configured,
                "learned_limit": in_force if in_force != configured else None,
                "release_lag_s": learning.release_lag(s.profile.id) if learning else 0.0,
            }
        return detail

    # --- leases -------------------------------------------------------------------

    def request(self, lease_id: int, url_for: UrlFor | None = None) -> Grant | Denial:
        """Take a slot for ``lease_id`` on the login Dispatcharr would hand a viewer last.

        Dispatcharr gives a new viewer the default login first, then the others
        in order, and does not see our connections: so a check takes the last
        login with room, and the default one only when the others are full. A
        viewer who starts while some login is free then never meets a check.

        Args:
            lease_id: the new lease's id.
            url_for: the URL each profile would open for the stream; a profile
                for which it gives ``None`` is passed over.
        """
        self._room -= 1
        if self.stagger_wait() > 0:
            return Denial("stagger")
        room = self._room_by_profile()
        if self._total(room) <= 0:
            if self._total(self._room_by_profile(fail_closed=False)) > 0:
                return Denial("viewer_count_unknown")
            return Denial("full")
        for state, free in reversed(room):
            if free <= 0:
                continue
            url = url_for(state.profile) if url_for is not None else None
            if url_for is not None and url is None:
                continue
            state.leases.append(lease_id)
            self._lease_profile[lease_id] = state.profile.id
            self._last_open = self._clock()
            self._granted_at[lease_id] = self._last_open
            if self.learning is not None:
                self.learning.opened(state.profile.id)
            return Grant(state.profile, url, held=state.viewers + len(state.leases) - 1)
        # The room there is can't serve this stream: hold it back from the
        # count, so that only more room (say the default login freeing) is
        # offered, not this same room again and again.
        self._unusable = self.free()
        return Denial("no_usable_profile")

    def release(
        self,
        lease_id: int,
        outcome: OutcomeKind | None = None,
        stream_id: int | None = None,
        *,
        repeated: bool = False,
        again: bool = False,
    ) -> bool:
        """Give a lease's slot back; False if it was not held (already released).

        Either way the release gives the coordinator's room back (both sides
        count the message).

        Args:
            lease_id: the lease.
            outcome: how its check ended: ``busy`` means the provider refused the
                connection as full (what the learning learns from), anything
                else that our connection closed; ``None``: no connection was
                opened (the lease was handed back unused).
            stream_id: the stream the check was for.
            repeated, again: a ``busy`` for a stream refused before, judged the
                stream's own or the login's (see
                :meth:`actors.learning.ProviderLearning.refused`).
        """
        self._room += 1
        profile_id = self._lease_profile.pop(lease_id, None)
        granted_at = self._granted_at.pop(lease_id, None)
        if profile_id is None:
            return False
        state = self._profiles.get(profile_id) or self._retired.get(profile_id)
        if state is not None:
            state.leases.remove(lease_id)
            if profile_id in self._retired and not state.leases:
                del self._retired[profile_id]
        if self.learning is not None and state is not None and outcome is not None:
            self._learn(state, outcome, granted_at, stream_id, repeated=repeated, again=again)
        return True

    def _learn(
        self,
        state: _ProfileState,
        outcome: OutcomeKind,
        granted_at: float | None,
        stream_id: int | None,
        *,
        repeated: bool,
        again: bool,
    ) -> None:
        learning = self.learning
        assert learning is not None
        profile = state.profile
        if outcome != "busy":
            learning.closed(profile.id)
            if outcome == "ok":
                learning.succeeded(profile.id)
            return
        held = state.viewers + len(state.leases)
        refused = learning.refused(
            profile.id, held, profile.max_streams, granted_at, stream_id, repeated, again=again
        )
        if refused.lesson != "none":
            self._lesson(profile, refused.lesson, refused.hold_until)

    def next_learning_change(self) -> float | None:
        """Clock time when a slot in its release grace or a held login frees, if any."""
        return None if self.learning is None else self.learning.next_change()

    def announce(self) -> Announce:
        """What the coordinator must hear now, after any change (or a stagger wake-up).

        The coordinator asks for leases only up to the room it counts, so it
        hears whenever the real room differs: more (at once, or once the stagger
        delay allows the next opening) or less (viewers came, a limit went
        down, the stagger delay holds openings back).
        """
        self._probe_up()
        real, wait, short = self._real_room()
        change = real - self._room
        self._room = real
        return Announce(change, wait, short)

    def _probe_up(self) -> None:
        """Let a login try one step back toward its configured behaviour after its
        quiet period: a lowered limit one up, a release grace halved."""
        learning = self.learning
        if learning is None:
            return
        for state in self._profiles.values():
            profile = state.profile
            if learning.probe_up(profile.id, profile.max_streams):
                self._lesson(profile, "probed_up")
            if learning.relax_grace(profile.id):
                self._lesson(profile, "grace_relaxed")

    def _lesson(
        self,
        profile: Profile,
        kind: RefusalLesson | Literal["probed_up", "grace_relaxed"],
        hold_until: float | None = None,
    ) -> None:
        learning = self.learning
        assert learning is not None
        configured = profile.max_streams
        limit = learning.limit(profile.id, configured)
        lag = learning.release_lag(profile.id)
        self.lessons.append(Lesson(profile.id, kind, limit, configured, lag, hold_until))

    def _real_room(self) -> tuple[int, float | None, str | None]:
        """The room to offer now, when to look again (stagger), and why there is none."""
        wait = self.stagger_wait()
        if wait > 0:
            return 0, wait, "stagger"
        free = self.free()
        self._unusable = min(self._unusable, free)
        if free >= UNLIMITED // 2:
            # An unlimited login has room whatever runs: counting the leases off
            # keeps the room from changing with every grant and release.
            return free - len(self._lease_profile), None, None
        if free > self._unusable:
            return free - self._unusable, None, None
        if free:
            return 0, None, "no_usable_profile"
        if self._total(self._room_by_profile(fail_closed=False)) > 0:
            return 0, None, "viewer_count_unknown"
        return 0, None, None

    # --- viewers and limits -------------------------------------------------------

    def set_viewers(self, viewers: dict[int, int], read_at: float | None = None) -> None:
        """A good read: replace the viewer counts (connections per profile id).

        Args:
            viewers: connections held by viewers, per profile id.
            read_at: clock time of the read (default now), for ``stale_after``.
        """
        self._count(viewers)
        self._viewers_at = self._clock() if read_at is None else read_at
        self._counts_known = True
        self._viewers_failing = False

    def viewers_unknown(self, assumed: dict[int, int] | None = None) -> None:
        """A failed read: the counts are unknown; ``assumed`` are the worst recently seen."""
        self._viewers_failing = True
        if assumed is not None:
            self._count(assumed)
            self._counts_known = True

    def _count(self, viewers: dict[int, int]) -> None:
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
            state = _ProfileState(profile, learning=self.learning)
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
