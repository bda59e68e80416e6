"""``LoopActor``: pykka actors that take turns on one shared thread.

Each check passes messages between the coordinator and an account actor
several times (a release and the next request, the grant, the room left). As
``ThreadingActor`` each of those actors has its own thread, so every message
between them wakes another thread and waits for the GIL: measured with
``bench.scheduler`` on ``large_2000``, each such hop waited 0.2-0.4 ms on
average, which is more than the actors' own work per check.

A ``LoopActor`` keeps everything pykka promises an actor (its own mailbox,
one message at a time in order, ``on_start``/``on_stop``/``on_failure``, asks
from other threads answered through a future), but its messages are handled
on the loop thread that all loop actors share, one message per turn, the
actors in the order their mail came. A message from one loop actor to another
is then a list append on the same thread: no wake, no GIL hand-over.

What this asks of a loop actor: it never blocks (nor does any actor here,
DESIGN.md), and above all never waits on another loop actor (an ``ask`` or a
blocking ``stop``): that other actor's turn could only come after its own.

A loop actor may also ask to be told :class:`Idle` once no loop actor has a
turn waiting (:meth:`LoopActor.tell_when_idle`): work that must not hold up
the turns waiting now, done in the gaps between them.

The thread starts with the first loop actor and ends after the last one has
stopped. It is a daemon thread (as if every loop actor set pykka's
``use_daemon_thread``): the process does not wait for it at exit, so whoever
starts loop actors stops them (the daemon stops every actor before it exits).
"""

from __future__ import annotations

import queue
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pykka
import structlog
from pykka import messages as pykka_messages

from actors.tell import tell_quietly

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from pykka._envelope import Envelope

logger = structlog.get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Idle:
    """Told to a loop actor that asked for it once no loop actor had a turn waiting."""


_IDLE = Idle()


class _Loop:
    """The shared thread and the queue of actors whose turn it is."""

    def __init__(self) -> None:
        self._turns: queue.SimpleQueue[LoopActor | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._actors = 0
        self._thread: threading.Thread | None = None
        self._idle: deque[LoopActor] = deque()
        """Actors to tell ``Idle`` when no turn waits (used on the loop thread only)."""

    def attach(self) -> None:
        """A loop actor starts: start the thread if none runs."""
        with self._lock:
            self._actors += 1
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="LoopActor", daemon=True)
                self._thread = thread
                thread.start()

    def detach(self) -> None:
        """A loop actor has stopped: the thread ends when it was the last."""
        with self._lock:
            self._actors -= 1
            last = self._actors == 0
        if last:
            self._turns.put(None)

    def turn(self, actor: LoopActor) -> None:
        self._turns.put(actor)

    def when_idle(self, actor: LoopActor) -> None:
        """Tell ``actor`` ``Idle`` once no turn waits (on the loop thread, in a turn)."""
        self._idle.append(actor)

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            with self._lock:  # ended by an error (none is expected): the next attach starts one
                if self._thread is threading.current_thread():
                    self._thread = None

    def _serve(self) -> None:
        turns, idle = self._turns, self._idle
        while True:
            if idle and turns.empty():
                asker = idle.popleft()
                try:
                    asker._idle_now()  # tells it Idle: its turn comes like any other
                except Exception:  # none is expected; it must not end every actor's turns
                    logger.exception("loop_idle_failed", actor=str(asker))
                continue
            actor = turns.get()
            if actor is None:
                with self._lock:
                    if self._actors == 0:  # none attached since the last one stopped
                        self._thread = None
                        return
                continue
            try:
                actor._take_turn()
            except BaseException:  # one actor's fault must not end every actor's turns
                # pykka's loop lets what raises past on_start, on_stop or on_failure end
                # that actor's thread; here the thread is everybody's, so only the actor ends.
                logger.exception("loop_turn_failed", actor=str(actor))
                actor._abandon(sys.exc_info())


_LOOP = _Loop()


