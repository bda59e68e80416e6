"""The daemon's configuration: TOML in, frozen dataclasses out.

The defaults live in the dataclasses below; ``config/default.toml`` documents
every key and parses to exactly those defaults. :func:`load_config` reads a
user file on top of them, checks every key and reports *all* problems at once
in a single-line :class:`ConfigError` that names each bad key, in the manner of
mopidy's config schemas.

Relative paths (``source.path``, ``source.viewers_path``, ``results.database``
and ``check.ffmpeg`` when it contains a slash) resolve against the folder of
the config file.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from domain.models import Account
from domain.urls import redact_url

SourceType = Literal["file", "dispatcharr"]
LogFormat = Literal["console", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]

_SOURCE_TYPES: tuple[SourceType, ...] = ("file", "dispatcharr")
WhenViewersUnknown = Literal["wait", "last_known"]
_WHEN_UNKNOWN: tuple[WhenViewersUnknown, ...] = ("wait", "last_known")
_LOG_FORMATS: tuple[LogFormat, ...] = ("console", "json")
_LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_MAX_SHOWN = 60
_MAX_WRITE_CONCURRENCY = 16
"""More requests at once than this only make a small Dispatcharr slower."""
_MASK = "********"


class ConfigError(Exception):
    """The config file is unreadable or has bad values.

    ``str()`` is one line: the file, then every problem joined with ``"; "``.

    Attributes:
        source: The file (or other source) the problems are in.
        problems: One message per problem, each naming the key.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        message = f"{source}: " + "; ".join(self.problems)
        super().__init__(message)


# --- sections ---------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSection:
    """``[source]``: where accounts, streams and channels come from."""

    type: SourceType = "file"
    """``"file"`` (an inventory JSON file) or ``"dispatcharr"`` (its REST API)."""
    path: Path = Path("inventory.json")
    """The inventory file, for ``type = "file"``."""
    viewers_path: Path | None = None
    """Viewer counts file re-read every poll (``type = "file"``); ``""`` in TOML = none."""


