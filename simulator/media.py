"""Short MPEG-TS samples for the provider simulator, made once with ffmpeg.

Each variant is about four seconds of ffmpeg's ``testsrc`` picture (and a
``sine`` tone when it has audio), encoded with a fast preset at a modest
bitrate. Files are cached by variant under ``~/.cache/iptv-checkd/samples``
(``IPTV_CHECKD_CACHE`` or an argument overrides it) and written to a temporary
name first, then renamed, so parallel test processes never read half a file.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
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


@dataclass(frozen=True)
class Variant:
    """How one sample is encoded."""

    width: int
    height: int
    fps: int
    video_codec: str
    """ffmpeg encoder name, e.g. ``libx264``."""
    video_kbps: int
    audio: bool = True


VARIANTS: dict[str, Variant] = {
    "hd": Variant(1280, 720, 25, "libx264", 1500),
    "fhd": Variant(1920, 1080, 25, "libx264", 3000),
    "lowres": Variant(320, 240, 25, "libx264", 300),
    "noaudio": Variant(1280, 720, 25, "libx264", 1500, audio=False),
    "hevc": Variant(1280, 720, 25, "libx265", 1000),
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
    video_src = f"testsrc=size={size}:rate={variant.fps}:duration={SAMPLE_SECONDS}"
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", video_src]
    if variant.audio:
        audio_src = f"sine=frequency=440:sample_rate=48000:duration={SAMPLE_SECONDS}"
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
    fd, tmp_name = tempfile.mkstemp(prefix=f".{variant}-", suffix=".ts.tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        cmd = _command(ffmpeg or find_ffmpeg(), spec, tmp)
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_GENERATE_TIMEOUT_S, check=False
        )
        if done.returncode != 0 or tmp.stat().st_size == 0:
            message = f"ffmpeg failed to make sample {variant!r}: {done.stderr.strip()[-500:]}"
            raise SampleError(message)
        os.replace(tmp, target)
    except subprocess.TimeoutExpired as exc:
        message = f"ffmpeg took over {_GENERATE_TIMEOUT_S:.0f} s to make sample {variant!r}"
        raise SampleError(message) from exc
    finally:
        tmp.unlink(missing_ok=True)
    log.info("sample_generated", variant=variant, path=str(target), bytes=target.stat().st_size)
    return target


def load_sample(variant: str, cache_dir: Path | None = None) -> bytes:
    """The bytes of the ``variant`` sample, generating it first if needed."""
    return ensure_sample(variant, cache_dir).read_bytes()
