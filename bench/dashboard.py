"""What the dashboard's stream view costs on a big results store.

Fills a SQLite results store with ``--streams`` streams checked in
``--cycles`` cycles, then times the read-only query of the last
``--history`` checks per stream and the whole ``/api/streams`` answer (rows
and JSON), and prints the figures::

    python -m bench.dashboard --streams 10000 --cycles 40 --history 20
"""

from __future__ import annotations

import argparse
import gzip
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from adapters.store import ResultStore, read_histories, read_recent_checks
from app.dashboard import Dashboard
from app.monitor import MonitorView
from domain.models import Account, Channel, Inventory, Stream


def fill(path: Path, streams: int, cycles: int) -> None:
    """``cycles`` cycles of ``streams`` results each (every 7th stream dead).

    The schema comes from :class:`ResultStore`; the rows go in with one bulk
    insert per cycle (the store commits each row, which would take minutes).
    """
    ResultStore(path).close()
    db = sqlite3.connect(path)
    try:
        for n in range(cycles):
            at = f"2026-01-{1 + n // 24:02d}T{n % 24:02d}:00:00Z"
            with db:
                cycle = db.execute(
                    "INSERT INTO cycles (started_at, finished_at, streams, checked, alive, dead) "
                    "VALUES (?, ?, ?, ?, ?, 0)",
                    (at, at, streams, streams, streams),
                ).lastrowid
                db.executemany(
                    "INSERT INTO checks (cycle_id, stream_id, account_id, status, resolution, "
                    "bitrate_kbps, score, started_at, finished_at, error) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            cycle,
                            sid,
                            1 + sid % 5,
                            "dead" if (sid + n) % 7 == 0 else "ok",
                            None if (sid + n) % 7 == 0 else "1920x1080",
                            None if (sid + n) % 7 == 0 else 4000.0 + sid % 900,
                            0.0 if (sid + n) % 7 == 0 else 0.8,
                            at,
                            at,
                            "http_404" if (sid + n) % 7 == 0 else None,
                        )
                        for sid in range(1, streams + 1)
                    ],
                )
    finally:
        db.close()


class _Fixed(Dashboard):
    """A dashboard over a fixed inventory (no actors)."""

    def __init__(self, database: Path, history: int, inventory: Inventory) -> None:
        super().__init__(None, database=database, history=history)  # type: ignore[arg-type]
        self._view = MonitorView(inventory, {}, {})

    def view(self) -> MonitorView:
        return self._view

    def _freshness(self) -> tuple[int, bool]:
        return 0, False


def main() -> None:
    """Fill a store, then time the queries."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--history", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.sqlite"
        started = time.perf_counter()
        fill(path, args.streams, args.cycles)
        filled = time.perf_counter() - started
        print(f"filled {args.streams} streams x {args.cycles} cycles in {filled:.1f} s")
        started = time.perf_counter()
        recent = read_recent_checks(path, per_stream=1)
        query = time.perf_counter() - started
        print(f"read_recent_checks (latest, at start): {len(recent)} streams in {query:.2f} s")
        started = time.perf_counter()
        histories = read_histories(path, per_stream=args.history, cycles=args.history + 5)
        query = time.perf_counter() - started
        rows = sum(len(h.points) for h in histories.values())
        print(f"read_histories: {rows} points for {len(histories)} streams in {query:.2f} s")
        accounts = tuple(Account(i, f"account {i}") for i in range(1, 6))
        streams = tuple(
            Stream(sid, f"stream {sid}", 1 + sid % 5, f"http://prov:8080/live/u/p/{sid}.ts")
            for sid in range(1, args.streams + 1)
        )
        channels = tuple(
            Channel(c, f"channel {c}", tuple(range(c * 4 - 3, c * 4 + 1)))
            for c in range(1, args.streams // 4 + 1)
        )
        dashboard = _Fixed(path, args.history, Inventory(accounts, streams, channels))
        started = time.perf_counter()
        body = json.dumps(dashboard.streams(), separators=(",", ":")).encode()
        answer = time.perf_counter() - started
        packed = len(gzip.compress(body, compresslevel=5))
        print(
            f"/api/streams: {len(body) / 1e6:.2f} MB of JSON ({packed / 1e6:.2f} MB gzipped)"
            f" in {answer:.2f} s"
        )


if __name__ == "__main__":
    main()
