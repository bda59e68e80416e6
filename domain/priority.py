"""Which checks go first, and which stable streams may skip a cycle: plain functions.

Priority (the seed's enhancement 3): channels marked in the config first, then
streams never checked, then streams whose last check failed, then the rest;
within each rank the one checked the most cycles ago first. A job stands for all the
streams sharing its URL, so it takes the best rank among them.

Adaptive scheduling (enhancement 5): with ``check.stable_every = N`` (N > 1) a
stream whose last :data:`STABLE_AFTER` checks were all ``ok`` with the same
figures is checked every N-th cycle only; a failed or changed stream is checked
every cycle again, and so is every stream of a marked channel.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from domain.models import CheckResult, Inventory

STABLE_AFTER = 3
"""Consecutive identical ``ok`` checks after which a stream counts as stable."""


class Rank(IntEnum):
    """Priority classes, most urgent first."""

    MARKED = 0
    NEVER_CHECKED = 1
    FAILED = 2
    REST = 3


@dataclass(frozen=True)
class LastCheck:
    """What the results store says of a stream's latest check."""

    status: str
    """``ok``, ``dead``, ``error`` or ``cancelled``."""
    finished_at: str | None
    """ISO 8601 UTC; these sort in time order as strings."""


_FAILED = frozenset({"dead", "error"})
_MARKED, _NEVER_CHECKED, _FAILED_RANK, _REST = (int(rank) for rank in Rank)
_NEVER = 1_000_000
"""The age, in cycles, of a check that never happened."""


def priority(marked: bool, last: LastCheck | None, age: int = 1) -> tuple[int, int]:
    """The sort key of one stream: smaller goes first.

    Args:
        marked: the stream belongs to a channel of ``check.priority_channels``.
        last: its latest check; a ``cancelled`` one said nothing about the
            stream, and counts as never checked.
        age: cycles since that check (1 = the previous cycle). "Oldest checked
            first" is by cycle: streams checked in the same cycle rank the same,
            so the queue keeps its order by expected length among them (what keeps a
            cycle short) and only a stream left out of cycles (a cut-short cycle,
            ``stable_every``) moves up.
    """
    # Plain ints, not the Rank members: it runs once per job at each cycle's start.
    if marked:
        rank = _MARKED
    elif last is None or last.status == "cancelled":
        rank = _NEVER_CHECKED
    elif last.status in _FAILED:
        rank = _FAILED_RANK
    else:
        rank = _REST
    # Never checked counts as checked longest ago.
    return rank, -(_NEVER if last is None else age)


