"""The status page over real HTTP, and log lines with credentials redacted."""

from __future__ import annotations

import io
import json

import pykka
import requests
import structlog

from actors.coordinator import Coordinator, CoordinatorSettings
from actors.jobs import jobs_for
from actors.messages import CheckCycle, SetAccounts
from app import logs
from app.status import StatusServer
from tests.actors.fakes import FakeProbe, simple_account, stream


def test_status_page_serves_json_metrics_and_text():
    coordinator = Coordinator.start(FakeProbe(), CoordinatorSettings(global_limit=4))
    coordinator.tell(SetAccounts((simple_account(1, 2), simple_account(2, 0))))
    server = StatusServer("127.0.0.1", 0, coordinator)
    server.start()
    try:
        status = requests.get(f"{server.address}/api/status", timeout=5).json()
        assert status["global_limit"] == 4
        assert status["accounts"]["1"]["limit"] == 2
        assert status["accounts"]["2"]["limit"] == 0  # unlimited, as users write it
        metrics = requests.get(f"{server.address}/metrics", timeout=5).text
        assert "iptv_checkd_running_checks 0" in metrics
        assert 'iptv_checkd_account_waiting{account="1"} 0' in metrics
        page = requests.get(f"{server.address}/", timeout=5).text
        assert "no cycle running" in page
        assert status["last_cycle"] is None

        done: pykka.ThreadingFuture = pykka.ThreadingFuture()
        coordinator.tell(CheckCycle(1, jobs_for([stream(1, 1)]), done))
        done.get(timeout=5)
        status = requests.get(f"{server.address}/api/status", timeout=5).json()
        assert status["last_cycle"]["alive"] == 1
        assert status["last_cycle"]["streams"] == 1
        assert "last cycle 1: 1 alive" in requests.get(f"{server.address}/", timeout=5).text
        assert requests.get(f"{server.address}/nope", timeout=5).status_code == 404
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
