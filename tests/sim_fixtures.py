"""Shared fixtures: the sample cache, the ffmpeg binary and simulated providers.

Registered for every test folder by ``tests/conftest.py``
(``pytest_plugins = ["tests.sim_fixtures"]``).

- ``sample_cache`` (session): a folder with every sample variant and its HLS
  rendition, generated once per run in parallel; ``IPTV_CHECKD_CACHE`` reuses a persistent cache.
- ``ffmpeg_path`` (session, parametrised): every ffmpeg build present, the
  system one on ``PATH`` and the one of imageio-ffmpeg, with ids such as
  ``system-5.1`` and ``imageio-7.1``; a build that is absent is skipped. A
  test that runs ffmpeg (the probe directly, or the daemon through
  ``check.ffmpeg`` in its config) takes it, so it runs against each build.
- ``ffmpeg_on_path``: the same build put first on ``PATH``, for code that
  finds ffmpeg itself (the demo).
- ``provider``: a factory ``provider(accounts, streams, **kwargs)`` that starts
  a :class:`ProviderSimulator` (short lifetime by default) and stops every
  simulator it made when the test ends.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from adapters.ffmpeg import FfmpegNotFound, check_ffmpeg, find_ffmpeg
from simulator.media import CACHE_ENV, VARIANTS, ensure_hls, ensure_sample
from simulator.server import ProviderSimulator, SimAccount, SimStream

ProviderFactory = Callable[..., ProviderSimulator]
TEST_LIFETIME_S = 60.0
"""No test needs a simulator longer than this; it stops by itself after."""


def _imageio_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return None


def _build_param(kind: str, path: str | None) -> Any:
    """One ``ffmpeg_path`` parameter: the binary and a readable id, or a skip."""
    if path is None:
        return pytest.param((None, f"no {kind} ffmpeg on this machine"), id=f"{kind}-absent")
    try:
        build = check_ffmpeg(path)
    except FfmpegNotFound as exc:
        # The daemon refuses such a build (exit 2): nothing to check against it.
        return pytest.param((None, str(exc)), id=f"{kind}-unsupported")
    release = re.match(r"n?(\d+\.\d+)", build.version)
    name = release.group(1) if release else "git"
    return pytest.param((path, ""), id=f"{kind}-{name}")


EXTRA_FFMPEG_ENV = "IPTV_CHECKD_EXTRA_FFMPEG"
"""More ffmpeg binaries to test against, separated by ``os.pathsep`` (``test.sh``
fetches a 7.0 build, between Debian's and imageio-ffmpeg's own)."""


def _extra_builds() -> list[Any]:
    paths = [p for p in os.environ.get(EXTRA_FFMPEG_ENV, "").split(os.pathsep) if p]
    return [_build_param("extra", path if Path(path).exists() else None) for path in paths]


FFMPEG_BUILDS = [
    _build_param("system", shutil.which("ffmpeg")),
    _build_param("imageio", _imageio_ffmpeg()),
    *_extra_builds(),
]
"""Every ffmpeg build the probe must give the same verdicts with."""


@pytest.fixture(scope="session", params=FFMPEG_BUILDS)
def ffmpeg_path(request: pytest.FixtureRequest) -> str:
    path, why_not = request.param
    if path is None:
        pytest.skip(why_not)
    return str(path)


@pytest.fixture
def ffmpeg_on_path(
    ffmpeg_path: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> str:
    """``ffmpeg_path`` as the ``ffmpeg`` found first on ``PATH``, for code that takes no binary."""
    folder = tmp_path_factory.mktemp("ffmpeg-on-path")
    (folder / "ffmpeg").symlink_to(ffmpeg_path)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    assert shutil.which("ffmpeg") == str(folder / "ffmpeg")
    return ffmpeg_path


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(CACHE_ENV, "")
    cache = Path(configured) if configured else tmp_path_factory.mktemp("samples")
    encoder = find_ffmpeg()  # samples are the same input for every build under test
    with ThreadPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(lambda v: ensure_sample(v, cache, encoder), VARIANTS))
        renditions = list(pool.map(lambda v: ensure_hls(v, cache, encoder), VARIANTS))
    assert all(p.stat().st_size > 0 for p in paths)
    assert all(any(folder.glob("*.ts")) for folder in renditions)
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
