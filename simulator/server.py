"""A loopback HTTP server that behaves like an IPTV (Xtream Codes style) provider.

It serves ``/live/{user}/{pass}/{stream}.ts`` (and the bare
``/{user}/{pass}/{stream}``) by looping an MPEG-TS sample at about real-time
rate, or for an ``hls`` stream a master playlist (``.m3u8``) of several
variants, each a media playlist of two-second segments served at once, as
from a CDN, or for a ``dash`` stream a DASH manifest (``.mpd``) of a video
representation per variant and one of sound, in two-second segments. It
enforces each account's connection cap over the connections currently
streaming (an HLS or DASH stream's segments share one while any is sent, as
panels count such sessions), and records what happened (highest concurrency per
login, refusals, served streams, how long each connection lasted) so tests can
check that the daemon never opened one connection too many.

Real providers differ from what is configured for them, and the simulator can
play that: ``SimAccount.max_connections`` is the provider's real cap, which a
test may set below the ``max_streams`` it gives the daemon;
``SimAccount.close_lag_s`` keeps counting a connection that long after it
closed (as many panels do); ``refuse_style="close"`` refuses by hanging up
right after the connection opens instead of answering an HTTP status.

This is test and demo tooling, not actor code: a lock and a condition guard
the counters, and handler threads wait on events, never on bare sleeps.
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple
from urllib.parse import unquote, urlsplit

import structlog

from simulator.media import (
    HLS_PLAYLIST,
    HLS_SEGMENT_S,
    VARIANTS,
    DashMedia,
    HlsMedia,
    chunk_times,
    load_dash,
    load_hls,
    load_sample,
    sample_seconds,
)

log = structlog.get_logger(__name__)

Behaviour = Literal[
    "ok",
    "dead",
    "refused",
    "slow_start",
    "stall",
    "end",
    "lowres",
    "noaudio",
    "hevc",
    "close",
    "hls",
    "dash",
]
"""How a simulated stream answers; ``lowres``/``noaudio``/``hevc`` are ``ok``
streams of that sample variant; ``hls`` answers a master playlist of
``SimStream.hls_variants``, ``dash`` a DASH manifest of ``SimStream.dash_variants``."""

HlsFault = Literal["none", "missing_segments", "stuck"]
"""What goes wrong with an ``hls`` stream's renditions (see ``SimStream.hls_fault``)."""

_VARIANT_SHORTCUTS = {"lowres": "lowres", "noaudio": "noaudio", "hevc": "hevc"}
CHUNK_BYTES = 188 * 100
"""One write: a whole number of 188-byte TS packets."""
_POLL_S = 0.1
"""How often waiting handler threads look at their client and the stop flag."""
_PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_DASH_PATH = "dash"
"""The folder of a DASH stream's segments, under its stream id (``{id}/dash/{file}``)."""
_LIVE_FIRST_SEGMENTS = 3
"""Segments a live HLS rendition lists at its first request (players start three from its end)."""


@dataclass(frozen=True)
class SimAccount:
    """One provider login and its connection cap (0 = unlimited)."""

    username: str
    password: str
    max_connections: int = 1
    """The provider's real cap, whatever the daemon is told (0 = unlimited)."""
    expired: bool = False
    """An expired (or blocked) login: every stream request is answered 401."""
    close_lag_s: float = 0.0
    """Seconds a closed connection still counts against the cap."""


