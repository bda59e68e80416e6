"""The daemon's plain data: accounts, profiles, streams, channels and check results.

Everything here is a frozen dataclass so it can be shared between actor threads
without copying. Nothing here knows about actors, HTTP or ffmpeg.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from domain.cancel import CancelToken

Status = Literal["ok", "dead", "error", "cancelled"]
"""Final status of one stream's check, as written to the report."""

OutcomeKind = Literal["ok", "dead", "error", "busy", "cancelled"]
"""What a probe saw. ``busy`` means the provider refused because the account is
full; it is never final: the job goes back to the queue."""


@dataclass(frozen=True)
class Profile:
    """One provider login of an account, with its own limit and URL rewrite."""

    id: int
    name: str = "default"
    max_streams: int = 0
    """Simultaneous connections allowed on this login; 0 means unlimited."""
    is_default: bool = False
    is_active: bool = True
    search_pattern: str = "^(.*)$"
    replace_pattern: str = "$1"
    plays_as_default: bool = False
    """Active in the source but not usable here (its pattern does not compile):
    Dispatcharr then plays its viewers through the URL as it is, the default
    login's, so they count there."""
    shares_login_with: tuple[int, ...] = ()
    """Profiles (of this or other accounts of its server group) that resolve to
    the same provider login: Dispatcharr counts them on one counter, so their
    viewers hold this profile's slots too."""


@dataclass(frozen=True)
class Account:
    """An M3U provider account and the profiles (logins) it owns."""

    id: int
    name: str
    max_streams: int = 0
    is_active: bool = True
    profiles: tuple[Profile, ...] = ()
    """Active and inactive profiles; see :meth:`usable_profiles`."""
    user_agent: str | None = None
    stagger_delay: float | None = None
    """Seconds between two connection openings; ``None`` takes the config default."""
    reserve_for_viewers: int = 0
    """Slots kept free for people who may start watching."""
    account_type: str = "STD"
    server_url: str = ""
    username: str = ""
    password: str = ""
    server_group: int | None = None
    """Dispatcharr's server group: its accounts' profiles that resolve to the same
    provider login share one connection counter."""

    def usable_profiles(self) -> tuple[Profile, ...]:
        """Active profiles, default first; an account without profiles gets one.

        The default profile's limit is the account's ``max_streams`` (Dispatcharr
        keeps the two equal), so an account given without profiles behaves as a
        single login with that limit.
        """
        if not self.profiles:
            return (Profile(id=-self.id, max_streams=self.max_streams, is_default=True),)
        active = [p for p in self.profiles if p.is_active]
        return tuple(sorted(active, key=lambda p: not p.is_default))


@dataclass(frozen=True)
class Stream:
    """One stream URL of one account."""

    id: int
    name: str
    account_id: int
    url: str
    stream_id: int | None = None
    """The provider's (Xtream Codes) stream id, when Dispatcharr has one."""
    channel_group: int | None = None


@dataclass(frozen=True)
class Channel:
    """A channel and its streams in failover order (best first)."""

    id: int
    name: str
    stream_ids: tuple[int, ...]
    uuid: str | None = None
    channel_group: int | None = None
    also_named: tuple[str, ...] = ()
    """Its other name: Dispatcharr's own ``name`` where an override shows another
    (``effective_name``, the one kept in ``name``). Either picks it in the config."""

    def names(self) -> tuple[str, ...]:
        """Every name the channel answers to, case-folded and stripped."""
        return tuple(n.strip().casefold() for n in (self.name, *self.also_named))


@dataclass(frozen=True)
class Inventory:
    """What one cycle checks: accounts, streams and the channels that order them."""

    accounts: tuple[Account, ...]
    streams: tuple[Stream, ...]
    channels: tuple[Channel, ...] = ()

    def account(self, account_id: int) -> Account | None:
        """The account with this id, if any."""
        for account in self.accounts:
            if account.id == account_id:
                return account
        return None


@dataclass(frozen=True)
class ViewerSnapshot:
    """Connections held by viewers: per profile id, and per account id.

    An account-level count holds slots on that account's default profile.
    """

    profiles: dict[int, int] = field(default_factory=dict)
    accounts: dict[int, int] = field(default_factory=dict)

    def for_account(self, account: Account) -> dict[int, int]:
        """Viewers per profile id of ``account`` (profile-level plus account-level, on
        the default profile); a profile that shares its login counts the viewers
        of every profile it shares it with.

        The Dispatcharr reader has already put account-level viewers, and those of
        a profile that plays as the default one, on the default profile itself
        (so that the profiles sharing its login see them too).
        """
        usable = account.usable_profiles()
        profiles = self.profiles
        counts = {
            p.id: profiles.get(p.id, 0) + sum(profiles.get(t, 0) for t in p.shares_login_with)
            for p in usable
        }
        extra = self.accounts.get(account.id, 0)
        if extra and usable:
            default = next((p for p in usable if p.is_default), usable[0])
            counts[default.id] = counts.get(default.id, 0) + extra
        return counts


@dataclass(frozen=True)
class ProbeRequest:
    """What a probe needs to check one stream through one lease."""

    url: str
    """Already rewritten for the leased profile."""
    user_agent: str | None
    duration: float
    """Seconds of stream to read."""
    timeout: float
    """Seconds without data after which the stream counts as dead."""
    stream_id: int = 0
    account_id: int = 0
    other_checks_running: int = 0
    """Other connections on this check's login when it was granted (our checks
    and known viewers): a close right after connecting then means the login is
    full, not that the stream is dead."""


@dataclass(frozen=True)
class StreamInfo:
    """What a successful (or partial) probe learned about a stream."""

    resolution: str | None = None
    """``"WxH"``."""
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    audio_channels: str | None = None
    sample_rate: int | None = None
    pixel_format: str | None = None
    bitrate_kbps: float | None = None
    stream_type: str | None = None


@dataclass(frozen=True)
class ProbeOutcome:
    """The result of one probe run, before scoring."""

    kind: OutcomeKind
    info: StreamInfo = field(default_factory=StreamInfo)
    reason: str | None = None
    """Why the stream is dead, errored or busy, e.g. ``"http_404"``."""


@dataclass(frozen=True)
class CheckResult:
    """The final result for one stream, as reported and stored."""

    stream_id: int
    account_id: int
    profile_id: int | None
    status: Status
    resolution: str | None = None
    fps: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    bitrate_kbps: float | None = None
    score: float = 0.0
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    info: StreamInfo = field(default_factory=StreamInfo, compare=False)

    @property
    def alive(self) -> bool:
        """True when the stream played."""
        return self.status == "ok"


Probe: TypeAlias = Callable[[ProbeRequest, CancelToken], ProbeOutcome]
"""Checks one stream. Runs on its own thread, blocks until done, returns quickly
(kind ``cancelled``) once the token is cancelled, and never raises for a problem
of the stream itself (those are outcomes)."""
