"""The schedule against its lower bound: hundreds of random scenarios through a simulation.

``tests/actors/sim.py`` runs the real :class:`Dispatch` against the real
account arithmetic on a fake clock, so each scenario (two cycles: the first
cold, the second ordered by what the first measured) takes milliseconds. The
lower bound is the longest of: the longest check, each account's work over its
slots, all work over the global limit; no schedule can beat it.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import structlog

from actors.dispatch import CoordinatorSettings, Dispatch
from actors.slots import UNLIMITED
from bench.scheduler import SleepProbe, generate, load_scenario
from domain.models import Account, ProbeOutcome, Profile, Stream
from tests.actors import sim as sim_module
from tests.actors.sim import CycleRun, Scenario, Simulation, random_latency


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    """Thousands of checks per test: only errors are logged (formatting the rest is most
    of the time a simulation takes)."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    yield
    structlog.configure(**before)


Spec = tuple[list[int], list[float]]
"""An account: its profiles' limits (0 = unlimited) and its checks' durations."""


def build(specs: list[Spec], global_limit: int, viewers: dict[int, int] | None = None) -> Scenario:
    accounts: list[Account] = []
    streams: list[Stream] = []
    durations: dict[int, float] = {}
    for a, (limits, checks) in enumerate(specs, 1):
        profiles = tuple(
            Profile(id=a * 10 + i, name=f"login{i}", max_streams=limit, is_default=i == 0)
            for i, limit in enumerate(limits)
        )
        accounts.append(Account(id=a, name=f"acc{a}", max_streams=limits[0], profiles=profiles))
        for seconds in checks:
            sid = len(streams) + 1
            streams.append(Stream(id=sid, name=f"s{sid}", account_id=a, url=f"http://h/{sid}"))
            durations[sid] = round(seconds, 3)
    return Scenario(tuple(accounts), tuple(streams), durations, viewers or {}, global_limit)


