"""``main.py once`` stops within seconds of SIGTERM, also while its write-back hangs.

Before, it waited up to 30 s for the write-back to a Dispatcharr that does not
answer (here: PATCHes held by the stand-in), longer than ``docker stop``
waits before its SIGKILL, which would lose the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from app.cli import _run_interruptibly
from app.config import load_config
from app.daemon import Daemon
from app.sources import build_sources
from tests.actors.fakes import Behaviour, FakeProbe
from tests.app.dashboard_setup import wait_for
from tests.app.processes import kill_if_running, stop_with_sigterm
from tests.app.test_cli import good_inventory
from tests.app.test_config import write
from tests.fakes.dispatcharr import FakeDispatcharr

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_while_the_writeback_hangs_stops_once_in_seconds_with_its_report(
    fake_dispatcharr: FakeDispatcharr, tmp_path: Path
):
    fake = fake_dispatcharr
    fake.add_account(1, "Gone Provider", max_streams=2)
    for stream_id in (501, 502):  # nothing listens on port 9: both are dead at once
        fake.add_stream(stream_id, f"s{stream_id}", 1, f"http://127.0.0.1:9/{stream_id}.ts")
    fake.add_channel(5, "Five", [501, 502])
    fake.hold("stream", "PATCH")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[source]
type = "dispatcharr"

[dispatcharr]
url = "{fake.url}"
timeout = 60

[check]
duration = 1
timeout = 2
retries = 0

[results]
database = "results.sqlite"

[log]
level = "warning"
"""
    )
    report = tmp_path / "report.json"
    env = {**os.environ, "DISPATCHARR_API_KEY": fake.api_key}
    command = [sys.executable, str(ROOT / "main.py"), "once", "--config", str(config)]
    once = subprocess.Popen(
        [*command, "--report", str(report)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Both streams are checked and their stats are being written (and held).
        assert wait_for(
            lambda: sum(c.method == "PATCH" and c.route == "stream" for c in fake.calls) == 2, 30
        )
        output, stopped_in = stop_with_sigterm(once, timeout=60)
    finally:
        kill_if_running(once)
        fake.release()
    assert stopped_in < 9, (stopped_in, output)
    assert "Traceback" not in output
    assert "writeback_incomplete" in output
    results = json.loads(report.read_text())["results"]
    assert [(r["stream_id"], r["status"]) for r in results] == [(501, "dead"), (502, "dead")]


def test_a_signal_that_comes_before_the_cycle_starts_still_aborts_it(tmp_path: Path):
    # Before, the abort reached a coordinator with no cycle yet and was
    # forgotten: the whole cycle ran, and once gave up on it after 6 s with
    # exit 1 and no report. Here the checks would never end by themselves.
    inventory = good_inventory()
    # Enough streams that the cycle is still being asked for when the abort goes.
    inventory["streams"] = [
        {"id": sid, "name": f"s{sid}", "m3u_account": 1, "url": f"http://127.0.0.1:9/{sid}.ts"}
        for sid in range(1, 3_001)
    ]
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    config = load_config(
        write(tmp_path, '[source]\npath = "inventory.json"\n[status]\nlisten = ""\n')
    )
    sources = build_sources(config)
    daemon = Daemon(config, sources, FakeProbe(default=Behaviour(hang=True)))
    daemon.start(scheduled=False, status=False)
    stopping = threading.Event()
    stopping.set()  # SIGTERM came while the inventory was being read
    try:
        finished = _run_interruptibly(daemon, sources.inventory.load(), stopping)
    finally:
        daemon.stop()
    assert finished.aborted
    assert len(finished.results) == 3_000
    assert {r.status for r in finished.results} == {"cancelled"}
