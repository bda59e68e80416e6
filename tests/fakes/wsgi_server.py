"""A small threaded WSGI server with HTTP/1.1 keep-alive, for stand-in servers in tests.

werkzeug's development server closes the connection after every answer, so
each request of a client costs a new TCP connection and a new thread (about
4 ms on loopback, which dwarfs the work of a stand-in). This one is
:class:`http.server.ThreadingHTTPServer` (a thread per connection) with
keep-alive, and enough WSGI to run a werkzeug application:

- the request body is read whole (``Content-Length``; no chunked uploads);
- the answer is sent with a ``Content-Length``, in one write, Nagle off;
- ``environ["fake.socket"]`` is the client's socket, so an application can
  drop a connection; raising :class:`ConnectionAbortedError` then ends it
  without an answer;
- :meth:`KeepAliveWSGIServer.stop` also closes the connections clients keep
  open, so no handler thread outlives the server.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_IDLE_TIMEOUT_S = 30.0
"""A kept-alive connection without a request for this long is closed."""
_SERVER_ERROR = b'{"detail": "stand-in error"}'
logger = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = _IDLE_TIMEOUT_S
    server: KeepAliveWSGIServer

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the stand-in's own records instead."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_LENGTH": str(length) if length else "",
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "fake.socket": self.connection,
        }
        for key, value in self.headers.items():
            name = "HTTP_" + key.upper().replace("-", "_")
            if name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[name] = value
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], _exc: Any = None) -> None:
            started[:] = [status, headers]

        try:
            data = b"".join(self.server.app(environ, start_response))
        except ConnectionAbortedError:  # the application dropped the connection
            self.close_connection = True
            return
        except Exception:  # a bug in a stand-in: answer 500 rather than hang the client
            logger.exception("stand-in failed on %s %s", self.command, path)
            started[:] = ["500 Internal Server Error", [("Content-Type", "application/json")]]
            data = _SERVER_ERROR
        status, headers = started
        code, _, reason = status.partition(" ")
        lines = [f"{self.protocol_version} {code} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() != "content-length"]
        lines.append(f"Content-Length: {len(data)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _handle


class KeepAliveWSGIServer(ThreadingHTTPServer):
    """Serves ``app`` on ``host``:``port`` (0 = a free one) until :meth:`stop`.

    Args:
        host: Address to listen on (loopback in tests).
        port: Port, 0 for a free one.
        app: The WSGI application.
    """

    daemon_threads = True

    def __init__(self, host: str, port: int, app: WSGIApp) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.connections_opened = 0
        """Connections accepted so far (with keep-alive, far fewer than requests)."""
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        """The port listened on."""
        return int(self.server_address[1])

    def start(self, name: str, poll_interval: float = 0.01) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": poll_interval}, name=name
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close every open connection, close the socket."""
        self.shutdown()
        with self._connections_lock:
            open_now = list(self._connections)
        for connection in open_now:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def opened(self, connection: socket.socket) -> None:
        """A handler thread took a connection."""
        with self._connections_lock:
            self._connections.add(connection)
            self.connections_opened += 1

    def closed(self, connection: socket.socket) -> None:
        """A handler thread is done with a connection."""
        with self._connections_lock:
            self._connections.discard(connection)
