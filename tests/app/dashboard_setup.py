"""A daemon on the provider simulator for the dashboard tests: two accounts, three logins.

Account 1 has two logins (profiles 11 and 12, rewritten to the simulator's
``u1``/``u2``), one login each; account 2 has one login of 2. A viewer holds
profile 11, so account 1's checks go through login 12.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.config import load_config
from app.daemon import Daemon
from app.sources import build_sources
from simulator.server import ProviderSimulator, SimAccount, SimStream
from tests.sim_fixtures import ProviderFactory

SIM_ACCOUNTS = [SimAccount("u1", "p1", 1), SimAccount("u2", "p2", 1), SimAccount("ub", "pb", 2)]
STREAMS = {
    1: ("News HD", 1, "hd"),
    2: ("News SD", 2, "lowres"),
    3: ("Sports", 2, "hd"),
    4: ("Old", 1, "dead"),
}
CHANNELS = [
    {"id": 7, "name": "News", "streams": [2, 1, 4]},
    {"id": 8, "name": "Sports", "streams": [3]},
]


def start_provider(provider: ProviderFactory, behaviours: dict[int, SimStream] | None = None):
    streams = {
        sid: SimStream("dead") if variant == "dead" else SimStream("ok", variant)
        for sid, (_name, _acc, variant) in STREAMS.items()
    }
    streams.update(behaviours or {})
    return provider(SIM_ACCOUNTS, streams)


def write_setup(
    folder: Path,
    sim: ProviderSimulator,
    *,
    extra: str = "",
    listen: str = "127.0.0.1:0",
    duration: float = 1.5,
    timeout: float = 4.0,
    run_at_start: bool = True,
    channels: list[dict[str, Any]] | None = None,
    urls: dict[int, int] | None = None,
) -> Path:
    """Config, inventory and viewer file in ``folder``; ``urls`` maps our stream id to the sim's."""
    logins = {1: ("u1", "p1"), 2: ("ub", "pb")}
    inventory = {
        "accounts": [
            {
                "id": 1,
                "name": "Provider One",
                "max_streams": 1,
                "profiles": [
                    {"id": 11, "name": "main", "is_default": True, "max_streams": 1},
                    {
                        "id": 12,
                        "name": "second",
                        "max_streams": 1,
                        "search_pattern": "/live/u1/p1/",
                        "replace_pattern": "/live/u2/p2/",
                    },
                ],
            },
            {"id": 2, "name": "Provider Two", "max_streams": 2},
        ],
        "streams": [
            {
                "id": sid,
                "name": name,
                "m3u_account": acc,
                "url": sim.url(*logins[acc], (urls or {}).get(sid, sid)),
            }
            for sid, (name, acc, _variant) in STREAMS.items()
        ],
        "channels": channels if channels is not None else CHANNELS,
    }
    (folder / "inventory.json").write_text(json.dumps(inventory))
    (folder / "viewers.json").write_text(json.dumps({"profiles": {"11": 1}}))
    config = folder / "config.toml"
    config.write_text(
        f"""
[source]
type = "file"
path = "inventory.json"
viewers_path = "viewers.json"

[concurrent_streams]
global_limit = 10
stagger_delay = 0

[check]
duration = {duration}
timeout = {timeout}
retries = 0

[viewers]
poll_interval = 0.2

[schedule]
interval = "1h"
run_at_start = {"true" if run_at_start else "false"}

[results]
database = "results.sqlite"

[status]
listen = "{listen}"
token_env = "IPTV_CHECKD_TEST_TOKEN"

[log]
level = "warning"
{extra}
"""
    )
    return config


@contextmanager
def running_daemon(config_path: Path, *, scheduled: bool = True, **status: Any) -> Iterator[Daemon]:
    """A started daemon (stopped afterwards); ``status`` replaces [status] keys."""
    config = load_config(config_path)
    if status:
        config = replace(config, status=replace(config.status, **status))
    daemon = Daemon(config, build_sources(config))
    daemon.start(scheduled=scheduled)
    try:
        yield daemon
    finally:
        daemon.stop()


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
