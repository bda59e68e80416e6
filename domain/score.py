"""How good a live stream is, as one number in [0, 1] (higher is better).

The score is a weighted mean of four parts, each in [0, 1]::

    score = (w_res * R + w_bitrate * B + w_fps * F + w_codec * C) / (sum of the weights)

    R = min(height / 1080, 1)                      # 720p 0.667, 2160p capped at 1
    B = min(bitrate_kbps / 8000, 1)                # saturates at 8 Mbit/s
    F = 0.9 * min(fps / 25, 1) + 0.1 * min(fps / 50, 1)
                                                   # 25 fps 0.95, 50/60 fps 1.0
    C = codec value, halved when there is no audio
        hevc/h265/av1/vvc 1.0, h264/vp9 0.9, mpeg4/vp8 0.6, mpeg2video 0.5, other 0.3

Default weights: resolution 0.4, bitrate 0.3, fps 0.15, codec 0.15. A part
whose figure is unknown counts 0 (an unknown codec counts 0.3). The result is
rounded to 3 decimals. Dead streams are not scored here: the caller gives them 0.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from domain.models import StreamInfo

FULL_HEIGHT = 1080
FULL_BITRATE_KBPS = 8000.0
BASE_FPS = 25.0
SMOOTH_FPS = 50.0
UNKNOWN_CODEC = 0.3
CODEC_VALUES: dict[str, float] = {
    "hevc": 1.0,
    "h265": 1.0,
    "av1": 1.0,
    "vvc": 1.0,
    "h264": 0.9,
    "vp9": 0.9,
    "mpeg4": 0.6,
    "vp8": 0.6,
    "mpeg2video": 0.5,
    "mpeg2": 0.5,
}
"""Codec part by ffmpeg codec name; anything else is :data:`UNKNOWN_CODEC`."""


@dataclass(frozen=True)
class ScoreWeights:
    """How much each part counts; they need not sum to 1 (the score divides by the sum)."""

    resolution: float = 0.4
    bitrate: float = 0.3
    fps: float = 0.15
    codec: float = 0.15

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value < 0:
                message = f"score weight {item.name!r} must not be negative, got {value}"
                raise ValueError(message)
        if self.total <= 0:
            message = "score weights must not all be zero"
            raise ValueError(message)

    @property
    def total(self) -> float:
        """Sum of the weights."""
        return self.resolution + self.bitrate + self.fps + self.codec


def resolution_part(height: int | None) -> float:
    """``min(height / 1080, 1)``; 0 when unknown."""
    if not height or height <= 0:
        return 0.0
    return min(height / FULL_HEIGHT, 1.0)


def bitrate_part(kbps: float | None) -> float:
    """``min(kbps / 8000, 1)``; 0 when unknown."""
    if not kbps or kbps <= 0:
        return 0.0
    return min(kbps / FULL_BITRATE_KBPS, 1.0)


def fps_part(fps: float | None) -> float:
    """Full marks from 25 fps up, with a small bonus reaching 1 at 50 fps."""
    if not fps or fps <= 0:
        return 0.0
    return 0.9 * min(fps / BASE_FPS, 1.0) + 0.1 * min(fps / SMOOTH_FPS, 1.0)


def codec_part(video_codec: str | None, audio_codec: str | None) -> float:
    """The codec's value, halved when the stream has no audio."""
    value = CODEC_VALUES.get((video_codec or "").lower(), UNKNOWN_CODEC)
    return value if audio_codec else value / 2


def score(info: StreamInfo, weights: ScoreWeights | None = None) -> float:
    """Score a live stream; see the module docstring for the formula.

    Args:
        info: What the probe learned.
        weights: Part weights; :class:`ScoreWeights` defaults if ``None``.

    Returns:
        A value in [0, 1], rounded to 3 decimals.
    """
    w = weights or ScoreWeights()
    total = (
        w.resolution * resolution_part(info.height)
        + w.bitrate * bitrate_part(info.bitrate_kbps)
        + w.fps * fps_part(info.fps)
        + w.codec * codec_part(info.video_codec, info.audio_codec)
    )
    return round(min(max(total / w.total, 0.0), 1.0), 3)
