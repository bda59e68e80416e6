"""The daemon's configuration: TOML in, frozen dataclasses out.

Reading the config is the process shell's work, so it lives here in ``app/``.
Each section is a frozen dataclass whose fields declare their TOML key, their
default and what a value must be (:func:`setting`, a :class:`adapters.schema.Field`);
:func:`load_config` reads a user file on top of the defaults with
:class:`adapters.schema.Reader`, checks every key and reports *all* problems at
once in one single-line :class:`~adapters.schema.InputError` that names each
bad key, with a "did you mean" for unknown ones, in the manner of mopidy's
config schemas. ``config/default.toml`` documents every key and parses to
exactly these defaults.

A default that an actor also needs is owned by the actor's settings
(:class:`~actors.dispatch.CoordinatorSettings`,
:class:`~actors.learning.LearningSettings`,
:class:`~domain.score.ScoreWeights`); the section refers to it instead of
restating it.

Relative paths (``source.path``, ``source.viewers_path``, ``results.database``
and ``check.ffmpeg`` when it contains a slash) resolve against the folder of
the config file.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

from actors.dispatch import CoordinatorSettings
from actors.learning import LearningSettings
from actors.slots import FAIL_CLOSED, WhenUnknown
from adapters.dispatcharr import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_WRITE_CONCURRENCY,
    MAX_WRITE_CONCURRENCY,
)
from adapters.schema import TOML, Field, InputError, Problems, Reader, did_you_mean, show_toml
from domain.models import Account
from domain.score import ScoreWeights
from domain.urls import redact_url

__all__ = [
    "AccountOverride",
    "AlertsSection",
    "CheckSection",
    "ConcurrentStreamsSection",
    "Config",
    "DispatcharrSection",
    "InputError",
    "LearningSection",
    "LogSection",
    "ResultsSection",
    "ScheduleSection",
    "SourceSection",
    "StatusSection",
    "ViewersSection",
    "load_config",
    "parse_config",
    "parse_duration",
]

SourceType = Literal["file", "dispatcharr"]
LogFormat = Literal["console", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SPEC = "spec"

# --- what values may be -------------------------------------------------------------

NUMBER = Field("number", minimum=0)
POSITIVE = Field("number", above=0)
COUNT = Field("int", minimum=0)
AT_LEAST_ONE = Field("int", minimum=1)
FLAG = Field("bool")
TEXT = Field("str")
PATH = Field("str", nonempty=True)
"""A path; made a :class:`Path` (resolved) by the section's reader."""
INT_LIST = Field("list", items=Field("int"), noun="a list of integers")
ID_LIST = Field("list", items=Field("id"), noun="a list of integers or strings")
"""Channels by id, name or UUID."""


def setting(default: Any, spec: Field) -> Any:
    """A section field: its default and what a value in the file must be."""
    return field(default=default, metadata={_SPEC: spec})


def _url_problem(url: str) -> str | None:
    if re.fullmatch(r"https?://(\[[0-9a-fA-F:.]+\]|[^/\s:\[\]@]+)(:\d{1,5})?(/\S*)?", url):
        return None
    return f'must be an "http://" or "https://" URL with a host, got {show_toml(url)}'


def _webhook_problem(url: str) -> str | None:
    url = url.strip()
    if not url or re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
        return None
    return f'must be an "http://" or "https://" URL or "", got {show_toml(url)}'


def _interval_problem(value: object) -> str | None:
    problem = (
        'must be a duration > 0 like "90s", "15m", "6h", "1d" or a number of seconds, '
        f"got {show_toml(value)}"
    )
    if not isinstance(value, str | int | float):
        return problem
    try:
        parse_duration(value)
    except ValueError:
        return problem
    return None


def _cron_problem(value: str) -> str | None:
    cron = value.strip()
    if not cron:
        return None
    from croniter import CroniterError, croniter

    if not croniter.is_valid(cron):
        return f"not a valid cron expression: {show_toml(cron)}"
    try:  # valid, yet maybe no date matches it (February 31st)
        croniter(cron, datetime.now(UTC)).get_next(datetime)
    except CroniterError:
        return f"{show_toml(cron)} never fires"
    return None


