from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pykka
import pytest

from actors.account import AccountActor, ViewerFeed
from actors.coordinator import Coordinator, CoordinatorSettings
from actors.jobs import jobs_for
from actors.messages import CheckCycle, CycleFinished, GetUsage, SetAccounts, ViewersSeen
from actors.timers import Timers
from domain.models import Account, Stream, ViewerSnapshot
from tests.actors.fakes import FakeProbe


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def timers() -> Iterator[Timers]:
    service = Timers()
    yield service
    service.stop()


class Harness:
    """A coordinator with its accounts, driven by messages from the test."""

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self.coordinator: pykka.ActorRef[Any] | None = None
        self._cycle_ids = iter(range(1, 1000))

    def start(
        self,
        accounts: list[Account],
        probe: FakeProbe,
        settings: CoordinatorSettings | None = None,
        listeners: tuple[pykka.ActorRef[Any], ...] = (),
        viewers: ViewerFeed | None = None,
    ) -> pykka.ActorRef[Any]:
        self.coordinator = Coordinator.start(
            probe, settings or CoordinatorSettings(), listeners, None, self.timers, None, viewers
        )
        self.coordinator.tell(SetAccounts(tuple(accounts)))
        return self.coordinator

    def begin(self, streams: list[Stream]) -> pykka.ThreadingFuture[CycleFinished]:
        assert self.coordinator is not None
        done: pykka.ThreadingFuture[CycleFinished] = pykka.ThreadingFuture()
        self.coordinator.tell(CheckCycle(next(self._cycle_ids), jobs_for(streams), done))
        return done

    def run(self, streams: list[Stream], timeout: float = 15.0) -> CycleFinished:
        return self.begin(streams).get(timeout=timeout)

    def viewers(
        self, profiles: dict[int, int] | None = None, accounts: dict[int, int] | None = None
    ) -> None:
        """Tell every account actor these viewers, as a watcher would; back once taken."""
        self.status()  # the account actors of the last SetAccounts exist
        snapshot = ViewerSnapshot(profiles or {}, accounts or {})
        for ref in pykka.ActorRegistry.get_by_class(AccountActor):
            ref.ask(ViewersSeen(snapshot), timeout=5)

    def accounts_ready(self) -> None:
        """Back once every account actor of the last ``SetAccounts`` runs (and so subscribed)."""
        self.status()
        for ref in pykka.ActorRegistry.get_by_class(AccountActor):
            ref.ask(GetUsage(), timeout=5)

    def tell(self, message: object) -> None:
        assert self.coordinator is not None
        self.coordinator.tell(message)

    def status(self) -> dict[str, Any]:
        assert self.coordinator is not None
        from actors.messages import GetStatus

        return cast(dict[str, Any], self.coordinator.ask(GetStatus(), timeout=5))


def usage(ref: pykka.ActorRef[Any]) -> dict[int, tuple[int, int, int]]:
    """An account actor's (viewers, leases, limit) per profile id."""
    from actors.messages import GetUsage

    return cast(dict[int, tuple[int, int, int]], ref.ask(GetUsage(), timeout=5))


def status_of(ref: pykka.ActorRef[Any]) -> dict[str, Any]:
    """An actor's answer to ``GetStatus``."""
    from actors.messages import GetStatus

    return cast(dict[str, Any], ref.ask(GetStatus(), timeout=5))


@pytest.fixture
def harness(timers: Timers) -> Harness:
    return Harness(timers)