@dataclass(frozen=True)
class SimStream:
    """One stream id's behaviour and the sample it plays."""

    behaviour: Behaviour = "ok"
    variant: str = "hd"
    start_delay_s: float = 3.0
    """``slow_start``: seconds before the response begins."""
    stall_after_s: float = 1.0
    """``stall``: seconds of data sent before going silent."""
    end_after_s: float = 1.5
    """``end``: seconds of data sent before the server closes the connection."""
    hls_variants: tuple[str, ...] = ("lowres", "hd")
    """``hls``: the sample variants its master playlist lists, in that order
    (many providers list the smallest first)."""
    hls_live: bool = False
    """``hls``: its renditions are live playlists, of three segments at first
    and one more every segment's length from its first request (up to all of
    them; never ended), as a live channel's."""
    hls_fault: HlsFault = "none"
    """``hls``: ``missing_segments`` answers 404 for every segment (an expired
    token); ``stuck`` is a live playlist of its first two segments that never
    grows (the source stopped)."""
    hls_broken: tuple[str, ...] = ()
    """``hls``: variants whose media playlist answers 404 while the others play
    (one rendition's packager down)."""
    dash_variants: tuple[str, ...] = ("lowres", "hd")
    """``dash``: the sample variants its manifest has a video representation of,
    in that order, then the sound of the first that has sound."""

    def resolved(self) -> tuple[str, str]:
        """The (behaviour, variant) pair, with variant shortcuts turned into ``ok``."""
        shortcut = _VARIANT_SHORTCUTS.get(self.behaviour)
        if shortcut is not None:
            return "ok", shortcut
        return self.behaviour, self.variant


def url_extension(stream: SimStream) -> str:
    """The extension of the stream's URL: ``m3u8`` (HLS), ``mpd`` (DASH) or ``ts``."""
    return {"hls": "m3u8", "dash": "mpd"}.get(stream.behaviour, "ts")


RefuseStyle = Literal["status", "close"]
"""How a connection over the cap is refused: an HTTP status, or a bare hang-up."""


class Connection(NamedTuple):
    """One connection that got a stream, from its answer to its close."""

    username: str
    stream_id: int
    opened: float
    """``time.monotonic()`` when the login's slot was taken."""
    closed: float
    """``time.monotonic()`` when the connection ended."""

    @property
    def seconds(self) -> float:
        """How long the connection held its slot (without the close lag)."""
        return self.closed - self.opened


class Refusal(NamedTuple):
    """A connection refused because its login was at its cap."""

    username: str
    stream_id: int
    at: float
    """``time.monotonic()`` of the refusal."""


@dataclass(frozen=True)
class SimStats:
    """A consistent copy of the simulator's counters."""

    open_connections: dict[str, int] = field(default_factory=dict)
    max_concurrency: dict[str, int] = field(default_factory=dict)
    refused: tuple[Refusal, ...] = ()
    served: dict[int, int] = field(default_factory=dict)
    """Connections that got a 200 answer, per stream id."""
    user_agents: tuple[str, ...] = ()
    """``User-Agent`` of every stream request, oldest first."""
    connections: tuple[Connection, ...] = ()
    """Connections that got a stream and have closed, in closing order."""
    hls_requests: tuple[str, ...] = ()
    """``{stream}/{variant}/{file}`` of every HLS media playlist and segment asked
    for, oldest first."""
    dash_requests: tuple[str, ...] = ()
    """``{stream}/{file}`` of every DASH segment (initialization or media) asked
    for, oldest first."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: ProviderSimulator

    def __init__(self, sim: ProviderSimulator, port: int = 0) -> None:
        self.sim = sim
        super().__init__(("127.0.0.1", port), _Handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        if isinstance(request, socket.socket):
            self.sim._track(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            self.sim._untrack(request)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client gone mid-request (an ffmpeg killed while it still asked) is a log
        line; socketserver would print a traceback on stderr."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            log.debug("simulator_client_gone", client=str(client_address), error=repr(error))
        else:
            log.exception("simulator_request_failed", client=str(client_address))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr access log; the simulator logs with structlog."""
        del format, args

    def do_GET(self) -> None:
        """Answer a stream request as the provider would."""
        self.server.sim._handle(self)

    def do_HEAD(self) -> None:
        """Answer HEAD like GET without a body loop (nothing probes with it)."""
        self.send_error(405)


@dataclass
class _Slot:
    """One counted connection of a login: its socket, so a hang-up is seen at once
    (``None`` for an HLS session, which ends with its last request)."""

    stream_id: int
    opened: float
    client: socket.socket | None
    released: bool = False


