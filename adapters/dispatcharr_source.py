"""Turn Dispatcharr's JSON into the daemon's inventory, and results into PATCH bodies.

Pure functions, no HTTP: :class:`adapters.dispatcharr.DispatcharrClient`
fetches, these validate and convert. The fields are read with
:mod:`adapters.schema` (in Dispatcharr's dialect), so an answer of the wrong
shape raises one :class:`~adapters.dispatcharr.DispatcharrBadResponse` naming
the endpoint and the path of every bad field (``/api/m3u/accounts/:
[2].profiles[0].max_streams: expected an integer, got null``); unknown fields
are ignored, since Dispatcharr adds fields from version to version.

Decisions worth knowing:

- Inactive accounts are dropped, and so is an account whose default profile
  is inactive (Dispatcharr skips it entirely when picking a stream).
- The ``locked`` account is Dispatcharr's built-in "custom" account of
  user-made streams. Each of its streams carries its own full URL and it has
  no provider server, so it is kept like any account, with the limit
  Dispatcharr gives it (normally 0, unlimited), and always as ``STD`` so no
  Xtream Codes URL is ever built for it.
- A non-default profile whose ``search_pattern`` is not a valid regex is kept
  but marked inactive: Dispatcharr would fall back to the unchanged URL, i.e.
  the default login, and a check through it would count against the wrong
  login's limit.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any, Final

import structlog

from adapters.dispatcharr import (
    ACCOUNTS_PATH,
    CHANNELS_PATH,
    PROXY_STATS_PATH,
    PROXY_STATUS_PATH,
    STREAMS_PATH,
    DispatcharrBadResponse,
)
from adapters.schema import API, Field, Problems, Reader, json_kind
from domain.models import (
    Account,
    Channel,
    CheckResult,
    Inventory,
    Profile,
    Stream,
    StreamInfo,
    ViewerSnapshot,
)
from domain.urls import check_pattern, stream_url_for

log = structlog.get_logger(__name__)

IDLE_STATES: Final = frozenset({"stopping", "stopped", "error"})
"""Proxy channel states that hold no upstream connection."""
CHECKER_KEYS: Final = (
    "checker_status",
    "checker_score",
    "checker_checked_at",
    "checker_error",
    "checker_last_error",
    "checker_last_error_at",
)
"""Our own keys inside ``stream_stats``; Dispatcharr ignores them."""
JUDGED_STATUSES: Final = frozenset({"ok", "dead"})
"""Results that say whether a stream plays. ``error`` (provider busy, account
refused, our own failure) and ``cancelled`` say nothing about the stream."""
_UNJUDGED_NOTE: Final = ("checker_last_error", "checker_last_error_at")


ID = Field("int", null_absent=False)
"""A required integer; ``null`` is wrong, not absent."""
LIMIT = Field("int", default=0, minimum=0, null_absent=False)
OPTIONAL_ID = Field("int", default=None, digits=True, noun="an integer or null")
"""An integer or null/absent; a string of digits is accepted too."""
TEXT = Field("str", default="")
NAME = Field("str", default=None)
ACTIVE = Field("bool", default=True, null_absent=False)
NOT_SET = Field("bool", default=False, null_absent=False)

ACCOUNT = {
    "id": ID,
    "name": NAME,
    "max_streams": LIMIT,
    "locked": NOT_SET,
    "account_type": Field("str", default="STD"),
    "is_active": ACTIVE,
    "server_url": TEXT,
    "username": TEXT,
    "password": TEXT,
    "server_group": OPTIONAL_ID,
}
PROFILE = {
    "id": ID,
    "is_default": NOT_SET,
    "search_pattern": TEXT,
    "is_active": ACTIVE,
    "name": NAME,
    "max_streams": LIMIT,
    "replace_pattern": TEXT,
}
STREAM = {
    "id": ID,
    "m3u_account": OPTIONAL_ID,
    "name": TEXT,
    "url": TEXT,
    "stream_id": OPTIONAL_ID,
    "channel_group": OPTIONAL_ID,
}
CHANNEL = {
    "id": ID,
    "uuid": NAME,
    "name": TEXT,
    "effective_name": TEXT,
    "channel_group_id": OPTIONAL_ID,
}


def _objects(endpoint: str, data: object, problems: Problems) -> Iterator[Reader]:
    """A reader of each object of the array ``data`` (the whole answer)."""
    if not isinstance(data, list):
        raise DispatcharrBadResponse(endpoint, "", f"expected an array, got {json_kind(data)}")
    for index, item in enumerate(data):
        reader = Reader.of(item, f"[{index}]", problems, API)
        if reader is not None:
            yield reader


def _named(name: str | None, default: str) -> str:
    return default if name is None else name


# --- accounts -------------------------------------------------------------------------


def parse_accounts(data: object) -> tuple[Account, ...]:
    """Usable accounts from ``GET /api/m3u/accounts/`` (a bare array).

    Inactive accounts and accounts whose default profile is inactive are left
    out; inactive non-default profiles are kept with ``is_active=False``
    (:meth:`Account.usable_profiles` filters them).

    Raises:
        DispatcharrBadResponse: ``data`` is not an array of account objects, or
            a field has the wrong type.
    """
    problems = Problems(ACCOUNTS_PATH)
    accounts: list[Account] = []
    seen: set[int] = set()
    for obj in _objects(ACCOUNTS_PATH, data, problems):
        account = _account(obj)
        if account is None:
            continue
        if account.id in seen:
            log.warning("dispatcharr.account_duplicate", account_id=account.id)
            continue
        seen.add(account.id)
        accounts.append(account)
    problems.check(DispatcharrBadResponse.of)
    return tuple(accounts)


def _account(obj: Reader) -> Account | None:
    """The account, or ``None`` when it is left out or has a bad field (noted)."""
    before = len(obj.problems)
    v = obj.read(ACCOUNT)
    profiles = [_profile(item) for item in obj.objects("profiles")]
    if len(obj.problems) > before:
        return None
    account_id: int = v["id"]
    user_agent = obj.data.get("user_agent")
    account = Account(
        id=account_id,
        name=_named(v["name"], f"account {account_id}"),
        max_streams=v["max_streams"],
        is_active=v["is_active"],
        profiles=tuple(p for p in profiles if p is not None),
        user_agent=user_agent if isinstance(user_agent, str) and user_agent else None,
        account_type="STD" if v["locked"] else v["account_type"] or "STD",
        server_url=v["server_url"],
        username=v["username"],
        password=v["password"],
        server_group=v["server_group"],
    )
    if not account.is_active:
        log.debug("dispatcharr.account_skipped", account_id=account_id, reason="inactive")
        return None
    if any(p.is_default and not p.is_active for p in account.profiles):
        log.info("dispatcharr.account_skipped", account_id=account_id, reason="default_inactive")
        return None
    if account.profiles and not account.usable_profiles():
        log.info("dispatcharr.account_skipped", account_id=account_id, reason="no_active_profile")
        return None
    return account


def _profile(obj: Reader) -> Profile | None:
    before = len(obj.problems)
    v = obj.read(PROFILE)
    if len(obj.problems) > before:
        return None
    profile_id: int = v["id"]
    search: str = v["search_pattern"]
    is_active: bool = v["is_active"]
    problem = check_pattern(search) if search else None
    plays_as_default = False
    if problem is not None and not v["is_default"] and is_active:
        log.warning(
            "dispatcharr.profile_disabled",
            profile_id=profile_id,
            reason="invalid_search_pattern",
            error=problem,
            hint="its viewers count on the default login, whose URL Dispatcharr then plays",
        )
        is_active = False
        plays_as_default = True
    return Profile(
        id=profile_id,
        name=_named(v["name"], f"profile {profile_id}"),
        max_streams=v["max_streams"],
        is_default=v["is_default"],
        is_active=is_active,
        search_pattern=search,
        replace_pattern=v["replace_pattern"],
        plays_as_default=plays_as_default,
    )


# --- streams and channels -------------------------------------------------------------


def parse_streams(data: object, accounts: Iterable[Account]) -> tuple[Stream, ...]:
    """Streams of the given (active) accounts from ``GET /api/channels/streams/``.

    ``data`` is the list of stream objects (all pages joined). Streams of other
    accounts, without an account, or without a URL to play are left out.

    Raises:
        DispatcharrBadResponse: Not an array of stream objects, or a field has
            the wrong type.
    """
    by_id = {account.id: account for account in accounts}
    problems = Problems(STREAMS_PATH)
    streams: list[Stream] = []
    seen: set[int] = set()
    for obj in _objects(STREAMS_PATH, data, problems):
        before = len(problems)
        v = obj.read(STREAM)
        account_id = v["m3u_account"]
        account = by_id.get(account_id) if account_id is not None else None
        if len(problems) > before or account is None or v["id"] in seen:
            continue
        stream = Stream(
            id=v["id"],
            name=v["name"],
            account_id=account.id,
            url=v["url"],
            stream_id=v["stream_id"],
            channel_group=v["channel_group"],
        )
        playable_xc = account.account_type == "XC" and stream.stream_id is not None
        if not stream.url and not playable_xc:
            log.info("dispatcharr.stream_skipped", stream_id=stream.id, reason="no_url")
            continue
        seen.add(stream.id)
        streams.append(stream)
    problems.check(DispatcharrBadResponse.of)
    return tuple(streams)


def parse_channels(data: object) -> tuple[Channel, ...]:
    """Channels from ``GET /api/channels/channels/`` (a bare array).

    ``streams`` may be ids or, with ``include_streams=true``, stream objects
    with an ``id``; the order is kept as is (it is the failover order).

    Raises:
        DispatcharrBadResponse: Not an array of channel objects, or a field has
            the wrong type.
    """
    problems = Problems(CHANNELS_PATH)
    channels: list[Channel] = []
    for obj in _objects(CHANNELS_PATH, data, problems):
        before = len(problems)
        v = obj.read(CHANNEL)
        stream_ids = _stream_ids(obj)
        if len(problems) > before:
            continue
        # What users see is the effective name (an override's, where there is one).
        shown = v["effective_name"] or v["name"] or ""
        raw = v["name"]
        channels.append(
            Channel(
                id=v["id"],
                name=shown,
                stream_ids=tuple(stream_ids),
                uuid=v["uuid"],
                channel_group=v["channel_group_id"],
                also_named=(raw,) if raw and raw != shown else (),
            )
        )
    problems.check(DispatcharrBadResponse.of)
    return tuple(channels)


def _stream_ids(obj: Reader) -> list[int]:
    ids: list[int] = []
    for where, entry in obj.items("streams"):
        if isinstance(entry, dict):
            ident = Reader(entry, where, obj.problems, API).get("id", ID)
            if ident is not None:
                ids.append(ident)
        elif isinstance(entry, int) and not isinstance(entry, bool):
            ids.append(entry)
        else:
            obj.problems.add(where, f"expected a stream id or object, got {json_kind(entry)}")
    return ids


_LOGIN_IN_URL = re.compile(r"/(?:live|movie|series)/([^/]+)/([^/]+)/", re.IGNORECASE)
"""The provider login in an Xtream-style URL, as Dispatcharr finds it for its pools."""


def _login_of(account: Account, profile: Profile, sample: Stream | None) -> tuple[str, str] | None:
    """The provider login ``profile`` plays with, as Dispatcharr fingerprints it: an
    Xtream Codes account's credentials rewritten by the profile, else a stream of
    the account rewritten by it, else the account's own."""
    if account.account_type == "XC" and account.server_url and account.username:
        sample = Stream(0, "", account.id, "", stream_id=1234)  # no stream needed
    if sample is not None:
        match = _LOGIN_IN_URL.search(stream_url_for(account, profile, sample))
        if match:
            return match[1].lower(), match[2]
    if account.username and account.password:
        return account.username.lower(), account.password
    return None