def job_priority(keys: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """A job's key from its streams' keys: the most urgent of them."""
    return min(keys, default=(int(Rank.NEVER_CHECKED), -_NEVER))


@dataclass(frozen=True)
class Seen:
    """One past check of a stream, newest first in a history."""

    status: str
    figures: tuple[object, ...] = ()
    """What "changed" compares: resolution, codecs, fps (not the bitrate, which moves)."""
    cycles_ago: int = 0
    """Cycles between that check and the cycle being planned (1 = the previous one)."""


def is_stable(history: Sequence[Seen]) -> bool:
    """True if the newest :data:`STABLE_AFTER` checks were ``ok`` with equal figures."""
    recent = list(history[:STABLE_AFTER])
    if len(recent) < STABLE_AFTER:
        return False
    first = recent[0]
    return all(seen.status == "ok" and seen.figures == first.figures for seen in recent)


def due(stable_every: int, history: Sequence[Seen], *, marked: bool = False) -> bool:
    """Whether a stream is checked in the cycle being planned.

    Args:
        stable_every: ``check.stable_every``; 1 (or less) checks every stream every cycle.
        history: the stream's past checks, newest first.
        marked: the stream belongs to a channel marked in the config.
    """
    if stable_every <= 1 or marked or not is_stable(history):
        return True
    return history[0].cycles_ago >= stable_every


def figures_of(result: CheckResult) -> tuple[object, ...]:
    """What "changed" compares between two checks of a stream (not the bitrate, which moves)."""
    return (result.resolution, result.video_codec, result.audio_codec, result.fps)


@dataclass
class _Past:
    status: str
    figures: tuple[object, ...]
    cycle: int
    """The :class:`CheckMemory` cycle number it was seen in."""


class CheckMemory:
    """What the daemon remembers of each stream's recent checks, for priority and stable_every.

    The coordinator owns it: it numbers cycles (:meth:`next_cycle`) and records
    every final result (:meth:`record`). At start it is filled from the results
    store (:meth:`restore`), so the order and the stable streams survive a
    restart.
    """

    def __init__(self) -> None:
        self._cycle = 0
        self._past: dict[int, list[_Past]] = {}
        self._last: dict[int, tuple[LastCheck, int]] = {}
        """Per stream: its latest informative check, and the cycle it was in."""

    def restore(self, history: Mapping[int, Sequence[tuple[CheckResult, int]]]) -> None:
        """Per stream id, its recent results newest first, each with how many cycles ago it was.

        ``cycles_ago`` 1 is the cycle before the next one.
        """
        for stream_id, items in history.items():
            past = [
                _Past(r.status, figures_of(r), self._cycle + 1 - max(1, ago))
                for r, ago in list(items)[:STABLE_AFTER]
            ]
            if past:
                self._past[stream_id] = past
            for result, ago in items:
                if result.status != "cancelled":
                    last = LastCheck(result.status, result.finished_at)
                    self._last[stream_id] = (last, self._cycle + 1 - max(1, ago))
                    break

    def next_cycle(self) -> None:
        """A cycle is being planned: checks recorded from now on belong to it."""
        self._cycle += 1

    def record(self, result: CheckResult) -> None:
        """A final result of the cycle being run; ``cancelled`` says nothing and is skipped."""
        if result.status == "cancelled":
            return
        past = self._past.setdefault(result.stream_id, [])
        past.insert(0, _Past(result.status, figures_of(result), self._cycle))
        del past[STABLE_AFTER:]
        last = LastCheck(result.status, result.finished_at)
        self._last[result.stream_id] = (last, self._cycle)

    def history(self, stream_id: int) -> list[Seen]:
        """The stream's recent checks as :func:`due` reads them, newest first."""
        return [
            Seen(p.status, p.figures, self._cycle - p.cycle) for p in self._past.get(stream_id, [])
        ]

    def priority(self, stream_ids: Sequence[int], *, marked: bool) -> tuple[int, int]:
        """A job's sort key from its streams (see :func:`priority`)."""
        if len(stream_ids) == 1:  # nearly every job: one stream (it runs per job, per cycle)
            return self._key(stream_ids[0], marked)
        return job_priority(self._key(sid, marked) for sid in stream_ids)

    def _key(self, stream_id: int, marked: bool) -> tuple[int, int]:
        known = self._last.get(stream_id)
        if known is None:
            return priority(marked, None)
        last, cycle = known
        return priority(marked, last, self._cycle - cycle)

    def due(self, stream_ids: Iterable[int], stable_every: int, *, marked: bool) -> bool:
        """Whether a job is checked in the cycle being planned: if any of its streams is."""
        if stable_every <= 1 or marked:  # due whatever the history: don't build it
            return True
        return any(due(stable_every, self.history(sid), marked=marked) for sid in stream_ids)


def marked_streams(inventory: Inventory, channels: Collection[int | str]) -> frozenset[int]:
    """The stream ids of the channels named in ``check.priority_channels`` (ids, names, UUIDs)."""
    if not channels:
        return frozenset()
    wanted = {str(key).strip().casefold() for key in channels}
    marked: set[int] = set()
    for channel in inventory.channels:
        keys = {str(channel.id), *channel.names()}
        if channel.uuid:
            keys.add(channel.uuid.casefold())
        if keys & wanted:
            marked.update(channel.stream_ids)
    return frozenset(marked)
