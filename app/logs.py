"""structlog set-up: console or JSON lines, a level filter, credentials redacted.

Every line the process writes goes through the same processors: structlog's
own events, and the stdlib ``logging`` records of libraries (urllib3, pykka,
werkzeug) and captured ``warnings`` alike. The root logger gets one handler
whose :class:`structlog.stdlib.ProcessorFormatter` renders a record as the
same console line or JSON object as an event of ours (``event`` is the
record's message, plus ``level``, ``logger`` and ``timestamp``), so a JSON log
holds JSON lines only. Libraries log at warning and above (or the configured
level when it is higher), since their info lines are chatter about connections.

A thread that ends with an exception is one ``thread_failed`` line with its
traceback (``threading.excepthook``), not Python's print on stderr.

Every URL in a logged value, nested ones and exception texts included, is
shown by :func:`domain.urls.redact_url`: host, port and last path segment.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, Final, TextIO

import structlog

from domain.urls import redact_text

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR
_python_thread_hook = threading.excepthook
"""What :func:`reset` puts back as the hook for a thread's exception."""
_HANDLER_NAME: Final = "iptv-checkd"
"""Marks the root handler :func:`configure` installs, so a second call replaces it."""
_LIBRARY_LEVEL: Final = logging.WARNING
_SCALARS = (bool, int, float)


def redact_urls(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Processor: every URL in a value (nested ones too) loses all but host and last segment.

    Keys starting with ``_`` are structlog's bookkeeping (the stdlib record)
    and are left alone; run it after ``format_exc_info`` so tracebacks are
    text by then.
    """
    for key, value in event.items():
        if not key.startswith("_"):
            event[key] = _redacted(value)
    return event


def _redacted(value: Any) -> Any:
    if value is None or isinstance(value, _SCALARS):
        return value
    if isinstance(value, str):
        return redact_text(value) if "://" in value else value
    if isinstance(value, Mapping):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(item) for item in value]
    # Anything else is rendered by its repr (a dataclass holding a URL, an
    # exception): redact that text when it carries a URL.
    text = repr(value)
    return redact_text(text) if "://" in text else value


def configure(fmt: str = "console", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure logging for the whole process: structlog and every stdlib logger.

    Args:
        fmt: ``"console"`` or ``"json"``.
        level: ``debug``, ``info``, ``warning`` or ``error``.
        stream: Where lines go; stderr by default.
    """
    out = stream or sys.stderr
    threshold = _LEVELS.get(level, logging.INFO)
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False, default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.format_exc_info,
            redact_urls,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_urls,
            renderer,
        ],
    )
    library_level = max(threshold, _LIBRARY_LEVEL)
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    # On the handler too: some libraries (werkzeug) set their own logger to info.
    handler.setLevel(library_level)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(library_level)
    # warnings.warn() of libraries become records too; off first, so that a
    # capture left on from before wraps the warnings hook as it is now.
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    global _python_thread_hook  # noqa: PLW0603  # one process-wide hook, as logging's
    if threading.excepthook is not _log_thread_failure:
        _python_thread_hook = threading.excepthook
    threading.excepthook = _log_thread_failure


def _log_thread_failure(args: threading.ExceptHookArgs) -> None:
    """A thread ended by an exception (a bug: the daemon's threads catch what they
    expect): one log line with its traceback, where Python would print on stderr."""
    if args.exc_type is SystemExit:
        return
    structlog.get_logger(__name__).error(
        "thread_failed",
        thread=None if args.thread is None else args.thread.name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def reset() -> None:
    """Undo :func:`configure` (tests): structlog's defaults, our root handler removed,
    the hook for a thread's exception that was there before."""
    structlog.reset_defaults()
    if threading.excepthook is _log_thread_failure:
        threading.excepthook = _python_thread_hook
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.setLevel(logging.WARNING)
    logging.captureWarnings(False)
