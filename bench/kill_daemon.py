"""``python -m bench.kill_daemon``: what a ``kill -9`` of the daemon leaves at the provider.

For each ffmpeg build present (the one on ``PATH`` and imageio-ffmpeg's),
starts the provider simulator and ``main.py run`` with two long checks on a
login capped at 2, waits until the provider sees both connections, SIGKILLs
the daemon, and measures how long until the provider sees no connection and
no ffmpeg of the daemon is left; then restarts the daemon at once and counts
the connections the provider refused over the cap. Prints one JSON object
per build.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import structlog

from adapters.ffmpeg import FfmpegNotFound, check_ffmpeg
from simulator.server import ProviderSimulator, SimAccount, SimStream

ROOT = Path(__file__).resolve().parents[1]
_USER = "bench"
_PASSWORD = "bench"  # noqa: S105 - a login of the loopback simulator, not a secret
_WAIT_S = 30.0


def _builds() -> dict[str, str]:
    found: dict[str, str] = {}
    on_path = shutil.which("ffmpeg")
    if on_path:
        found["system"] = on_path
    try:
        import imageio_ffmpeg

        found["imageio"] = str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    return found


def _write_setup(folder: Path, sim: ProviderSimulator, ffmpeg: str) -> Path:
    inventory = {
        "accounts": [{"id": 1, "name": "bench", "max_streams": 2}],
        "streams": [
            {"id": sid, "name": f"s{sid}", "m3u_account": 1, "url": sim.url(_USER, _PASSWORD, sid)}
            for sid in (1, 2)
        ],
        "channels": [{"id": 1, "name": "all", "streams": [1, 2]}],
    }
    (folder / "inventory.json").write_text(json.dumps(inventory))
    config = folder / "config.toml"
    config.write_text(
        f"""
[source]
type = "file"
path = "inventory.json"

[concurrent_streams]
stagger_delay = 0

[check]
duration = 60
timeout = 10
ffmpeg = {json.dumps(ffmpeg)}

[results]
database = "results.sqlite"

[status]
listen = ""

[log]
level = "warning"
"""
    )
    return config


def _processes_mentioning(marker: str) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    count += 1
            except OSError:
                continue
    return count


def _start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "run", "--config", str(config)],
        cwd=config.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure(ffmpeg: str, cache_dir: Path | None = None) -> dict[str, object]:
    """SIGKILL a daemon mid-check with ``ffmpeg`` and return what the provider saw."""
    build = check_ffmpeg(ffmpeg)
    sim = ProviderSimulator(
        [SimAccount(_USER, _PASSWORD, max_connections=2)],
        {1: SimStream("ok"), 2: SimStream("ok")},
        cache_dir=cache_dir,
        lifetime_s=300,
    )
    with sim, tempfile.TemporaryDirectory(prefix="bench-kill-") as tmp:
        config = _write_setup(Path(tmp), sim, ffmpeg)
        first = _start(config)
        second: subprocess.Popen[bytes] | None = None
        try:
            if not sim.wait_for_connections(_USER, 2, timeout=_WAIT_S):
                message = "the daemon never opened its two checks"
                raise RuntimeError(message)
            children_before = _processes_mentioning(sim.base_url)
            killed = time.monotonic()
            first.send_signal(signal.SIGKILL)
            first.wait()
            idle = sim.wait_for_idle(_USER, timeout=_WAIT_S)
            to_idle = time.monotonic() - killed
            while _processes_mentioning(sim.base_url) and time.monotonic() - killed < _WAIT_S:
                time.sleep(0.01)
            to_no_children = time.monotonic() - killed
            second = _start(config)
            # Both checks of the new daemon answered, or the provider refused one.
            restarted = sim.wait_until(
                lambda s: sum(s.served.values()) >= 4 or bool(s.refused), timeout=_WAIT_S
            )
            stats = sim.stats()
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    return {
        "ffmpeg": build.path,
        "version": build.version,
        "ffmpeg_children_before_kill": children_before,
        "provider_idle_after_kill_s": round(to_idle, 3) if idle else None,
        "no_ffmpeg_left_after_s": round(to_no_children, 3),
        "restart_got_both_slots": restarted and not stats.refused,
        "refused_over_cap": len(stats.refused),
        "max_concurrency": stats.max_concurrency.get(_USER, 0),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure every build present; print one JSON object per build."""
    parser = argparse.ArgumentParser(prog="python -m bench.kill_daemon", description=__doc__)
    parser.add_argument("--cache-dir", type=Path, default=None, help="sample cache folder")
    parser.add_argument("--runs", type=int, default=3, help="kills per build (default 3)")
    args = parser.parse_args(argv)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    for name, path in _builds().items():
        try:
            for run in range(args.runs):
                figures = measure(path, args.cache_dir)
                print(json.dumps({"build": name, "run": run + 1, **figures}), flush=True)
        except FfmpegNotFound as exc:
            print(json.dumps({"build": name, "skipped": str(exc)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
