"""Stream URL rewriting by a profile, and redaction of credentials for logs.

Redaction is by default, not by a list of known secret forms: a URL is shown
as its scheme, host and port and the last segment of its path, e.g.
``http://prov:8080/…/1234.ts``. Userinfo, every other path segment (Xtream's
``/USER/PASS/``), the query (``?password=``, ``?token=``...) and the
fragment are never shown, whatever they are called.

The rewrite follows Dispatcharr's ``transform_url``: the ``regex`` module (it
accepts JS-style ``(?<name>...)`` groups that ``re`` rejects), every match
replaced, ``$1`` and ``$<name>`` turned into ``\\1`` and ``\\g<name>``, and the
original URL kept when nothing matches or the pattern is broken.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

import regex

from domain.models import Account, Profile, Stream

_JS_NAMED = re.compile(r"\$<([^>]+)>")
_JS_NUMBERED = re.compile(r"\$(\d+)")
_REWRITE_TIMEOUT_S = 0.1
_IDENTITY = frozenset({("^(.*)$", "$1"), ("^(.*)$", "\\1"), ("(.*)", "$1")})
"""Patterns that leave a URL as it is (every default profile has the first)."""


def python_replacement(replace_pattern: str) -> str:
    """Turn a JS-style replacement (``$1``, ``$<name>``) into Python's form."""
    named = _JS_NAMED.sub(r"\\g<\1>", replace_pattern)
    return _JS_NUMBERED.sub(r"\\g<\1>", named)


def rewrite_url(url: str, search_pattern: str, replace_pattern: str) -> str:
    """Apply a profile's search/replace to ``url``; unchanged on no match or error."""
    if not search_pattern or (search_pattern, replace_pattern) in _IDENTITY:
        return url
    try:
        # concurrent=False keeps the GIL: a rewrite takes microseconds, and giving
        # the GIL up and waiting for it again among busy threads took milliseconds.
        new_url, count = regex.subn(
            search_pattern,
            python_replacement(replace_pattern),
            url,
            concurrent=False,
            timeout=_REWRITE_TIMEOUT_S,
        )
    except (regex.error, TimeoutError, IndexError):
        return url
    return new_url if count else url


def check_pattern(search_pattern: str) -> str | None:
    """Return why ``search_pattern`` is not a valid regex, or ``None`` if it is."""
    try:
        regex.compile(search_pattern)
    except regex.error as exc:
        return str(exc)
    return None


def stream_url_for(account: Account, profile: Profile, stream: Stream) -> str:
    """The URL Dispatcharr would play for ``stream`` through ``profile``.

    For Xtream Codes accounts with a provider stream id, Dispatcharr rewrites a
    synthetic ``{server}/live/{user}/{pass}/1234.ts`` URL to learn the profile's
    server and credentials, then plays ``{server}/live/{user}/{pass}/{id}.ts``.
    """
    if (
        account.account_type == "XC"
        and stream.stream_id is not None
        and account.server_url
        and account.username
    ):
        base = account.server_url.rstrip("/")
        synthetic = f"{base}/live/{account.username}/{account.password}/1234.ts"
        rewritten = rewrite_url(synthetic, profile.search_pattern, profile.replace_pattern)
        match = re.match(r"^(?P<server>.+)/live/(?P<user>[^/]+)/(?P<pw>[^/]+)/1234\.ts$", rewritten)
        if match:
            return f"{match['server']}/live/{match['user']}/{match['pw']}/{stream.stream_id}.ts"
    return rewrite_url(stream.url, profile.search_pattern, profile.replace_pattern)


def profile_url(account: Account, profile: Profile, stream: Stream) -> str | None:
    """The URL to open for ``stream`` through ``profile``; ``None`` if the profile can't serve it.

    A non-default profile is another login: its rewrite must change the URL.
    One that leaves it as the stream's own URL or the default login's (a valid
    pattern that matches nothing, say) would open the default login's
    connection while counting against the other login's limit, so it is not
    used for that stream.
    """
    url = stream_url_for(account, profile, stream)
    main = next((p for p in account.profiles if p.is_default), None)
    if main is None:  # no default flagged: the first usable profile is the main login
        main = account.usable_profiles()[0]
    if profile.id == main.id:
        return url
    if url in (stream.url, stream_url_for(account, main, stream)):
        return None
    return url


UNUSABLE_URL: Final = "<redacted url>"
"""What a string that looks like a URL but cannot be taken apart is shown as."""
_ELLIPSIS = "…"
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[^\s:/@\[\]]+)(?::\d{1,5})?")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_TRAILING = ".,;:!?)'\""
"""Punctuation that ends a sentence, not a URL, when it follows one in text."""


def redact_url(url: str) -> str:
    """``url`` as it may be shown: scheme, host, port and the last path segment.

    ``http://USER:PASS@prov:8080/live/USER/PASS/1234.ts?token=T`` is shown as
    ``http://prov:8080/…/1234.ts``; a path of one segment is shown whole, a
    trailing slash leaves no segment to show. A string without a scheme and
    host (a local file) is shown as its last segment; one that cannot be
    taken apart as :data:`UNUSABLE_URL`.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return UNUSABLE_URL
    if not parts.scheme or not parts.netloc:
        if "://" in url or ":" in url.split("/", 1)[0] or "@" in url:
            return UNUSABLE_URL if url else ""
        return _short_path(url)
    host = parts.netloc.rpartition("@")[2]
    if not _HOST_PORT.fullmatch(host):
        return UNUSABLE_URL
    return f"{parts.scheme}://{host}{_short_path(parts.path)}"


def _short_path(path: str) -> str:
    """``/a/b/c.ts`` as ``/…/c.ts``; ``/c.ts`` and ``""`` as they are."""
    if not path:
        return ""
    segments = path.split("/")
    if path.startswith("/"):
        segments = segments[1:]
        lead = "/"
    else:
        lead = ""
    if len(segments) == 1:
        return lead + segments[0]
    return f"{lead}{_ELLIPSIS}/{segments[-1]}"


def redact_text(text: str) -> str:
    """``text`` with every URL in it shown by :func:`redact_url` (e.g. an ffmpeg message)."""
    return _URL_IN_TEXT.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    found = match.group(0)
    url = found.rstrip(_TRAILING)
    return redact_url(url) + found[len(url) :]
