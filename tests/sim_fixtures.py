"""Shared fixtures: the sample cache, the ffmpeg binary and simulated providers.

Registered for every test folder by ``tests/conftest.py``
(``pytest_plugins = ["tests.sim_fixtures"]``).

- ``sample_cache`` (session): a folder with every sample variant, generated
  once per run in parallel; ``IPTV_CHECKD_CACHE`` reuses a persistent cache.
- ``ffmpeg_path`` (session): the ffmpeg binary the probe uses.
- ``provider``: a factory ``provider(accounts, streams, **kwargs)`` that starts
  a :class:`ProviderSimulator` (short lifetime by default) and stops every
  simulator it made when the test ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from adapters.ffmpeg import find_ffmpeg
from simulator.media import CACHE_ENV, VARIANTS, ensure_sample
from simulator.server import ProviderSimulator, SimAccount, SimStream

ProviderFactory = Callable[..., ProviderSimulator]
TEST_LIFETIME_S = 60.0
"""No test needs a simulator longer than this; it stops by itself after."""


@pytest.fixture(scope="session")
def ffmpeg_path() -> str:
    return find_ffmpeg()


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory: pytest.TempPathFactory, ffmpeg_path: str) -> Path:
    configured = os.environ.get(CACHE_ENV, "")
    cache = Path(configured) if configured else tmp_path_factory.mktemp("samples")
    with ThreadPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(lambda v: ensure_sample(v, cache, ffmpeg_path), VARIANTS))
    assert all(p.stat().st_size > 0 for p in paths)
    return cache


@pytest.fixture
def provider(sample_cache: Path) -> Iterator[ProviderFactory]:
    started: list[ProviderSimulator] = []

    def make(
        accounts: list[SimAccount], streams: dict[int, SimStream], **kwargs: Any
    ) -> ProviderSimulator:
        kwargs.setdefault("lifetime_s", TEST_LIFETIME_S)
        sim = ProviderSimulator(accounts, streams, cache_dir=sample_cache, **kwargs)
        started.append(sim)
        sim.start()
        return sim

    yield make
    for sim in started:
        sim.stop()
