"""End to end: ``main.py once`` with real ffmpeg against the loopback provider simulator."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
from pathlib import Path

from adapters.ffmpeg import FfmpegProbe
from app.cli import main
from app.config import load_config
from app.daemon import Daemon, check_times
from app.sources import build_sources
from simulator.server import SimAccount, SimStream
from tests.app.conftest import write_config, write_inventory
from tests.sim_fixtures import ProviderFactory

SEED_ACCOUNTS = [(1, "ua", "pa", 1), (2, "ub", "pb", 2)]
SEED_STREAMS = [(1, "A1", 1), (2, "A2", 1), (3, "B1", 2), (4, "B2", 2), (5, "B3", 2)]


def seed_provider(provider: ProviderFactory, behaviours: dict[int, SimStream] | None = None):
    streams = {sid: SimStream("ok", "hd") for sid, _n, _a in SEED_STREAMS}
    streams.update(behaviours or {})
    return provider([SimAccount("ua", "pa", 1), SimAccount("ub", "pb", 2)], streams)


def test_seed_scenario_once_with_report(
    provider: ProviderFactory, ffmpeg_path: str, tmp_path: Path
):
    sim = seed_provider(provider)
    config = write_config(tmp_path, ffmpeg=ffmpeg_path)
    write_inventory(tmp_path, sim, SEED_ACCOUNTS, SEED_STREAMS)
    report_path = tmp_path / "out" / "report.json"

    assert main(["once", "--config", str(config), "--report", str(report_path)]) == 0

    report = json.loads(report_path.read_text())
    assert report["cycle"]["streams"] == 5
    assert report["cycle"]["alive"] == 5
    assert [r["stream_id"] for r in report["results"]] == [1, 2, 3, 4, 5]
    first = report["results"][0]
    assert first["status"] == "ok"
    assert first["resolution"] == "1280x720"
    assert first["video_codec"] == "h264"
    assert first["audio_codec"] == "aac"
    assert first["bitrate_kbps"] > 0
    assert 0 < first["score"] <= 1
    stats = sim.stats()
    assert stats.max_concurrency["ua"] == 1
    assert stats.max_concurrency["ub"] == 2
    assert stats.refused == ()
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        assert db.execute("select count(*) from checks").fetchone()[0] == 5
    # The next start orders its first cycle by these check times.
    times = check_times(tmp_path / "results.sqlite")
    assert sorted(times) == [1, 2, 3, 4, 5]
    assert all(0 < seconds < 30 for seconds in times.values())
    assert check_times(tmp_path / "missing.sqlite") == {}


def test_mixed_streams_get_the_right_statuses(
    provider: ProviderFactory, ffmpeg_path: str, tmp_path: Path
):
    behaviours = {
        1: SimStream("dead"),
        2: SimStream("stall", stall_after_s=0.5),
        3: SimStream("lowres"),
        4: SimStream("noaudio"),
        5: SimStream("refused"),
    }
    sim = seed_provider(provider, behaviours)
    config = write_config(tmp_path, ffmpeg=ffmpeg_path, retries=1, busy_backoff=0.2)
    write_inventory(tmp_path, sim, SEED_ACCOUNTS, SEED_STREAMS)
    report_path = tmp_path / "report.json"

    assert main(["once", "--config", str(config), "--report", str(report_path)]) == 0

    by_id = {r["stream_id"]: r for r in json.loads(report_path.read_text())["results"]}
    assert by_id[1]["status"] == "dead"
    assert by_id[1]["error"] == "http_404"
    assert by_id[2]["status"] == "dead"  # stalled: no data for check.timeout
    assert by_id[2]["error"] == "stalled"  # the probe's verdict, before the hard limit
    assert by_id[3]["status"] == "ok"
    assert by_id[3]["resolution"] == "320x240"
    assert by_id[4]["status"] == "ok"
    assert by_id[4]["audio_codec"] is None
    assert by_id[5]["status"] == "error"  # a refusal is never "dead"
    assert by_id[5]["error"] == "provider_busy"
    assert by_id[3]["score"] < 1
    assert sim.stats().max_concurrency["ua"] <= 1


def test_stall_forever_ends_at_timeout_and_frees_the_slot(
    provider: ProviderFactory, ffmpeg_path: str, tmp_path: Path
):
    sim = provider(
        [SimAccount("ua", "pa", 1)],
        {1: SimStream("stall", stall_after_s=0.3), 2: SimStream("ok", "hd")},
    )
    config = write_config(tmp_path, ffmpeg=ffmpeg_path, duration=1.0, timeout=1.5)
    write_inventory(tmp_path, sim, [(1, "ua", "pa", 1)], [(1, "frozen", 1), (2, "good", 1)])
    report_path = tmp_path / "report.json"

    assert main(["once", "--config", str(config), "--report", str(report_path)]) == 0

    report = json.loads(report_path.read_text())
    by_id = {r["stream_id"]: r for r in report["results"]}
    assert by_id[1]["status"] == "dead"
    assert by_id[1]["error"] == "stalled"
    assert by_id[2]["status"] == "ok"
    assert report["cycle"]["duration_s"] < 10
    assert sim.stats().max_concurrency["ua"] == 1


def test_killed_ffmpeg_gives_an_error_and_the_cycle_completes(
    provider: ProviderFactory, ffmpeg_path: str, tmp_path: Path
):
    sim = provider([SimAccount("ua", "pa", 1)], {1: SimStream("ok"), 2: SimStream("ok")})
    config_path = write_config(tmp_path, ffmpeg=ffmpeg_path, duration=3.0, timeout=3)
    write_inventory(tmp_path, sim, [(1, "ua", "pa", 1)], [(1, "one", 1), (2, "two", 1)])
    config = load_config(config_path)
    sources = build_sources(config)
    spawned = threading.Event()
    pids: list[int] = []

    def on_spawn(pid: int) -> None:
        pids.append(pid)
        spawned.set()

    daemon = Daemon(config, sources, probe=FfmpegProbe(ffmpeg_path, on_spawn=on_spawn))
    daemon.start(scheduled=False)
    try:
        done = threading.Thread(
            target=lambda: results.append(daemon.run_cycle(sources.inventory.load(), 60))
        )
        results: list = []
        done.start()
        assert spawned.wait(10)
        assert sim.wait_for_connections("ua", 1, timeout=10)
        os.kill(pids[0], signal.SIGKILL)
        done.join(60)
    finally:
        daemon.stop()
    finished = results[0]
    statuses = sorted(r.status for r in finished.results)
    assert statuses == ["error", "ok"]
    killed = next(r for r in finished.results if r.status == "error")
    assert killed.error
    assert sim.stats().max_concurrency["ua"] == 1
