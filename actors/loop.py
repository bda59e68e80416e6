"""``LoopActor``: pykka actors that take turns, one at a time, on whichever thread tells them.

Each check passes messages between the coordinator and an account actor
several times (a release and the next request, the grant, the room left). As
``ThreadingActor`` each of those actors has its own thread, so every message
between them wakes another thread and waits for the GIL: measured with
``bench.scheduler`` on ``large_2000``, each such hop waited 0.2-0.4 ms on
average, which is more than the actors' own work per check.

A ``LoopActor`` keeps everything pykka promises an actor (its own mailbox,
one message at a time in order, ``on_start``/``on_stop``/``on_failure``, asks
answered through a future), but loop actors have no threads of their own.
Their turns (one message each) wait in one queue, in the order their mail
came, and one thread at a time runs them:

- A thread that tells a loop actor while nobody runs turns runs them itself
  (a pool thread reporting its check's end runs the coordinator's turn, the
  account's and the coordinator's again, and then finds the next check in
  its own queue): no thread is woken for any of it.
- It does so for :data:`TURNS_BUDGET_S` at most; then, and whenever the
  telling thread is the main thread (where signals and ``KeyboardInterrupt``
  land), a helper thread runs the turns until none are left.
- Mail that a turn sends to another loop actor joins the queue; the running
  thread takes it in order. A message between loop actors is a list append.

What this asks of a loop actor: it never blocks (nor does any actor here,
DESIGN.md), never waits on another loop actor (an ``ask`` or a blocking
``stop``: that actor's turn could only come after its own), and does not care
which thread runs it (one turn at a time, each seeing what the last one did:
the queue's lock orders them).

The helper is a daemon thread (as if every loop actor set pykka's
``use_daemon_thread``): the process does not wait for it at exit, so whoever
starts loop actors stops them (the daemon stops every actor before it exits).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar

import pykka
import structlog
from pykka import messages as pykka_messages

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from pykka._envelope import Envelope

logger = structlog.get_logger(__name__)

TURNS_BUDGET_S = 0.002
"""Longest a thread that told a loop actor runs turns itself before the helper takes over."""

_HELPER = -1


class Turns:
    """Whose turn it is, and which thread runs the turns now (one at a time).

    Every loop actor shares :data:`SHARED` (:attr:`LoopActor.turns`); a test can
    give its actors their own.
    """

    def __init__(self, budget_s: float = TURNS_BUDGET_S) -> None:
        self._budget_s = budget_s
        self._lock = threading.Lock()
        self._turns: deque[LoopActor] = deque()
        self._runner: int | None = None
        """The thread running turns (its ident, or ``_HELPER``); None: nobody is."""
        self._helper_wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._helper: threading.Thread | None = None

    def turn(self, actor: LoopActor) -> None:
        """Queue the actor's turn; run the turns here if nobody does (see the module)."""
        with self._lock:
            self._turns.append(actor)
            if self._runner is not None:
                return  # the running thread takes it (in order)
            if threading.current_thread() is threading.main_thread():
                self._hand_over()  # signals and KeyboardInterrupt land in the main thread
                return
            self._runner = threading.get_ident()
        self._run(time.perf_counter() + self._budget_s)

    def _run(self, deadline: float | None) -> None:
        turns = self._turns
        while True:
            with self._lock:
                if not turns:
                    self._runner = None
                    return
                if deadline is not None and time.perf_counter() > deadline:
                    self._hand_over()  # the caller has its own work: the helper goes on
                    return
                actor = turns.popleft()
            try:
                actor._take_turn()
            except BaseException:  # one actor's fault must not end the others' turns
                # pykka's loop lets what raises past on_start, on_stop or on_failure end
                # that actor's thread; here only that actor ends.
                logger.exception("loop_turn_failed", actor=str(actor))
                actor._abandon(sys.exc_info())

    def _hand_over(self) -> None:
        """Let the helper thread run the turns (called with the lock held)."""
        self._runner = _HELPER
        if self._helper is None:
            self._helper = threading.Thread(target=self._help, name="LoopActor", daemon=True)
            self._helper.start()
        self._helper_wake.put(True)

    def close(self) -> None:
        """End the helper thread, if one was started (turns queued later start another)."""
        with self._lock:
            helper, self._helper = self._helper, None
        if helper is not None:
            self._helper_wake.put(False)
            helper.join(timeout=5)

    def _help(self) -> None:
        while self._helper_wake.get():
            self._run(None)


