"""The account actor through a real coordinator: stagger, viewers and the lease protocol."""

from __future__ import annotations

import threading
import time

import pykka

from actors.account import ViewerFeed
from actors.messages import RunNow
from actors.slots import ViewerPolicy
from actors.viewers import ViewerWatcher
from domain.models import Account, Profile, ViewerSnapshot
from domain.ports import SourceError
from tests.actors.conftest import Harness
from tests.actors.fakes import Behaviour, FakeProbe, max_concurrent, simple_account, stream
from tests.logcapture import capture_logs


def test_later_cycles_run_as_many_checks_at_once_as_the_first(harness: Harness):
    """A grant inside the stagger window must not hide the slot that is still free.

    Two checks of 0.3 s on a 2-slot account with a 0.05 s stagger: the second
    check can overlap the first only if the account reports its second slot
    once the stagger delay passed; otherwise it waits for the first to end.
    """
    probe = FakeProbe(default=Behaviour(duration=0.3))
    harness.start([simple_account(1, 2, stagger=0.05)], probe)
    most = []
    for cycle in range(3):
        since = time.monotonic()
        finished = harness.run([stream(10 * cycle + 1, 1), stream(10 * cycle + 2, 1)])
        assert len(finished.results) == 2
        with probe.lock:
            most.append(max_concurrent(probe.events, 1, since))
    assert most == [2, 2, 2]


def test_a_profile_whose_rewrite_matches_nothing_is_not_used(harness: Harness):
    """The second login's pattern is valid but matches none of the URLs: using it would
    open the default login's URL while counting against the second login."""
    account = Account(
        id=1,
        name="acc1",
        max_streams=1,
        profiles=(
            Profile(id=100, max_streams=1, is_default=True),
            Profile(
                id=101,
                name="second",
                max_streams=1,
                search_pattern="/nomatch/",
                replace_pattern="/live/p101/",
            ),
        ),
    )
    probe = FakeProbe(default=Behaviour(gated=True))
    harness.start([account], probe)
    with capture_logs() as logs:
        done = harness.begin([stream(1, 1), stream(2, 1), stream(3, 1)])
        assert probe.wait_open(1)
        assert not probe.wait_open(2, timeout=0.3)  # 0.3 s: the second grant would be at once
        for sid in (1, 2, 3):
            probe.open_gate(sid)
        finished = done.get(timeout=10)
    assert [r.status for r in finished.results] == ["ok"] * 3
    assert {r.profile_id for r in finished.results} == {100}
    assert probe.max_open["base"] == 1  # the default login's URL, never twice at once
    unchanged = [e for e in logs if e["event"] == "profile_url_unchanged"]
    assert len(unchanged) == 1  # once per profile, not per stream
    assert unchanged[0]["profile_id"] == 101
    assert unchanged[0]["log_level"] == "warning"


# --- viewer counts unknown: fail closed --------------------------------------------


class SwitchedViewers:
    """A viewer source the test switches between a snapshot and a failure.

    The first read waits for :meth:`open` when ``gate_first`` (a slow first read).
    """

    def __init__(self, answer: ViewerSnapshot | Exception, *, gate_first: bool = False) -> None:
        self.answer = answer
        self._gate = threading.Event()
        if not gate_first:
            self._gate.set()
        self._reads = 0
        self._cond = threading.Condition()

    def open(self) -> None:
        self._gate.set()

    def read(self) -> ViewerSnapshot:
        self._gate.wait(10)
        with self._cond:
            answer = self.answer
            self._reads += 1
            self._cond.notify_all()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def wait_reads(self, count: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._reads >= count, timeout)


def start_with_viewers(
    harness: Harness, source: SwitchedViewers, account: Account, probe: FakeProbe
) -> pykka.ActorRef:
    watcher = ViewerWatcher.start(source, harness.timers, 3600.0)
    harness.start([account], probe, viewers=ViewerFeed(watcher))
    harness.accounts_ready()  # subscribed to the watcher before the test's next RunNow
    return watcher


def waiting_for(harness: Harness, account_id: int = 1) -> str | None:
    return harness.status()["accounts"][account_id]["waiting_for"]


