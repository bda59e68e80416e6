"""BitrateSettler: framecrc lines in, running estimate and "settled" out."""

from __future__ import annotations

import pytest

from adapters.settle import BitrateSettler, Packet, SettleRule, parse_packet

HEADER = [
    "#software: Lavf59.27.100",
    "#tb 0: 1/90000",
    "#media_type 0: video",
    "#codec_id 0: h264",
    "#tb 1: 1/90000",
    "#media_type 1: audio",
]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # ffmpeg 5.1: a keyframe prints no flags; others F=0x0.
        (
            "0,       1920,       1920,     3600,    12324, 0xc4d0e5b5, S=1,        1",
            (0, 1920, 12324, True),
        ),
        (
            "0,       5520,       5520,     3600,     2301, 0x7d9b8f1c, F=0x0, S=1,        1",
            (0, 5520, 2301, False),
        ),
        # ffmpeg 9: more side data after the flags.
        (
            "0,       3600,       3600,     3600,    24718, 0x132a9cd0, F=0x0, S=1, "
            "MPEGTS Stream ID,        1, 0x00e000e0",
            (0, 3600, 24718, False),
        ),
        (
            "1,          0,          0,     1920,      235, 0xf26d718d, S=1, "
            "MPEGTS Stream ID,        1, 0x00c000c0",
            (1, 0, 235, True),
        ),
        ("0,  3600,  3600,  3600,  99, 0x1, F=0x5", (0, 3600, 99, True)),  # key plus another flag
        ("#tb 0: 1/90000", None),
        ("", None),
        ("0, x, 0, 0, 1, 0x0", None),
        ("garbage", None),
    ],
)
def test_parse_packet(line, expected):
    packet = parse_packet(line)
    assert (packet and (packet.stream, packet.dts, packet.size, packet.key)) == expected


def feed_gops(settler: BitrateSettler, gop_bytes: list[int], gop_s: float = 1.0) -> list[bool]:
    """One keyframe packet per GOP carrying the GOP's video bytes, plus 1000 audio bytes a GOP."""
    states = []
    for line in HEADER:
        settler.feed(line)
    ticks = int(gop_s * 90_000)
    for index, size in enumerate([*gop_bytes, 1]):
        settler.feed(f"0, {index * ticks}, {index * ticks}, 3600, {size}, 0x0, S=1, 1")
        settler.feed(f"1, {index * ticks}, {index * ticks}, 1920, 1000, 0x0, S=1, 1")
        states.append(settler.settled)
    return states


def test_constant_stream_settles_once_the_window_is_covered():
    settler = BitrateSettler(SettleRule(tolerance=0.05, window_s=2.0, min_intervals=2))
    states = feed_gops(settler, [124_000] * 10)
    # Estimates appear at the 2nd keyframe; the 2 s window is covered at the 4th.
    assert states.index(True) == 3
    assert settler.kbps == pytest.approx((124_000 + 1000) * 8 / 1000, rel=1e-6)
    assert settler.intervals == 10
    assert settler.media_s == 10.0


def test_the_floor_holds_with_long_keyframe_intervals():
    settler = BitrateSettler(SettleRule(window_s=2.0, min_intervals=3))
    states = feed_gops(settler, [500_000] * 5, gop_s=5.0)
    assert states.index(True) == 3  # three whole 5 s intervals, whatever the window


def test_a_moving_bitrate_keeps_reading():
    # Two seconds heavy, two light, as the simulator's vbr sample.
    settler = BitrateSettler(SettleRule(tolerance=0.05, window_s=2.0))
    pattern = [340_000, 340_000, 60_000, 60_000] * 3
    states = feed_gops(settler, pattern)
    assert not any(states)
    assert settler.kbps is not None


def test_a_rising_estimate_settles_only_when_it_flattens():
    settler = BitrateSettler(SettleRule(tolerance=0.05, window_s=2.0))
    states = feed_gops(
        settler, [50_000, 100_000, 150_000, 200_000, 125_000, 125_000, 125_000, 125_000]
    )
    assert states.index(True) >= 6


def test_bytes_before_the_first_keyframe_are_not_counted():
    settler = BitrateSettler(SettleRule())
    for line in HEADER:
        settler.feed(line)
    settler.feed("0, 0, 0, 3600, 999999, 0x0, F=0x0, S=1, 1")  # joined mid-GOP
    settler.feed("1, 0, 0, 1920, 999999, 0x0, S=1, 1")
    settler.feed("0, 90000, 90000, 3600, 1000, 0x0, S=1, 1")
    settler.feed("0, 180000, 180000, 3600, 1000, 0x0, S=1, 1")
    assert settler.kbps == 8.0
    assert settler.media_s == 1.0


def test_no_video_never_settles():
    settler = BitrateSettler()
    settler.add(Packet(1, 0, 1000, True))
    settler.add(Packet(1, 90000, 1000, True))
    assert (settler.settled, settler.kbps, settler.media_s) == (False, None, 0.0)
