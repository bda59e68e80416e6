"""The real probe: ffmpeg reads a few seconds of a stream with stream copy.

No decoding happens (``-c copy -f null``), so a check costs little CPU. What
the stream is (resolution, fps, codecs, audio layout) comes from the input
dump ffmpeg writes to stderr; the bitrate is the payload ffmpeg copied divided
by the media time it covered (``-progress`` on stdout). The child runs in its
own process group and is killed as a group: on cancel, when no data arrives
for ``timeout`` seconds, at the wall-clock cap of ``duration + timeout``, and
always once the check is over, so no ffmpeg outlives its check.

Outcomes and their reasons:

- ``ok``: the input opened, has video, and bytes were copied.
- ``busy`` (the login is full, the job is retried later): HTTP 403, 429, 458,
  509 or any answer whose text says max/too many connections (reason
  ``http_<code>`` or ``max_connections``); a close right after connecting
  while other checks run on the account (``closed_on_connect``).
- ``dead``: ``http_404``, ``http_5xx``, ``http_<code>`` for other 4xx,
  ``connection_refused``, ``connection_closed``, ``open_failed``,
  ``no_video``, ``zero_bitrate``, ``no_data`` (nothing new for ``timeout``
  seconds, before or after the input opened) and ``timeout`` (the wall-clock
  cap of ``duration + timeout`` passed while data still trickled).
- ``cancelled``: the token was cancelled (reason: the token's reason).
- ``error`` (our side): ``ffmpeg_start_failed``, ``probe_killed`` (the child
  died of a signal we did not send), ``unparsable_output``, ``ffmpeg_exit_<n>``.

This module knows nothing of actors; :class:`FfmpegProbe` is a plain callable
matching :data:`domain.models.Probe`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import structlog

from domain.cancel import CancelToken
from domain.models import OutcomeKind, ProbeOutcome, ProbeRequest, StreamInfo
from domain.urls import redact_url

log = structlog.get_logger(__name__)

BUSY_STATUSES = frozenset({403, 429, 458, 509})
"""HTTP answers that mean "this login is full", not "this stream is dead"."""
MAX_ANALYZE_S = 5.0
"""ffmpeg's default analyse window; a check never analyses longer than it reads."""
_STDERR_HEAD_LINES = 400
_STDERR_TAIL_LINES = 200
_REAP_TIMEOUT_S = 5.0
_READER_JOIN_S = 2.0

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
_STREAM_LINE = re.compile(r"^\s*Stream #0:\d+\S*: (Video|Audio): (.*)$")
_UNIT_BYTES = {"KiB": 1024, "kB": 1000, "MiB": 1024 * 1024, "MB": 1000 * 1000}


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


def parse_stream_info(stderr_lines: Iterable[str]) -> StreamInfo | None:
    """What the input dump says about the first video and first audio stream.

    Args:
        stderr_lines: ffmpeg's stderr, line by line.

    Returns:
        The stream's properties (bitrate not included), or ``None`` when the
        input was never opened.
    """
    section = _input_section(stderr_lines)
    if section is None:
        return None
    header = _INPUT_HEADER.match(section[0])
    found: dict[str, object] = {"stream_type": header.group(1) if header else None}
    for line in section[1:]:
        stream = _STREAM_LINE.match(line)
        if stream is None:
            continue
        kind, rest = stream.groups()
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


# -- one run of ffmpeg ------------------------------------------------------


class _Run:
    """One ffmpeg child: its readers, its watchdog state, and how it dies.

    The child is never reaped before :meth:`finish`: an exit is observed with
    ``waitid(WNOWAIT)``, so its pid (and process group id) cannot be reused
    while a cancel callback might still signal it.
    """

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._done = False
        self.kill_reason: str | None = None
        self.exited = threading.Event()
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self.last_activity = self.started
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
                if line.startswith("Input #0"):
                    self.last_activity = time.monotonic()
                if len(self.stderr_head) < _STDERR_HEAD_LINES:
                    self.stderr_head.append(line)
                else:
                    self.stderr_tail.append(line)

    def kill(self, reason: str) -> None:
        """Kill the process group for ``reason``; the first reason wins. Any thread."""
        with self._lock:
            if self._done:
                return
            if self.kill_reason is None:
                self.kill_reason = reason
            _killpg(self.proc.pid)

    def watch(self, no_data_s: float, wall_s: float) -> None:
        """Block until ffmpeg exits, killing it when data stops or time runs out."""
        hard_deadline = self.started + wall_s
        while True:
            with self._lock:
                quiet_deadline = self.last_activity + no_data_s
            deadline = min(quiet_deadline, hard_deadline)
            if self.exited.wait(max(0.0, deadline - time.monotonic())):
                return
            now = time.monotonic()
            if now >= hard_deadline:
                self.kill("timeout")
            elif now >= quiet_deadline:
                with self._lock:
                    still_quiet = now >= self.last_activity + no_data_s
                if still_quiet:
                    self.kill("no_data")

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
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def stderr_lines(self) -> list[str]:
        """What was kept of stderr: the head (with the input dump) and the tail."""
        with self._lock:
            return [*self.stderr_head, *self.stderr_tail]


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# -- the probe ---------------------------------------------------------------


