"""``bench.handoff``: the bare hand-over between threads behind the README's floor figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.dispatch import spread
from bench.handoff import in_order, list_schedule, main, measure, run_ahead, run_once


def test_the_list_schedule_gives_each_check_to_the_slot_that_frees_first() -> None:
    assert list_schedule([3.0, 3.0, 2.0, 2.0, 2.0], 2) == 7.0
    assert list_schedule([1.0] * 6, 3) == 2.0
    assert list_schedule([], 2) == 0.0


def test_every_check_runs_once_and_never_more_than_the_threads_at_once() -> None:
    figures = run_once([0.001] * 12, slots=3, work_s=0.0)

    assert figures["checks"] == 12
    assert figures["most_at_once"] == 3


def test_handed_over_in_advance_every_check_still_runs_once_one_per_thread() -> None:
    figures = run_ahead([0.001] * 13, slots=3, work_s=0.0)

    assert figures["checks"] == 13
    assert figures["most_at_once"] == 3


def test_handed_over_in_advance_fewer_checks_than_threads_all_run() -> None:
    figures = run_ahead([0.001] * 2, slots=4, work_s=0.0)

    assert figures["checks"] == 2
    assert figures["most_at_once"] == 2


def test_with_ahead_each_order_also_has_the_runs_handed_over_in_advance() -> None:
    result = measure([0.002, 0.001, 0.001], slots=2, work_us=[0], runs=1, ahead=True)

    orders = result["orders"]
    assert isinstance(orders, dict)
    for each in orders.values():
        assert each["ahead_work_us"]["0"]["checks"] == [3]
        assert each["work_us"]["0"]["checks"] == [3]


def test_the_figures_name_the_bound_and_each_order_and_work_value() -> None:
    result = measure([0.002, 0.001, 0.001, 0.001], slots=2, work_us=[0, 50], runs=2)

    assert result["checks"] == 4
    assert result["bound_s"] == pytest.approx(0.0025)
    orders = result["orders"]
    assert isinstance(orders, dict)
    assert set(orders) == {"longest", "tail"}
    longest = orders["longest"]
    assert longest["list_schedule_ratio"] == pytest.approx(1.2)  # 0.002 + 0.001 on one slot
    for each in orders.values():
        assert set(each["work_us"]) == {"0", "50"}
        assert "ahead_work_us" not in each
        for runs in each["work_us"].values():
            assert len(runs["ratios"]) == 2
            assert runs["checks"] == [4, 4]


def test_the_tail_order_is_the_dispatchs_shortest_last_the_longer_spread() -> None:
    durations = [float(n) for n in range(1, 21)]

    assert in_order(durations, "longest", 1) == sorted(durations, reverse=True)
    tail = in_order(durations, "tail", 1)
    assert tail[-6:] == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]  # 30 %, at least four per slot
    assert tail[:14] == sorted(durations[6:], key=spread)
    assert in_order(durations, "tail", 5) == sorted(durations, reverse=True)  # all tail


def test_a_scenario_without_a_global_limit_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "open.json"
    scenario.write_text(json.dumps({"generate": {"streams": 4, "accounts": 2}}))

    with pytest.raises(SystemExit) as exit_info:
        main([str(scenario)])

    assert exit_info.value.code == 2
    assert "open.json: needs a global limit" in capsys.readouterr().err
