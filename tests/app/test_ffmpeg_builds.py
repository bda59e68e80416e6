"""Which ffmpeg the daemon runs.

The command line refuses an ffmpeg older than 4.4 (or a binary that is not
ffmpeg) with one line and exit 2, and logs the one it uses once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from app.cli import main
from simulator.server import SimAccount, SimStream
from tests.app.conftest import write_config, write_inventory
from tests.sim_fixtures import ProviderFactory

_OLD_FFMPEG = "ffmpeg version 4.3.6-0+deb11u1\nlibavformat    58. 45.100 / 58. 45.100"
_NOT_FFMPEG = "ffprobe version 6.1\nlibavutil      58. 29.100 / 58. 29.100"


def _fake_binary(folder: Path, output: str) -> Path:
    script = folder / "fake-ffmpeg"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\n")
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
