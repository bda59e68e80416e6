"""Alerts: which channels lost (or got back) their last working stream, and a webhook.

:class:`ChannelHealth` decides, as a plain class: a stream works when its last
``ok``/``dead`` result was ``ok`` (errors are the account's problem and
cancelled checks learned nothing, so neither changes what is known); a channel
works while one of its streams does. A change of a channel's state between two
cycles is an alert; a channel whose state was never known before raises none.

:class:`WebhookSender` posts each alert as JSON from its own thread, through a
bounded queue, with retries: the checks never wait for a webhook, and a dead
webhook costs at most the queue's size in memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import structlog

from domain.models import Channel, CheckResult

logger = structlog.get_logger(__name__)

CHANNEL_DOWN = "channel_down"
CHANNEL_UP = "channel_up"
CYCLE_FAILED = "cycle_failed"


def utc_now() -> str:
    """Now, as ISO 8601 in UTC."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Transition:
    """A channel's working state changed."""

    channel: Channel
    working: bool
    streams_ok: tuple[int, ...]
    """The streams that work now (empty when the channel went down)."""


class ChannelHealth:
    """Which streams and channels work, from the results cycle after cycle.

    Args:
        known: what is known of streams before the first cycle (the results
            store's latest ``ok``/``dead`` per stream: ``True`` = works).
    """

    def __init__(self, known: Mapping[int, bool] | None = None) -> None:
        self._streams: dict[int, bool] = dict(known or {})

    def stream_works(self, stream_id: int) -> bool | None:
        """Whether the stream works, or ``None`` when no ``ok``/``dead`` result is known."""
        return self._streams.get(stream_id)

    def channel_works(self, channel: Channel) -> bool | None:
        """Whether one of the channel's streams works; ``None`` when none is known."""
        states = [self._streams.get(sid) for sid in channel.stream_ids]
        if any(states):
            return True
        if any(state is False for state in states):
            return False
        return None

    def update(
        self, channels: Iterable[Channel], results: Iterable[CheckResult]
    ) -> list[Transition]:
        """Take one cycle's results; return the channels whose state changed."""
        channels = tuple(channels)
        before = {channel.id: self.channel_works(channel) for channel in channels}
        for result in results:
            if result.status in ("ok", "dead"):
                self._streams[result.stream_id] = result.status == "ok"
        changes: list[Transition] = []
        for channel in channels:
            now = self.channel_works(channel)
            was = before[channel.id]
            if was is None or now is None or was == now:
                continue
            working = tuple(sid for sid in channel.stream_ids if self._streams.get(sid))
            changes.append(Transition(channel, now, working))
        return changes


def channel_alert(change: Transition, cycle_id: int) -> dict[str, Any]:
    """The webhook body for a channel that went down or came back."""
    channel = change.channel
    if change.working:
        text = f"iptv-checkd: channel {channel.name!r} has a working stream again"
    else:
        text = f"iptv-checkd: channel {channel.name!r} lost its last working stream"
    return {
        "event": CHANNEL_UP if change.working else CHANNEL_DOWN,
        "text": text,
        "channel_id": channel.id,
        "channel_name": channel.name,
        "streams": list(channel.stream_ids),
        "working_streams": list(change.streams_ok),
        "cycle_id": cycle_id,
        "at": utc_now(),
    }


def cycle_alert(reason: str, error: str, cycle_id: int | None = None) -> dict[str, Any]:
    """The webhook body for a cycle that failed (the source failed, or it was aborted)."""
    return {
        "event": CYCLE_FAILED,
        "text": f"iptv-checkd: check cycle failed ({reason}): {error}",
        "reason": reason,
        "error": error,
        "cycle_id": cycle_id,
        "at": utc_now(),
    }


def _host(url: str) -> str:
    """Only the host of the webhook URL is ever logged: its path is often a secret."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


_Counter = Callable[[str, str], None]


_ABORT_GRACE_S = 0.2
"""Seconds a stopping sender waits for its thread once told to give up."""


class WebhookSender:
    """POSTs alerts as JSON from its own thread, retried, never blocking the caller.

    Args:
        url: the webhook.
        timeout: seconds per POST.
        retries: extra attempts after a failure (a non-2xx answer or none).
        retry_delay: seconds before the first retry, doubled each time.
        queue_size: alerts waiting at most; more are dropped (and counted).
        count: called with ``(event, "sent" | "failed" | "dropped")``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        retry_delay: float = 2.0,
        queue_size: int = 100,
        count: _Counter | None = None,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._retries = retries
        self._retry_delay = retry_delay
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=queue_size)
        self._count: _Counter = count or (lambda _event, _result: None)
        self._closing = threading.Event()
        self._abort = threading.Event()
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="alerts-webhook", daemon=True)
        self._log = logger.bind(webhook_host=_host(url))

    def start(self) -> None:
        """Start the sending thread."""
        self._thread.start()

    def send(self, alert: dict[str, Any]) -> bool:
        """Queue one alert; False (and counted as dropped) when the queue is full or closed."""
        event = str(alert.get("event", "?"))
        if self._closing.is_set():
            self._count(event, "dropped")
            return False
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self._log.warning("alert_dropped", alert_event=event, reason="queue_full")
            self._count(event, "dropped")
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued for up to ``timeout`` seconds, then give up on the rest.

        A POST still in flight then cannot be interrupted: its thread is a
        daemon thread, left to end with its own timeout or with the process.
        """
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(_ABORT_GRACE_S)  # a retry wait ends at once on the abort
        if self._thread.is_alive():
            self._log.warning("alerts_unsent", queued=self._queue.qsize(), reason="post_in_flight")
            return  # its session is still in use
        self._session.close()

    def _run(self) -> None:
        while True:
            try:
                alert = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            self._deliver(alert)

    def _deliver(self, alert: dict[str, Any]) -> None:
        event = str(alert.get("event", "?"))
        delay = self._retry_delay
        for attempt in range(self._retries + 1):
            if self._abort.is_set():
                break
            error = self._post(alert)
            if error is None:
                self._log.info("alert_sent", alert_event=event, attempt=attempt + 1)
                self._count(event, "sent")
                return
            self._log.warning(
                "alert_post_failed", alert_event=event, attempt=attempt + 1, error=error
            )
            if attempt < self._retries and self._abort.wait(delay):
                break
            delay *= 2
        self._log.error("alert_failed", alert_event=event)
        self._count(event, "failed")

    def _post(self, alert: dict[str, Any]) -> str | None:
        """One POST; ``None`` when the webhook took it (2xx), else why not."""
        try:
            response = self._session.post(self._url, json=alert, timeout=self._timeout)
        except requests.RequestException as exc:
            return type(exc).__name__
        if 200 <= response.status_code < 300:
            return None
        return f"http_{response.status_code}"