def _listen_problem(value: str) -> str | None:
    listen = value.strip()
    if not listen:
        return None
    try:
        _split_listen(listen)
    except ValueError:
        return f'must be "host:port" (port 0-65535) or "" to disable, got {show_toml(listen)}'
    return None


# --- sections ---------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSection:
    """``[source]``: where accounts, streams and channels come from."""

    type: SourceType = setting("file", Field("str", choices=("file", "dispatcharr")))
    """``"file"`` (an inventory JSON file) or ``"dispatcharr"`` (its REST API)."""
    path: Path = setting(Path("inventory.json"), PATH)
    """The inventory file, for ``type = "file"``."""
    viewers_path: Path | None = setting(None, TEXT)
    """Viewer counts file re-read every poll (``type = "file"``); ``""`` in TOML = none."""


@dataclass(frozen=True)
class DispatcharrSection:
    """``[dispatcharr]``: how to reach Dispatcharr. Secrets come from the environment."""

    url: str = setting("http://localhost:9191", TEXT)
    username: str = setting("admin", TEXT)
    password_env: str = setting("DISPATCHARR_PASSWORD", TEXT)
    """Name of the environment variable holding the password."""
    api_key_env: str = setting("DISPATCHARR_API_KEY", TEXT)
    """Name of the environment variable holding an API key; used instead of the
    password when that variable is set."""
    timeout: float = setting(DEFAULT_TIMEOUT_S, POSITIVE)
    """Seconds per HTTP request."""
    include_all_streams: bool = setting(False, FLAG)
    """Check every stream, not only those assigned to a channel."""
    exclude_groups: tuple[int, ...] = setting((), INT_LIST)
    """Channel group ids whose channels are not checked."""
    exclude_channels: tuple[int | str, ...] = setting((), ID_LIST)
    """Channels not checked: ids, names or UUIDs."""
    user_agent: str | None = setting(None, TEXT)
    """User agent for the API requests; ``""`` in TOML = the HTTP library's own."""
    write_concurrency: int = setting(
        DEFAULT_WRITE_CONCURRENCY, Field("int", minimum=1, maximum=MAX_WRITE_CONCURRENCY)
    )
    """Requests at once while writing stats back and reordering channels (1-16)."""

    def password(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The password from ``password_env``, or ``None`` when it is unset or empty."""
        return _from_env(self.password_env, environ)

    def api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The API key from ``api_key_env``, or ``None`` when it is unset or empty."""
        return _from_env(self.api_key_env, environ)


@dataclass(frozen=True)
class ConcurrentStreamsSection:
    """``[concurrent_streams]``: how many checks may run at once."""

    enabled: bool = setting(True, FLAG)
    """``false``: one check at a time overall."""
    global_limit: int = setting(10, COUNT)
    """Checks running at once over all accounts; 0 = unlimited."""
    stagger_delay: float = setting(1.0, NUMBER)
    """Minimum seconds between two connection openings on one account; 0 = none."""


@dataclass(frozen=True)
class AccountOverride:
    """``[accounts."<id>"]``: per-account settings; ``None`` keeps the source's value."""

    stagger_delay: float | None = setting(None, NUMBER)
    reserve_for_viewers: int | None = setting(None, COUNT)
    """Slots kept free for people who may start watching."""
    max_streams: int | None = setting(None, COUNT)
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


_COORDINATOR = CoordinatorSettings()


@dataclass(frozen=True)
class CheckSection:
    """``[check]``: how one stream is probed (defaults: the coordinator's settings)."""

    duration: float = setting(_COORDINATOR.check_duration, POSITIVE)
    """The most seconds of stream a check reads (all of it when ``adaptive`` is off)."""
    adaptive: bool = setting(True, FLAG)
    """Stop reading once resolution, codecs, fps and a settled bitrate are known."""
    timeout: float = setting(_COORDINATOR.check_timeout, POSITIVE)
    """Seconds before a check is given up."""
    ffmpeg: str = setting("", TEXT)
    """The ffmpeg binary; empty: ``PATH``, then the binary of imageio-ffmpeg."""
    user_agent: str = setting("VLC/3.0.20 LibVLC/3.0.20", TEXT)
    """User agent sent to providers, unless the account has its own."""
    retries: int = setting(_COORDINATOR.retries, COUNT)
    """Extra attempts after an error."""
    retry_delay: float = setting(_COORDINATOR.retry_delay, NUMBER)
    busy_backoff: float = setting(_COORDINATOR.busy_backoff, NUMBER)
    """First wait after a provider-busy refusal; doubled each time."""
    max_requeues: int = setting(_COORDINATOR.max_requeues, COUNT)
    """Times a job may be preempted and requeued before it ends as cancelled."""
    priority_channels: tuple[int | str, ...] = setting((), ID_LIST)
    """Channels (ids, names or UUIDs) whose streams are checked first, every cycle."""
    stable_every: int = setting(_COORDINATOR.stable_every, AT_LEAST_ONE)
    """A stream ok and unchanged for its last 3 checks is checked every N cycles."""
    max_wait: float = setting(_COORDINATOR.max_wait, POSITIVE)
    """Seconds a cycle waits while no check starts or ends (viewers hold the slots
    its waiting checks need); then those end as cancelled, ``viewers_held_account``."""


@dataclass(frozen=True)
class ViewersSection:
    """``[viewers]``: how often viewer counts are read, and what is assumed when they can't be.

    ``when_unknown``'s default is :data:`actors.slots.FAIL_CLOSED`'s.
    """

    poll_interval: float = setting(5.0, POSITIVE)
    when_unknown: WhenUnknown = setting(
        FAIL_CLOSED.when_unknown, Field("str", choices=get_args(WhenUnknown))
    )
    """``"wait"``: before the first read and while reads fail, no new check on an
    account unless its last known count leaves room for one more viewer;
    ``"last_known"``: trust the last known count (nobody before the first read)."""


_LEARNING = LearningSettings()


@dataclass(frozen=True)
class LearningSection:
    """``[learning]``: learning each provider login's real cap and release lag.

    The defaults are :class:`~actors.learning.LearningSettings`'.
    """

    enabled: bool = setting(True, FLAG)
    """Learn from "full" refusals; ``false``: trust the configured limits."""
    probe_up_after: float = setting(_LEARNING.quiet_period_s, POSITIVE)
    """Seconds without a refusal after which a lowered login tries one more connection."""
    release_grace: float = setting(_LEARNING.first_grace_s, POSITIVE)
    """Seconds a freed slot waits once a login showed a release lag (at least)."""
    max_release_grace: float = setting(_LEARNING.max_grace_s, POSITIVE)
    """A learned release grace never grows past this."""

    def settings(self) -> LearningSettings:
        """The accounts' learning settings with these values; the rest at their defaults."""
        return replace(
            _LEARNING,
            quiet_period_s=self.probe_up_after,
            first_grace_s=self.release_grace,
            max_grace_s=self.max_release_grace,
        )


@dataclass(frozen=True)
class ScheduleSection:
    """``[schedule]``: when check cycles run."""

    interval: str | float = setting("6h", Field("any", check=_interval_problem))
    """``"90s"``, ``"15m"``, ``"6h"``, ``"1d"``, ``"1h30m"`` or seconds as a number."""
    cron: str = setting("", Field("str", check=_cron_problem))
    """A cron expression; when set, ``interval`` is ignored."""
    run_at_start: bool = setting(True, FLAG)
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

    database: Path = setting(Path("results.sqlite"), PATH)
    reorder: bool = setting(True, FLAG)
    """Reorder each channel's streams best first."""
    dry_run: bool = setting(False, FLAG)
    """Check and store, but write nothing back to the source."""
    history_days: int = setting(90, COUNT)
    """Stored checks older than this are pruned; 0 = keep all."""


@dataclass(frozen=True)
class StatusSection:
    """``[status]``: the status page, ``/api/status`` and ``/metrics``."""

    listen: str = setting("127.0.0.1:8787", Field("str", check=_listen_problem))
    """``host:port``; ``""`` disables the status server."""
    token_env: str = setting("IPTV_CHECKD_TOKEN", TEXT)
    """Name of the environment variable holding the token that state-changing
    requests (start a cycle, check a channel) must carry. Without a token the
    server only starts on a loopback address."""
    history: int = setting(20, AT_LEAST_ONE)
    """Checks per stream the dashboard shows as history (uptime, bitrate sparkline)."""

    def token(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The token from ``token_env``, or ``None`` when it is unset or empty."""
        return _from_env(self.token_env, environ)

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

    webhook_url: str = setting("", Field("str", check=_webhook_problem))
    """URL that gets a JSON POST per alert; ``""`` = no alerts."""
    timeout: float = setting(5.0, POSITIVE)
    """Seconds per POST."""
    retries: int = setting(3, COUNT)
    """Extra attempts after a failed POST."""
    retry_delay: float = setting(2.0, NUMBER)
    """Seconds before the first retry; doubled each time."""

    @property
    def enabled(self) -> bool:
        """False when ``webhook_url`` is empty."""
        return bool(self.webhook_url)


@dataclass(frozen=True)
class LogSection:
    """``[log]``: log output."""

    format: LogFormat = setting("console", Field("str", choices=("console", "json")))
    level: LogLevel = setting(
        "info", Field("str", choices=("debug", "info", "warning", "error"), fold=True)
    )


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration."""

    source: SourceSection = field(default_factory=SourceSection)
    dispatcharr: DispatcharrSection = field(default_factory=DispatcharrSection)
    concurrent_streams: ConcurrentStreamsSection = field(default_factory=ConcurrentStreamsSection)
    accounts: Mapping[int, AccountOverride] = field(default_factory=dict)
    """Per-account overrides by account id."""
    check: CheckSection = field(default_factory=CheckSection)
    score: ScoreWeights = field(default_factory=ScoreWeights)
    """``[score]``: the weights of the quality score (not all zero)."""
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
        InputError: The file cannot be read, is not TOML, or has bad keys or
            values; the message names the file and every bad key.
    """
    if path is None:
        return Config()
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(source, ["no such file"], missing=True) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(source, [f"cannot read: {reason}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(source, [f"invalid TOML: {exc}"]) from None
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
        InputError: With every problem found.
    """
    problems = Problems(source)
    finish: dict[str, Callable[[dict[str, Any], Reader], None]] = {
        "source": lambda v, _: _finish_source(v, base_dir),
        "dispatcharr": _finish_dispatcharr,
        "check": lambda v, t: _finish_check(v, t, base_dir),
        "score": _finish_score,
        "learning": _finish_learning,
        "schedule": _strip("cron"),
        "results": lambda v, _: v.update(database=_path(v["database"], base_dir)),
        "status": _strip("listen", "token_env"),
        "alerts": _strip("webhook_url"),
    }
    known = [f.name for f in fields(Config)]
    for key, value in data.items():
        if key not in known:
            what = f"section [{key}]" if isinstance(value, dict) else f"key {key}"
            problems.add("", f"unknown {what}{did_you_mean(key, known)}")
    values: dict[str, Any] = {}
    for item in fields(Config):
        if item.name == "accounts":
            continue
        table = _table(data.get(item.name, {}), f"[{item.name}]", problems)
        default = getattr(Config(), item.name)
        values[item.name] = _read_section(table, default, finish.get(item.name))
        table.reject_unknown()
    values["accounts"] = _read_accounts(data.get("accounts", {}), problems)
    problems.check()
    return Config(**values)


_T = TypeVar("_T")


def _table(value: object, label: str, problems: Problems) -> Reader:
    """A reader of the table ``value``; an empty one (after a problem) when it is not a table."""
    return Reader.of(value, label, problems, TOML) or Reader({}, label, problems, TOML)


def _read_section(
    table: Reader, defaults: _T, finish: Callable[[dict[str, Any], Reader], None] | None
) -> _T:
    """The section of the type of ``defaults`` from ``table``, its defaults where a key is absent.

    A field's spec is its ``setting`` metadata, or :data:`NUMBER` for a dataclass
    without (the score weights).
    """
    values: dict[str, Any] = {}
    for item in fields(cast("Any", defaults)):
        default = getattr(defaults, item.name)
        value = table.get(item.name, item.metadata.get(_SPEC, NUMBER).with_default(default))
        values[item.name] = tuple(value) if isinstance(default, tuple) else value
    if finish is not None:
        finish(values, table)
    return type(defaults)(**values)


def _strip(*keys: str) -> Callable[[dict[str, Any], Reader], None]:
    def finish(values: dict[str, Any], _: Reader) -> None:
        for key in keys:
            values[key] = values[key].strip()

    return finish


def _finish_source(values: dict[str, Any], base_dir: Path | None) -> None:
    values["path"] = _path(values["path"], base_dir)
    viewers = values["viewers_path"]
    values["viewers_path"] = _path(viewers, base_dir) if viewers and viewers.strip() else None


def _finish_dispatcharr(values: dict[str, Any], table: Reader) -> None:
    default = DispatcharrSection()
    url: str = values["url"]
    password_env = values["password_env"] = values["password_env"].strip()
    api_key_env = values["api_key_env"] = values["api_key_env"].strip()
    if "@" in url.split("?", 1)[0].split("#", 1)[0]:
        # Userinfo in the URL: never echo it (it holds a password); say where it goes.
        table.fail(
            "url",
            f"must not contain credentials (user:password@), got {redact_url(url)}; "
            "credentials belong in the environment: set [dispatcharr] username and "
            f"the password in ${password_env or '<password_env>'} (password_env), "
            f"or an API key in ${api_key_env or '<api_key_env>'} (api_key_env)",
        )
        url = default.url
    else:
        problem = _url_problem(url)
        if problem is not None:
            table.fail("url", problem)
            url = default.url
    values["url"] = url.rstrip("/")
    values["user_agent"] = values["user_agent"] or None


def _finish_check(values: dict[str, Any], table: Reader, base_dir: Path | None) -> None:
    ffmpeg = values["ffmpeg"] = values["ffmpeg"].strip()
    if ffmpeg.startswith("~") or "/" in ffmpeg or os.sep in ffmpeg:
        values["ffmpeg"] = str(_path(ffmpeg, base_dir))
    one_check = values["duration"] + values["timeout"]
    if 0 < values["max_wait"] < one_check:
        # Shorter than one check: waiting jobs would be cut off behind a check still running.
        table.fail(
            "max_wait",
            f"must be at least check.duration + check.timeout ({one_check:g} s), "
            f"got {show_toml(values['max_wait'])}",
        )


def _finish_score(values: dict[str, Any], table: Reader) -> None:
    if not any(values.values()):
        table.fail(None, "the weights must not all be zero")
        values.update((f.name, getattr(ScoreWeights(), f.name)) for f in fields(ScoreWeights))


def _finish_learning(values: dict[str, Any], table: Reader) -> None:
    if values["max_release_grace"] < values["release_grace"]:
        table.fail("max_release_grace", "must be >= release_grace")


def _read_accounts(raw: object, problems: Problems) -> dict[int, AccountOverride]:
    accounts = _table(raw, "[accounts]", problems)
    overrides: dict[int, AccountOverride] = {}
    for key, value in accounts.data.items():
        label = f"[accounts.{json.dumps(key)}]"
        if not key.isascii() or not key.isdigit():
            problems.add(label, f"the key must be an account id (digits), got {show_toml(key)}")
            continue
        table = Reader.of(value, label, problems, TOML)
        if table is not None:
            overrides[int(key)] = _read_section(table, AccountOverride(), None)
            table.reject_unknown()
    return overrides


# --- small helpers ----------------------------------------------------------------


def _from_env(variable: str, environ: Mapping[str, str] | None) -> str | None:
    env = os.environ if environ is None else environ
    return (env.get(variable) or None) if variable else None


def _path(text: str | Path, base_dir: Path | None) -> Path:
    path = Path(text).expanduser()
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
