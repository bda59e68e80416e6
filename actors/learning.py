"""What an account learns about its provider logins, as a plain class: no threads.

Real providers do not behave as their configured ``max_streams`` says. Per
login (profile) this class learns, from the refusals that mean "full":

- the **effective limit**: a refusal lowers it to what was held on the login
  when it came (our other checks, viewers, and slots still in their release
  grace), never below one; after ``quiet_period_s`` without a refusal it probes
  one step upward again, never above the configured limit;
- the **release lag**: a refusal right after one of our own connections on the
  login closed (before the refused one was granted) means the provider still
  counts the closed connection. The
  first such refusal sets a release grace (at least ``first_grace_s``, twice
  the measured gap); from then on a slot freed on that login is reused only
  after the grace, so no more refusals follow. A refusal after the grace was
  waited out, with nothing else held, doubles it. After ``quiet_period_s``
  without a refusal on the login the grace is halved (below ``first_grace_s``:
  none), since a provider's lag can pass; a refusal right after our close
  then puts the grace back as it was before the step, so each step costs at
  most one refusal if the lag is still there;
- a stream refused **again** in a cycle next to another of our checks (the
  dispatch sends it back once more, see ``Dispatch._refused_alone``) shows a
  lower cap still: the limit goes down to what was held, never a release lag;
  refused again with nothing else on the login, or a third time, it is the
  stream the provider refuses, and what its refusals taught is undone;
- a **hold**: a refusal that nothing of ours explains (nothing held, no recent
  close) means someone else uses the login; it is left alone for
  ``hold_s`` (doubling up to ``max_hold_s``) instead of being asked again.

A dead stream (404, no video, a stall) never reaches :meth:`refused`: only
the probe's ``busy`` outcome does, so a dead stream never lowers a limit.

Every method takes the time from the injected ``clock`` (seconds, monotonic in
the daemon). :meth:`snapshot` and the ``restored`` argument carry the state
over a restart (``adapters.store.save_learned``); ages there are durations, not
clock readings, so they survive a new clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from domain.learned import LearnedLogin

__all__ = ["LearnedLogin", "LearningSettings", "ProviderLearning", "RefusalLesson", "Refused"]

Clock = Callable[[], float]

RefusalLesson = Literal["lowered", "release_lag", "longer_lag", "held", "none", "forgiven"]
"""What a refusal taught: a lower limit, a (longer) release grace, a hold,
nothing new (the limit is already as low as the refusal says), or that the
lesson an earlier refusal of the same stream taught was wrong (``forgiven``)."""


@dataclass(frozen=True)
class LearningSettings:
    """How fast the daemon learns and forgets; ``[learning]`` in the config."""

    quiet_period_s: float = 3600.0
    """Seconds without a refusal on a lowered login before it probes one step up."""
    first_grace_s: float = 3.0
    """Release grace set by the first refusal right after one of our closes."""
    max_grace_s: float = 30.0
    """The release grace never grows past this."""
    lag_window_s: float = 10.0
    """A refusal this soon after our close on the login can be a release lag."""
    hold_s: float = 10.0
    """First hold of a login after a refusal nothing of ours explains; doubled each time."""
    max_hold_s: float = 300.0


@dataclass(frozen=True)
class Refused:
    """The answer to :meth:`ProviderLearning.refused`: what changed."""

    lesson: RefusalLesson
    limit: int | None
    release_lag_s: float
    hold_until: float | None = None


@dataclass
class _Login:
    limit: int | None = None
    grace: float = 0.0
    changed_at: float | None = None
    """Last refusal or step up: the quiet period counts from here."""
    closes: list[float] = field(default_factory=list)
    """Our recent closes on the login (within the lag window), oldest first."""
    grace_at: float | None = None
    """When the release grace was last set, grown or relaxed."""
    relaxed_from: float | None = None
    """The grace before its last relaxing step: a lag refusal puts it back."""
    cooling: list[float] = field(default_factory=list)
    """When each slot freed by one of our closes may be reused (release grace)."""
    hold_until: float | None = None
    holds: int = 0
    taught_by: int | None = None
    """The stream whose refusal taught the last lesson, and the state before it."""
    before: _Before | None = None
    evidence: dict[int | None, int] = field(default_factory=dict)
    """Per stream whose first refusal lowered the limit, the cap it showed: the
    limit is the lowest of these (and of ``base_limit``). A stream found to be
    refused on its own takes back its evidence, and only its own."""
    base_limit: int | None = None
    """The limit before the evidence above: restored, stepped up, or as configured."""


@dataclass(frozen=True)
class _Before:
    limit: int | None
    grace: float
    grace_at: float | None
    hold_until: float | None
    holds: int


class ProviderLearning:
    """Learned limits, release grace and holds of one account's logins.

    Args:
        clock: seconds, monotonic.
        settings: the learning constants.
        restored: what a previous run learned (:meth:`snapshot`).
    """

    def __init__(
        self,
        clock: Clock,
        settings: LearningSettings | None = None,
        restored: Iterable[LearnedLogin] = (),
    ) -> None:
        self._clock = clock
        self.settings = settings or LearningSettings()
        self._logins: dict[int, _Login] = {}
        now = clock()
        for item in restored:
            age = item.since_refusal_s
            changed_at = None if age is None else now - max(0.0, age)
            grace = min(max(0.0, item.release_lag_s), self.settings.max_grace_s)
            self._logins[item.profile_id] = _Login(
                limit=item.limit if item.limit is None else max(1, item.limit),
                grace=grace,
                changed_at=changed_at,
                # The grace relaxes a quiet period after the last refusal or step.
                grace_at=(now if changed_at is None else changed_at) if grace > 0 else None,
            )

    def _login(self, profile_id: int) -> _Login:
        return self._logins.setdefault(profile_id, _Login())

    # --- reading ------------------------------------------------------------------

    def limit(self, profile_id: int, configured: int) -> int:
        """The effective limit of a login configured with ``configured`` (0 = unlimited)."""
        login = self._logins.get(profile_id)
        if login is None or login.limit is None:
            return configured
        if configured == 0:
            return login.limit
        return min(login.limit, configured)

    def release_lag(self, profile_id: int) -> float:
        """Seconds a freed slot of the login waits before it is reused."""
        login = self._logins.get(profile_id)
        return login.grace if login is not None else 0.0

    def cooling(self, profile_id: int) -> int:
        """Slots of the login freed by our closes and still within the release grace."""
        login = self._logins.get(profile_id)
        if login is None or not login.cooling:
            return 0
        now = self._clock()
        login.cooling = [until for until in login.cooling if until > now]
        return len(login.cooling)

    def held(self, profile_id: int) -> bool:
        """True while the login is on hold after an unexplained refusal."""
        login = self._logins.get(profile_id)
        return bool(login and login.hold_until is not None and login.hold_until > self._clock())

    def next_change(self) -> float | None:
        """The clock time when a cooling slot or a hold ends next (for a timer), if any."""
        now = self._clock()
        times = [t for login in self._logins.values() for t in login.cooling if t > now]
        times += [
            login.hold_until
            for login in self._logins.values()
            if login.hold_until is not None and login.hold_until > now
        ]
        return min(times, default=None)

    def status(self, configured: dict[int, int]) -> dict[int, dict[str, float | int | None]]:
        """Per profile id: ``learned_limit`` (``None``: as configured) and ``release_lag_s``."""
        shown: dict[int, dict[str, float | int | None]] = {}
        for profile_id, limit in configured.items():
            login = self._logins.get(profile_id)
            lowered = login is not None and login.limit is not None
            effective = self.limit(profile_id, limit)
            shown[profile_id] = {
                "learned_limit": effective if lowered and effective != limit else None,
                "release_lag_s": round(self.release_lag(profile_id), 2),
            }
        return shown

    def snapshot(self) -> list[LearnedLogin]:
        """What is worth keeping over a restart, one entry per login that learned something."""
        now = self._clock()
        return [
            LearnedLogin(
                profile_id=profile_id,
                limit=login.limit,
                release_lag_s=login.grace,
                since_refusal_s=None if login.changed_at is None else now - login.changed_at,
            )
            for profile_id, login in sorted(self._logins.items())
            if login.limit is not None or login.grace > 0
        ]

    # --- events -------------------------------------------------------------------

    def probe_up(self, profile_id: int, configured: int) -> bool:
        """Raise a lowered limit one step if the login was quiet long enough; True if raised.

        Called before a grant. The next step needs another quiet period, so
        each step costs at most one refusal if the provider's cap did not grow.
        """
        login = self._logins.get(profile_id)
        if login is None or login.limit is None or login.changed_at is None:
            return False
        now = self._clock()
        if not self._quiet(now, login.changed_at):
            return False
        login.limit += 1
        login.changed_at = now
        if configured and login.limit >= configured:
            login.limit = None  # back at the configured limit: nothing learned any more
        login.evidence.clear()  # a quiet period outweighs what the refusals showed
        login.base_limit = login.limit
        return True

    def relax_grace(self, profile_id: int) -> bool:
        """Halve the login's release grace after a quiet period (none below
        ``first_grace_s``); True if it was shortened.

        Called before a grant, as :meth:`probe_up`. The next step needs another
        quiet period; a lag refusal in between undoes the step (see ``_learn``).
        """
        login = self._logins.get(profile_id)
        if login is None or login.grace <= 0 or login.grace_at is None:
            return False
        now = self._clock()
        # Quiet since the last refusal and the last step of either kind: a
        # limit probed up and a grace relaxed never come together, so the
        # refusal that may follow a step says which step it was.
        if not self._quiet(now, login.grace_at, login.changed_at):
            return False
        login.relaxed_from = login.grace
        login.changed_at = now
        half = login.grace / 2
        self._set_grace(login, half if half >= self.settings.first_grace_s else 0.0, now)
        return True

    def _quiet(self, now: float, *since: float | None) -> bool:
        """True if a whole quiet period has passed since each of ``since`` (None: never)."""
        quiet = self.settings.quiet_period_s
        return all(t is None or now - t >= quiet for t in since)

    def closed(self, profile_id: int) -> float | None:
        """One of our connections on the login closed (not a refused one).

        Returns:
            When its slot may be reused, if the login has a release grace.
        """
        login = self._login(profile_id)
        now = self._clock()
        login.closes = [t for t in login.closes if now - t <= self.settings.lag_window_s]
        login.closes.append(now)
        if login.grace <= 0:
            return None
        until = now + login.grace
        login.cooling.append(until)
        return until

    def refused(
        self,
        profile_id: int,
        held: int,
        configured: int,
        granted_at: float | None = None,
        stream_id: int | None = None,
        repeated: bool = False,
        *,
        again: bool = False,
    ) -> Refused:
        """A connection on the login was refused as "full".

        Args:
            profile_id: the login.
            held: connections the login held besides the refused one when it
                came: our other checks and viewers (slots in release grace are
                added here, from :meth:`cooling`).
            configured: the login's configured limit (0 = unlimited).
            granted_at: clock time the refused connection was granted, if known:
                a connection granted before the release grace was learned was
                refused for the lag already learned, and teaches nothing new.
            stream_id: the stream refused, if known.
            repeated: the same stream was refused before in this cycle, and
                checked again once the login had room as learned (the
                dispatch judges it so: see ``Dispatch._refused_alone``). Then
                it is the stream the provider refuses (some answer 403 for a
                stream on its own), not the login: nothing is learned, and if
                that stream's refusals taught the last lessons, they are undone.
            again: the same stream was refused before in this cycle, and is
                judged refused for the login again (another of our checks ran
                on the account): a lower cap than its first refusal showed,
                when anything else was held on the login (not a release lag:
                its first refusal had its chance to show that); with nothing
                held it is the stream, as with ``repeated``. Forgiving the
                stream later undoes both lessons.
        """
        login = self._login(profile_id)
        now = self._clock()
        counted = held + self.cooling(profile_id)
        if repeated or (again and counted == 0):
            return self._forgive(login, stream_id, now)
        before = _Before(login.limit, login.grace, login.grace_at, login.hold_until, login.holds)
        current = self.limit(profile_id, configured)
        lesson = self._learn(login, counted, current, granted_at, now, lag=not again)
        if lesson.lesson == "lowered" and login.limit is not None:
            if not login.evidence:
                login.base_limit = before.limit
            login.evidence[stream_id] = login.limit
        if lesson.lesson != "none" and not (again and login.taught_by == stream_id):
            # A stream that teaches again in the cycle keeps the state before its first lesson.
            login.taught_by, login.before = stream_id, before
        return lesson

    def _forgive(self, login: _Login, stream_id: int | None, now: float) -> Refused:
        """A stream refused again on its own: take back what its refusals taught."""
        forgiven = False
        if stream_id is not None and stream_id in login.evidence:
            del login.evidence[stream_id]
            caps = list(login.evidence.values())
            if login.base_limit is not None:
                caps.append(login.base_limit)
            login.limit = min(caps, default=None)
            forgiven = True
        if stream_id is not None and stream_id == login.taught_by and login.before is not None:
            self._undo(login, login.before, now)  # its hold or grace (the limit: above)
            forgiven = True
        return Refused("forgiven" if forgiven else "none", login.limit, login.grace)

    def _learn(
        self,
        login: _Login,
        counted: int,
        current: int,
        granted_at: float | None,
        now: float,
        *,
        lag: bool = True,
    ) -> Refused:
        """The rules of :meth:`refused` for a stream's first refusal (see the module);
        without ``lag`` (a stream refused again next to others) it only lowers the limit."""
        settings = self.settings
        login.closes = [t for t in login.closes if now - t <= settings.lag_window_s]
        # Only a close before the refused connection was granted can linger in the
        # provider's count: one after it was an open connection the login held then.
        before = [t for t in login.closes if granted_at is None or t <= granted_at]
        gap = now - before[-1] if before else None
        login.changed_at = now
        lesson = self._lag_lesson(login, counted, current, granted_at, gap, now) if lag else None
        if lesson is not None:
            return lesson
        if counted == 0:
            hold = min(settings.max_hold_s, settings.hold_s * 2**login.holds)
            login.holds += 1
            login.hold_until = now + hold
            return Refused("held", login.limit, login.grace, login.hold_until)
        if current and counted >= current:
            return Refused("none", login.limit, login.grace)
        login.limit = counted
        return Refused("lowered", login.limit, login.grace)

    def _lag_lesson(
        self,
        login: _Login,
        counted: int,
        current: int,
        granted_at: float | None,
        gap: float | None,
        now: float,
    ) -> Refused | None:
        """The release-lag rules of :meth:`_learn`; ``None`` if the refusal is no lag."""
        relaxed_from, login.relaxed_from = login.relaxed_from, None
        below = counted < max(current, 1)
        if relaxed_from is not None and gap is not None and below:
            # The lag is still there: the grace as it was before it was relaxed.
            self._set_grace(login, relaxed_from, now)
            return Refused("release_lag", login.limit, login.grace)
        if gap is not None and login.grace <= 0 and below:
            # The provider still counts the connection we just closed.
            self._set_grace(login, max(self.settings.first_grace_s, 2 * gap), now)
            return Refused("release_lag", login.limit, login.grace)
        if granted_at is not None and login.grace_at is not None and granted_at < login.grace_at:
            return Refused("release_lag", login.limit, login.grace)
        if gap is not None and counted == 0 and gap >= login.grace > 0:
            # We waited the grace out with nothing else held: the lag is longer.
            self._set_grace(login, max(2 * login.grace, 2 * gap), now)
            return Refused("longer_lag", login.limit, login.grace)
        return None

    def _undo(self, login: _Login, before: _Before, now: float) -> None:
        """Put the login's hold and grace back as they were before the wrong lesson."""
        login.hold_until = before.hold_until
        login.holds = before.holds
        login.grace = before.grace
        login.grace_at = before.grace_at
        login.cooling = [t + login.grace for t in login.closes if t + login.grace > now]
        login.taught_by = None
        login.before = None

    def _set_grace(self, login: _Login, grace: float, now: float) -> None:
        """Set the release grace; slots our recent closes freed wait it out from their close."""
        login.grace = min(self.settings.max_grace_s, grace)
        login.grace_at = now
        login.cooling = [t + login.grace for t in login.closes if t + login.grace > now]

    def opened(self, profile_id: int) -> None:
        """A connection on the login was granted; a login that takes one is no longer held."""
        login = self._logins.get(profile_id)
        if login is not None and login.hold_until is not None and login.hold_until <= self._clock():
            login.hold_until = None

    def succeeded(self, profile_id: int) -> None:
        """A check on the login got its stream: holds start from the shortest again."""
        login = self._logins.get(profile_id)
        if login is not None:
            login.holds = 0
