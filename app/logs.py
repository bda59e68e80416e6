"""structlog set-up: console or JSON lines, a level filter, credentials redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from domain.urls import redact_url

_URL = re.compile(r"\b(?:https?|rtmp|rtsp|udp)://[^\s\"'<>]+")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


def redact_urls(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Processor: every URL in a string value loses its credentials."""
    for key, value in event.items():
        if isinstance(value, str) and "://" in value:
            event[key] = _URL.sub(lambda m: redact_url(m.group(0)), value)
    return event


def configure(fmt: str = "console", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog for the whole process (also pykka's stdlib log lines)."""
    out = stream or sys.stderr
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False, default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_urls,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=logging.WARNING, stream=out, format="%(levelname)s %(name)s %(message)s"
    )
