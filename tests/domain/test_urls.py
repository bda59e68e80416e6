from __future__ import annotations

from domain.models import Account, Profile, Stream
from domain.urls import check_pattern, redact_url, rewrite_url, stream_url_for


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


def test_redaction_hides_every_credential():
    redacted = redact_url("http://a:b@p:80/live/u/p/1.ts?username=x&password=y&z=1")
    for secret in ("a:b", "/u/p/", "=x", "=y"):
        assert secret not in redacted
    assert "z=1" in redacted