def test_checks_wait_for_the_first_viewer_read(harness: Harness):
    """At start the first checks used to open before the first viewer read."""
    source = SwitchedViewers(ViewerSnapshot(), gate_first=True)
    probe = FakeProbe(default=Behaviour(gated=True))
    with capture_logs() as logs:  # the account says so as it starts, before any read
        start_with_viewers(harness, source, simple_account(1, 2), probe)
        done = harness.begin([stream(1, 1), stream(2, 1)])
        assert not probe.wait_open(1, timeout=0.3)  # 0.3 s: a grant would come in ms
        assert waiting_for(harness) == "viewer_count_unknown"
        source.open()  # the first read comes back: nobody watches
        assert probe.wait_open(2)
    assert waiting_for(harness) is None
    wait = next(e for e in logs if e["event"] == "checks_wait_for_viewer_count")
    assert wait["viewer_state"] == "never_read"
    assert wait["account_id"] == 1
    assert any(e["event"] == "checks_resume_viewer_count_known" for e in logs)
    for sid in (1, 2):
        probe.open_gate(sid)
    assert [r.status for r in done.get(timeout=10).results] == ["ok", "ok"]


def test_checks_wait_while_viewer_reads_fail_then_run(harness: Harness):
    source = SwitchedViewers(ViewerSnapshot())
    probe = FakeProbe(default=Behaviour(duration=0.0))
    watcher = start_with_viewers(harness, source, simple_account(1, 1), probe)
    assert source.wait_reads(1)
    source.answer = SourceError("viewers: HTTP 500")
    with capture_logs() as logs:
        watcher.ask(RunNow(), timeout=5)  # the read failed: the count is unknown now
        done = harness.begin([stream(1, 1)])
        # A single slot, last known free: it is kept for a viewer who may have started.
        assert not probe.wait_open(1, timeout=0.3)
        assert waiting_for(harness) == "viewer_count_unknown"
        source.answer = ViewerSnapshot()
        watcher.tell(RunNow())  # reads work again
        finished = done.get(timeout=10)
    assert [r.status for r in finished.results] == ["ok"]
    wait = next(e for e in logs if e["event"] == "checks_wait_for_viewer_count")
    assert wait["viewer_state"] == "read_failed"
    assert wait["log_level"] == "warning"


def test_a_viewer_starting_during_an_outage_finds_his_slot_free(harness: Harness):
    """Last known: nobody on a 2-slot account. While reads fail one check runs, not two,
    so a viewer who starts meanwhile gets the other slot; once he is seen, he keeps it."""
    source = SwitchedViewers(ViewerSnapshot())
    probe = FakeProbe(default=Behaviour(gated=True))
    watcher = start_with_viewers(harness, source, simple_account(1, 2), probe)
    assert source.wait_reads(1)
    source.answer = SourceError("viewers: timeout")
    watcher.ask(RunNow(), timeout=5)
    done = harness.begin([stream(sid, 1) for sid in (1, 2, 3)])
    assert probe.wait_open(1)
    assert not probe.wait_open(2, timeout=0.3)
    source.answer = ViewerSnapshot(accounts={1: 1})  # the viewer who started meanwhile
    watcher.ask(RunNow(), timeout=5)
    first = probe.running_ids().pop()
    probe.open_gate(first)
    assert probe.ended(first)
    assert probe.wait_open(1)  # the next check takes the freed slot, not the viewer's
    assert not probe.wait_open(2, timeout=0.3)
    source.answer = ViewerSnapshot()  # he stopped watching
    watcher.tell(RunNow())
    assert probe.wait_open(2)
    for sid in (1, 2, 3):
        probe.open_gate(sid)
    assert len(done.get(timeout=10).results) == 3
    assert probe.max_open["p100"] == 2


def test_last_known_policy_checks_before_the_first_read(harness: Harness):
    """The opt-in old behaviour (viewers.when_unknown = "last_known")."""
    source = SwitchedViewers(ViewerSnapshot(), gate_first=True)
    probe = FakeProbe(default=Behaviour(duration=0.0))
    watcher = ViewerWatcher.start(source, harness.timers, 3600.0)
    feed = ViewerFeed(watcher, ViewerPolicy(when_unknown="last_known"))
    harness.start([simple_account(1, 1)], probe, viewers=feed)
    finished = harness.run([stream(1, 1)])
    assert [r.status for r in finished.results] == ["ok"]
    source.open()
