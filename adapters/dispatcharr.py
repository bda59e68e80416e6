"""HTTP client for Dispatcharr's REST API and its live proxy status.

The client speaks the shapes in ``reference/dispatcharr-api.md``: bare arrays
for accounts and channels, DRF page objects for streams, and the proxy's
status objects. It checks only the outer shape of each answer (an array, an
object, a page with ``results``); the fields inside are validated by the
parsers in :mod:`adapters.dispatcharr_source`.

Authentication is an API key (``X-API-Key``) when one is given, else a JWT
pair from ``POST /api/accounts/token/``. Dispatcharr throttles logins to three
a minute per address, counting failed ones, so the pair is cached: the access
token is refreshed when it is about 25 minutes old (it lives 30) or when a call
answers 401, and the client logs in again only when the refresh token is
refused, at most once per call. A throttled login raises at once and blocks
further logins until Dispatcharr's ``Retry-After``; there is no login loop.

Transport faults are retried by urllib3 on the session: a failed connect on
any method; a connection dropped (or a read timed out) after the request was
sent, once, on idempotent methods, which here include a stream's PATCH, since
it sets a whole value (its ``stream_stats``) and sending it twice lands the
same (a channel's PATCH is not sent again after a read error: see
:class:`_CappedRetry`); and
500/502/503/504 on GET, HEAD, PUT, DELETE, ... with exponential backoff. 500
is retried too because Dispatcharr answers it for transient database and
Redis hiccups. PATCH is not retried on a status (the answer says the server
looked at it, and a second try rarely changes its mind), and POST (the login,
which counts against the throttle) is never retried. Every request carries an
explicit timeout.

Every problem surfaces as a :class:`DispatcharrError`; a response of the wrong
shape is a :class:`DispatcharrBadResponse` naming the endpoint and the field,
never a ``KeyError`` deep in a caller. Tokens, passwords and the API key are
never logged.

A client may be shared between threads (token renewal is serialised by a
lock), but one client per actor keeps connection pools independent.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urljoin, urlsplit

import requests
import structlog
from requests.adapters import HTTPAdapter
from urllib3 import BaseHTTPResponse
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from adapters.schema import InputError, Problem, json_kind
from domain.urls import redact_url

log = structlog.get_logger(__name__)

JsonObject = dict[str, Any]
"""One JSON object of a response."""

TOKEN_PATH: Final = "/api/accounts/token/"  # noqa: S105 - a path, not a secret
REFRESH_PATH: Final = "/api/accounts/token/refresh/"
VERSION_PATH: Final = "/api/core/version/"
ACCOUNTS_PATH: Final = "/api/m3u/accounts/"
STREAMS_PATH: Final = "/api/channels/streams/"
STREAM_IDS_PATH: Final = "/api/channels/streams/ids/"
_IDS_PER_CALL = 200
"""Stream ids asked for in one ``?ids=`` (the query string stays short)."""
CHANNELS_PATH: Final = "/api/channels/channels/"
PROXY_STATUS_PATH: Final = "/proxy/ts/status"
"""No trailing slash: the proxy's routes are not DRF routes."""
PROXY_STATS_PATH: Final = "/proxy/stats/"

DEFAULT_TIMEOUT_S: Final = 10.0
DEFAULT_PAGE_SIZE: Final = 1000
DEFAULT_MAX_CONNECTIONS: Final = 10
DEFAULT_WRITE_CONCURRENCY: Final = 4
"""Requests to Dispatcharr at once while writing back (``dispatcharr.write_concurrency``)."""
MAX_WRITE_CONCURRENCY: Final = 16
"""More requests at once than this only make a small Dispatcharr slower."""
TOKEN_MAX_AGE_S: Final = 25 * 60.0
"""Refresh the access token before it is this old; Dispatcharr's live 30 minutes."""
RETRY_STATUSES: Final = (500, 502, 503, 504)
RETRY_METHODS: Final = Retry.DEFAULT_ALLOWED_METHODS | {"PATCH"}
"""Sent again after a dropped connection: idempotent, PATCH included (see above)."""
_NO_STATUS_RETRY: Final = frozenset({"PATCH"})
_LOGIN_BLOCK_DEFAULT_S = 60.0
_MAX_RETRY_AFTER_S = 30.0
_MAX_PAGES = 10_000
_DETAIL_CHARS = 200
_THROTTLE_SECONDS = re.compile(r"(\d+)\s*seconds?")
_PAGE_KEYS = frozenset({"count", "next", "previous"})