def _hung_up(client: socket.socket | None) -> bool:
    """Whether the peer of ``client`` closed it (without blocking, whoever serves it)."""
    if client is None:
        return False
    try:
        readable, _, _ = select.select([client], [], [], 0)
        return bool(readable) and not client.recv(1, socket.MSG_PEEK)
    except (OSError, ValueError):
        return True  # reset, or already closed on our side


class ProviderSimulator:
    """A fake IPTV provider on 127.0.0.1 with per-login connection caps.

    Args:
        accounts: The logins it knows.
        streams: Stream id to behaviour.
        cache_dir: Sample cache folder; the default cache if ``None``.
        refuse_status: HTTP status for a connection over the cap.
        refuse_reason: Reason phrase (and body) of that answer.
        refuse_style: ``"status"`` answers ``refuse_status``; ``"close"``
            hangs up without an answer (the refusal is recorded all the same).
        lifetime_s: Seconds after :meth:`start` when it stops by itself.
        burst_s: Seconds of media sent at once when a stream starts, as real
            providers do, before pacing at the sample's byte rate.
    """

    def __init__(
        self,
        accounts: list[SimAccount],
        streams: dict[int, SimStream],
        *,
        cache_dir: Path | None = None,
        refuse_status: int = 403,
        refuse_reason: str = "Max connections reached",
        refuse_style: RefuseStyle = "status",
        lifetime_s: float = 300.0,
        burst_s: float = 1.0,
        port: int = 0,
    ) -> None:
        self.port = port
        """The loopback port to listen on; 0 picks a free one."""
        self.accounts = {a.username: a for a in accounts}
        self.streams = dict(streams)
        self.refuse_status = refuse_status
        self.refuse_reason = refuse_reason
        self.refuse_style = refuse_style
        self.lifetime_s = lifetime_s
        self.burst_s = burst_s
        variants = {s.resolved()[1] for s in self.streams.values()}
        self._samples = {v: load_sample(v, cache_dir) for v in sorted(variants)}
        self._timelines = {
            v: chunk_times(
                sample, CHUNK_BYTES, sample_seconds(v), vbr=v in VARIANTS and VARIANTS[v].vbr
            )
            for v, sample in self._samples.items()
        }
        hls = {v for s in self.streams.values() if s.behaviour == "hls" for v in s.hls_variants}
        self._hls: dict[str, HlsMedia] = {v: load_hls(v, cache_dir) for v in sorted(hls)}
        self._hls_requests: list[str] = []
        dash = {s.dash_variants for s in self.streams.values() if s.behaviour == "dash"}
        self._dash: dict[tuple[str, ...], DashMedia] = {
            variants: load_dash(variants, cache_dir) for variants in sorted(dash)
        }
        self._dash_requests: list[str] = []
        self._hls_began: dict[int, float] = {}
        """Per live HLS stream, when its renditions were first asked for."""
        self._hls_sessions: dict[tuple[str, int], tuple[_Slot, int]] = {}
        """Per login and HLS stream, the slot its segments share and how many are open."""
        self._cond = threading.Condition()
        self._open: dict[str, int] = {}
        self._slots: dict[str, list[_Slot]] = {}
        """Per login, the connections counted in ``_open``."""
        self._lingering: dict[str, list[float]] = {}
        """Per login, when each closed connection stops counting (close lag)."""
        self._connections: list[Connection] = []
        self._max: dict[str, int] = {}
        self._refused: list[Refusal] = []
        self._served: dict[int, int] = {}
        self._user_agents: list[str] = []
        self._clients: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self.base_url = ""

    # -- lifecycle -------------------------------------------------------

    def start(self) -> str:
        """Bind to the loopback port (a free one unless ``port`` was given), serve, return the URL.

        Raises:
            OSError: ``port`` is taken.
        """
        if self._stopping.is_set():
            message = "a stopped ProviderSimulator cannot be started again"
            raise RuntimeError(message)
        if self._server is not None:
            return self.base_url
        server = _Server(self, self.port)
        self._server = server
        port = server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sim-{port}",
            daemon=True,
        )
        self._thread.start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        log.info("simulator_started", base_url=self.base_url, lifetime_s=self.lifetime_s)
        return self.base_url

    def stop(self) -> None:
        """Stop listening and close every open client connection.

        Idempotent and safe from any thread (the lifetime timer calls it too);
        a second caller returns once the first has finished.
        """
        self._stopping.set()  # handler threads waiting on clients or pacing give up now
        with self._stop_lock:
            if self._stopped.is_set():
                return
            try:
                self._shut_down()
            finally:
                self._stopped.set()

    def _shut_down(self) -> None:
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        server = self._server
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._cond:
            clients = list(self._clients)
            self._cond.notify_all()
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        log.info("simulator_stopped", base_url=self.base_url, clients_closed=len(clients))

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` finished (by hand or at the end of the lifetime)."""
        return self._stopped.is_set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until the simulator stopped; False if ``timeout`` passed first."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> ProviderSimulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests read -------------------------------------------------

    def url(self, username: str, password: str, stream_id: int) -> str:
        """The Xtream-style URL of a stream for a login (``.m3u8`` for an ``hls`` one,
        ``.mpd`` for a ``dash`` one)."""
        extension = url_extension(self.streams.get(stream_id, SimStream()))
        return f"{self.base_url}/live/{username}/{password}/{stream_id}.{extension}"

    def stats(self) -> SimStats:
        """A consistent snapshot of all counters."""
        with self._cond:
            return self._snapshot()

    @property
    def max_concurrency(self) -> dict[str, int]:
        """Highest number of simultaneously open streams seen, per username."""
        with self._cond:
            return dict(self._max)

    @property
    def refused(self) -> list[Refusal]:
        """Connections refused for being over the cap, oldest first."""
        with self._cond:
            return list(self._refused)

    @property
    def served(self) -> dict[int, int]:
        """Connections answered with a stream, per stream id."""
        with self._cond:
            return dict(self._served)

    def open_connections(self, username: str) -> int:
        """Streams currently open for ``username``."""
        with self._cond:
            return self._open.get(username, 0)

    def wait_until(self, predicate: Callable[[SimStats], bool], timeout: float) -> bool:
        """Block until ``predicate(stats)`` holds; False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._snapshot()), timeout)

    def wait_for_connections(self, username: str, n: int, timeout: float) -> bool:
        """Block until at least ``n`` streams are open for ``username``."""
        return self.wait_until(lambda s: s.open_connections.get(username, 0) >= n, timeout)

    def wait_for_idle(self, username: str | None = None, timeout: float = 5.0) -> bool:
        """Block until no stream is open (for ``username``, or for anyone)."""
        if username is None:
            return self.wait_until(lambda s: not any(s.open_connections.values()), timeout)
        return self.wait_until(lambda s: s.open_connections.get(username, 0) == 0, timeout)

    def wait_for_refusals(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` connections were refused over a cap."""
        return self.wait_until(lambda s: len(s.refused) >= n, timeout)

    # -- internals ---------------------------------------------------------

    def _snapshot(self) -> SimStats:
        return SimStats(
            open_connections=dict(self._open),
            max_concurrency=dict(self._max),
            refused=tuple(self._refused),
            served=dict(self._served),
            user_agents=tuple(self._user_agents),
            connections=tuple(self._connections),
            hls_requests=tuple(self._hls_requests),
            dash_requests=tuple(self._dash_requests),
        )

    def _track(self, client: socket.socket) -> None:
        with self._cond:
            self._clients.add(client)

    def _untrack(self, client: socket.socket) -> None:
        with self._cond:
            self._clients.discard(client)

    def _acquire(self, username: str, stream_id: int, client: socket.socket | None) -> _Slot | None:
        """Take a slot of ``username``, or ``None`` if refused.

        A full login first frees the slots of clients that already hung up: a
        provider counts the TCP close, not when its serving thread notices it.
        """
        account = self.accounts[username]
        with self._cond:
            if account.max_connections and self._counted(username) >= account.max_connections:
                for slot in list(self._slots.get(username, ())):
                    if _hung_up(slot.client):
                        self._release_locked(username, slot)
            now = time.monotonic()
            current = self._open.get(username, 0)
            if account.max_connections and self._counted(username) >= account.max_connections:
                self._refused.append(Refusal(username, stream_id, now))
                self._cond.notify_all()
                return None
            slot = _Slot(stream_id, now, client)
            self._slots.setdefault(username, []).append(slot)
            self._open[username] = current + 1
            self._max[username] = max(self._max.get(username, 0), current + 1)
            self._cond.notify_all()
            return slot

    def _counted(self, username: str) -> int:
        """Open connections plus those the close lag still counts; holds ``_cond``."""
        now = time.monotonic()
        lingering = [t for t in self._lingering.get(username, ()) if t > now]
        self._lingering[username] = lingering
        return self._open.get(username, 0) + len(lingering)

    def _release(self, username: str, slot: _Slot) -> None:
        with self._cond:
            self._release_locked(username, slot)

    def _release_locked(self, username: str, slot: _Slot) -> None:
        if slot.released:
            return
        slot.released = True
        account = self.accounts[username]
        now = time.monotonic()
        self._slots[username].remove(slot)
        self._open[username] = self._open.get(username, 0) - 1
        self._connections.append(Connection(username, slot.stream_id, slot.opened, now))
        if account.close_lag_s > 0:
            self._lingering.setdefault(username, []).append(now + account.close_lag_s)
        self._cond.notify_all()

    def _handle(self, handler: _Handler) -> None:
        with self._cond:
            self._user_agents.append(handler.headers.get("User-Agent", ""))
        parsed = _parse_path(handler.path)
        if parsed is None:
            handler.send_error(404, "Not Found")
            return
        username, password, stream_id, part = parsed
        account = self.accounts.get(username)
        if account is None or account.password != password or account.expired:
            handler.send_error(401, "Unauthorized")
            return
        stream = self.streams.get(stream_id)
        if stream is None or stream.behaviour == "dead":
            handler.send_error(404, "Not Found")
            return
        if stream.behaviour == "refused":
            self._send_refusal(handler)
            return
        if stream.behaviour in ("hls", "dash") or part:
            serve = self._serve_dash if stream.behaviour == "dash" else self._serve_hls
            serve(handler, username, stream, stream_id, part)
            return
        slot = self._acquire(username, stream_id, handler.connection)
        if slot is None:
            log.info("simulator_refused", username=username, stream_id=stream_id)
            self._send_refusal(handler)
            return
        try:
            self._serve(handler, stream, stream_id)
        finally:
            self._release(username, slot)

    def _serve_hls(
        self, handler: _Handler, username: str, stream: SimStream, stream_id: int, part: str
    ) -> None:
        """The master playlist (no ``part``), a variant's media playlist, or one of
        its segments, which holds the stream's HLS session slot while it is sent."""
        if not part:
            self._send(handler, _master_playlist(stream, stream_id), _PLAYLIST_TYPE)
            return
        with self._cond:
            self._hls_requests.append(f"{stream_id}/{part}")
        variant, _, name = part.partition("/")
        listed = stream.behaviour == "hls" and variant in stream.hls_variants
        media = self._hls.get(variant) if listed and variant not in stream.hls_broken else None
        if media is None or (name != HLS_PLAYLIST and stream.hls_fault == "missing_segments"):
            handler.send_error(404, "Not Found")
        elif name == HLS_PLAYLIST:
            self._send(handler, self._rendition(stream, stream_id, media).encode(), _PLAYLIST_TYPE)
        elif name in media.segments:
            self._send_segment(handler, username, stream_id, media.segments[name], "video/mp2t")
        else:
            handler.send_error(404, "Not Found")

    def _serve_dash(
        self, handler: _Handler, username: str, stream: SimStream, stream_id: int, part: str
    ) -> None:
        """The manifest (no ``part``), or one of its segments, which holds the
        stream's session slot while it is sent."""
        media = self._dash[stream.dash_variants]
        if not part:
            self._send(handler, _dash_manifest(media, stream_id), "application/dash+xml")
            return
        folder, _, name = part.partition("/")
        with self._cond:
            self._dash_requests.append(f"{stream_id}/{name}")
        body = media.files.get(name) if folder == _DASH_PATH else None
        if body is None:
            handler.send_error(404, "Not Found")
        else:
            self._send_segment(handler, username, stream_id, body, "video/mp4")

    def _send_segment(
        self, handler: _Handler, username: str, stream_id: int, body: bytes, content_type: str
    ) -> None:
        """One segment of an HLS or DASH stream, in its session's slot (refused if none)."""
        if not self._open_segment(username, stream_id):
            self._send_refusal(handler)
            return
        try:
            with self._cond:
                self._served[stream_id] = self._served.get(stream_id, 0) + 1
            self._send(handler, body, content_type)
        finally:
            self._close_segment(username, stream_id)

    def _rendition(self, stream: SimStream, stream_id: int, media: HlsMedia) -> str:
        """A variant's media playlist as the stream serves it now."""
        if stream.hls_fault == "stuck":
            return _live(media.playlist, 2)
        if not stream.hls_live:
            return media.playlist
        with self._cond:
            began = self._hls_began.setdefault(stream_id, time.monotonic())
        grown = int((time.monotonic() - began) / HLS_SEGMENT_S)
        return _live(media.playlist, _LIVE_FIRST_SEGMENTS + grown)

    def _open_segment(self, username: str, stream_id: int) -> bool:
        """A segment request joins its stream's HLS session on the login, as panels
        count HLS: one slot while any of its requests is open (so the next segment,
        asked for before this one's thread has let go, is not a second connection)."""
        key = (username, stream_id)
        with self._cond:  # re-entrant: _acquire takes it too
            held = self._hls_sessions.get(key)
            if held is not None:
                self._hls_sessions[key] = (held[0], held[1] + 1)
                return True
            slot = self._acquire(username, stream_id, None)
            if slot is None:
                return False
            self._hls_sessions[key] = (slot, 1)
            return True

    def _close_segment(self, username: str, stream_id: int) -> None:
        key = (username, stream_id)
        with self._cond:
            slot, open_requests = self._hls_sessions[key]
            if open_requests > 1:
                self._hls_sessions[key] = (slot, open_requests - 1)
                return
            del self._hls_sessions[key]
            self._release_locked(username, slot)

    @staticmethod
    def _send(handler: _Handler, body: bytes, content_type: str) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        with contextlib.suppress(OSError):  # the client went away
            handler.wfile.write(body)

    def _send_refusal(self, handler: _Handler) -> None:
        if self.refuse_style == "close":
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        body = f"{self.refuse_reason.lower()}\n".encode()
        handler.send_response(self.refuse_status, self.refuse_reason)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _serve(self, handler: _Handler, stream: SimStream, stream_id: int) -> None:
        behaviour, variant = stream.resolved()
        client = handler.connection
        if behaviour == "close":
            handler.close_connection = True
            client.shutdown(socket.SHUT_RDWR)
            return
        if behaviour == "slow_start" and not self._idle(client, stream.start_delay_s):
            return
        sample = self._samples[variant]
        byte_rate = len(sample) / sample_seconds(variant)
        # Counted before the answer goes out: a client that has read the status
        # line finds itself in ``served``.
        with self._cond:
            self._served[stream_id] = self._served.get(stream_id, 0) + 1
        handler.send_response(200)
        handler.send_header("Content-Type", "video/mp2t")
        handler.send_header("Connection", "close")
        handler.end_headers()
        limit = None
        if behaviour == "stall":
            limit = int(byte_rate * stream.stall_after_s)
        elif behaviour == "end":
            limit = int(byte_rate * stream.end_after_s)
        try:
            self._pace(handler, sample, self._timelines[variant], sample_seconds(variant), limit)
            if behaviour == "stall":
                handler.wfile.flush()
                self._idle(client, None)
            # ``end``: returning closes the connection (HTTP/1.0, Connection: close).
        except OSError:
            pass  # the client went away: that is how most streams end

    def _pace(
        self,
        handler: _Handler,
        sample: bytes,
        times: list[float],
        seconds: float,
        limit: int | None,
    ) -> None:
        """Write ``sample`` in a loop, each chunk when due (after a burst), until told to stop.

        ``times`` says when each chunk of one loop is due (see
        :func:`simulator.media.chunk_times`); a loop lasts ``seconds``.
        """
        started = time.monotonic() - self.burst_s
        sent = 0
        for due_in_loop, chunk in _chunks(sample, times, seconds):
            if self._stopping.is_set():
                return
            if limit is not None and sent >= limit:
                return
            due = started + due_in_loop
            delay = due - time.monotonic()
            # Waiting on the socket (not a bare sleep) notices a client that hung
            # up at once, so its slot is free before the next connection arrives.
            if delay > 0 and not self._idle(handler.connection, delay):
                return
            handler.wfile.write(chunk)
            sent += len(chunk)

    def _idle(self, client: socket.socket, seconds: float | None) -> bool:
        """Hold the connection open without sending.

        Returns:
            True when ``seconds`` passed with the client still there; False when
            the client hung up or the simulator is stopping.
        """
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self._stopping.is_set():
            remaining = _POLL_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return True
            readable, _, _ = select.select([client], [], [], min(remaining, _POLL_S))
            if readable:
                try:
                    data = client.recv(4096, socket.MSG_PEEK)
                except OSError:
                    return False
                if not data:
                    return False
                client.recv(len(data))  # drain whatever the client sends meanwhile
        return False


