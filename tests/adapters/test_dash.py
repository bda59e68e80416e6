"""Which representations of a DASH manifest the check reads, and how the manifest is read."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from adapters.dash import Selection, choose, looks_like_dash, read_manifest

_MPD = '<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static">{}</MPD>'


def mpd(*periods: str) -> str:
    return _MPD.format("".join(periods))


def period(*sets: str, duration: str | None = None) -> str:
    length = f' duration="{duration}"' if duration else ""
    return f"<Period{length}>{''.join(sets)}</Period>"


def adaptation(*representations: str, **attributes: str) -> str:
    attrs = "".join(f' {k}="{v}"' for k, v in attributes.items())
    return f"<AdaptationSet{attrs}>{''.join(representations)}</AdaptationSet>"


def video(rep_id: str, width: int, height: int, bandwidth: int, **attributes: str) -> str:
    attrs = "".join(f' {k}="{v}"' for k, v in attributes.items())
    size = f'width="{width}" height="{height}"'
    return f'<Representation id="{rep_id}" {size} bandwidth="{bandwidth}"{attrs}/>'


def rep(rep_id: str, bandwidth: int, **attributes: str) -> str:
    """A representation that gives no picture size (a sound, or a video sized by its set)."""
    attrs = "".join(f' {k}="{v}"' for k, v in attributes.items())
    return f'<Representation id="{rep_id}" bandwidth="{bandwidth}"{attrs}/>'


LOW = video("v1", 320, 240, 300_000)
HD = video("v2", 1280, 720, 1_500_000)
SOUND = adaptation(rep("a1", 96_000), contentType="audio")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://host/live/u/p/1.mpd", True),
        ("http://host/manifest.MPD?token=abc", True),
        ("http://host/live/u/p/1.m3u8", False),
        ("http://host/live/u/p/1.ts", False),
        ("http://host/play?file=x.mpd", False),
    ],
)
def test_a_dash_url_is_told_by_its_path(url: str, expected: bool) -> None:
    assert looks_like_dash(url) is expected


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        # The most pixels, wherever it is listed; its index among the videos.
        # (One sound: all of it, as ``None`` says.)
        (mpd(period(adaptation(LOW, HD, contentType="video"), SOUND)), Selection(1, None)),
        (mpd(period(adaptation(HD, LOW, contentType="video"), SOUND)), Selection(0, None)),
        # Each video an adaptation set of its own (pictures of different shapes).
        (
            mpd(period(adaptation(LOW, mimeType="video/mp4"), adaptation(HD), SOUND)),
            None,  # the second set says nothing of its kind: not a video, as for ffmpeg
        ),
        (
            mpd(
                period(
                    adaptation(LOW, mimeType="video/mp4"),
                    adaptation(HD, contentType="video"),
                    SOUND,
                )
            ),
            Selection(1, None),
        ),
        # Equal pictures: the higher bandwidth, then the first listed.
        (
            mpd(
                period(
                    adaptation(
                        video("a", 1280, 720, 800_000),
                        video("b", 1280, 720, 2_500_000),
                        video("c", 1280, 720, 2_500_000),
                        contentType="video",
                    )
                )
            ),
            Selection(1, None),
        ),
        # The kind from the representation itself, before its adaptation set's.
        (
            mpd(
                period(
                    adaptation(
                        video("v", 1280, 720, 1_500_000),
                        rep("a1", 64_000, mimeType="audio/mp4"),
                        rep("a2", 128_000, mimeType="audio/mp4"),
                        mimeType="video/mp4",
                    )
                )
            ),
            Selection(None, 1),
        ),
        # Sound: the first set of it, at its highest bandwidth (an index among all sound).
        (
            mpd(
                period(
                    adaptation(HD, contentType="video"),
                    adaptation(rep("en1", 64_000), rep("en2", 128_000), contentType="audio"),
                    adaptation(rep("fr", 192_000), contentType="audio", lang="fr"),
                )
            ),
            Selection(None, 1),
        ),
        # From a ContentComponent where neither says.
        (
            mpd(
                period(
                    "<AdaptationSet><ContentComponent contentType='video'/>"
                    f"{LOW}{HD}</AdaptationSet>"
                )
            ),
            Selection(1, None),
        ),
        # The picture's size said by the set, for all its representations.
        (
            mpd(
                period(
                    adaptation(
                        rep("v1", 3_000_000), contentType="video", width="640", height="360"
                    ),
                    adaptation(
                        rep("v2", 2_000_000), contentType="video", width="1920", height="1080"
                    ),
                )
            ),
            Selection(1, None),
        ),
        # One video and one sound: nothing to choose, the check reads both as before.
        (mpd(period(adaptation(HD, contentType="video"), SOUND)), None),
    ],
    ids=[
        "low-first",
        "hd-first",
        "unknown-kind",
        "sets-of-one",
        "bandwidth-then-first",
        "kind-from-representation",
        "first-sound-set",
        "content-component",
        "size-from-set",
        "nothing-to-choose",
    ],
)
def test_the_check_reads_the_representations_a_player_picks(
    manifest: str, expected: Selection | None
) -> None:
    assert choose(manifest) == expected


def test_of_several_periods_the_one_ffmpeg_reads_counts() -> None:
    """ffmpeg reads one period: the longest, the last of equals."""
    short = period(adaptation(HD, LOW, contentType="video"), duration="PT30S")
    long = period(adaptation(LOW, HD, contentType="video"), duration="PT1H0M0S")
    assert choose(mpd(short, long)) == Selection(1, None)
    assert choose(mpd(long, short)) == Selection(1, None)
    no_length = period(adaptation(HD, LOW, contentType="video"))
    assert choose(mpd(period(adaptation(LOW, HD, contentType="video")), no_length)) == Selection(
        0, None
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not xml at all",
        "<MPD><Period>",  # cut short
        '<?xml version="1.0"?><html><body>Service unavailable</body></html>',
        # A manifest needs no document type; entities are never expanded.
        '<?xml version="1.0"?><!DOCTYPE MPD [<!ENTITY a "aaaa">]>'
        + mpd(period(adaptation(LOW, HD, contentType="video"))).split("?>", 1)[1],
        mpd(),  # no period
    ],
    ids=["empty", "text", "truncated", "html", "doctype", "no-period"],
)
def test_a_manifest_that_is_not_one_is_left_to_ffmpeg(text: str) -> None:
    assert choose(text) is None


def test_the_manifest_is_read_as_ffmpeg_would_and_not_past_a_stream(
    httpserver: HTTPServer,
) -> None:
    body = mpd(period(adaptation(LOW, HD, contentType="video")))
    httpserver.expect_request(
        "/live/u/p/1.mpd", headers={"User-Agent": "box/1.0"}
    ).respond_with_data("\ufeff" + body, content_type="application/dash+xml")
    httpserver.expect_request("/live/u/p/2.mpd").respond_with_data(
        b"\x47" + b"\x00" * 187, content_type="video/mp2t"
    )
    read = read_manifest(httpserver.url_for("/live/u/p/1.mpd"), "box/1.0", 5.0)
    assert read is not None
    assert choose(read.text) == Selection(1, None)
    assert read_manifest(httpserver.url_for("/live/u/p/2.mpd"), None, 5.0) is None
    assert read_manifest("http://127.0.0.1:9/closed.mpd", None, 1.0) is None
