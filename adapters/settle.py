"""When a check has read enough: the bitrate estimate over whole keyframe intervals has settled.

ffmpeg copies the stream into its ``framecrc`` muxer, which writes one line per
packet (stream index, dts, pts, duration, size, checksum, then flags and side
data that differ between ffmpeg versions; only the first five fields and the
``F=`` flags are read here, and they are the same from ffmpeg 4.4 on). From
those lines :class:`BitrateSettler` keeps a running estimate of the payload
bitrate (video and audio) from the first keyframe to each later keyframe, and
calls it settled once

- at least ``min_intervals`` whole keyframe intervals were read, and
- every estimate of the last ``window_s`` seconds of media (and always the
  previous one) lies within ``tolerance`` of the newest.

A stream whose bitrate moves (a variable-bitrate encode of changing content)
keeps its estimates apart and is read longer, up to ``check.duration``.

This module knows nothing of processes; it is fed lines and answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

_TIME_BASE = re.compile(r"^#tb (\d+): (\d+)/(\d+)\s*$")
_MEDIA_TYPE = re.compile(r"^#media_type (\d+): (\w+)\s*$")
_FLAGS = re.compile(r"\bF=0x([0-9A-Fa-f]+)\b")


@dataclass(frozen=True)
class SettleRule:
    """How sure the estimate must be before a check stops reading."""

    tolerance: float = 0.05
    """Relative spread allowed between the recent estimates."""
    window_s: float = 2.0
    """Seconds of media whose estimates must agree."""
    min_intervals: int = 2
    """Whole keyframe intervals read at least (the floor)."""


@dataclass(frozen=True)
class Packet:
    """One line of ``framecrc`` output."""

    stream: int
    dts: int
    size: int
    key: bool


def parse_packet(line: str) -> Packet | None:
    """A packet line, or ``None`` for headers and anything unreadable."""
    if not line or line[0] == "#":
        return None
    fields = line.split(",")
    if len(fields) < 6:
        return None
    try:
        stream, dts, size = int(fields[0]), int(fields[1]), int(fields[4])
    except ValueError:
        return None
    flags = _FLAGS.search(line)
    # framecrc prints flags only when they are not exactly "keyframe".
    key = flags is None or bool(int(flags.group(1), 16) & 1)
    return Packet(stream, dts, size, key)


@dataclass
class _Mark:
    media_s: float
    kbps: float


@dataclass
class BitrateSettler:
    """A running payload bitrate over whole keyframe intervals, and whether it settled."""

    rule: SettleRule = field(default_factory=SettleRule)
    _time_bases: dict[int, Fraction] = field(default_factory=dict)
    _video: int | None = None
    _first_key_s: float | None = None
    _bytes_since_first: int = 0
    _marks: list[_Mark] = field(default_factory=list)
    settled: bool = False
    """True from the keyframe at which the rule was first met."""

    def feed(self, line: str) -> None:
        """Take one line of ``framecrc`` output."""
        if line.startswith("#"):
            self._header(line)
            return
        packet = parse_packet(line)
        if packet is not None:
            self.add(packet)

    def _header(self, line: str) -> None:
        base = _TIME_BASE.match(line)
        if base:
            num, den = int(base.group(2)), int(base.group(3))
            if den:
                self._time_bases[int(base.group(1))] = Fraction(num, den)
            return
        kind = _MEDIA_TYPE.match(line)
        if kind and kind.group(2) == "video" and self._video is None:
            self._video = int(kind.group(1))

    def add(self, packet: Packet) -> None:
        """Take one packet (in the order ffmpeg wrote them)."""
        if packet.stream != self._video:
            if self._first_key_s is not None:
                self._bytes_since_first += packet.size
            return
        base = self._time_bases.get(packet.stream, Fraction(1, 90_000))
        at = float(packet.dts * base)
        if packet.key:
            if self._first_key_s is None:
                self._first_key_s = at
            elif at > self._first_key_s:
                span = at - self._first_key_s
                self._marks.append(_Mark(span, self._bytes_since_first * 8 / span / 1000))
                self._check()
        if self._first_key_s is not None:
            # Bytes up to (not including) a keyframe belong to the intervals before it.
            self._bytes_since_first += packet.size

    def _check(self) -> None:
        if self.settled or len(self._marks) < self.rule.min_intervals:
            return
        newest = self._marks[-1]
        start = newest.media_s - self.rule.window_s
        # From the last estimate at or before the window's start, so the window is covered.
        first = max((i for i, m in enumerate(self._marks[:-1]) if m.media_s <= start), default=None)
        if first is None:
            return
        low = newest.kbps * (1 - self.rule.tolerance)
        high = newest.kbps * (1 + self.rule.tolerance)
        self.settled = all(low <= m.kbps <= high for m in self._marks[first:-1])

    @property
    def kbps(self) -> float | None:
        """The estimate over the whole keyframe intervals read so far."""
        return round(self._marks[-1].kbps, 1) if self._marks else None

    @property
    def intervals(self) -> int:
        """Whole keyframe intervals read."""
        return len(self._marks)

    @property
    def media_s(self) -> float:
        """Media seconds from the first keyframe to the last one read."""
        return self._marks[-1].media_s if self._marks else 0.0
