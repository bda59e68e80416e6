from __future__ import annotations

import pytest

from domain.models import Account, Profile, Stream
from domain.urls import check_pattern, redact_text, redact_url, rewrite_url, stream_url_for


def test_default_profile_keeps_url():
    assert rewrite_url("http://p/live/u/p/1.ts", "^(.*)$", "$1") == "http://p/live/u/p/1.ts"


def test_second_login_swaps_credentials():
    url = rewrite_url("http://p/live/u/p/1.ts", "/live/u/p/", "/live/u2/p2/")
    assert url == "http://p/live/u2/p2/1.ts"


def test_backslash_and_named_groups_work():
    assert rewrite_url("http://p/a/1.ts", r"/a/(\d)", r"/b/\1") == "http://p/b/1.ts"
    assert rewrite_url("http://p/a/1.ts", r"/a/(?<n>\d)", "/c/$<n>") == "http://p/c/1.ts"


def test_broken_or_unmatched_pattern_keeps_url():
    assert rewrite_url("http://p/x", "(", "$1") == "http://p/x"
    assert rewrite_url("http://p/x", "nomatch", "y") == "http://p/x"
    assert check_pattern("(") is not None
    assert check_pattern("^(.*)$") is None


def test_xtream_codes_url_is_built_from_stream_id():
    account = Account(
        id=1,
        name="xc",
        account_type="XC",
        server_url="http://prov:8080",
        username="u1",
        password="p1",
    )
    profile = Profile(id=2, search_pattern="/u1/p1/", replace_pattern="/u2/p2/")
    stream = Stream(
        id=5, name="s", account_id=1, url="http://prov:8080/live/u1/p1/99.m3u8", stream_id=99
    )
    assert stream_url_for(account, profile, stream) == "http://prov:8080/live/u2/p2/99.ts"


# A provider URL is shown as its host (and port) and the stream's last path
# segment: never userinfo, other path parts, the query or the fragment.
REDACTED = [
    ("http://prov.example/USER/PASS/1234", "http://prov.example/…/1234"),  # Xtream short
    ("http://prov.example:8080/USER/PASS/1234.ts", "http://prov.example:8080/…/1234.ts"),
    ("http://prov.example:8080/live/USER/PASS/1234.ts", "http://prov.example:8080/…/1234.ts"),
    ("http://prov.example/movie/USER/PASS/77.mkv", "http://prov.example/…/77.mkv"),
    ("http://prov.example/get.php?username=USER&password=PASS", "http://prov.example/get.php"),
    ("http://prov.example/play/1234.ts?passwd=PASS", "http://prov.example/…/1234.ts"),
    ("https://cdn.example/hls/index.m3u8?access_token=PASS", "https://cdn.example/…/index.m3u8"),
    ("https://cdn.example/s/1.m3u8?auth_token=PASS&x=1#frag", "https://cdn.example/…/1.m3u8"),
    ("http://USER:PASS@prov.example:8080/1234.ts", "http://prov.example:8080/1234.ts"),
    ("http://USER@prov.example/1234.ts", "http://prov.example/1234.ts"),
    ("rtmp://USER:PASS@live.example/app/PASS/stream", "rtmp://live.example/…/stream"),
    ("http://[::1]:8080/USER/PASS/9.ts", "http://[::1]:8080/…/9.ts"),
    ("udp://@239.0.0.1:1234", "udp://239.0.0.1:1234"),
    ("http://dispatcharr:9191", "http://dispatcharr:9191"),
    ("http://dispatcharr:9191/", "http://dispatcharr:9191/"),
    ("http://prov.example/USER/PASS/", "http://prov.example/…/"),
]


@pytest.mark.parametrize(("url", "shown"), REDACTED)
def test_a_provider_url_shows_its_host_and_last_segment_only(url, shown):
    redacted = redact_url(url)

    assert redacted == shown
    assert "PASS" not in redacted
    assert "USER" not in redacted


@pytest.mark.parametrize(
    "url", ["USER:PASS", "http://USER:PASS@", "http://h:PASS@/x", "http://[::1/USER/PASS/1", ""]
)
def test_what_is_not_a_usable_url_is_not_shown(url):
    redacted = redact_url(url)

    assert "PASS" not in redacted
    assert "USER" not in redacted


def test_redact_text_redacts_every_url_in_free_text():
    text = (
        "[http @ 0x55] HTTP error 403 Forbidden\n"
        "http://prov.example/USER/PASS/12.ts: Server returned 403 Forbidden\n"
        "Opening 'https://cdn.example/a/b.m3u8?auth_token=PASS' for reading, "
        "then (rtsp://USER:PASS@cam.example/live)."
    )

    redacted = redact_text(text)

    assert "PASS" not in redacted
    assert "USER" not in redacted
    assert "http://prov.example/…/12.ts: Server returned 403" in redacted
    assert "'https://cdn.example/…/b.m3u8'" in redacted
    assert "(rtsp://cam.example/live)." in redacted
    assert redacted.startswith("[http @ 0x55] HTTP error 403 Forbidden\n")
