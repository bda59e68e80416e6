"""The status server: the dashboard (``/``), its JSON API and ``/metrics``.

A small HTTP server on its own threads. It never touches actor state: each
request asks the actors for snapshots (with timeouts), as any foreign thread
may, through :class:`~app.dashboard.Dashboard`. Only what is safe to show is
shown (provider URLs as host and last path segment, no credentials).

=========================================  ====================================
``GET /``                                  the dashboard: one self-contained page
``GET /api/status``                        accounts, logins, checks, cycle, schedule
``GET /api/streams``                       streams, latest results, history
``GET /api/channels``                      channels in the order written back
``GET /metrics``                           Prometheus exposition
``POST /api/cycle``                        start a cycle now
``POST /api/channels/{id}/check``          check one channel now
=========================================  ====================================

Anything that changes state (the POSTs) needs ``Authorization: Bearer TOKEN``
when a token is configured (``status.token_env``); without one, the server
only starts on a loopback address (:func:`listen_problem`). A POST whose
``Origin`` is another site is refused either way, so a web page elsewhere
cannot press the buttons through the user's browser.
"""

from __future__ import annotations

import gzip
import hmac
import ipaddress
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import pykka
import structlog

from app.config import StatusSection
from app.dashboard import Controls, Dashboard
from app.metrics import CONTENT_TYPE, Metrics

logger = structlog.get_logger(__name__)

