"""A stand-in Dispatcharr on loopback with the real API's shapes.

Shapes follow ``reference/dispatcharr-api.md`` (checked against v0.29.0):
bare arrays for accounts and channels, DRF pages with absolute ``next`` URLs
for streams, SimpleJWT tokens with the real error bodies, the 3-a-minute
login throttle, API keys, and the proxy's status objects.

State lives in plain dicts (``accounts``, ``streams``, ``channels``,
``live_channels``, ``vod_connections``, ``timeshift_sessions``) that tests
may read and change directly; ``add_*`` helpers build realistic objects.

Hooks for tests:

- ``fail_next(route, count, status=500, skip=0)``: the next ``count`` calls of
  a route answer ``status`` (after letting ``skip`` calls through).
- ``malform_next(route, kind, count=1, skip=0)``: serve a broken body:
  ``"not_json"``, ``"missing_results"`` (a page without ``results``),
  ``"results_not_list"``, ``"wrong_shape"`` (an array for an object and an
  object for an array; a page becomes ``[]``, which is a valid bare array),
  ``"truncated"`` (JSON cut short).
- ``drop_next(route, count=1, skip=0, method=None, applied=False)``: close the
  connection without an answer, as a restarting server or a proxy does;
  ``applied=True`` handles the request first (the client cannot tell).
- ``on_channel_read``: called as ``callback(fake, channel_id)`` right after a
  channel was read (detail GET, and each channel of a list GET), to simulate
  a user editing between our read and our write.
- ``expire_access_tokens()`` / ``expire_refresh_tokens()``, or lifetimes on
  the fake's ``clock``.
- ``latency``: seconds every request takes before it is handled (0 by
  default), as a real Dispatcharr spends them in Django and its database;
  concurrent requests wait concurrently.
- ``hold(route, method=None)``: calls of a route wait inside the server until
  :meth:`release` (or :meth:`stop`); with :meth:`wait_in_flight` a test sees
  exactly how many requests a client keeps open at once.
- Records: ``calls`` (every request), ``logins`` / ``refreshes`` counts,
  ``stream_patches`` and ``channel_patches`` (id, body), ``in_flight`` (requests
  being handled now) and ``max_in_flight`` (the most at once so far).

The server (:mod:`tests.fakes.wsgi_server`) is threaded, one thread per
connection, and keeps connections alive as Dispatcharr behind a real server
does, so concurrent clients are served concurrently and a request costs no
new connection.

Route names: ``token``, ``refresh``, ``version``, ``accounts``, ``streams``,
``stream``, ``channels``, ``channel``, ``proxy_status``, ``proxy_stats``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlencode

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from tests.fakes.wsgi_server import KeepAliveWSGIServer

TOKEN_NOT_VALID = {
    "detail": "Given token not valid for any token type",
    "code": "token_not_valid",
    "messages": [
        {
            "token_class": "AccessToken",
            "token_type": "access",
            "message": "Token is invalid or expired",
        }
    ],
}
REFRESH_NOT_VALID = {"detail": "Token is invalid or expired", "code": "token_not_valid"}
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
BAD_LOGIN = {"detail": "No active account found with the given credentials"}

ROUTES = (
    "token",
    "refresh",
    "version",
    "accounts",
    "streams",
    "stream_ids",
    "stream",
    "channels",
    "channel",
    "proxy_status",
    "proxy_stats",
)
MALFORMED_KINDS = ("not_json", "missing_results", "results_not_list", "wrong_shape", "truncated")

_URLS = Map(
    [
        Rule("/api/accounts/token/", endpoint="token", methods=["POST"]),
        Rule("/api/accounts/token/refresh/", endpoint="refresh", methods=["POST"]),
        Rule("/api/core/version/", endpoint="version", methods=["GET"]),
        Rule("/api/m3u/accounts/", endpoint="accounts", methods=["GET"]),
        Rule("/api/channels/streams/", endpoint="streams", methods=["GET"]),
        Rule("/api/channels/streams/ids/", endpoint="stream_ids", methods=["GET"]),
        Rule("/api/channels/streams/<int:item>/", endpoint="stream", methods=["GET", "PATCH"]),
        Rule("/api/channels/channels/", endpoint="channels", methods=["GET"]),
        Rule("/api/channels/channels/<int:item>/", endpoint="channel", methods=["GET", "PATCH"]),
        Rule("/proxy/ts/status", endpoint="proxy_status", methods=["GET"]),
        Rule("/proxy/stats/", endpoint="proxy_stats", methods=["GET"]),
    ]
)
_NO_AUTH = frozenset({"token", "refresh", "version"})
_LOGIN_WINDOW_S = 60.0
_MAX_PAGE_SIZE = 10_000
_SHUTDOWN_POLL_S = 0.01
"""How soon ``stop()`` returns; the serving loop checks for shutdown this often."""
_HOLD_LIMIT_S = 30.0
"""A held request answers after this long at most, so no server thread hangs."""


@dataclass
class RecordedCall:
    """One request the fake received."""

    method: str
    path: str
    query: str
    route: str
    auth: str
    """``"jwt"``, ``"api_key"``, ``"none"`` or ``"invalid"``."""


@dataclass
class _Fault:
    route: str
    count: int
    skip: int
    status: int = 500
    kind: str = ""
    method: str | None = None
    drop: str = ""
    """``"before"`` or ``"after"`` handling the request: close without an answer."""


@dataclass
class _Reply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class FakeDispatcharr:
    """A Dispatcharr on ``127.0.0.1`` for tests; :meth:`start` it, :meth:`stop` it.

    Args:
        username: The admin login accepted by ``/api/accounts/token/``.
        password: Its password.
        api_key: The accepted ``X-API-Key``.
        access_lifetime: Seconds an access token is valid (Dispatcharr: 30 min).
        refresh_lifetime: Seconds a refresh token is valid (Dispatcharr: 1 day).
        login_limit: Logins a minute (failed ones count), then 429.
        public_url: Scheme and host put in ``next`` links, like Dispatcharr does
            with the Host it was reached by; a different loopback host than the
            one clients use, so a client must take only path and query.
        stats_available: ``False`` makes ``/proxy/stats/`` 404 (before v0.28).
        clock: Seconds for token lifetimes and the login throttle.
    """

    def __init__(
        self,
        *,
        username: str = "admin",
        password: str = "secret-pass",
        api_key: str = "fake-api-key-0123456789",
        access_lifetime: float = 30 * 60.0,
        refresh_lifetime: float = 24 * 3600.0,
        login_limit: int = 3,
        public_url: str | None = "http://localhost:1",
        stats_available: bool = True,
        version: str = "0.29.0",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.username = username
        self.password = password
        self.api_key = api_key
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.login_limit = login_limit
        self.public_url = public_url
        self.stats_available = stats_available
        self.version = version
        self.clock = clock
        self.accounts: dict[int, dict[str, Any]] = {}
        self.streams: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.hidden_channels: set[int] = set()
        self.live_channels: list[dict[str, Any]] = []
        self.vod_connections: list[dict[str, Any]] = []
        self.unstable_name_order = False
        """Order stream pages as Dispatcharr does (by name, descending) with streams of
        one name in another order at each page read, as PostgreSQL may."""
        self._page_reads = 0
        self.timeshift_sessions: list[dict[str, Any]] = []
        self.on_channel_read: Callable[[FakeDispatcharr, int], None] | None = None
        self.calls: list[RecordedCall] = []
        self.logins = 0
        self.refreshes = 0
        self.stream_patches: list[tuple[int, dict[str, Any]]] = []
        self.channel_patches: list[tuple[int, dict[str, Any]]] = []
        self._access: dict[str, float] = {}
        self._refresh: dict[str, float] = {}
        self._login_times: deque[float] = deque()
        self._faults: list[_Fault] = []
        self.latency = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self._holds: set[tuple[str, str | None]] = set()
        self._released = threading.Event()
        self._lock = threading.RLock()
        self._flight = threading.Condition(self._lock)
        self._server: KeepAliveWSGIServer | None = None

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> FakeDispatcharr:
        """Listen on a free loopback port and serve in background threads (keep-alive)."""
        self._server = KeepAliveWSGIServer("127.0.0.1", 0, self._wsgi)
        self._server.start("fake-dispatcharr", poll_interval=_SHUTDOWN_POLL_S)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and the socket; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self.release()
        server.stop()

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far; clients keep theirs alive."""
        assert self._server is not None, "FakeDispatcharr is not started"
        return self._server.connections_opened

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        assert self._server is not None, "FakeDispatcharr is not started"
        return f"http://127.0.0.1:{self._server.port}"

    # --- state builders -------------------------------------------------------------

    def add_account(
        self,
        account_id: int,
        name: str,
        *,
        max_streams: int = 1,
        account_type: str = "STD",
        server_url: str | None = None,
        username: str = "",
        password: str = "",
        is_active: bool = True,
        locked: bool = False,
        default_profile_id: int | None = None,
        user_agent: int | None = 1,
    ) -> dict[str, Any]:
        """An account with its automatic default profile (``^(.*)$`` → ``$1``)."""
        account = {
            "id": account_id,
            "name": name,
            "server_url": server_url,
            "file_path": None,
            "server_group": None,
            "max_streams": max_streams,
            "is_active": is_active,
            "created_at": "2026-08-01T10:00:00Z",
            "updated_at": "2026-08-19T04:00:00Z",
            "filters": [],
            "user_agent": user_agent,
            "profiles": [],
            "locked": locked,
            "channel_groups": [],
            "refresh_interval": 24,
            "cron_expression": "",
            "custom_properties": {},
            "account_type": account_type,
            "username": username,
            "password": password,
            "stale_stream_days": 7,
            "priority": 0,
            "status": "success",
            "last_message": "",
            "enable_vod": False,
            "earliest_expiration": None,
            "all_expirations": [],
            "exp_date": None,
            "auto_enable_new_groups_live": True,
            "auto_enable_new_groups_vod": True,
            "auto_enable_new_groups_series": True,
        }
        with self._lock:
            self.accounts[account_id] = account
            self.add_profile(
                account_id,
                default_profile_id if default_profile_id is not None else account_id * 100,
                f"{name} Default",
                max_streams=max_streams,
                is_default=True,
            )
        return account

    def add_profile(
        self,
        account_id: int,
        profile_id: int,
        name: str,
        *,
        max_streams: int = 1,
        is_default: bool = False,
        is_active: bool = True,
        search_pattern: str = "^(.*)$",
        replace_pattern: str = "$1",
    ) -> dict[str, Any]:
        """Another profile (login) of an account."""
        with self._lock:
            account = self.accounts[account_id]
            profile = {
                "id": profile_id,
                "name": name,
                "max_streams": max_streams,
                "is_active": is_active,
                "is_default": is_default,
                "current_viewers": 0,
                "search_pattern": search_pattern,
                "replace_pattern": replace_pattern,
                "custom_properties": {},
                "exp_date": None,
                "account": {
                    "id": account_id,
                    "name": account["name"],
                    "account_type": account["account_type"],
                    "is_xtream_codes": account["account_type"] == "XC",
                },
            }
            account["profiles"].append(profile)
        return profile

    def add_stream(
        self,
        stream_id: int,
        name: str,
        account_id: int | None,
        url: str,
        *,
        provider_stream_id: int | None = None,
        channel_group: int | None = None,
        stream_stats: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A stream of an account (``account_id=None`` for one without)."""
        stream = {
            "id": stream_id,
            "name": name,
            "url": url,
            "m3u_account": account_id,
            "logo_url": None,
            "tvg_id": f"tvg.{stream_id}",
            "local_file": None,
            "current_viewers": 0,
            "updated_at": "2026-08-19T04:00:00Z",
            "last_seen": "2026-08-19T04:00:00Z",
            "is_stale": False,
            "is_adult": False,
            "stream_profile_id": None,
            "is_custom": False,
            "channel_group": channel_group,
            "stream_hash": secrets.token_hex(16),
            "stream_stats": stream_stats,
            "stream_stats_updated_at": "2026-08-19T20:11:05.123456Z" if stream_stats else None,
            "stream_id": provider_stream_id,
            "stream_chno": None,
            "is_catchup": False,
            "catchup_days": 0,
        }
        with self._lock:
            self.streams[stream_id] = stream
        return stream

    def add_channel(
        self,
        channel_id: int,
        name: str,
        stream_ids: Iterable[int],
        *,
        channel_group_id: int | None = None,
        hidden: bool = False,
        uuid: str | None = None,
    ) -> dict[str, Any]:
        """A channel whose ``streams`` are the given ids, in failover order."""
        channel = {
            "id": channel_id,
            "channel_number": float(channel_id),
            "name": name,
            "channel_group_id": channel_group_id,
            "tvg_id": None,
            "tvc_guide_stationid": None,
            "epg_data_id": None,
            "streams": list(stream_ids),
            "stream_profile_id": None,
            "uuid": uuid or f"6f1c2a8e-3b5d-4c1e-9a7f-{channel_id:012d}",
            "logo_id": None,
            "user_level": 0,
            "is_adult": False,
            "is_catchup": False,
            "catchup_days": 0,
            "hidden_from_output": False,
            "auto_created": False,
            "auto_created_by": None,
            "auto_created_by_name": None,
            "effective_name": name,
        }
        with self._lock:
            self.channels[channel_id] = channel
            if hidden:
                self.hidden_channels.add(channel_id)
        return channel

    def add_live_channel(
        self,
        channel_uuid: str,
        *,
        m3u_profile_id: int | None,
        stream_id: int | None = None,
        state: str = "active",
        client_count: int = 1,
        url: str = "http://127.0.0.1:9/live/u1/pass1/1.ts",
    ) -> dict[str, Any]:
        """A running channel in ``/proxy/ts/status`` (optional keys only when given)."""
        entry: dict[str, Any] = {
            "channel_id": channel_uuid,
            "state": state,
            "url": url,
            "stream_profile": "1",
            "owner": "worker-host:1234",
            "buffer_index": 5120,
            "client_count": client_count,
            "uptime": 812.4,
            "started_at": 1755700000.1,
            "channel_name": "Live channel",
            "total_bytes": 503316480,
            "avg_bitrate_kbps": 4950.2,
            "avg_bitrate": "4.95 Mbps",
            "clients": [
                {
                    "client_id": f"client_1755700001_{n}",
                    "user_agent": "VLC/3.0.20",
                    "output_format": "mpegts",
                    "ip_address": "127.0.0.1",
                    "connected_at": 1755700001.5,
                    "user_id": "1",
                    "output_profile_id": None,
                }
                for n in range(min(client_count, 10))
            ],
        }
        if m3u_profile_id is not None:
            entry["m3u_profile_id"] = m3u_profile_id
        if stream_id is not None:
            entry["stream_id"] = stream_id
            entry["stream_name"] = f"stream {stream_id}"
        if state == "active":
            entry["healthy"] = True
        with self._lock:
            self.live_channels.append(entry)
        return entry

    def add_vod_connection(self, m3u_profile_id: int | None) -> None:
        """A VOD session holding a slot on a profile (``/proxy/stats/`` only).

        As Dispatcharr's ``build_vod_stats_data`` shapes it: one entry per film,
        its sessions inside, the profile id as Redis keeps it (a string).
        """
        connection: dict[str, Any] = {"client_id": f"vod_{len(self.vod_connections)}"}
        if m3u_profile_id is not None:
            connection["m3u_profile_id"] = str(m3u_profile_id)
        entry: dict[str, Any] = {
            "content_type": "movie",
            "content_name": "A film",
            "connection_count": 1,
            "connections": [connection],
        }
        with self._lock:
            self.vod_connections.append(entry)

    def add_timeshift_session(self, m3u_profile_id: int | None) -> None:
        """A catch-up session holding a slot on a profile (``/proxy/stats/`` only)."""
        entry: dict[str, Any] = {"channel_name": "Catch-up", "started_at": 1755700000.0}
        if m3u_profile_id is not None:
            entry["m3u_profile_id"] = m3u_profile_id
        with self._lock:
            self.timeshift_sessions.append(entry)

    def seed_sample(self) -> None:
        """The reference's example data, plus a second account and the custom one.

        Accounts: 3 ``ProviderA`` (XC, max 2, profiles 5 default and 9 "Second
        login" max 1 rewriting ``/u1/pass1/`` to ``/u2/pass2/``), 4 ``ProviderB``
        (STD, max 1, profile 400), 1 ``custom`` (locked, unlimited, profile 100).
        Streams 812, 977 (account 3), 1033 (account 4), 2001 (custom).
        Channels 42 ``BBC One`` [812, 977, 1033] and 43 ``News`` [2001].
        """
        server = "http://127.0.0.1:9"
        self.add_account(
            3,
            "ProviderA",
            max_streams=2,
            account_type="XC",
            server_url=f"{server}",
            username="u1",
            password="pass1",
            default_profile_id=5,
        )
        self.add_profile(
            3,
            9,
            "Second login",
            max_streams=1,
            search_pattern="/u1/pass1/",
            replace_pattern="/u2/pass2/",
        )
        self.add_account(4, "ProviderB", max_streams=1, server_url=server, default_profile_id=400)
        self.add_account(
            1, "custom", max_streams=0, locked=True, default_profile_id=100, user_agent=None
        )
        stats = {
            "resolution": "1920x1080",
            "source_fps": 25.0,
            "video_codec": "h264",
            "video_bitrate": 4800.0,
            "audio_codec": "aac",
            "audio_channels": "stereo",
            "sample_rate": 48000,
            "audio_bitrate": 128.0,
            "pixel_format": "yuv420p",
            "stream_type": "mpegts",
            "ffmpeg_output_bitrate": 5012.3,
        }
        self.add_stream(
            812,
            "BBC One HD",
            3,
            f"{server}/live/u1/pass1/12345.ts",
            provider_stream_id=12345,
            channel_group=14,
            stream_stats=stats,
        )
        self.add_stream(
            977, "BBC One", 3, f"{server}/live/u1/pass1/12346.ts", provider_stream_id=12346
        )
        self.add_stream(1033, "BBC 1", 4, f"{server}/b/bbc1.m3u8", channel_group=14)
        self.add_stream(2001, "My news", 1, f"{server}/custom/news.ts")
        self.add_channel(
            42,
            "BBC One",
            [812, 977, 1033],
            channel_group_id=14,
            uuid="6f1c2a8e-3b5d-4c1e-9a7f-1d2e3f4a5b6c",
        )
        self.add_channel(43, "News", [2001], channel_group_id=15)

    # --- test hooks -----------------------------------------------------------------

    def fail_next(self, route: str, count: int = 1, *, status: int = 500, skip: int = 0) -> None:
        """Answer the next ``count`` calls of ``route`` with ``status`` (after ``skip``)."""
        self._check_route(route)
        with self._lock:
            self._faults.append(_Fault(route, count, skip, status=status))

    def malform_next(self, route: str, kind: str, count: int = 1, *, skip: int = 0) -> None:
        """Serve a broken 200 body for the next ``count`` calls of ``route``."""
        self._check_route(route)
        if kind not in MALFORMED_KINDS:
            message = f"unknown malformation {kind!r}; one of {MALFORMED_KINDS}"
            raise ValueError(message)
        with self._lock:
            self._faults.append(_Fault(route, count, skip, kind=kind))

    def drop_next(
        self,
        route: str,
        count: int = 1,
        *,
        skip: int = 0,
        method: str | None = None,
        applied: bool = False,
    ) -> None:
        """Close the connection instead of answering the next ``count`` calls of ``route``.

        Args:
            route: One of :data:`ROUTES`.
            count: How many calls to drop.
            skip: Calls let through first.
            method: Only calls of this method (e.g. ``"PATCH"``) count.
            applied: Handle the request before dropping (a write lands, the
                answer is lost); else drop before anything happens.
        """
        self._check_route(route)
        drop = "after" if applied else "before"
        with self._lock:
            self._faults.append(_Fault(route, count, skip, method=method, drop=drop))

    def hold(self, route: str, method: str | None = None) -> None:
        """Keep calls of ``route`` (of ``method`` only, if given) waiting until :meth:`release`."""
        self._check_route(route)
        with self._lock:
            self._released.clear()
            self._holds.add((route, method))

    def release(self) -> None:
        """Let every held call, and every later one, through."""
        with self._lock:
            self._holds.clear()
            self._released.set()

    def wait_in_flight(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` requests are being handled at once."""
        with self._flight:
            return self._flight.wait_for(lambda: self.in_flight >= count, timeout)

    def expire_access_tokens(self) -> None:
        """Every issued access token now answers 401 ``token_not_valid``."""
        with self._lock:
            self._access.clear()

    def expire_refresh_tokens(self) -> None:
        """Every refresh token is refused; the client must log in again."""
        with self._lock:
            self._refresh.clear()

    def set_channel_streams(self, channel_id: int, stream_ids: Iterable[int]) -> None:
        """Change a channel's membership, as a user in the UI would."""
        with self._lock:
            self.channels[channel_id]["streams"] = list(stream_ids)

    def count(self, route: str, method: str | None = None) -> int:
        """How many calls ``route`` received (optionally of one method)."""
        with self._lock:
            return sum(
                1
                for call in self.calls
                if call.route == route and (method is None or call.method == method)
            )

    @staticmethod
    def _check_route(route: str) -> None:
        if route not in ROUTES:
            message = f"unknown route {route!r}; one of {ROUTES}"
            raise ValueError(message)

    # --- WSGI -----------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._flight:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._flight.notify_all()
        try:
            if self.latency > 0:
                time.sleep(self.latency)
            response = self._dispatch(request)
        finally:
            with self._flight:
                self.in_flight -= 1
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        matched = _match(request)
        if isinstance(matched, Response):
            return matched
        route, args = matched
        auth = self._auth_kind(request)
        with self._lock:
            self.calls.append(
                RecordedCall(
                    request.method, request.path, request.query_string.decode(), route, auth
                )
            )
            fault = self._take_fault(route, request.method)
            held = (route, None) in self._holds or (route, request.method) in self._holds
        if held:
            self._released.wait(_HOLD_LIMIT_S)
        if fault is not None and fault.drop == "before":
            _drop_connection(request)
        if fault is not None and not fault.kind and not fault.drop:
            return _json(fault.status, {"detail": f"Injected HTTP {fault.status}"})
        if route not in _NO_AUTH and auth not in ("jwt", "api_key"):
            return _json(401, NO_CREDENTIALS if auth == "none" else TOKEN_NOT_VALID)
        if route == "proxy_stats" and not self.stats_available:
            return _html_not_found()
        reply: _Reply = getattr(self, f"_route_{route}")(request, **args)
        if fault is not None and fault.drop:
            _drop_connection(request)
        if fault is not None and reply.status == 200:
            return _malformed(fault.kind, reply.body)
        response = _json(reply.status, reply.body)
        response.headers.update(reply.headers)
        return response

    def _take_fault(self, route: str, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.route != route or fault.method not in (None, method):
                continue
            if fault.skip > 0:
                fault.skip -= 1
                return None
            fault.count -= 1
            if fault.count <= 0:
                self._faults.remove(fault)
            return fault
        return None

    def _auth_kind(self, request: Request) -> str:
        key = request.headers.get("X-API-Key")
        header = request.headers.get("Authorization", "")
        if header.startswith("ApiKey "):
            key = header.removeprefix("ApiKey ")
        if key is not None:
            return "api_key" if secrets.compare_digest(key, self.api_key) else "invalid"
        if not header.startswith("Bearer "):
            return "none"
        token = header.removeprefix("Bearer ")
        with self._lock:
            issued = self._access.get(token)
            valid = issued is not None and self.clock() - issued < self.access_lifetime
        return "jwt" if valid else "invalid"

    # --- routes ---------------------------------------------------------------------

    def _route_token(self, request: Request) -> _Reply:
        now = self.clock()
        with self._lock:
            while self._login_times and now - self._login_times[0] >= _LOGIN_WINDOW_S:
                self._login_times.popleft()
            if len(self._login_times) >= self.login_limit:
                wait = int(_LOGIN_WINDOW_S - (now - self._login_times[0])) + 1
                detail = f"Request was throttled. Expected available in {wait} seconds."
                return _Reply({"detail": detail}, 429, {"Retry-After": str(wait)})
            self._login_times.append(now)
            body = request.get_json(silent=True) or {}
            if body.get("username") != self.username or body.get("password") != self.password:
                return _Reply(BAD_LOGIN, 401)
            self.logins += 1
            access, refresh = _token("access"), _token("refresh")
            self._access[access] = now
            self._refresh[refresh] = now
        return _Reply({"refresh": refresh, "access": access})

    def _route_refresh(self, request: Request) -> _Reply:
        body = request.get_json(silent=True) or {}
        token = body.get("refresh")
        if not isinstance(token, str):
            return _Reply({"refresh": ["This field is required."]}, 400)
        now = self.clock()
        with self._lock:
            issued = self._refresh.get(token)
            if issued is None or now - issued >= self.refresh_lifetime:
                return _Reply(REFRESH_NOT_VALID, 401)
            self.refreshes += 1
            access = _token("access")
            self._access[access] = now
        return _Reply({"access": access})

    def _route_version(self, request: Request) -> _Reply:
        return _Reply({"version": self.version, "timestamp": None})

    def _route_accounts(self, request: Request) -> _Reply:
        with self._lock:
            return _Reply(copy.deepcopy(list(self.accounts.values())))

    def _active_account(self, stream: dict[str, Any]) -> bool:
        account = self.accounts.get(stream["m3u_account"])
        return account is not None and bool(account["is_active"])

    def _route_streams(self, request: Request) -> _Reply:
        with self._lock:
            rows = [s for s in self.streams.values() if self._active_account(s)]
            ids = request.args.get("ids")
            if ids is not None:
                wanted = {int(x) for x in ids.split(",") if x.strip().isdigit()}
                found = [copy.deepcopy(s) for s in rows if s["id"] in wanted]
                if not found:
                    return _Reply({"detail": "No streams found for the given IDs."}, 404)
                return _Reply(found)
            rows = self._filtered(request, rows)
            if self.unstable_name_order:
                # Dispatcharr orders by -name only: on PostgreSQL streams of one
                # name may come in another order at each page's query.
                self._page_reads += 1
                turn = self._page_reads
                rows.sort(key=lambda s: (s["id"] * 7919 + turn * 104729) % 1009)
                rows.sort(key=lambda s: s["name"], reverse=True)
            else:
                rows.sort(key=lambda s: s["id"])
            rows = copy.deepcopy(rows)
        return self._page(request, rows, default_size=50)

    def _route_stream_ids(self, request: Request) -> _Reply:
        with self._lock:
            active = [s for s in self.streams.values() if self._active_account(s)]
            rows = self._filtered(request, active)
            return _Reply(sorted(s["id"] for s in rows))

    @staticmethod
    def _filtered(request: Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        accounts = request.args.get("m3u_account")
        if accounts:
            chosen = {int(x) for x in accounts.split(",") if x.strip().isdigit()}
            rows = [s for s in rows if s["m3u_account"] in chosen]
        return list(rows)

    def _page(self, request: Request, rows: list[Any], *, default_size: int) -> _Reply:
        try:
            page = int(request.args.get("page", "1"))
            size = min(int(request.args.get("page_size", str(default_size))), _MAX_PAGE_SIZE)
        except ValueError:
            return _Reply({"detail": "Invalid page."}, 404)
        pages = max(1, -(-len(rows) // size)) if size > 0 else 1
        if page < 1 or page > pages or size < 1:
            return _Reply({"detail": "Invalid page."}, 404)
        base = self.public_url or request.host_url.rstrip("/")

        def link(number: int) -> str | None:
            if number < 1 or number > pages:
                return None
            args = request.args.copy()
            args["page"] = str(number)
            return f"{base}{request.path}?{urlencode(list(args.items(multi=True)))}"

        chunk = rows[(page - 1) * size : page * size]
        body: dict[str, Any] = {
            "count": len(rows),
            "next": link(page + 1),
            "previous": link(page - 1),
            "results": chunk,
        }
        return _Reply(body)

    def _route_stream(self, request: Request, item: int) -> _Reply:
        with self._lock:
            stream = self.streams.get(item)
            if stream is None:
                return _Reply({"detail": "No Stream matches the given query."}, 404)
            if request.method == "PATCH":
                body = request.get_json(silent=True)
                if not isinstance(body, dict):
                    return _Reply({"non_field_errors": ["Invalid data."]}, 400)
                stats = body.get("stream_stats", stream["stream_stats"])
                if stats is not None and not isinstance(stats, dict):
                    return _Reply({"stream_stats": ["Value must be valid JSON."]}, 400)
                self.stream_patches.append((item, copy.deepcopy(body)))
                if "stream_stats" in body:
                    stream["stream_stats"] = copy.deepcopy(stats)
                if "stream_stats_updated_at" in body:
                    stream["stream_stats_updated_at"] = body["stream_stats_updated_at"]
            return _Reply(copy.deepcopy(stream))

    def _channel_view(self, channel: dict[str, Any], include_streams: bool) -> dict[str, Any]:
        view = copy.deepcopy(channel)
        if include_streams:
            view["streams"] = [
                copy.deepcopy(self.streams[sid])
                for sid in channel["streams"]
                if sid in self.streams
            ]
        return view

    def _route_channels(self, request: Request) -> _Reply:
        visibility = request.args.get("visibility_filter", "active")
        include = request.args.get("include_streams") == "true"
        with self._lock:
            rows = [
                self._channel_view(c, include)
                for c in sorted(self.channels.values(), key=lambda c: c["id"])
                if visibility == "all"
                or (c["id"] in self.hidden_channels) == (visibility == "hidden")
            ]
        self._notify_read([row["id"] for row in rows])
        if "page" in request.args or "page_size" in request.args:
            reply = self._page(request, rows, default_size=50)
            if reply.status == 200:
                reply.body["has_unassigned_epg_channels"] = False
            return reply
        return _Reply(rows)

    def _route_channel(self, request: Request, item: int) -> _Reply:
        with self._lock:
            channel = self.channels.get(item)
            if channel is None:
                return _Reply({"detail": "No Channel matches the given query."}, 404)
            if request.method == "PATCH":
                error = self._patch_channel(item, channel, request.get_json(silent=True))
                if error is not None:
                    return error
                return _Reply(self._channel_view(channel, False))
            view = self._channel_view(channel, False)
        self._notify_read([item])
        return _Reply(view)

    def _patch_channel(self, item: int, channel: dict[str, Any], body: object) -> _Reply | None:
        if not isinstance(body, dict):
            return _Reply({"non_field_errors": ["Invalid data."]}, 400)
        if "streams" in body:
            streams = body["streams"]
            if not isinstance(streams, list):
                return _Reply({"streams": ['Expected a list of items but got type "dict".']}, 400)
            for sid in streams:
                if not isinstance(sid, int) or sid not in self.streams:
                    return _Reply(
                        {"streams": [f'Invalid pk "{sid}" - object does not exist.']}, 400
                    )
        self.channel_patches.append((item, copy.deepcopy(body)))
        for key, value in body.items():
            if key not in ("id", "uuid"):
                channel[key] = copy.deepcopy(value)
        return None

    def _notify_read(self, channel_ids: list[int]) -> None:
        callback = self.on_channel_read
        if callback is None:
            return
        for channel_id in channel_ids:
            callback(self, channel_id)

    def _status_body(self) -> dict[str, Any]:
        with self._lock:
            channels = copy.deepcopy(self.live_channels)
        return {"count": len(channels), "channels": channels}

    def _route_proxy_status(self, request: Request) -> _Reply:
        return _Reply(self._status_body())

    def _route_proxy_stats(self, request: Request) -> _Reply:
        with self._lock:
            vod = copy.deepcopy(self.vod_connections)
            catchup = copy.deepcopy(self.timeshift_sessions)
        return _Reply(
            {
                "live": self._status_body(),
                "vod": {"vod_connections": vod, "total_connections": len(vod)},
                "catchup": {"timeshift_sessions": catchup, "total_sessions": len(catchup)},
                "timestamp": 1755700812.4,
            }
        )


def _match(request: Request) -> tuple[str, dict[str, Any]] | Response:
    """The route name and its arguments, or the error answer Django would give."""
    adapter = _URLS.bind_to_environ(request.environ)
    try:
        route, args = adapter.match()
    except RequestRedirect:
        return _json(404, {"detail": "Not found (trailing slash matters)."})
    except MethodNotAllowed:
        return _json(405, {"detail": f'Method "{request.method}" not allowed.'})
    except NotFound:
        return _html_not_found()
    except HTTPException as exc:  # pragma: no cover - werkzeug's other routing errors
        return _json(exc.code or 500, {"detail": str(exc)})
    return str(route), dict(args)


def _drop_connection(request: Request) -> NoReturn:
    """Close the client's connection at once; the server ends it without an answer."""
    connection: socket.socket = request.environ["fake.socket"]
    with contextlib.suppress(OSError):  # the client may have gone already
        connection.shutdown(socket.SHUT_RDWR)
    message = "dropped by the stand-in"
    raise ConnectionAbortedError(message)


def _html_not_found() -> Response:
    return Response("<h1>Not Found</h1>", status=404, mimetype="text/html")


def _token(kind: str) -> str:
    """An opaque token shaped like a JWT (three dot-separated parts)."""
    return f"eyJhbGciOiJIUzI1NiJ9.{kind}-{secrets.token_hex(12)}.{secrets.token_hex(8)}"


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _malformed(kind: str, body: Any) -> Response:
    if kind == "not_json":
        return Response("<html><body>Server Error</body></html>", 200, mimetype="text/html")
    if kind == "truncated":
        return Response(json.dumps(body)[:-7], 200, mimetype="application/json")
    if kind == "missing_results":
        broken = dict(body) if isinstance(body, dict) else {"count": len(body), "next": None}
        broken.pop("results", None)
        return _json(200, broken)
    if kind == "results_not_list":
        broken = dict(body) if isinstance(body, dict) else {"count": len(body), "next": None}
        broken["results"] = {"detail": "unexpected"}
        return _json(200, broken)
    # wrong_shape: an object where an array belongs, an array where an object does
    return _json(200, [] if isinstance(body, dict) else {"detail": "unexpected"})
