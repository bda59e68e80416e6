"""Full cycles against a stand-in Dispatcharr (real HTTP, the real API's shapes)
whose streams are served by the loopback provider simulator, probed by real ffmpeg."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests

from app.cli import main
from simulator.server import SimAccount, SimStream
from tests.fakes.dispatcharr import FakeDispatcharr
from tests.sim_fixtures import ProviderFactory

SIM_STREAMS = {
    812: SimStream("ok", "fhd"),
    977: SimStream("ok", "hd"),
    978: SimStream("lowres"),
    979: SimStream("dead"),
    1033: SimStream("ok", "hd"),
    1034: SimStream("noaudio"),
    980: SimStream("hls"),  # a master listing its 320x240 variant before its 720p one
}
"""The streams the provider serves; 980 is in Dispatcharr only where a test adds it."""


@pytest.fixture
def world(
    provider: ProviderFactory,
    fake_dispatcharr: FakeDispatcharr,
    ffmpeg_path: str,
    monkeypatch,
    tmp_path,
):
    sim = provider(
        [SimAccount("u1", "pass1", 2), SimAccount("u2", "pass2", 1), SimAccount("ub", "pb", 1)],
        SIM_STREAMS,
    )
    fake = fake_dispatcharr
    fake.add_account(3, "ProviderA", max_streams=2, server_url=sim.base_url, default_profile_id=5)
    fake.add_profile(
        3,
        9,
        "Second login",
        max_streams=1,
        search_pattern="/u1/pass1/",
        replace_pattern="/u2/pass2/",
    )
    fake.add_account(4, "ProviderB", max_streams=1, server_url=sim.base_url, default_profile_id=400)
    old_stats = {"resolution": "640x360", "pixel_format": "yuv420p", "video_codec": "mpeg2video"}
    for sid in (812, 977, 978, 979):
        fake.add_stream(sid, f"s{sid}", 3, sim.url("u1", "pass1", sid), stream_stats=old_stats)
    for sid in (1033, 1034):
        fake.add_stream(sid, f"s{sid}", 4, sim.url("ub", "pb", sid))
    fake.add_channel(42, "BBC One", [979, 977, 812], uuid="6f1c2a8e-0000-4c1e-9a7f-000000000042")
    fake.add_channel(43, "News", [978, 1034, 1033], uuid="6f1c2a8e-0000-4c1e-9a7f-000000000043")
    monkeypatch.setenv("DISPATCHARR_PASSWORD", fake.password)
    monkeypatch.delenv("DISPATCHARR_API_KEY", raising=False)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[source]
type = "dispatcharr"

[dispatcharr]
url = "{fake.url}"
username = "{fake.username}"
user_agent = "iptv-checkd-test"

[concurrent_streams]
global_limit = 10
stagger_delay = 0

[check]
duration = 1.5
timeout = 3
retries = 0
ffmpeg = {json.dumps(ffmpeg_path)}

[viewers]
poll_interval = 0.5

[results]
database = "results.sqlite"

[status]
listen = ""

[log]
level = "warning"
"""
    )
    return sim, fake, config


def run_once(config: Path, tmp_path: Path) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    code = main(["once", "--config", str(config), "--report", str(report)])
    return code, (json.loads(report.read_text()) if report.exists() else {})


def test_full_cycle_writes_stats_and_reorders(world, tmp_path: Path):
    sim, fake, config = world
    code, report = run_once(config, tmp_path)
    assert code == 0
    assert fake.logins == 1
    statuses = {r["stream_id"]: r["status"] for r in report["results"]}
    assert statuses == {812: "ok", 977: "ok", 978: "ok", 979: "dead", 1033: "ok", 1034: "ok"}

    patches = dict(fake.stream_patches)
    assert set(patches) == {812, 977, 978, 979, 1033, 1034}
    stats = patches[812]["stream_stats"]
    assert stats["resolution"] == "1920x1080"
    assert stats["video_codec"] == "h264"
    assert stats["audio_codec"] == "aac"
    assert stats["source_fps"] == 25.0
    assert stats["video_bitrate"] > 0
    assert stats["pixel_format"] == "yuv420p"  # old keys are merged, not dropped
    assert patches[812]["stream_stats_updated_at"]
    assert patches[979]["stream_stats"]["resolution"] == "640x360"  # dead: media keys kept

    reorders = dict(fake.channel_patches)
    assert reorders[42]["streams"] == [812, 977, 979]
    assert reorders[43]["streams"] == [1033, 1034, 978]
    assert sorted(fake.channels[42]["streams"]) == [812, 977, 979]

    seen = sim.stats()
    assert seen.max_concurrency.get("u1", 0) <= 2
    assert seen.max_concurrency.get("u2", 0) <= 1
    assert seen.max_concurrency.get("ub", 0) <= 1
    assert seen.refused == ()