_GZIP_FROM = 16_384
"""Answers longer than this are compressed for clients that accept gzip."""
_CHANNEL_CHECK = re.compile(r"^/api/channels/(\d{1,12})/check$")
_PAGE_HEADERS = {
    # Nothing from anywhere else: the page works offline and cannot leak.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class InsecureListenError(ValueError):
    """The server would accept state-changing requests from the network without a token."""


def listen_problem(status: StatusSection, token: str | None) -> str | None:
    """Why the status server must not start as configured, or ``None``.

    A non-loopback address without a token would let anyone who can reach it
    start cycles (which take provider connections).
    """
    if not status.enabled or status.loopback or token:
        return None
    return (
        f"[status] listen = {status.listen!r} is not a loopback address and no token is set: "
        f"set the environment variable {status.token_env or '(status.token_env is empty)'} "
        'to a secret, or listen on "127.0.0.1:PORT"'
    )


def _loopback_host(host_header: str) -> bool:
    """Whether a ``Host`` header names a loopback address (or ``localhost``)."""
    try:
        host = urlsplit(f"//{host_header}").hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def page_html() -> str:
    """The dashboard page (``app/web/index.html``)."""
    return resources.files("app").joinpath("web/index.html").read_text(encoding="utf-8")


class StatusServer:
    """Serves the dashboard, its API and the metrics on ``host:port`` (0 picks a free port).

    Binding happens in the constructor so a busy port fails at start-up.

    Args:
        host: address to listen on.
        port: port to listen on.
        dashboard: builds the views.
        metrics: the daemon's metrics (``None``: ``/metrics`` answers 404).
        controls: what the buttons do (``None``: the POSTs answer 404).
        token: the token POSTs must carry (``None``: none, loopback only).
        loopback: ``host`` is a loopback address.

    Raises:
        InsecureListenError: ``host`` is not loopback and there is no token.
        OSError: the address cannot be bound.
    """

    def __init__(
        self,
        host: str,
        port: int,
        dashboard: Dashboard,
        metrics: Metrics | None = None,
        controls: Controls | None = None,
        *,
        token: str | None = None,
        loopback: bool = True,
    ) -> None:
        if not loopback and not token:
            message = f"refusing to serve on {host}:{port} without a token"
            raise InsecureListenError(message)
        self.dashboard = dashboard
        self.metrics = metrics
        self.controls = controls
        self.token = token
        self.page = page_html()
        if metrics is not None:
            metrics.watch_state(dashboard.status)
        handler = type("_BoundHandler", (_Handler,), {"status_server": self})
        self._server = _Server((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="status-http", daemon=True
        )

    @property
    def address(self) -> str:
        """``http://host:port`` the server listens on."""
        host, port = self._server.server_address[:2]
        host = str(host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()
        logger.info("status_listening", address=self.address, token=bool(self.token))

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> dict[str, Any]:
        """The status as ``/api/status`` serves it."""
        return self.dashboard.status()


class _Server(ThreadingHTTPServer):
    """socketserver prints a request's fault as a traceback on stderr, outside the logs
    (and through a JSON log): here it is one log line."""

    def handle_error(self, request: object, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):  # the client went away: nothing of ours
            logger.debug("status_client_gone", client=client_address[0], error=repr(error))
        else:
            logger.exception("status_request_failed", client=client_address[0])


class _Handler(BaseHTTPRequestHandler):
    status_server: StatusServer
    server_version = "iptv-checkd"
    sys_version = ""
    timeout = 10.0
    """Seconds a client may stay silent mid-request before its connection is dropped."""

    def parse_request(self) -> bool:
        """Also refuse, with a 400, a request line whose target is no URL."""
        if not super().parse_request():
            return False
        try:
            urlsplit(self.path)
        except ValueError:
            self.send_error(400, "Bad request target")
            return False
        return True

    # --- GET --------------------------------------------------------------------

    def do_GET(self) -> None:
        server = self.status_server
        path = urlsplit(self.path).path
        try:
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", server.page.encode(), _PAGE_HEADERS)
            elif path == "/api/status":
                self._json(200, server.dashboard.status())
            elif path == "/api/streams":
                self._json(200, server.dashboard.streams())
            elif path == "/api/channels":
                self._json(200, server.dashboard.channels())
            elif path == "/metrics" and server.metrics is not None:
                self._send(200, CONTENT_TYPE, server.metrics.render())
            else:
                self._json(404, {"error": "not found"})
        except (pykka.Timeout, pykka.ActorDeadError):
            self._json(503, {"error": "daemon busy or stopping"})

    # --- POST -------------------------------------------------------------------

    def do_POST(self) -> None:
        server = self.status_server
        path = urlsplit(self.path).path
        self._drain_body()
        match = _CHANNEL_CHECK.match(path)
        if server.controls is None or (path != "/api/cycle" and match is None):
            self._json(404, {"error": "not found"})
            return
        refusal = self._refusal()
        if refusal is not None:
            code, message = refusal
            logger.warning("status_request_refused", path=path, code=code, reason=message)
            extra = {"WWW-Authenticate": 'Bearer realm="iptv-checkd"'} if code == 401 else {}
            self._json(code, {"error": message}, extra)
            return
        try:
            if match is not None:
                code, body = server.controls.check_channel(int(match.group(1)))
            else:
                code, body = server.controls.run_now()
        except (pykka.Timeout, pykka.ActorDeadError):
            code, body = 503, {"error": "daemon busy or stopping"}
        self._json(code, body)

    def _refusal(self) -> tuple[int, str] | None:
        """Why this state-changing request is refused, or ``None`` to let it through."""
        origin = self.headers.get("Origin")
        if origin is not None:
            # "null" is an opaque origin (a sandboxed frame, a file): not this page.
            try:
                origin_host = urlsplit(origin).netloc
            except ValueError:
                origin_host = ""
            if origin == "null" or origin_host != self.headers.get("Host", ""):
                return 403, "cross-site request refused"
        token = self.status_server.token
        if token is None:
            # Loopback without a token: a page elsewhere whose name was made to
            # point at 127.0.0.1 (DNS rebinding) sends its own name as Host.
            if not _loopback_host(self.headers.get("Host", "")):
                return 403, "requests without a token must name a loopback host"
            return None
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            return 401, "a valid token is required (Authorization: Bearer TOKEN)"
        return None

    def _drain_body(self) -> None:
        """Read (and ignore) a small request body, so the connection stays sane."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= 65536:
            self.rfile.read(length)

    # --- answers ----------------------------------------------------------------

    def _json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, default=str, separators=(",", ":")).encode()
        extra = {"Cache-Control": "no-store", **(headers or {})}
        if len(data) > _GZIP_FROM and "gzip" in self.headers.get("Accept-Encoding", ""):
            # The stream list of a big setup is megabytes of repetitive JSON.
            data = gzip.compress(data, compresslevel=5)
            extra["Content-Encoding"] = "gzip"
            extra["Vary"] = "Accept-Encoding"
        self._send(code, "application/json", data, extra)

    def _send(
        self, code: int, content_type: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("status_request", line=format % args)
