"""The command line: ``run``, ``once``, ``validate`` and ``demo``.

Bad input (config, inventory, a wrong answer from Dispatcharr) ends with exit
code 2 and one line naming what is wrong, never a traceback; Dispatcharr not
answering at all ends with exit code 1. ``once`` exits 0 also when some streams are dead.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from actors.messages import AbortCycle, CycleFinished
from adapters.dispatcharr import DispatcharrUnavailable
from adapters.ffmpeg import FfmpegBuild, FfmpegNotFound, check_ffmpeg, find_ffmpeg
from adapters.store import StoreError, check_database
from app import logs
from app.config import Config, InputError, load_config
from app.daemon import Daemon, unbounded_checks, unknown_overrides
from app.effective import effective_config_toml
from app.progress import progress_listeners
from app.report import ReportError, build_report, check_report_path, write_report
from app.runtime import tune_gc
from app.sources import Sources, build_sources
from app.status import listen_problem
from domain.models import Inventory
from domain.ports import SourceError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

_DEFAULT_CONFIG = Path("config.toml")

logger = structlog.get_logger(__name__)


class BadInputError(Exception):
    """Config or inventory is wrong: exit 2 with this one-line message."""


def build_parser(prog: str = "main.py") -> argparse.ArgumentParser:
    """The argument parser, one sub-command per mode."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Limit-aware IPTV stream checker for Dispatcharr.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    config_help = "config file (TOML); default ./config.toml"
    dry_run_help = "log what would be written to Dispatcharr instead of writing it"
    run = commands.add_parser("run", help="the long-running daemon")
    run.add_argument("--config", type=Path, default=None, help=config_help)
    run.add_argument("--dry-run", action="store_true", help=dry_run_help)
    once = commands.add_parser("once", help="one full check cycle, then exit")
    once.add_argument("--config", type=Path, default=None, help=config_help)
    once.add_argument("--dry-run", action="store_true", help=dry_run_help)
    once.add_argument("--report", type=Path, default=None, help="write the cycle report here")
    once.add_argument(
        "--status", action="store_true", help="also serve the status page on status.listen"
    )
    validate = commands.add_parser("validate", help="check the config and its inventory")
    validate.add_argument("--config", type=Path, default=None, help=config_help)
    demo = commands.add_parser("demo", help="run against the built-in provider simulator")
    demo.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)"
    )
    demo.add_argument("--once", action="store_true", help="one cycle, then stop")
    demo.add_argument("--report", type=Path, default=None, help="write the last cycle's report")
    demo.add_argument("--log-format", choices=("console", "json"), default="console")
    show = commands.add_parser(
        "config", help="print the effective config (defaults included, secrets masked)"
    )
    show.add_argument("--config", type=Path, default=None, help=config_help)
    return parser


def console_main() -> int:
    """The ``iptv-checkd`` command installed by ``pip install .``."""
    tune_gc()
    return main(prog="iptv-checkd")


