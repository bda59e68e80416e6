"""Read the inventory file and the viewer file of ``source.type = "file"``.

Both formats are fixed by the design (``DESIGN.md``, "Inventory file"). The
fields are read with :mod:`adapters.schema`, so every problem in the file is
named at once in one :class:`~adapters.schema.InputError`, a line naming the
file and each field path, e.g. ``inventory.json: streams[3].m3u_account:
unknown account id 9``. Unknown fields are ignored, as Dispatcharr's own
objects carry many more; ``null`` is the same as an absent field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from adapters.schema import JSON_FILE, Field, InputError, Problems, Reader, show_json
from domain.models import Account, Channel, Inventory, Profile, Stream, ViewerSnapshot
from domain.urls import check_pattern

__all__ = ["InputError", "load_inventory", "load_viewers"]

_URL_SCHEMES = frozenset(
    {"http", "https", "rtmp", "rtmps", "rtsp", "rtsps", "udp", "rtp", "srt", "mms", "mmsh"}
)
_ACCOUNT_TYPES = ("STD", "XC")

_WithId = TypeVar("_WithId", Account, Stream, Channel)


def _account_type_problem(value: str) -> str | None:
    if value in _ACCOUNT_TYPES:
        return None
    names = " or ".join(json.dumps(t) for t in _ACCOUNT_TYPES)
    return f"must be {names}, got {show_json(value)}"


def _pattern_problem(value: str) -> str | None:
    why = check_pattern(value)
    return None if why is None else f"not a valid regular expression: {why}"


ID = Field("int", minimum=1, noun="an integer id > 0")
COUNT = Field("int", minimum=0, default=None)
OPTIONAL_INT = Field("int", default=None)
TEXT = Field("str", default="")
NAME = Field("str", default=None)
"""A name; absent: one made from the id."""
ACTIVE = Field("bool", default=True)

ACCOUNT = {
    "max_streams": COUNT,
    "account_type": Field("str", default="STD", check=_account_type_problem),
    "user_agent": TEXT,
    "name": NAME,
    "is_active": ACTIVE,
    "server_url": TEXT,
    "username": TEXT,
    "password": TEXT,
}
PROFILE = {
    "is_default": Field("bool", default=False),
    "max_streams": COUNT,
    "search_pattern": Field("str", default="^(.*)$", check=_pattern_problem),
    "replace_pattern": Field("str", default="$1"),
    "name": NAME,
    "is_active": ACTIVE,
}
STREAM = {
    "m3u_account": Field("int", noun="an account id"),
    "url": TEXT,
    "name": NAME,
    "stream_id": OPTIONAL_INT,
    "channel_group": OPTIONAL_INT,
}
STREAM_ID = Field("int", default=None, noun="a stream id")
CHANNEL = {"uuid": TEXT, "name": NAME, "channel_group": OPTIONAL_INT}


def load_inventory(path: Path) -> Inventory:
    """Read and validate the inventory file at ``path``.

    Raises:
        InputError: The file is missing, not JSON, or fields are wrong (all named).
    """
    root, problems = _document(path)
    inventory = _Inventory(problems).read(root)
    problems.check()
    return inventory


def load_viewers(path: Path) -> ViewerSnapshot:
    """Read the viewer file at ``path``: ``{"accounts": {"1": 1}, "profiles": {"11": 1}}``.

    Either part may be missing; ``{}`` means nobody watches. An empty (0-byte)
    file is an error, since it is what a writer leaves while replacing the file.

    Raises:
        InputError: The file is missing (``missing`` is set), unreadable, not
            JSON, or a count is wrong.
    """
    root, problems = _document(path)
    snapshot = ViewerSnapshot(
        accounts=_counts(root, "accounts", "an account"),
        profiles=_counts(root, "profiles", "a profile"),
    )
    problems.check()
    return snapshot


def _document(path: Path) -> tuple[Reader, Problems]:
    """The file's top object, or the one problem that makes it unreadable."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(source, ["no such file"], missing=True) from None
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise InputError(source, [problem]) from None
    except OSError as exc:
        raise InputError(source, [f"cannot read: {exc.strerror or exc}"]) from None
    if not text.strip():
        raise InputError(source, ["empty file, expected a JSON object"])
    try:
        root = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise InputError(source, [problem]) from None
    problems = Problems(source)
    reader = Reader.of(root, "", problems, JSON_FILE)
    if reader is None:
        raise InputError(source, [f"must be a JSON object, got {show_json(root)}"])
    return reader, problems


