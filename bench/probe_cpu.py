"""``python -m bench.probe_cpu``: CPU cost of a copy-mode probe against a decoding check.

Starts the provider simulator, checks one stream twice for the same duration,
once with :class:`adapters.ffmpeg.FfmpegProbe` (stream copy, no decoding) and
once with a decoding check (``ffmpeg -i URL -t D -f null -``), and prints one
JSON object with the CPU seconds each ffmpeg child used (user + system, from
``getrusage(RUSAGE_CHILDREN)`` deltas around each run).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import structlog

from adapters.ffmpeg import FfmpegProbe, find_ffmpeg
from domain.cancel import CancelToken
from domain.models import ProbeRequest
from simulator.server import ProviderSimulator, SimAccount, SimStream

_USER = "bench"
_PASSWORD = "bench"  # noqa: S105 - a login of the loopback simulator, not a secret
_STREAM_ID = 1


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    seconds: float, variant: str = "fhd", cache_dir: Path | None = None
) -> dict[str, object]:
    """Run both checks on one simulated stream and return the figures.

    Args:
        seconds: Seconds of stream each check reads.
        variant: Sample variant the simulator plays.
        cache_dir: Sample cache folder; the default cache if ``None``.

    Returns:
        ``copy_cpu_s``, ``decode_cpu_s``, ``ratio`` (decode / copy), ``duration_s``
        and what the copy probe saw.
    """
    ffmpeg = find_ffmpeg()
    sim = ProviderSimulator(
        [SimAccount(_USER, _PASSWORD, max_connections=0)],
        {_STREAM_ID: SimStream("ok", variant)},
        cache_dir=cache_dir,
        lifetime_s=seconds * 4 + 60,
    )
    with sim:
        url = sim.url(_USER, _PASSWORD, _STREAM_ID)
        before = _children_cpu_s()
        outcome = FfmpegProbe(ffmpeg)(
            ProbeRequest(url=url, user_agent=None, duration=seconds, timeout=seconds + 10),
            CancelToken(),
        )
        copy_cpu = _children_cpu_s() - before
        before = _children_cpu_s()
        decode_cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", url]
        decode_cmd += ["-t", f"{seconds:g}", "-f", "null", "-"]
        subprocess.run(decode_cmd, check=True, capture_output=True, timeout=seconds * 3 + 30)
        decode_cpu = _children_cpu_s() - before
    return {
        "variant": variant,
        "duration_s": seconds,
        "copy_cpu_s": round(copy_cpu, 3),
        "decode_cpu_s": round(decode_cpu, 3),
        "ratio": round(decode_cpu / copy_cpu, 1) if copy_cpu > 0 else None,
        "copy_outcome": outcome.kind,
        "resolution": outcome.info.resolution,
        "bitrate_kbps": outcome.info.bitrate_kbps,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, measure, print one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m bench.probe_cpu", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds read per check")
    parser.add_argument("--variant", default="fhd", help="sample variant (default fhd)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="sample cache folder")
    args = parser.parse_args(argv)
    # stdout carries the one JSON object; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    print(json.dumps(measure(args.seconds, args.variant, args.cache_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
