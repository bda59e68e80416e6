from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.models import StreamInfo
from domain.score import ScoreWeights, codec_part, fps_part, score


def _info(
    height: int, kbps: float, fps: float = 25.0, codec: str = "h264", audio: str | None = "aac"
):
    width = height * 16 // 9
    return StreamInfo(
        resolution=f"{width}x{height}",
        width=width,
        height=height,
        fps=fps,
        video_codec=codec,
        audio_codec=audio,
        bitrate_kbps=kbps,
    )


def test_resolution_orders_streams():
    fhd, hd, low = _info(1080, 4000), _info(720, 4000), _info(240, 4000)
    assert score(fhd, ScoreWeights()) > score(hd, ScoreWeights()) > score(low, ScoreWeights())


def test_realistic_streams_order_best_first():
    fhd = _info(1080, 4500)
    hd = _info(720, 3000)
    low = _info(240, 400)
    assert score(fhd) > score(hd) > score(low)


def test_bounds_and_rounding():
    best = _info(2160, 20000, fps=60, codec="hevc")
    assert score(best) == 1.0
    assert score(StreamInfo()) == round(0.15 * 0.3 / 2, 3)
    value = score(_info(720, 1234))
    assert value == round(value, 3)


def test_codec_and_audio():
    assert codec_part("hevc", "aac") == 1.0
    assert codec_part("h264", "aac") == 0.9
    assert codec_part("mpeg2video", "mp2") == 0.5
    assert codec_part("weird", "aac") == 0.3
    assert codec_part("h264", None) == 0.45
    assert score(_info(720, 3000, codec="hevc")) > score(_info(720, 3000))
    assert score(_info(720, 3000)) > score(_info(720, 3000, audio=None))


def test_fps_part():
    assert fps_part(25) == pytest.approx(0.95)
    assert fps_part(50) == fps_part(60) == 1.0
    assert fps_part(None) == 0.0
    assert fps_part(12.5) < fps_part(25) < fps_part(30) < fps_part(50)


def test_weights_are_validated_and_normalised():
    with pytest.raises(ValueError, match="'fps'"):
        ScoreWeights(fps=-0.1)
    with pytest.raises(ValueError, match="all be zero"):
        ScoreWeights(0, 0, 0, 0)
    doubled = ScoreWeights(0.8, 0.6, 0.3, 0.3)
    info = _info(720, 3000)
    assert score(info, doubled) == score(info, ScoreWeights())
    only_resolution = ScoreWeights(1, 0, 0, 0)
    assert score(_info(540, 1), only_resolution) == 0.5


@given(
    height=st.integers(min_value=1, max_value=4320),
    low=st.floats(min_value=0, max_value=50000),
    high=st.floats(min_value=0, max_value=50000),
    fps=st.floats(min_value=0, max_value=120),
)
def test_score_is_bounded_and_monotone_in_bitrate(height, low, high, fps):
    low, high = sorted((low, high))
    low_score = score(_info(height, low, fps=fps))
    high_score = score(_info(height, high, fps=fps))
    assert 0.0 <= low_score <= high_score <= 1.0
