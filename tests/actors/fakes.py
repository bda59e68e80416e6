"""Fakes for actor tests: probes that record who holds which connection, and when; a
fake clock and timers on it."""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pykka

from actors.timers import TimerHandle
from domain.cancel import CancelToken
from domain.models import (
    Account,
    OutcomeKind,
    ProbeOutcome,
    ProbeRequest,
    Profile,
    Stream,
    StreamInfo,
)

_LOGIN = re.compile(r"/live/(?P<login>[^/]+)/")

T = TypeVar("T")


def on_fake_clock() -> tuple[FakeClock, FakeTimers]:
    """A fake monotonic clock at 0 and timers on it: ticks fire when the test says."""
    clock = FakeClock()
    return clock, FakeTimers(clock)


class Script(Generic[T]):
    """Plays its steps (values, or exceptions to raise) one a call; the last step repeats.

    A test waits for the calls to be over with :meth:`wait_calls`.
    """

    def __init__(self, *steps: T | Exception) -> None:
        self.steps = list(steps)
        self.calls = 0
        """Calls that are over."""
        self._cond = threading.Condition()

    def play(self, work: Callable[[], object] = lambda: None) -> T:
        """The next step, after ``work`` (what the call does meanwhile: wait, move a clock)."""
        with self._cond:
            step = self.steps[min(self.calls, len(self.steps) - 1)]
        work()
        with self._cond:
            self.calls += 1
            self._cond.notify_all()
        if isinstance(step, Exception):
            raise step
        return step

    def wait_calls(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until ``count`` calls are over; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.calls >= count, timeout)


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeTimers:
    """The timer service on a :class:`FakeClock`: callbacks run on the test's thread
    when it moves the clock (:meth:`advance_to`), never by themselves."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.planned: list[TimerHandle] = []
        """Every callback asked for, in order (cancelled ones too)."""
        self._cond = threading.Condition()

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        handle = TimerHandle(self.clock.now + max(0.0, delay), callback)
        with self._cond:
            self.planned.append(handle)
            self._cond.notify_all()
        return handle

    def wait_planned(self, count: int, timeout: float = 5.0) -> TimerHandle:
        """Wait until ``count`` callbacks were asked for; the last one."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.planned) >= count, timeout), self.planned
            return self.planned[count - 1]

    def advance_to(self, at: float) -> None:
        """Move the clock to ``at`` and run the callbacks due by then (soonest first)."""
        self.clock.now = max(self.clock.now, at)
        with self._cond:
            due = [h for h in self.planned if not h.cancelled and h.due <= self.clock.now]
        for handle in sorted(due, key=lambda h: h.due):
            handle.cancel()  # runs once
            handle.callback()


def profile_account(account_id: int, limits: list[int], stagger: float | None = None) -> Account:
    """An account whose profile ``i`` rewrites the login part of the URL to its own id."""
    profiles = tuple(
        Profile(
            id=account_id * 100 + i,
            name=f"login{i}",
            max_streams=limit,
            is_default=i == 0,
            search_pattern=r"/live/[^/]+/",
            replace_pattern=f"/live/p{account_id * 100 + i}/",
        )
        for i, limit in enumerate(limits)
    )
    return Account(
        id=account_id,
        name=f"acc{account_id}",
        max_streams=limits[0],
        profiles=profiles,
        stagger_delay=stagger,
    )


def simple_account(account_id: int, max_streams: int, stagger: float | None = None) -> Account:
    """An account given without profiles: one default login with ``max_streams``."""
    return profile_account(account_id, [max_streams], stagger)


def stream(stream_id: int, account_id: int, name: str = "") -> Stream:
    """A stream whose URL names its login (rewritten per profile) and its id."""
    return Stream(
        id=stream_id,
        name=name or f"s{stream_id}",
        account_id=account_id,
        url=f"http://127.0.0.1:9/live/base/pw/{stream_id}.ts",
    )


@dataclass(frozen=True)
class Behaviour:
    """How the fake probe treats one stream."""

    duration: float = 0.0
    kind: OutcomeKind = "ok"
    gated: bool = False
    """Run until the test calls :meth:`FakeProbe.open_gate` (or the check is cancelled)."""
    hang: bool = False
    """Run until cancelled."""
    raises: bool = False
    ignore_cancel: bool = False
    reason: str | None = None
    """The outcome's reason when not ``ok`` (default ``fake_<kind>``)."""


@dataclass(frozen=True)
class Event:
    at: float
    what: str
    stream_id: int
    account_id: int
    login: str


def _event(table: dict[int, threading.Event], key: int) -> threading.Event:
    """``table[key]``, made on first use; setdefault stores one Event for every caller."""
    event = table.get(key)
    return event if event is not None else table.setdefault(key, threading.Event())


