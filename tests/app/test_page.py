"""The dashboard page rendered by headless Chromium against a running daemon.

The DOM is read after the page's scripts ran (``--dump-dom`` with a virtual
time budget: Chromium runs the page's timers and waits for its fetches), and a
screenshot is kept in ``var/test-artefacts/`` (git-ignored), one during the
first cycle and one after it. Skipped only when
Chromium is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import cast

import pytest

from actors.messages import GetStatus
from simulator.server import SimStream
from tests.app.dashboard_setup import running_daemon, start_provider, wait_for, write_setup
from tests.sim_fixtures import ProviderFactory

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / "var" / "test-artefacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def chromium(profile: Path, url: str, *extra: str) -> str:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",
        "--window-size=1400,1700",
        *extra,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Elements(HTMLParser):
    """Every element's tag and attributes, in document order."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))

    def with_attr(self, name: str, tag: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.found if name in a and (tag is None or t == tag)]


def test_the_page_shows_accounts_bars_streams_and_channels(
    provider: ProviderFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("IPTV_CHECKD_TEST_TOKEN", raising=False)
    # Stream 1 answers only after 6 s: its check holds login 12 (user u2) that
    # long, so the page sees it running however slowly Chromium starts.
    sim = start_provider(provider, {1: SimStream("slow_start", "hd", start_delay_s=6.0)})
    config = write_setup(tmp_path, sim, duration=2.0, timeout=12.0)
    with running_daemon(config) as daemon:
        url = f"{daemon.status_address}/"
        assert sim.wait_for_connections("u2", 1, timeout=20)
        during = Elements(chromium(tmp_path / "profile", url, "--dump-dom"))
        assert sim.open_connections("u2") == 1, "the check ended before the page was read"
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        running_shot = ARTEFACTS / "dashboard-running.png"
        running_shot.unlink(missing_ok=True)
        chromium(tmp_path / "profile", url, f"--screenshot={running_shot}")
        assert any(a.get("data-loaded") == "1" for _t, a in during.found)  # the scripts ran
        accounts = {a["data-account-id"] for a in during.with_attr("data-account-id", "div")}
        assert {"1", "2"} <= accounts
        logins = {a["data-login-id"]: a for a in during.with_attr("data-login-id")}
        assert set(logins) == {"11", "12", "-2"}
        assert (logins["11"]["data-viewers"], logins["11"]["data-free"]) == ("1", "0")
        assert (logins["12"]["data-checks"], logins["12"]["data-limit"]) == ("1", "1")
        assert logins["-2"]["data-limit"] == "2"
        bars = [a for t, a in during.found if t == "div" and "seg" in a.get("class", "")]
        widths = {a["class"]: a["style"] for a in bars if "width:" in a.get("style", "")}
        assert "seg viewers" in widths
        assert "seg checks" in widths
        progress = during.with_attr("data-streams")
        assert progress[0]["data-streams"] == "4"

        def cycle_done() -> bool:
            status = cast(dict, daemon.coordinator.ask(GetStatus(), timeout=5))
            return status["last_cycle"] is not None and status["cycle"] is None

        assert wait_for(cycle_done, timeout=30)
        shot = ARTEFACTS / "dashboard.png"
        shot.unlink(missing_ok=True)
        chromium(tmp_path / "profile", url, f"--screenshot={shot}")
        html = chromium(tmp_path / "profile", url, "--dump-dom")
        after = Elements(html)
        # Filter and sort, as the address sets them: ok streams by bitrate, highest first.
        view = chromium(tmp_path / "profile", url + "#status=ok&sort=bitrate&desc=1", "--dump-dom")
        sorted_rows = Elements(view).with_attr("data-status", "tr")
    assert shot.stat().st_size > 10_000
    assert running_shot.stat().st_size > 10_000
    table = after.with_attr("data-status", "tr")
    assert {a["data-stream-id"]: a["data-status"] for a in table} == {
        "1": "ok",
        "2": "ok",
        "3": "ok",
        "4": "dead",
    }
    assert {a["data-status"] for a in sorted_rows} == {"ok"}
    bitrates = [int(a["data-bitrate"]) for a in sorted_rows]
    assert len(bitrates) == 3
    assert bitrates == sorted(bitrates, reverse=True)
    assert bitrates[0] > bitrates[-1]  # the 320x240 stream has the lowest
    sparklines = [a for t, a in after.found if t == "svg" and a.get("class") == "spark"]
    assert len(sparklines) == 4
    channel = after.with_attr("data-position", "tr")
    # News as the file orders it (a file source is never written), best first planned.
    assert [a["data-stream-id"] for a in channel] == ["2", "1", "4"]
    assert "this source is read-only" in html
    for login in ("/u1/p1/", "/u2/p2/", "/ub/pb/"):  # credentials never reach the page
        assert login not in html
    assert "127.0.0.1:" in html  # the provider's host is shown
