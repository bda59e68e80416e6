"""Stream URL rewriting by a profile, and redaction of credentials for logs.

The rewrite follows Dispatcharr's ``transform_url``: the ``regex`` module (it
accepts JS-style ``(?<name>...)`` groups that ``re`` rejects), every match
replaced, ``$1`` and ``$<name>`` turned into ``\\1`` and ``\\g<name>``, and the
original URL kept when nothing matches or the pattern is broken.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

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


_XC_PATH = re.compile(r"/(live|movie|series|timeshift)/([^/]+)/([^/]+)/")
_SECRET_QUERY = re.compile(
    r"(?i)((?:^|&)(?:username|user|password|pass|pwd|token|key|auth|api_key)=)[^&]*"
)


def redact_url(url: str) -> str:
    """Hide credentials in a provider URL: userinfo, Xtream path parts, secret query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***:***@" + netloc.rsplit("@", 1)[1]
    path = _XC_PATH.sub(lambda m: f"/{m.group(1)}/***/***/", parts.path)
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))
