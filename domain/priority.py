"""Which checks go first, and which stable streams may skip a cycle: plain functions.

Priority (the seed's enhancement 3): channels marked in the config first, then
streams never checked, then streams whose last check failed, then the rest;
within each rank the one checked longest ago first. A job stands for all the
streams sharing its URL, so it takes the best rank among them.

Adaptive scheduling (enhancement 5): with ``check.stable_every = N`` (N > 1) a
stream whose last :data:`STABLE_AFTER` checks were all ``ok`` with the same
figures is checked every N-th cycle only; a failed or changed stream is checked
every cycle again, and so is every stream of a marked channel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

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


def priority(marked: bool, last: LastCheck | None) -> tuple[int, str]:
    """The sort key of one stream: smaller goes first.

    A ``cancelled`` last check said nothing about the stream, so it ranks by
    the check before in spirit; with only the latest one known it counts as
    never checked.
    """
    if marked:
        rank = Rank.MARKED
    elif last is None or last.status == "cancelled":
        rank = Rank.NEVER_CHECKED
    elif last.status in _FAILED:
        rank = Rank.FAILED
    else:
        rank = Rank.REST
    # Never checked sorts before any time ("" < "2026-...").
    checked_at = "" if last is None or last.finished_at is None else last.finished_at
    return int(rank), checked_at


def job_priority(keys: Iterable[tuple[int, str]]) -> tuple[int, str]:
    """A job's key from its streams' keys: the most urgent of them."""
    return min(keys, default=(int(Rank.NEVER_CHECKED), ""))


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