def test_an_hls_stream_is_written_and_ranked_by_its_best_variant(world, tmp_path: Path):
    sim, fake, config = world
    fake.add_stream(980, "s980", 3, sim.url("u1", "pass1", 980))
    fake.add_channel(44, "News HLS", [978, 980], uuid="6f1c2a8e-0000-4c1e-9a7f-000000000044")
    code, report = run_once(config, tmp_path)
    assert code == 0
    assert {r["stream_id"]: r["status"] for r in report["results"]}[980] == "ok"
    stats = dict(fake.stream_patches)[980]["stream_stats"]
    assert (stats["resolution"], stats["stream_type"], stats["video_codec"]) == (
        "1280x720",
        "hls",
        "h264",
    )
    assert dict(fake.channel_patches)[44]["streams"] == [980, 978]  # 720p before 320x240
    assert sim.stats().max_concurrency.get("u1", 0) <= 2


def test_token_expiry_mid_cycle_refreshes_and_carries_on(world, tmp_path: Path):
    _sim, fake, config = world
    expired = threading.Event()

    def expire_once(fake_: FakeDispatcharr, _channel_id: int) -> None:
        if not expired.is_set():
            expired.set()
            fake_.expire_access_tokens()

    fake.on_channel_read = expire_once
    code, report = run_once(config, tmp_path)
    assert code == 0
    assert expired.is_set()
    assert fake.refreshes >= 1
    assert len(fake.stream_patches) == 6
    assert len(report["results"]) == 6


def test_a_500_is_retried(world, tmp_path: Path):
    _sim, fake, config = world
    fake.fail_next("streams", 1, status=500)
    code, report = run_once(config, tmp_path)
    assert code == 0
    assert len(report["results"]) == 6


def test_malformed_page_is_bad_input_and_writes_nothing(world, tmp_path: Path, capsys):
    _sim, fake, config = world
    fake.malform_next("streams", "missing_results")
    code, report = run_once(config, tmp_path)
    assert code == 2
    assert report == {}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "streams" in err[0]
    assert "results" in err[0]
    assert fake.stream_patches == []
    assert fake.channel_patches == []


def test_channel_edited_between_read_and_write_is_not_overwritten(world, tmp_path: Path):
    _sim, fake, config = world
    edited = threading.Event()

    def edit_42(fake_: FakeDispatcharr, channel_id: int) -> None:
        if channel_id == 42 and not edited.is_set():
            edited.set()
            fake_.set_channel_streams(42, [977, 812])  # the user removed a stream meanwhile

    fake.on_channel_read = edit_42
    code, _report = run_once(config, tmp_path)
    assert code == 0
    assert edited.is_set()
    patched = dict(fake.channel_patches)
    assert 42 not in patched
    assert fake.channels[42]["streams"] == [977, 812]
    assert patched[43]["streams"] == [1033, 1034, 978]