class DispatcharrError(Exception):
    """Anything that went wrong talking to Dispatcharr."""


class DispatcharrUnavailable(DispatcharrError):
    """Dispatcharr cannot be reached, timed out, or kept answering 5xx after retries.

    Attributes:
        endpoint: The path that was called.
        status: The last HTTP status, or ``None`` when no answer came.
    """

    def __init__(self, endpoint: str, status: int | None, detail: str) -> None:
        self.endpoint = endpoint
        self.status = status
        super().__init__(f"{endpoint}: Dispatcharr unavailable: {detail}")


class DispatcharrAuthError(DispatcharrError):
    """Login refused or throttled, a token refused after renewal, or access forbidden."""


class DispatcharrHTTPError(DispatcharrError):
    """A 4xx answer other than an authentication problem (e.g. 400 on a PATCH).

    Attributes:
        endpoint: The path that was called.
        status: The HTTP status.
        detail: Dispatcharr's explanation, shortened.
    """

    def __init__(self, endpoint: str, status: int, detail: str) -> None:
        self.endpoint = endpoint
        self.status = status
        self.detail = detail
        super().__init__(f"{endpoint}: HTTP {status}: {detail}")


class DispatcharrNotFound(DispatcharrHTTPError):
    """404: no such object, no such page, or an endpoint this version lacks."""


class DispatcharrBadResponse(DispatcharrError, InputError):
    """An answer of the wrong shape: not JSON, a list for an object, a missing field.

    An :class:`~adapters.schema.InputError` whose source is the endpoint, and a
    :class:`DispatcharrError` like every other failure of a call.

    Attributes:
        endpoint: The path whose answer is wrong, e.g. ``/api/channels/streams/``.
        field: Where in the answer (the first problem), e.g. ``page 2.results``
            or ``[3].profiles[0].id``; ``""`` for the whole body.
        detail: What is wrong with it (the first problem).
        problems: Every problem found in the answer.
    """

    def __init__(
        self, endpoint: str, field: str = "", detail: str = "", *, problems: Sequence[Problem] = ()
    ) -> None:
        self.endpoint = endpoint
        InputError.__init__(self, endpoint, problems or [Problem(field, detail)])

    @classmethod
    def of(cls, endpoint: str, problems: Sequence[Problem]) -> DispatcharrBadResponse:
        """The error for every problem found in one answer."""
        return cls(endpoint, problems=problems)


class _CappedRetry(Retry):
    """urllib3's retry; ``Retry-After`` never stalls a call for long, no PATCH on a status.

    A channel PATCH is not sent again after a read error either (the request may
    have arrived): its ``streams`` list is a whole membership read just before,
    and sent again seconds later it could drop a stream added meanwhile.
    """

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if (
            error is not None
            and (method or "").upper() == "PATCH"
            and CHANNELS_PATH in (url or "")
            and self._is_read_error(error)
        ):
            raise MaxRetryError(_pool, url or "", error) from error  # type: ignore[arg-type]
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method.upper() in _NO_STATUS_RETRY:
            return False
        return super().is_retry(method, status_code, has_retry_after)

    def get_retry_after(self, response: Any) -> float | None:
        retry_after = super().get_retry_after(response)
        if retry_after is None:
            return None
        return min(retry_after, _MAX_RETRY_AFTER_S)


@dataclass
class _CallAuth:
    """What one call has already spent on renewing its credentials."""

    refreshed: bool = False
    logged_in: bool = False


