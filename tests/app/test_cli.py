"""The command line as a user runs it: exit codes and one-line messages for bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.demo import run_demo

ROOT = Path(__file__).resolve().parents[2]


def run_main(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
        check=False,
    )


def good_inventory() -> dict:
    return {
        "accounts": [{"id": 1, "name": "A", "max_streams": 1}],
        "streams": [
            {"id": 1, "name": "A1", "m3u_account": 1, "url": "http://127.0.0.1:9/live/u/p/1.ts"}
        ],
        "channels": [{"id": 7, "name": "News", "streams": [1]}],
    }


def test_validate_accepts_a_good_config(tmp_path: Path):
    (tmp_path / "inventory.json").write_text(json.dumps(good_inventory()))
    (tmp_path / "config.toml").write_text('[source]\npath = "inventory.json"\n')
    result = run_main("validate", "--config", str(tmp_path / "config.toml"))
    assert result.returncode == 0, result.stderr
    assert "1 accounts, 1 streams, 1 channels" in result.stdout


@pytest.mark.parametrize(
    ("config", "inventory", "expected"),
    [
        ("[check]\ntimeout = -1\n", good_inventory(), "timeout"),
        ("[chek]\nduration = 1\n", good_inventory(), "did you mean"),
        ("[check\n", good_inventory(), "TOML"),
        (
            "",
            {
                **good_inventory(),
                "streams": [
                    {"id": 1, "name": "x", "m3u_account": 9, "url": "http://127.0.0.1:9/x"}
                ],
            },
            "unknown account",
        ),
        (
            "",
            {**good_inventory(), "accounts": [{"id": 1, "name": "A", "max_streams": -2}]},
            "max_streams",
        ),
        ("", {**good_inventory(), "streams": [{"id": 1, "name": "x", "m3u_account": 1}]}, "url"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    tmp_path: Path, config: str, inventory: dict, expected: str
):
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "config.toml").write_text(config)
    for command in ("validate", "once"):
        result = run_main(command, "--config", str(tmp_path / "config.toml"))
        assert result.returncode == 2, result
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert expected in lines[0]
        assert "Traceback" not in result.stderr


def test_missing_config_is_bad_input(tmp_path: Path):
    result = run_main("once", cwd=tmp_path)
    assert result.returncode == 2
    assert "--config" in result.stderr


def test_demo_checks_its_sample_accounts_and_stops(ffmpeg_on_path: str, tmp_path: Path):
    out = io.StringIO()
    report = tmp_path / "demo.json"
    code = run_demo(threading.Event(), once=True, seconds=120, report=report, out=out)
    assert code == 0
    text = out.getvalue()
    assert "cycle 1" in text
    assert "refused connections: 0" in text
    data = json.loads(report.read_text())
    statuses = {r["stream_id"]: r["status"] for r in data["results"]}
    assert len(statuses) == 12
    assert statuses[101] == "ok"
    for adaptive in (111, 112):  # HLS and DASH, each read on its best variant
        result = next(r for r in data["results"] if r["stream_id"] == adaptive)
        assert (result["status"], result["resolution"]) == ("ok", "1280x720"), result
    assert statuses[103] == "dead"
    assert statuses[107] == "dead"  # stalls


@pytest.mark.parametrize("command", [("demo",), ()], ids=["demo", "no command"])
def test_demo_with_seconds_stops_by_itself(command: tuple[str, ...]):
    """With no command the demo runs, its options given alone too (``./daemon.sh --seconds 4``)."""
    result = run_main(*command, "--seconds", "4")
    assert result.returncode == 0, result.stderr
    assert "provider saw" in result.stdout


@pytest.mark.parametrize(
    ("viewers", "expected"),
    [
        (None, "no such file"),
        ("{not json", "JSON"),
        ('{"accounts": {"1": -1}}', "accounts"),
        ("", "empty"),
    ],
)
def test_a_bad_viewer_file_is_bad_input(tmp_path: Path, viewers: str | None, expected: str):
    """Checks would wait while the viewer count is unknown: say so before, in one line."""
    (tmp_path / "inventory.json").write_text(json.dumps(good_inventory()))
    (tmp_path / "config.toml").write_text(
        '[source]\npath = "inventory.json"\nviewers_path = "viewers.json"\n'
    )
    if viewers is not None:
        (tmp_path / "viewers.json").write_text(viewers)
    for command in ("validate", "once"):
        result = run_main(command, "--config", str(tmp_path / "config.toml"))
        assert result.returncode == 2, result
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert "viewers.json" in lines[0]
        assert expected in lines[0], lines[0]
        assert "Traceback" not in result.stderr
