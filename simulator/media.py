"""Short MPEG-TS samples for the provider simulator, made once with ffmpeg.

Each variant is about four seconds of ffmpeg's ``testsrc`` picture (and a
``sine`` tone when it has audio), encoded with a fast preset at a modest
bitrate. The ``vbr`` variant is eight seconds whose bitrate moves: two seconds
of picture with noise (about 2.7 Mbit/s), two seconds without (0.4 to
1.3 Mbit/s), twice, encoded at constant quality under a 2.5 Mbit/s cap; the
simulator paces it by its own clock (:func:`chunk_times`), as a provider sends a
live stream. :func:`ensure_hls` cuts a sample into an HLS media playlist of
two-second segments (the sample three times over), :func:`ensure_dash` samples
into a DASH stream of one representation each. Files are cached by variant
under ``~/.cache/iptv-checkd/samples`` (``IPTV_CHECKD_CACHE`` or an argument
overrides it) and written to a temporary name first, then renamed, so parallel
test processes never read half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from adapters.ffmpeg import find_ffmpeg

log = structlog.get_logger(__name__)

CACHE_ENV = "IPTV_CHECKD_CACHE"
SAMPLE_SECONDS = 4
_RECIPE_VERSION = 2
"""Bump when a recipe changes so old cached files are not reused."""
_GENERATE_TIMEOUT_S = 120.0
HLS_SEGMENT_S = 2
"""Seconds per segment of an HLS rendition (the samples have a key frame every second)."""
HLS_LOOPS = 3
"""Times the sample plays in an HLS rendition, its timestamps running on."""
HLS_PLAYLIST = "index.m3u8"
DASH_MANIFEST = "manifest.mpd"


@dataclass(frozen=True)
class Variant:
    """How one sample is encoded."""

    width: int
    height: int
    fps: int
    video_codec: str
    """ffmpeg encoder name, e.g. ``libx264``."""
    video_kbps: int
    """Target (constant) or cap (``vbr``) of the video bitrate."""
    audio: bool = True
    seconds: int = SAMPLE_SECONDS
    """Media seconds of the sample (it is looped)."""
    vbr: bool = False
    """Constant quality with moving content, so the bitrate moves."""


VARIANTS: dict[str, Variant] = {
    "hd": Variant(1280, 720, 25, "libx264", 1500),
    "fhd": Variant(1920, 1080, 25, "libx264", 3000),
    "lowres": Variant(320, 240, 25, "libx264", 300),
    "noaudio": Variant(1280, 720, 25, "libx264", 1500, audio=False),
    "hevc": Variant(1280, 720, 25, "libx265", 1000),
    "vbr": Variant(1280, 720, 25, "libx264", 2500, seconds=8, vbr=True),
}
"""Known sample variants by name."""


class SampleError(RuntimeError):
    """A sample could not be generated."""


def default_cache_dir() -> Path:
    """The sample cache: ``$IPTV_CHECKD_CACHE`` or ``~/.cache/iptv-checkd/samples``."""
    configured = os.environ.get(CACHE_ENV, "")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "iptv-checkd" / "samples"


def sample_path(variant: str, cache_dir: Path | None = None) -> Path:
    """Where the cached sample of ``variant`` lives (it may not exist yet)."""
    folder = cache_dir if cache_dir is not None else default_cache_dir()
    return folder / f"{variant}-v{_RECIPE_VERSION}.ts"


def _encoder_args(variant: Variant) -> list[str]:
    kbps = variant.video_kbps
    rate_args = ["-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps}k"]
    if variant.vbr:
        rate_args = ["-crf", "23", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps}k"]
    gop_args = ["-g", str(variant.fps), "-pix_fmt", "yuv420p"]
    if variant.video_codec == "libx265":
        return [
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error",
            *rate_args,
            *gop_args,
        ]
    return ["-c:v", variant.video_codec, "-preset", "ultrafast", *rate_args, *gop_args]


def _command(ffmpeg: str, variant: Variant, out: Path) -> list[str]:
    size = f"{variant.width}x{variant.height}"
    seconds = variant.seconds
    video_src = f"testsrc=size={size}:rate={variant.fps}:duration={seconds}"
    if variant.vbr:
        # Noise costs bits, the bare test picture few: the bitrate swings every 2 s.
        video_src += r",noise=alls=30:allf=t:enable='lt(mod(t\,4)\,2)'"
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", video_src]
    if variant.audio:
        audio_src = f"sine=frequency=440:sample_rate=48000:duration={seconds}"
        cmd += ["-f", "lavfi", "-i", audio_src]
    cmd += _encoder_args(variant)
    if variant.audio:
        cmd += ["-c:a", "aac", "-b:a", "96k", "-ac", "2"]
    cmd += ["-f", "mpegts", str(out)]
    return cmd


def ensure_sample(variant: str, cache_dir: Path | None = None, ffmpeg: str = "") -> Path:
    """Return the path of the ``variant`` sample, generating it first if missing.

    Args:
        variant: A key of :data:`VARIANTS`.
        cache_dir: Where samples are cached; :func:`default_cache_dir` if ``None``.
        ffmpeg: The ffmpeg binary; found by :func:`adapters.ffmpeg.find_ffmpeg` if empty.

    Returns:
        The cached MPEG-TS file.

    Raises:
        SampleError: ``variant`` is unknown or ffmpeg failed.
    """
    spec = VARIANTS.get(variant)
    if spec is None:
        message = f"unknown sample variant {variant!r}; known: {', '.join(VARIANTS)}"
        raise SampleError(message)
    target = sample_path(variant, cache_dir)
    if target.is_file() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Processes sharing the cache (pytest workers) make each sample once: the
    # first takes the lock and encodes, the others wait and find it made.
    with _locked(target.with_name(f".{target.name}.lock")):
        if target.is_file() and target.stat().st_size > 0:
            return target
        _generate(variant, spec, target, ffmpeg)
    return target


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generate(variant: str, spec: Variant, target: Path, ffmpeg: str) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{variant}-", suffix=".ts.tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _run(_command(ffmpeg or find_ffmpeg(), spec, tmp), f"sample {variant!r}")
        if tmp.stat().st_size == 0:
            message = f"ffmpeg made an empty sample {variant!r}"
            raise SampleError(message)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("sample_generated", variant=variant, path=str(target), bytes=target.stat().st_size)


@dataclass(frozen=True)
class HlsMedia:
    """One variant as an HLS rendition: its media playlist and its segments by file name."""

    playlist: str
    segments: dict[str, bytes]


def hls_path(variant: str, cache_dir: Path | None = None) -> Path:
    """The folder of the cached HLS rendition of ``variant`` (it may not exist yet)."""
    return sample_path(variant, cache_dir).with_suffix(".hls")


def ensure_hls(variant: str, cache_dir: Path | None = None, ffmpeg: str = "") -> Path:
    """Return the folder of the ``variant`` rendition (``index.m3u8`` and its
    segments ``0.ts``, ``1.ts``...), cutting it from the sample first if missing.

    Raises:
        SampleError: ``variant`` is unknown or ffmpeg failed.
    """
    sample = ensure_sample(variant, cache_dir, ffmpeg)

    def command(tmp: Path) -> list[str]:
        cmd = [ffmpeg or find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error"]
        cmd += ["-stream_loop", str(HLS_LOOPS - 1), "-i", str(sample), "-c", "copy"]
        cmd += ["-f", "hls", "-hls_time", str(HLS_SEGMENT_S), "-hls_playlist_type", "vod"]
        cmd += ["-hls_segment_filename", str(tmp / "%d.ts"), str(tmp / HLS_PLAYLIST)]
        return cmd

    target = hls_path(variant, cache_dir)
    made = _made_once(target, HLS_PLAYLIST, command, f"HLS rendition {variant!r}")
    if made:
        log.info("hls_rendition_generated", variant=variant, path=str(target))
    return target


def dash_path(variants: tuple[str, ...], cache_dir: Path | None = None) -> Path:
    """The folder of the cached DASH stream of ``variants`` (it may not exist yet)."""
    folder = cache_dir if cache_dir is not None else default_cache_dir()
    return folder / f"dash-{'+'.join(variants)}-v{_RECIPE_VERSION}"


def ensure_dash(variants: tuple[str, ...], cache_dir: Path | None = None, ffmpeg: str = "") -> Path:
    """Return the folder of a DASH stream (``manifest.mpd``, ``init-N.m4s``,
    ``chunk-N-0000K.m4s``) with one video representation per variant, in that
    order, and the sound of the first that has sound; cut from the samples
    (three times over, two-second segments) first if missing. Each video is an
    adaptation set of its own (the samples' pictures differ in shape).

    Raises:
        SampleError: a variant is unknown or ffmpeg failed.
    """
    samples = [ensure_sample(variant, cache_dir, ffmpeg) for variant in variants]
    sound = next((i for i, v in enumerate(variants) if VARIANTS[v].audio), None)

    def command(tmp: Path) -> list[str]:
        cmd = [ffmpeg or find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error"]
        for sample in samples:
            cmd += ["-stream_loop", str(HLS_LOOPS - 1), "-i", str(sample)]
        for i, variant in enumerate(variants):
            tag = "hvc1" if VARIANTS[variant].video_codec == "libx265" else "avc1"
            cmd += ["-map", f"{i}:v", f"-tag:v:{i}", tag]
        if sound is not None:
            cmd += ["-map", f"{sound}:a", "-tag:a", "mp4a"]
        outputs = len(variants) + (sound is not None)
        sets = " ".join(f"id={i},streams={i}" for i in range(outputs))
        cmd += ["-c", "copy", "-f", "dash", "-seg_duration", str(HLS_SEGMENT_S)]
        cmd += ["-use_template", "1", "-use_timeline", "0", "-adaptation_sets", sets]
        cmd += ["-init_seg_name", "init-$RepresentationID$.m4s"]
        cmd += ["-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.m4s"]
        return [*cmd, str(tmp / DASH_MANIFEST)]

    target = dash_path(variants, cache_dir)
    if _made_once(target, DASH_MANIFEST, command, f"DASH stream {variants!r}"):
        log.info("dash_stream_generated", variants=list(variants), path=str(target))
    return target


def _made_once(target: Path, marker: str, command: Callable[[Path], list[str]], what: str) -> bool:
    """Make the folder ``target`` with ``command(tmp folder)`` unless it holds
    ``marker`` already (True: it was made now). One process makes it; the
    others wait on the lock and find it made."""
    if (target / marker).is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_name(f".{target.name}.lock")):
        if (target / marker).is_file():
            return False
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            _run(command(tmp), what)
            os.replace(tmp, target)  # a folder renamed whole: readers see all of it or none
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True


@dataclass(frozen=True)
class DashMedia:
    """A DASH stream: its manifest and its files (initialization and media segments) by name."""

    manifest: str
    files: dict[str, bytes]


def load_dash(variants: tuple[str, ...], cache_dir: Path | None = None) -> DashMedia:
    """The DASH stream of ``variants`` in memory, generating it first if needed."""
    folder = ensure_dash(variants, cache_dir)
    manifest = (folder / DASH_MANIFEST).read_text(encoding="utf-8")
    return DashMedia(manifest, {path.name: path.read_bytes() for path in folder.glob("*.m4s")})


def load_hls(variant: str, cache_dir: Path | None = None) -> HlsMedia:
    """The ``variant`` rendition in memory, generating it first if needed."""
    folder = ensure_hls(variant, cache_dir)
    playlist = (folder / HLS_PLAYLIST).read_text(encoding="utf-8")
    segments = {path.name: path.read_bytes() for path in folder.glob("*.ts")}
    return HlsMedia(playlist, segments)


def _run(cmd: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_GENERATE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        message = f"ffmpeg took over {_GENERATE_TIMEOUT_S:.0f} s to make {what}"
        raise SampleError(message) from exc
    if done.returncode != 0:
        message = f"ffmpeg failed to make {what}: {done.stderr.strip()[-500:]}"
        raise SampleError(message)


def load_sample(variant: str, cache_dir: Path | None = None) -> bytes:
    """The bytes of the ``variant`` sample, generating it first if needed."""
    return ensure_sample(variant, cache_dir).read_bytes()


def sample_seconds(variant: str) -> float:
    """Media seconds of one loop of the ``variant`` sample."""
    spec = VARIANTS.get(variant)
    return float(spec.seconds if spec is not None else SAMPLE_SECONDS)


_TS_PACKET = 188
_PCR_HZ = 90_000


def _pcr_seconds(packet: bytes) -> float | None:
    """The PCR base of one TS packet in seconds, if it carries one."""
    if len(packet) < 11 or packet[0] != 0x47 or not (packet[3] >> 4) & 0x2:
        return None
    if packet[4] == 0 or not packet[5] & 0x10:
        return None
    base = (packet[6] << 25) | (packet[7] << 17) | (packet[8] << 9) | (packet[9] << 1)
    base |= packet[10] >> 7
    return base / _PCR_HZ


def chunk_times(sample: bytes, chunk_bytes: int, seconds: float, *, vbr: bool) -> list[float]:
    """When each ``chunk_bytes`` piece of ``sample`` is due, in seconds from its start.

    A constant-bitrate sample is paced at its mean byte rate. A ``vbr`` one by
    the clock it carries (the PCR of its TS packets, interpolated between
    them), so that its bytes come as fast as its content needs, as from a live
    source. Times never go back and stay within ``[0, seconds)``.
    """
    offsets = range(0, len(sample), chunk_bytes)
    if not vbr:
        byte_rate = len(sample) / seconds
        return [offset / byte_rate for offset in offsets]
    marks: list[tuple[int, float]] = []
    for offset in range(0, len(sample) - _TS_PACKET + 1, _TS_PACKET):
        pcr = _pcr_seconds(sample[offset : offset + _TS_PACKET])
        if pcr is not None and (not marks or pcr >= marks[-1][1]):
            marks.append((offset, pcr))
    if len(marks) < 2:
        return chunk_times(sample, chunk_bytes, seconds, vbr=False)
    first = marks[0][1]
    marks = [(offset, pcr - first) for offset, pcr in marks]
    times: list[float] = []
    index = 0
    # The bytes after the last clock mark are extrapolated; they stay due
    # within this loop (not at its very end, the next loop's start).
    last_due = math.nextafter(seconds, 0.0)
    for offset in offsets:
        while index + 2 < len(marks) and marks[index + 1][0] <= offset:
            index += 1
        (a_off, a_t), (b_off, b_t) = marks[index], marks[index + 1]
        at = a_t + (b_t - a_t) * (offset - a_off) / (b_off - a_off)
        at = min(max(at, times[-1] if times else 0.0, 0.0), last_due)
        times.append(at)
    return times