class DispatcharrClient:
    """Blocking client for one Dispatcharr instance; run it off the actor threads.

    Args:
        base_url: E.g. ``http://dispatcharr:9191``; a path prefix is kept.
        username: Admin user for the JWT login (ignored with ``api_key``).
        password: Its password.
        api_key: Sent as ``X-API-Key`` instead of a JWT when given.
        timeout: Seconds for connect and for each read of every request.
        retries: Retries for connection errors and retryable 5xx answers.
        backoff_factor: urllib3 backoff; 0 retries at once (tests).
        token_max_age: Refresh the access token once it is this many seconds old.
        page_size: ``page_size`` asked for on paginated lists.
        clock: Monotonic seconds, injectable for tests of token ageing.
        user_agent: Sent as ``User-Agent`` on every call when given.
        max_connections: Connections kept open for reuse; at least the number
            of threads that call at once, or urllib3 opens and drops extras.

    Raises:
        DispatcharrAuthError: Neither an API key nor a username and password.
    """

    def __init__(
        self,
        base_url: str,
        *,
        username: str = "",
        password: str = "",
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        backoff_factor: float = 0.5,
        token_max_age: float = TOKEN_MAX_AGE_S,
        page_size: int = DEFAULT_PAGE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        user_agent: str | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if not api_key and not (username and password):
            message = "Dispatcharr needs an API key, or a username and a password"
            raise DispatcharrAuthError(message)
        self._base = base_url.rstrip("/")
        self._prefix = urlsplit(self._base).path.rstrip("/")
        self._username = username
        self._password = password
        self._api_key = api_key or None
        self._timeout = timeout
        self._token_max_age = token_max_age
        self._page_size = page_size
        self._clock = clock
        self._lock = threading.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._access_since = 0.0
        self._login_blocked_until: float | None = None
        self._stats_missing = False
        self._session = requests.Session()
        if user_agent:
            self._session.headers["User-Agent"] = user_agent
        retry = _CappedRetry(
            total=retries + 1,
            connect=retries,
            read=1,
            status=retries,
            other=0,
            redirect=0,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=RETRY_METHODS,
            backoff_factor=backoff_factor,
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=max_connections)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    @property
    def base_url(self) -> str:
        """The base URL calls go to."""
        return self._base

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def __enter__(self) -> DispatcharrClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- endpoints ------------------------------------------------------------------

    def version(self) -> str:
        """Dispatcharr's version string, e.g. ``"0.29.0"`` (no authentication needed)."""
        data = self._object(VERSION_PATH, self._call("GET", VERSION_PATH, auth=False))
        version = data.get("version")
        if not isinstance(version, str):
            raise DispatcharrBadResponse(
                VERSION_PATH, "version", f"expected a string, got {json_kind(version)}"
            )
        return version

    def accounts(self) -> list[JsonObject]:
        """All M3U accounts with their nested ``profiles`` (a bare array)."""
        return self._collect(ACCOUNTS_PATH, None)

    def streams(self, params: Mapping[str, str | int] | None = None) -> list[JsonObject]:
        """Every stream matching ``params``, following ``next`` to the last page.

        Dispatcharr leaves out streams of inactive accounts. With ``ids`` in
        ``params`` Dispatcharr answers a bare array, or 404 when none exists;
        that is an empty list here.
        """
        query: dict[str, str | int] = {"page_size": self._page_size}
        query.update(params or {})
        if "ids" in query:
            try:
                return self._collect(STREAMS_PATH, query)
            except DispatcharrNotFound:
                return []
        items, count = self._collect_counted(STREAMS_PATH, query)
        streams: list[JsonObject] = []
        seen: set[object] = set()
        for item in items:
            key = item.get("id")
            if isinstance(key, int) and key in seen:
                continue  # the same stream on two pages
            seen.add(key)
            streams.append(item)
        if len(streams) == len(items) and (count is None or len(streams) >= count):
            return streams
        # Dispatcharr orders the pages by name alone: streams of one name may come
        # in another order at each page's query, some twice and some never.
        log.warning(
            "dispatcharr.streams_paged_inconsistently",
            count=count,
            read=len(items),
            unique=len(streams),
            hint="the missing ones are read by id",
        )
        filters = {k: v for k, v in (params or {}).items() if k != "page_size"}
        try:
            every = self._stream_ids(filters)
        except DispatcharrError as exc:  # an older Dispatcharr: what the pages gave
            log.warning("dispatcharr.stream_ids_unavailable", error=str(exc))
            return streams
        missing = [i for i in every if i not in seen]
        for start in range(0, len(missing), _IDS_PER_CALL):
            chunk = missing[start : start + _IDS_PER_CALL]
            streams.extend(self.streams({"ids": ",".join(str(i) for i in chunk)}))
        return streams

    def _stream_ids(self, params: Mapping[str, str | int]) -> list[int]:
        """Every stream id matching ``params`` (one plain array, in no useful order)."""
        data = self._call("GET", STREAM_IDS_PATH, params=params)
        if not isinstance(data, list):
            raise DispatcharrBadResponse(
                STREAM_IDS_PATH, "", f"expected an array, got {json_kind(data)}"
            )
        for index, item in enumerate(data):
            if not isinstance(item, int) or isinstance(item, bool):
                detail = f"expected an id, got {json_kind(item)}"
                raise DispatcharrBadResponse(STREAM_IDS_PATH, f"[{index}]", detail)
        return list(data)

    def channels(self, *, include_streams: bool = False) -> list[JsonObject]:
        """Every channel, hidden ones included; ``streams`` are ids in failover order.

        Args:
            include_streams: Ask for full stream objects instead of ids.
        """
        query: dict[str, str | int] = {"visibility_filter": "all"}
        if include_streams:
            query["include_streams"] = "true"
        return self._collect(CHANNELS_PATH, query)

    def channel(self, channel_id: int) -> JsonObject:
        """One channel; its ``streams`` are ids in failover order."""
        path = f"{CHANNELS_PATH}{channel_id}/"
        return self._object(path, self._call("GET", path))

    def stream(self, stream_id: int) -> JsonObject:
        """One stream, with its current ``stream_stats``."""
        path = f"{STREAMS_PATH}{stream_id}/"
        return self._object(path, self._call("GET", path))

    def proxy_status(self) -> JsonObject:
        """``/proxy/ts/status``: the running live channels (``{"count", "channels"}``)."""
        return self._object(PROXY_STATUS_PATH, self._call("GET", PROXY_STATUS_PATH))

    def proxy_stats(self) -> JsonObject:
        """``/proxy/stats/`` (live, VOD and catch-up), or ``/proxy/ts/status`` before v0.28.

        The first 404 of ``/proxy/stats/`` is remembered, so an older
        Dispatcharr costs one extra call per client, not per poll.
        """
        if not self._stats_missing:
            try:
                return self._object(PROXY_STATS_PATH, self._call("GET", PROXY_STATS_PATH))
            except DispatcharrNotFound:
                self._stats_missing = True
                log.info("dispatcharr.proxy_stats_missing", fallback=PROXY_STATUS_PATH)
        return self.proxy_status()

    def patch_stream(self, stream_id: int, body: Mapping[str, Any]) -> JsonObject:
        """PATCH one stream (e.g. ``stream_stats``); returns the updated stream."""
        path = f"{STREAMS_PATH}{stream_id}/"
        return self._object(path, self._call("PATCH", path, body=body))

    def patch_channel(self, channel_id: int, body: Mapping[str, Any]) -> JsonObject:
        """PATCH one channel; a ``streams`` list replaces its whole membership, in order."""
        path = f"{CHANNELS_PATH}{channel_id}/"
        return self._object(path, self._call("PATCH", path, body=body))

    # --- shapes ---------------------------------------------------------------------

    @staticmethod
    def _object(endpoint: str, data: object) -> JsonObject:
        if not isinstance(data, dict):
            raise DispatcharrBadResponse(endpoint, "", f"expected an object, got {json_kind(data)}")
        return data

    @staticmethod
    def _objects(endpoint: str, field: str, data: object) -> list[JsonObject]:
        if not isinstance(data, list):
            raise DispatcharrBadResponse(
                endpoint, field, f"expected an array, got {json_kind(data)}"
            )
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                where = f"{field}[{index}]"
                raise DispatcharrBadResponse(
                    endpoint, where, f"expected an object, got {json_kind(item)}"
                )
        return data

    def _collect(self, path: str, params: Mapping[str, str | int] | None) -> list[JsonObject]:
        """A bare array, or every ``results`` of a DRF page chain."""
        return self._collect_counted(path, params)[0]

    def _collect_counted(
        self, path: str, params: Mapping[str, str | int] | None
    ) -> tuple[list[JsonObject], int | None]:
        """:meth:`_collect`, with the first page's ``count`` (``None``: no count given)."""
        data = self._call("GET", path, params=params)
        if isinstance(data, list):
            return self._objects(path, "", data), None
        first = data.get("count") if isinstance(data, dict) else None
        count = first if isinstance(first, int) and not isinstance(first, bool) else None
        items: list[JsonObject] = []
        seen: set[str] = set()
        current = self._base + path
        for page in range(1, _MAX_PAGES + 1):
            where = f"page {page}"
            if not isinstance(data, dict):
                detail = f"expected an array or a page object, got {json_kind(data)}"
                raise DispatcharrBadResponse(path, where, detail)
            if "results" not in data:
                if not _PAGE_KEYS.intersection(data):
                    detail = "expected an array or a page object, got an object without them"
                    raise DispatcharrBadResponse(path, "" if page == 1 else where, detail)
                raise DispatcharrBadResponse(path, f"{where}.results", "missing")
            items.extend(self._objects(path, f"{where}.results", data["results"]))
            following = data.get("next")
            if following is None:
                return items, count
            if not isinstance(following, str) or not following:
                detail = f"expected a URL or null, got {json_kind(following)}"
                raise DispatcharrBadResponse(path, f"{where}.next", detail)
            target = self._local(current, following)
            if target in seen:
                raise DispatcharrBadResponse(path, f"{where}.next", "repeats an earlier page")
            seen.add(target)
            current = self._base + target
            data = self._call("GET", target)
        raise DispatcharrBadResponse(path, "next", f"more than {_MAX_PAGES} pages")

    def _local(self, current: str, following: str) -> str:
        """Path and query of a ``next`` URL, to be sent to our own base URL.

        Dispatcharr builds ``next`` from the Host it was reached by, which
        behind a proxy or in a container is often not the address we use.
        """
        parts = urlsplit(urljoin(current, following))
        path = parts.path or "/"
        if self._prefix and path.startswith(self._prefix + "/"):
            path = path[len(self._prefix) :]
        return f"{path}?{parts.query}" if parts.query else path

    # --- transport ------------------------------------------------------------------

    def _call(
        self,
        method: str,
        target: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
        auth: bool = True,
    ) -> object:
        """Send one request (renewing credentials as needed) and decode its JSON."""
        endpoint = target.split("?", 1)[0]
        if auth:
            response = self._send_authenticated(method, target, endpoint, params, body)
        else:
            response = self._send(method, target, endpoint, {}, params, body)
        self._raise_for_status(endpoint, response)
        return self._decode(endpoint, response)

    def _send_authenticated(
        self,
        method: str,
        target: str,
        endpoint: str,
        params: Mapping[str, str | int] | None,
        body: Mapping[str, Any] | None,
    ) -> requests.Response:
        spent = _CallAuth()
        headers = self._auth_headers(spent)
        response = self._send(method, target, endpoint, headers, params, body)
        if response.status_code == 401 and self._api_key is None:
            self._renew(spent, headers)
            headers = self._auth_headers(spent)
            response = self._send(method, target, endpoint, headers, params, body)
        if response.status_code == 401:
            how = "API key" if self._api_key else "fresh token"
            message = f"{endpoint}: Dispatcharr refused the {how}: {_detail(response)}"
            raise DispatcharrAuthError(message)
        return response

    def _send(
        self,
        method: str,
        target: str,
        endpoint: str,
        headers: Mapping[str, str],
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        try:
            return self._session.request(
                method,
                self._base + target,
                params=params,
                json=body,
                headers=dict(headers),
                timeout=self._timeout,
                allow_redirects=False,
            )
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.RetryError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            log.warning(
                "dispatcharr.unreachable",
                method=method,
                endpoint=endpoint,
                base_url=redact_url(self._base),
                error=type(exc).__name__,
            )
            detail = f"{type(exc).__name__} reaching {redact_url(self._base)}"
            raise DispatcharrUnavailable(endpoint, None, detail) from None
        except requests.RequestException as exc:
            message = f"{endpoint}: request failed: {type(exc).__name__}"
            raise DispatcharrError(message) from None

    @staticmethod
    def _raise_for_status(endpoint: str, response: requests.Response) -> None:
        status = response.status_code
        if status < 300:
            return
        detail = _detail(response)
        if status >= 500:
            log.warning("dispatcharr.server_error", endpoint=endpoint, status=status)
            raise DispatcharrUnavailable(endpoint, status, f"HTTP {status}: {detail}")
        if status == 403:
            message = (
                f"{endpoint}: forbidden ({detail}); the user needs admin level and "
                "Dispatcharr's network access policy must allow this address"
            )
            raise DispatcharrAuthError(message)
        if status == 404:
            raise DispatcharrNotFound(endpoint, status, detail)
        raise DispatcharrHTTPError(endpoint, status, detail)

    @staticmethod
    def _decode(endpoint: str, response: requests.Response) -> object:
        try:
            return response.json()
        except ValueError:
            start = response.text[:40].strip()
            detail = f"not JSON (starts with {start!r})" if start else "empty body, expected JSON"
            raise DispatcharrBadResponse(endpoint, "", detail) from None

    # --- authentication -------------------------------------------------------------

    def _auth_headers(self, spent: _CallAuth) -> dict[str, str]:
        if self._api_key is not None:
            return {"X-API-Key": self._api_key}
        with self._lock:
            if self._access is None:
                self._login(spent)
            elif self._clock() - self._access_since >= self._token_max_age:
                self._refresh_or_login(spent)
            return {"Authorization": f"Bearer {self._access}"}

    def _renew(self, spent: _CallAuth, used: Mapping[str, str]) -> None:
        """After a 401: refresh, else log in; skip if another thread already did."""
        with self._lock:
            if self._access is not None and used.get("Authorization") != f"Bearer {self._access}":
                return
            self._refresh_or_login(spent)

    def _refresh_or_login(self, spent: _CallAuth) -> None:
        if self._refresh is not None and not spent.refreshed:
            spent.refreshed = True
            if self._try_refresh():
                return
        if spent.logged_in:
            message = "Dispatcharr refused a token it has just issued"
            raise DispatcharrAuthError(message)
        self._login(spent)

    def _try_refresh(self) -> bool:
        response = self._send(
            "POST", REFRESH_PATH, REFRESH_PATH, {}, None, {"refresh": self._refresh}
        )
        if response.status_code in (400, 401):
            log.info("dispatcharr.token_refresh_refused", status=response.status_code)
            self._access = self._refresh = None
            return False
        self._raise_for_status(REFRESH_PATH, response)
        data = self._object(REFRESH_PATH, self._decode(REFRESH_PATH, response))
        self._access = _token(REFRESH_PATH, data, "access")
        if isinstance(data.get("refresh"), str) and data["refresh"]:
            self._refresh = data["refresh"]  # only with ROTATE_REFRESH_TOKENS
        self._access_since = self._clock()
        log.debug("dispatcharr.token_refreshed")
        return True

    def _login(self, spent: _CallAuth) -> None:
        now = self._clock()
        if self._login_blocked_until is not None and now < self._login_blocked_until:
            wait = self._login_blocked_until - now
            message = f"Dispatcharr login throttled (3 a minute); next attempt in {wait:.0f} s"
            raise DispatcharrAuthError(message)
        spent.logged_in = True
        body = {"username": self._username, "password": self._password}
        response = self._send("POST", TOKEN_PATH, TOKEN_PATH, {}, None, body)
        status = response.status_code
        if status == 429:
            wait = _retry_after(response)
            self._login_blocked_until = now + wait
            log.warning("dispatcharr.login_throttled", retry_after_s=wait)
            message = (
                f"Dispatcharr login throttled (3 a minute per address): {_detail(response)}; "
                "use an API key or wait before retrying"
            )
            raise DispatcharrAuthError(message)
        if status in (400, 401):
            log.warning("dispatcharr.login_refused", username=self._username, status=status)
            message = f"Dispatcharr login as {self._username!r} refused: {_detail(response)}"
            raise DispatcharrAuthError(message)
        self._raise_for_status(TOKEN_PATH, response)
        data = self._object(TOKEN_PATH, self._decode(TOKEN_PATH, response))
        self._access = _token(TOKEN_PATH, data, "access")
        self._refresh = _token(TOKEN_PATH, data, "refresh")
        self._access_since = self._clock()
        self._login_blocked_until = None
        log.info("dispatcharr.logged_in", username=self._username, base_url=redact_url(self._base))


def _token(endpoint: str, data: JsonObject, field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise DispatcharrBadResponse(endpoint, field, f"expected a token, got {json_kind(value)}")
    return value


def _retry_after(response: requests.Response) -> float:
    """Seconds until Dispatcharr accepts a login again (header, else the message)."""
    header = response.headers.get("Retry-After", "")
    if header.strip().isdigit():
        return float(header.strip())
    match = _THROTTLE_SECONDS.search(response.text)
    return float(match.group(1)) if match else _LOGIN_BLOCK_DEFAULT_S


def _detail(response: requests.Response) -> str:
    """Dispatcharr's explanation of an error answer, shortened for a message."""
    try:
        data = response.json()
    except ValueError:
        text = " ".join(response.text.split())
        return text[:_DETAIL_CHARS] or response.reason or f"HTTP {response.status_code}"
    if isinstance(data, dict):
        for key in ("detail", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])[:_DETAIL_CHARS]
    return json.dumps(data)[:_DETAIL_CHARS]
