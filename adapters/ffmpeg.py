"""The real probe: ffmpeg reads a few seconds of a stream with stream copy.

No decoding happens (``-c copy -f null``), so a check costs little CPU. What
the stream is (resolution, fps, codecs, audio layout) comes from the input
dump ffmpeg writes to stderr; the bitrate is the payload ffmpeg copied divided
by the media time it covered (``-progress`` on stdout).

A check is judged by what it measured, never by the wording of one ffmpeg
version (5.1 and newer builds word the same stall differently, and both exit 0): the
media time covered (``out_time``) against ``duration``, the bytes copied, the
wall time, the exit status. The watchdog here, not ffmpeg's ``-rw_timeout``
(a backstop only), decides that data stopped: the media time stood still for
``timeout`` seconds once the input opened (``timeout`` plus the analyse window
before: ffmpeg reports nothing while it analyses), or the wall-clock cap
passed (``duration + timeout``, less a second so that the verdict is in
before the coordinator's hard limit). It then interrupts ffmpeg (SIGINT),
which still prints what it learned of the input, and SIGKILLs it after a
grace. ffmpeg's text is read only to tell apart why an input did not open.
Supported: ffmpeg 4.4 and newer (:func:`check_ffmpeg`).

The child runs in its own process group, killed as a group on cancel and
always once the check is over; on Linux it also gets ``PR_SET_PDEATHSIG``, so
the kernel kills it when the daemon dies, also of SIGKILL, and no connection
outlives the daemon. Children are forked from one long-lived thread, since
that signal follows the forking thread, not the process.

Outcomes and their reasons:

- ``ok``: the input opened, has video, covered ``duration`` of media (a frame
  or so short is fine: :func:`enough_media_s`) and bytes were copied.
- ``busy`` (the login is full, the job is retried later): HTTP 403, 429, 458,
  509 or any answer whose text says max/too many connections (reason
  ``http_<code>`` or ``max_connections``); a close right after connecting
  while other checks run on the account (``closed_on_connect``).
- ``dead``: ``stalled`` (the input opened, then the media stopped growing for
  ``timeout`` seconds, or came too slowly to cover ``duration`` by the cap),
  ``ended`` (ffmpeg's input ended by itself, closed by the server, short of
  ``duration``), ``no_data`` (the input never opened: nothing usable came
  within ``timeout`` plus the analyse window), ``no_video``,
  ``zero_bitrate``, and for an input that did not open: ``http_404``,
  ``http_5xx``, ``http_<code>`` for other 4xx, ``connection_refused``,
  ``connection_closed``, ``open_failed``.
- ``error`` (not the stream's fault): ``account_unauthorized`` (HTTP 401:
  the login is expired, blocked or its password wrong), and on our side
  ``ffmpeg_start_failed``, ``probe_killed`` (the child died of a signal we
  did not send), ``unparsable_output``, ``ffmpeg_exit_<n>``.
- ``cancelled``: the token was cancelled (reason: the token's reason).

This module knows nothing of actors; :class:`FfmpegProbe` is a plain callable
matching :data:`domain.models.Probe`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import IO

import structlog

from adapters import dash
from adapters.hls import Choice, Playlist, choose, looks_like_hls, read_playlist
from adapters.settle import BitrateSettler, SettleRule
from domain.cancel import CancelToken
from domain.models import OutcomeKind, ProbeOutcome, ProbeRequest, StreamInfo
from domain.urls import redact_url

log = structlog.get_logger(__name__)

BUSY_STATUSES = frozenset({403, 429, 458, 509})
"""HTTP answers that mean "this login is full", not "this stream is dead"."""
UNAUTHORIZED_STATUS = 401
"""The login itself is refused (expired, blocked, wrong password): an account error."""
DEFAULT_SETTLE = SettleRule()
"""A check stops once its figures settled (``check.adaptive = true``)."""
MAX_ANALYZE_S = 5.0
"""ffmpeg's default analyse window; a check never analyses longer than it reads."""
_STDERR_HEAD_LINES = 400
_STDERR_TAIL_LINES = 200
_REAP_TIMEOUT_S = 5.0
_READER_JOIN_S = 2.0
_INTERRUPT_GRACE_S = 1.0
"""How long an interrupted ffmpeg may take to print its summary and exit."""

