"""``SupervisedActor``: a crash in ``on_start`` or ``on_receive`` reaches the supervisor."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from actors.messages import ActorFailed
from actors.supervisor import SupervisedActor
from tests.actors.fakes import Inbox, Recorder


class Crashing(SupervisedActor):
    """Crashes in ``start_up`` or on any message, as told; records its ``wind_down``."""

    actor_name = "crashing"

    def __init__(
        self,
        supervisor: pykka.ActorRef[Any] | None,
        wound_down: list[BaseException | None],
        done: threading.Event,
        *,
        crash_at_start: bool = False,
    ) -> None:
        super().__init__(supervisor)
        self._wound_down = wound_down
        self._done = done
        self._crash_at_start = crash_at_start

    def start_up(self) -> None:
        if self._crash_at_start:
            raise RuntimeError("cannot start")

    def wind_down(self, error: BaseException | None) -> None:
        self._wound_down.append(error)
        self._done.set()

    def on_receive(self, message: Any) -> Any:
        raise RuntimeError(f"bad message {message!r}")


@pytest.mark.parametrize("at_start", [True, False])
def test_a_crash_winds_down_and_tells_the_supervisor_its_name(at_start: bool) -> None:
    inbox = Inbox()
    supervisor = Recorder.start(inbox)
    wound_down: list[BaseException | None] = []
    done = threading.Event()
    ref = Crashing.start(supervisor, wound_down, done, crash_at_start=at_start)
    if not at_start:
        ref.tell("boom")
    (failed,) = inbox.wait_for(ActorFailed)
    assert failed.actor == "crashing"
    assert ("cannot start" if at_start else "bad message 'boom'") in failed.error
    assert done.wait(5)
    assert len(wound_down) == 1
    assert isinstance(wound_down[0], RuntimeError)


def test_a_stop_winds_down_without_an_error_and_tells_nobody() -> None:
    inbox = Inbox()
    supervisor = Recorder.start(inbox)
    wound_down: list[BaseException | None] = []
    done = threading.Event()
    ref = Crashing.start(supervisor, wound_down, done)
    ref.stop(timeout=5)
    assert done.wait(5)
    assert wound_down == [None]
    supervisor.stop(timeout=5)  # the recorder's mailbox is empty once it stops
    assert inbox.messages == []


class CrashingTwice(Crashing):
    """Its letting go fails as well."""

    actor_name = "crashing_twice"

    def wind_down(self, error: BaseException | None) -> None:
        super().wind_down(error)
        if error is not None:
            raise OSError("cannot close the file")


def test_the_supervisor_hears_of_a_crash_even_when_winding_down_fails_too() -> None:
    inbox = Inbox()
    supervisor = Recorder.start(inbox)
    wound_down: list[BaseException | None] = []
    ref = CrashingTwice.start(supervisor, wound_down, threading.Event())
    ref.tell("boom")
    (failed,) = inbox.wait_for(ActorFailed)
    assert failed.actor == "crashing_twice"
    assert "bad message 'boom'" in failed.error
