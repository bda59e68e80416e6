"""``LoopActor``: pykka's actor contract, with every loop actor's turns on one shared thread."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors import loop
from actors.loop import Idle, LoopActor, _Inbox

WAIT_S = 5.0


class Journal:
    """What the actors did, in order, and on which thread (shared by the test's actors)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, Any]] = []
        self.threads: set[int] = set()
        self._cond = threading.Condition()

    def add(self, who: str, what: Any) -> None:
        with self._cond:
            self.lines.append((who, what))
            self.threads.add(threading.get_ident())
            self._cond.notify_all()

    def wait_for(self, line: tuple[str, Any]) -> list[tuple[str, Any]]:
        with self._cond:
            assert self._cond.wait_for(lambda: line in self.lines, WAIT_S), self.lines
            return list(self.lines)


class Echo(LoopActor):
    """Records its life and its messages; forwards ``("to", ref, message)``; ``"boom"`` raises."""

    def __init__(
        self,
        name: str,
        journal: Journal,
        gate: threading.Event | None = None,
        exit_in: str = "",
    ) -> None:
        super().__init__()
        self.name = name
        self.journal = journal
        self.gate = gate
        self.exit_in = exit_in
        """``on_start`` or ``on_stop``: raise ``SystemExit`` there (past pykka's handling)."""

    def on_start(self) -> None:
        if self.exit_in == "on_start":
            raise SystemExit(3)
        self.journal.add(self.name, "started")

    def on_stop(self) -> None:
        if self.exit_in == "on_stop":
            raise SystemExit(3)
        self.journal.add(self.name, "stopped")

    def on_failure(self, *_exc_info: object) -> None:
        self.journal.add(self.name, "failed")

    def on_receive(self, message: Any) -> Any:
        match message:
            case ("to", ref, forwarded):
                ref.tell(forwarded)
            case "boom":
                raise RuntimeError("boom")
            case "hold" if self.gate is not None:
                self.journal.add(self.name, "holding")
                assert self.gate.wait(WAIT_S)  # a test's way to line up mail; never in the daemon
            case "ask":
                return f"{self.name} answers"
            case "ask_boom":
                raise ValueError("bad ask")
            case "take_ints":  # the run of ints told after it, in this same turn
                taken = []
                while (number := self.take_next_if(int)) is not None:
                    taken.append(number)
                message = ("took", tuple(taken))
            case "take_all_ints":  # every int in the mailbox, the rest left in order
                message = ("took all", tuple(self.take_all_of(int)))
            case "idle_later":
                self.tell_when_idle()
                self.tell_when_idle()  # asked twice, told once
            case Idle():
                message = "idle"
        self.journal.add(self.name, message)
        return None


@pytest.fixture
def journal() -> Iterator[Journal]:
    journal = Journal()
    yield journal
    pykka.ActorRegistry.stop_all()


def hold_loop(journal: Journal, name: str) -> tuple[threading.Event, pykka.ActorRef[Any]]:
    """An ``Echo`` that holds the loop thread (mail queues meanwhile) until the gate is set."""
    gate = threading.Event()
    ref = Echo.start(name, journal, gate)
    ref.tell("hold")
    journal.wait_for((name, "holding"))
    return gate, ref


def test_on_start_comes_first_messages_in_order_on_stop_last(journal: Journal) -> None:
    ref = Echo.start("a", journal)
    for number in range(5):
        ref.tell(number)
    ref.stop()

    assert journal.lines == [
        ("a", "started"),
        *(("a", number) for number in range(5)),
        ("a", "stopped"),
    ]


def test_loop_actors_share_one_thread_and_mail_between_them_stays_on_it(
    journal: Journal,
) -> None:
    a = Echo.start("a", journal)
    b = Echo.start("b", journal)

    a.tell(("to", b, "from a"))
    journal.wait_for(("b", "from a"))

    assert len(journal.threads) == 1
    assert threading.get_ident() not in journal.threads


def test_asks_from_other_threads_get_answers_and_errors(journal: Journal) -> None:
    ref = Echo.start("a", journal)

    assert ref.ask("ask", timeout=WAIT_S) == "a answers"
    with pytest.raises(ValueError, match="bad ask"):
        ref.ask("ask_boom", timeout=WAIT_S)
    assert ref.ask("ask", timeout=WAIT_S) == "a answers"  # an asker's error does not stop it


def test_a_crash_stops_that_actor_only(journal: Journal) -> None:
    a = Echo.start("a", journal)
    b = Echo.start("b", journal)

    a.tell("boom")
    journal.wait_for(("a", "failed"))
    b.tell("still here")

    journal.wait_for(("b", "still here"))
    assert not a.is_alive()
    with pytest.raises(pykka.ActorDeadError):
        a.tell("after")


def test_each_turn_is_one_message_so_a_busy_actor_does_not_starve_another(
    journal: Journal,
) -> None:
    gate, busy = hold_loop(journal, "busy")
    other = Echo.start("other", journal)
    for number in range(20):  # all queued while the loop is held
        busy.tell(number)
    other.tell("mine")

    gate.set()
    lines = journal.wait_for(("busy", 19))

    assert lines.index(("other", "mine")) < lines.index(("busy", 1))


def test_the_thread_ends_with_the_last_actor_and_comes_back_for_the_next(
    journal: Journal,
) -> None:
    pykka.ActorRegistry.stop_all()  # no loop actor of an earlier test in this process
    first = Echo.start("a", journal)
    first.tell("hello")
    journal.wait_for(("a", "hello"))
    (loop_thread,) = (t for t in threading.enumerate() if t.ident in journal.threads)

    first.stop()
    loop_thread.join(WAIT_S)
    assert not loop_thread.is_alive()

    second = Echo.start("b", journal)
    assert second.ask("ask", timeout=WAIT_S) == "b answers"


def test_mail_told_before_its_first_turn_waits_for_on_start(journal: Journal) -> None:
    gate, _holder = hold_loop(journal, "holder")  # busy while the next one starts, gets mail
    late = Echo.start("late", journal)
    late.tell("early mail")

    gate.set()
    lines = journal.wait_for(("late", "early mail"))

    assert lines.index(("late", "started")) < lines.index(("late", "early mail"))


@pytest.mark.parametrize("exit_in", ["on_start", "on_stop"])
def test_what_raises_past_pykka_ends_that_actor_and_no_other(
    journal: Journal, exit_in: str
) -> None:
    other = Echo.start("other", journal)
    doomed = Echo.start("doomed", journal, exit_in=exit_in)
    if exit_in == "on_start":
        pending = doomed.ask("ask", block=False)
        with pytest.raises(pykka.ActorDeadError):
            pending.get(timeout=WAIT_S)  # its asker is answered, it does not wait for ever
    else:
        assert doomed.stop(block=True, timeout=WAIT_S)  # a blocking stop still returns

    journal.wait_for(("doomed", "failed"))  # on_failure is told (the supervisor hears of it)
    assert not doomed.is_alive()
    assert other.ask("ask", timeout=WAIT_S) == "other answers"
    assert Echo.start("new", journal).ask("ask", timeout=WAIT_S) == "new answers"


def test_idle_comes_once_after_every_turn_waiting_when_it_was_asked_for(
    journal: Journal,
) -> None:
    gate, asker = hold_loop(journal, "asker")
    other = Echo.start("other", journal)
    asker.tell("idle_later")
    for number in range(5):  # all queued while the loop is held
        other.tell(number)

    gate.set()
    journal.wait_for(("asker", "idle"))
    assert asker.ask("ask", timeout=WAIT_S) == "asker answers"  # nothing more comes

    lines = journal.lines
    assert lines.index(("asker", "idle_later")) < lines.index(("other", 1))
    assert lines.index(("other", 4)) < lines.index(("asker", "idle"))
    assert lines.count(("asker", "idle")) == 1


def test_a_turn_takes_the_run_of_like_messages_that_come_next_and_no_other(
    journal: Journal,
) -> None:
    gate, ref = hold_loop(journal, "a")
    ref.tell("take_ints")
    for number in (1, 2, 3):
        ref.tell(number)
    asked = ref.ask(4, block=False)  # an ask is answered in its own turn, never taken
    ref.tell(5)
    ref.tell("end")
    ref.tell(6)

    gate.set()
    journal.wait_for(("a", 6))
    asked.get(timeout=WAIT_S)

    assert journal.lines[journal.lines.index(("a", "hold")) + 1 :] == [
        ("a", ("took", (1, 2, 3))),
        ("a", 4),
        ("a", 5),
        ("a", "end"),
        ("a", 6),
    ]


def test_mail_from_many_threads_at_once_is_each_handled_once_in_each_senders_order(
    journal: Journal,
) -> None:
    ref = Echo.start("a", journal)
    senders, letters = 8, 200
    go = threading.Barrier(senders)

    def send(sender: int) -> None:
        go.wait(WAIT_S)
        for number in range(letters):
            ref.tell((sender, number))

    threads = [threading.Thread(target=send, args=(sender,)) for sender in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    for sender in range(senders):  # no more mail: a letter left without a turn stays so
        journal.wait_for(("a", (sender, letters - 1)))

    got = [what for who, what in journal.lines if who == "a" and isinstance(what, tuple)]
    assert sorted(got) == [(s, n) for s in range(senders) for n in range(letters)]
    for sender in range(senders):
        assert [n for s, n in got if s == sender] == list(range(letters))


def test_a_turn_can_take_every_message_of_a_kind_out_of_its_mailbox(journal: Journal) -> None:
    gate, ref = hold_loop(journal, "a")
    for message in ("take_all_ints", 1, "x", 2, "y", 3):
        ref.tell(message)

    gate.set()
    journal.wait_for(("a", "y"))

    assert journal.lines[journal.lines.index(("a", "hold")) + 1 :] == [
        ("a", ("took all", (1, 2, 3))),
        ("a", "x"),
        ("a", "y"),
    ]


class _LetterJustThen(deque[Any]):
    """A mailbox's letters where one more is put by another thread just as the loop
    thread finds it empty (the first time it looks), the race the lock used to close."""

    def __init__(self, inbox: _Inbox, letter: Any) -> None:
        super().__init__()
        self.inbox, self.letter = inbox, letter

    def __len__(self) -> int:
        length = super().__len__()
        if length == 0 and self.letter is not None:
            letter, self.letter = self.letter, None
            self.inbox.put(letter)  # it sees a turn still waiting: asks for none
        return length


def test_a_letter_put_as_the_loop_finds_the_mailbox_empty_still_gets_a_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turns: list[object] = []
    actor = object()
    real_turn = loop._LOOP.turn

    def turn(whose: Any) -> None:  # this inbox's turns are noted, any other actor's taken
        if whose is actor:
            turns.append(whose)
        else:
            real_turn(whose)

    monkeypatch.setattr(loop._LOOP, "turn", turn)
    inbox = _Inbox(actor)  # type: ignore[arg-type]  # only passed on to the loop
    inbox.start()
    assert turns == [actor]
    inbox._items = _LetterJustThen(inbox, "late")

    assert inbox.next_or_rest() is None  # the turn finds none: the letter comes just then

    assert turns == [actor, actor]  # so the loop gives the actor another turn
    assert inbox.next_or_rest() == "late"  # type: ignore[comparison-overlap]  # a stand-in
