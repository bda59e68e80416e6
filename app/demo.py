"""``main.py demo``: the daemon against the built-in loopback provider simulator.

No Dispatcharr and no setup: the simulator serves real MPEG-TS for three sample
accounts (limits 1, 2, and two logins of 1), the daemon checks every stream
with real ffmpeg within those limits, prints a table per cycle, and at the end
what the provider saw (the most connections per account, refused ones).
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, TextIO, cast

import pykka
import structlog

from actors.messages import CycleFinished
from app.config import (
    CheckSection,
    ConcurrentStreamsSection,
    Config,
    ResultsSection,
    ScheduleSection,
    SourceSection,
    ViewersSection,
)
from app.daemon import Daemon
from app.report import build_report, write_report
from app.sources import build_sources
from simulator.demo import demo_provider, demo_setup
from simulator.server import ProviderSimulator

logger = structlog.get_logger(__name__)


def say(out: TextIO, text: str) -> None:
    """``text`` and its newline as one write: ``print`` writes them apart, and a log
    line from another thread could land between the two, at the end of the text."""
    out.write(text + "\n")
    out.flush()


class TablePrinter(pykka.ThreadingActor):
    """Prints each finished cycle as a table (a listener of the coordinator)."""

    use_daemon_thread = True

    def __init__(self, out: TextIO, names: dict[int, str]) -> None:
        super().__init__()
        self._out = out
        self._names = names
        self.last: CycleFinished | None = None

    def on_receive(self, message: Any) -> Any:
        """Print ``CycleFinished``; ignore the other cycle events; answer "last"."""
        if isinstance(message, CycleFinished):
            self.last = message
            self._print(message)
        elif message == "last":
            return self.last
        return None

    def _print(self, finished: CycleFinished) -> None:
        rows = sorted(finished.results, key=lambda r: r.stream_id)
        header = f"{'stream':<22} {'acct':>4} {'status':<9} {'video':<22} {'kbps':>6} {'score':>5}"
        lines = [
            f"\ncycle {finished.cycle_id}: {len(rows)} streams in {finished.duration_s}s",
            header,
        ]
        for r in rows:
            video = " ".join(
                str(part) for part in (r.resolution, r.video_codec, r.audio_codec) if part
            )
            kbps = f"{r.bitrate_kbps:.0f}" if r.bitrate_kbps else "-"
            status = r.status if r.status == "ok" else f"{r.status}"
            name = self._names.get(r.stream_id, str(r.stream_id))
            lines.append(
                f"{name:<22} {r.account_id:>4} {status:<9} {video or (r.error or ''):<22} "
                f"{kbps:>6} {r.score:>5.2f}"
            )
        say(self._out, "\n".join(lines))


def demo_config(folder: Path) -> Config:
    """Short checks and a two-minute schedule, so the demo shows results quickly."""
    return Config(
        source=SourceSection(type="file", path=folder / "inventory.json"),
        concurrent_streams=ConcurrentStreamsSection(
            enabled=True, global_limit=10, stagger_delay=0.2
        ),
        check=CheckSection(duration=3.0, timeout=6.0, retries=1, retry_delay=2.0, busy_backoff=2.0),
        viewers=ViewersSection(poll_interval=2.0),
        schedule=ScheduleSection(interval="2m", run_at_start=True),
        results=ResultsSection(database=folder / "results.sqlite", reorder=False),
    )


def run_demo(
    stopping: threading.Event,
    *,
    seconds: float | None = None,
    once: bool = False,
    report: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the demo until ``stopping`` is set, ``seconds`` pass, or one cycle (``once``)."""
    out = out or sys.stdout
    accounts, streams = demo_provider()
    lifetime = (seconds or 24 * 3600.0) + 60.0
    simulator = ProviderSimulator(accounts, streams, lifetime_s=lifetime)
    with tempfile.TemporaryDirectory(prefix="iptv-checkd-demo-") as tmp:
        folder = Path(tmp)
        base_url = simulator.start()
        daemon: Daemon | None = None
        failure: str | None = None
        try:
            inventory_data = demo_setup(base_url)
            (folder / "inventory.json").write_text(json.dumps(inventory_data, indent=2))
            config = demo_config(folder)
            sources = build_sources(config)
            names = {int(s["id"]): str(s["name"]) for s in inventory_data["streams"]}
            printer = TablePrinter.start(out, names)
            daemon = Daemon(config, sources, extra_listeners=(printer,))
            say(out, f"demo provider at {base_url}; checking {len(names)} streams")
            finished: CycleFinished | None
            if once:
                daemon.start(scheduled=False)
                finished = daemon.run_cycle(sources.inventory.load(), timeout=seconds)
            else:
                daemon.start(scheduled=True, on_failure=lambda _reason: stopping.set())
                stopping.wait(timeout=seconds)
                finished = cast(CycleFinished | None, printer.ask("last", timeout=5))
            daemon.stop()
            failure, daemon = daemon.failure, None
            if report is not None and finished is not None:
                write_report(report, build_report(finished))
        finally:
            if daemon is not None:
                daemon.stop()
            simulator.stop()
        stats = simulator.stats()
        caps = {a.username: a.max_connections for a in accounts}
        lines = ["provider saw (most connections at once / cap):"]
        for user, cap in caps.items():
            lines.append(f"  {user:<10} {stats.max_concurrency.get(user, 0)} / {cap}")
        lines.append(f"  refused connections: {len(stats.refused)}")
        say(out, "\n".join(lines))
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    return 0