SHARED = Turns()
"""The turns of every loop actor."""


class _Inbox:
    """A loop actor's mailbox: FIFO; the first letter into an empty one asks for a turn."""

    __slots__ = ("_actor", "_items", "_lock", "_waiting")

    def __init__(self, actor: LoopActor) -> None:
        self._actor = actor
        self._items: deque[Envelope[Any]] = deque()
        self._lock = threading.Lock()
        self._waiting = False
        """A turn is queued (or running) for the actor."""

    def put(self, envelope: Envelope[Any], /) -> None:
        with self._lock:
            self._items.append(envelope)
            if self._waiting:
                return
            self._waiting = True
        self._actor.turns.turn(self._actor)

    def get(self) -> Envelope[Any]:
        with self._lock:
            return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def next_or_rest(self) -> Envelope[Any] | None:
        """The next letter, or None (and no turn is waiting any more) if there is none."""
        with self._lock:
            if self._items:
                return self._items.popleft()
            self._waiting = False
            return None

    def start(self) -> None:
        """The actor's first turn (its ``on_start``), unless mail already asked for one."""
        with self._lock:
            if self._waiting:
                return
            self._waiting = True
        self._actor.turns.turn(self._actor)

    def again(self) -> None:
        """After a turn: another turn if letters wait, else none until the next one."""
        with self._lock:
            if not self._items:
                self._waiting = False
                return
        self._actor.turns.turn(self._actor)


class LoopActor(pykka.ThreadingActor):
    """A pykka actor without a thread of its own: its turns run as the module says."""

    turns: ClassVar[Turns] = SHARED
    actor_inbox: _Inbox
    _loop_started: bool = False
    _loop_ended: bool = False
    _letter: Envelope[Any] | None = None
    """The message being handled, if a turn handles one."""

    def _create_actor_inbox(self) -> _Inbox:  # type: ignore[override]
        return _Inbox(self)

    def _start_actor_loop(self) -> None:
        self.actor_inbox.start()

    def _take_turn(self) -> None:
        """One turn: ``on_start`` first, then one message."""
        if self._loop_ended:
            return
        envelope = None
        if not self._loop_started:
            self._loop_started = True
            self._actor_loop_setup()
        if not self.actor_stopped.is_set():
            envelope = self._letter = self.actor_inbox.next_or_rest()
            if envelope is not None:
                self._handle_envelope(envelope)
            self._letter = None
        if self.actor_stopped.is_set():
            self._loop_ended = True
            self._actor_loop_teardown()
            return
        if envelope is not None:
            self.actor_inbox.again()

    def _abandon(self, exc_info: OptExcInfo) -> None:
        """A turn raised past the actor's own handling: it is dead; answer who waits.

        Its ``on_failure`` is told (once: the fault may have come from there),
        so a supervised actor's supervisor hears of it.
        """
        if self._loop_ended:
            return
        self._loop_ended = True
        pykka.ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()
        letter, self._letter = self._letter, None
        if letter is not None and letter.reply_to is not None:
            if isinstance(letter.message, pykka_messages._ActorStop):
                letter.reply_to.set(None)  # it is stopped: a blocking stop returns
            else:
                letter.reply_to.set_exception(exc_info=exc_info)
        try:
            self.on_failure(*exc_info)
        except BaseException:  # it failed already; nothing more to tell
            logger.exception("loop_actor_on_failure_failed", actor=str(self))
        self._actor_loop_teardown()

    def _handle_envelope(self, envelope: Envelope[Any]) -> None:
        """What pykka's own actor loop does with one message."""
        try:
            response = self._handle_receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except Exception:
            if envelope.reply_to is not None:
                logger.info("loop_actor_ask_failed", actor=str(self), exc_info=True)
                envelope.reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:  # noqa: BLE001 - as pykka's own loop: log it, stop
                    self._handle_failure(*sys.exc_info())
        except BaseException:
            logger.debug("loop_actor_base_exception", actor=str(self), exc_info=True)
            self._stop()
            # Not a blocking stop_all: the others' turns come on this very thread.
            pykka.ActorRegistry.stop_all(block=False)


__all__ = ["SHARED", "LoopActor", "Turns"]
