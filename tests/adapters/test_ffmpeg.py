from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from adapters import ffmpeg as ffmpeg_module
from adapters.ffmpeg import (
    CHILDREN_DIE_WITH_PARENT,
    MIN_LIBAVFORMAT,
    FfmpegNotFound,
    FfmpegProbe,
    check_ffmpeg,
    enough_media_s,
    find_ffmpeg,
    parse_http_failure,
    parse_payload_bytes,
    parse_stream_info,
    redact_text,
)
from domain.cancel import CancelToken
from domain.models import ProbeOutcome, ProbeRequest
from simulator.media import load_dash, sample_path
from simulator.server import SimAccount, SimStream
from tests.logcapture import capture_logs

DURATION_S = 1.0
TIMEOUT_S = 2.5
WAIT_S = 10.0

STDERR = """\
[in#0/mpegts @ 0x55] Packet corrupt (stream = 0, dts = 482400).
Input #0, mpegts, from 'http://host/live/user/secret/1.ts':
  Duration: N/A, start: 1.458667, bitrate: N/A
  Program 1
  Stream #0:0[0x100]: Video: h264 (High) ([27][0][0][0] / 0x001B), yuv420p(tv, bt709, \
progressive), 1920x1080 [SAR 1:1 DAR 16:9], 29.97 fps, 29.97 tbr, 90k tbn
  Stream #0:1[0x101](eng): Audio: ac3 ([129][0][0][0] / 0x0081), 48000 Hz, 5.1(side), fltp, 384 kb/s
  Stream #0:2[0x102]: Audio: aac (LC) ([15][0][0][0] / 0x000F), 44100 Hz, stereo, fltp
Stream mapping:
  Stream #0:0 -> #0:0 (copy)
  Stream #0:1 -> #0:1 (copy)
  Stream #0:2 -> #0:2 (copy)
Output #0, null, to 'pipe:':
  Stream #0:0: Video: mpeg2video, yuv420p, 720x576, q=2-31, 25 fps
[out#0/null @ 0x55] video:126KiB audio:24KiB subtitle:0KiB other streams:0KiB global headers:0KiB
""".splitlines()


# -- pure parsing ----------------------------------------------------------------


def test_input_dump_is_parsed_from_the_input_section_only():
    info = parse_stream_info(STDERR)
    assert info is not None
    assert (info.resolution, info.width, info.height) == ("1920x1080", 1920, 1080)
    assert info.fps == 29.97
    assert (info.video_codec, info.pixel_format, info.stream_type) == ("h264", "yuv420p", "mpegts")
    assert (info.audio_codec, info.audio_channels, info.sample_rate) == ("ac3", "5.1(side)", 48000)
    assert info.bitrate_kbps is None


HLS_STDERR = """\
Input #0, hls, from 'http://host/live/user/secret/1.m3u8':
  Duration: 00:00:12.00, start: 1.400000, bitrate: 0 kb/s
  Program 0
    Metadata:
      variant_bitrate : 396000
  Stream #0:0: Video: h264 (Constrained Baseline), yuv420p(progressive), 320x240, 25 fps, 25 tbr
  Stream #0:1: Audio: aac (LC), 48000 Hz, stereo, fltp
  Program 1
    Metadata:
      variant_bitrate : 1596000
  Stream #0:2: Video: h264 (Main), yuv420p(progressive), 1280x720, 25 fps, 25 tbr, 90k tbn
  Stream #0:3: Audio: aac (HE-AAC), 44100 Hz, mono, fltp
Stream mapping:
  Stream #0:2 -> #0:0 (copy)
  Stream #0:3 -> #0:1 (copy)
Press [q] to stop, [?] for help
""".splitlines()


def test_the_streams_ffmpeg_reads_are_the_ones_reported():
    info = parse_stream_info(HLS_STDERR)
    assert info is not None
    assert (info.resolution, info.video_codec, info.stream_type) == ("1280x720", "h264", "hls")
    assert (info.audio_channels, info.sample_rate) == ("mono", 44100)
    # Without a stream mapping (ffmpeg stopped before it): the first streams.
    opened_only = [line for line in HLS_STDERR if "->" not in line]
    info = parse_stream_info(opened_only)
    assert info is not None
    assert (info.resolution, info.audio_channels) == ("320x240", "stereo")


