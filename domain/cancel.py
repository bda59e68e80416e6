"""A cancel token: how a checker tells a running probe to stop at once."""

from __future__ import annotations

import threading
from collections.abc import Callable


class CancelToken:
    """Set once; runs registered callbacks (e.g. kill a process group) when set.

    The token belongs to one check. The probe registers what must happen on
    cancel (``on_cancel``) and may also wait on it instead of sleeping.

    One is made for every check, so it is built on two plain locks rather
    than a ``threading.Event`` (whose ``Condition`` costs several times more
    to make and to wait on, in Python): ``_gate`` is held from the start and
    let go on cancel, so a waiter blocks in C until then or its timeout.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gate = threading.Lock()
        self._gate.acquire()
        self._set = False
        self._callbacks: list[Callable[[], None]] = []
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._set

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the check; the first reason given wins. Safe from any thread."""
        with self._lock:
            if self._set:
                return
            self.reason = reason
            self._set = True
            self._gate.release()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on cancel; at once if already cancelled."""
        with self._lock:
            if not self._set:
                self._callbacks.append(callback)
                return
        callback()

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds; True if cancelled meanwhile."""
        if self._set:
            return True
        if self._gate.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            self._gate.release()  # open again for any other waiter
        return self._set
