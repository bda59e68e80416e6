"""Turn Dispatcharr's JSON into the daemon's inventory, and results into PATCH bodies.

Pure functions, no HTTP: :class:`adapters.dispatcharr.DispatcharrClient`
fetches, these validate and convert. Every wrong shape raises
:class:`~adapters.dispatcharr.DispatcharrBadResponse` naming the endpoint and
the field path (``/api/m3u/accounts/: [2].profiles[0].max_streams: expected
an integer, got null``); unknown fields are ignored, since Dispatcharr adds
fields from version to version.

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
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final, NoReturn

import structlog

from adapters.dispatcharr import (
    ACCOUNTS_PATH,
    CHANNELS_PATH,
    PROXY_STATS_PATH,
    PROXY_STATUS_PATH,
    STREAMS_PATH,
    DispatcharrBadResponse,
    json_kind,
)
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
from domain.urls import check_pattern

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


class _Object:
    """Typed access to one JSON object of an answer, naming the field on error."""

    def __init__(self, endpoint: str, where: str, value: object) -> None:
        if not isinstance(value, dict):
            detail = f"expected an object, got {json_kind(value)}"
            raise DispatcharrBadResponse(endpoint, where, detail)
        self.endpoint = endpoint
        self.where = where
        self.data: dict[str, Any] = value

    def path(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, detail: str) -> NoReturn:
        raise DispatcharrBadResponse(self.endpoint, self.path(name), detail)

    def integer(self, name: str, *, default: int | None = None, minimum: int | None = None) -> int:
        """A required integer (``default`` used only when the key is absent)."""
        if name not in self.data:
            if default is not None:
                return default
            self.fail(name, "missing")
        value = self.data[name]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"expected an integer, got {json_kind(value)}")
        if minimum is not None and value < minimum:
            self.fail(name, f"must be at least {minimum}, got {value}")
        return value

    def opt_integer(self, name: str) -> int | None:
        """An integer or null/absent; a string of digits is accepted too."""
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"expected an integer or null, got {json_kind(value)}")
        return value

    def text(self, name: str, default: str = "") -> str:
        """A string; null or absent gives ``default``."""
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(name, f"expected a string, got {json_kind(value)}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            self.fail(name, f"expected true or false, got {json_kind(value)}")
        return value

    def array(self, name: str) -> list[object]:
        """A list; null or absent is empty."""
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(name, f"expected an array, got {json_kind(value)}")
        return value

    def child(self, name: str) -> _Object | None:
        """A nested object, or ``None`` when null or absent."""
        value = self.data.get(name)
        return None if value is None else _Object(self.endpoint, self.path(name), value)


def _items(endpoint: str, data: object, where: str = "") -> list[object]:
    if not isinstance(data, list):
        raise DispatcharrBadResponse(endpoint, where, f"expected an array, got {json_kind(data)}")
    return data


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
    accounts: list[Account] = []
    seen: set[int] = set()
    for index, item in enumerate(_items(ACCOUNTS_PATH, data)):
        account = _account(_Object(ACCOUNTS_PATH, f"[{index}]", item))
        if account is None:
            continue
        if account.id in seen:
            log.warning("dispatcharr.account_duplicate", account_id=account.id)
            continue
        seen.add(account.id)
        accounts.append(account)
    return tuple(accounts)


def _account(obj: _Object) -> Account | None:
    account_id = obj.integer("id")
    name = obj.text("name", f"account {account_id}")
    profiles = tuple(
        _profile(_Object(obj.endpoint, obj.path(f"profiles[{i}]"), item))
        for i, item in enumerate(obj.array("profiles"))
    )
    max_streams = obj.integer("max_streams", default=0, minimum=0)
    locked = obj.flag("locked", False)
    account_type = "STD" if locked else obj.text("account_type", "STD") or "STD"
    user_agent = obj.data.get("user_agent")
    account = Account(
        id=account_id,
        name=name,
        max_streams=max_streams,
        is_active=obj.flag("is_active", True),
        profiles=profiles,
        user_agent=user_agent if isinstance(user_agent, str) and user_agent else None,
        account_type=account_type,
        server_url=obj.text("server_url"),
        username=obj.text("username"),
        password=obj.text("password"),
    )
    if not account.is_active:
        log.debug("dispatcharr.account_skipped", account_id=account_id, reason="inactive")
        return None
    if any(p.is_default and not p.is_active for p in profiles):
        log.info("dispatcharr.account_skipped", account_id=account_id, reason="default_inactive")
        return None
    if profiles and not account.usable_profiles():
        log.info("dispatcharr.account_skipped", account_id=account_id, reason="no_active_profile")
        return None
    return account


def _profile(obj: _Object) -> Profile:
    profile_id = obj.integer("id")
    is_default = obj.flag("is_default", False)
    search = obj.text("search_pattern")
    is_active = obj.flag("is_active", True)
    problem = check_pattern(search) if search else None
    if problem is not None and not is_default and is_active:
        log.warning(
            "dispatcharr.profile_disabled",
            profile_id=profile_id,
            reason="invalid_search_pattern",
            error=problem,
        )
        is_active = False
    return Profile(
        id=profile_id,
        name=obj.text("name", f"profile {profile_id}"),
        max_streams=obj.integer("max_streams", default=0, minimum=0),
        is_default=is_default,
        is_active=is_active,
        search_pattern=search,
        replace_pattern=obj.text("replace_pattern"),
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
    streams: list[Stream] = []
    seen: set[int] = set()
    for index, item in enumerate(_items(STREAMS_PATH, data)):
        obj = _Object(STREAMS_PATH, f"[{index}]", item)
        stream_id = obj.integer("id")
        account_id = obj.opt_integer("m3u_account")
        account = by_id.get(account_id) if account_id is not None else None
        if account is None or stream_id in seen:
            continue
        stream = Stream(
            id=stream_id,
            name=obj.text("name"),
            account_id=account.id,
            url=obj.text("url"),
            stream_id=obj.opt_integer("stream_id"),
            channel_group=obj.opt_integer("channel_group"),
        )
        playable_xc = account.account_type == "XC" and stream.stream_id is not None
        if not stream.url and not playable_xc:
            log.info("dispatcharr.stream_skipped", stream_id=stream_id, reason="no_url")
            continue
        seen.add(stream_id)
        streams.append(stream)
    return tuple(streams)


def parse_channels(data: object) -> tuple[Channel, ...]:
    """Channels from ``GET /api/channels/channels/`` (a bare array).

    ``streams`` may be ids or, with ``include_streams=true``, stream objects
    with an ``id``; the order is kept as is (it is the failover order).

    Raises:
        DispatcharrBadResponse: Not an array of channel objects, or a field has
            the wrong type.
    """
    channels: list[Channel] = []
    for index, item in enumerate(_items(CHANNELS_PATH, data)):
        obj = _Object(CHANNELS_PATH, f"[{index}]", item)
        channel_id = obj.integer("id")
        uuid = obj.data.get("uuid")
        if uuid is not None and not isinstance(uuid, str):
            obj.fail("uuid", f"expected a string, got {json_kind(uuid)}")
        channels.append(
            Channel(
                id=channel_id,
                name=obj.text("name") or obj.text("effective_name"),
                stream_ids=tuple(_stream_ids(obj)),
                uuid=uuid,
                channel_group=obj.opt_integer("channel_group_id"),
            )
        )
    return tuple(channels)


def _stream_ids(obj: _Object) -> list[int]:
    ids: list[int] = []
    for position, entry in enumerate(obj.array("streams")):
        where = f"streams[{position}]"
        if isinstance(entry, dict):
            ids.append(_Object(obj.endpoint, obj.path(where), entry).integer("id"))
        elif isinstance(entry, int) and not isinstance(entry, bool):
            ids.append(entry)
        else:
            obj.fail(where, f"expected a stream id or object, got {json_kind(entry)}")
    return ids


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
    names = {str(x).casefold() for x in exclude_channels if isinstance(x, str)}
    ids = {x for x in exclude_channels if isinstance(x, int)}
    groups = set(exclude_groups)
    kept: list[Channel] = []
    dropped: set[int] = set()
    for channel in channels:
        if (
            channel.id in ids
            or channel.name.casefold() in names
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
    known_accounts = {account.id for account in accounts}
    counter = _ViewerCounter(known, known_accounts, stream_accounts or {})
    if "live" in status:
        endpoint = PROXY_STATS_PATH
        counter.live(_Object(endpoint, "live", status["live"]))
        vod = _Object(endpoint, "", status).child("vod")
        if vod is not None:
            counter.sessions(vod, "vod_connections")
        catchup = _Object(endpoint, "", status).child("catchup")
        if catchup is not None:
            counter.sessions(catchup, "timeshift_sessions")
    else:
        counter.live(_Object(PROXY_STATUS_PATH, "", dict(status)))
    return ViewerSnapshot(profiles=dict(counter.profiles), accounts=dict(counter.accounts))


class _ViewerCounter:
    def __init__(
        self, known: set[int], known_accounts: set[int], stream_accounts: Mapping[int, int]
    ) -> None:
        self.known = known
        self.known_accounts = known_accounts
        self.stream_accounts = stream_accounts
        self.profiles: Counter[int] = Counter()
        self.accounts: Counter[int] = Counter()

    def live(self, live: _Object) -> None:
        if "channels" not in live.data:
            live.fail("channels", "missing")
        for index, item in enumerate(live.array("channels")):
            entry = _Object(live.endpoint, live.path(f"channels[{index}]"), item)
            state = entry.text("state")
            if state in IDLE_STATES:
                continue
            profile_id = entry.opt_integer("m3u_profile_id")
            if profile_id is not None:
                self._count_profile(profile_id)
                continue
            stream_id = entry.opt_integer("stream_id")
            account_id = self.stream_accounts.get(stream_id) if stream_id is not None else None
            if account_id is not None and account_id in self.known_accounts:
                self.accounts[account_id] += 1
            else:
                log.info("dispatcharr.viewer_unmapped", stream_id=stream_id, state=state)

    def sessions(self, section: _Object, name: str) -> None:
        for index, item in enumerate(section.array(name)):
            entry = _Object(section.endpoint, section.path(f"{name}[{index}]"), item)
            profile_id = entry.opt_integer("m3u_profile_id")
            if profile_id is None:
                log.info("dispatcharr.viewer_unmapped", kind=name)
                continue
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
