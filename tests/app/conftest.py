from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from app import logs
from simulator.server import ProviderSimulator


@pytest.fixture(autouse=True)
def _clean_actors_and_logging() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()
    logs.reset()  # structlog's defaults, the root handler and the thread hook


def write_config(folder: Path, extra: str = "", **check: Any) -> Path:
    """A config for a file source in ``folder`` with short checks."""
    settings = {"duration": 1.5, "timeout": 3, "retries": 0, **check}
    check_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    text = f"""
[source]
type = "file"
path = "inventory.json"

[concurrent_streams]
global_limit = 10
stagger_delay = 0

[check]
{check_lines}

[results]
database = "results.sqlite"

[status]
listen = "127.0.0.1:0"

[log]
level = "warning"
{extra}
"""
    path = folder / "config.toml"
    path.write_text(text)
    return path


def write_inventory(
    folder: Path,
    sim: ProviderSimulator,
    accounts: list[tuple[int, str, str, int]],
    streams: list[tuple[int, str, int]],
) -> Path:
    """Inventory: accounts (id, user, password, max_streams), streams (id, name, account id)."""
    logins = {a[0]: (a[1], a[2]) for a in accounts}
    data = {
        "accounts": [{"id": a[0], "name": f"acc{a[0]}", "max_streams": a[3]} for a in accounts],
        "streams": [
            {
                "id": sid,
                "name": name,
                "m3u_account": acc,
                "url": sim.url(*logins[acc], sid),
            }
            for sid, name, acc in streams
        ],
        "channels": [{"id": 1, "name": "all", "streams": [s[0] for s in streams]}],
    }
    path = folder / "inventory.json"
    path.write_text(json.dumps(data))
    return path
