"""``python -m bench.provider``: the real daemon against providers that lie about their limits.

Each scenario starts the loopback provider simulator with a real cap, a close
lag or a refusal style that differ from what the daemon is told, writes a
config and an inventory file, and runs the real daemon path (``app.daemon``:
coordinator, account actors, real ffmpeg probes, result store) for one or more
cycles. It prints one JSON object per scenario with:

- ``refusals``: connections the provider refused (over its real cap, or
  within its close lag);
- ``ok`` / ``streams``: streams that ended ``ok`` in the (last) cycle;
- ``statuses``: every final status and reason;
- ``cycle_s``: the cycle's duration;
- ``conn_s_median``: median connection-seconds per healthy stream (the seconds
  its connections held a provider slot, measured by the simulator);
- for ``bitrate``: each stream's bitrate against a 30 s read of it.

Scenarios (names for ``--only``):

- ``cap_s1`` / ``cap_s0``: 10 streams, configured ``max_streams`` 3, real cap 1,
  stagger 1 s / 0 s;
- ``cap_hangup``: as ``cap_s1``, the provider refusing by hanging up right
  after the connection opens instead of an HTTP status;
- ``lag15``: close lag 1.5 s, cap 2 (configured 2), 12 streams;
- ``lag2``: close lag 2 s, cap 2, 10 streams of 1 s checks;
- ``stable1`` / ``stable3``: 10 healthy streams, a dead one and one that
  stalls, cap 2, six cycles (a restart before each) with ``check.stable_every``
  1 and 3: cycle times and connection-seconds of every cycle and in all;
- ``bitrate``: ``check.duration = 30`` on six streams of every sample variant
  (the variable-bitrate one included), no cap: connection-seconds per stream
  and bitrate against a 30 s read.

The figures are timings of real processes on a shared machine: run it alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from adapters.ffmpeg import FfmpegProbe, find_ffmpeg
from app.config import load_config
from app.daemon import Daemon
from app.sources import build_sources
from domain.cancel import CancelToken
from domain.models import CheckResult, ProbeRequest
from simulator.server import ProviderSimulator, RefuseStyle, SimAccount, SimStream

_USER = "bench"
_PASSWORD = "bench"  # noqa: S105 - a login of the loopback simulator, not a secret
REFERENCE_READ_S = 30.0


@dataclass(frozen=True)
class Scenario:
    """One provider set-up and how the daemon is configured for it."""

    name: str
    streams: dict[int, SimStream]
    real_cap: int
    configured: int
    stagger: float = 1.0
    duration: float = 10.0
    close_lag_s: float = 0.0
    refuse_style: RefuseStyle = "status"
    cycles: int = 1
    check: dict[str, Any] = field(default_factory=dict)


def _hd(count: int, first: int = 1) -> dict[int, SimStream]:
    return {first + i: SimStream("ok", "hd") for i in range(count)}


SCENARIOS: dict[str, Scenario] = {
    "cap_s1": Scenario("cap_s1", _hd(10), real_cap=1, configured=3, stagger=1.0),
    "cap_s0": Scenario("cap_s0", _hd(10), real_cap=1, configured=3, stagger=0.0),
    "cap_hangup": Scenario(
        "cap_hangup", _hd(10), real_cap=1, configured=3, stagger=1.0, refuse_style="close"
    ),
    "lag15": Scenario("lag15", _hd(12), real_cap=2, configured=2, stagger=0.0, close_lag_s=1.5),
    "lag2": Scenario(
        "lag2", _hd(10), real_cap=2, configured=2, stagger=0.0, duration=1.0, close_lag_s=2.0
    ),
    # Most streams stable: 10 healthy, 2 dead; six cycles, a restart before each.
    "stable1": Scenario(
        "stable1",
        {**_hd(10), 11: SimStream("dead"), 12: SimStream("stall", stall_after_s=1.0)},
        real_cap=2,
        configured=2,
        stagger=0.0,
        cycles=6,
        check={"stable_every": 1},
    ),
    "stable3": Scenario(
        "stable3",
        {**_hd(10), 11: SimStream("dead"), 12: SimStream("stall", stall_after_s=1.0)},
        real_cap=2,
        configured=2,
        stagger=0.0,
        cycles=6,
        check={"stable_every": 3},
    ),
    "bitrate": Scenario(
        "bitrate",
        {
            1: SimStream("ok", "hd"),
            2: SimStream("ok", "fhd"),
            3: SimStream("lowres"),
            4: SimStream("hevc"),
            5: SimStream("noaudio"),
            6: SimStream("ok", "vbr"),
        },
        real_cap=0,
        configured=0,
        stagger=0.0,
        duration=30.0,
    ),
}


def _write_setup(folder: Path, scenario: Scenario, sim: ProviderSimulator) -> Path:
    check = {"duration": scenario.duration, "timeout": 10, **scenario.check}
    check_lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in check.items())
    config = folder / "config.toml"
    config.write_text(
        f"""
[source]
type = "file"
path = "inventory.json"

[concurrent_streams]
global_limit = 10
stagger_delay = {scenario.stagger}

[check]
{check_lines}

[results]
database = "results.sqlite"

[status]
listen = ""

