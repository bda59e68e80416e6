"""The daemon's Prometheus metrics (``GET /metrics``), with prometheus-client.

Each :class:`Metrics` has its own ``CollectorRegistry`` (never the library's
global one), so several daemons in one process, as in the tests, never share a
counter. Two kinds of metrics live in it:

- events, counted as they happen: final check results, every attempt (from the
  coordinator's observer hook), denials, preemptions, write-back requests,
  cycles, alerts;
- the state right now (leases, viewers and limits per login, queues, the
  running cycle), read from a status snapshot when Prometheus scrapes, by a
  custom collector.

Labels are ids (``account``, ``login`` = the profile id), never names or URLs,
so they stay few and stable; ``iptv_checkd_account_info`` maps ids to names.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from actors.messages import CycleFinished
from actors.observer import Attempt, CheckObserver
from domain.models import CheckResult

logger = structlog.get_logger(__name__)

# The ``*_created`` series double every counter's output and say only when the
# process started counting; process_start_time_seconds says that already.
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The exposition format's media type."""

_CHECK_BUCKETS = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0)
_CYCLE_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 21600.0)
_MAX_REASON = 40

Snapshot = Callable[[], Mapping[str, Any]]


def reason_label(reason: str | None) -> str:
    """A check's reason as a label value: its kind only (``checker_died: ...`` -> ``checker_died``).

    Free text after a colon would make a new series per message.
    """
    if not reason:
        return ""
    return reason.split(":", 1)[0].strip()[:_MAX_REASON]


def _seconds_between(started: str | None, finished: str | None) -> float | None:
    if not started or not finished:
        return None
    try:
        seconds = (
            datetime.fromisoformat(finished) - datetime.fromisoformat(started)
        ).total_seconds()
    except (ValueError, TypeError):
        return None
    return seconds if seconds >= 0 else None