_BUSY_TEXT = re.compile(
    r"max(?:imum)?[ _-]*connections?|too many connections|connection limit", re.IGNORECASE
)
_HTTP_ERROR = re.compile(r"HTTP error (\d{3})\b(.*)")
_SERVER_RETURNED = re.compile(r"Server returned (\d)(\d\d|XX)\b")
_URL_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+")
_PAYLOAD = re.compile(r"\b(video|audio|subtitle|other streams):\s*([\d.]+)\s*(KiB|kB|MiB|MB)\b")
_RESOLUTION = re.compile(r"^(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"^([\d.]+)(k?) (fps|tbr)$")
_SAMPLE_RATE = re.compile(r"^(\d+) Hz$")
_INPUT_HEADER = re.compile(r"^Input #0, ([^,]+(?:,[^,]+)*), from ")
_STREAM_LINE = re.compile(r"^\s*Stream #0:(\d+)\S*: (Video|Audio): (.*)$")
_MAPPED = re.compile(r"^\s*Stream #0:(\d+)\S* -> #\d+:\d+")
_UNIT_BYTES = {"KiB": 1024, "kB": 1000, "MiB": 1024 * 1024, "MB": 1000 * 1000}
_PLAYLIST_TIMEOUT_S = 2.0
"""At most this long to read an HLS playlist or a DASH manifest before the check
(less with a shorter timeout): a few kilobytes, and a viewer's preemption waits
for it. The check's wall-clock cap counts it."""


class FfmpegNotFound(RuntimeError):
    """No usable ffmpeg binary."""


def find_ffmpeg(configured: str = "") -> str:
    """Locate the ffmpeg binary.

    Args:
        configured: The ``check.ffmpeg`` setting; used as is when non-empty.

    Returns:
        ``configured``, else ffmpeg on ``PATH``, else the binary of ``imageio-ffmpeg``.

    Raises:
        FfmpegNotFound: ``configured`` is not an executable file, or nothing was found.
    """
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        message = f"check.ffmpeg: {configured!r} is not an executable file"
        raise FfmpegNotFound(message)
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg

        bundled = str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as exc:
        message = "ffmpeg not found: not on PATH and imageio-ffmpeg has no binary"
        raise FfmpegNotFound(message) from exc
    return bundled


@dataclass(frozen=True)
class FfmpegBuild:
    """An ffmpeg binary that passed :func:`check_ffmpeg`."""

    path: str
    version: str
    """What the binary calls itself, e.g. ``5.1.6-0+deb12u1`` or ``n7.1``."""
    libavformat: tuple[int, int]
    """``(major, minor)`` of its libavformat, the library that reads streams."""


MIN_LIBAVFORMAT = (58, 76)
"""libavformat of ffmpeg 4.4, the oldest release supported (``-stats_period``
and ``out_time_us`` of ``-progress`` exist from there on). The library version
is compared, not the release name, which git builds do not carry."""
_VERSION_LINE = re.compile(r"^ffmpeg version (\S+)", re.MULTILINE)
_LIBAVFORMAT_LINE = re.compile(r"^\s*libavformat\s+(\d+)\.\s*(\d+)\.", re.MULTILINE)
_VERSION_TIMEOUT_S = 10.0


def check_ffmpeg(path: str) -> FfmpegBuild:
    """Make sure ``path`` is an ffmpeg that gives the verdicts this module expects.

    Args:
        path: The binary, usually from :func:`find_ffmpeg`.

    Returns:
        Its version and libavformat version, from ``ffmpeg -version``.

    Raises:
        FfmpegNotFound: ``path`` does not run, is not ffmpeg, or is older than 4.4
            (the message is one line naming the binary).
    """
    try:
        done = subprocess.run(
            [path, "-hide_banner", "-version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        message = f"ffmpeg {path}: does not run ({exc}); check.ffmpeg names the binary"
        raise FfmpegNotFound(message) from exc
    version = _VERSION_LINE.search(done.stdout)
    library = _LIBAVFORMAT_LINE.search(done.stdout)
    if done.returncode != 0 or version is None or library is None:
        message = f"ffmpeg {path}: not ffmpeg (its -version names no libavformat); see check.ffmpeg"
        raise FfmpegNotFound(message)
    build = FfmpegBuild(path, version.group(1), (int(library.group(1)), int(library.group(2))))
    if build.libavformat < MIN_LIBAVFORMAT:
        found = ".".join(map(str, build.libavformat))
        message = (
            f"ffmpeg {path}: version {build.version} (libavformat {found}) is too old; "
            "check.ffmpeg must name ffmpeg 4.4 or newer"
        )
        raise FfmpegNotFound(message)
    return build


def redact_text(text: str) -> str:
    """Redact every URL inside free text (an ffmpeg message) with :func:`redact_url`."""
    return _URL_TEXT.sub(lambda m: redact_url(m.group(0)), text)


# -- parsing (pure functions, tested without processes) ---------------------


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses or brackets."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _input_section(lines: Iterable[str]) -> list[str] | None:
    """The lines of the ``Input #0`` dump, or ``None`` when ffmpeg never opened the input."""
    section: list[str] | None = None
    for line in lines:
        if section is None:
            if line.startswith("Input #0"):
                section = [line]
            continue
        if line.startswith(("Output #", "Stream mapping:", "Input #1")):
            break
        section.append(line)
    return section


def _parse_video(fields: list[str]) -> dict[str, object]:
    found: dict[str, object] = {"video_codec": fields[0].split()[0]}
    for index, item in enumerate(fields[1:], start=1):
        resolution = _RESOLUTION.match(item)
        if resolution:
            found["width"] = int(resolution.group(1))
            found["height"] = int(resolution.group(2))
            continue
        fps = _FPS.match(item)
        if fps and "fps" not in found:
            found["fps"] = float(fps.group(1)) * (1000 if fps.group(2) else 1)
            continue
        if index == 1 and re.match(r"^[a-z][a-z0-9_]*(\(|$)", item):
            found["pixel_format"] = item.split("(")[0]
    return found


def _parse_audio(fields: list[str]) -> dict[str, object]:
    found: dict[str, object] = {"audio_codec": fields[0].split()[0]}
    for index, item in enumerate(fields[1:], start=1):
        rate = _SAMPLE_RATE.match(item)
        if rate:
            found["sample_rate"] = int(rate.group(1))
            if index + 1 < len(fields):
                found["audio_channels"] = fields[index + 1]
            break
    return found


def _mapped_inputs(lines: Iterable[str]) -> set[int] | None:
    """The input streams ffmpeg's ``Stream mapping:`` says it reads, or ``None``
    when it printed none (it never got that far)."""
    mapped: set[int] | None = None
    for line in lines:
        if mapped is None:
            if line.startswith("Stream mapping:"):
                mapped = set()
            continue
        found = _MAPPED.match(line)
        if found is None:
            break
        mapped.add(int(found.group(1)))
    return mapped


def parse_stream_info(stderr_lines: Iterable[str]) -> StreamInfo | None:
    """What the input dump says about the first video and first audio stream
    that ffmpeg reads (the first of all when it did not say which it reads).

    Args:
        stderr_lines: ffmpeg's stderr, line by line.

    Returns:
        The stream's properties (bitrate not included), or ``None`` when the
        input was never opened.
    """
    lines = list(stderr_lines)
    section = _input_section(lines)
    if section is None:
        return None
    mapped = _mapped_inputs(lines)
    header = _INPUT_HEADER.match(section[0])
    found: dict[str, object] = {"stream_type": header.group(1) if header else None}
    for line in section[1:]:
        stream = _STREAM_LINE.match(line)
        if stream is None:
            continue
        index, kind, rest = stream.groups()
        if mapped and int(index) not in mapped:
            continue
        fields = _split_top(rest)
        if not fields:
            continue
        if kind == "Video" and "video_codec" not in found:
            found.update(_parse_video(fields))
        elif kind == "Audio" and "audio_codec" not in found:
            found.update(_parse_audio(fields))
    return _stream_info(found)


def _stream_info(found: dict[str, object]) -> StreamInfo:
    def text(key: str) -> str | None:
        value = found.get(key)
        return value if isinstance(value, str) else None

    def number(key: str) -> int | None:
        value = found.get(key)
        return value if isinstance(value, int) else None

    fps = found.get("fps")
    width, height = number("width"), number("height")
    return StreamInfo(
        resolution=f"{width}x{height}" if width and height else None,
        width=width,
        height=height,
        fps=fps if isinstance(fps, float) else None,
        video_codec=text("video_codec"),
        audio_codec=text("audio_codec"),
        audio_channels=text("audio_channels"),
        sample_rate=number("sample_rate"),
        pixel_format=text("pixel_format"),
        stream_type=text("stream_type"),
    )


def parse_payload_bytes(stderr_lines: Iterable[str]) -> int | None:
    """Bytes ffmpeg copied, from its closing ``video:..KiB audio:..KiB`` summary."""
    total: int | None = None
    for line in stderr_lines:
        matches = _PAYLOAD.findall(line)
        if not matches:
            continue
        total = 0
        for _kind, amount, unit in matches:
            total += int(float(amount) * _UNIT_BYTES[unit])
    return total


@dataclass(frozen=True)
class HttpFailure:
    """An HTTP error ffmpeg reported while opening the input."""

    status: int | None
    """The exact code when ffmpeg printed it; ``None`` for a bare ``4XX``/``5XX``."""
    family: int
    """4 or 5."""
    text: str


def parse_http_failure(stderr_lines: Iterable[str]) -> HttpFailure | None:
    """The HTTP error of the answer, if ffmpeg got one."""
    exact: HttpFailure | None = None
    family: HttpFailure | None = None
    for line in stderr_lines:
        error = _HTTP_ERROR.search(line)
        if error and exact is None:
            code = int(error.group(1))
            exact = HttpFailure(code, code // 100, error.group(2).strip())
            continue
        returned = _SERVER_RETURNED.search(line)
        if returned and family is None:
            digits = returned.group(2)
            code_text = returned.group(1) + digits
            status = int(code_text) if digits.isdigit() else None
            text = line[returned.end() :].strip()
            family = HttpFailure(status, int(returned.group(1)), text)
    return exact or family


# -- starting a child that dies with us ------------------------------------

_PR_SET_PDEATHSIG = 1
"""``prctl`` option (linux/prctl.h): the signal a child gets when its parent dies."""


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, or ``None`` where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()
"""Looked up once, in the parent: the child after ``fork`` only calls it."""


def _die_with(parent: int) -> None:
    """In the child, before exec: be SIGKILLed when ``parent`` dies.

    A parent that died between ``fork`` and here is no longer our parent, and
    the signal would never come: exit instead of running without a parent.
    """
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


class _Spawner:
    """Starts every child from one thread that lives as long as the process.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends,
    not the process: a child forked by a probe thread would die with that
    thread. Forking from this one long-lived thread ties every child to the
    process, whichever thread asked (the first caller starts the thread).
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ffmpeg-spawn")

    def popen(self, argv: list[str], pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[str]:
        """Start ``argv`` in its own session, pipes for stdout and stderr, no stdin.

        ``pass_fds`` stay open in the child under the same numbers.

        Raises:
            OSError: the binary could not be started.
            RuntimeError: the interpreter is shutting down.
        """
        return self._pool.submit(self._popen, argv, os.getpid(), pass_fds).result()

    @staticmethod
    def _popen(argv: list[str], parent: int, pass_fds: tuple[int, ...]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            argv,
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
            preexec_fn=functools.partial(_die_with, parent) if _PRCTL is not None else None,  # noqa: PLW1509 - only prctl runs in the child
        )


_SPAWNER = _Spawner()
CHILDREN_DIE_WITH_PARENT = _PRCTL is not None
"""True where a probe's ffmpeg is killed by the kernel when the daemon dies
(Linux); elsewhere it lives until its own ``-rw_timeout``/``-t`` end it."""


# -- one run of ffmpeg ------------------------------------------------------


class _Run:
    """One ffmpeg child: its readers, its watchdog state, and how it dies.

    The child is never reaped before :meth:`finish`: an exit is observed with
    ``waitid(WNOWAIT)``, so its pid (and process group id) cannot be reused
    while a cancel callback might still signal it.
    """

    def __init__(
        self,
        proc: subprocess.Popen[str],
        frames: IO[str] | None = None,
        settle: SettleRule | None = None,
    ) -> None:
        self.proc = proc
        self.frames = frames
        """ffmpeg's ``framecrc`` output (one line per packet), when the check may settle."""
        self.settler = BitrateSettler(settle) if settle is not None else None
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._done = False
        self.kill_reason: str | None = None
        self.exited = threading.Event()
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self.opened_at: float | None = None
        """When ffmpeg printed the input dump (it had analysed the stream)."""
        self.last_activity = self.started
        """When the media time last grew (or the input opened)."""
        self.out_time_us = 0
        self.progress: dict[str, str] = {}
        self.stderr_head: list[str] = []
        self.stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._threads = [
            threading.Thread(target=self._watch_exit, name=f"ffmpeg-{proc.pid}-wait", daemon=True),
            threading.Thread(
                target=self._read_progress, name=f"ffmpeg-{proc.pid}-out", daemon=True
            ),
            threading.Thread(target=self._read_stderr, name=f"ffmpeg-{proc.pid}-err", daemon=True),
        ]
        if frames is not None:
            self._threads.append(
                threading.Thread(
                    target=self._read_frames, name=f"ffmpeg-{proc.pid}-frames", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def _watch_exit(self) -> None:
        try:
            result = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            result = None
        if result is not None:
            if result.si_code == os.CLD_EXITED:
                self.exit_code = result.si_status
            else:
                self.exit_signal = result.si_status
        self.exited.set()

    def _read_progress(self) -> None:
        stream = self.proc.stdout
        if stream is None:
            return
        for raw in stream:
            key, _, value = raw.strip().partition("=")
            with self._lock:
                self.progress[key] = value
                if key == "out_time_us" and value.isdigit() and int(value) > self.out_time_us:
                    self.out_time_us = int(value)
                    self.last_activity = time.monotonic()

    def _read_stderr(self) -> None:
        stream = self.proc.stderr
        if stream is None:
            return
        for raw in stream:
            line = raw.rstrip("\r\n")
            with self._lock:
                if line.startswith("Input #0") and self.opened_at is None:
                    self.opened_at = self.last_activity = time.monotonic()
                if len(self.stderr_head) < _STDERR_HEAD_LINES:
                    self.stderr_head.append(line)
                else:
                    self.stderr_tail.append(line)

    def _read_frames(self) -> None:
        """Feed the packet lines to the settler; stop ffmpeg once the figures are in.

        The figures: the input dump (resolution, codecs, fps) and a bitrate
        estimate that has settled. The connection is the scarce thing, so the
        child is killed at once: the bitrate comes from the packets read, not
        from ffmpeg's closing summary.
        """
        frames, settler = self.frames, self.settler
        if frames is None or settler is None:
            return
        stopping = False
        for raw in frames:  # read to the end: the kill closes the pipe
            if not settler.settled:
                settler.feed(raw.rstrip("\n"))
            if settler.settled and not stopping and self._figures_known():
                stopping = True
                self.kill("settled")

    def _figures_known(self) -> bool:
        with self._lock:
            if self.opened_at is None:
                return False
            head = list(self.stderr_head)
        info = parse_stream_info(head)
        return bool(info and info.video_codec and info.resolution and info.fps)

    def kill(self, reason: str) -> None:
        """Kill the process group for ``reason``; the first reason wins. Any thread."""
        self._signal(reason, signal.SIGKILL)

    def interrupt(self, reason: str) -> None:
        """Ask ffmpeg to stop (SIGINT) for ``reason``, SIGKILL if it has not after a grace.

        Interrupted, ffmpeg still prints what it learned of the input (killed
        in the middle of its analysis it would print nothing), so a stream that
        stalled is told apart from one that never sent anything.
        """
        self._signal(reason, signal.SIGINT)
        if not self.exited.wait(_INTERRUPT_GRACE_S):
            self.kill(reason)

    def _signal(self, reason: str, signum: int) -> None:
        with self._lock:
            if self._done or self.exited.is_set():  # ended by itself: nothing to stop
                return
            if self.kill_reason is None:
                self.kill_reason = reason
            _killpg(self.proc.pid, signum)

    def watch(self, no_data_s: float, analyse_s: float, wall_s: float) -> None:
        """Block until ffmpeg exits, killing it when media stops growing or time runs out.

        Args:
            no_data_s: Seconds the media time may stay still once the input opened.
            analyse_s: Added before it opened: ffmpeg reports nothing while it
                analyses the input, which takes up to that much media.
            wall_s: The cap on the whole run.
        """
        hard_deadline = self.started + wall_s
        while True:
            with self._lock:
                quiet_s = no_data_s if self.opened_at is not None else no_data_s + analyse_s
                quiet_deadline = self.last_activity + quiet_s
            deadline = min(quiet_deadline, hard_deadline)
            if self.exited.wait(max(0.0, deadline - time.monotonic())):
                return
            now = time.monotonic()
            if now >= hard_deadline:
                self.interrupt("wall_cap")
                return
            if now >= quiet_deadline:
                with self._lock:
                    quiet_s = no_data_s if self.opened_at is not None else no_data_s + analyse_s
                    still_quiet = now >= self.last_activity + quiet_s
                if still_quiet:
                    self.interrupt("no_data")
                    return

    def finish(self) -> None:
        """Kill whatever is left of the group, reap the child, drain the pipes."""
        with self._lock:
            _killpg(self.proc.pid)
            self._done = True
        try:
            self.proc.wait(timeout=_REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("ffmpeg_unreaped", pid=self.proc.pid)
        for thread in self._threads:
            thread.join(timeout=_READER_JOIN_S)
        for pipe in (self.proc.stdout, self.proc.stderr, self.frames):
            if pipe is not None:
                pipe.close()

    @property
    def media_s(self) -> float:
        """Seconds of media ffmpeg copied (``out_time`` of ``-progress``)."""
        with self._lock:
            return self.out_time_us / 1_000_000

    def stderr_lines(self) -> list[str]:
        """What was kept of stderr: the head (with the input dump) and the tail."""
        with self._lock:
            return [*self.stderr_head, *self.stderr_tail]


def _killpg(pgid: int, signum: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


# -- the probe ---------------------------------------------------------------


class FfmpegProbe:
    """Checks one stream with ffmpeg in stream-copy mode; a :data:`~domain.models.Probe`.

    Args:
        ffmpeg_path: The binary, usually from :func:`find_ffmpeg`.
        user_agent_default: Sent when a request carries no user agent.
        on_spawn: Called with the child's pid right after it starts (tests and
            the CPU benchmark use it); never required.
        settle: When a check may stop before ``duration`` (see
            :mod:`adapters.settle`); ``None`` reads the whole ``duration``.
    """

    def __init__(
        self,
        ffmpeg_path: str,
        user_agent_default: str | None = None,
        *,
        on_spawn: Callable[[int], None] | None = None,
        settle: SettleRule | None = DEFAULT_SETTLE,
    ) -> None:
        self.ffmpeg_path = ffmpeg_path
        self.user_agent_default = user_agent_default
        self.on_spawn = on_spawn
        self.settle = settle

    def command(
        self,
        request: ProbeRequest,
        frames_fd: int | None = None,
        variant: Choice | dash.Selection | None = None,
    ) -> list[str]:
        """The ffmpeg argv for ``request``; with ``frames_fd``, packets are listed there.

        ``variant``: the HLS master playlist's variant to read (see
        :mod:`adapters.hls`): its own playlist, or only its program of the
        master; or the DASH manifest's video and sound to map (see
        :mod:`adapters.dash`); else every video and audio stream of ``request.url``.
        """
        # The watchdog of _Run decides when data stopped; ffmpeg's own I/O
        # timeout is only a backstop past the wall-clock cap, so no build's
        # way of reporting its timeout changes a verdict.
        backstop_us = str(int((request.duration + request.timeout + 5) * 1_000_000))
        analyze_us = str(max(100_000, int(_analyse_s(request) * 1_000_000)))
        cmd = [self.ffmpeg_path, "-hide_banner", "-nostdin", "-loglevel", "info"]
        cmd += ["-progress", "pipe:1", "-stats_period", "0.5"]
        user_agent = request.user_agent or self.user_agent_default
        if user_agent:
            cmd += ["-user_agent", user_agent]
        url, video, audio = request.url, "0:v?", "0:a?"
        if isinstance(variant, dash.Selection):
            if variant.video is not None:
                video = f"0:v:{variant.video}?"
            if variant.audio is not None:
                audio = f"0:a:{variant.audio}?"
        elif variant is not None and variant.url is not None:
            url = variant.url  # its own playlist: nothing of the others is opened
        elif variant is not None:  # the master, its program only
            video, audio = f"0:p:{variant.index}:v?", f"0:p:{variant.index}:a?"
        cmd += ["-rw_timeout", backstop_us, "-analyzeduration", analyze_us, "-i", url]
        cmd += ["-t", f"{request.duration:g}", "-map", video, "-map", audio]
        if frames_fd is None:
            cmd += ["-c", "copy", "-f", "null", "-"]
        else:
            # Still no decoding: framecrc writes one line per copied packet.
            cmd += ["-c", "copy", "-f", "framecrc", f"pipe:{frames_fd}"]
        return cmd

    def __call__(self, request: ProbeRequest, token: CancelToken) -> ProbeOutcome:
        """Check ``request.url``; see :data:`domain.models.Probe` for the contract."""
        bound = log.bind(stream_id=request.stream_id, url=redact_url(request.url))
        began = time.monotonic()
        variant, playlist = (None, None) if token.cancelled else self._variant(request)
        if token.cancelled:  # before the check, or while its playlist was read
            return ProbeOutcome("cancelled", reason=token.reason)
        checked = self._run(request, token, variant, began, bound)
        if isinstance(checked, ProbeOutcome):
            return checked
        outcome, run = checked
        if isinstance(variant, Choice) and playlist is not None and not token.cancelled:
            # A player whose variant plays nothing switches to the next best (once
            # here). Not so for DASH: ffmpeg opens the first segment of every
            # representation and fails the whole manifest when one is gone.
            failed = _falls_back(outcome, run, request, began)
            after = choose(playlist, skip={variant.index}) if failed else None
            if after is not None:
                bound.info("probe_variant_failed", reason=outcome.reason, hls_variant=variant.index)
                variant = after
                checked = self._run(request, token, variant, began, bound)
                if isinstance(checked, ProbeOutcome):
                    return checked
                outcome, run = checked
        bound.info(
            "probe_finished",
            kind=outcome.kind,
            reason=outcome.reason,
            resolution=outcome.info.resolution,
            bitrate_kbps=outcome.info.bitrate_kbps,
            media_s=round(_media_read_s(run), 2),
            settled=run.kill_reason == "settled",
            **_variant_fields(variant),
            elapsed_s=round(time.monotonic() - run.started, 2),
            exit_code=run.exit_code,
        )
        if outcome.kind == "error":
            bound.warning("probe_stderr_tail", tail=redact_text("\n".join(run.stderr_lines()[-8:])))
        return outcome

    def _run(
        self,
        request: ProbeRequest,
        token: CancelToken,
        variant: Choice | dash.Selection | None,
        began: float,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> tuple[ProbeOutcome, _Run] | ProbeOutcome:
        """One ffmpeg run of the check and its verdict (only the verdict if ffmpeg
        could not start), within what is left of the check's wall-clock budget."""
        frames_read, frames_write = os.pipe() if self.settle is not None else (None, None)
        fds = () if frames_write is None else (frames_write,)
        try:
            proc = _SPAWNER.popen(self.command(request, frames_write, variant), pass_fds=fds)
        except (OSError, RuntimeError, subprocess.SubprocessError, ValueError) as exc:
            # RuntimeError: the interpreter is exiting; SubprocessError: the
            # child's set-up (death signal) failed before exec.
            bound.error("probe_start_failed", error=str(exc), ffmpeg=self.ffmpeg_path)
            if frames_read is not None:
                os.close(frames_read)
            return ProbeOutcome("error", reason="ffmpeg_start_failed")
        finally:
            if frames_write is not None:
                os.close(frames_write)  # the child has its own copy; EOF comes when it exits
        frames = None
        if frames_read is not None:
            frames = open(frames_read, encoding="ascii", errors="replace")  # noqa: SIM115 - closed by _Run.finish
        bound.debug(
            "probe_started", pid=proc.pid, duration=request.duration, ffmpeg=self.ffmpeg_path
        )
        run: _Run | None = None
        try:
            run = _Run(proc, frames, self.settle)
            token.on_cancel(lambda: run.kill("cancelled") if run is not None else None)
            if self.on_spawn is not None:
                self.on_spawn(proc.pid)
            # The playlist's read (and a run before this one) came out of the same budget.
            wall_s = _wall_s(request) - (run.started - began)
            run.watch(no_data_s=request.timeout, analyse_s=_analyse_s(request), wall_s=wall_s)
        finally:
            if run is None:  # its threads could not start: nothing else closes these
                _killpg(proc.pid)
                proc.kill()
                proc.wait()
                if frames is not None:
                    frames.close()
            else:
                run.finish()
        return _classify(run, request, token), run

    def _variant(
        self, request: ProbeRequest
    ) -> tuple[Choice | dash.Selection | None, Playlist | None]:
        """What to read when ``request.url`` is an HLS master playlist of several
        variants (:func:`adapters.hls.choose`) or a DASH manifest of several
        representations (:func:`adapters.dash.choose`), else ``None``; and the
        HLS playlist, should its variant play nothing."""
        user_agent = request.user_agent or self.user_agent_default
        timeout_s = min(request.timeout, _PLAYLIST_TIMEOUT_S)
        if looks_like_hls(request.url):
            playlist = read_playlist(request.url, user_agent, timeout_s)
            return (None, None) if playlist is None else (choose(playlist), playlist)
        if dash.looks_like_dash(request.url):
            manifest = dash.read_manifest(request.url, user_agent, timeout_s)
            return (None if manifest is None else dash.choose(manifest.text)), None
        return None, None


def _media_read_s(run: _Run) -> float:
    """Media seconds the run read, for the log: ``out_time`` comes every half
    second, so a run stopped once its figures settled (often within half a
    second of a burst) is counted by its packets."""
    settled_s = run.settler.media_s if run.settler is not None else 0.0
    return max(run.media_s, settled_s)


def _falls_back(outcome: ProbeOutcome, run: _Run, request: ProbeRequest, began: float) -> bool:
    """Whether a check goes on to the next best variant: the chosen one was
    dead without ffmpeg ever opening it (its playlist or segments refused, or
    silent), and the check has time left for all of ``duration``. (Opened is
    told by the input dump: ``out_time`` comes every half second and lags a
    burst of media.)"""
    if outcome.kind != "dead" or run.opened_at is not None:
        return False
    return _wall_s(request) - (time.monotonic() - began) >= request.duration


def _variant_fields(variant: Choice | dash.Selection | None) -> dict[str, int | None]:
    """What ``probe_finished`` says of the variant read, if one was chosen."""
    if isinstance(variant, dash.Selection):
        return {"dash_video": variant.video, "dash_audio": variant.audio}
    return {"hls_variant": None if variant is None else variant.index}


def _wall_s(request: ProbeRequest) -> float:
    """When the watchdog interrupts a run that has not covered ``duration`` yet.

    Early enough that the interrupted ffmpeg has exited by ``duration +
    timeout``, the hard limit the coordinator holds every check to: the probe
    gives its own verdict rather than being cancelled.
    """
    slack = max(request.timeout - _INTERRUPT_GRACE_S, request.timeout / 2)
    return request.duration + slack


def _analyse_s(request: ProbeRequest) -> float:
    """Seconds of media ffmpeg analyses before it opens the input (and reports progress)."""
    return min(request.duration, MAX_ANALYZE_S)


def enough_media_s(duration: float) -> float:
    """The media time a check must cover to count as having played ``duration`` seconds.

    ``-t`` stops at a packet boundary, so a full check can end a frame or an
    audio packet short of ``duration``; anything clearly shorter means the
    data stopped.
    """
    return max(0.0, duration * (1 - _MEDIA_SHORTFALL) - _MEDIA_SLACK_S)


_MEDIA_SHORTFALL = 0.1
_MEDIA_SLACK_S = 0.1


def _bitrate_kbps(run: _Run, stderr: list[str]) -> float | None:
    seconds = run.media_s
    if seconds <= 0:
        return None
    payload = parse_payload_bytes(stderr)
    if payload is None:
        size = run.progress.get("total_size", "")
        payload = int(size) if size.isdigit() else None
    if payload is None:
        return None
    return round(payload * 8 / seconds / 1000, 1)


def _http_outcome(http: HttpFailure) -> ProbeOutcome:
    label = f"http_{http.status}" if http.status else f"http_{http.family}xx"
    if http.status in BUSY_STATUSES or _BUSY_TEXT.search(http.text):
        return ProbeOutcome("busy", reason=label)
    if http.status == UNAUTHORIZED_STATUS:
        # The login, not the stream: expired, blocked or a wrong password.
        return ProbeOutcome("error", reason="account_unauthorized")
    return ProbeOutcome("dead", reason="http_5xx" if http.family == 5 else label)


_CLOSED_MARKERS = ("End of file", "Connection reset by peer", "Error reading HTTP response")
_OPEN_FAILURES: tuple[tuple[str, OutcomeKind, str], ...] = (
    ("Connection refused", "dead", "connection_refused"),
    ("Error opening input", "dead", "open_failed"),
)


def _open_failure(stderr: list[str], request: ProbeRequest) -> ProbeOutcome | None:
    """Classify an input that did not open: busy account, dead stream, or None."""
    http = parse_http_failure(stderr)
    if http is not None:
        return _http_outcome(http)
    text = "\n".join(stderr)
    if _BUSY_TEXT.search(text):
        return ProbeOutcome("busy", reason="max_connections")
    if any(marker in text for marker in _CLOSED_MARKERS):
        # A close right after connecting while other checks hold this login is
        # the provider's way of saying "full"; on its own it is a dead stream.
        if request.other_checks_running > 0:
            return ProbeOutcome("busy", reason="closed_on_connect")
        return ProbeOutcome("dead", reason="connection_closed")
    for marker, kind, reason in _OPEN_FAILURES:
        if marker in text:
            return ProbeOutcome(kind, reason=reason)
    # ffmpeg before 6 names the input and its error on one line ("<url>: Invalid
    # data found when processing input"), where newer builds say "Error opening
    # input": the same stream, so the same verdict.
    named = f"{request.url}: "
    opened_not = any(line.startswith(named) for line in stderr)
    return ProbeOutcome("dead", reason="open_failed") if opened_not else None


def _classify(run: _Run, request: ProbeRequest, token: CancelToken) -> ProbeOutcome:
    """Turn a finished ffmpeg run into a :class:`ProbeOutcome`.

    ``cancelled`` only when the cancel killed ffmpeg: one that came after
    ffmpeg had ended by itself leaves what the whole check measured standing.
    """
    if run.kill_reason == "cancelled":
        return ProbeOutcome("cancelled", reason=token.reason or "cancelled")
    stderr = run.stderr_lines()
    info = parse_stream_info(stderr)
    if run.kill_reason is not None:
        return _classify_stopped(run, info)
    if run.exit_signal is not None:
        # Not our SIGKILL (that would have set kill_reason): someone else killed it.
        return ProbeOutcome("error", info=info or StreamInfo(), reason="probe_killed")
    if info is None:
        failure = _open_failure(stderr, request)
        if failure is not None:
            return failure
        reason = "unparsable_output" if run.exit_code == 0 else f"ffmpeg_exit_{run.exit_code}"
        return ProbeOutcome("error", reason=reason)
    return _classify_opened(run, request, info, stderr)


def _classify_stopped(run: _Run, info: StreamInfo | None) -> ProbeOutcome:
    """Classify a run we stopped: its figures settled, or our watchdog gave up on it."""
    if run.kill_reason == "settled" and info is not None and run.settler is not None:
        # Stopped once the figures were in (_Run._read_frames): resolution,
        # codecs and fps from the input dump, the bitrate from the packets.
        return ProbeOutcome("ok", info=replace(info, bitrate_kbps=run.settler.kbps))
    # Our watchdog: the media time stood still for ``timeout`` seconds, or the
    # wall-clock cap passed before ``duration`` of media came.
    return ProbeOutcome("dead", info=info or StreamInfo(), reason="stalled" if info else "no_data")


def _classify_opened(
    run: _Run, request: ProbeRequest, info: StreamInfo, stderr: list[str]
) -> ProbeOutcome:
    """Classify a run whose input opened (ffmpeg printed the input dump) and ended by itself."""
    if info.video_codec is None:
        return ProbeOutcome("dead", info=info, reason="no_video")
    if run.media_s < enough_media_s(request.duration):
        # ffmpeg stopped before the watchdog saw the data stop: the input
        # ended (closed by the server, or broken) short of what was asked.
        return ProbeOutcome("dead", info=info, reason="ended")
    if run.exit_code != 0:
        return ProbeOutcome("error", info=info, reason=f"ffmpeg_exit_{run.exit_code}")
    bitrate = _bitrate_kbps(run, stderr)
    if not bitrate:
        return ProbeOutcome("dead", info=info, reason="zero_bitrate")
    return ProbeOutcome("ok", info=replace(info, bitrate_kbps=bitrate))