class _Inbox:
    """A loop actor's mailbox: FIFO; the first letter into an empty one asks for a turn.

    It takes no lock. Letters come from any thread, but only the loop thread
    takes them out, and a deque's ``append`` and ``popleft`` are atomic. A lock
    here was measured to cost more than the rest of the mailbox: on
    ``large_10000`` (2,700 checker threads) the loop thread waited 30 µs per
    check for it, held by a checker thread that had lost the GIL inside it.

    Without a lock, a letter and the end of a turn may both ask for a turn at
    once. Then the actor has two turns queued, and one of them finds the
    mailbox empty and does nothing; a letter is never left without a turn:
    whoever puts it, looks at ``_waiting`` after, and the loop thread looks at
    the letters after it lowers ``_waiting`` (the interpreter lock keeps those
    steps in that order, as seen from every thread).
    """

    __slots__ = ("_actor", "_items", "_waiting")

    def __init__(self, actor: LoopActor) -> None:
        self._actor = actor
        self._items: deque[Envelope[Any]] = deque()
        self._waiting = False
        """A turn is queued (or running) for the actor."""

    def put(self, envelope: Envelope[Any], /) -> None:
        self._items.append(envelope)
        if not self._waiting:
            self._waiting = True
            _LOOP.turn(self._actor)

    def get(self) -> Envelope[Any]:
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def __len__(self) -> int:
        return len(self._items)

    def take_told(self, kind: type[T]) -> T | None:
        """The next letter's message, taken out, if it is a ``kind`` told (not asked)."""
        items = self._items
        if items:
            head = items[0]
            if head.reply_to is None and isinstance(head.message, kind):
                return items.popleft().message
        return None

    def take_all(self, kinds: tuple[type, ...]) -> list[Any]:
        """The messages of ``kinds``, taken out; the other letters stay, in order."""
        taken: list[Envelope[Any]] = []
        kept: list[Envelope[Any]] = []
        for _ in range(len(self._items)):  # letters put meanwhile stay after these
            envelope = self._items.popleft()
            (taken if isinstance(envelope.message, kinds) else kept).append(envelope)
        self._items.extendleft(reversed(kept))
        return [envelope.message for envelope in taken]

    def next_or_rest(self) -> Envelope[Any] | None:
        """The next letter, or None (and no turn is waiting any more) if there is none."""
        if self._items:
            return self._items.popleft()
        self._rest()
        return None

    def start(self) -> None:
        """The actor's first turn (its ``on_start``), unless mail already asked for one."""
        if not self._waiting:
            self._waiting = True
            _LOOP.turn(self._actor)

    def again(self) -> None:
        """After a turn: another turn if letters wait, else none until the next one."""
        if self._items:
            _LOOP.turn(self._actor)
        else:
            self._rest()

    def _rest(self) -> None:
        self._waiting = False
        if self._items and not self._waiting:  # a letter came as the flag went down
            self._waiting = True
            _LOOP.turn(self._actor)


class LoopActor(pykka.ThreadingActor):
    """A pykka actor whose messages run on the loop thread all loop actors share."""

    actor_inbox: _Inbox
    _loop_started: bool = False
    _loop_ended: bool = False
    _letter: Envelope[Any] | None = None
    """The message being handled, if a turn handles one."""
    _idle_asked: bool = False

    def tell_when_idle(self) -> None:
        """Have :class:`Idle` told to this actor once no loop actor has a turn waiting.

        Call it in the actor's own turn. Asked again before it came, it comes once.
        """
        if not self._idle_asked:
            self._idle_asked = True
            _LOOP.when_idle(self)

    def take_next_if(self, kind: type[T]) -> T | None:
        """The next message in this actor's mailbox if it is a ``kind`` told (not
        asked), taken out of it; else None. Call it in the actor's own turn.

        So a turn can handle a run of like messages at once (the order of the
        mailbox kept), where one decision for them all costs less than one each.
        """
        return self.actor_inbox.take_told(kind)

    def take_all_of(self, *kinds: type) -> list[Any]:
        """Every message of ``kinds`` in this actor's mailbox, taken out of it, in
        order; the others stay. Call it in the actor's own turn (or its teardown)."""
        return self.actor_inbox.take_all(kinds)

    def _idle_now(self) -> None:
        self._idle_asked = False
        tell_quietly(self.actor_ref, _IDLE)

    def _create_actor_inbox(self) -> _Inbox:  # type: ignore[override]
        return _Inbox(self)

    def _start_actor_loop(self) -> None:
        _LOOP.attach()
        self.actor_inbox.start()

    def _take_turn(self) -> None:
        """One turn on the loop thread: ``on_start`` first, then one message."""
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
            try:
                self._actor_loop_teardown()
            finally:
                _LOOP.detach()
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
        try:
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
        finally:
            _LOOP.detach()

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


__all__ = ["Idle", "LoopActor"]
