"""The terminal progress of ``once``: a bar with checked N of M, per account, alive/dead so far.

A listener of the coordinator drawing a tqdm bar on a terminal; when the
output is not a terminal (a pipe, a file, cron), nothing is drawn at all:
:func:`progress_listeners` then gives no listener.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, TextIO

import pykka
from tqdm import tqdm

from actors.messages import CycleFinished, CycleInventory, CycleStarted, ResultReady

_NAME_WIDTH = 14


def progress_listeners(out: TextIO) -> tuple[pykka.ActorRef[Any], ...]:
    """A progress bar listener on ``out`` if it is a terminal, else none."""
    isatty = getattr(out, "isatty", None)
    if isatty is None or not isatty():
        return ()
    return (TerminalProgress.start(out),)


class TerminalProgress(pykka.ThreadingActor):
    """Draws one tqdm bar per cycle on ``out``.

    Args:
        out: the terminal.
    """

    use_daemon_thread = True

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self._out = out
        self._bar: tqdm[Any] | None = None
        self._names: dict[int, str] = {}
        self._totals: Counter[int] = Counter()
        self._done: Counter[int] = Counter()
        self._statuses: Counter[str] = Counter()

    def on_stop(self) -> None:
        """Close a bar still drawn."""
        self._close()

    def on_failure(self, *_exc_info: object) -> None:
        """Close a bar still drawn."""
        self._close()

    def on_receive(self, message: Any) -> Any:
        """Update the bar from one cycle event."""
        match message:
            case CycleInventory(inventory=inventory):
                self._names = {a.id: a.name for a in inventory.accounts}
                self._totals = Counter(s.account_id for s in inventory.streams)
            case CycleStarted(streams=streams):
                self._close()
                self._done = Counter()
                self._statuses = Counter()
                self._bar = tqdm(
                    total=streams,
                    desc="checked",
                    unit="stream",
                    file=self._out,
                    dynamic_ncols=True,
                    leave=True,
                )
            case ResultReady(result=result):
                self._done[result.account_id] += 1
                self._statuses[result.status] += 1
                if self._bar is not None:
                    self._bar.set_postfix_str(self.postfix(), refresh=False)
                    self._bar.update(1)
            case CycleFinished():
                self._close()
            case _:
                return super().on_receive(message)
        return None

    def postfix(self) -> str:
        """``alive 3, dead 1 | Provider A 2/3, Provider B 1/2``."""
        statuses = self._statuses
        counts = f"alive {statuses['ok']}, dead {statuses['dead']}"
        if statuses["error"]:
            counts += f", errors {statuses['error']}"
        accounts = ", ".join(
            f"{self._names.get(aid, f'#{aid}')[:_NAME_WIDTH]} {self._done[aid]}/{total}"
            for aid, total in sorted(self._totals.items())
        )
        return f"{counts} | {accounts}" if accounts else counts

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