def anything(rng: random.Random) -> Scenario:
    """Any mix: 1-8 accounts of 1-3 logins, limits 0-5, viewers, 1-25 checks of any length."""
    specs: list[Spec] = []
    viewers: dict[int, int] = {}
    for a in range(1, rng.randint(1, 8) + 1):
        limits = [rng.choice([0, 1, 1, 2, 2, 3, 5]) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        for i, limit in enumerate(limits):
            if limit and rng.random() < 0.2:
                viewers[a * 10 + i] = rng.randint(0, limit - 1)
        low, high = rng.choice([(0.1, 0.6), (0.05, 0.15), (0.3, 0.5), (0.01, 2.0)])
        specs.append((limits, [rng.uniform(low, high) for _ in range(rng.randint(1, 25))]))
    global_limit = 0 if rng.random() < 0.3 else rng.randint(1, 12)
    return build(specs, global_limit, viewers)


def fine(rng: random.Random) -> Scenario:
    """Many checks of mixed length per slot, so that a good schedule can reach the bound."""
    specs: list[Spec] = []
    for _ in range(rng.randint(2, 8)):
        slots = rng.choice([1, 1, 2, 2, 3, 5])
        limits = [slots] if rng.random() < 0.8 else [slots, rng.randint(1, 2)]
        checks = sum(limits) * rng.randint(6, 10)
        specs.append((limits, [rng.uniform(0.01, 0.4) for _ in range(checks)]))
    total = sum(sum(limits) for limits, _ in specs)
    global_limit = 0 if rng.random() < 0.3 else rng.randint(max(1, total // 4), total)
    return build(specs, global_limit)


def skewed(rng: random.Random) -> Scenario:
    """One account with many short checks, many with a few long ones, a binding global limit.

    The busy account's own work is the bound, and the others fit beside it:
    only a schedule that gives the busy account its slots first reaches it.
    """
    slots = rng.randint(1, 3)
    busy = [rng.uniform(0.05, 0.2)] * (rng.randint(12, 25) * slots)
    bound = sum(busy) / slots
    others = rng.randint(3, 12)
    spare = rng.randint(2, 6)
    long = rng.uniform(0.2, 0.6)
    specs: list[Spec] = [([slots], busy)]
    work = 0.0
    for _ in range(others):
        checks = [long * rng.uniform(0.8, 1.2) for _ in range(rng.randint(1, 3))]
        if (work + sum(checks)) / spare > 0.8 * bound:
            break
        work += sum(checks)
        specs.append(([1], checks))
    return build(specs, slots + spare)


def assert_limits_held(scenario: Scenario, run: CycleRun) -> None:
    """At every instant: each login within its limit after viewers, the total within global."""
    limits = {
        p.id: p.max_streams - scenario.viewers.get(p.id, 0)
        for a in scenario.accounts
        for p in a.usable_profiles()
        if p.max_streams
    }
    edges = sorted(
        [(opened, 1, account, profile) for opened, _, account, profile in run.intervals]
        + [(closed, -1, account, profile) for _, closed, account, profile in run.intervals]
    )  # at equal times a close sorts first: a slot handed over is not two connections
    per_profile: dict[int, int] = defaultdict(int)
    total = 0
    for _at, step, _account, profile in edges:
        per_profile[profile] += step
        total += step
        assert per_profile[profile] <= limits.get(profile, UNLIMITED), (profile, per_profile)
        if scenario.global_limit:
            assert total <= scenario.global_limit


def run_two_cycles(scenario: Scenario, **kwargs: object) -> tuple[CycleRun, CycleRun, Simulation]:
    sim = Simulation(scenario, **kwargs)  # type: ignore[arg-type]
    cold = sim.cycle()
    warm = sim.cycle()
    return cold, warm, sim


def scenarios(make: Callable[[random.Random], Scenario], count: int, seed: int) -> list[Scenario]:
    rng = random.Random(seed)
    return [make(rng) for _ in range(count)]


def test_any_scenario_holds_limits_keeps_slots_busy_and_ends_near_the_bound() -> None:
    for n, scenario in enumerate(scenarios(anything, 120, seed=1)):
        cold, warm, _sim = run_two_cycles(scenario)
        bound = scenario.lower_bound()
        longest = max(scenario.durations.values())
        for run in (cold, warm):
            assert_limits_held(scenario, run)
            assert all(outcome.kind == "ok" for outcome in run.finished.values())
            assert run.idle_violations == [], (n, run.idle_violations[:3])
            # A list schedule cannot always reach the bound (a few long checks on
            # few slots), but it never loses more than one check's length to it.
            assert run.makespan <= bound + longest + 1e-9, (n, run.makespan, bound, longest)


def test_fine_grained_work_is_scheduled_within_3_percent_of_the_bound() -> None:
    ratios = []
    for scenario in scenarios(fine, 40, seed=2):
        _cold, warm, _sim = run_two_cycles(scenario)
        ratios.append(warm.makespan / scenario.lower_bound())
    over = [(n, round(r, 4)) for n, r in enumerate(ratios) if r > 1.03]
    assert over == []


def test_the_critical_account_gets_the_global_budget_first() -> None:
    over = []
    for n, scenario in enumerate(scenarios(skewed, 80, seed=3)):
        cold, warm, _sim = run_two_cycles(scenario)
        bound = scenario.lower_bound()
        if max(cold.makespan, warm.makespan) > 1.03 * bound:
            over.append((n, round(cold.makespan / bound, 4), round(warm.makespan / bound, 4)))
    assert over == []


def test_the_skewed_bench_scenario_reaches_its_bound() -> None:
    """``bench/scenarios/skewed.json``: a plain list schedule by arrival took 1.25 x."""
    scenario = build([([2], [0.15] * 40)] + [([1], [0.4, 0.4]) for _ in range(10)], global_limit=6)
    cold, warm, _sim = run_two_cycles(scenario)
    assert scenario.lower_bound() == pytest.approx(3.0)
    assert warm.makespan == pytest.approx(3.0)
    assert cold.makespan == pytest.approx(3.0)


def test_stagger_spaces_the_openings_of_its_account_only() -> None:
    """Account 1 has a stagger delay of 0.15 s: its three openings are that far apart, on
    the fake clock; account 2's three open at once."""
    scenario = replace(build([([3], [0.01] * 3), ([3], [0.01] * 3)], 0), stagger={1: 0.15})
    run = Simulation(scenario).cycle()
    opened = sorted(o for o, _c, account, _p in run.intervals if account == 1)
    assert [round(b - a, 9) for a, b in itertools.pairwise(opened)] == [0.15, 0.15]
    other = [o for o, _c, account, _p in run.intervals if account == 2]
    assert len(other) == 3
    assert max(other) == min(other)


def test_large_generated_scenarios_reach_the_bound() -> None:
    """``python -m bench.scheduler --generate``: thousands of checks over dozens of accounts."""
    settings = CoordinatorSettings(retries=0, check_duration=0.05)
    bench = load_scenario(generate(2000, 40, global_limit=30))
    scenario = Scenario(bench.accounts, bench.streams, bench.durations, {}, 30)
    sim = Simulation(scenario, settings, watch_idle=False)
    sim.cycle()
    warm = sim.cycle()
    assert_limits_held(scenario, warm)
    assert warm.makespan <= 1.03 * scenario.lower_bound()


def flaky(rng: random.Random) -> Callable[[int, int], ProbeOutcome]:
    """Outcomes by (stream, attempt): mostly ok, some dead, errors, busy refusals."""
    kinds = ["ok"] * 6 + ["dead", "error", "busy"]

    def outcome(_stream_id: int, _attempt: int) -> ProbeOutcome:
        return ProbeOutcome(kind=rng.choice(kinds), reason="x")  # type: ignore[arg-type]

    return outcome


def test_with_message_latency_and_failures_every_job_ends_once_within_limits() -> None:
    rng = random.Random(4)
    settings = CoordinatorSettings(retries=1, retry_delay=0.05, busy_backoff=0.02)
    for _ in range(40):
        scenario = anything(rng)
        cold, warm, sim = run_two_cycles(
            scenario,
            settings=settings,
            latency=random_latency(rng, 0.003),
            outcome=flaky(rng),
        )
        for run in (cold, warm):
            assert_limits_held(scenario, run)
            assert {o.kind for o in run.finished.values()} <= {"ok", "dead", "error"}
        assert sim.leases_held() == 0
        assert sim.rooms_agree()


class _ScanChecked(Dispatch):
    """The dispatch, checking each pick of the critical account against a scan of every one."""

    picks = 0

    def _most_urgent(self) -> Any:
        picked = super()._most_urgent()
        limit = self._settings.global_limit
        ready = [self._accounts[account_id] for account_id in self._ready]
        assert picked is max(ready, key=lambda account: account.urgency(limit))
        _ScanChecked.picks += 1
        return picked


def test_the_critical_account_is_the_one_a_scan_of_every_ready_account_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pick keeps a heap of the accounts' keys, refreshed as each account changes;
    # with latency, failures and retries every kind of change comes in between picks.
    monkeypatch.setattr(sim_module, "Dispatch", _ScanChecked)
    rng = random.Random(11)
    settings = CoordinatorSettings(retries=1, retry_delay=0.05, busy_backoff=0.02)
    for make in (anything, fine, skewed) * 20:
        scenario = make(rng)
        if not scenario.global_limit:
            scenario = replace(scenario, global_limit=rng.randint(1, 6))
        run_two_cycles(
            scenario, settings=settings, latency=random_latency(rng, 0.003), outcome=flaky(rng)
        )
    assert _ScanChecked.picks > 1000


def test_the_bench_probe_counts_every_opening_over_a_limit_from_its_records() -> None:
    """``bench.scheduler``'s probe takes no lock: what was open at once comes from
    its records sorted by time (a closing and an opening at one instant close first)."""
    bench = load_scenario(
        {
            "global_limit": 2,
            "accounts": [{"id": 1, "max_streams": 1}, {"id": 2, "max_streams": 0}],
            "streams": [],
        }
    )
    probe = SleepProbe(bench)
    probe.events = [  # appended out of order, as racing threads may
        (2.0, "start", 1),  # a second on account 1 (limit 1): one violation
        (1.0, "start", 1),
        (3.0, "end", 1),
        (3.0, "start", 2),  # at the instant one closes: two open in all, no violation
        (3.5, "start", 2),  # a third in all (global 2): one violation
        (4.0, "end", 1),
        (5.0, "end", 2),
        (5.0, "end", 2),
    ]

    assert probe.tally() == ({1: 2, 2: 2}, 2)