class Metrics(CheckObserver):
    """Every metric of one daemon, in its own registry.

    It is also the coordinator's :class:`~actors.observer.CheckObserver`: its
    observer methods only count, so they are safe on the coordinator's thread.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        counter, histogram = self._counter, self._histogram
        self.checks = counter(
            "checks",
            "Final check results per stream, by status and reason.",
            ("account", "status", "reason"),
        )
        self.check_duration = histogram(
            "check_duration_seconds",
            "Wall time of the check that gave a stream its final result.",
            ("account", "status"),
            _CHECK_BUCKETS,
        )
        self.attempts = counter(
            "check_attempts",
            "Every probe run, retries and preempted ones included, by outcome.",
            ("account", "kind"),
        )
        self.connection_seconds = histogram(
            "connection_seconds",
            "Seconds one check held a provider connection (lease granted to released).",
            ("account", "login"),
            _CHECK_BUCKETS,
        )
        self.preemptions = counter(
            "preemptions",
            "Checks cancelled because a viewer needed their slot.",
            ("account", "login"),
        )
        self.denied = counter(
            "leases_denied",
            "Lease requests an account denied (full, stagger...).",
            ("account", "reason"),
        )
        self.refusals = counter(
            "provider_refusals",
            "Connections the provider refused because the login was full.",
            ("account", "login"),
        )
        self.cycle_duration = histogram(
            "cycle_duration_seconds", "Duration of finished check cycles.", (), _CYCLE_BUCKETS
        )
        self.cycles = counter(
            "cycles",
            "Cycles by result: finished, aborted, or failed before they started.",
            ("result",),
        )
        self.writeback = counter(
            "writeback_requests",
            "Write-back requests to the source: stream stats and channel reorders, by result.",
            ("kind", "result"),
        )
        self.alerts = counter(
            "alerts",
            "Webhook alerts by event and result (sent, failed, dropped).",
            ("event", "result"),
        )
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self._state: _StateCollector | None = None
        self._lock = threading.Lock()

    def _counter(self, name: str, doc: str, labels: tuple[str, ...]) -> Counter:
        return Counter(f"iptv_checkd_{name}", doc, labels, registry=self.registry)

    def _histogram(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> Histogram:
        return Histogram(
            f"iptv_checkd_{name}", doc, labels, buckets=buckets, registry=self.registry
        )

    # --- the coordinator's observer ---------------------------------------------------

    def lease_denied(self, account_id: int, reason: str) -> None:
        """Count one denial."""
        self.denied.labels(str(account_id), reason_label(reason)).inc()

    def check_preempted(self, account_id: int, profile_id: int) -> None:
        """Count one preemption."""
        self.preemptions.labels(str(account_id), str(profile_id)).inc()

    def attempt_ended(self, attempt: Attempt) -> None:
        """Count one attempt and the time it held its connection."""
        account = str(attempt.account_id)
        login = str(attempt.profile_id)
        self.attempts.labels(account, attempt.kind).inc()
        self.connection_seconds.labels(account, login).observe(max(0.0, attempt.connection_s))
        if attempt.kind == "busy":
            self.refusals.labels(account, login).inc()

    # --- listener events ----------------------------------------------------------------

    def result(self, result: CheckResult) -> None:
        """Count a stream's final result."""
        account = str(result.account_id)
        reason = "" if result.status == "ok" else reason_label(result.error)
        self.checks.labels(account, result.status, reason).inc()
        seconds = _seconds_between(result.started_at, result.finished_at)
        if seconds is not None and result.status != "cancelled":
            self.check_duration.labels(account, result.status).observe(seconds)

    def cycle_finished(self, finished: CycleFinished) -> None:
        """Count a finished (or aborted) cycle and its duration."""
        self.cycles.labels("aborted" if finished.aborted else "finished").inc()
        self.cycle_duration.observe(finished.duration_s)

    def cycle_failed(self) -> None:
        """Count a cycle that could not start (the source failed)."""
        self.cycles.labels("failed").inc()

    def writeback_request(self, kind: str, result: str, count: int = 1) -> None:
        """Count write-back requests (``kind``: ``stats`` or ``reorder``)."""
        if count > 0:
            self.writeback.labels(kind, result).inc(count)

    def alert(self, event: str, result: str) -> None:
        """Count one alert's fate."""
        self.alerts.labels(event, result).inc()

    # --- exposition -----------------------------------------------------------------

    def watch_state(self, snapshot: Snapshot) -> None:
        """Read the state gauges from ``snapshot()`` at each scrape (once per registry)."""
        with self._lock:
            if self._state is None:
                self._state = _StateCollector(snapshot)
                self.registry.register(self._state)
            else:
                self._state.snapshot = snapshot

    def render(self) -> bytes:
        """The exposition text of every metric."""
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Gauges of the state right now, from one status snapshot per scrape."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: the registry must not call the snapshot when registering."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """Read one snapshot and turn it into gauges."""
        up = GaugeMetricFamily(
            "iptv_checkd_status_up", "1 if the daemon's actors answered this scrape's snapshot."
        )
        try:
            status = self.snapshot()
        except Exception as exc:  # noqa: BLE001 - a scrape must still answer
            logger.warning("metrics_snapshot_failed", error=repr(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _state_metrics(status)


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _state_metrics(status: Mapping[str, Any]) -> Iterator[Metric]:
    running = _gauge("iptv_checkd_running_checks", "Checks running now.")
    running.add_metric([], status.get("running", 0))
    global_limit = _gauge("iptv_checkd_global_limit", "Checks allowed at once overall; 0 = none.")
    global_limit.add_metric([], status.get("global_limit", 0))
    info = _gauge("iptv_checkd_account_info", "1 per account, naming it.", ("account", "name"))
    acc_running = _gauge("iptv_checkd_account_running", "Checks running per account.", ("account",))
    acc_waiting = _gauge(
        "iptv_checkd_account_waiting", "Checks waiting for a slot per account.", ("account",)
    )
    leases = _gauge(
        "iptv_checkd_leases",
        "Connections held by checks now, per account and login.",
        ("account", "login"),
    )
    viewers = _gauge(
        "iptv_checkd_viewers", "Connections held by viewers now, per login.", ("account", "login")
    )
    limit = _gauge(
        "iptv_checkd_login_limit",
        "Configured connection limit per login (max_streams); 0 = unlimited.",
        ("account", "login"),
    )
    learned = _gauge(
        "iptv_checkd_learned_limit",
        "Limit in force per login: the configured one, or lower where the provider's real cap"
        " was learned; 0 = unlimited.",
        ("account", "login"),
    )
    release_lag = _gauge(
        "iptv_checkd_release_lag_seconds",
        "Seconds a login's freed slot waits before it is reused: the provider's learned"
        " release lag; 0 = none learned.",
        ("account", "login"),
    )
    for account_id, account in sorted(status.get("accounts", {}).items()):
        acc = str(account_id)
        info.add_metric([acc, str(account.get("name", ""))], 1)
        acc_running.add_metric([acc], account.get("running", 0))
        acc_waiting.add_metric([acc], account.get("waiting", 0))
        for login in account.get("logins", []):
            labels = [acc, str(login["id"])]
            if login.get("checks") is not None:
                leases.add_metric(labels, login["checks"])
            if login.get("viewers") is not None:
                viewers.add_metric(labels, login["viewers"])
            limit.add_metric(labels, login.get("limit", 0))
            learned.add_metric(labels, login.get("effective_limit", login.get("limit", 0)))
            release_lag.add_metric(labels, login.get("release_lag_s", 0.0))
    cycle = status.get("cycle") or {}
    done = _gauge("iptv_checkd_cycle_done", "Streams with a result in the running cycle.")
    done.add_metric([], cycle.get("done", 0))
    streams = _gauge("iptv_checkd_cycle_streams", "Streams in the running cycle (0 = none).")
    streams.add_metric([], cycle.get("streams", 0))
    yield from (running, global_limit, info, acc_running, acc_waiting)
    yield from (leases, viewers, limit, learned, release_lag, done, streams)