Pool = list[tuple[Account, Profile]]


def pool_shared_logins(inventory: Inventory) -> Inventory:
    """Accounts whose logins a Dispatcharr server group pools, made to count together.

    Dispatcharr counts the profiles of one server group that resolve to the same
    provider login (and have a limit) on one counter, held to each profile's own
    ``max_streams``. Each account actor counts its own profiles only, so such a
    login's smallest limit is split between the profiles of accounts that have
    streams to check (a profile left with no slot is not used for checks), and
    each profile counts the viewers of all of them.
    """
    samples: dict[int, Stream] = {}
    for stream in inventory.streams:
        samples.setdefault(stream.account_id, stream)
    changed: dict[int, Profile] = {}
    for (group, _user, _password), members in _pools(inventory.accounts, samples).items():
        if len(members) > 1:
            changed.update(_split(group, members, samples))
    if not changed:
        return inventory
    accounts = []
    for given in inventory.accounts:
        account = replace(given, profiles=tuple(changed.get(p.id, p) for p in given.profiles))
        if account.usable_profiles():
            accounts.append(account)
        else:  # its one login's slots went to another account of the group
            log.warning("dispatcharr.account_skipped", account_id=account.id, reason="login_pooled")
    kept = {a.id for a in accounts}
    streams = tuple(s for s in inventory.streams if s.account_id in kept)
    return replace(inventory, accounts=tuple(accounts), streams=streams)


