"""Reading a stream's manifest (an HLS playlist, a DASH MPD) before its check.

A manifest is a few kilobytes of text that says which variants a stream has;
the probe reads it first to pick the one a player would play (see
:mod:`adapters.hls` and :mod:`adapters.dash`). It is read as ffmpeg would read
it (same URL and user agent, redirects followed) and only while it looks like
one: a stream served under a manifest's name is let go after its first bytes.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import requests
from urllib3.exceptions import InsecureRequestWarning

MAX_MANIFEST_BYTES = 512 * 1024
"""A manifest is text of a few kilobytes; anything longer is not one."""
_LEADING = b"\xef\xbb\xbf \r\n\t"
"""A byte order mark and blanks may come before the first character."""

# The manifest is read without verifying the provider's certificate (see
# fetch_manifest); nothing else in the daemon makes a request that does not verify.
warnings.filterwarnings("ignore", category=InsecureRequestWarning)


@dataclass(frozen=True)
class Manifest:
    """A manifest as read, and where from (after redirects: its URIs are relative to it)."""

    text: str
    url: str


def fetch_manifest(
    url: str, user_agent: str | None, timeout_s: float, starts_with: bytes
) -> Manifest | None:
    """The manifest at ``url`` if its text (after a byte order mark and blanks)
    begins with ``starts_with``; ``None`` when it does not, or cannot be read
    within ``timeout_s`` in all (the check then goes ahead as it would have, and
    ffmpeg's verdict says why).

    The provider's certificate is not verified, as ffmpeg does not (its
    ``tls_verify`` is off by default) and many panels have a self-signed or
    expired one: ffmpeg sends the same URL right after, so nothing more is exposed.
    """
    headers = {"User-Agent": user_agent} if user_agent else {}
    deadline = time.monotonic() + timeout_s
    try:
        with requests.get(
            url,
            headers=headers,
            timeout=timeout_s,
            stream=True,
            verify=False,  # noqa: S501 - as ffmpeg reads it, see above
        ) as answer:
            if answer.status_code != requests.codes.ok:
                return None
            final_url = answer.url
            body = b""
            for chunk in answer.iter_content(chunk_size=16 * 1024):
                body += chunk
                start = body.lstrip(_LEADING)[: len(starts_with)]
                if not starts_with.startswith(start) or len(body) > MAX_MANIFEST_BYTES:
                    return None
                if time.monotonic() > deadline:  # each piece in time, the whole not
                    return None
    except (requests.RequestException, OSError):
        return None
    text = body.decode("utf-8", errors="replace").lstrip("\ufeff \r\n\t")
    return Manifest(text, final_url) if text.startswith(starts_with.decode()) else None
