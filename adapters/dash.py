"""DASH manifests: which of its representations a player would play.

An ``.mpd`` URL answers a manifest that lists the same channel at several
qualities (each a *representation*), and often the sound in more than one.
Given the manifest whole, ffmpeg reads every representation: the check then
reports the first video's picture, the bitrate of all of them together, and
keeps a connection per representation. A player plays one video and one
sound, so the check maps only those: the video with the most pixels (then the
highest bandwidth, then the first listed) and, of the first set of sound, the
highest bandwidth. ffmpeg still opens the first segment of every
representation to learn its streams, then reads only the mapped ones.

ffmpeg numbers a manifest's streams by kind in the manifest's order, so the
choice is an index among its videos (``-map 0:v:N``) and among its sounds
(``-map 0:a:N``); the manifest is read here as ffmpeg reads it: one period
(the longest, the last of equals), each representation's kind from its own
``contentType`` or ``mimeType``, else its adaptation set's
``ContentComponent``'s, else the set's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit
from xml.etree import ElementTree

from adapters.manifest_fetch import Manifest, fetch_manifest

Kind = Literal["video", "audio"]

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d*)?)S)?)?$"
)
_DOCUMENT_TYPE = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


@dataclass(frozen=True)
class Representation:
    """One representation of the period ffmpeg reads."""

    kind: Kind
    group: int
    """Its adaptation set's place in the period."""
    bandwidth: int = 0
    pixels: int = 0


@dataclass(frozen=True)
class Selection:
    """What to map: an index among the manifest's videos and among its sounds;
    ``None`` maps every one of that kind (there is at most one)."""

    video: int | None
    audio: int | None


def looks_like_dash(url: str) -> bool:
    """Whether ``url`` names a DASH manifest (``.mpd``), so it is worth reading first."""
    return urlsplit(url).path.lower().endswith(".mpd")


def read_manifest(url: str, user_agent: str | None, timeout_s: float) -> Manifest | None:
    """The manifest at ``url``, or ``None`` when it is not one or cannot be read
    within ``timeout_s`` in all (see :func:`adapters.manifest_fetch.fetch_manifest`)."""
    return fetch_manifest(url, user_agent, timeout_s, b"<")


def choose(text: str) -> Selection | None:
    """The representations to map of a manifest; ``None`` when it has at most one
    video and one sound, or is not a manifest ffmpeg would read (the check then
    reads it whole, as before)."""
    found = representations(text)
    if found is None:
        return None
    videos = [r for r in found if r.kind == "video"]
    sounds = [r for r in found if r.kind == "audio"]
    if len(videos) < 2 and len(sounds) < 2:
        return None
    video = None
    if len(videos) > 1:
        video = max(range(len(videos)), key=lambda i: (videos[i].pixels, videos[i].bandwidth, -i))
    audio = None
    if len(sounds) > 1:
        first_set = sounds[0].group
        audio = max(
            (i for i, r in enumerate(sounds) if r.group == first_set),
            key=lambda i: (sounds[i].bandwidth, -i),
        )
    return Selection(video, audio)


def representations(text: str) -> list[Representation] | None:
    """The video and sound representations of the period ffmpeg reads, in order;
    ``None`` unless ``text`` is a manifest (an ``MPD`` with a period; a document
    type, which a manifest never needs, is refused rather than expanded)."""
    if _DOCUMENT_TYPE.search(text):
        return None
    try:
        root = ElementTree.fromstring(text)  # noqa: S314 - no document type, see above
    except ElementTree.ParseError:
        return None
    if _name(root) != "mpd":
        return None
    chosen, longest = None, 0
    for node in root:
        if _name(node) == "period":
            length = _seconds(node.get("duration"))
            if length >= longest:
                chosen, longest = node, length
    if chosen is None:
        return None
    found: list[Representation] = []
    for group, node in enumerate(n for n in chosen if _name(n) == "adaptationset"):
        component = next((n for n in node if _name(n) == "contentcomponent"), None)
        for rep in (n for n in node if _name(n) == "representation"):
            kind = _kind(rep) or _kind(component) or _kind(node)
            if kind is not None:
                # Width and height, like the kind, may be said once for the whole set.
                width = _number(rep.get("width") or node.get("width"))
                height = _number(rep.get("height") or node.get("height"))
                bandwidth = _number(rep.get("bandwidth"))
                found.append(Representation(kind, group, bandwidth, width * height))
    return found


def _name(node: ElementTree.Element) -> str:
    """An element's name without its namespace, in lower case (ffmpeg ignores both)."""
    return node.tag.rpartition("}")[2].lower()


def _kind(node: ElementTree.Element | None) -> Kind | None:
    if node is None:
        return None
    for attribute in ("contentType", "mimeType"):
        value = (node.get(attribute) or "").lower()
        if "video" in value:
            return "video"
        if "audio" in value:
            return "audio"
    return None


def _seconds(value: str | None) -> int:
    """Whole seconds of an ISO 8601 duration (``PT1H2M3.5S``), as ffmpeg counts a
    period's length; 0 when absent or not one."""
    match = _DURATION.match((value or "").strip())
    if match is None:
        return 0
    parts = match.groupdict(default="0")
    days, hours, minutes = int(parts["days"]), int(parts["hours"]), int(parts["minutes"])
    return int(((days * 24 + hours) * 60 + minutes) * 60 + float(parts["seconds"]))


def _number(value: str | None) -> int:
    return int(value) if value is not None and value.isdigit() else 0
