"""The adaptive probe length against the simulator, with every ffmpeg build.

``check.duration`` is the most a check reads: a steady stream frees its
connection once resolution, codecs, fps and the bitrate are in; a stream whose
bitrate moves is read on; a check that may not settle reads all of it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from adapters.ffmpeg import FfmpegProbe
from domain.cancel import CancelToken
from domain.models import ProbeOutcome, ProbeRequest
from simulator.server import ProviderSimulator, SimAccount, SimStream
from tests.logcapture import capture_logs

LONG_S = 12.0
"""Long enough that a steady sample settles well before it (at 3-5 s of media)."""
WAIT_S = 10.0


@pytest.fixture
def sim(provider) -> ProviderSimulator:
    streams = {1: SimStream("ok", "hd"), 2: SimStream("ok", "vbr")}
    return provider([SimAccount("u", "p", 0)], streams)


def _check(probe: FfmpegProbe, sim: ProviderSimulator, stream_id: int, duration: float):
    request = ProbeRequest(
        url=sim.url("u", "p", stream_id), user_agent=None, duration=duration, timeout=5.0
    )
    return probe(request, CancelToken())


def _held_s(sim: ProviderSimulator, stream_id: int) -> list[float]:
    assert sim.wait_for_idle("u", timeout=WAIT_S)
    return sorted(c.seconds for c in sim.stats().connections if c.stream_id == stream_id)


def test_a_steady_stream_stops_early_with_the_bitrate_of_a_full_read(ffmpeg_path, sim):
    stream_id = 1
    adaptive = FfmpegProbe(ffmpeg_path)
    fixed = FfmpegProbe(ffmpeg_path, settle=None)
    with ThreadPoolExecutor(max_workers=2) as pool:
        early = pool.submit(_check, adaptive, sim, stream_id, LONG_S)
        full = pool.submit(_check, fixed, sim, stream_id, LONG_S)
        settled: ProbeOutcome = early.result(timeout=LONG_S + WAIT_S)
        reference: ProbeOutcome = full.result(timeout=LONG_S + WAIT_S)
    assert (settled.kind, reference.kind) == ("ok", "ok"), (settled, reference)
    assert settled.info.resolution == reference.info.resolution
    assert settled.info.video_codec == reference.info.video_codec
    assert settled.info.audio_codec == reference.info.audio_codec
    assert settled.info.fps == reference.info.fps
    assert settled.info.bitrate_kbps is not None
    assert reference.info.bitrate_kbps is not None
    assert abs(settled.info.bitrate_kbps / reference.info.bitrate_kbps - 1) <= 0.10
    short, whole = _held_s(sim, stream_id)
    # The full read held its connection for the whole duration (less the
    # simulator's one-second burst); the adaptive one let go at half of it.
    assert whole > LONG_S - 1.5
    assert short < LONG_S / 2


def test_a_settled_check_logs_the_media_it_read(ffmpeg_path, sim):
    """``out_time`` comes every half second and lagged the burst a check settles
    on: ``probe_finished`` said 0.0-0.02 s of media for checks that read 5 s."""
    with capture_logs() as logs:
        outcome = _check(FfmpegProbe(ffmpeg_path), sim, 1, LONG_S)
    assert outcome.kind == "ok", outcome
    finished = [entry for entry in logs if entry["event"] == "probe_finished"]
    assert [entry["settled"] for entry in finished] == [True]
    assert finished[0]["media_s"] >= 2.0  # at least the settle window


def test_a_moving_bitrate_is_read_on(ffmpeg_path, sim):
    # The vbr sample swings between ~2.7 and ~0.5 Mbit/s every 2 s: no 2 s
    # window of estimates agrees within 5 % before many seconds.
    outcome = _check(FfmpegProbe(ffmpeg_path), sim, 2, 6.0)
    assert outcome.kind == "ok", outcome
    assert outcome.info.bitrate_kbps
    (held,) = _held_s(sim, 2)
    assert held > 6.0 - 1.5  # the whole duration, less the burst


def test_a_short_check_reads_its_duration(ffmpeg_path, sim):
    # Two keyframe intervals and a 2 s window need 3 s of media: 2 s never settle.
    outcome = _check(FfmpegProbe(ffmpeg_path), sim, 1, 2.0)
    assert outcome.kind == "ok", outcome
    (held,) = _held_s(sim, 1)
    assert held > 2.0 - 1.5