def _pools(
    accounts: Iterable[Account], samples: Mapping[int, Stream]
) -> dict[tuple[int, str, str], Pool]:
    """The limited profiles of server-group accounts, by group and provider login."""
    pools: dict[tuple[int, str, str], Pool] = {}
    for account in accounts:
        if account.server_group is None:
            continue
        for profile in account.usable_profiles():
            login = _login_of(account, profile, samples.get(account.id))
            if profile.max_streams > 0 and login is not None:
                pools.setdefault((account.server_group, *login), []).append((account, profile))
    return pools


def _split(group: int, members: Pool, samples: Mapping[int, Stream]) -> dict[int, Profile]:
    """One pooled login's profiles, each with its share of the smallest limit."""
    members = sorted(members, key=lambda m: (m[0].id, m[1].id))
    cap = min(profile.max_streams for _, profile in members)
    ids = [profile.id for _, profile in members]
    checking = [profile.id for account, profile in members if account.id in samples]
    base, extra = divmod(cap, max(1, len(checking)))
    shares = {pid: base + (1 if index < extra else 0) for index, pid in enumerate(checking)}
    log.info(
        "dispatcharr.login_shared",
        server_group=group,
        profiles=ids,
        limit=cap,
        shares=shares,  # of the profiles whose accounts have streams to check
        hint="Dispatcharr counts these on one counter: the daemon splits the limit",
    )
    changed = {}
    for _account, profile in members:
        share = shares.get(profile.id)
        changed[profile.id] = replace(
            profile,
            max_streams=share or profile.max_streams,
            is_active=profile.is_active and share != 0,
            shares_login_with=tuple(i for i in ids if i != profile.id),
        )
    return changed