class FfmpegProbe:
    """Checks one stream with ffmpeg in stream-copy mode; a :data:`~domain.models.Probe`.

    Args:
        ffmpeg_path: The binary, usually from :func:`find_ffmpeg`.
        user_agent_default: Sent when a request carries no user agent.
        on_spawn: Called with the child's pid right after it starts (tests and
            the CPU benchmark use it); never required.
    """

    def __init__(
        self,
        ffmpeg_path: str,
        user_agent_default: str | None = None,
        *,
        on_spawn: Callable[[int], None] | None = None,
    ) -> None:
        self.ffmpeg_path = ffmpeg_path
        self.user_agent_default = user_agent_default
        self.on_spawn = on_spawn

    def command(self, request: ProbeRequest) -> list[str]:
        """The ffmpeg argv for ``request``."""
        timeout_us = str(max(1, int(request.timeout * 1_000_000)))
        analyze_us = str(max(100_000, int(min(request.duration, MAX_ANALYZE_S) * 1_000_000)))
        cmd = [self.ffmpeg_path, "-hide_banner", "-nostdin", "-loglevel", "info"]
        cmd += ["-progress", "pipe:1", "-stats_period", "0.5"]
        user_agent = request.user_agent or self.user_agent_default
        if user_agent:
            cmd += ["-user_agent", user_agent]
        cmd += ["-rw_timeout", timeout_us, "-analyzeduration", analyze_us, "-i", request.url]
        cmd += ["-t", f"{request.duration:g}", "-map", "0:v?", "-map", "0:a?"]
        cmd += ["-c", "copy", "-f", "null", "-"]
        return cmd

    def __call__(self, request: ProbeRequest, token: CancelToken) -> ProbeOutcome:
        """Check ``request.url``; see :data:`domain.models.Probe` for the contract."""
        bound = log.bind(stream_id=request.stream_id, url=redact_url(request.url))
        if token.cancelled:
            return ProbeOutcome("cancelled", reason=token.reason)
        try:
            proc = subprocess.Popen(
                self.command(request),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except OSError as exc:
            bound.error("probe_start_failed", error=str(exc), ffmpeg=self.ffmpeg_path)
            return ProbeOutcome("error", reason="ffmpeg_start_failed")
        bound.debug("probe_started", pid=proc.pid, duration=request.duration)
        run: _Run | None = None
        try:
            run = _Run(proc)
            token.on_cancel(lambda: run.kill("cancelled") if run is not None else None)
            if self.on_spawn is not None:
                self.on_spawn(proc.pid)
            # While ffmpeg analyses the input (up to the analyse window of media,
            # read at the stream's own pace) it reports no progress; ffmpeg's own
            # -rw_timeout catches a silent socket, this guard a stuck process.
            quiet = request.timeout + min(request.duration, MAX_ANALYZE_S)
            run.watch(no_data_s=quiet, wall_s=request.duration + request.timeout)
        finally:
            if run is None:
                _killpg(proc.pid)
                proc.kill()
                proc.wait()
            else:
                run.finish()
        outcome = _classify(run, request, token)
        bound.info(
            "probe_finished",
            kind=outcome.kind,
            reason=outcome.reason,
            resolution=outcome.info.resolution,
            bitrate_kbps=outcome.info.bitrate_kbps,
            elapsed_s=round(time.monotonic() - run.started, 2),
        )
        if outcome.kind == "error":
            bound.warning("probe_stderr_tail", tail=redact_text("\n".join(run.stderr_lines()[-8:])))
        return outcome


def _bitrate_kbps(run: _Run, stderr: list[str]) -> float | None:
    seconds = run.out_time_us / 1_000_000
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
    return ProbeOutcome("dead", reason="http_5xx" if http.family == 5 else label)


_CLOSED_MARKERS = ("End of file", "Connection reset by peer", "Error reading HTTP response")
_OPEN_FAILURES: tuple[tuple[str, OutcomeKind, str], ...] = (
    ("Connection refused", "dead", "connection_refused"),
    ("timed out", "dead", "no_data"),
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
    return None


def _classify(run: _Run, request: ProbeRequest, token: CancelToken) -> ProbeOutcome:
    """Turn a finished ffmpeg run into a :class:`ProbeOutcome`."""
    if token.cancelled or run.kill_reason == "cancelled":
        return ProbeOutcome("cancelled", reason=token.reason or "cancelled")
    stderr = run.stderr_lines()
    info = parse_stream_info(stderr)
    if run.kill_reason in ("no_data", "timeout"):
        return ProbeOutcome("dead", info=info or StreamInfo(), reason=run.kill_reason)
    if run.exit_signal is not None:
        # Not our SIGKILL (that would have set kill_reason): someone else killed it.
        return ProbeOutcome("error", info=info or StreamInfo(), reason="probe_killed")
    if info is None:
        failure = _open_failure(stderr, request)
        if failure is not None:
            return failure
        reason = "unparsable_output" if run.exit_code == 0 else f"ffmpeg_exit_{run.exit_code}"
        return ProbeOutcome("error", reason=reason)
    return _classify_opened(run, info, stderr)


def _classify_opened(run: _Run, info: StreamInfo, stderr: list[str]) -> ProbeOutcome:
    """Classify a run whose input opened (ffmpeg printed the input dump)."""
    if info.video_codec is None:
        return ProbeOutcome("dead", info=info, reason="no_video")
    if any("Error during demuxing" in line and "timed out" in line for line in stderr):
        return ProbeOutcome("dead", info=info, reason="no_data")
    if run.exit_code != 0:
        return ProbeOutcome("error", info=info, reason=f"ffmpeg_exit_{run.exit_code}")
    bitrate = _bitrate_kbps(run, stderr)
    if not bitrate:
        return ProbeOutcome("dead", info=info, reason="zero_bitrate")
    return ProbeOutcome("ok", info=replace(info, bitrate_kbps=bitrate))
