"""Which URL a profile opens for a stream, and when it can't serve the stream at all."""

from __future__ import annotations

from domain.models import Account, Profile, Stream
from domain.urls import profile_url

URL = "http://provider.example/live/user1/pass1/1234.ts"
STREAM = Stream(id=1, name="one", account_id=1, url=URL)
DEFAULT = Profile(id=11, max_streams=1, is_default=True)
SECOND = Profile(
    id=12,
    name="second",
    max_streams=1,
    search_pattern="/live/user1/pass1/",
    replace_pattern="/live/user2/pass2/",
)


def account(*profiles: Profile, **fields: object) -> Account:
    return Account(id=1, name="a", max_streams=1, profiles=profiles, **fields)  # type: ignore[arg-type]


def test_default_profile_opens_the_stream_url():
    assert profile_url(account(DEFAULT, SECOND), DEFAULT, STREAM) == URL


def test_second_login_opens_its_rewritten_url():
    got = profile_url(account(DEFAULT, SECOND), SECOND, STREAM)
    assert got == "http://provider.example/live/user2/pass2/1234.ts"


def test_a_valid_pattern_that_matches_nothing_is_not_used():
    nomatch = Profile(id=12, max_streams=1, search_pattern="/live/other/", replace_pattern="/x/")
    assert profile_url(account(DEFAULT, nomatch), nomatch, STREAM) is None


def test_an_identity_rewrite_on_a_second_profile_is_not_used():
    identity = Profile(id=12, max_streams=1)  # ^(.*)$ -> $1
    assert profile_url(account(DEFAULT, identity), identity, STREAM) is None


def test_a_rewrite_giving_the_default_logins_url_is_not_used():
    """The default login rewrites too; a second login landing on the same URL is no other login."""
    default = Profile(
        id=11, is_default=True, max_streams=1, search_pattern="\\.ts$", replace_pattern=".m3u8"
    )
    same = Profile(id=12, max_streams=1, search_pattern="1234\\.ts$", replace_pattern="1234.m3u8")
    assert profile_url(account(default, same), same, STREAM) is None
    assert profile_url(account(default, same), default, STREAM) == URL[:-3] + ".m3u8"


def test_without_a_default_flag_the_first_profile_is_the_main_login():
    first = Profile(id=11, max_streams=1)
    assert profile_url(account(first, SECOND), first, STREAM) == URL


def test_xtream_accounts_build_the_url_from_the_profiles_credentials():
    xc = account(DEFAULT, SECOND, **xc_fields())
    stream = Stream(id=1, name="one", account_id=1, url=URL, stream_id=99)
    assert profile_url(xc, SECOND, stream) == "http://provider.example/live/user2/pass2/99.ts"
    nomatch = Profile(id=12, max_streams=1, search_pattern="/nothing/", replace_pattern="/x/")
    assert profile_url(account(DEFAULT, nomatch, **xc_fields()), nomatch, stream) is None


def xc_fields() -> dict[str, object]:
    return {
        "account_type": "XC",
        "server_url": "http://provider.example",
        "username": "user1",
        "password": "pass1",
    }
