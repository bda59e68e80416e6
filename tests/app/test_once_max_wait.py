"""``once`` on an account that viewers hold: it ends after ``check.max_wait``, not an hour."""

from __future__ import annotations

import json
from pathlib import Path

from app.cli import main
from simulator.server import SimAccount, SimStream
from tests.app.conftest import write_inventory
from tests.sim_fixtures import ProviderFactory


def test_once_reports_streams_of_a_viewer_held_account_cancelled(
    provider: ProviderFactory, tmp_path: Path
):
    sim = provider(
        [SimAccount("ua", "pa", 1), SimAccount("ub", "pb", 1)],
        {1: SimStream("ok", "hd"), 2: SimStream("ok", "hd"), 3: SimStream("ok", "hd")},
    )
    write_inventory(
        tmp_path,
        sim,
        [(1, "ua", "pa", 1), (2, "ub", "pb", 1)],
        [(1, "a1", 1), (2, "a2", 1), (3, "b1", 2)],
    )
    (tmp_path / "viewers.json").write_text(json.dumps({"accounts": {"1": 1}}))
    config = tmp_path / "config.toml"
    config.write_text(
        """
[source]
path = "inventory.json"
viewers_path = "viewers.json"

[concurrent_streams]
stagger_delay = 0

[check]
duration = 1.5
timeout = 3
retries = 0
max_wait = 5

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
    report = tmp_path / "report.json"
    assert main(["once", "--config", str(config), "--report", str(report)]) == 0
    results = {r["stream_id"]: r for r in json.loads(report.read_text())["results"]}
    assert results[3]["status"] == "ok"
    for sid in (1, 2):
        assert results[sid]["status"] == "cancelled"
        assert results[sid]["error"] == "viewers_held_account"
