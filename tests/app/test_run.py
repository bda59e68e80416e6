"""``main.py run`` as a real process: cycles on schedule, a clean stop on SIGTERM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from simulator.server import SimAccount, SimStream
from tests.app.conftest import write_config, write_inventory
from tests.app.processes import kill_if_running, stop_with_sigterm
from tests.sim_fixtures import ProviderFactory

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_stops_the_daemon_mid_check(
    provider: ProviderFactory, ffmpeg_path: str, tmp_path: Path
):
    sim = provider(
        [SimAccount("ua", "pa", 1)], {1: SimStream("ok", "hd"), 2: SimStream("ok", "hd")}
    )
    config = write_config(tmp_path, ffmpeg=ffmpeg_path, duration=20, timeout=5, adaptive=False)
    write_inventory(tmp_path, sim, [(1, "ua", "pa", 1)], [(1, "one", 1), (2, "two", 1)])
    daemon = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "run", "--config", str(config)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert sim.wait_for_connections("ua", 1, timeout=20)
        output, stopped_in = stop_with_sigterm(daemon, timeout=15)
    finally:
        kill_if_running(daemon)
    assert daemon.returncode == 0, output
    assert stopped_in < 5
    # The probe's ffmpeg died with the daemon: the provider sees nobody left.
    assert sim.wait_until(lambda s: s.open_connections.get("ua", 0) == 0, timeout=3)
    assert "Traceback" not in output
