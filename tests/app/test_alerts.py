"""Alerts: which channels go down or come back, and the webhook, also against a running daemon."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from app.alerts import ChannelHealth, WebhookSender
from domain.models import Channel, CheckResult
from tests.app.dashboard_setup import running_daemon, start_provider, wait_for, write_setup
from tests.sim_fixtures import ProviderFactory


def result(stream_id: int, status: str) -> CheckResult:
    return CheckResult(stream_id=stream_id, account_id=1, profile_id=None, status=status)  # type: ignore[arg-type]


NEWS = Channel(7, "News", (1, 2))


def test_a_channel_goes_down_with_its_last_working_stream_and_comes_back():
    health = ChannelHealth()
    assert health.update([NEWS], [result(1, "ok"), result(2, "dead")]) == []  # first sight
    assert health.update([NEWS], [result(1, "dead")])[0].working is False
    assert health.update([NEWS], [result(1, "dead")]) == []  # still down: no new alert
    back = health.update([NEWS], [result(2, "ok")])
    assert [(c.channel.id, c.working, c.streams_ok) for c in back] == [(7, True, (2,))]


def test_errors_and_cancelled_checks_change_nothing():
    health = ChannelHealth({1: True, 2: False})
    assert health.update([NEWS], [result(1, "error"), result(2, "cancelled")]) == []
    assert health.channel_works(NEWS) is True
    assert ChannelHealth().channel_works(NEWS) is None


def test_known_states_from_before_a_restart_count():
    health = ChannelHealth({1: True})
    assert [c.working for c in health.update([NEWS], [result(1, "dead")])] == [False]


def test_webhook_retries_until_it_is_taken(httpserver: HTTPServer):
    httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("no", status=500)
    httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("ok")
    counted: list[tuple[str, str]] = []
    sender = WebhookSender(
        httpserver.url_for("/hook"), retries=2, retry_delay=0.05, count=lambda *c: counted.append(c)
    )
    sender.start()
    assert sender.send({"event": "channel_down", "channel_id": 7})
    sender.stop(timeout=5)
    bodies = [json.loads(request.get_data()) for request, _response in httpserver.log]
    assert bodies == [{"event": "channel_down", "channel_id": 7}] * 2
    assert counted == [("channel_down", "sent")]


def test_webhook_gives_up_after_its_retries_and_never_blocks_the_caller(httpserver: HTTPServer):
    gate = threading.Event()

    def slow(_request: Request) -> Response:
        gate.wait(5)
        return Response("down", status=503)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(slow)
    counted: list[tuple[str, str]] = []
    sender = WebhookSender(
        httpserver.url_for("/hook"),
        timeout=5,
        retries=1,
        retry_delay=0.01,
        queue_size=2,
        count=lambda *c: counted.append(c),
    )
    sender.start()
    # The first is being posted (and hangs); two fit in the queue; the fourth is dropped at once.
    assert sender.send({"event": "a"})
    assert wait_for(lambda: len(httpserver.log) == 0 and sender._queue.empty(), timeout=5)
    assert sender.send({"event": "b"})
    assert sender.send({"event": "c"})
    assert not sender.send({"event": "d"})
    gate.set()
    sender.stop(timeout=10)
    assert ("d", "dropped") in counted
    assert ("a", "failed") in counted
    assert (
        sum(1 for request, _ in httpserver.log if json.loads(request.get_data())["event"] == "a")
        == 2
    )


def test_a_running_daemon_posts_channel_and_cycle_alerts(
    provider: ProviderFactory,
    tmp_path: Path,
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("IPTV_CHECKD_TEST_TOKEN", raising=False)
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    sim = start_provider(provider)
    extra = f'[alerts]\nwebhook_url = "{httpserver.url_for("/hook")}"\nretry_delay = 0.1\n'
    config = write_setup(tmp_path, sim, extra=extra)
    with running_daemon(config, scheduled=False) as daemon:
        first = daemon.run_cycle(daemon.sources.inventory.load(), timeout=30)
        assert {r.stream_id: r.status for r in first.results}[3] == "ok"
        # Sports' only stream now plays what the provider's stream 4 plays: nothing.
        write_setup(tmp_path, sim, extra=extra, urls={3: 4})
        down = daemon.run_cycle(daemon.sources.inventory.load(), timeout=30)
        assert {r.stream_id: r.status for r in down.results}[3] == "dead"
        write_setup(tmp_path, sim, extra=extra)
        daemon.run_cycle(daemon.sources.inventory.load(), timeout=30)
    bodies = [json.loads(request.get_data()) for request, _ in httpserver.log]
    events = [(b["event"], b.get("channel_id")) for b in bodies]
    assert events == [("channel_down", 8), ("channel_up", 8)]  # News kept a working stream
    assert bodies[0]["channel_name"] == "Sports"
    assert bodies[0]["working_streams"] == []
    assert bodies[1]["working_streams"] == [3]
    assert "Sports" in bodies[0]["text"]

    # A cycle that cannot start (the inventory is broken) is an alert too.
    (tmp_path / "inventory.json").write_text("{ not json")
    with running_daemon(config, scheduled=True) as daemon:
        assert wait_for(lambda: len(httpserver.log) >= 3, timeout=10)
        failed = json.loads(httpserver.log[2][0].get_data())
        assert failed["event"] == "cycle_failed"
        assert failed["reason"] == "source_failed"
        assert "inventory.json" in failed["error"]
        metrics = daemon.metrics.render().decode()
        assert 'iptv_checkd_cycles_total{result="failed"} 1.0' in metrics


def test_stop_keeps_to_its_timeout_while_a_post_hangs():
    # A webhook that takes the connection and never answers: the POST in flight
    # cannot be interrupted, but the daemon's stop must not wait for its timeout.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    got_one = threading.Event()

    def accept() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        accepted.append(conn)
        got_one.set()

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    sender = WebhookSender(f"http://127.0.0.1:{port}/hook", timeout=30, retries=0)
    sender.start()
    try:
        assert sender.send({"event": "cycle_failed"})
        assert got_one.wait(5)
        started = time.monotonic()
        sender.stop(timeout=0.2)
        assert time.monotonic() - started < 2.0  # not the POST's 30 s
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
