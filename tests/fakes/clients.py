"""Clients that misbehave the way real ones do: for the servers' tests."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
from typing import Any
from urllib.parse import urlsplit


def reset_mid_request(base_url: str, path: str = "/") -> None:
    """Send half a request's head, then reset the connection (a browser tab closed,
    an ffmpeg killed while it was still asking): the server's read fails."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode())
        # linger 0: close sends a reset, not the end of the stream
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class JsonLogLines(io.StringIO):
    """A log stream for ``app.logs.configure("json", ...)`` that tells when the
    line of one event has been written (:attr:`seen`, that line in :attr:`line`)."""

    def __init__(self, event: str) -> None:
        super().__init__()
        self._event = event
        self.seen = threading.Event()
        self.line: dict[str, Any] = {}

    def write(self, text: str) -> int:
        written = super().write(text)
        for raw in text.splitlines():
            if raw.strip() and (line := json.loads(raw)).get("event") == self._event:
                self.line = line
                self.seen.set()
        return written
