"""``capture_logs`` for tests where actor threads log meanwhile.

structlog's own (``structlog.testing.capture_logs``) empties the configured
processor chain and then appends its capture: a thread that logs in between, or
whose log call is half-way through the chain, hands its event dict to the
logger itself, and the actor whose turn it was dies of a ``TypeError``
(``PrintLogger.msg() got an unexpected keyword argument``). This one swaps the
chain's contents in one step for as many pass-through steps ending in the
capture, and back: a log call in flight at the swap ends in one chain's last
step or the other's, never past both.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.testing import LogCapture
from structlog.typing import EventDict


def _unchanged(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    return event_dict


@contextmanager
def capture_logs() -> Iterator[list[EventDict]]:
    """Every log event while it is open, as structlog's ``capture_logs`` gives them."""
    capture = LogCapture()
    chain = structlog.get_config()["processors"]  # the list bound loggers hold
    before = list(chain)
    # One slice assignment is one step for other threads; the length is kept,
    # so a call part-way through goes on into the new chain's last step.
    chain[:] = [_unchanged] * (len(before) - 1) + [capture]
    structlog.configure(processors=chain)
    try:
        yield capture.entries
    finally:
        chain[:] = before
        # As structlog's: the chain of before is the configured one again, even
        # if the code under test configured another meanwhile.
        structlog.configure(processors=chain)