def test_viewer_appearing_mid_cycle_preempts_the_check(world, tmp_path: Path):
    sim, fake, config = world
    slow = config.read_text().replace("duration = 1.5", "duration = 4\nadaptive = false")
    config.write_text(slow)
    box: dict[str, tuple[int, dict]] = {}
    runner = threading.Thread(target=lambda: box.update(result=run_once(config, tmp_path)))
    runner.start()
    try:
        assert sim.wait_for_connections("ub", 1, timeout=15)
        appeared = time.monotonic()
        fake.add_live_channel(
            "6f1c2a8e-0000-4c1e-9a7f-000000000043", m3u_profile_id=400, stream_id=1033
        )
        # Preempted within poll_interval + 1 s: the check's connection is gone.
        assert sim.wait_until(lambda s: s.open_connections.get("ub", 0) == 0, timeout=1.5)
        assert time.monotonic() - appeared <= 0.5 + 1.0
        # The viewer now gets the provider's only slot, and no check takes it from him.
        viewer = requests.get(sim.url("ub", "pb", 1033), stream=True, timeout=5)
        assert viewer.status_code == 200
        next(viewer.iter_content(4096))
        assert not sim.wait_until(lambda s: s.open_connections.get("ub", 0) > 1, timeout=1.5)
        viewer.close()
        with fake._lock:
            fake.live_channels.clear()
    finally:
        runner.join(60)
    code, report = box["result"]
    assert code == 0
    by_id = {r["stream_id"]: r for r in report["results"]}
    assert by_id[1033]["status"] == "ok", by_id[1033]["error"]
    assert by_id[1034]["status"] == "ok"
    seen = sim.stats()
    assert seen.max_concurrency["ub"] == 1
    assert seen.refused == ()


def test_dry_run_writes_nothing(world, tmp_path: Path):
    _sim, fake, config = world
    report = tmp_path / "report.json"
    assert main(["once", "--config", str(config), "--report", str(report), "--dry-run"]) == 0
    assert len(json.loads(report.read_text())["results"]) == 6
    assert fake.stream_patches == []
    assert fake.channel_patches == []


def test_dispatcharr_down_exits_1_with_one_line(world, tmp_path: Path, capsys):
    _sim, fake, config = world
    fake.stop()
    code, report = run_once(config, tmp_path)
    assert code == 1
    assert report == {}
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ")  # after the client's own warning log line
    assert "unavailable" in err[-1]
    assert "Traceback" not in "\n".join(err)


def _wait_for(predicate, timeout: float) -> bool:
    """Poll a condition of the stand-in Dispatcharr (it has no events to wait on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_viewer_reads_failing_hold_checks_back_and_a_viewer_keeps_his_slot(world, tmp_path: Path):
    """/proxy/ts/status answers 500: no check opens before a viewer count is read, and a
    viewer who starts watching during the outage is not fought for the only slot."""
    sim, fake, config = world
    fake.stats_available = False  # an older Dispatcharr: viewers from /proxy/ts/status
    fake.fail_next("proxy_status", count=100_000)
    box: dict[str, tuple[int, dict]] = {}
    runner = threading.Thread(target=lambda: box.update(result=run_once(config, tmp_path)))
    runner.start()
    viewer = None
    try:
        assert _wait_for(lambda: fake.count("proxy_status") >= 3, timeout=20)
        # 1.5 s: a check is granted within milliseconds once a count is known.
        assert not sim.wait_until(lambda s: bool(s.max_concurrency), timeout=1.5)
        # A viewer starts watching account B's only login while the reads fail.
        viewer = requests.get(sim.url("ub", "pb", 1033), stream=True, timeout=5)
        assert viewer.status_code == 200
        next(viewer.iter_content(4096))
        fake.add_live_channel(
            "6f1c2a8e-0000-4c1e-9a7f-000000000043", m3u_profile_id=400, stream_id=1033
        )
        with fake._lock:
            fake._faults.clear()  # the reads work again
        assert sim.wait_for_connections("u1", 1, timeout=20)  # account A's checks run
        assert not sim.wait_until(lambda s: s.open_connections.get("ub", 0) > 1, timeout=1.5)
    finally:
        if viewer is not None:
            viewer.close()
        with fake._lock:
            fake.live_channels.clear()
            fake._faults.clear()
        runner.join(60)
    code, report = box["result"]
    assert code == 0
    assert sorted(r["status"] for r in report["results"]) == ["dead"] + ["ok"] * 5
    seen = sim.stats()
    assert seen.refused == ()
    assert seen.max_concurrency["ub"] == 1
