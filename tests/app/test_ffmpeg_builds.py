"""Which ffmpeg the daemon runs, and that its children die with it.

The command line refuses an ffmpeg older than 4.4 (or a binary that is not
ffmpeg) with one line and exit 2, and logs the one it uses once. A daemon
killed with SIGKILL leaves no ffmpeg behind: the provider sees its connections
close at once and a restart finds every slot free.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from adapters.ffmpeg import CHILDREN_DIE_WITH_PARENT
from app.cli import main
from simulator.server import ProviderSimulator, SimAccount, SimStream
from tests.app.conftest import write_config, write_inventory
from tests.sim_fixtures import ProviderFactory

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 20.0

_OLD_FFMPEG = "ffmpeg version 4.3.6-0+deb11u1\nlibavformat    58. 45.100 / 58. 45.100"
_NOT_FFMPEG = "ffprobe version 6.1\nlibavutil      58. 29.100 / 58. 29.100"


def _fake_binary(folder: Path, output: str) -> Path:
    script = folder / "fake-ffmpeg"
    script.write_text(f"#!/bin/sh\necho '{output}'\n")  # a builtin: no PATH needed
    script.chmod(0o755)
    return script


def _good_inventory(folder: Path) -> None:
    data = {
        "accounts": [{"id": 1, "name": "A", "max_streams": 1}],
        "streams": [
            {"id": 1, "name": "A1", "m3u_account": 1, "url": "http://127.0.0.1:9/live/u/p/1.ts"}
        ],
        "channels": [{"id": 7, "name": "News", "streams": [1]}],
    }
    (folder / "inventory.json").write_text(json.dumps(data))


@pytest.mark.parametrize("command", ["validate", "once", "run"])
@pytest.mark.parametrize(
    ("output", "says"), [(_OLD_FFMPEG, "4.4 or newer"), (_NOT_FFMPEG, "not ffmpeg")]
)
def test_an_old_or_foreign_ffmpeg_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, output: str, says: str
):
    fake = _fake_binary(tmp_path, output)
    config = write_config(tmp_path, ffmpeg=str(fake))
    _good_inventory(tmp_path)

    assert main([command, "--config", str(config)]) == 2

    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert says in lines[0]
    assert str(fake) in lines[0]


def _events(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_once_logs_its_ffmpeg_once_and_runs_it(
    provider: ProviderFactory, ffmpeg_path: str, tmp_path: Path, capsys
):
    sim = provider([SimAccount("ua", "pa", 2)], {1: SimStream("ok"), 2: SimStream("ok")})
    config = write_config(tmp_path, extra='format = "json"', ffmpeg=ffmpeg_path, duration=1.0)
    config.write_text(config.read_text().replace('level = "warning"', 'level = "debug"'))
    write_inventory(tmp_path, sim, [(1, "ua", "pa", 2)], [(1, "one", 1), (2, "two", 1)])

    assert main(["once", "--config", str(config)]) == 0

    events = _events(capsys.readouterr().err)
    structlog.reset_defaults()  # the captured stderr closes before the simulator's last log
    found = [e for e in events if e["event"] == "ffmpeg_found"]
    assert len(found) == 1
    assert found[0]["path"] == ffmpeg_path
    assert found[0]["version"]
    started = [e for e in events if e["event"] == "probe_started"]
    assert len(started) == 2
    assert {e["ffmpeg"] for e in started} == {ffmpeg_path}  # check.ffmpeg, not PATH


# -- a daemon killed with SIGKILL ---------------------------------------------


def _processes_mentioning(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in status:
            children.append(int(entry.name))
    return children


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` (state in /proc, which nothing notifies about) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    """Starts ``main.py run`` processes; whatever is left of them is killed at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(config: Path) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"daemon-{len(started)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "run", "--config", str(config)],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not CHILDREN_DIE_WITH_PARENT, reason="PR_SET_PDEATHSIG is Linux only")
def test_sigkill_of_the_daemon_closes_its_connections_and_a_restart_collides_with_nothing(
    provider: ProviderFactory, ffmpeg_path: str, tmp_path: Path, daemons
):
    sim: ProviderSimulator = provider(
        [SimAccount("ua", "pa", 2)], {1: SimStream("ok"), 2: SimStream("ok")}
    )
    config = write_config(tmp_path, ffmpeg=ffmpeg_path, duration=30, timeout=5, adaptive=False)
    write_inventory(tmp_path, sim, [(1, "ua", "pa", 2)], [(1, "one", 1), (2, "two", 1)])
    marker = sim.base_url  # a port of this test's own simulator: in every child's URL

    first = daemons(config)
    assert sim.wait_for_connections("ua", 2, timeout=WAIT_S)
    assert len(_processes_mentioning(marker)) == 2
    assert len(_children_of(first.pid)) == 2

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=WAIT_S)

    assert sim.wait_for_idle("ua", timeout=5.0)
    assert _wait_for(lambda: not _processes_mentioning(marker), timeout=5.0)

    second = daemons(config)
    assert sim.wait_until(lambda s: sum(s.served.values()) == 4, timeout=WAIT_S)
    assert sim.wait_for_connections("ua", 2, timeout=WAIT_S)
    assert sim.stats().refused == ()
    assert sim.max_concurrency["ua"] == 2
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=WAIT_S) == 0
    assert sim.wait_for_idle("ua", timeout=5.0)