def test_no_input_dump_means_not_opened():
    assert parse_stream_info(["Error opening input: Server returned 404 Not Found"]) is None


def test_payload_bytes_sum_the_summary():
    assert parse_payload_bytes(STDERR) == (126 + 24) * 1024
    assert parse_payload_bytes(["video:1.5MiB audio:0kB"]) == int(1.5 * 1024 * 1024)
    assert parse_payload_bytes(["nothing"]) is None


def test_http_failures_prefer_the_exact_code():
    lines = [
        "[http @ 0x1] HTTP error 458 Max connections",
        "Error opening input: Server returned 4XX Client Error, but not one of 40{0,1,3,4}",
    ]
    failure = parse_http_failure(lines)
    assert failure is not None
    assert (failure.status, failure.family, failure.text) == (458, 4, "Max connections")
    bare = parse_http_failure(["Error opening input: Server returned 5XX Server Error reply"])
    assert bare is not None
    assert (bare.status, bare.family) == (None, 5)
    auth = parse_http_failure(["Server returned 401 Unauthorized (authorization failed)"])
    assert auth is not None
    assert auth.status == 401


def test_redact_text_hides_credentials_in_messages():
    text = "Error opening input file http://h/live/user/secret/1.ts."
    assert "secret" not in redact_text(text)
    assert "user" not in redact_text(text)


def _fake_binary(folder: Path, name: str, output: str) -> str:
    script = folder / name
    script.write_text(f"#!/bin/sh\necho '{output}'\n")  # a builtin: no PATH needed
    script.chmod(0o755)
    return str(script)


def test_check_ffmpeg_accepts_4_4_and_newer(ffmpeg_path, tmp_path: Path):
    build = check_ffmpeg(ffmpeg_path)
    assert build.path == ffmpeg_path
    assert build.libavformat >= MIN_LIBAVFORMAT
    assert build.version
    four_four = _fake_binary(
        tmp_path,
        "ffmpeg44",
        "ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021\n"
        "libavformat    58. 76.100 / 58. 76.100",
    )
    assert check_ffmpeg(four_four).version == "4.4.2-0ubuntu0.22.04.1"
    git_build = _fake_binary(
        tmp_path, "ffmpeg-git", "ffmpeg version N-113000-g1234abcd\nlibavformat    61.  1.100"
    )
    assert check_ffmpeg(git_build).libavformat == (61, 1)


@pytest.mark.parametrize(
    ("output", "match"),
    [
        ("ffmpeg version 4.2.7-0ubuntu0.1\nlibavformat    58. 29.100 / 58. 29.100", "too old"),
        ("ffmpeg version 4.3.6\nlibavformat    58. 45.100 / 58. 45.100", "4.4 or newer"),
        ("ffprobe version 6.1\nlibavutil      58. 29.100", "not ffmpeg"),
        ("hello", "not ffmpeg"),
    ],
)
def test_check_ffmpeg_refuses_old_builds_and_other_programs(tmp_path: Path, output, match):
    fake = _fake_binary(tmp_path, "fake", output)
    with pytest.raises(FfmpegNotFound, match=match) as caught:
        check_ffmpeg(fake)
    assert fake in str(caught.value)
    assert "\n" not in str(caught.value)


def test_check_ffmpeg_of_a_binary_that_fails(tmp_path: Path):
    with pytest.raises(FfmpegNotFound, match="not ffmpeg"):
        check_ffmpeg("/bin/false")
    with pytest.raises(FfmpegNotFound, match="does not run"):
        check_ffmpeg(str(tmp_path / "missing"))


def test_enough_media_allows_a_frame_short_not_a_stall():
    assert enough_media_s(1.0) <= 0.96  # -t stops on a packet boundary
    assert enough_media_s(3.0) > 1.5
    assert enough_media_s(10.0) > 8.5


def test_find_ffmpeg(tmp_path: Path):
    assert os.access(find_ffmpeg(), os.X_OK)
    with pytest.raises(FfmpegNotFound, match="not an executable"):
        find_ffmpeg(str(tmp_path / "missing"))
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(FfmpegNotFound, match=r"check\.ffmpeg"):
        find_ffmpeg(str(plain))
    assert find_ffmpeg(find_ffmpeg()) == find_ffmpeg()


