"""Read the inventory file and the viewer file of ``source.type = "file"``.

Both formats are fixed by the design (``DESIGN.md``, "Inventory file"). Every
problem raises an :class:`InventoryError` whose message is one line naming the
file and the field path, e.g. ``inventory.json: streams[3].m3u_account: unknown
account id 9``. Unknown fields are ignored, as Dispatcharr's own objects carry
many more.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from domain.models import Account, Channel, Inventory, Profile, Stream, ViewerSnapshot
from domain.urls import check_pattern

_URL_SCHEMES = frozenset(
    {"http", "https", "rtmp", "rtmps", "rtsp", "rtsps", "udp", "rtp", "srt", "mms", "mmsh"}
)
_ACCOUNT_TYPES = ("STD", "XC")
_MAX_SHOWN = 60


_WithId = TypeVar("_WithId", Account, Stream, Channel)


class InventoryError(Exception):
    """The inventory (or viewer) file is unreadable or has a bad field.

    Attributes:
        path: The file.
        field: The field path (``streams[3].m3u_account``), ``""`` for the whole file.
        problem: What is wrong with it.
    """

    def __init__(self, path: Path, field: str, problem: str) -> None:
        self.path = path
        self.field = field
        self.problem = problem
        where = f"{field}: " if field else ""
        super().__init__(f"{path}: {where}{problem}")


class ViewersFileError(InventoryError):
    """The viewer file is missing, unreadable or has a bad field.

    The caller usually keeps the last snapshot it read.

    Attributes:
        missing: True when the file does not exist (as opposed to bad content).
    """

    def __init__(self, path: Path, field: str, problem: str, *, missing: bool = False) -> None:
        super().__init__(path, field, problem)
        self.missing = missing


def load_inventory(path: Path) -> Inventory:
    """Read and validate the inventory file at ``path``.

    Raises:
        InventoryError: The file is missing, not JSON, or a field is wrong.
    """
    reader = _Reader(path, InventoryError)
    root = reader.document()
    return reader.inventory(root)


def load_viewers(path: Path) -> ViewerSnapshot:
    """Read the viewer file at ``path``: ``{"accounts": {"1": 1}, "profiles": {"11": 1}}``.

    Either part may be missing; ``{}`` means nobody watches. An empty (0-byte)
    file is an error, since it is what a writer leaves while replacing the file.

    Raises:
        ViewersFileError: The file is missing (``missing`` is set), unreadable,
            not JSON, or a count is wrong.
    """
    reader = _Reader(path, ViewersFileError)
    root = reader.document()
    return ViewerSnapshot(
        accounts=reader.counts(root, "accounts", "an account"),
        profiles=reader.counts(root, "profiles", "a profile"),
    )


class _Reader:
    """Validates one JSON document; the first problem raises."""

    def __init__(self, path: Path, error: type[InventoryError]) -> None:
        self.path = path
        self.error_type = error

    def fail(self, field: str, problem: str) -> NoReturn:
        raise self.error_type(self.path, field, problem)

    # --- the file -------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if self.error_type is ViewersFileError:
                raise ViewersFileError(self.path, "", "no such file", missing=True) from None
            self.fail("", "no such file")
        except UnicodeDecodeError as exc:
            self.fail("", f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        except OSError as exc:
            self.fail("", f"cannot read: {exc.strerror or exc}")
        if not text.strip():
            self.fail("", "empty file, expected a JSON object")
        try:
            root = json.loads(text)
        except json.JSONDecodeError as exc:
            self.fail("", f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
        if not isinstance(root, dict):
            self.fail("", f"must be a JSON object, got {_kind(root)}")
        return root

    # --- typed fields ---------------------------------------------------------------

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, got {_kind(value)}")
        return value

    def array(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(where, f"must be a list, got {_kind(value)}")
        return value

    def required(self, data: dict[str, Any], key: str, where: str) -> Any:
        if key not in data or data[key] is None:
            self.fail(f"{where}.{key}", "missing")
        return data[key]

    def ident(self, data: dict[str, Any], key: str, where: str) -> int:
        """A required id: an integer > 0."""
        value = self.required(data, key, where)
        if not _is_int(value) or value <= 0:
            self.fail(f"{where}.{key}", f"must be an integer id > 0, got {_show(value)}")
        return int(value)

    def count(self, data: dict[str, Any], key: str, where: str) -> int | None:
        """An optional integer >= 0."""
        value = data.get(key)
        if value is None:
            return None
        if not _is_int(value) or value < 0:
            self.fail(f"{where}.{key}", f"must be an integer >= 0, got {_show(value)}")
        return int(value)

    def text(self, data: dict[str, Any], key: str, where: str, default: str) -> str:
        value = data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(f"{where}.{key}", f"must be a string, got {_show(value)}")
        return value

    def flag(self, data: dict[str, Any], key: str, where: str, default: bool) -> bool:
        value = data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(f"{where}.{key}", f"must be true or false, got {_show(value)}")
        return value

    def optional_int(self, data: dict[str, Any], key: str, where: str) -> int | None:
        value = data.get(key)
        if value is None:
            return None
        if not _is_int(value):
            self.fail(f"{where}.{key}", f"must be an integer, got {_show(value)}")
        return int(value)

    # --- the inventory --------------------------------------------------------------

    def inventory(self, root: dict[str, Any]) -> Inventory:
        for key in ("accounts", "streams"):
            if key not in root:
                self.fail(key, "missing")
        profile_ids: dict[int, str] = {}
        accounts, account_ids = self.unique(
            root["accounts"],
            "accounts",
            "account",
            lambda data, where: self.account(data, where, profile_ids),
        )
        streams, stream_ids = self.unique(
            root["streams"],
            "streams",
            "stream",
            lambda data, where: self.stream(data, where, account_ids),
        )
        channels, _ = self.unique(
            [] if root.get("channels") is None else root["channels"],
            "channels",
            "channel",
            lambda data, where: self.channel(data, where, stream_ids),
        )
        return Inventory(accounts=tuple(accounts), streams=tuple(streams), channels=tuple(channels))

    def unique(
        self,
        raw: Any,
        key: str,
        noun: str,
        parse: Callable[[dict[str, Any], str], _WithId],
    ) -> tuple[list[_WithId], dict[int, str]]:
        """Parse the array ``raw`` item by item; ids must not repeat.

        Returns the items and, per id, where it stands (for later messages).
        """
        items: list[_WithId] = []
        seen: dict[int, str] = {}
        for index, item in enumerate(self.array(raw, key)):
            where = f"{key}[{index}]"
            parsed = parse(self.obj(item, where), where)
            if parsed.id in seen:
                self.fail(
                    f"{where}.id", f"duplicate {noun} id {parsed.id} (also {seen[parsed.id]})"
                )
            seen[parsed.id] = where
            items.append(parsed)
        return items, seen

    def account(self, data: dict[str, Any], where: str, profile_ids: dict[int, str]) -> Account:
        account_id = self.ident(data, "id", where)
        max_streams = self.count(data, "max_streams", where)
        account_type = self.text(data, "account_type", where, "STD")
        if account_type not in _ACCOUNT_TYPES:
            names = " or ".join(json.dumps(t) for t in _ACCOUNT_TYPES)
            self.fail(f"{where}.account_type", f"must be {names}, got {_show(account_type)}")
        user_agent = self.text(data, "user_agent", where, "")
        profiles = self.profiles(data, where, max_streams, profile_ids)
        if max_streams is None:
            # Without an account limit, the default profile's (if given) is the account's.
            default = next((p for p in profiles if p.is_default), None)
            max_streams = default.max_streams if default else 0
        return Account(
            id=account_id,
            name=self.text(data, "name", where, f"account {account_id}"),
            max_streams=max_streams,
            is_active=self.flag(data, "is_active", where, True),
            profiles=profiles,
            user_agent=user_agent or None,
            account_type=account_type,
            server_url=self.text(data, "server_url", where, ""),
            username=self.text(data, "username", where, ""),
            password=self.text(data, "password", where, ""),
        )

    def profiles(
        self,
        data: dict[str, Any],
        where: str,
        account_max: int | None,
        profile_ids: dict[int, str],
    ) -> tuple[Profile, ...]:
        raw_profiles = data.get("profiles")
        if raw_profiles is None or raw_profiles == []:
            return ()
        profiles: list[Profile] = []
        default_at: str | None = None
        for index, raw in enumerate(self.array(raw_profiles, f"{where}.profiles")):
            at = f"{where}.profiles[{index}]"
            item = self.obj(raw, at)
            profile_id = self.ident(item, "id", at)
            if profile_id in profile_ids:
                first = profile_ids[profile_id]
                self.fail(f"{at}.id", f"duplicate profile id {profile_id} (also {first})")
            profile_ids[profile_id] = at
            is_default = self.flag(item, "is_default", at, False)
            if is_default and default_at is not None:
                self.fail(
                    f"{at}.is_default", f"a second default profile (the first is {default_at})"
                )
            if is_default:
                default_at = at
            max_streams = self.count(item, "max_streams", at)
            if is_default and account_max is not None:
                if max_streams is None:
                    max_streams = account_max
                elif max_streams != account_max:
                    problem = (
                        f"{max_streams} differs from the account's max_streams {account_max} "
                        "(the default profile's limit is the account's)"
                    )
                    self.fail(f"{at}.max_streams", problem)
            search = self.text(item, "search_pattern", at, "^(.*)$")
            why = check_pattern(search)
            if why is not None:
                self.fail(f"{at}.search_pattern", f"not a valid regular expression: {why}")
            profiles.append(
                Profile(
                    id=profile_id,
                    name=self.text(
                        item, "name", at, "default" if is_default else f"profile {profile_id}"
                    ),
                    max_streams=max_streams or 0,
                    is_default=is_default,
                    is_active=self.flag(item, "is_active", at, True),
                    search_pattern=search,
                    replace_pattern=self.text(item, "replace_pattern", at, "$1"),
                )
            )
        if default_at is None:
            problem = 'no default profile (set "is_default": true on one of them)'
            self.fail(f"{where}.profiles", problem)
        return tuple(profiles)

    def stream(self, data: dict[str, Any], where: str, account_ids: dict[int, str]) -> Stream:
        stream_id = self.ident(data, "id", where)
        account_id = self.required(data, "m3u_account", where)
        if not _is_int(account_id):
            self.fail(f"{where}.m3u_account", f"must be an account id, got {_show(account_id)}")
        if account_id not in account_ids:
            self.fail(f"{where}.m3u_account", f"unknown account id {account_id}")
        url = self.text(data, "url", where, "").strip()
        if not url:
            self.fail(f"{where}.url", "missing or empty")
        problem = _url_problem(url)
        if problem:
            self.fail(f"{where}.url", problem)
        return Stream(
            id=stream_id,
            name=self.text(data, "name", where, f"stream {stream_id}"),
            account_id=int(account_id),
            url=url,
            stream_id=self.optional_int(data, "stream_id", where),
            channel_group=self.optional_int(data, "channel_group", where),
        )

    def channel(self, data: dict[str, Any], where: str, stream_ids: dict[int, str]) -> Channel:
        channel_id = self.ident(data, "id", where)
        members: list[int] = []
        raw_members = data.get("streams")
        if raw_members is None:
            raw_members = []
        for index, value in enumerate(self.array(raw_members, f"{where}.streams")):
            at = f"{where}.streams[{index}]"
            if not _is_int(value):
                self.fail(at, f"must be a stream id, got {_show(value)}")
            if value not in stream_ids:
                self.fail(at, f"unknown stream id {value}")
            if value in members:
                self.fail(at, f"stream id {value} listed twice")
            members.append(int(value))
        uuid = self.text(data, "uuid", where, "")
        return Channel(
            id=channel_id,
            name=self.text(data, "name", where, f"channel {channel_id}"),
            stream_ids=tuple(members),
            uuid=uuid or None,
            channel_group=self.optional_int(data, "channel_group", where),
        )

    # --- the viewer file ------------------------------------------------------------

    def counts(self, root: dict[str, Any], key: str, what: str) -> dict[int, int]:
        raw = root.get(key)
        if raw is None:
            return {}
        counts: dict[int, int] = {}
        for name, value in self.obj(raw, key).items():
            at = f"{key}.{json.dumps(name)}"
            if not name.isascii() or not name.isdigit():
                self.fail(at, f"the key must be {what} id (digits)")
            if not _is_int(value) or value < 0:
                self.fail(at, f"must be an integer >= 0, got {_show(value)}")
            counts[int(name)] = int(value)
        return counts


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if _is_int(value) or isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _show(value: Any) -> str:
    """``value`` as JSON, shortened to one short line."""
    if isinstance(value, dict | list):
        return _kind(value)
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