class _Inventory:
    """Reads the inventory's parts; ids are checked against those read before."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.profile_ids: dict[int, str] = {}

    def read(self, root: Reader) -> Inventory:
        accounts, account_ids = self.unique(root, "accounts", "account", self.account)
        streams, stream_ids = self.unique(
            root, "streams", "stream", lambda item, ident: self.stream(item, ident, account_ids)
        )
        channels, _ = self.unique(
            root, "channels", "channel", lambda item, ident: self.channel(item, ident, stream_ids)
        )
        return Inventory(accounts=tuple(accounts), streams=tuple(streams), channels=tuple(channels))

    def unique(
        self,
        root: Reader,
        key: str,
        noun: str,
        parse: Callable[[Reader, int], _WithId | None],
    ) -> tuple[list[_WithId], dict[int, str]]:
        """Parse the list under ``key`` item by item; ids must not repeat.

        Returns the good items and, per id, where it stands (for later
        messages). An item with a good id but another bad field still counts
        as known, so what refers to it is not reported as well.
        """
        items: list[_WithId] = []
        seen: dict[int, str] = {}
        for item in root.objects(key, required=key != "channels"):
            before = len(self.problems)
            ident = item.get("id", ID)
            if ident is not None and ident in seen:
                item.fail("id", f"duplicate {noun} id {ident} (also {seen[ident]})")
                continue
            parsed = parse(item, ident or 0)  # without an id, still to name its other problems
            if ident is None:
                continue
            seen[ident] = item.where
            if parsed is not None and len(self.problems) == before:
                items.append(parsed)
        return items, seen

    def account(self, item: Reader, ident: int) -> Account | None:
        v = item.read(ACCOUNT)
        max_streams: int | None = v["max_streams"]
        profiles = self.profiles(item, max_streams)
        if max_streams is None:
            # Without an account limit, the default profile's (if given) is the account's.
            default = next((p for p in profiles if p.is_default), None)
            max_streams = default.max_streams if default else 0
        return Account(
            id=ident,
            name=_named(v["name"], f"account {ident}"),
            max_streams=max_streams,
            is_active=v["is_active"],
            profiles=profiles,
            user_agent=v["user_agent"] or None,
            account_type=v["account_type"],
            server_url=v["server_url"],
            username=v["username"],
            password=v["password"],
        )

    def profiles(self, account: Reader, account_max: int | None) -> tuple[Profile, ...]:
        profiles: list[Profile] = []
        default_at: str | None = None
        for item in account.objects("profiles"):
            ident = item.get("id", ID)
            v = item.read(PROFILE)
            if ident is None:
                continue
            if ident in self.profile_ids:
                first = self.profile_ids[ident]
                item.fail("id", f"duplicate profile id {ident} (also {first})")
            self.profile_ids[ident] = item.where
            is_default: bool = v["is_default"]
            if is_default and default_at is not None:
                item.fail("is_default", f"a second default profile (the first is {default_at})")
            if is_default:
                default_at = item.where
            max_streams: int | None = v["max_streams"]
            if is_default and account_max is not None:
                if max_streams is None:
                    max_streams = account_max
                elif max_streams != account_max:
                    problem = (
                        f"{max_streams} differs from the account's max_streams {account_max} "
                        "(the default profile's limit is the account's)"
                    )
                    item.fail("max_streams", problem)
            profiles.append(
                Profile(
                    id=ident,
                    name=_named(v["name"], "default" if is_default else f"profile {ident}"),
                    max_streams=max_streams or 0,
                    is_default=is_default,
                    is_active=v["is_active"],
                    search_pattern=v["search_pattern"],
                    replace_pattern=v["replace_pattern"],
                )
            )
        if profiles and default_at is None:
            problem = 'no default profile (set "is_default": true on one of them)'
            account.fail("profiles", problem)
        return tuple(profiles)

    def stream(self, item: Reader, ident: int, account_ids: dict[int, str]) -> Stream | None:
        v = item.read(STREAM)
        account_id: int | None = v["m3u_account"]
        if account_id is not None and account_id not in account_ids:
            item.fail("m3u_account", f"unknown account id {account_id}")
        url = v["url"].strip()
        problem = "missing or empty" if not url else _url_problem(url)
        if problem:
            item.fail("url", problem)
        if account_id is None:
            return None
        return Stream(
            id=ident,
            name=_named(v["name"], f"stream {ident}"),
            account_id=account_id,
            url=url,
            stream_id=v["stream_id"],
            channel_group=v["channel_group"],
        )

    def channel(self, item: Reader, ident: int, stream_ids: dict[int, str]) -> Channel:
        members: list[int] = []
        for where, value in item.items("streams"):
            member = item.value(where, value, STREAM_ID)
            if member is None:
                continue
            if member not in stream_ids:
                self.problems.add(where, f"unknown stream id {member}")
            elif member in members:
                self.problems.add(where, f"stream id {member} listed twice")
            else:
                members.append(member)
        v = item.read(CHANNEL)
        return Channel(
            id=ident,
            name=_named(v["name"], f"channel {ident}"),
            stream_ids=tuple(members),
            uuid=v["uuid"] or None,
            channel_group=v["channel_group"],
        )


def _counts(root: Reader, key: str, what: str) -> dict[int, int]:
    """The viewer counts under ``key``, by account or profile id."""
    counts: dict[int, int] = {}
    table = root.child(key)
    if table is None:
        return counts
    for name, value in table.data.items():
        where = f"{table.where}.{json.dumps(name)}"
        if not name.isascii() or not name.isdigit():
            table.problems.add(where, f"the key must be {what} id (digits)")
            continue
        count = table.value(where, value, COUNT)
        if count is not None:
            counts[int(name)] = count
    return counts


def _named(name: str | None, default: str) -> str:
    return default if name is None else name


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a URL"
    scheme = parts.scheme.lower()
    if scheme not in _URL_SCHEMES:
        names = ", ".join(sorted(_URL_SCHEMES))
        # The URL may carry credentials: name the scheme only.
        return f"unsupported scheme {json.dumps(scheme)} (expected one of {names})"
    if not parts.hostname:
        return "no host in the URL"
    return None