def _chunks(sample: bytes, times: list[float], seconds: float) -> Iterator[tuple[float, bytes]]:
    """The sample cut in TS-aligned chunks, looping forever, with when each is due."""
    loop = 0
    while True:
        for index, offset in enumerate(range(0, len(sample), CHUNK_BYTES)):
            yield loop * seconds + times[index], sample[offset : offset + CHUNK_BYTES]
        loop += 1


def _parse_path(path: str) -> tuple[str, str, int, str] | None:
    """``(username, password, stream_id, part)`` from an Xtream-style path, or
    ``None``; ``part`` is ``{variant}/{file}`` of an HLS stream's rendition
    (relative to its master playlist), else empty."""
    parts = [unquote(p) for p in urlsplit(path).path.split("/") if p]
    if parts and parts[0] == "live":
        parts = parts[1:]
    if len(parts) not in (3, 5):
        return None
    username, password, name, *part = parts
    name = name.removesuffix(".ts").removesuffix(".m3u8").removesuffix(".mpd")
    if not name.isdigit():
        return None
    return username, password, int(name), "/".join(part)


def _live(playlist: str, segments: int) -> str:
    """``playlist`` as a live one (no end) of its first ``segments``."""
    kept: list[str] = []
    for line in playlist.splitlines():
        if line.startswith(("#EXT-X-ENDLIST", "#EXT-X-PLAYLIST-TYPE")):
            continue
        kept.append(line)
        if line.endswith(".ts"):
            segments -= 1
            if segments == 0:
                break
    return "\n".join(kept) + "\n"


def _dash_manifest(media: DashMedia, stream_id: int) -> bytes:
    """The stream's manifest, its segment templates relative to it under the stream's id."""
    prefix = f"{stream_id}/{_DASH_PATH}/"
    text = media.manifest.replace('initialization="', f'initialization="{prefix}')
    return text.replace('media="', f'media="{prefix}').encode()


def _master_playlist(stream: SimStream, stream_id: int) -> bytes:
    """An HLS master playlist of the stream's variants, in their order; each
    rendition's URI is relative to the master's own."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for name in stream.hls_variants:
        spec = VARIANTS[name]
        bandwidth = (spec.video_kbps + (96 if spec.audio else 0)) * 1000
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={spec.width}x{spec.height}"
        )
        lines.append(f"{stream_id}/{name}/{HLS_PLAYLIST}")
    return ("\n".join(lines) + "\n").encode()
