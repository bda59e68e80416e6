"""``main.py run`` stops on SIGTERM within seconds, also while Dispatcharr hangs."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.processes import kill_if_running, stop_with_sigterm

ROOT = Path(__file__).resolve().parents[2]


class SilentServer:
    """A TCP server that accepts every connection and never answers: a hung Dispatcharr.

    It stops by itself after ``lifetime_s`` (and when the test ends).
    """

    def __init__(self, lifetime_s: float = 60.0) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepted = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime_s
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for_connections(self, count: int, timeout: float) -> bool:
        with self._accepted:
            return self._accepted.wait_for(lambda: len(self._held) >= count, timeout=timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                if not selector.select(timeout=0.1):
                    continue
                with contextlib.suppress(BlockingIOError):
                    conn, _ = self._listener.accept()
                    with self._accepted:
                        self._held.append(conn)  # read nothing, answer nothing
                        self._accepted.notify_all()
        with self._lock:
            for conn in self._held:
                conn.close()
        self._listener.close()


@pytest.fixture
def hung_dispatcharr() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.stop()


def test_sigterm_stops_run_within_5_s_while_dispatcharr_hangs(
    hung_dispatcharr: SilentServer, tmp_path: Path
):
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[source]
type = "dispatcharr"

[dispatcharr]
url = "{hung_dispatcharr.url}"
timeout = 10

[viewers]
poll_interval = 1

[results]
database = "results.sqlite"

[status]
listen = ""

[log]
level = "warning"
"""
    )
    env = {**os.environ, "DISPATCHARR_API_KEY": "test-key"}
    daemon = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "run", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # The scheduler's inventory read and the viewer watcher's poll both hang.
        assert hung_dispatcharr.wait_for_connections(2, timeout=20)
        output, stopped_in = stop_with_sigterm(daemon, timeout=30)
    finally:
        kill_if_running(daemon)
    assert daemon.returncode == 0, output
    assert stopped_in < 5, (stopped_in, output)
    assert "Traceback" not in output


def _main_thread_sleeps() -> bool:
    """True once the main thread is blocked in the kernel (state S in /proc)."""
    main = threading.main_thread().native_id
    fields = Path(f"/proc/self/task/{main}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0] == "S"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_signal_caught_by_another_thread_still_ends_the_wait():
    # The kernel may hand SIGTERM to any thread; CPython then runs the handler
    # only when the main thread next runs Python code, which a plain wait on an
    # event never does. Here the signal goes to a helper thread on purpose,
    # once the main thread is blocked in the wait.
    from app.cli import _stop_on_signals

    def send_to_myself() -> None:
        deadline = time.monotonic() + 5
        while not _main_thread_sleeps() and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    with _stop_on_signals() as stopping:
        helper = threading.Thread(target=send_to_myself)
        helper.start()
        woke = stopping.wait(timeout=5)
        helper.join()
    assert woke
