"""``bench.soak``: cycles one after another through one set of actors, and what stays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.scheduler import load_scenario
from bench.soak import SMALL, soak, soak_daemon


def test_every_cycle_gets_its_results_and_the_figures_come_at_the_first_every_nth_and_last():
    scenario = load_scenario(SMALL)
    seen: list[dict[str, Any]] = []

    lines = soak(scenario, cycles=7, every=3, stall_after=30.0, report=seen.append)

    assert [line["cycle"] for line in lines[:-1]] == [1, 3, 6, 7]
    assert all(line["results"] == len(scenario.streams) for line in lines[:-1])
    assert lines == seen
    growth = lines[-1]["growth_per_1000_cycles"]
    assert growth["from_cycle"] == 3
    assert growth["threads"] == 0  # the pool's threads are reused from cycle to cycle


def test_a_cycle_that_gets_no_result_in_time_ends_the_run_as_stalled():
    """A check longer than the stall window stands for a cycle that never ends."""
    scenario = load_scenario(
        {
            "accounts": [{"id": 1, "name": "A", "max_streams": 1}],
            "streams": [{"id": 1, "name": "S", "m3u_account": 1, "duration_s": 5.0}],
        }
    )

    lines = soak(scenario, cycles=3, every=1, stall_after=0.2)

    assert lines == [{"stalled": 1, "after_s": 0.2}]


def test_the_whole_daemon_stores_every_cycle_and_keeps_its_threads(tmp_path: Path):
    lines = soak_daemon(SMALL, cycles=5, every=2, folder=tmp_path, stall_after=30.0)

    assert [line["cycle"] for line in lines[:-1]] == [1, 2, 4, 5]
    assert all(line["results"] == len(SMALL["streams"]) for line in lines[:-1])
    sizes = [line["database_mb"] for line in lines[:-1]]
    assert sizes == sorted(sizes)
    assert (tmp_path / "results.sqlite").exists()
    assert lines[-1]["growth_per_1000_cycles"]["threads"] == 0