@dataclass(frozen=True)
class DispatcharrSection:
    """``[dispatcharr]``: how to reach Dispatcharr. Secrets come from the environment."""

    url: str = "http://localhost:9191"
    username: str = "admin"
    password_env: str = "DISPATCHARR_PASSWORD"  # noqa: S105 - a variable name, not a secret
    """Name of the environment variable holding the password."""
    api_key_env: str = "DISPATCHARR_API_KEY"
    """Name of the environment variable holding an API key; used instead of the
    password when that variable is set."""
    timeout: float = 10.0
    """Seconds per HTTP request."""
    include_all_streams: bool = False
    """Check every stream, not only those assigned to a channel."""
    exclude_groups: tuple[int, ...] = ()
    """Channel group ids whose channels are not checked."""
    exclude_channels: tuple[int | str, ...] = ()
    """Channels not checked: ids, names or UUIDs."""
    user_agent: str | None = None
    """User agent for the API requests; ``""`` in TOML = the HTTP library's own."""
    write_concurrency: int = 4
    """Requests at once while writing stats back and reordering channels (1-16)."""

    def password(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The password from ``password_env``, or ``None`` when it is unset or empty."""
        env = os.environ if environ is None else environ
        return (env.get(self.password_env) or None) if self.password_env else None

    def api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The API key from ``api_key_env``, or ``None`` when it is unset or empty."""
        env = os.environ if environ is None else environ
        return (env.get(self.api_key_env) or None) if self.api_key_env else None


@dataclass(frozen=True)
class ConcurrentStreamsSection:
    """``[concurrent_streams]``: how many checks may run at once."""

    enabled: bool = True
    """``false``: one check at a time overall."""
    global_limit: int = 10
    """Checks running at once over all accounts; 0 = unlimited."""
    stagger_delay: float = 1.0
    """Minimum seconds between two connection openings on one account; 0 = none."""


@dataclass(frozen=True)
class AccountOverride:
    """``[accounts."<id>"]``: per-account settings; ``None`` keeps the source's value."""

    stagger_delay: float | None = None
    reserve_for_viewers: int | None = None
    """Slots kept free for people who may start watching."""
    max_streams: int | None = None
    """Replaces the account's (and its default profile's) limit; 0 = unlimited."""

    def apply(self, account: Account) -> Account:
        """``account`` with these overrides applied.

        A new ``max_streams`` also becomes the default profile's limit, since the
        account's limit is its default profile's (as in Dispatcharr).
        """
        changed = account
        if self.stagger_delay is not None:
            changed = replace(changed, stagger_delay=self.stagger_delay)
        if self.reserve_for_viewers is not None:
            changed = replace(changed, reserve_for_viewers=self.reserve_for_viewers)
        if self.max_streams is not None:
            limit = self.max_streams
            profiles = tuple(
                replace(p, max_streams=limit) if p.is_default else p for p in changed.profiles
            )
            changed = replace(changed, max_streams=limit, profiles=profiles)
        return changed


@dataclass(frozen=True)
class CheckSection:
    """``[check]``: how one stream is probed."""

    duration: float = 10.0
    """The most seconds of stream a check reads (all of it when ``adaptive`` is off)."""
    adaptive: bool = True
    """Stop reading once resolution, codecs, fps and a settled bitrate are known."""
    timeout: float = 30.0
    """Seconds before a check is given up."""
    ffmpeg: str = ""
    """The ffmpeg binary; empty: ``PATH``, then the binary of imageio-ffmpeg."""
    user_agent: str = "VLC/3.0.20 LibVLC/3.0.20"
    """User agent sent to providers, unless the account has its own."""
    retries: int = 2
    """Extra attempts after an error."""
    retry_delay: float = 5.0
    busy_backoff: float = 10.0
    """First wait after a provider-busy refusal; doubled each time."""
    max_requeues: int = 10
    """Times a job may be preempted and requeued before it ends as cancelled."""
    priority_channels: tuple[int | str, ...] = ()
    """Channels (ids, names or UUIDs) whose streams are checked first, every cycle."""
    stable_every: int = 1
    """A stream ok and unchanged for its last 3 checks is checked every N cycles."""
    max_wait: float = 600.0
    """Seconds a cycle waits while no check starts or ends (viewers hold the slots
    its waiting checks need); then those end as cancelled, ``viewers_held_account``."""


@dataclass(frozen=True)
class ScoreSection:
    """``[score]``: weights of the quality score (not all zero)."""

    resolution: float = 0.4
    bitrate: float = 0.3
    fps: float = 0.15
    codec: float = 0.15


@dataclass(frozen=True)
class ViewersSection:
    """``[viewers]``: how often viewer counts are read, and what is assumed when they can't be."""

    poll_interval: float = 5.0
    when_unknown: WhenViewersUnknown = "wait"
    """``"wait"``: before the first read and while reads fail, no new check on an
    account unless its last known count leaves room for one more viewer;
    ``"last_known"``: trust the last known count (nobody before the first read)."""


@dataclass(frozen=True)
class LearningSection:
    """``[learning]``: learning each provider login's real cap and release lag."""

    enabled: bool = True
    """Learn from "full" refusals; ``false``: trust the configured limits."""
    probe_up_after: float = 3600.0
    """Seconds without a refusal after which a lowered login tries one more connection."""
    release_grace: float = 3.0
    """Seconds a freed slot waits once a login showed a release lag (at least)."""
    max_release_grace: float = 30.0
    """A learned release grace never grows past this."""


@dataclass(frozen=True)
class ScheduleSection:
    """``[schedule]``: when check cycles run."""

    interval: str | float = "6h"
    """``"90s"``, ``"15m"``, ``"6h"``, ``"1d"``, ``"1h30m"`` or seconds as a number."""
    cron: str = ""
    """A cron expression; when set, ``interval`` is ignored."""
    run_at_start: bool = True
    """Run a cycle as soon as the daemon starts."""

    @property
    def interval_s(self) -> float:
        """``interval`` in seconds.

        Raises:
            ValueError: ``interval`` is not a duration (cannot happen after
                :func:`load_config`).
        """
        return parse_duration(self.interval)


@dataclass(frozen=True)
class ResultsSection:
    """``[results]``: what happens with check results."""

    database: Path = Path("results.sqlite")
    reorder: bool = True
    """Reorder each channel's streams best first."""
    dry_run: bool = False
    """Check and store, but write nothing back to the source."""
    history_days: int = 90
    """Stored checks older than this are pruned; 0 = keep all."""


@dataclass(frozen=True)
class StatusSection:
    """``[status]``: the status page, ``/api/status`` and ``/metrics``."""

    listen: str = "127.0.0.1:8787"
    """``host:port``; ``""`` disables the status server."""
    token_env: str = "IPTV_CHECKD_TOKEN"  # noqa: S105 - a variable name, not a secret
    """Name of the environment variable holding the token that state-changing
    requests (start a cycle, check a channel) must carry. Without a token the
    server only starts on a loopback address."""
    history: int = 20
    """Checks per stream the dashboard shows as history (uptime, bitrate sparkline)."""

    def token(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The token from ``token_env``, or ``None`` when it is unset or empty."""
        env = os.environ if environ is None else environ
        return (env.get(self.token_env) or None) if self.token_env else None

    @property
    def loopback(self) -> bool:
        """True when ``listen`` is a loopback address (``localhost``, 127.0.0.0/8, ``::1``)."""
        host = self.host
        if host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False  # a host name other than localhost may resolve to anything

    @property
    def enabled(self) -> bool:
        """False when ``listen`` is empty."""
        return bool(self.listen)

    @property
    def host(self) -> str:
        """The host part of ``listen`` (IPv6 without brackets)."""
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of ``listen``."""
        return _split_listen(self.listen)[1]


@dataclass(frozen=True)
class AlertsSection:
    """``[alerts]``: a webhook told when a channel loses its last working stream,
    when it has one again, and when a cycle fails."""

    webhook_url: str = ""
    """URL that gets a JSON POST per alert; ``""`` = no alerts."""
    timeout: float = 5.0
    """Seconds per POST."""
    retries: int = 3
    """Extra attempts after a failed POST."""
    retry_delay: float = 2.0
    """Seconds before the first retry; doubled each time."""

    @property
    def enabled(self) -> bool:
        """False when ``webhook_url`` is empty."""
        return bool(self.webhook_url)


@dataclass(frozen=True)
class LogSection:
    """``[log]``: log output."""

    format: LogFormat = "console"
    level: LogLevel = "info"


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration."""

    source: SourceSection = field(default_factory=SourceSection)
    dispatcharr: DispatcharrSection = field(default_factory=DispatcharrSection)
    concurrent_streams: ConcurrentStreamsSection = field(default_factory=ConcurrentStreamsSection)
    accounts: Mapping[int, AccountOverride] = field(default_factory=dict)
    """Per-account overrides by account id."""
    check: CheckSection = field(default_factory=CheckSection)
    score: ScoreSection = field(default_factory=ScoreSection)
    viewers: ViewersSection = field(default_factory=ViewersSection)
    learning: LearningSection = field(default_factory=LearningSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    results: ResultsSection = field(default_factory=ResultsSection)
    status: StatusSection = field(default_factory=StatusSection)
    alerts: AlertsSection = field(default_factory=AlertsSection)
    log: LogSection = field(default_factory=LogSection)

    def account_override(self, account_id: int) -> AccountOverride:
        """The overrides for ``account_id`` (all ``None`` when it has none)."""
        return self.accounts.get(account_id, AccountOverride())


# --- public helpers -------------------------------------------------------------


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: a number, ``"90s"``, ``"15m"``, ``"6h"``, ``"1d"``, ``"1h30m"``.

    Raises:
        ValueError: ``value`` is not a duration greater than zero.
    """
    seconds: float
    if isinstance(value, bool):
        message = f"not a duration: {value!r}"
        raise ValueError(message)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _DURATION.finditer(text):
                if text[pos : match.start()].strip():
                    break
                seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
                pos = match.end()
            if pos == 0 or text[pos:].strip():
                message = f"not a duration: {value!r}"
                raise ValueError(message) from None
    if not math.isfinite(seconds) or seconds <= 0:
        message = f"not a duration > 0: {value!r}"
        raise ValueError(message)
    return seconds


def load_config(path: Path | None) -> Config:
    """Read and validate the config file at ``path``.

    Args:
        path: The TOML file; ``None`` gives the defaults, with relative paths
            left relative (to the working directory).

    Raises:
        ConfigError: The file cannot be read, is not TOML, or has bad keys or
            values; the message names the file and every bad key.
    """
    if path is None:
        return Config()
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(source, [f"cannot read: {reason}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"invalid TOML: {exc}"]) from None
    return parse_config(data, base_dir=path.resolve().parent, source=source)


def parse_config(
    data: Mapping[str, Any], base_dir: Path | None = None, source: str = "config"
) -> Config:
    """Validate already-parsed TOML ``data`` into a :class:`Config`.

    Args:
        data: The TOML document as a dict.
        base_dir: Folder that relative paths resolve against; ``None`` leaves
            them as written.
        source: Name used in error messages.

    Raises:
        ConfigError: With every problem found.
    """
    errors: list[str] = []
    sections: dict[str, Callable[[_Table], Any]] = {
        "source": lambda t: _read_source(t, base_dir),
        "dispatcharr": _read_dispatcharr,
        "concurrent_streams": _read_concurrent,
        "check": lambda t: _read_check(t, base_dir),
        "score": _read_score,
        "viewers": _read_viewers,
        "learning": _read_learning,
        "schedule": _read_schedule,
        "results": lambda t: _read_results(t, base_dir),
        "status": _read_status,
        "alerts": _read_alerts,
        "log": _read_log,
    }
    known = [*sections, "accounts"]
    for key, value in data.items():
        if key not in known:
            if isinstance(value, dict):
                errors.append(f"unknown section [{key}]{_did_you_mean(key, known)}")
            else:
                errors.append(f"unknown key {key}{_did_you_mean(key, known)}")
    values: dict[str, Any] = {}
    for name, reader in sections.items():
        table = _Table.of(data, name, f"[{name}]", errors)
        values[name] = reader(table)
        table.check_unknown()
    values["accounts"] = _read_accounts(data, errors)
    if errors:
        raise ConfigError(source, errors)
    return Config(**values)


def redacted_dict(config: Config) -> dict[str, Any]:
    """The effective config as TOML-shaped plain data, secrets masked.

    Paths become strings, ``None`` becomes ``""`` and tuples become lists, so
    the result can be printed as TOML or JSON. No secret lives in the config
    but a webhook URL (passwords and tokens come from the environment); keys
    listed in ``_SECRET_KEYS`` are masked.
    """
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name == "accounts":
            out["accounts"] = {
                str(account_id): {k: v for k, v in _plain_section(o).items() if v != ""}
                for account_id, o in sorted(value.items())
            }
            continue
        section = _plain_section(value)
        for key in section:
            if (f.name, key) in _SECRET_KEYS and section[key]:
                section[key] = _MASK
        out[f.name] = section
    return out


_SECRET_KEYS: frozenset[tuple[str, str]] = frozenset({("alerts", "webhook_url")})
"""A webhook URL is often its own secret (Slack's, Discord's)."""
"""``(section, key)`` pairs masked by :func:`redacted_dict`."""


# --- reading ----------------------------------------------------------------------

_S = TypeVar("_S", bound=str)


class _Table:
    """One TOML table being read: typed getters that collect errors, never raise."""

    def __init__(
        self, data: Mapping[str, Any], label: str, errors: list[str], known: Sequence[str] = ()
    ) -> None:
        self.data = data
        self.label = label
        self.errors = errors
        self.read: set[str] = set(known)

    @classmethod
    def of(cls, root: Mapping[str, Any], name: str, label: str, errors: list[str]) -> _Table:
        value = root.get(name, {})
        if not isinstance(value, dict):
            errors.append(f"{label}: must be a table, got {_show(value)}")
            value = {}
        return cls(value, label, errors)

    def error(self, key: str, problem: str) -> None:
        self.errors.append(f"{self.label} {key}: {problem}")

    def _get(self, key: str) -> tuple[bool, Any]:
        """Mark ``key`` as known; return whether it is present, and its value."""
        self.read.add(key)
        if key not in self.data:
            return False, None
        return True, self.data[key]

    def number(self, key: str, default: float, *, positive: bool = False) -> float:
        """A float (ints accepted) ``>= 0``, or ``> 0`` when ``positive``."""
        present, value = self._get(key)
        if not present:
            return default
        bound = "> 0" if positive else ">= 0"
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (value > 0 if positive else value >= 0)
        )
        if not ok:
            self.error(key, f"must be a number {bound}, got {_show(value)}")
            return default
        return float(value)

    def integer(self, key: str, default: int) -> int:
        """An int ``>= 0``."""
        present, value = self._get(key)
        if not present:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            self.error(key, f"must be an integer >= 0, got {_show(value)}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        present, value = self._get(key)
        if not present:
            return default
        if not isinstance(value, bool):
            self.error(key, f"must be true or false, got {_show(value)}")
            return default
        return value

    def string(self, key: str, default: str) -> str:
        present, value = self._get(key)
        if not present:
            return default
        if not isinstance(value, str):
            self.error(key, f"must be a string, got {_show(value)}")
            return default
        return value

    def choice(self, key: str, default: _S, choices: Sequence[_S], *, fold: bool = False) -> _S:
        """One of ``choices``; compared case-insensitively when ``fold``."""
        value = self.string(key, default)
        wanted = value.lower() if fold else value
        for option in choices:
            if option == wanted:
                return option
        names = ", ".join(json.dumps(c) for c in choices)
        self.error(key, f"must be one of {names}, got {_show(value)}")
        return default

    def path(self, key: str, default: Path, base_dir: Path | None) -> Path:
        """A non-empty path, resolved against ``base_dir`` when relative."""
        present, _ = self._get(key)
        text = self.string(key, str(default))
        if present and not text.strip():
            self.error(key, "must not be empty")
            text = str(default)
        return _resolve(Path(text).expanduser(), base_dir)

    def optional_path(self, key: str, base_dir: Path | None) -> Path | None:
        """A path, or ``None`` for ``""``."""
        text = self.string(key, "")
        if not text.strip():
            return None
        return _resolve(Path(text).expanduser(), base_dir)

    def int_list(self, key: str, *, allow_str: bool = False) -> tuple[Any, ...]:
        """A list of ints (or ints and non-empty strings when ``allow_str``)."""
        present, value = self._get(key)
        if not present:
            return ()
        kind = "integers or strings" if allow_str else "integers"
        if not isinstance(value, list):
            self.error(key, f"must be a list of {kind}, got {_show(value)}")
            return ()
        items: list[int | str] = []
        for index, item in enumerate(value):
            is_int = isinstance(item, int) and not isinstance(item, bool)
            is_str = allow_str and isinstance(item, str) and bool(item.strip())
            if not (is_int or is_str):
                what = "an integer or a non-empty string" if allow_str else "an integer"
                self.error(f"{key}[{index}]", f"must be {what}, got {_show(item)}")
                continue
            items.append(cast("int | str", item))
        return tuple(items)

    def check_unknown(self) -> None:
        """Report keys of this table that no getter asked for."""
        for key in self.data:
            if key not in self.read:
                hint = _did_you_mean(key, sorted(self.read))
                self.errors.append(f"unknown key {self.label} {key}{hint}")


def _read_source(t: _Table, base_dir: Path | None) -> SourceSection:
    d = SourceSection()
    return SourceSection(
        type=t.choice("type", d.type, _SOURCE_TYPES),
        path=t.path("path", d.path, base_dir),
        viewers_path=t.optional_path("viewers_path", base_dir),
    )


def _read_dispatcharr(t: _Table) -> DispatcharrSection:
    d = DispatcharrSection()
    url = t.string("url", d.url)
    password_env = t.string("password_env", d.password_env).strip()
    api_key_env = t.string("api_key_env", d.api_key_env).strip()
    if "@" in url.split("?", 1)[0].split("#", 1)[0]:
        # Userinfo in the URL: never echo it (it holds a password); say where it goes.
        t.error(
            "url",
            f"must not contain credentials (user:password@), got {redact_url(url)}; "
            "credentials belong in the environment: set [dispatcharr] username and "
            f"the password in ${password_env or '<password_env>'} (password_env), "
            f"or an API key in ${api_key_env or '<api_key_env>'} (api_key_env)",
        )
        url = d.url
    elif not re.fullmatch(r"https?://(\[[0-9a-fA-F:.]+\]|[^/\s:\[\]@]+)(:\d{1,5})?(/\S*)?", url):
        t.error("url", f'must be an "http://" or "https://" URL with a host, got {_show(url)}')
        url = d.url
    user_agent = t.string("user_agent", "")
    return DispatcharrSection(
        url=url.rstrip("/"),
        username=t.string("username", d.username),
        password_env=password_env,
        api_key_env=api_key_env,
        timeout=t.number("timeout", d.timeout, positive=True),
        include_all_streams=t.boolean("include_all_streams", d.include_all_streams),
        exclude_groups=t.int_list("exclude_groups"),
        exclude_channels=t.int_list("exclude_channels", allow_str=True),
        user_agent=user_agent or None,
        write_concurrency=_write_concurrency(t, d.write_concurrency),
    )


def _write_concurrency(t: _Table, default: int) -> int:
    value = t.integer("write_concurrency", default)
    if not 1 <= value <= _MAX_WRITE_CONCURRENCY:
        t.error("write_concurrency", f"must be from 1 to {_MAX_WRITE_CONCURRENCY}, got {value}")
        return default
    return value


def _read_concurrent(t: _Table) -> ConcurrentStreamsSection:
    d = ConcurrentStreamsSection()
    return ConcurrentStreamsSection(
        enabled=t.boolean("enabled", d.enabled),
        global_limit=t.integer("global_limit", d.global_limit),
        stagger_delay=t.number("stagger_delay", d.stagger_delay),
    )


def _read_check(t: _Table, base_dir: Path | None) -> CheckSection:
    d = CheckSection()
    ffmpeg = t.string("ffmpeg", d.ffmpeg).strip()
    if ffmpeg.startswith("~") or "/" in ffmpeg or os.sep in ffmpeg:
        ffmpeg = str(_resolve(Path(ffmpeg).expanduser(), base_dir))
    duration = t.number("duration", d.duration, positive=True)
    timeout = t.number("timeout", d.timeout, positive=True)
    max_wait = t.number("max_wait", d.max_wait, positive=True)
    if 0 < max_wait < duration + timeout:
        # Shorter than one check: waiting jobs would be cut off behind a check still running.
        t.error(
            "max_wait",
            f"must be at least check.duration + check.timeout ({duration + timeout:g} s), "
            f"got {_show(max_wait)}",
        )
    return CheckSection(
        duration=duration,
        adaptive=t.boolean("adaptive", d.adaptive),
        timeout=timeout,
        max_wait=max_wait,
        ffmpeg=ffmpeg,
        user_agent=t.string("user_agent", d.user_agent),
        retries=t.integer("retries", d.retries),
        retry_delay=t.number("retry_delay", d.retry_delay),
        busy_backoff=t.number("busy_backoff", d.busy_backoff),
        max_requeues=t.integer("max_requeues", d.max_requeues),
        priority_channels=t.int_list("priority_channels", allow_str=True),
        stable_every=_stable_every(t, d.stable_every),
    )


def _stable_every(t: _Table, default: int) -> int:
    value = t.integer("stable_every", default)
    if value < 1:
        t.error("stable_every", f"must be an integer >= 1, got {value}")
        return default
    return value


def _read_score(t: _Table) -> ScoreSection:
    d = ScoreSection()
    section = ScoreSection(
        resolution=t.number("resolution", d.resolution),
        bitrate=t.number("bitrate", d.bitrate),
        fps=t.number("fps", d.fps),
        codec=t.number("codec", d.codec),
    )
    if not any(getattr(section, f.name) for f in fields(section)):
        t.errors.append(f"{t.label}: the weights must not all be zero")
    return section


def _read_viewers(t: _Table) -> ViewersSection:
    d = ViewersSection()
    return ViewersSection(
        poll_interval=t.number("poll_interval", d.poll_interval, positive=True),
        when_unknown=t.choice("when_unknown", d.when_unknown, _WHEN_UNKNOWN),
    )


def _read_learning(t: _Table) -> LearningSection:
    d = LearningSection()
    section = LearningSection(
        enabled=t.boolean("enabled", d.enabled),
        probe_up_after=t.number("probe_up_after", d.probe_up_after, positive=True),
        release_grace=t.number("release_grace", d.release_grace, positive=True),
        max_release_grace=t.number("max_release_grace", d.max_release_grace, positive=True),
    )
    if section.max_release_grace < section.release_grace:
        t.error("max_release_grace", "must be >= release_grace")
    return section


def _read_schedule(t: _Table) -> ScheduleSection:
    d = ScheduleSection()
    present, interval = t._get("interval")
    if not present:
        interval = d.interval
    else:
        try:
            if not isinstance(interval, str | int | float):
                raise TypeError
            parse_duration(interval)
        except (TypeError, ValueError):
            problem = (
                'must be a duration > 0 like "90s", "15m", "6h", "1d" or a number of seconds, '
                f"got {_show(interval)}"
            )
            t.error("interval", problem)
            interval = d.interval
    cron = t.string("cron", d.cron).strip()
    if cron:
        from croniter import croniter

        if not croniter.is_valid(cron):
            t.error("cron", f"not a valid cron expression: {_show(cron)}")
            cron = d.cron
    return ScheduleSection(
        interval=interval,
        cron=cron,
        run_at_start=t.boolean("run_at_start", d.run_at_start),
    )


def _read_results(t: _Table, base_dir: Path | None) -> ResultsSection:
    d = ResultsSection()
    return ResultsSection(
        database=t.path("database", d.database, base_dir),
        reorder=t.boolean("reorder", d.reorder),
        dry_run=t.boolean("dry_run", d.dry_run),
        history_days=t.integer("history_days", d.history_days),
    )


def _read_status(t: _Table) -> StatusSection:
    d = StatusSection()
    listen = t.string("listen", d.listen).strip()
    if listen:
        try:
            _split_listen(listen)
        except ValueError:
            problem = f'must be "host:port" (port 0-65535) or "" to disable, got {_show(listen)}'
            t.error("listen", problem)
            listen = d.listen
    history = t.integer("history", d.history)
    if history < 1:
        t.error("history", f"must be an integer >= 1, got {history}")
        history = d.history
    return StatusSection(
        listen=listen, token_env=t.string("token_env", d.token_env).strip(), history=history
    )


def _read_alerts(t: _Table) -> AlertsSection:
    d = AlertsSection()
    url = t.string("webhook_url", d.webhook_url).strip()
    if url and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
        t.error("webhook_url", f'must be an "http://" or "https://" URL or "", got {_show(url)}')
        url = d.webhook_url
    return AlertsSection(
        webhook_url=url,
        timeout=t.number("timeout", d.timeout, positive=True),
        retries=t.integer("retries", d.retries),
        retry_delay=t.number("retry_delay", d.retry_delay),
    )


def _read_log(t: _Table) -> LogSection:
    d = LogSection()
    return LogSection(
        format=t.choice("format", d.format, _LOG_FORMATS),
        level=t.choice("level", d.level, _LOG_LEVELS, fold=True),
    )


def _read_accounts(data: Mapping[str, Any], errors: list[str]) -> dict[int, AccountOverride]:
    raw = data.get("accounts", {})
    if not isinstance(raw, dict):
        errors.append(f"[accounts]: must be a table, got {_show(raw)}")
        return {}
    overrides: dict[int, AccountOverride] = {}
    for key, value in raw.items():
        label = f"[accounts.{json.dumps(key)}]"
        if not key.isascii() or not key.isdigit():
            errors.append(f"{label}: the key must be an account id (digits), got {_show(key)}")
            continue
        if not isinstance(value, dict):
            errors.append(f"{label}: must be a table, got {_show(value)}")
            continue
        t = _Table(value, label, errors)
        stagger = t.number("stagger_delay", -1.0)
        reserve = t.integer("reserve_for_viewers", -1)
        max_streams = t.integer("max_streams", -1)
        t.check_unknown()
        overrides[int(key)] = AccountOverride(
            stagger_delay=None if stagger < 0 else stagger,
            reserve_for_viewers=None if reserve < 0 else reserve,
            max_streams=None if max_streams < 0 else max_streams,
        )
    return overrides


# --- small helpers ----------------------------------------------------------------


def _resolve(path: Path, base_dir: Path | None) -> Path:
    if base_dir is None or path.is_absolute():
        return path
    return base_dir / path


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isascii() or not port_text.isdigit():
        message = f"not host:port: {listen!r}"
        raise ValueError(message)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        # A bare IPv6 address needs brackets, or the port would be ambiguous.
        message = f"IPv6 host needs brackets: {listen!r}"
        raise ValueError(message)
    port = int(port_text)
    if not host or any(c.isspace() for c in host) or port > 65535:
        message = f"not host:port: {listen!r}"
        raise ValueError(message)
    return host, port


def _did_you_mean(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {json.dumps(close[0])}?)" if close else ""


def _show(value: Any) -> str:
    """``value`` as it would look in TOML, shortened to one short line."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "a table"
    else:
        text = str(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return text


def _plain_section(section: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cast("Any", section)):
        value = getattr(section, f.name)
        if value is None:
            value = ""
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out