def build_inventory(
    accounts: tuple[Account, ...],
    streams: tuple[Stream, ...],
    channels: tuple[Channel, ...],
    *,
    include_all_streams: bool = False,
    exclude_groups: Collection[int] = (),
    exclude_channels: Collection[int | str] = (),
) -> Inventory:
    """What one cycle checks.

    Channels are dropped when their id or name (case-insensitive) is in
    ``exclude_channels`` or their ``channel_group`` is in ``exclude_groups``.
    Kept channels keep every stream id they have, also of inactive accounts,
    so a write-back can never drop a stream.

    Streams: by default those of the kept channels (first appearance in channel
    order), whose account is in ``accounts``. With ``include_all_streams``
    every stream of those accounts is added after them, except streams whose
    own ``channel_group`` is excluded and streams only excluded channels use.
    """
    names = {str(x).strip().casefold() for x in exclude_channels if isinstance(x, str)}
    ids = {x for x in exclude_channels if isinstance(x, int)}
    groups = set(exclude_groups)
    kept: list[Channel] = []
    dropped: set[int] = set()
    for channel in channels:
        if (
            channel.id in ids
            or not names.isdisjoint(channel.names())
            or (channel.channel_group is not None and channel.channel_group in groups)
        ):
            dropped.update(channel.stream_ids)
            continue
        kept.append(channel)
    account_ids = {account.id for account in accounts}
    by_id = {s.id: s for s in streams if s.account_id in account_ids}
    wanted: dict[int, Stream] = {}
    for channel in kept:
        for stream_id in channel.stream_ids:
            stream = by_id.get(stream_id)
            if stream is not None:
                wanted.setdefault(stream_id, stream)
    if include_all_streams:
        for stream in by_id.values():
            if stream.id in dropped or stream.channel_group in groups:
                continue
            wanted.setdefault(stream.id, stream)
    return Inventory(accounts=accounts, streams=tuple(wanted.values()), channels=tuple(kept))