# -- against the simulator ----------------------------------------------------------


def _request(url: str, **kwargs: object) -> ProbeRequest:
    fields: dict[str, object] = {"duration": DURATION_S, "timeout": TIMEOUT_S}
    fields.update(kwargs)
    return ProbeRequest(url=url, user_agent="test-agent", **fields)  # type: ignore[arg-type]


def _probe(ffmpeg_path: str, url: str, **kwargs: object) -> ProbeOutcome:
    return FfmpegProbe(ffmpeg_path)(_request(url, **kwargs), CancelToken())


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def sim(provider):
    streams = {
        1: SimStream("ok"),
        2: SimStream("dead"),
        3: SimStream("refused"),
        4: SimStream("slow_start", start_delay_s=1.0),
        5: SimStream("stall", stall_after_s=0.5),
        6: SimStream("lowres"),
        7: SimStream("noaudio"),
        8: SimStream("hevc"),
        9: SimStream("close"),
        10: SimStream("ok", "fhd"),
        11: SimStream("stall", stall_after_s=1.0),
        12: SimStream("end", end_after_s=1.5),
        13: SimStream("hls"),
        14: SimStream("dash"),
    }
    accounts = [SimAccount("u", "p", 0), SimAccount("one", "p", 1), SimAccount("old", "p", 0)]
    return provider([*accounts, SimAccount("gone", "p", 0, expired=True)], streams)


def test_ok_stream(ffmpeg_path, sim):
    outcome = _probe(ffmpeg_path, sim.url("u", "p", 1))
    assert outcome.kind == "ok", outcome
    info = outcome.info
    assert (info.resolution, info.fps, info.video_codec) == ("1280x720", 25.0, "h264")
    assert (info.audio_codec, info.audio_channels, info.sample_rate) == ("aac", "stereo", 48000)
    assert info.pixel_format == "yuv420p"
    assert info.stream_type == "mpegts"
    assert info.bitrate_kbps is not None
    assert info.bitrate_kbps > 100
    assert sim.wait_for_idle("u", timeout=WAIT_S)


@pytest.mark.parametrize(
    ("stream_id", "resolution", "video", "audio"),
    [
        (6, "320x240", "h264", "aac"),
        (7, "1280x720", "h264", None),
        (8, "1280x720", "hevc", "aac"),
        (10, "1920x1080", "h264", "aac"),
    ],
)
def test_variants(ffmpeg_path, sim, stream_id, resolution, video, audio):
    outcome = _probe(ffmpeg_path, sim.url("u", "p", stream_id))
    assert outcome.kind == "ok", outcome
    assert (outcome.info.resolution, outcome.info.video_codec) == (resolution, video)
    assert outcome.info.audio_codec == audio
    assert outcome.info.bitrate_kbps


HLS_CHECK_S = 5.0
"""Three of the simulator's two-second segments."""


def _assert_the_best_variant_alone(
    outcome: ProbeOutcome, alone: ProbeOutcome, stream_type: str
) -> None:
    """The 720p variant's own figures, as read alone: not the lowest's, nor every
    variant's summed."""
    assert outcome.kind == "ok", outcome
    assert (outcome.info.resolution, outcome.info.video_codec) == ("1280x720", "h264")
    assert outcome.info.audio_codec == "aac"
    assert outcome.info.stream_type == stream_type
    assert outcome.info.bitrate_kbps == pytest.approx(alone.info.bitrate_kbps, rel=0.1)