def _with_default_command(argv: list[str]) -> list[str]:
    """No command is the demo, also when its options come alone (``main.py --seconds 20``)."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return ["demo", *argv]
    return argv


def main(argv: list[str] | None = None, prog: str = "main.py") -> int:
    """Run the command named in ``argv``; return the process exit code."""
    parser = build_parser(prog)
    args = parser.parse_args(_with_default_command(sys.argv[1:] if argv is None else argv))
    try:
        handler: Callable[[argparse.Namespace], int] = _COMMANDS[args.command]
        return handler(args)
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SourceDownError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _load(args: argparse.Namespace) -> tuple[Config, Sources]:
    """Config and sources, or :class:`BadInputError`."""
    path: Path | None = args.config
    if path is None:
        if not _DEFAULT_CONFIG.exists():
            message = "no config file: pass --config PATH (every key: config/default.toml)"
            raise BadInputError(message)
        path = _DEFAULT_CONFIG
    try:
        config = load_config(path)
    except InputError as exc:
        raise BadInputError(str(exc)) from exc
    # A status server on the network without a token is refused before anything starts.
    problem = listen_problem(config.status, config.status.token())
    if problem is not None:
        raise BadInputError(problem)
    if getattr(args, "dry_run", False):
        config = replace(config, results=replace(config.results, dry_run=True))
    logs.configure(config.log.format, config.log.level)
    try:
        sources = build_sources(config)
    except SourceError as exc:
        raise BadInputError(str(exc)) from exc
    return config, sources


def _check_ffmpeg(config: Config) -> FfmpegBuild:
    """The ffmpeg the checks will use: found, and ffmpeg 4.4 or newer."""
    try:
        return check_ffmpeg(find_ffmpeg(config.check.ffmpeg))
    except FfmpegNotFound as exc:
        raise BadInputError(str(exc)) from exc


def _log_ffmpeg(build: FfmpegBuild) -> None:
    """Once, as the daemon starts (after every bad-input check, which prints one line)."""
    logger.info("ffmpeg_found", path=build.path, version=build.version)


class SourceDownError(Exception):
    """Dispatcharr did not answer: exit 1 (nothing is wrong with the input)."""


def _load_inventory(sources: Sources) -> Inventory:
    try:
        return sources.inventory.load()
    except SourceError as exc:
        if isinstance(exc.__cause__, DispatcharrUnavailable):
            raise SourceDownError(str(exc)) from exc
        raise BadInputError(str(exc)) from exc


def _check_viewer_file(config: Config, sources: Sources) -> None:
    """A viewer file (``source.viewers_path``) that can't be read is bad input.

    Checks would wait on its accounts for as long as the counts are unknown
    (fail closed), so ``validate`` and ``once`` say so at once; ``run`` logs it
    on every poll and waits for the file to be fixed.
    """
    if config.source.type != "file" or config.source.viewers_path is None:
        return
    try:
        sources.viewers.read()
    except SourceError as exc:
        raise BadInputError(str(exc)) from exc


def _check_status_port(config: Config) -> None:
    """``status.listen`` can be listened on, or :class:`BadInputError` naming it.

    Checked before anything starts: a daemon that silently lost its status
    page is worse than one that does not start.
    """
    if not config.status.enabled:
        return
    host, port = config.status.host, config.status.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # Closed at once; an unused listening socket leaves nothing behind.
        socket.create_server((host, port), family=family).close()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        message = f"status.listen = {config.status.listen}: cannot listen there: {reason}"
        raise BadInputError(message) from exc


def _open_store(daemon: Daemon) -> None:
    """The results database, opened (created, migrated) before anything runs."""
    try:
        daemon.open_store()
    except StoreError as exc:
        raise BadInputError(str(exc)) from exc


def cmd_validate(args: argparse.Namespace) -> int:
    """Check the config, ffmpeg, the results database, the inventory and the viewer file.

    Changes nothing (the database is not created).
    """
    config, sources = _load(args)
    ffmpeg = _check_ffmpeg(config)
    try:
        check_database(config.results.database)
    except StoreError as exc:
        raise BadInputError(str(exc)) from exc
    inventory = _load_inventory(sources)
    if not inventory.streams:
        where = (
            str(config.source.path)
            if config.source.type == "file"
            else f"Dispatcharr at {config.dispatcharr.url}"
        )
        message = (
            f"{where}: no streams to check ({len(inventory.accounts)} accounts, "
            f"{len(inventory.channels)} channels)"
        )
        raise BadInputError(message)
    for account_id in unknown_overrides(inventory, config.accounts):
        print(
            f'warning: [accounts."{account_id}"]: no account {account_id} in the inventory; '
            "the override does nothing",
            file=sys.stderr,
        )
    if (unbounded := unbounded_checks(config, inventory)) is not None:
        at_once, unlimited = unbounded
        accounts = ", ".join(f"account {a}" for a in unlimited)
        print(
            f"warning: concurrent_streams.global_limit = 0: up to {at_once} checks at once "
            f"({accounts} unlimited), each an ffmpeg process and a stream's bandwidth; "
            "set a global_limit (the default is 10)",
            file=sys.stderr,
        )
    _check_viewer_file(config, sources)
    print(
        f"ok: {args.config or _DEFAULT_CONFIG}: {len(inventory.accounts)} accounts, "
        f"{len(inventory.streams)} streams, {len(inventory.channels)} channels; "
        f"ffmpeg {ffmpeg.version} ({ffmpeg.path})"
    )
    return EXIT_OK


def cmd_once(args: argparse.Namespace) -> int:
    """One cycle; write the report; exit 0 even if streams are dead."""
    config, sources = _load(args)
    ffmpeg = _check_ffmpeg(config)
    if args.report is not None:
        try:
            check_report_path(args.report)
        except ReportError as exc:
            raise BadInputError(str(exc)) from exc
    if args.status:
        _check_status_port(config)
    # A progress bar on a terminal only; piped or from cron, stdout stays quiet.
    daemon = Daemon(config, sources, extra_listeners=progress_listeners(sys.stdout))
    _open_store(daemon)
    inventory = _load_inventory(sources)
    _check_viewer_file(config, sources)
    with _stop_on_signals() as stopping:
        _log_ffmpeg(ffmpeg)
        # An actor dying fails the cycle (the wait below ends) and the exit code.
        daemon.start(scheduled=False, status=args.status)
        try:
            finished = _run_interruptibly(daemon, inventory, stopping)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            daemon.stop()
    if args.report is not None:
        try:
            write_report(args.report, build_report(finished))
        except ReportError as exc:
            # The cycle ran and its results are stored: not bad input, a failure.
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
    if daemon.failure is not None:
        print(f"error: {daemon.failure}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if not finished.aborted else EXIT_FAILED


_ABORT_BUDGET_S = 5.0
"""Seconds ``once`` waits after SIGINT/SIGTERM for the aborted cycle to end
(its probes are killed at once)."""
_FLUSH_BUDGET_S = 1.0
"""Then seconds it waits for the write-back before stopping the daemon (whose
stop flushes too, 4 s at most in all): a hung Dispatcharr does not keep it."""


def _run_interruptibly(
    daemon: Daemon, inventory: Inventory, stopping: threading.Event
) -> CycleFinished:
    """Run one cycle on a helper thread so SIGINT/SIGTERM can abort it.

    After a signal the cycle is aborted (probes killed) unless it has ended,
    and the write-back gets :data:`_FLUSH_BUDGET_S`: the results are stored as
    they come, and the report is written, whatever Dispatcharr does.
    """
    box: dict[str, Any] = {}
    checked = threading.Event()

    def on_checked(cycle: CycleFinished) -> None:
        box["checked"] = cycle
        checked.set()

    def work() -> None:
        try:
            box["finished"] = daemon.run_cycle(
                inventory, on_checked=on_checked, interrupted=stopping
            )
        except Exception as exc:  # noqa: BLE001 - handed to the main thread below
            box["error"] = exc
        finally:
            stopping.set()

    thread = threading.Thread(target=work, name="once", daemon=True)
    thread.start()
    stopping.wait()
    if "finished" not in box and "error" not in box:
        if not checked.is_set():
            daemon.coordinator.tell(AbortCycle("signal"))
            checked.wait(timeout=_ABORT_BUDGET_S)
        thread.join(timeout=_FLUSH_BUDGET_S)
    if "error" in box and "checked" not in box:
        raise box["error"]
    if "error" in box:  # the cycle ended, then storing or writing back failed
        logger.error("writeback_failed_after_cycle", error=repr(box["error"]))
    finished: CycleFinished | None = box.get("finished", box.get("checked"))
    if finished is None:
        message = "the cycle did not end after it was aborted"
        raise RuntimeError(message)
    if "finished" not in box:
        logger.warning(
            "writeback_incomplete",
            cycle_id=finished.cycle_id,
            hint="stopped while writing back: the results are stored, the report is written",
        )
    return finished


def cmd_run(args: argparse.Namespace) -> int:
    """The long-running daemon, until SIGINT/SIGTERM."""
    config, sources = _load(args)
    ffmpeg = _check_ffmpeg(config)
    _check_status_port(config)
    daemon = Daemon(config, sources)
    _open_store(daemon)
    with _stop_on_signals() as stopping:
        _log_ffmpeg(ffmpeg)
        # An actor dying stops the daemon too, with exit 1 for systemd to restart it.
        daemon.start(scheduled=True, on_failure=lambda _reason: stopping.set())
        try:
            stopping.wait()
        finally:
            daemon.stop()
    if daemon.failure is not None:
        print(f"error: {daemon.failure}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded demo against the loopback provider simulator."""
    from app.demo import run_demo

    logs.configure(args.log_format, "info")
    with _stop_on_signals() as stopping:
        return run_demo(stopping, seconds=args.seconds, once=args.once, report=args.report)