# --- viewers --------------------------------------------------------------------------


def viewers_from_status(
    status: Mapping[str, Any],
    accounts: Iterable[Account],
    stream_accounts: Mapping[int, int] | None = None,
) -> ViewerSnapshot:
    """Connections viewers hold, from ``/proxy/ts/status`` or ``/proxy/stats/``.

    One running live channel is one upstream connection on its
    ``m3u_profile_id``, whatever its ``client_count``; channels in state
    ``stopping``, ``stopped`` or ``error`` hold none. A channel without
    ``m3u_profile_id`` but with a ``stream_id`` found in ``stream_accounts``
    (stream id to account id) counts on that account, i.e. on its default
    profile. In the ``/proxy/stats/`` shape each VOD connection and each
    catch-up session with an ``m3u_profile_id`` is one more connection.
    Profiles of accounts not in ``accounts`` are ignored.

    Raises:
        DispatcharrBadResponse: The status is not of either shape.
    """
    if not isinstance(status, Mapping):
        detail = f"expected an object, got {json_kind(status)}"
        raise DispatcharrBadResponse(PROXY_STATUS_PATH, "", detail)
    accounts = tuple(accounts)
    known = {p.id for account in accounts for p in account.profiles}
    # A login's other profiles too (of an account left out, say): their viewers hold it.
    known.update(t for account in accounts for p in account.profiles for t in p.shares_login_with)
    known_accounts = {account.id for account in accounts}
    counter = _ViewerCounter(known, known_accounts, stream_accounts or {})
    endpoint = PROXY_STATS_PATH if "live" in status else PROXY_STATUS_PATH
    problems = Problems(endpoint)
    root = Reader(dict(status), "", problems, API)
    if "live" in status:
        live = root.child("live")
        if live is not None:
            counter.live(live)
        vod = root.child("vod")
        if vod is not None:
            counter.sessions(vod, "vod_connections")
        catchup = root.child("catchup")
        if catchup is not None:
            counter.sessions(catchup, "timeshift_sessions")
    else:
        counter.live(root)
    problems.check(DispatcharrBadResponse.of)
    return ViewerSnapshot(profiles=_on_logins(counter.profiles, counter.accounts, accounts))


def _on_logins(
    profiles: Counter[int], by_account: Counter[int], accounts: Iterable[Account]
) -> dict[int, int]:
    """Viewers per profile id, those of a whole account and of a profile that plays as
    the default one moved onto the account's default profile (active or not): the
    login they hold, which other profiles may share."""
    counts = Counter(profiles)
    for account in accounts:
        default = next((p for p in account.profiles if p.is_default), None)
        if default is None:
            default = (account.profiles or account.usable_profiles())[0]
        moved = by_account.get(account.id, 0)
        for profile in account.profiles:
            if profile.plays_as_default:
                moved += counts.pop(profile.id, 0)
        if moved:
            counts[default.id] += moved
    return dict(counts)