@pytest.mark.parametrize(
    "variants", [("lowres", "hd"), ("hd", "lowres")], ids=["low-first", "hd-first"]
)
def test_an_hls_master_is_checked_on_the_variant_a_player_picks(ffmpeg_path, provider, variants):
    sim = provider([SimAccount("u", "p", 0)], {1: SimStream("hls", hls_variants=variants)})
    alone = _probe(ffmpeg_path, f"{sim.base_url}/live/u/p/1/hd/index.m3u8", duration=HLS_CHECK_S)
    assert alone.kind == "ok", alone
    assert alone.info.bitrate_kbps is not None
    before = len(sim.stats().hls_requests)

    _assert_the_best_variant_alone(
        _probe(ffmpeg_path, sim.url("u", "p", 1), duration=HLS_CHECK_S), alone, "hls"
    )
    asked = sim.stats().hls_requests[before:]
    assert {"1/hd/1.ts", "1/hd/2.ts"} <= set(asked)
    # The chosen variant alone, one connection at a time: none of the other is read.
    assert not [r for r in asked if r.startswith("1/lowres/")]
    assert sim.stats().max_concurrency == {"u": 1}


@pytest.mark.parametrize(
    "variants", [("lowres", "hd"), ("hd", "lowres")], ids=["low-first", "hd-first"]
)
def test_a_dash_manifest_is_checked_on_the_representation_a_player_picks(
    ffmpeg_path, provider, variants
):
    """ffmpeg reads every representation of a DASH manifest it is given whole: the
    check reported the first one's picture and all of them summed. It now maps
    the video a player picks (most pixels) and one sound: past the first segment
    of each, which ffmpeg opens to learn their streams, nothing of the others."""
    streams = {
        1: SimStream("dash", dash_variants=variants),
        2: SimStream("dash", dash_variants=("hd",)),
    }
    sim = provider([SimAccount("u", "p", 0)], streams)
    alone = _probe(ffmpeg_path, sim.url("u", "p", 2), duration=HLS_CHECK_S)
    assert alone.kind == "ok", alone
    assert alone.info.bitrate_kbps is not None

    _assert_the_best_variant_alone(
        _probe(ffmpeg_path, sim.url("u", "p", 1), duration=HLS_CHECK_S), alone, "dash"
    )
    low = variants.index("lowres")  # its representation's id: its place in the manifest
    asked = [r for r in sim.stats().dash_requests if r.startswith("1/")]
    assert f"1/chunk-{1 - low}-00002.m4s" in asked
    assert [r for r in asked if r.startswith(f"1/chunk-{low}-")] == [f"1/chunk-{low}-00001.m4s"]
    assert sim.stats().max_concurrency == {"u": 1}


def test_a_live_hls_stream_is_waited_for_then_ok_and_read_no_further_than_it_must(
    ffmpeg_path, provider
):
    """A live playlist lists three segments (6 s) at first and one more every 2 s."""
    streams = {1: SimStream("hls", hls_live=True), 2: SimStream("hls", hls_live=True)}
    sim = provider([SimAccount("u", "p", 0)], streams)
    # Read in full, 8 s: the fourth segment is waited for, not taken for a stall.
    whole = FfmpegProbe(ffmpeg_path, settle=None)
    outcome = whole(_request(sim.url("u", "p", 1), duration=8.0, timeout=6.0), CancelToken())
    assert outcome.kind == "ok", outcome
    assert outcome.info.resolution == "1280x720"
    assert "1/hd/3.ts" in sim.stats().hls_requests
    # The default check stops once its figures settle: on what was there at once.
    outcome = _probe(ffmpeg_path, sim.url("u", "p", 2), duration=8.0, timeout=6.0)
    assert outcome.kind == "ok", outcome
    assert outcome.info.resolution == "1280x720"
    assert "2/hd/3.ts" not in sim.stats().hls_requests


ALTERNATE_AUDIO_MASTER = """\
#EXTM3U
#EXT-X-VERSION:4
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",DEFAULT=YES,URI="audio/index.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=320x240,AUDIO="aud"
lowres/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1600000,RESOLUTION=1280x720,AUDIO="aud"
hd/index.m3u8
"""


