"""The tests' log capture is safe while other threads log (the actors do)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

import pytest
import structlog

from tests.logcapture import capture_logs


@pytest.fixture
def printing() -> Iterator[structlog.stdlib.BoundLogger]:
    """A chain ending in a renderer, before a logger that takes no keywords (the
    daemon's shape), and a thread switch as often as the interpreter allows."""
    saved = structlog.get_config()
    interval = sys.getswitchinterval()
    with open(os.devnull, "w") as sink:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(),
                structlog.dev.ConsoleRenderer(colors=False),
            ],
            logger_factory=structlog.PrintLoggerFactory(sink),
            cache_logger_on_first_use=True,
        )
        sys.setswitchinterval(1e-6)
        try:
            yield structlog.get_logger("capture-test")
        finally:
            sys.setswitchinterval(interval)
            structlog.configure(**saved)


def test_a_thread_logging_while_logs_are_captured_never_fails(printing) -> None:
    # structlog.testing.capture_logs failed this within a few hundred captures.
    failures: list[BaseException] = []
    stop = threading.Event()

    def log_on() -> None:
        while not stop.is_set():
            try:
                printing.info("turn", account_id=1)
            except TypeError as exc:  # how a half-swapped chain fails
                failures.append(exc)
                return

    thread = threading.Thread(target=log_on)
    thread.start()
    try:
        for _ in range(2000):
            with capture_logs():
                pass
            if failures:
                break
    finally:
        stop.set()
        thread.join(timeout=10)
    assert failures == []


def test_what_is_logged_while_open_is_captured_and_nothing_after(printing) -> None:
    printing.info("before")  # the logger is bound and cached from here on
    with capture_logs() as logs:
        printing.warning("during", stream_id=5)
    printing.info("after")
    assert logs == [{"event": "during", "stream_id": 5, "log_level": "warning"}]