_LIVE = {"state": TEXT, "m3u_profile_id": OPTIONAL_ID, "stream_id": OPTIONAL_ID}


class _ViewerCounter:
    def __init__(
        self, known: set[int], known_accounts: set[int], stream_accounts: Mapping[int, int]
    ) -> None:
        self.known = known
        self.known_accounts = known_accounts
        self.stream_accounts = stream_accounts
        self.profiles: Counter[int] = Counter()
        self.accounts: Counter[int] = Counter()

    def live(self, live: Reader) -> None:
        for entry in live.objects("channels", required=True):
            v = entry.read(_LIVE)
            state = v["state"]
            if state in IDLE_STATES:
                continue
            profile_id = v["m3u_profile_id"]
            if profile_id is not None:
                self._count_profile(profile_id)
                continue
            stream_id = v["stream_id"]
            account_id = self.stream_accounts.get(stream_id) if stream_id is not None else None
            if account_id is not None and account_id in self.known_accounts:
                self.accounts[account_id] += 1
            else:
                log.info("dispatcharr.viewer_unmapped", stream_id=stream_id, state=state)

    def sessions(self, section: Reader, name: str) -> None:
        """VOD or catch-up sessions: each entry one session, or (as Dispatcharr's VOD
        stats group them by film or episode) one title with its ``connections``."""
        for entry in section.objects(name):
            if isinstance(entry.data.get("connections"), list):
                for connection in entry.objects("connections"):
                    self._session(connection, name)
            else:
                self._session(entry, name)

    def _session(self, entry: Reader, name: str) -> None:
        raw = entry.data.get("m3u_profile_id")
        no_profile = raw in ("", "None")  # how Redis keeps "no profile"
        profile_id = None if no_profile else entry.get("m3u_profile_id", OPTIONAL_ID)
        profile = entry.data.get("m3u_profile")  # {} when Dispatcharr's lookup failed
        if profile_id is None and isinstance(profile, dict):
            profile_id = Reader(profile, entry.path("m3u_profile"), entry.problems, API).get(
                "m3u_profile_id", OPTIONAL_ID
            )
        if profile_id is None:
            log.info("dispatcharr.viewer_unmapped", kind=name)
            return
        self._count_profile(profile_id)

    def _count_profile(self, profile_id: int) -> None:
        if profile_id in self.known:
            self.profiles[profile_id] += 1
        else:
            log.debug("dispatcharr.viewer_unknown_profile", profile_id=profile_id)


# --- write-back -----------------------------------------------------------------------


def stats_patch(
    existing: Mapping[str, Any] | None, result: CheckResult, checked_at: str
) -> dict[str, Any]:
    """The ``PATCH /api/channels/streams/{id}/`` body for one result.

    A PATCH replaces the whole ``stream_stats`` object, so the body carries
    ``existing`` with this result merged in.

    A judged result (``ok`` or ``dead``) sets our verdict: ``checker_status``,
    ``checker_score``, ``checker_checked_at`` and ``checker_error`` (removed
    when there is none), and ``stream_stats_updated_at`` is ``checked_at`` so
    Dispatcharr's changed-since readers see the update. For a playing stream
    the keys Dispatcharr's UI reads are set too (``None`` values skipped, old
    values kept); ``video_bitrate`` and ``ffmpeg_output_bitrate`` both get the
    measured bitrate in kb/s, since the probe measures one total rate and a
    stale ``video_bitrate`` from an older Dispatcharr run would contradict it.
    For a dead stream the old media keys stay.

    A result that judged nothing (``error``: provider busy, account refused,
    our own failure) keeps the last verdict and the media stats as they are
    and only notes ``checker_last_error`` and ``checker_last_error_at``; the
    next judged result removes the note. ``stream_stats_updated_at`` does not
    move, since no stat was measured.

    Args:
        existing: The stream's current ``stream_stats`` (``None`` or not an
            object counts as empty).
        result: The check's result; ``cancelled`` results are normally not
            written at all.
        checked_at: ISO 8601 UTC time of the check, e.g. ``2026-08-20T10:00:00Z``.
    """
    stats: dict[str, Any] = dict(existing) if isinstance(existing, Mapping) else {}
    if result.status not in JUDGED_STATUSES:
        stats["checker_last_error"] = result.error or result.status
        stats["checker_last_error_at"] = checked_at
        return {"stream_stats": stats}
    if result.alive:
        stats.update(_media_stats(result))
    stats["checker_status"] = result.status
    stats["checker_score"] = round(result.score, 4) if math.isfinite(result.score) else 0.0
    stats["checker_checked_at"] = checked_at
    if result.error:
        stats["checker_error"] = result.error
    else:
        stats.pop("checker_error", None)
    for key in _UNJUDGED_NOTE:
        stats.pop(key, None)
    return {"stream_stats": stats, "stream_stats_updated_at": checked_at}


