"""HLS master playlists: which of its variants a player would play.

A provider's ``.m3u8`` URL may answer a master playlist that lists the same
channel at several qualities, often the smallest first. ffmpeg opens each
variant as its own program (numbered in the playlist's order) and, asked for
every video and audio stream, reads them all: the check then reports the first
variant's picture, the bitrate of all of them together, and takes a
connection per variant. Players (and Dispatcharr's ffmpeg and streamlink
profiles) play the best one, so the check reads that variant only:
:func:`read_playlist` fetches the playlist (as ffmpeg would: same URL and user
agent, redirects followed) and :func:`choose` the variant, to be opened by its
own playlist (one connection at a time), or, when its audio is a rendition of
its own, through the master with only its program mapped.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from adapters.manifest_fetch import Manifest, fetch_manifest

Playlist = Manifest
"""A playlist as read, and where from (after redirects: its URIs are relative to it)."""
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')
_RESOLUTION = re.compile(r"^(\d+)x(\d+)$")
_VARIANT_TAG = "#EXT-X-STREAM-INF:"
_HEADER = b"#EXTM3U"


@dataclass(frozen=True)
class Variant:
    """One ``#EXT-X-STREAM-INF`` entry of a master playlist."""

    uri: str
    bandwidth: int | None = None
    """Bits per second, as the playlist states it."""
    pixels: int | None = None
    """Width times height, from ``RESOLUTION``."""
    audio: str | None = None
    """The ``AUDIO`` group its sound comes from (a rendition of its own), if any."""


@dataclass(frozen=True)
class Choice:
    """The variant to check."""

    index: int
    """Its place in the master playlist: ffmpeg's program number for it."""
    url: str | None
    """Its own playlist, when that is the whole of it (its audio muxed in); else
    ``None``: it is read through the master, its program only."""


def looks_like_hls(url: str) -> bool:
    """Whether ``url`` names a playlist (``.m3u8`` or ``.m3u``), so it is worth
    reading before the check: any other URL goes to ffmpeg as it is."""
    path = urlsplit(url).path.lower()
    return path.endswith((".m3u8", ".m3u"))


def variants(text: str) -> list[Variant]:
    """The variants of a master playlist in its order (empty for a media playlist).

    As ffmpeg reads it: each ``#EXT-X-STREAM-INF`` tag belongs to the next line
    that is neither blank nor a tag or comment.
    """
    found: list[Variant] = []
    pending: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(_VARIANT_TAG):
            pending = {k: v.strip('"') for k, v in _ATTRIBUTE.findall(line[len(_VARIANT_TAG) :])}
        elif line and not line.startswith("#") and pending is not None:
            bandwidth, audio = _number(pending.get("BANDWIDTH")), pending.get("AUDIO") or None
            found.append(Variant(line, bandwidth, _pixels(pending), audio))
            pending = None
    return found


def choose(playlist: Playlist, skip: Collection[int] = ()) -> Choice | None:
    """The variant to check of a master playlist, the one a player would pick:
    the most pixels, then the highest bandwidth, then the first listed; ``None``
    unless it has two or more. ``skip``: variants (by index) that played nothing,
    as a player passes over them to the next best; ``None`` once none is left."""
    found = variants(playlist.text)
    index = _best(found, skip)
    if index is None:
        return None
    variant = found[index]
    alone = None if variant.audio else urljoin(playlist.url, variant.uri)
    if alone is not None and urlsplit(alone).scheme not in ("http", "https"):
        # ffmpeg must not be handed a file: (or any other) URL a provider wrote:
        # through the master, its HLS reader keeps to the master's protocols.
        alone = None
    return Choice(index, alone)


def read_playlist(url: str, user_agent: str | None, timeout_s: float) -> Playlist | None:
    """The playlist at ``url``, or ``None`` when it is not one or cannot be read
    within ``timeout_s`` in all (see :func:`adapters.manifest_fetch.fetch_manifest`)."""
    return fetch_manifest(url, user_agent, timeout_s, _HEADER)


def _best(found: list[Variant], skip: Collection[int] = ()) -> int | None:
    left = [i for i in range(len(found)) if i not in skip]
    if len(found) < 2 or not left:
        return None
    return max(left, key=lambda i: (found[i].pixels or 0, found[i].bandwidth or 0, -i))


def _number(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _pixels(attributes: dict[str, str]) -> int | None:
    match = _RESOLUTION.match(attributes.get("RESOLUTION", ""))
    return int(match.group(1)) * int(match.group(2)) if match else None
