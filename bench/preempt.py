"""``python -m bench.preempt``: from a viewer appearing in Dispatcharr to his slot being free.

A viewer who starts a channel whose login a check holds collides with the
check; Dispatcharr retries the same login for about 6.6 s and then gives up
(``reference/dispatcharr-api.md``, the viewer race). This measures the daemon's
side of that race over the real path: the stand-in Dispatcharr
(``tests/fakes/dispatcharr.py``, real HTTP with the real API's shapes) lists a
new live channel in ``/proxy/ts/status`` on the login a check is using; the
daemon's viewer watcher reads it on its next poll, the account asks for its
newest check to be preempted, the coordinator cancels it and the checker kills
its ffmpeg; the provider simulator sees the connection close. Timed from the
moment the live channel is added to the moment the simulator's count for the
login drops, ``--trials`` times per ``viewers.poll_interval``, at random
offsets into the checks.

Prints one JSON object per poll interval: ``free_after_s`` (p50, max, all),
``after_read_s`` (from the watcher's first read that lists the viewer to the
slot being free: the daemon's own reaction, without the wait for the poll),
``poll_interval``, and how much of the 6.6 s Dispatcharr waits is left at the
worst trial.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from app.config import load_config
from app.daemon import Daemon
from app.sources import build_sources
from simulator.server import ProviderSimulator, SimAccount, SimStream
from tests.fakes.dispatcharr import FakeDispatcharr

DISPATCHARR_GIVES_UP_S = 6.6
"""How long a viewer's Dispatcharr retries a refused login (measured on v0.29.0)."""
_CHANNEL_UUID = "6f1c2a8e-0000-4c1e-9a7f-00000000b001"
_PROFILE_ID = 400
_USER, _PASSWORD = "ub", "pb"
_STREAMS = 40


def _world(sim: ProviderSimulator, fake: FakeDispatcharr, folder: Path, poll: float) -> Path:
    fake.add_account(4, "Provider", max_streams=1, server_url=sim.base_url, default_profile_id=400)
    for sid in range(1, _STREAMS + 1):
        fake.add_stream(sid, f"s{sid}", 4, sim.url(_USER, _PASSWORD, sid))
    fake.add_channel(1, "All", list(range(1, _STREAMS + 1)), uuid=_CHANNEL_UUID)
    config = folder / "config.toml"
    config.write_text(
        f"""
[source]
type = "dispatcharr"

[dispatcharr]
url = "{fake.url}"
username = "{fake.username}"

[concurrent_streams]
global_limit = 10
stagger_delay = 0

[check]
duration = 30
adaptive = false
timeout = 10
retries = 0

[viewers]
poll_interval = {poll}

[results]
database = "results.sqlite"
dry_run = true

[status]
listen = ""

[log]
level = "error"
"""
    )
    return config


def _viewer_reads(fake: FakeDispatcharr) -> int:
    return fake.count("proxy_stats") + fake.count("proxy_status")


def measure(poll: float, trials: int, seed: int = 1) -> dict[str, Any]:
    """Run ``trials`` collisions with the watcher polling every ``poll`` seconds."""
    rng = random.Random(seed)
    streams = {sid: SimStream("ok", "hd") for sid in range(1, _STREAMS + 1)}
    fake = FakeDispatcharr().start()
    os.environ["DISPATCHARR_PASSWORD"] = fake.password
    os.environ.pop("DISPATCHARR_API_KEY", None)
    freed: list[float] = []
    reaction: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-preempt-") as tmp,
        ProviderSimulator(
            [SimAccount(_USER, _PASSWORD, 1)], streams, lifetime_s=120 + trials * 20
        ) as sim,
    ):
        try:
            config = load_config(_world(sim, fake, Path(tmp), poll))
            sources = build_sources(config)
            daemon = Daemon(config, sources)
            daemon.start(scheduled=False)
            cycle = threading.Thread(
                target=lambda: daemon.run_cycle(sources.inventory.load(), timeout=600),
                daemon=True,
            )
            cycle.start()
            for _ in range(trials):
                if not sim.wait_for_connections(_USER, 1, timeout=30):
                    break
                # Somewhere into the check, and anywhere in the watcher's poll period.
                time.sleep(0.5 + rng.uniform(0, poll))
                reads = _viewer_reads(fake)
                appeared = time.monotonic()
                fake.add_live_channel(_CHANNEL_UUID, m3u_profile_id=_PROFILE_ID, stream_id=1)
                while _viewer_reads(fake) == reads and time.monotonic() - appeared < 30:
                    time.sleep(0.002)  # the bench's own thread: spotting the watcher's read
                seen = time.monotonic()
                if sim.wait_until(lambda s: s.open_connections.get(_USER, 0) == 0, timeout=30):
                    now = time.monotonic()
                    freed.append(now - appeared)
                    reaction.append(now - seen)
                with fake._lock:
                    fake.live_channels.clear()  # the viewer leaves again
        finally:
            daemon.stop()
            fake.stop()
    worst = max(freed, default=None)
    return {
        "poll_interval": poll,
        "trials": len(freed),
        "free_after_s": {
            "p50": round(statistics.median(freed), 2) if freed else None,
            "max": round(worst, 2) if worst is not None else None,
            "all": [round(x, 2) for x in freed],
        },
        "after_read_s": {
            "p50": round(statistics.median(reaction), 3) if reaction else None,
            "max": round(max(reaction), 3) if reaction else None,
        },
        "margin_to_dispatcharr_s": round(DISPATCHARR_GIVES_UP_S - worst, 2)
        if worst is not None
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure for each ``--poll`` interval and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.preempt", description=__doc__)
    parser.add_argument("--poll", type=float, nargs="*", default=[5.0, 2.0, 1.0])
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args(argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(40),  # errors only
        cache_logger_on_first_use=True,
    )
    for poll in args.poll:
        print(json.dumps(measure(poll, args.trials)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
