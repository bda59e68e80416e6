"""Benchmark of the write-back to Dispatcharr: 10,000 streams against the stand-in.

Usage::

    python -m bench.writeback                       # 10,000 streams, concurrency 1 and 4
    python -m bench.writeback --streams 2000 --concurrency 1 2 4 8
    python -m bench.writeback --in-process          # the stand-in in this process
    python -m bench.writeback --latency-ms 5        # each request takes 5 ms more

For each concurrency it starts a fresh stand-in Dispatcharr
(``tests/fakes/dispatcharr.py``) holding ``--streams`` streams with stats, in
channels of ``--channel-size``, reads the inventory through the real source,
then times what the daemon does once a cycle's results are in: every stats
write (``DispatcharrWriter.write_result``, then waiting for the queue) and the
reorder of every channel. By default the stand-in runs in a child process, as
Dispatcharr does, so client and server do not share one interpreter lock;
``--in-process`` keeps both in this process. The stand-in answers as fast as
it can; ``--latency-ms`` adds a delay to every request, as a real Dispatcharr
spends time in Django and its database, which is what concurrency hides.

Prints one JSON object per concurrency: ``stats_s``, ``reorder_s``,
``total_s``, ``requests`` (as the stand-in counted them), ``max_in_flight``
(the most requests it had open at once), ``written`` / ``failed`` stats
writes and the reorder counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import random
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import structlog

from adapters.dispatcharr import DispatcharrClient
from adapters.sources import DispatcharrInventorySource, DispatcharrWriter
from app.config import DispatcharrSection
from domain.models import CheckResult, Inventory
from tests.fakes.dispatcharr import FakeDispatcharr

_ACCOUNTS = 20
_OLD_STATS = {
    "resolution": "1280x720",
    "source_fps": 25.0,
    "video_codec": "h264",
    "audio_codec": "aac",
    "pixel_format": "yuv420p",
    "ffmpeg_output_bitrate": 3012.3,
}


def populate(fake: FakeDispatcharr, streams: int, channel_size: int) -> None:
    """``streams`` streams with old stats over a few accounts, in channels of ``channel_size``."""
    for account in range(1, _ACCOUNTS + 1):
        fake.add_account(account, f"Provider {account}", max_streams=2)
    ids = list(range(1, streams + 1))
    for stream_id in ids:
        account = stream_id % _ACCOUNTS + 1
        url = f"http://127.0.0.1:9/live/u{account}/p{account}/{stream_id}.ts"
        fake.add_stream(stream_id, f"stream {stream_id}", account, url, stream_stats=_OLD_STATS)
    for number, start in enumerate(range(0, streams, channel_size), start=1):
        fake.add_channel(number, f"channel {number}", ids[start : start + channel_size])


def cycle_results(inventory: Inventory, seed: int = 7) -> tuple[CheckResult, ...]:
    """Plausible results: most streams play, some are dead, a few could not be judged."""
    rng = random.Random(seed)
    results = []
    for stream in inventory.streams:
        roll = rng.random()
        if roll < 0.8:
            status, score, error = "ok", round(rng.uniform(0.3, 0.95), 4), None
        elif roll < 0.95:
            status, score, error = "dead", 0.0, "stalled"
        else:
            status, score, error = "error", 0.0, "provider_busy"
        results.append(
            CheckResult(
                stream_id=stream.id,
                account_id=stream.account_id,
                profile_id=None,
                status=status,  # type: ignore[arg-type]
                resolution="1920x1080" if status == "ok" else None,
                fps=25.0 if status == "ok" else None,
                video_codec="h264" if status == "ok" else None,
                audio_codec="aac" if status == "ok" else None,
                bitrate_kbps=4500.0 if status == "ok" else None,
                score=score,
                finished_at="2026-08-20T10:00:00Z",
                error=error,
            )
        )
    return tuple(results)


def measure(url: str, api_key: str, concurrency: int) -> dict[str, Any]:
    """Read the inventory, then time the stats writes and the reorder at ``concurrency``."""
    client = DispatcharrClient(
        url, api_key=api_key, max_connections=max(10, concurrency + 2), timeout=30.0
    )
    with client:
        inventory = DispatcharrInventorySource(client, DispatcharrSection(), {}).load()
        results = cycle_results(inventory)
        writer = DispatcharrWriter(client, concurrency=concurrency)
        started = time.perf_counter()
        for result in results:
            writer.write_result(result)
        writer.flush()
        stats_done = time.perf_counter()
        counts = writer.reorder(inventory, results)
        finished = time.perf_counter()
    return {
        "concurrency": concurrency,
        "streams": len(inventory.streams),
        "channels": len(inventory.channels),
        "stats_s": round(stats_done - started, 2),
        "reorder_s": round(finished - stats_done, 2),
        "total_s": round(finished - started, 2),
        **writer.counts(),
        "reorder": counts,
    }


def _serve(streams: int, channel_size: int, latency: float, pipe: Connection) -> None:
    """Child process: run a populated stand-in until the parent asks for its figures."""
    logging.disable(logging.CRITICAL)
    fake = FakeDispatcharr().start()
    populate(fake, streams, channel_size)
    fake.latency = latency
    pipe.send((fake.url, fake.api_key))
    pipe.recv()  # the parent is done
    pipe.send({"requests": len(fake.calls), "max_in_flight": fake.max_in_flight})
    fake.stop()


def run(
    streams: int, channel_size: int, concurrency: int, *, in_process: bool, latency: float
) -> dict[str, Any]:
    """One measurement against a fresh stand-in."""
    if in_process:
        fake = FakeDispatcharr().start()
        try:
            populate(fake, streams, channel_size)
            fake.latency = latency
            figures = measure(fake.url, fake.api_key, concurrency)
            counted = {"requests": len(fake.calls), "max_in_flight": fake.max_in_flight}
            return {**figures, "latency_ms": latency * 1000, **counted}
        finally:
            fake.stop()
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(streams, channel_size, latency, theirs), daemon=True
    )
    child.start()
    try:
        url, api_key = ours.recv()
        figures = measure(url, api_key, concurrency)
        ours.send("done")
        return {**figures, "latency_ms": latency * 1000, **ours.recv()}
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one JSON line per concurrency."""
    parser = argparse.ArgumentParser(prog="python -m bench.writeback")
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--channel-size", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--in-process", action="store_true", help="the stand-in in this process")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for concurrency in args.concurrency:
        figures = run(
            args.streams,
            args.channel_size,
            concurrency,
            in_process=args.in_process,
            latency=args.latency_ms / 1000,
        )
        print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