def _media_stats(result: CheckResult) -> dict[str, Any]:
    info: StreamInfo = result.info
    fps = info.fps if info.fps is not None else result.fps
    bitrate = info.bitrate_kbps if info.bitrate_kbps is not None else result.bitrate_kbps
    values: dict[str, Any] = {
        "resolution": info.resolution or result.resolution,
        "source_fps": None if fps is None else round(float(fps), 3),
        "video_codec": info.video_codec or result.video_codec,
        "audio_codec": info.audio_codec or result.audio_codec,
        "audio_channels": info.audio_channels,
        "sample_rate": None if info.sample_rate is None else int(info.sample_rate),
        "pixel_format": info.pixel_format,
        "video_bitrate": None if bitrate is None else round(float(bitrate), 1),
        "ffmpeg_output_bitrate": None if bitrate is None else round(float(bitrate), 1),
        "stream_type": info.stream_type,
    }
    return {key: value for key, value in values.items() if value is not None}


def plan_reorder(
    current_ids: list[int], scores: Mapping[int, tuple[str, float]]
) -> list[int] | None:
    """The new failover order of one channel, or ``None`` to leave it alone.

    ``scores`` maps stream id to ``(status, score)`` for the streams checked
    this cycle; ids not in ``current_ids`` are ignored. Only streams judged
    this cycle move: ``ok`` (alive) and ``dead``. Every other stream (``error``
    such as a busy provider or a refused account, ``cancelled``, not checked)
    says nothing about how well it plays.

    The rule:

    1. Every stream not judged this cycle keeps its exact position.
    2. The positions the judged streams held are refilled with them, best
       first: alive streams by score, highest first, then the dead ones; ties
       and dead streams keep their current relative order.

    So a stream is never demoted by a check that could not judge it, and
    among judged streams a dead one never sits before one that plays. Returns
    ``None`` when nothing moves, and also when ``current_ids`` has duplicates
    (a write-back then never happens). The result is always a permutation of
    ``current_ids``.
    """
    if len(set(current_ids)) != len(current_ids):
        log.warning("dispatcharr.reorder_refused", reason="duplicate_stream_ids")
        return None
    slots = [i for i, sid in enumerate(current_ids) if _status(scores, sid) in JUDGED_STATUSES]
    judged = [current_ids[i] for i in slots]
    alive = sorted(
        (sid for sid in judged if _status(scores, sid) == "ok"),
        key=lambda sid: -_score(scores[sid][1]),
    )
    dead = [sid for sid in judged if _status(scores, sid) == "dead"]
    new_order = list(current_ids)
    for slot, stream_id in zip(slots, alive + dead, strict=True):
        new_order[slot] = stream_id
    if Counter(new_order) != Counter(current_ids):
        log.error("dispatcharr.reorder_refused", reason="not_a_permutation")
        return None
    return None if new_order == current_ids else new_order


def _status(scores: Mapping[int, tuple[str, float]], stream_id: int) -> str | None:
    entry = scores.get(stream_id)
    return None if entry is None else entry[0]


def _score(score: float) -> float:
    """Scores that are not finite numbers rank last among alive streams."""
    return score if math.isfinite(score) else -math.inf