[log]
level = "error"
"""
    )
    inventory = {
        "accounts": [{"id": 1, "name": "bench", "max_streams": scenario.configured}],
        "streams": [
            {"id": sid, "name": f"s{sid}", "m3u_account": 1, "url": sim.url(_USER, _PASSWORD, sid)}
            for sid in scenario.streams
        ],
        "channels": [{"id": 1, "name": "all", "streams": list(scenario.streams)}],
    }
    (folder / "inventory.json").write_text(json.dumps(inventory))
    return config


def run_scenario(scenario: Scenario, cache_dir: Path | None = None) -> dict[str, Any]:
    """Run ``scenario`` through the real daemon; return its figures."""
    account = SimAccount(_USER, _PASSWORD, scenario.real_cap, close_lag_s=scenario.close_lag_s)
    lifetime = 60.0 + scenario.cycles * (40 * scenario.duration + 120)
    with (
        tempfile.TemporaryDirectory(prefix="bench-provider-") as tmp,
        ProviderSimulator(
            [account],
            scenario.streams,
            cache_dir=cache_dir,
            refuse_style=scenario.refuse_style,
            lifetime_s=lifetime,
        ) as sim,
    ):
        config = load_config(_write_setup(Path(tmp), scenario, sim))
        sources = build_sources(config)
        cycles: list[dict[str, Any]] = []
        for _ in range(scenario.cycles):
            # A new daemon per cycle, as after a restart: what it learned must
            # come back from the results store.
            daemon = Daemon(config, sources)
            daemon.start(scheduled=False)
            try:
                refused_before = len(sim.refused)
                connections_before = len(sim.stats().connections)
                finished = daemon.run_cycle(sources.inventory.load(), timeout=lifetime)
            finally:
                daemon.stop()
            sim.wait_for_idle(timeout=10.0)
            stats = sim.stats()
            held: dict[int, float] = {}
            for connection in stats.connections[connections_before:]:
                sid = connection.stream_id
                held[sid] = held.get(sid, 0.0) + connection.seconds
            healthy = [r.stream_id for r in finished.results if r.status == "ok"]
            refusals = stats.refused[refused_before:]
            cycles.append(
                {
                    "refusals": len(refusals),
                    "refused_at_s": _refusal_times(refusals, stats.connections),
                    "ok": len(healthy),
                    "streams": len(finished.results),
                    "statuses": dict(Counter(_status(r) for r in finished.results)),
                    "cycle_s": round(finished.duration_s, 2),
                    "checked": len(finished.results),
                    "conn_s_total": round(sum(held.values()), 1),
                    "conn_s_median": round(statistics.median(held.get(s, 0.0) for s in healthy), 2)
                    if healthy
                    else None,
                    "conn_s": {s: round(held.get(s, 0.0), 2) for s in healthy},
                    "bitrate_kbps": {
                        r.stream_id: r.bitrate_kbps for r in finished.results if r.status == "ok"
                    },
                }
            )
        out: dict[str, Any] = {
            "scenario": scenario.name,
            "real_cap": scenario.real_cap,
            "configured": scenario.configured,
            "stagger": scenario.stagger,
            "close_lag_s": scenario.close_lag_s,
            "duration": scenario.duration,
            **cycles[-1],
        }
        if len(cycles) > 1:
            out["earlier_cycles"] = [
                {k: c[k] for k in ("refusals", "ok", "checked", "cycle_s", "conn_s_total")}
                for c in cycles[:-1]
            ]
            out["all_cycles_s"] = round(sum(c["cycle_s"] for c in cycles), 1)
            out["all_conn_s"] = round(sum(c["conn_s_total"] for c in cycles), 1)
        if scenario.name == "bitrate":
            out["reference"] = _reference_bitrates(sim, scenario)
            out["bitrate_error_pct"] = {
                sid: round(100 * abs(rate - out["reference"][sid]) / out["reference"][sid], 1)
                for sid, rate in out["bitrate_kbps"].items()
                if out["reference"].get(sid)
            }
        else:
            del out["bitrate_kbps"]
            del out["conn_s"]
        return out


def _status(result: CheckResult) -> str:
    return f"{result.status}:{result.error}" if result.error else result.status


def _refusal_times(refusals: Sequence[Any], connections: Sequence[Any]) -> list[float]:
    """Refusal times in seconds from the cycle's first connection (or refusal)."""
    if not refusals:
        return []
    starts = [c.opened for c in connections] + [r.at for r in refusals]
    origin = min(starts)
    return [round(r.at - origin, 1) for r in refusals]


def _reference_bitrates(sim: ProviderSimulator, scenario: Scenario) -> dict[int, float | None]:
    """Each stream's bitrate from a plain 30 s read (the probe, not the daemon)."""
    probe = FfmpegProbe(find_ffmpeg(), settle=None)  # the whole 30 s, never settling early

    def read(sid: int) -> float | None:
        request = ProbeRequest(
            url=sim.url(_USER, _PASSWORD, sid),
            user_agent=None,
            duration=REFERENCE_READ_S,
            timeout=10,
            stream_id=sid,
        )
        return probe(request, CancelToken()).info.bitrate_kbps

    # All at once (the simulator has no cap here): stream copy costs little CPU.
    with ThreadPoolExecutor(max_workers=len(scenario.streams)) as pool:
        return dict(zip(scenario.streams, pool.map(read, scenario.streams), strict=True))


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios (all by default) and print their figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.provider", description=__doc__)
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="scenarios to run")
    parser.add_argument(
        "--cycles", type=int, default=0, help="cycles per scenario (default: its own)"
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="sample cache folder")
    args = parser.parse_args(argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(40),  # errors only
        cache_logger_on_first_use=True,
    )
    names = args.only or list(SCENARIOS)
    for name in names:
        scenario = SCENARIOS[name]
        if args.cycles > 0:
            scenario = Scenario(**{**scenario.__dict__, "cycles": args.cycles})
        started = time.monotonic()
        figures = run_scenario(scenario, args.cache_dir)
        figures["bench_s"] = round(time.monotonic() - started, 1)
        print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
