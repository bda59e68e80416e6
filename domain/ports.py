"""The seams between the actors and the outside world.

Actors call these; adapters implement them. Every method may block (file or
HTTP I/O), so only actors whose job is I/O call them (the scheduler, the
viewer watcher, the result sink), never the coordinator or an account actor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from domain.models import CheckResult, Inventory, ViewerSnapshot


class SourceError(Exception):
    """The source could not be read (down, bad answer, bad file); one line naming what."""


ChannelOrder = tuple[list[int], list[int]]
"""A channel's stream ids as the writer read them, and as the source has them after."""


class Reordered(dict[str, int]):
    """What a reorder did: the channels counted by outcome (it is that dict), in
    ``channels`` each touched channel's own outcome (``changed``, ``unchanged``,
    ``skipped``, ``failed``, or ``planned`` in a dry run), and in ``orders`` the
    order read and the order left, where the writer read the channel.

    A writer that writes nothing back returns an empty one (or only counts).
    """

    def __init__(
        self,
        counts: Mapping[str, int] | None = None,
        channels: Mapping[int, str] | None = None,
        orders: Mapping[int, ChannelOrder] | None = None,
    ) -> None:
        super().__init__(counts or {})
        self.channels: dict[int, str] = dict(channels or {})
        self.orders: dict[int, ChannelOrder] = dict(orders or {})


class InventorySource(Protocol):
    """Where accounts, streams and channels come from (a file or Dispatcharr)."""

    def load(self) -> Inventory:
        """Read the inventory afresh (limits included). Raises :class:`SourceError`."""
        ...


class ViewerSource(Protocol):
    """Who is watching now, per profile and account."""

    def read(self) -> ViewerSnapshot:
        """Read the viewer snapshot. Raises :class:`SourceError` when it can't."""
        ...


class ResultWriter(Protocol):
    """Writes results back to where the streams live (Dispatcharr), or nowhere."""

    def write_result(self, result: CheckResult) -> None:
        """Store one stream's stats, or queue them to be stored.

        A writer that writes at once raises :class:`SourceError` on failure; one
        that queues logs its failures itself, and :meth:`flush` waits for it.
        """
        ...

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued write is done; ``False`` when ``timeout`` ran out."""
        ...

    def reorder(self, inventory: Inventory, results: tuple[CheckResult, ...]) -> dict[str, int]:
        """Order each channel's streams best first; returns counts (changed, skipped, ...)."""
        ...