class FakeProbe:
    """A probe that sleeps (on the cancel token), fails, hangs or waits for a gate.

    It counts open "connections" per login (the URL part a profile rewrites) and
    in total, and calls ``on_start`` under its lock so a test can check limits
    at the instant a connection opens.
    """

    def __init__(
        self,
        behaviours: dict[int, Behaviour] | None = None,
        default: Behaviour | None = None,
    ) -> None:
        self.behaviours = behaviours or {}
        self.default = default or Behaviour()
        self.lock = threading.Lock()
        self.events: list[Event] = []
        self.open: dict[str, int] = defaultdict(int)
        self.open_total = 0
        self.max_open: dict[str, int] = defaultdict(int)
        self.max_total = 0
        self.calls: dict[int, int] = defaultdict(int)
        self.requests: dict[int, ProbeRequest] = {}
        """The last request per stream id."""
        self.violations: list[str] = []
        self.limit_check: object = None
        # Plain dicts read through _event: a defaultdict's factory runs before the
        # entry is stored, so a probe thread and the test could each make their own
        # Event for one stream, one set and the other waited on (a CI flake).
        self._started: dict[int, threading.Event] = {}
        self._ended: dict[int, threading.Event] = {}
        self._gates: dict[int, threading.Event] = {}
        self._cond = threading.Condition(self.lock)

    # --- test side ----------------------------------------------------------------

    def started(self, stream_id: int, timeout: float = 5.0) -> bool:
        return _event(self._started, stream_id).wait(timeout)

    def ended(self, stream_id: int, timeout: float = 5.0) -> bool:
        return _event(self._ended, stream_id).wait(timeout)

    def open_gate(self, stream_id: int) -> None:
        _event(self._gates, stream_id).set()

    def wait_open(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until exactly ``count`` connections are open."""
        with self._cond:
            return self._cond.wait_for(lambda: self.open_total == count, timeout)

    def running_ids(self) -> set[int]:
        with self.lock:
            opened = {e.stream_id for e in self.events if e.what == "start"}
            closed = [e.stream_id for e in self.events if e.what == "end"]
        running = set(opened)
        for sid in closed:
            running.discard(sid)
        return running

    def first(self, what: str, stream_id: int) -> float:
        with self.lock:
            return next(e.at for e in self.events if e.what == what and e.stream_id == stream_id)

    # --- probe side ---------------------------------------------------------------

    def __call__(self, request: ProbeRequest, token: CancelToken) -> ProbeOutcome:
        login = _login(request.url)
        behaviour = self.behaviours.get(request.stream_id, self.default)
        with self._cond:
            self.open[login] += 1
            self.open_total += 1
            self.max_open[login] = max(self.max_open[login], self.open[login])
            self.max_total = max(self.max_total, self.open_total)
            self.calls[request.stream_id] += 1
            self.requests[request.stream_id] = request
            self.events.append(
                Event(time.monotonic(), "start", request.stream_id, request.account_id, login)
            )
            check = self.limit_check
            if callable(check):
                problem = check(login, dict(self.open), self.open_total)
                if problem:
                    self.violations.append(problem)
            self._cond.notify_all()
        _event(self._started, request.stream_id).set()
        try:
            return self._run(behaviour, request, token)
        finally:
            with self._cond:
                self.open[login] -= 1
                self.open_total -= 1
                self.events.append(
                    Event(time.monotonic(), "end", request.stream_id, request.account_id, login)
                )
                self._cond.notify_all()
            _event(self._ended, request.stream_id).set()

    def _run(self, behaviour: Behaviour, request: ProbeRequest, token: CancelToken) -> ProbeOutcome:
        if behaviour.raises:
            raise RuntimeError("probe blew up")
        if behaviour.ignore_cancel:
            time.sleep(behaviour.duration)
        elif behaviour.gated:
            gate = _event(self._gates, request.stream_id)
            token.on_cancel(gate.set)
            gate.wait()
        elif behaviour.hang:
            token.wait()
        else:
            token.wait(behaviour.duration)
        if token.cancelled and not behaviour.ignore_cancel:
            return ProbeOutcome(kind="cancelled", reason=token.reason)
        info = StreamInfo(
            resolution="1280x720",
            width=1280,
            height=720,
            fps=25.0,
            video_codec="h264",
            audio_codec="aac",
            bitrate_kbps=3000.0,
        )
        if behaviour.kind == "ok":
            return ProbeOutcome(kind="ok", info=info)
        reason = behaviour.reason or f"fake_{behaviour.kind}"
        return ProbeOutcome(kind=behaviour.kind, reason=reason)


def _login(url: str) -> str:
    match = _LOGIN.search(url)
    return match.group("login") if match else "?"


class Inbox:
    """What a recording actor received, with ways to wait for it."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self._cond = threading.Condition()

    def put(self, message: Any) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait_count(self, count: int, timeout: float = 5.0) -> list[Any]:
        """Wait for ``count`` messages of any kind; all received so far."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.messages) >= count, timeout), self.messages
            return list(self.messages)

    def wait_for(self, kind: type, count: int = 1, timeout: float = 5.0) -> list[Any]:
        """Wait for ``count`` messages of type ``kind``; those received so far."""

        def found() -> list[Any]:
            return [m for m in self.messages if isinstance(m, kind)]

        with self._cond:
            assert self._cond.wait_for(lambda: len(found()) >= count, timeout), self.messages
            return found()


class Recorder(pykka.ThreadingActor):
    """Stands in for a coordinator or a listener: records every message in an inbox."""

    use_daemon_thread = True

    def __init__(self, inbox: Inbox) -> None:
        super().__init__()
        self.inbox = inbox

    def on_receive(self, message: Any) -> Any:
        self.inbox.put(message)


def max_concurrent(events: list[Event], account_id: int, since: float = -1.0) -> int:
    """The most connections open at once on ``account_id`` from the events at or after ``since``."""
    open_now = 0
    most = 0
    for event in sorted(events, key=lambda e: (e.at, e.what == "start")):
        if event.account_id != account_id or event.at < since:
            continue
        open_now += 1 if event.what == "start" else -1
        most = max(most, open_now)
    return most