_SIGNAL_CHECK_S = 0.2
"""Longest a signal handler waits to run while the main thread waits for the stop."""


class _StopEvent(threading.Event):
    """An event whose :meth:`wait` in the main thread lets signal handlers run.

    The kernel hands a process's SIGTERM to any of its threads. When another
    thread catches it, CPython runs the Python handler only once the main
    thread runs Python code again, and a plain wait on an event never returns
    to do so: the daemon would ignore SIGTERM for as long as it waits (seen:
    a ``run`` that kept going for 11 minutes). Waiting in short slices bounds
    that delay.
    """

    def wait(self, timeout: float | None = None) -> bool:
        """Like :meth:`threading.Event.wait`, in slices of :data:`_SIGNAL_CHECK_S`."""
        if threading.current_thread() is not threading.main_thread():
            return super().wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = _SIGNAL_CHECK_S
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
                if step <= 0:
                    return self.is_set()
            if super().wait(step):
                return True


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM set the event instead of raising; old handlers come back after."""
    stopping = _StopEvent()

    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal_received", signal=signal.Signals(signum).name)
        stopping.set()

    if threading.current_thread() is not threading.main_thread():
        yield stopping
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def cmd_config(args: argparse.Namespace) -> int:
    """Print the effective config as TOML: every key, defaults included, secrets masked."""
    path: Path | None = args.config
    if path is None and _DEFAULT_CONFIG.exists():
        path = _DEFAULT_CONFIG
    try:
        config = load_config(path)
    except InputError as exc:
        raise BadInputError(str(exc)) from exc
    print(effective_config_toml(config, path), end="")
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "once": cmd_once,
    "validate": cmd_validate,
    "demo": cmd_demo,
    "config": cmd_config,
}
