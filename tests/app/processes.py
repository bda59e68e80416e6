"""Real daemon processes in tests: stopped with SIGTERM as systemd does, never left behind."""

from __future__ import annotations

import signal
import subprocess
import time


def stop_with_sigterm(process: subprocess.Popen[str], timeout: float) -> tuple[str, float]:
    """SIGTERM ``process`` and wait for it; its whole output and the seconds it took.

    A process still there after ``timeout`` (or when the wait fails) is killed.
    """
    sent = time.monotonic()
    try:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=timeout)
    finally:
        kill_if_running(process)
    return output, time.monotonic() - sent


def kill_if_running(process: subprocess.Popen[str]) -> None:
    """Kill and reap ``process`` unless it has ended (a failed test leaves nothing behind)."""
    if process.poll() is None:
        process.kill()
        process.wait()
