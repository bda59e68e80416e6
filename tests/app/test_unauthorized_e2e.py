"""End to end: a provider login that answers 401 costs its account's checks, not its streams."""

from __future__ import annotations

import json
from pathlib import Path

from app.cli import main
from simulator.server import SimAccount, SimStream
from tests.app.conftest import write_config, write_inventory
from tests.sim_fixtures import ProviderFactory


def test_an_expired_login_ends_its_accounts_checks_after_one_connection(
    provider: ProviderFactory, ffmpeg_path: str, tmp_path: Path
):
    sim = provider(
        [SimAccount("ua", "pa", 1), SimAccount("gone", "pg", 1, expired=True)],
        {sid: SimStream("ok", "hd") for sid in range(1, 6)},
    )
    config = write_config(tmp_path, ffmpeg=ffmpeg_path, retries=2, retry_delay=0.1)
    write_inventory(
        tmp_path,
        sim,
        [(1, "ua", "pa", 1), (2, "gone", "pg", 1)],
        [(1, "good", 1), (2, "x2", 2), (3, "x3", 2), (4, "x4", 2), (5, "x5", 2)],
    )
    report_path = tmp_path / "report.json"
    assert main(["once", "--config", str(config), "--report", str(report_path)]) == 0
    by_id = {r["stream_id"]: r for r in json.loads(report_path.read_text())["results"]}
    assert by_id[1]["status"] == "ok"
    for sid in (2, 3, 4, 5):
        assert (by_id[sid]["status"], by_id[sid]["error"]) == ("error", "account_unauthorized")
    stats = sim.stats()
    # Every stream request is counted; the good stream's was served: one went to the
    # expired login (no retry, no other stream of its account opened).
    assert len(stats.user_agents) - sum(stats.served.values()) == 1
