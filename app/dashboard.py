"""What the dashboard shows, as JSON-safe data, and the two things it can do.

:class:`Dashboard` builds the views the HTTP server serves, from foreign
threads, asking actors with timeouts (never more than one round of asks per
view, sent together and then waited for):

- :meth:`Dashboard.status` (``/api/status``): the coordinator's status, each
  account's logins with their viewers, checks, limits (configured, and learned
  where the account actor reports one) and free slots, the running cycle's
  progress, the last cycles, the next start;
- :meth:`Dashboard.streams` (``/api/streams``): every stream with its latest
  result and a short history from the results store;
- :meth:`Dashboard.channels` (``/api/channels``): every channel's streams in
  the order written back, and what changed at the last reorder.

:class:`Controls` starts a cycle now, or a check of one channel.

Provider URLs are shown as host and last path segment only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pykka
import structlog

from actors.jobs import jobs_for
from actors.messages import (
    CheckCycle,
    CycleInventory,
    GetStatus,
    GetUsage,
    RunNow,
    TakeCycleId,
)
from actors.tell import tell_quietly
from adapters.store import StoreError, StreamHistory, read_cycles, read_histories
from app.monitor import GetView, ManualCheck, MonitorView
from domain.models import Inventory
from domain.urls import redact_url

logger = structlog.get_logger(__name__)

ASK_TIMEOUT_S = 2.0
_STREAMS_CACHE_S = 5.0
"""A stream list is built at most this often while results keep coming (10,000
streams took about a second to build on the development machine)."""


def display_url(url: str) -> str:
    """A provider URL as the host and its last path segment at most, never credentials."""
    try:
        parts = urlsplit(redact_url(url))
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return ""
    if port:
        host = f"{host}:{port}"
    last = parts.path.rstrip("/").rsplit("/", 1)[-1]
    return f"{host}/…/{last}" if last else host


def _usage_of(value: Any) -> tuple[int | None, int | None, int | None, int | None]:
    """``(viewers, leases, limit, learned_limit)`` from an account's usage entry.

    Today an entry is ``(viewers, leases, limit)``; a mapping with those keys
    and ``learned_limit`` is read too, so a richer answer needs no change here.
    """
    if isinstance(value, Mapping):
        return (
            value.get("viewers"),
            value.get("leases"),
            value.get("limit"),
            value.get("learned_limit"),
        )
    if isinstance(value, Sequence) and len(value) >= 3:
        learned = value[3] if len(value) > 3 else None
        return value[0], value[1], value[2], learned
    return None, None, None, None


def _release_lag_of(value: Any) -> float | None:
    """The release grace an account learned for a login (a mapping usage entry only)."""
    if isinstance(value, Mapping):
        lag = value.get("release_lag_s")
        return float(lag) if isinstance(lag, int | float) else None
    return None


def _logins(
    account: Mapping[str, Any], usage: Mapping[int, Any] | None, checks: Mapping[int, int]
) -> list[dict[str, Any]]:
    """One entry per login of an account: viewers, checks, limits and free slots."""
    profiles = list(account.get("profiles", []))
    known = {p["id"] for p in profiles}
    for profile_id in (usage or {}).keys() - known:  # a removed login still holding leases
        profiles.append({"id": profile_id, "name": "(removed)", "is_default": False})
    logins: list[dict[str, Any]] = []
    for profile in profiles:
        viewers, leases, used_limit, learned = _usage_of((usage or {}).get(profile["id"]))
        configured = profile.get("max_streams", used_limit or 0)
        if learned is None and used_limit is not None and used_limit != configured:
            learned = used_limit  # the account applies a limit other than the configured one
        effective = learned if learned is not None else configured
        in_use = leases if leases is not None else checks.get(profile["id"], 0)
        free: int | None = None
        if effective:
            free = max(0, effective - (viewers or 0) - in_use)
        login = {
            "id": profile["id"],
            "name": profile["name"],
            "is_default": profile["is_default"],
            "limit": configured,
            "effective_limit": effective,
            "viewers": viewers,
            "checks": in_use,
            "free": free,
        }
        if learned is not None:
            login["learned_limit"] = learned
        if profile.get("shares_login_with"):  # a server group pools this login
            login["shared_with"] = list(profile["shares_login_with"])
        lag = _release_lag_of((usage or {}).get(profile["id"]))
        if lag:
            login["release_lag_s"] = lag
        logins.append(login)
    return logins


def _public_account(account: Mapping[str, Any], logins: list[dict[str, Any]]) -> dict[str, Any]:
    entry = {k: v for k, v in account.items() if k not in ("actor", "profiles")}
    entry["logins"] = logins
    viewers = [login["viewers"] for login in logins if login["viewers"] is not None]
    entry["viewers"] = sum(viewers) if viewers else None
    frees = [login["free"] for login in logins]
    if any(f is None for f in frees):
        entry["free"] = None  # an unlimited login
    else:
        entry["free"] = max(0, sum(cast(list[int], frees)) - account.get("reserve_for_viewers", 0))
    return entry


class Dashboard:
    """The dashboard's views, built from actor answers and the results store.

    Args:
        coordinator: answers ``GetStatus``.
        scheduler: answers ``GetStatus`` (``None`` for ``once``).
        monitor: the :class:`~app.monitor.Monitor` (``None``: no progress or names).
        database: the results store (``None``: no history).
        history: checks per stream in the history.
        token_required: shown to the page, which then asks for the token.
    """

    def __init__(
        self,
        coordinator: pykka.ActorRef[Any],
        scheduler: pykka.ActorRef[Any] | None = None,
        monitor: pykka.ActorRef[Any] | None = None,
        database: Path | None = None,
        history: int = 20,
        *,
        token_required: bool = False,
    ) -> None:
        self._coordinator = coordinator
        self._scheduler = scheduler
        self._monitor = monitor
        self._database = database
        self._history = history
        self.token_required = token_required
        self._lock = threading.Lock()
        self._streams_cache: tuple[Any, float, dict[str, Any]] | None = None

    # --- /api/status ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The status of the daemon, JSON-safe (no actor refs, no URLs).

        Raises:
            pykka.Timeout: the coordinator did not answer in time.
            pykka.ActorDeadError: the coordinator is gone (stopping).
        """
        coordinator = self._coordinator.ask(GetStatus(), block=False)
        scheduler = self._ask_quietly(self._scheduler, GetStatus())
        monitor = self._ask_quietly(self._monitor, GetStatus())
        status = cast(dict[str, Any], coordinator.get(timeout=ASK_TIMEOUT_S))
        accounts = status.get("accounts", {})
        usage_futures = {
            account_id: self._ask_quietly(account.get("actor"), GetUsage(detail=True))
            for account_id, account in accounts.items()
        }
        checks = [{k: v for k, v in c.items() if k != "checker"} for c in status.get("checks", [])]
        per_login: dict[int, dict[int, int]] = {}
        for check in checks:
            login_counts = per_login.setdefault(check["account_id"], {})
            login_counts[check["profile_id"]] = login_counts.get(check["profile_id"], 0) + 1
        public_accounts = {}
        for account_id, account in accounts.items():
            usage = _answer(usage_futures[account_id])
            logins = _logins(account, usage, per_login.get(account_id, {}))
            public_accounts[account_id] = _public_account(account, logins)
        watch = _answer(monitor) or {}
        return {
            **status,
            "accounts": public_accounts,
            "checks": checks,
            "schedule": _answer(scheduler),
            "progress": watch.get("progress"),
            "recent_cycles": self._recent_cycles(
                watch.get("recent_cycles", []), status.get("cycle")
            ),
            "last_source_failure": watch.get("last_failure"),
            "results_seen": watch.get("results_seen", 0),
            "alerts_enabled": watch.get("alerts_enabled", False),
            "token_required": self.token_required,
            "history": self._history,
            "now": time.time(),
        }

    def _recent_cycles(
        self, recent: list[dict[str, Any]], running: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """This process's recent cycles, then older ones from the results store.

        The store's rows are matched to ours by their start time (the sink
        stores the coordinator's); the running cycle is not a past one.
        """
        cycles = list(recent)
        if len(cycles) >= 10 or self._database is None:
            return cycles
        seen = {c["started_at"] for c in cycles}
        if running is not None:
            seen.add(running.get("started_at"))
        try:
            stored = read_cycles(self._database, 10)
        except StoreError as exc:
            logger.warning("dashboard_store_unreadable", error=str(exc))
            return cycles
        for record in stored:
            if record.started_at in seen or len(cycles) >= 10:
                continue
            cycles.append(
                {
                    "cycle_id": None,
                    "kind": "stored",
                    "started_at": record.started_at,
                    "finished_at": record.finished_at,
                    "duration_s": None,
                    "streams": record.streams,
                    "alive": record.alive,
                    "dead": record.dead,
                    "aborted": False,
                    "unfinished": record.finished_at is None,
                }
            )
        return cycles

    # --- /api/streams and /api/channels ---------------------------------------------

    def view(self) -> MonitorView:
        """The monitor's latest inventory and reorders (empty without a monitor)."""
        if self._monitor is None:
            return MonitorView(None, {}, {})
        return cast(MonitorView, self._monitor.ask(GetView(), timeout=ASK_TIMEOUT_S))

    def streams(self) -> dict[str, Any]:
        """Every stream with its latest result and its history.

        Built afresh when results came in since the last build, but while a
        cycle runs (results keep coming) at most every few seconds.
        """
        view = self.view()
        seen, running = self._freshness()
        key = (id(view.inventory), seen)
        now = time.monotonic()
        with self._lock:
            cached = self._streams_cache
            fresh = cached is not None and now - cached[1] < _STREAMS_CACHE_S
            if cached is not None and fresh and (cached[0] == key or running):
                return cached[2]
        built = self._build_streams(view)
        with self._lock:
            self._streams_cache = (key, now, built)
        return built

    def _freshness(self) -> tuple[int, bool]:
        """The monitor's count of results seen, and whether a cycle runs."""
        if self._monitor is None:
            return 0, False
        try:
            status = cast(dict[str, Any], self._monitor.ask(GetStatus(), timeout=ASK_TIMEOUT_S))
        except (pykka.Timeout, pykka.ActorDeadError):
            return -1, False
        return int(status.get("results_seen", 0)), status.get("progress") is not None

    def _recent(self) -> dict[int, StreamHistory]:
        if self._database is None:
            return {}
        try:
            # Full cycles check every stream once: the last ``history`` of them,
            # and a few more for one-channel checks in between.
            return read_histories(
                self._database, per_stream=self._history, cycles=self._history + 5
            )
        except StoreError as exc:
            logger.warning("dashboard_store_unreadable", error=str(exc))
            return {}

    def _build_streams(self, view: MonitorView) -> dict[str, Any]:
        inventory = view.inventory or Inventory((), ())
        recent = self._recent()
        accounts = {a.id: a.name for a in inventory.accounts}
        channels_of: dict[int, list[list[Any]]] = {}
        for channel in inventory.channels:
            for sid in dict.fromkeys(channel.stream_ids):
                channels_of.setdefault(sid, []).append([channel.id, channel.name])
        rows: list[dict[str, Any]] = []
        listed: set[int] = set()
        for stream in inventory.streams:
            listed.add(stream.id)
            rows.append(
                _stream_row(
                    stream.id,
                    stream.name,
                    stream.account_id,
                    accounts.get(stream.account_id),
                    display_url(stream.url),
                    channels_of.get(stream.id, []),
                    recent.get(stream.id),
                )
            )
        for sid, history in sorted(recent.items()):
            if sid not in listed and view.inventory is None:  # no cycle yet: history only
                rows.append(
                    _stream_row(sid, None, history.latest.account_id, None, "", [], history)
                )
        return {"history": self._history, "streams": rows}

    def channels(self) -> dict[str, Any]:
        """Each channel's streams in the source's order (the one written back, once
        written), and its last reorder: the planned order and what became of it."""
        view = self.view()
        inventory = view.inventory or Inventory((), ())
        names = {s.id: s.name for s in inventory.streams}
        rows = []
        for channel in inventory.channels:
            reorder = view.reorders.get(channel.id)
            order = list(view.orders.get(channel.id, channel.stream_ids))
            rows.append(
                {
                    "id": channel.id,
                    "name": channel.name,
                    "streams": [{"id": sid, "name": names.get(sid)} for sid in order],
                    "working": view.working.get(channel.id),
                    "last_reorder": dict(reorder) if reorder else None,
                }
            )
        return {"channels": rows}

    @staticmethod
    def _ask_quietly(ref: pykka.ActorRef[Any] | None, message: Any) -> Any:
        if ref is None:
            return None
        try:
            return ref.ask(message, block=False)
        except pykka.ActorDeadError:
            return None


def _answer(future: Any) -> Any:
    """A future's value, or ``None`` when there is none, it failed or it is late."""
    if future is None:
        return None
    try:
        return future.get(timeout=ASK_TIMEOUT_S)
    except (pykka.Timeout, pykka.ActorDeadError):
        return None


_LETTERS = {"ok": "o", "dead": "d", "error": "e"}


def _stream_row(
    stream_id: int,
    name: str | None,
    account_id: int,
    account: str | None,
    url: str,
    channels: list[list[Any]],
    history: StreamHistory | None,
) -> dict[str, Any]:
    """One stream of ``/api/streams``.

    ``history`` is a string of one letter per recent check, oldest first
    (``o`` ok, ``d`` dead, ``e`` error), and ``bitrates`` the bitrates of the
    same checks: compact, as 10,000 streams times 20 checks add up.
    """
    latest = history.latest if history else None
    points = list(reversed(history.points)) if history else []
    judged = [status for status, _rate in points if status in ("ok", "dead")]
    uptime = judged.count("ok") / len(judged) if judged else None
    bitrate = None
    if latest is not None and latest.bitrate_kbps is not None:
        bitrate = round(latest.bitrate_kbps)
    return {
        "id": stream_id,
        "name": name,
        "account_id": account_id,
        "account": account,
        "url": url,
        "channels": channels,
        "status": latest.status if latest else None,
        "reason": latest.error if latest else None,
        "resolution": latest.resolution if latest else None,
        "fps": latest.fps if latest else None,
        "video_codec": latest.video_codec if latest else None,
        "audio_codec": latest.audio_codec if latest else None,
        "bitrate_kbps": bitrate,
        "score": latest.score if latest else None,
        "last_checked": latest.finished_at if latest else None,
        "uptime": None if uptime is None else round(uptime, 3),
        "history": "".join(_LETTERS.get(status, "?") for status, _rate in points),
        "bitrates": [None if rate is None else round(rate) for _status, rate in points],
    }


class Controls:
    """What the dashboard's buttons do: start a cycle now, check one channel now.

    Each answers ``(http_code, body)``.

    Args:
        coordinator: gets the one-channel cycle.
        scheduler: gets ``RunNow`` (``None`` for ``once``: no cycle can be started).
        monitor: names the inventory, and hears that a cycle is a channel check.
        listeners: told the one-channel cycle's inventory, as for every cycle
            (the result sink, which then stores and reorders that channel).
    """

    def __init__(
        self,
        coordinator: pykka.ActorRef[Any],
        scheduler: pykka.ActorRef[Any] | None,
        monitor: pykka.ActorRef[Any],
        listeners: tuple[pykka.ActorRef[Any], ...],
    ) -> None:
        self._coordinator = coordinator
        self._scheduler = scheduler
        self._monitor = monitor
        self._listeners = listeners

    def _running_cycle(self) -> dict[str, Any] | None:
        status = cast(dict[str, Any], self._coordinator.ask(GetStatus(), timeout=ASK_TIMEOUT_S))
        return cast(dict[str, Any] | None, status.get("cycle"))

    def run_now(self) -> tuple[int, dict[str, Any]]:
        """Ask the scheduler for a cycle now."""
        if self._scheduler is None:
            return 409, {"error": "this daemon runs one cycle only (once): nothing to start"}
        running = self._running_cycle()
        if running is not None:
            return 409, {"error": f"cycle {running['cycle_id']} is running"}
        tell_quietly(self._scheduler, RunNow())
        logger.info("dashboard_cycle_requested")
        return 202, {"started": True}

    def check_channel(self, channel_id: int) -> tuple[int, dict[str, Any]]:
        """Check the streams of one channel now, as a small cycle of its own.

        Its id comes from the scheduler's counter, the one every cycle's id
        comes from (seeded from the database at start).
        """
        if self._scheduler is None:
            return 409, {"error": "this daemon runs one cycle only (once): nothing to start"}
        view = cast(MonitorView, self._monitor.ask(GetView(), timeout=ASK_TIMEOUT_S))
        inventory = view.inventory
        channel = None
        if inventory is not None:
            channel = next((c for c in inventory.channels if c.id == channel_id), None)
        if inventory is None or channel is None:
            return 404, {"error": f"no channel {channel_id} in the last inventory read"}
        running = self._running_cycle()
        if running is not None:
            return 409, {"error": f"cycle {running['cycle_id']} is running"}
        # As the source has it now (a reorder since the last full read moved it).
        channel = replace(
            channel, stream_ids=tuple(view.orders.get(channel.id, channel.stream_ids))
        )
        members = set(channel.stream_ids)
        streams = tuple(s for s in inventory.streams if s.id in members)
        if not streams:
            return 409, {"error": f"channel {channel_id} has no stream to check"}
        cycle_id = cast(int, self._scheduler.ask(TakeCycleId(), timeout=ASK_TIMEOUT_S))
        small = Inventory(accounts=inventory.accounts, streams=streams, channels=(channel,))
        tell_quietly(self._monitor, ManualCheck(cycle_id, channel_id))
        for listener in (self._monitor, *self._listeners):
            tell_quietly(listener, CycleInventory(cycle_id, small))
        tell_quietly(self._coordinator, CheckCycle(cycle_id, jobs_for(streams)))
        logger.info("dashboard_channel_check", channel_id=channel_id, cycle_id=cycle_id)
        return 202, {"cycle_id": cycle_id, "streams": len(streams)}
