"""The status server over real HTTP (without a daemon), and log lines with credentials redacted."""

from __future__ import annotations

import io
import json
import socket
import threading

import pykka
import pytest
import requests
import structlog
from prometheus_client.parser import text_string_to_metric_families

from actors.coordinator import Coordinator, CoordinatorSettings
from actors.jobs import jobs_for
from actors.messages import CheckCycle, SetAccounts
from app import logs
from app.dashboard import Dashboard
from app.metrics import Metrics
from app.status import StatusServer
from tests.actors.fakes import FakeProbe, simple_account, stream
from tests.fakes.clients import JsonLogLines, reset_mid_request


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_status_server_serves_json_metrics_and_the_page():
    coordinator = Coordinator.start(FakeProbe(), CoordinatorSettings(global_limit=4))
    coordinator.tell(SetAccounts((simple_account(1, 2), simple_account(2, 0))))
    server = StatusServer("127.0.0.1", 0, Dashboard(coordinator), Metrics())
    server.start()
    try:
        status = requests.get(f"{server.address}/api/status", timeout=5).json()
        assert status["global_limit"] == 4
        assert status["accounts"]["1"]["limit"] == 2
        assert status["accounts"]["2"]["limit"] == 0  # unlimited, as users write it
        login = status["accounts"]["1"]["logins"][0]
        assert (login["limit"], login["viewers"], login["checks"], login["free"]) == (2, 0, 0, 2)
        assert status["accounts"]["2"]["logins"][0]["free"] is None  # unlimited
        assert "actor" not in status["accounts"]["1"]
        assert status["last_cycle"] is None
        assert status["token_required"] is False
        metrics = samples(requests.get(f"{server.address}/metrics", timeout=5).text)
        assert metrics[("iptv_checkd_running_checks", ())] == 0
        assert metrics[("iptv_checkd_account_waiting", (("account", "1"),))] == 0
        assert metrics[("iptv_checkd_login_limit", (("account", "1"), ("login", "100")))] == 2
        page = requests.get(f"{server.address}/", timeout=5)
        assert page.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert '<section id="accounts-section">' in page.text
        assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")  # no CDN

        done: pykka.ThreadingFuture = pykka.ThreadingFuture()
        coordinator.tell(CheckCycle(1, jobs_for([stream(1, 1)]), done))
        done.get(timeout=5)
        status = requests.get(f"{server.address}/api/status", timeout=5).json()
        assert status["last_cycle"]["alive"] == 1
        assert status["last_cycle"]["streams"] == 1
        assert requests.get(f"{server.address}/nope", timeout=5).status_code == 404
        # No controls were given: nothing can be started.
        assert requests.post(f"{server.address}/api/cycle", timeout=5).status_code == 404
    finally:
        server.stop()


def test_json_logs_redact_provider_credentials():
    out = io.StringIO()
    logs.configure("json", "info", stream=out)
    try:
        structlog.get_logger("test").info(
            "probe_failed", url="http://user:secret@prov:8080/live/u1/pass1/12.ts?token=abc"
        )
    finally:
        structlog.reset_defaults()
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["event"] == "probe_failed"
    assert "secret" not in line["url"]
    assert "pass1" not in line["url"]
    assert "abc" not in line["url"]
    assert line["level"] == "info"


def test_a_request_line_that_is_no_url_gets_a_400_and_the_server_goes_on():
    coordinator = Coordinator.start(FakeProbe(), CoordinatorSettings())
    server = StatusServer("127.0.0.1", 0, Dashboard(coordinator), Metrics())
    server.start()
    try:
        host, port = server.address.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(b"GET http://[ HTTP/1.0\r\n\r\n")
            answer = raw.recv(1024)
        assert answer.startswith(b"HTTP/1.0 400")
        assert requests.get(f"{server.address}/api/status", timeout=5).status_code == 200
    finally:
        server.stop()
        coordinator.stop()


def test_a_client_that_resets_mid_request_is_a_debug_line_not_a_traceback(
    capfd: pytest.CaptureFixture[str],
):
    """socketserver prints such a fault as a traceback on stderr, which breaks JSON logs."""
    lines = JsonLogLines("status_client_gone")
    logs.configure("json", "debug", stream=lines)
    coordinator = Coordinator.start(FakeProbe(), CoordinatorSettings())
    server = StatusServer("127.0.0.1", 0, Dashboard(coordinator), Metrics())
    server.start()
    try:
        reset_mid_request(server.address, "/api/status")
        assert lines.seen.wait(timeout=5)
        assert requests.get(f"{server.address}/api/status", timeout=5).status_code == 200
    finally:
        server.stop()
        coordinator.stop()
    assert lines.line["level"] == "debug"
    assert lines.line["error"].startswith("ConnectionResetError")
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert "Exception occurred" not in err


def test_a_thread_that_dies_of_an_exception_is_one_log_line(capfd: pytest.CaptureFixture[str]):
    """Python prints it on stderr, outside the logs; a JSON log must stay JSON lines."""
    lines = JsonLogLines("thread_failed")
    logs.configure("json", "info", stream=lines)

    def fails() -> None:
        raise RuntimeError("http://user:secret@prov:8080/live/u1/pass1/12.ts")

    thread = threading.Thread(target=fails, name="doomed")
    thread.start()
    thread.join(timeout=5)
    assert lines.seen.wait(timeout=5)
    assert lines.line["level"] == "error"
    assert lines.line["thread"] == "doomed"
    assert "RuntimeError" in lines.line["exception"]
    assert "secret" not in lines.line["exception"]
    assert "Traceback" not in capfd.readouterr().err
