"""The dashboard's JSON, metrics and buttons against a running daemon on the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app.cli import main
from app.status import InsecureListenError
from tests.app.dashboard_setup import running_daemon, start_provider, wait_for, write_setup
from tests.sim_fixtures import ProviderFactory

TOKEN_ENV = "IPTV_CHECKD_TEST_TOKEN"


def metric_samples(address: str) -> dict[tuple[str, frozenset], float]:
    text = requests.get(f"{address}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, metric: str, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def status_of(address: str) -> dict:
    return requests.get(f"{address}/api/status", timeout=5).json()


def finished_cycles(address: str, count: int = 1, timeout: float = 30.0) -> list[dict]:
    def done() -> list[dict]:
        status = status_of(address)
        cycles = [c for c in status["recent_cycles"] if c["cycle_id"] is not None]
        return cycles if len(cycles) >= count and status["cycle"] is None else []

    return wait_for(done, timeout)


def test_status_streams_channels_and_metrics_of_a_running_daemon(
    provider: ProviderFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    sim = start_provider(provider)
    config = write_setup(tmp_path, sim, duration=3.0)
    with running_daemon(config) as daemon:
        address = daemon.status_address
        assert address is not None
        assert address is not None
        # A viewer holds login 11, so account 1's check runs on login 12 (user u2).
        assert sim.wait_for_connections("u2", 1, timeout=20)
        status = status_of(address)
        account = status["accounts"]["1"]
        assert account["name"] == "Provider One"
        assert account["stagger_delay"] == 0
        logins = {login["id"]: login for login in account["logins"]}
        assert (logins[11]["viewers"], logins[11]["checks"], logins[11]["free"]) == (1, 0, 0)
        assert (logins[12]["viewers"], logins[12]["checks"], logins[12]["free"]) == (0, 1, 0)
        assert logins[12]["limit"] == logins[12]["effective_limit"] == 1
        progress = status["progress"]
        assert progress["streams"] == 4
        assert progress["accounts"]["1"]["streams"] == 2
        assert progress["accounts"]["2"]["streams"] == 2
        during = metric_samples(address)
        assert value(during, "iptv_checkd_leases", account="1", login="12") == 1
        assert value(during, "iptv_checkd_leases", account="1", login="11") == 0
        assert value(during, "iptv_checkd_viewers", account="1", login="11") == 1
        assert value(during, "iptv_checkd_learned_limit", account="1", login="12") == 1
        assert value(during, "iptv_checkd_status_up") == 1

        cycles = finished_cycles(address)
        assert (cycles[0]["alive"], cycles[0]["dead"], cycles[0]["streams"]) == (3, 1, 4)

        streams = {
            s["id"]: s for s in requests.get(f"{address}/api/streams", timeout=5).json()["streams"]
        }
        assert sorted(streams) == [1, 2, 3, 4]
        hd = streams[1]
        assert (hd["status"], hd["resolution"], hd["video_codec"]) == ("ok", "1280x720", "h264")
        assert hd["bitrate_kbps"] > 0
        assert hd["uptime"] == 1.0
        assert hd["history"] == "o"
        assert hd["bitrates"] == [hd["bitrate_kbps"]]
        assert hd["account"] == "Provider One"
        assert hd["channels"] == [[7, "News"]]
        assert hd["url"].endswith("/1.ts")
        for secret in ("u1", "p1", "u2", "p2"):
            assert f"/{secret}/" not in hd["url"]
        assert (streams[4]["status"], streams[4]["reason"], streams[4]["uptime"]) == (
            "dead",
            "http_404",
            0.0,
        )

        def channels_written() -> dict[int, dict]:
            rows = requests.get(f"{address}/api/channels", timeout=5).json()["channels"]
            outcomes = {c["last_reorder"]["outcome"] for c in rows if c["last_reorder"]}
            return {c["id"]: c for c in rows} if "pending" not in outcomes else {}

        channels = wait_for(channels_written, timeout=10)
        # The write-back's answer comes after the cycle's end: the file source writes nothing.
        assert finished_cycles(address)[0]["reorder"] == {}
        news = channels[7]
        assert news["last_reorder"]["before"] == [2, 1, 4]
        assert news["last_reorder"]["after"] == [1, 2, 4]  # best first, dead last
        assert news["last_reorder"]["changed"] is True
        # The file source is read-only: the planned order is shown as not written,
        # and the channel keeps the order the file gives.
        assert (news["last_reorder"]["outcome"], news["last_reorder"]["written"]) == (
            "not_written",
            False,
        )
        assert [s["id"] for s in news["streams"]] == [2, 1, 4]
        assert news["working"] is True
        assert channels[8]["last_reorder"]["changed"] is False

        after = metric_samples(address)
        assert value(after, "iptv_checkd_checks_total", account="1", status="ok", reason="") == 1
        assert (
            value(after, "iptv_checkd_checks_total", account="1", status="dead", reason="http_404")
            == 1
        )
        assert value(after, "iptv_checkd_checks_total", account="2", status="ok", reason="") == 2
        assert (
            value(after, "iptv_checkd_check_duration_seconds_count", account="2", status="ok") == 2
        )
        assert value(after, "iptv_checkd_connection_seconds_count", account="1", login="12") == 2
        connected = value(after, "iptv_checkd_connection_seconds_sum", account="1", login="12")
        assert (connected or 0.0) > 0.5
        assert value(after, "iptv_checkd_cycles_total", result="finished") == 1
        assert value(after, "iptv_checkd_cycle_duration_seconds_count") == 1
        assert value(after, "iptv_checkd_leases", account="1", login="12") == 0
        assert (value(after, "process_cpu_seconds_total") or 0.0) > 0
        assert value(after, "iptv_checkd_account_info", account="2", name="Provider Two") == 1


def test_posts_need_the_token_when_one_is_set(
    provider: ProviderFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(TOKEN_ENV, "s3cret-token")
    sim = start_provider(provider)
    config = write_setup(tmp_path, sim, run_at_start=False)
    with running_daemon(config) as daemon:
        address = daemon.status_address
        assert address is not None
        assert status_of(address)["token_required"] is True
        url = f"{address}/api/cycle"
        assert requests.post(url, timeout=5).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert requests.post(url, headers=wrong, timeout=5).status_code == 401
        good = {"Authorization": "Bearer s3cret-token"}
        other_site = {**good, "Origin": "http://evil.example"}
        assert requests.post(url, headers=other_site, timeout=5).status_code == 403
        assert requests.post(f"{address}/api/channels/8/check", timeout=5).status_code == 401
        assert status_of(address)["schedule"]["cycles_started"] == 0  # nothing was started
        answer = requests.post(url, headers=good, timeout=5)
        assert answer.status_code == 202, answer.text
        assert finished_cycles(address)[0]["streams"] == 4


def test_buttons_on_loopback_without_a_token(
    provider: ProviderFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    sim = start_provider(provider)
    config = write_setup(tmp_path, sim, duration=2.5)
    with running_daemon(config) as daemon:
        address = daemon.status_address
        assert address is not None
        assert sim.wait_for_connections("ub", 1, timeout=20)
        rebound = {"Host": "attacker.example:8787", "Origin": "http://attacker.example:8787"}
        refused = requests.post(f"{address}/api/cycle", headers=rebound, timeout=5)
        assert refused.status_code == 403  # a name rebound to 127.0.0.1 gets nothing done
        sandboxed = {"Origin": "null"}  # what a sandboxed iframe of any page sends
        assert (
            requests.post(f"{address}/api/cycle", headers=sandboxed, timeout=5).status_code == 403
        )
        busy = requests.post(f"{address}/api/channels/8/check", timeout=5)
        assert busy.status_code == 409  # the first cycle is running
        assert requests.post(f"{address}/api/cycle", timeout=5).status_code == 409
        finished_cycles(address)
        assert requests.post(f"{address}/api/channels/99/check", timeout=5).status_code == 404
        answer = requests.post(f"{address}/api/channels/8/check", timeout=5)
        assert answer.status_code == 202, answer.text
        cycles = finished_cycles(address, count=2)
        channel_check = cycles[0]
        assert channel_check["kind"] == "channel"
        assert channel_check["channel_id"] == 8
        # One id counter, the database's: the channel check is the next cycle
        # (not an id of its own range that a restart would hand out again).
        assert answer.json()["cycle_id"] == channel_check["cycle_id"] == cycles[1]["cycle_id"] + 1
        assert (channel_check["streams"], channel_check["alive"]) == (1, 1)
        history = requests.get(f"{address}/api/streams", timeout=5).json()["streams"]
        by_id = {s["id"]: s["history"] for s in history}
        assert by_id == {1: "o", 2: "o", 3: "oo", 4: "d"}  # only channel 8's checked twice


def test_a_network_address_without_a_token_is_refused_at_start(
    provider: ProviderFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    sim = start_provider(provider)
    config = write_setup(tmp_path, sim, listen="0.0.0.0:0")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not a loopback address" in err
    assert TOKEN_ENV in err
    assert sim.stats().max_concurrency == {}  # nothing was checked
    with pytest.raises(InsecureListenError), running_daemon(config):
        pass
