"""The status page: ``/`` (plain text), ``/api/status`` (JSON) and ``/metrics`` (Prometheus).

A small HTTP server on its own threads. It never touches actor state: each
request asks the coordinator for a snapshot (with a timeout), as any foreign
thread may. Only what is safe to show is shown (no URLs, no credentials).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pykka
import structlog

from actors.messages import GetStatus

logger = structlog.get_logger(__name__)

_ASK_TIMEOUT_S = 2.0


class StatusServer:
    """Serves the coordinator's status on ``host:port`` (port 0 picks a free one).

    Binding happens in the constructor so a busy port fails at start-up.
    """

    def __init__(
        self,
        host: str,
        port: int,
        coordinator: pykka.ActorRef[Any],
        scheduler: pykka.ActorRef[Any] | None = None,
    ) -> None:
        self._coordinator = coordinator
        self._scheduler = scheduler
        handler = type("_BoundHandler", (_Handler,), {"status_server": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="status-http", daemon=True
        )

    @property
    def address(self) -> str:
        """``http://host:port`` the server listens on."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()
        logger.info("status_listening", address=self.address)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> dict[str, Any]:
        """The coordinator's status without actor refs (JSON-safe)."""
        status = cast(dict[str, Any], self._coordinator.ask(GetStatus(), timeout=_ASK_TIMEOUT_S))
        checks = [
            {k: v for k, v in check.items() if k != "checker"} for check in status.get("checks", [])
        ]
        schedule = None
        if self._scheduler is not None:
            schedule = self._scheduler.ask(GetStatus(), timeout=_ASK_TIMEOUT_S)
        return {**status, "checks": checks, "schedule": schedule}


def metrics_text(status: dict[str, Any]) -> str:
    """Prometheus exposition of a status snapshot."""
    lines = [
        "# HELP iptv_checkd_running_checks Checks running now.",
        "# TYPE iptv_checkd_running_checks gauge",
        f"iptv_checkd_running_checks {status['running']}",
        "# HELP iptv_checkd_account_running Checks running per account.",
        "# TYPE iptv_checkd_account_running gauge",
    ]
    accounts = status.get("accounts", {})
    for account_id, account in accounts.items():
        lines.append(f'iptv_checkd_account_running{{account="{account_id}"}} {account["running"]}')
    lines += [
        "# HELP iptv_checkd_account_waiting Checks waiting for a slot per account.",
        "# TYPE iptv_checkd_account_waiting gauge",
    ]
    for account_id, account in accounts.items():
        lines.append(f'iptv_checkd_account_waiting{{account="{account_id}"}} {account["waiting"]}')
    cycle = status.get("cycle")
    lines += [
        "# HELP iptv_checkd_cycle_done Streams with a result in the running cycle.",
        "# TYPE iptv_checkd_cycle_done gauge",
        f"iptv_checkd_cycle_done {cycle['done'] if cycle else 0}",
    ]
    return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    status_server: StatusServer

    def do_GET(self) -> None:
        try:
            status = self.status_server.snapshot()
        except (pykka.Timeout, pykka.ActorDeadError):
            self._send(503, "text/plain", "daemon busy or stopping\n")
            return
        if self.path == "/api/status":
            self._send(200, "application/json", json.dumps(status, indent=2, default=str))
        elif self.path == "/metrics":
            self._send(200, "text/plain; version=0.0.4", metrics_text(status))
        elif self.path == "/":
            self._send(200, "text/plain", _page(status))
        else:
            self._send(404, "text/plain", "not found\n")

    def _send(self, code: int, content_type: str, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("status_request", line=format % args)


def _page(status: dict[str, Any]) -> str:
    cycle = status.get("cycle")
    lines = ["iptv-checkd", ""]
    if cycle:
        lines.append(f"cycle {cycle['cycle_id']}: {cycle['done']}/{cycle['streams']} streams done")
    else:
        lines.append("no cycle running")
    last = status.get("last_cycle")
    if last:
        lines.append(
            f"last cycle {last['cycle_id']}: {last['alive']} alive, {last['dead']} dead of "
            f"{last['streams']} streams, finished {last['finished_at']} in {last['duration_s']}s"
        )
    schedule = status.get("schedule") or {}
    if schedule.get("next_start"):
        lines.append(f"next cycle: {schedule['next_start']}")
    if schedule.get("last_source_error"):
        lines.append(f"last source error: {schedule['last_source_error']}")
    lines.append(f"running checks: {status['running']} (global limit {status['global_limit']})")
    for account_id, account in sorted(status.get("accounts", {}).items()):
        lines.append(
            f"  account {account_id} {account['name']}: {account['running']} running, "
            f"{account['waiting']} waiting, limit {account['limit']}"
        )
    return "\n".join(lines) + "\n"
