"""``config/example-file.toml`` works as the README says: against ``python -m simulator --port``."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PORT = 8001
"""The port of config/example-inventory.json's URLs (and the README's command)."""


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def test_example_config_checks_its_inventory_against_the_simulator(
    tmp_path: Path, sample_cache: Path
):
    # A copy with another port, so the test never needs 8001 to be free.
    port = free_port()
    shutil.copy(ROOT / "config" / "example-file.toml", tmp_path / "example-file.toml")
    inventory = (ROOT / "config" / "example-inventory.json").read_text()
    assert f"127.0.0.1:{EXAMPLE_PORT}/" in inventory
    (tmp_path / "example-inventory.json").write_text(
        inventory.replace(f"127.0.0.1:{EXAMPLE_PORT}/", f"127.0.0.1:{port}/")
    )
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--port",
            str(port),
            "--seconds",
            "90",
            "--cache-dir",
            str(sample_cache),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        assert simulator.stdout.readline().strip() == f"http://127.0.0.1:{port}"
        report = tmp_path / "report.json"
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "main.py"),
                "once",
                "--config",
                str(tmp_path / "example-file.toml"),
                "--report",
                str(report),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=False,
        )
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
        if simulator.stdout is not None:
            simulator.stdout.close()
    assert result.returncode == 0, result.stderr
    results = json.loads(report.read_text())["results"]
    assert [r["stream_id"] for r in results] == [1, 2, 3, 4, 5]
    assert all(r["status"] == "ok" for r in results), results
