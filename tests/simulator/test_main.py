"""``python -m simulator`` as a process: ``--port``."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_taken_port_is_one_line_and_exit_2(sample_cache: Path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "simulator", "--port", str(port), "--seconds", "5"]
        result = subprocess.run(
            [*command, "--cache-dir", str(sample_cache)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"error: 127.0.0.1:{port}: Address already in use"]
