"""Learning the provider, end to end: the real daemon, real ffmpeg, the simulator.

The simulator enforces the provider's real cap (below the configured
``max_streams``) and can keep counting a closed connection for a while (close
lag). The daemon must learn both from the first refusals, end every stream
``ok`` in that same cycle, show what it learned on ``/api/status`` and keep it
in SQLite, so that a restarted daemon is refused nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from app.config import load_config
from app.daemon import Daemon
from app.sources import build_sources
from simulator.server import SimAccount, SimStream
from tests.app.conftest import write_config, write_inventory
from tests.sim_fixtures import ProviderFactory

CYCLE_TIMEOUT_S = 90.0


def run_cycle(config_path: Path) -> tuple[dict[int, str], dict[str, Any]]:
    """One cycle with a fresh daemon: the statuses, and the login as /api/status shows it."""
    config = load_config(config_path)
    sources = build_sources(config)
    daemon = Daemon(config, sources)
    daemon.start(scheduled=False)
    try:
        finished = daemon.run_cycle(sources.inventory.load(), timeout=CYCLE_TIMEOUT_S)
        address = daemon.status_address
        assert address is not None
        status = requests.get(f"{address}/api/status", timeout=5).json()
    finally:
        daemon.stop()
    statuses = {
        r.stream_id: r.status if r.status == "ok" else f"{r.status}:{r.error}"
        for r in finished.results
    }
    (login,) = status["accounts"]["1"]["logins"]
    return statuses, login


def test_a_real_cap_below_the_configured_one_is_learned_kept_and_restored(
    provider: ProviderFactory, ffmpeg_path: str, tmp_path: Path
):
    streams = {sid: SimStream("ok", "lowres") for sid in range(1, 5)}
    # Paced as live (no burst): the connection that got in is held for the whole
    # check (1.5 s), so the other two openings meet it even when their ffmpeg
    # starts late on a loaded machine. With a 0.5 s burst, one once started after
    # the first check had ended and got in: its refusal was never seen, and the
    # limit learned stayed at 2 (each refusal counts what was granted then).
    sim = provider([SimAccount("ua", "pa", 1)], streams, burst_s=0.0)
    config = write_config(tmp_path, ffmpeg=ffmpeg_path)  # stagger 0: three open at once
    write_inventory(tmp_path, sim, [(1, "ua", "pa", 3)], [(sid, f"s{sid}", 1) for sid in streams])

    statuses, login = run_cycle(config)
    assert statuses == dict.fromkeys(streams, "ok")
    # Three openings at once on a login whose real cap is 1: two refusals, then none;
    # or a third when one of the first connections was still on its way as a refused
    # stream came back (a slow ffmpeg start): the limit was learned from both.
    refusals = len(sim.refused)
    assert 2 <= refusals <= 3
    assert sim.max_concurrency["ua"] == 1
    assert (login["limit"], login["learned_limit"], login["effective_limit"]) == (3, 1, 1)

    # A restarted daemon reads what was learned: it is refused nothing.
    statuses, login = run_cycle(config)
    assert statuses == dict.fromkeys(streams, "ok")
    assert len(sim.refused) == refusals
    assert login["learned_limit"] == 1


def test_a_close_lag_is_learned_from_one_refusal_and_waited_out(
    provider: ProviderFactory, ffmpeg_path: str, tmp_path: Path
):
    streams = {sid: SimStream("ok", "lowres") for sid in range(1, 6)}
    sim = provider([SimAccount("ua", "pa", 2, close_lag_s=1.0)], streams)
    config = write_config(tmp_path, extra="\n[learning]\nrelease_grace = 1.5\n", ffmpeg=ffmpeg_path)
    write_inventory(tmp_path, sim, [(1, "ua", "pa", 2)], [(sid, f"s{sid}", 1) for sid in streams])

    statuses, login = run_cycle(config)
    assert statuses == dict.fromkeys(streams, "ok")
    # The first reuse of a freed slot is refused (both slots may free at once);
    # from then on every freed slot waits the grace out.
    assert 1 <= len(sim.refused) <= 2
    assert login["release_lag_s"] >= 1.5
    assert "learned_limit" not in login  # a lag, not a lower cap
    assert sim.max_concurrency["ua"] <= 2
