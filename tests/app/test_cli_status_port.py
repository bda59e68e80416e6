"""The status port: ``run`` refuses a busy one; ``once`` opens it only with ``--status``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.test_cli import good_inventory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another program listens on (closed when the test ends)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def setup(folder: Path, port: int) -> Path:
    (folder / "inventory.json").write_text(json.dumps(good_inventory()))
    config = folder / "config.toml"
    config.write_text(
        f'[source]\npath = "inventory.json"\n[status]\nlisten = "127.0.0.1:{port}"\n'
        "[check]\nduration = 1\ntimeout = 1\nretries = 0\nmax_wait = 5\n"
        '[log]\nlevel = "warning"\n'
    )
    return config


def main_py(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        check=False,
    )


def test_run_with_the_status_port_in_use_exits_2_naming_the_address(tmp_path: Path, busy_port: int):
    result = main_py("run", "--config", str(setup(tmp_path, busy_port)), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{busy_port}" in lines[0]
    assert "status.listen" in lines[0]
    assert not (tmp_path / "results.sqlite").exists()  # refused before anything ran


def test_once_does_not_open_the_status_port(tmp_path: Path, busy_port: int):
    report = tmp_path / "report.json"
    result = main_py(
        "once", "--config", str(setup(tmp_path, busy_port)), "--report", str(report), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "status_bind_failed" not in result.stderr
    assert len(json.loads(report.read_text())["results"]) == 1


def test_once_with_status_flag_opens_it_and_a_busy_port_is_bad_input(
    tmp_path: Path, busy_port: int
):
    result = main_py("once", "--status", "--config", str(setup(tmp_path, busy_port)), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert f"127.0.0.1:{busy_port}" in result.stderr