@pytest.fixture(scope="module")
def alternate_audio(sample_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HLS master whose variants carry no audio: it is a rendition of its own."""
    folder = tmp_path_factory.mktemp("alternate-audio")
    cuts = {"lowres": ("lowres", "0:v"), "hd": ("hd", "0:v"), "audio": ("hd", "0:a")}
    for name, (variant, streams) in cuts.items():
        (folder / name).mkdir()
        cmd = [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-stream_loop", "2"]
        cmd += ["-i", str(sample_path(variant, sample_cache)), "-map", streams, "-c", "copy"]
        cmd += ["-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod"]
        cmd += ["-hls_segment_filename", str(folder / name / "%d.ts")]
        subprocess.run([*cmd, str(folder / name / "index.m3u8")], check=True, timeout=60)
    (folder / "master.m3u8").write_text(ALTERNATE_AUDIO_MASTER)
    return folder


def test_a_variant_with_its_audio_in_a_rendition_of_its_own_is_read_with_it(
    ffmpeg_path, alternate_audio: Path, httpserver: HTTPServer
):
    asked: list[str] = []

    def serve(request: Request) -> Response:
        asked.append(request.path)
        path = alternate_audio / request.path.lstrip("/")
        return Response(path.read_bytes()) if path.is_file() else Response(status=404)

    httpserver.expect_request(re.compile(r"/.*")).respond_with_handler(serve)
    outcome = _probe(ffmpeg_path, httpserver.url_for("/master.m3u8"), duration=HLS_CHECK_S)
    assert outcome.kind == "ok", outcome
    assert (outcome.info.resolution, outcome.info.audio_codec) == ("1280x720", "aac")
    assert {"/hd/2.ts", "/audio/2.ts"} <= set(asked)
    assert {p for p in asked if p.startswith("/lowres/") and p.endswith(".ts")} <= {"/lowres/0.ts"}


@pytest.mark.parametrize(
    ("fault", "duration", "reason"),
    [("missing_segments", DURATION_S, "http_404"), ("stuck", HLS_CHECK_S, "stalled")],
)
def test_hls_that_plays_nothing_is_dead_with_every_ffmpeg(
    ffmpeg_path, provider, fault, duration, reason
):
    stream = SimStream("hls", hls_variants=("lowres", "hd"), hls_fault=fault)
    sim = provider([SimAccount("u", "p", 0)], {1: stream})
    outcome = _probe(ffmpeg_path, sim.url("u", "p", 1), duration=duration)
    assert (outcome.kind, outcome.reason) == ("dead", reason), outcome


@pytest.mark.parametrize(
    ("variants", "broken", "plays", "resolution"),
    [
        (("lowres", "hd"), ("hd",), "lowres", "320x240"),
        (("lowres", "hd", "fhd"), ("fhd",), "hd", "1280x720"),
        (("lowres", "hd"), ("lowres", "hd"), None, None),
    ],
    ids=["best-broken", "next-best-of-three", "all-broken"],
)
def test_an_hls_master_whose_best_variant_plays_nothing_is_read_as_a_player_falls_back(
    ffmpeg_path, provider, variants, broken, plays, resolution
):
    """A player whose variant fails switches to the next best. Checked on its best
    variant alone, a master with a working lower variant was dead (http_404)."""
    stream = SimStream("hls", hls_variants=variants, hls_broken=broken)
    sim = provider([SimAccount("u", "p", 0)], {1: stream})
    outcome = _probe(ffmpeg_path, sim.url("u", "p", 1), duration=HLS_CHECK_S)
    assert outcome.kind == ("dead" if plays is None else "ok"), outcome
    assert outcome.info.resolution == resolution
    # The next best alone, one connection at a time: no segment of another.
    segments = [r for r in sim.stats().hls_requests if r.endswith(".ts")]
    assert {r.split("/")[1] for r in segments} == ({plays} if plays else set())
    assert sim.stats().max_concurrency.get("u", 0) <= 1


@pytest.mark.parametrize("kept", [(), ("0", "2")], ids=["all-gone", "hd-gone"])
def test_dash_whose_segments_are_gone_is_dead_with_every_ffmpeg(
    ffmpeg_path, sample_cache, httpserver: HTTPServer, kept
):
    """The manifest still comes, its segments are 404 (an expired token): all of
    them, or the 720p representation's only. ffmpeg opens the first segment of
    every representation and fails the whole manifest when one is gone, mapped
    or not, so no reading of it again (as for HLS) would play the rest."""
    media = load_dash(("lowres", "hd"), sample_cache)
    httpserver.expect_request("/live/u/p/1.mpd").respond_with_data(
        media.manifest, content_type="application/dash+xml"
    )
    for name, body in media.files.items():
        representation = re.match(r"(?:init|chunk)-(\d+)", name)
        if representation is not None and representation.group(1) in kept:
            httpserver.expect_request(f"/live/u/p/{name}").respond_with_data(body)
    httpserver.expect_request(re.compile(r".*\.m4s$")).respond_with_data("gone", status=404)
    outcome = _probe(ffmpeg_path, httpserver.url_for("/live/u/p/1.mpd"))
    assert (outcome.kind, outcome.reason) == ("dead", "http_404"), outcome


def test_slow_start_within_timeout_is_ok(ffmpeg_path, sim):
    assert _probe(ffmpeg_path, sim.url("u", "p", 4)).kind == "ok"


@pytest.mark.parametrize(
    ("path", "kind", "reason"),
    [
        ("/live/u/p/2.ts", "dead", "http_404"),
        ("/live/u/p/3.ts", "busy", "http_403"),
        ("/live/u/wrong/1.ts", "error", "account_unauthorized"),
        ("/live/gone/p/1.ts", "error", "account_unauthorized"),
        ("/live/u/p/9.ts", "dead", "connection_closed"),
    ],
)
def test_failures_to_open(ffmpeg_path, sim, path, kind, reason):
    outcome = _probe(ffmpeg_path, sim.base_url + path)
    assert (outcome.kind, outcome.reason) == (kind, reason)


def test_close_on_connect_while_others_run_is_busy(ffmpeg_path, sim):
    outcome = _probe(ffmpeg_path, sim.url("u", "p", 9), other_checks_running=1)
    assert (outcome.kind, outcome.reason) == ("busy", "closed_on_connect")


@pytest.mark.parametrize(
    ("status", "reason_phrase", "kind", "reason"),
    [
        (429, "Too Many Requests", "busy", "http_429"),
        (458, "Unknown", "busy", "http_458"),
        (509, "Bandwidth Limit Exceeded", "busy", "http_509"),
        (503, "Service Unavailable", "dead", "http_5xx"),
        (410, "Too many connections", "busy", "http_410"),
    ],
)
def test_refusal_statuses(ffmpeg_path, provider, status, reason_phrase, kind, reason):
    sim = provider(
        [SimAccount("u", "p", 1)],
        {1: SimStream("refused")},
        refuse_status=status,
        refuse_reason=reason_phrase,
    )
    outcome = _probe(ffmpeg_path, sim.url("u", "p", 1))
    assert (outcome.kind, outcome.reason) == (kind, reason)


def test_login_at_its_cap_is_busy_not_dead(ffmpeg_path, sim):
    probe = FfmpegProbe(ffmpeg_path, settle=None)  # holds its slot for the whole 30 s
    holder = CancelToken()
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(probe, _request(sim.url("one", "p", 1), duration=30), holder)
        assert sim.wait_for_connections("one", 1, timeout=WAIT_S)
        outcome = _probe(ffmpeg_path, sim.url("one", "p", 6))
        holder.cancel("test done")
        assert held.result(timeout=WAIT_S).kind == "cancelled"
    assert (outcome.kind, outcome.reason) == ("busy", "http_403")
    assert sim.max_concurrency["one"] == 1
    assert [r.username for r in sim.refused] == ["one"]


@pytest.mark.parametrize("stream_id", [13, 14], ids=["hls", "dash"])
def test_an_hls_or_dash_login_at_its_cap_is_busy_not_dead(ffmpeg_path, sim, stream_id):
    """The playlists (or the manifest) come, the first segment is refused: the login is full."""
    probe = FfmpegProbe(ffmpeg_path, settle=None)
    holder = CancelToken()
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(probe, _request(sim.url("one", "p", 1), duration=30), holder)
        assert sim.wait_for_connections("one", 1, timeout=WAIT_S)
        outcome = _probe(ffmpeg_path, sim.url("one", "p", stream_id), other_checks_running=1)
        holder.cancel("test done")
        assert held.result(timeout=WAIT_S).kind == "cancelled"
    assert (outcome.kind, outcome.reason) == ("busy", "http_403")
    assert sim.max_concurrency["one"] == 1


def test_stall_is_dead_no_data_within_timeout(ffmpeg_path, sim):
    # Half a second of data, then an open, silent socket: the data stopped.
    started = time.monotonic()
    outcome = _probe(ffmpeg_path, sim.url("u", "p", 5), timeout=2.0)
    elapsed = time.monotonic() - started
    assert (outcome.kind, outcome.reason) == ("dead", "stalled")
    assert outcome.info.resolution == "1280x720"  # what was seen before it stopped
    assert elapsed < DURATION_S + 2.0 + 2.5  # the cap, plus the interrupted ffmpeg's exit
    assert sim.wait_for_idle("u", timeout=WAIT_S)


def test_stall_after_a_second_of_a_longer_check_is_dead_stalled(ffmpeg_path, sim):
    outcome = _probe(ffmpeg_path, sim.url("u", "p", 11), duration=2.0, timeout=1.0)
    assert (outcome.kind, outcome.reason) == ("dead", "stalled")
    assert outcome.info.bitrate_kbps is None
    assert sim.wait_for_idle("u", timeout=WAIT_S)


def test_stream_that_ends_early_is_dead_ended(ffmpeg_path, sim):
    # 1.5 s of media, then the server closes the connection: ffmpeg exits by
    # itself (exit 0 on every build) short of the 3 s asked for.
    outcome = _probe(ffmpeg_path, sim.url("u", "p", 12), duration=3.0, timeout=2.0)
    assert (outcome.kind, outcome.reason) == ("dead", "ended")
    assert outcome.info.video_codec == "h264"


def test_stream_that_ends_after_the_check_is_ok(ffmpeg_path, sim):
    outcome = _probe(ffmpeg_path, sim.url("u", "p", 12), duration=1.0)
    assert outcome.kind == "ok", outcome


def test_connection_refused(ffmpeg_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = _probe(ffmpeg_path, f"http://127.0.0.1:{port}/live/u/p/1.ts")
    assert (outcome.kind, outcome.reason) == ("dead", "connection_refused")


def test_missing_binary_is_an_error(tmp_path):
    probe = FfmpegProbe(str(tmp_path / "no-ffmpeg"))
    outcome = probe(_request("http://127.0.0.1:9/x.ts"), CancelToken())
    assert (outcome.kind, outcome.reason) == ("error", "ffmpeg_start_failed")


def test_already_cancelled_token_starts_nothing(ffmpeg_path):
    spawned: list[int] = []
    token = CancelToken()
    token.cancel("preempted")
    outcome = FfmpegProbe(ffmpeg_path, on_spawn=spawned.append)(
        _request("http://127.0.0.1:9/x.ts"), token
    )
    assert (outcome.kind, outcome.reason) == ("cancelled", "preempted")
    assert spawned == []


def _start_long_probe(
    ffmpeg_path: str, url: str, token: CancelToken, pool: ThreadPoolExecutor
) -> tuple[Future[ProbeOutcome], int]:
    spawned: list[int] = []
    ready = threading.Event()

    def on_spawn(pid: int) -> None:
        spawned.append(pid)
        ready.set()

    probe = FfmpegProbe(ffmpeg_path, on_spawn=on_spawn, settle=None)
    future = pool.submit(probe, _request(url, duration=30, timeout=10), token)
    assert ready.wait(WAIT_S)
    return future, spawned[0]


def test_cancel_kills_ffmpeg_within_a_second(ffmpeg_path, sim):
    token = CancelToken()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future, pid = _start_long_probe(ffmpeg_path, sim.url("u", "p", 1), token, pool)
        assert sim.wait_for_connections("u", 1, timeout=WAIT_S)
        started = time.monotonic()
        token.cancel("viewer_needs_slot")
        outcome = future.result(timeout=1.0)
        assert time.monotonic() - started < 1.0
    assert (outcome.kind, outcome.reason) == ("cancelled", "viewer_needs_slot")
    assert _group_gone(pid)
    assert sim.wait_for_idle("u", timeout=WAIT_S)


def test_a_cancel_after_ffmpeg_ended_keeps_its_verdict(
    ffmpeg_path, sim, monkeypatch: pytest.MonkeyPatch
):
    # A preemption or a shutdown that lands once ffmpeg has ended by itself,
    # before the probe has collected its output: the check is over, and what
    # it measured stands (it used to be thrown away as "cancelled").
    token = CancelToken()
    finish = ffmpeg_module._Run.finish

    def cancel_then_finish(run: object) -> None:
        token.cancel("preempted")  # ffmpeg has exited: watch() has returned
        finish(run)  # type: ignore[arg-type]

    monkeypatch.setattr(ffmpeg_module._Run, "finish", cancel_then_finish)
    outcome = FfmpegProbe(ffmpeg_path)(_request(sim.url("u", "p", 1)), token)
    assert token.reason == "preempted"
    assert outcome.kind == "ok", outcome
    assert outcome.info.resolution == "1280x720"


def test_ffmpeg_killed_from_outside_is_an_error(ffmpeg_path, sim):
    token = CancelToken()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future, pid = _start_long_probe(ffmpeg_path, sim.url("u", "p", 1), token, pool)
        assert sim.wait_for_connections("u", 1, timeout=WAIT_S)
        os.kill(pid, signal.SIGKILL)
        outcome = future.result(timeout=WAIT_S)
    assert (outcome.kind, outcome.reason) == ("error", "probe_killed")
    assert _group_gone(pid)
    token.cancel()  # a late cancel must not signal a reaped (maybe reused) pid


def test_user_agent_is_sent_and_logs_are_redacted(ffmpeg_path, sim):
    with capture_logs() as logs:
        outcome = _probe(ffmpeg_path, sim.url("old", "secretpass", 2))
    assert outcome.reason == "account_unauthorized"
    assert sim.stats().user_agents == ("test-agent",)
    finished = [entry for entry in logs if entry["event"] == "probe_finished"]
    assert len(finished) == 1
    assert finished[0]["url"].endswith("/…/2.ts")
    assert finished[0]["media_s"] == 0
    assert "secretpass" not in repr(logs)
    default_agent = FfmpegProbe(ffmpeg_path, user_agent_default="fallback-agent")
    request = ProbeRequest(sim.url("u", "p", 2), None, DURATION_S, TIMEOUT_S)
    assert default_agent(request, CancelToken()).reason == "http_404"
    assert sim.stats().user_agents[-1] == "fallback-agent"


@pytest.mark.skipif(not CHILDREN_DIE_WITH_PARENT, reason="PR_SET_PDEATHSIG is Linux only")
def test_a_child_outlives_the_thread_that_started_it():
    # PR_SET_PDEATHSIG fires when the thread that forked the child ends; the
    # probe forks from one long-lived thread, so a probe thread ending (a
    # finished worker) never kills another check's ffmpeg.
    from adapters.ffmpeg import _SPAWNER

    started: list[subprocess.Popen[str]] = []
    native: list[int] = []

    def spawn() -> None:
        native.append(threading.get_native_id())
        started.append(_SPAWNER.popen([sys.executable, "-c", "import time; time.sleep(30)"]))

    thread = threading.Thread(target=spawn)
    thread.start()
    thread.join(WAIT_S)
    child = started[0]
    try:
        # The kernel sends the death signal before the thread leaves /proc.
        deadline = time.monotonic() + WAIT_S
        while Path(f"/proc/self/task/{native[0]}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not Path(f"/proc/self/task/{native[0]}").exists()
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.5)
    finally:
        child.kill()
        child.wait()
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (bytes(range(256)) * 64, "video/mp2t"),  # not a stream at all
        (b"<html><body>Service suspended</body></html>", "text/html"),  # a panel's page
        (b"", "video/mp2t"),  # an empty answer
    ],
    ids=["garbage", "html", "empty"],
)
def test_a_200_that_is_no_stream_is_dead_with_every_ffmpeg(
    ffmpeg_path: str, httpserver, body: bytes, content_type: str
):
    # ffmpeg 5.1 says "<url>: Invalid data found when processing input", newer
    # builds "Error opening input": the same dead stream either way.
    httpserver.expect_request("/live/u/p/9.ts").respond_with_data(body, content_type=content_type)
    outcome = _probe(ffmpeg_path, httpserver.url_for("/live/u/p/9.ts"))
    assert (outcome.kind, outcome.reason) == ("dead", "open_failed")
