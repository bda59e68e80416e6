"""DispatcharrClient against the fake Dispatcharr: auth, pagination, retries, shapes."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.dispatcharr import (
    DispatcharrAuthError,
    DispatcharrBadResponse,
    DispatcharrClient,
    DispatcharrHTTPError,
    DispatcharrNotFound,
    DispatcharrUnavailable,
)
from adapters.dispatcharr_source import (
    build_inventory,
    parse_accounts,
    parse_channels,
    parse_streams,
    viewers_from_status,
)
from tests.fakes.dispatcharr import FakeDispatcharr
from tests.logcapture import capture_logs

MakeClient = Callable[..., DispatcharrClient]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make_client(fake_dispatcharr: FakeDispatcharr) -> Iterator[MakeClient]:
    clients: list[DispatcharrClient] = []

    def make(**overrides: Any) -> DispatcharrClient:
        options: dict[str, Any] = {
            "username": fake_dispatcharr.username,
            "password": fake_dispatcharr.password,
            "backoff_factor": 0.0,
            "retries": 2,
            "timeout": 5.0,
        }
        options.update(overrides)
        base = options.pop("base_url", fake_dispatcharr.url)
        client = DispatcharrClient(base, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def seeded(fake_dispatcharr: FakeDispatcharr) -> FakeDispatcharr:
    fake_dispatcharr.seed_sample()
    return fake_dispatcharr


# --- authentication -------------------------------------------------------------------


def test_one_login_serves_many_calls(seeded: FakeDispatcharr, make_client: MakeClient) -> None:
    client = make_client()
    assert [a["id"] for a in client.accounts()] == [3, 4, 1]
    assert len(client.streams()) == 4
    assert [c["id"] for c in client.channels()] == [42, 43]
    assert client.channel(42)["streams"] == [812, 977, 1033]
    assert client.proxy_status() == {"count": 0, "channels": []}
    assert seeded.logins == 1
    assert seeded.refreshes == 0
    authed = [c for c in seeded.calls if c.route not in ("token", "refresh")]
    assert {c.auth for c in authed} == {"jwt"}


def test_version_needs_no_login(seeded: FakeDispatcharr, make_client: MakeClient) -> None:
    assert make_client().version() == "0.29.0"
    assert seeded.logins == 0


def test_expired_access_token_is_refreshed_and_the_call_retried(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    client = make_client()
    client.accounts()
    seeded.expire_access_tokens()

    channels = client.channels()

    assert [c["id"] for c in channels] == [42, 43]
    assert seeded.logins == 1
    assert seeded.refreshes == 1
    assert [c.auth for c in seeded.calls if c.route == "channels"] == ["invalid", "jwt"]


def test_refused_refresh_logs_in_again(seeded: FakeDispatcharr, make_client: MakeClient) -> None:
    client = make_client()
    client.accounts()
    seeded.expire_access_tokens()
    seeded.expire_refresh_tokens()

    assert client.stream(812)["id"] == 812
    assert seeded.logins == 2
    assert seeded.count("refresh") == 1


def test_old_access_token_is_refreshed_before_the_call(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, token_max_age=25 * 60)
    client.accounts()
    clock.now += 26 * 60

    client.accounts()

    assert seeded.refreshes == 1
    assert seeded.logins == 1
    assert [c.auth for c in seeded.calls if c.route == "accounts"] == ["jwt", "jwt"]


def test_a_token_refused_right_after_renewal_raises_without_a_loop(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    seeded.access_lifetime = 0.0  # every access token is dead on arrival
    client = make_client()

    with pytest.raises(DispatcharrAuthError, match="refused the fresh token"):
        client.accounts()

    assert seeded.logins == 1
    assert seeded.refreshes == 1
    assert seeded.count("accounts") == 2


def test_wrong_password_is_a_clear_auth_error(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    client = make_client(password="wrong")

    with pytest.raises(DispatcharrAuthError, match="login as 'admin' refused"):
        client.accounts()
    assert seeded.count("accounts") == 0


def test_throttled_login_raises_and_does_not_retry(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    for _ in range(3):  # failed logins count towards the 3-a-minute throttle
        with pytest.raises(DispatcharrAuthError, match="refused"):
            make_client(password="wrong").accounts()
    client = make_client()

    with pytest.raises(DispatcharrAuthError, match="throttled"):
        client.accounts()
    with pytest.raises(DispatcharrAuthError, match="throttled"):
        client.channels()

    assert seeded.count("token") == 4  # the second call did not try again
    assert seeded.logins == 0


def test_api_key_is_sent_instead_of_a_login(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    client = make_client(username="", password="", api_key=seeded.api_key)

    assert len(client.accounts()) == 3
    assert client.proxy_stats()["live"]["count"] == 0
    assert seeded.logins == 0
    assert {c.auth for c in seeded.calls} == {"api_key"}


def test_wrong_api_key_is_an_auth_error(seeded: FakeDispatcharr, make_client: MakeClient) -> None:
    client = make_client(api_key="not-the-key")

    with pytest.raises(DispatcharrAuthError, match="API key"):
        client.accounts()
    assert seeded.count("token") == 0


def test_no_credentials_fail_at_construction() -> None:
    with pytest.raises(DispatcharrAuthError, match="API key, or a username"):
        DispatcharrClient("http://127.0.0.1:9", username="admin")


# --- pagination and shapes --------------------------------------------------------------


def _many_streams(fake: FakeDispatcharr, count: int) -> None:
    fake.add_account(7, "Many", max_streams=2, default_profile_id=700)
    for n in range(1, count + 1):
        fake.add_stream(n, f"s{n}", 7, f"http://127.0.0.1:9/s/{n}.ts")


def test_streams_follow_next_to_the_end_on_our_own_base_url(
    fake_dispatcharr: FakeDispatcharr, make_client: MakeClient
) -> None:
    _many_streams(fake_dispatcharr, 7)
    client = make_client(page_size=3)

    streams = client.streams({"m3u_account": 7})

    assert [s["id"] for s in streams] == list(range(1, 8))
    pages = [c.query for c in fake_dispatcharr.calls if c.route == "streams"]
    assert len(pages) == 3
    assert all("page_size=3" in q and "m3u_account=7" in q for q in pages)
    assert "page=3" in pages[-1]


def test_pages_that_skip_streams_of_one_name_are_completed_by_id(
    fake_dispatcharr: FakeDispatcharr, make_client: MakeClient
) -> None:
    # Dispatcharr orders stream pages by name only; streams of one name (the same
    # channel from several providers) may come in another order at each page's
    # query, so some come twice and others never: those were simply not checked.
    fake = fake_dispatcharr
    fake.add_account(7, "P", max_streams=1)
    for stream_id in range(1, 13):
        fake.add_stream(stream_id, "BBC One HD", 7, f"http://127.0.0.1:9/{stream_id}.ts")
    fake.unstable_name_order = True
    client = make_client(page_size=4)

    with capture_logs() as logs:
        streams = client.streams()

    assert sorted(s["id"] for s in streams) == list(range(1, 13))  # each once
    assert [e["event"] for e in logs].count("dispatcharr.streams_paged_inconsistently") == 1
    # A Dispatcharr without the ids route: what the pages gave, once each.
    fake.fail_next("stream_ids", status=404)
    fewer = client.streams()
    assert len({s["id"] for s in fewer}) == len(fewer) <= 12


def test_default_page_size_is_1000(seeded: FakeDispatcharr, make_client: MakeClient) -> None:
    make_client().streams()
    assert [c.query for c in seeded.calls if c.route == "streams"] == ["page_size=1000"]


def test_streams_by_ids_is_a_bare_array_and_none_found_is_empty(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    client = make_client()
    assert [s["id"] for s in client.streams({"ids": "977,812"})] == [812, 977]
    assert client.streams({"ids": "5"}) == []


def test_channels_include_hidden_ones(seeded: FakeDispatcharr, make_client: MakeClient) -> None:
    seeded.add_channel(44, "Hidden", [977], hidden=True)
    client = make_client()

    assert [c["id"] for c in client.channels()] == [42, 43, 44]
    full = client.channels(include_streams=True)
    assert [s["id"] for s in full[0]["streams"]] == [812, 977, 1033]


def test_malformed_second_page_names_endpoint_and_field(
    fake_dispatcharr: FakeDispatcharr, make_client: MakeClient
) -> None:
    _many_streams(fake_dispatcharr, 5)
    fake_dispatcharr.malform_next("streams", "missing_results", skip=1)

    with pytest.raises(DispatcharrBadResponse) as caught:
        make_client(page_size=2).streams()

    assert caught.value.endpoint == "/api/channels/streams/"
    assert caught.value.field == "page 2.results"
    assert str(caught.value) == "/api/channels/streams/: page 2.results: missing"


@pytest.mark.parametrize(
    ("route", "kind", "call", "field", "detail"),
    [
        ("accounts", "not_json", "accounts", "", "not JSON"),
        ("accounts", "truncated", "accounts", "", "not JSON"),
        ("accounts", "wrong_shape", "accounts", "", "expected an array or a page object"),
        ("streams", "results_not_list", "streams", "page 1.results", "expected an array"),
        ("channel", "wrong_shape", "channel", "", "expected an object, got an array"),
        ("proxy_status", "wrong_shape", "proxy_status", "", "expected an object"),
    ],
)
def test_malformed_answers_raise_bad_response(
    seeded: FakeDispatcharr,
    make_client: MakeClient,
    route: str,
    kind: str,
    call: str,
    field: str,
    detail: str,
) -> None:
    seeded.malform_next(route, kind)
    client = make_client()
    calls: dict[str, Callable[[], object]] = {
        "accounts": client.accounts,
        "streams": client.streams,
        "channel": lambda: client.channel(42),
        "proxy_status": client.proxy_status,
    }

    with pytest.raises(DispatcharrBadResponse) as caught:
        calls[call]()

    assert caught.value.field == field
    assert detail in caught.value.detail


def test_a_repeating_next_link_is_a_bad_response(
    fake_dispatcharr: FakeDispatcharr, make_client: MakeClient
) -> None:
    _many_streams(fake_dispatcharr, 5)
    fake_dispatcharr.public_url = None
    client = make_client(page_size=2)
    original = fake_dispatcharr._page  # every page will point at page 2

    def stuck(request: Any, rows: list[Any], *, default_size: int) -> Any:
        reply = original(request, rows, default_size=default_size)
        reply.body["next"] = f"{fake_dispatcharr.url}/api/channels/streams/?page=2&page_size=2"
        return reply

    fake_dispatcharr._page = stuck  # type: ignore[method-assign]

    with pytest.raises(DispatcharrBadResponse, match="repeats an earlier page"):
        client.streams()


# --- retries and errors -----------------------------------------------------------------


def test_500_then_success_is_retried(seeded: FakeDispatcharr, make_client: MakeClient) -> None:
    seeded.fail_next("streams", 2)

    assert len(make_client(retries=2).streams()) == 4
    assert seeded.count("streams") == 3


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried(
    seeded: FakeDispatcharr, make_client: MakeClient, status: int
) -> None:
    seeded.fail_next("accounts", 1, status=status)
    assert len(make_client().accounts()) == 3


def test_persisting_500_is_unavailable(seeded: FakeDispatcharr, make_client: MakeClient) -> None:
    seeded.fail_next("accounts", 10)

    with pytest.raises(DispatcharrUnavailable) as caught:
        make_client(retries=2).accounts()

    assert caught.value.status == 500
    assert caught.value.endpoint == "/api/m3u/accounts/"
    assert seeded.count("accounts") == 3


def test_patch_is_not_retried_on_a_server_error(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    seeded.fail_next("channel", 1, status=502)

    with pytest.raises(DispatcharrUnavailable):
        make_client().patch_channel(42, {"streams": [977, 812, 1033]})
    assert seeded.count("channel") == 1
    assert seeded.channel_patches == []


@pytest.mark.parametrize("applied", [False, True], ids=["dropped-before", "dropped-after"])
def test_a_patch_is_sent_again_after_a_dropped_connection(
    seeded: FakeDispatcharr, make_client: MakeClient, applied: bool
) -> None:
    body = {"stream_stats": {"resolution": "1280x720"}, "stream_stats_updated_at": "2026-08-20Z"}
    seeded.drop_next("stream", method="PATCH", applied=applied)

    updated = make_client().patch_stream(812, body)

    assert updated["stream_stats"] == {"resolution": "1280x720"}
    assert seeded.count("stream", "PATCH") == 2
    assert seeded.streams[812]["stream_stats"] == {"resolution": "1280x720"}


def test_calls_reuse_one_kept_alive_connection(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    client = make_client(api_key=seeded.api_key)
    for _ in range(5):
        client.channel(42)
    client.patch_stream(812, {"stream_stats": {}})

    assert seeded.connections_opened == 1


def test_a_login_is_not_sent_again_after_a_dropped_connection(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    # Every login attempt counts against Dispatcharr's 3 a minute.
    seeded.drop_next("token")

    with pytest.raises(DispatcharrUnavailable):
        make_client().accounts()
    assert seeded.count("token") == 1


def test_connection_refused_is_unavailable(make_client: MakeClient) -> None:
    gone = FakeDispatcharr().start()
    url = gone.url
    gone.stop()

    with pytest.raises(DispatcharrUnavailable) as caught:
        make_client(base_url=url, retries=1).accounts()
    assert caught.value.status is None


def test_a_silent_server_times_out_as_unavailable(make_client: MakeClient) -> None:
    with socket.socket() as listener:  # accepts connections into its backlog, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        client = make_client(base_url=f"http://127.0.0.1:{port}", api_key="k", timeout=0.2)

        with pytest.raises(DispatcharrUnavailable, match=r"ReadTimeout|ConnectionError"):
            client.accounts()


def test_missing_object_is_not_found(seeded: FakeDispatcharr, make_client: MakeClient) -> None:
    with pytest.raises(DispatcharrNotFound) as caught:
        make_client().channel(999)
    assert caught.value.endpoint == "/api/channels/channels/999/"


def test_proxy_stats_falls_back_to_ts_status_once(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    seeded.stats_available = False
    seeded.add_live_channel("6f1c2a8e-3b5d-4c1e-9a7f-1d2e3f4a5b6c", m3u_profile_id=9)
    client = make_client()

    first = client.proxy_stats()
    second = client.proxy_stats()

    assert first["count"] == 1
    assert second == first
    assert seeded.count("proxy_stats") == 1
    assert seeded.count("proxy_status") == 2


# --- writes ---------------------------------------------------------------------------


def test_patch_stream_replaces_stats(seeded: FakeDispatcharr, make_client: MakeClient) -> None:
    body = {"stream_stats": {"resolution": "1280x720"}, "stream_stats_updated_at": "2026-08-20Z"}

    updated = make_client().patch_stream(812, body)

    assert updated["stream_stats"] == {"resolution": "1280x720"}
    assert updated["stream_stats_updated_at"] == "2026-08-20Z"
    assert seeded.stream_patches == [(812, body)]


def test_patch_channel_reorders_and_bad_ids_are_rejected(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    client = make_client()

    assert client.patch_channel(42, {"streams": [977, 1033, 812]})["streams"] == [977, 1033, 812]
    with pytest.raises(DispatcharrHTTPError) as caught:
        client.patch_channel(42, {"streams": [977, 5]})

    assert caught.value.status == 400
    assert "Invalid pk" in caught.value.detail
    assert seeded.channels[42]["streams"] == [977, 1033, 812]


def test_on_channel_read_lets_a_user_edit_between_read_and_write(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    def user_adds_a_stream(fake: FakeDispatcharr, channel_id: int) -> None:
        fake.set_channel_streams(channel_id, [*fake.channels[channel_id]["streams"], 2001])
        fake.on_channel_read = None

    seeded.on_channel_read = user_adds_a_stream
    client = make_client()

    assert client.channel(42)["streams"] == [812, 977, 1033]
    assert client.channel(42)["streams"] == [812, 977, 1033, 2001]


# --- end to end -------------------------------------------------------------------------


def test_inventory_and_viewers_from_the_fake(
    seeded: FakeDispatcharr, make_client: MakeClient
) -> None:
    seeded.add_live_channel("6f1c2a8e-3b5d-4c1e-9a7f-1d2e3f4a5b6c", m3u_profile_id=9, stream_id=812)
    seeded.add_vod_connection(5)
    client = make_client(api_key=seeded.api_key)

    accounts = parse_accounts(client.accounts())
    streams = parse_streams(client.streams(), accounts)
    channels = parse_channels(client.channels())
    inventory = build_inventory(accounts, streams, channels)
    viewers = viewers_from_status(client.proxy_stats(), accounts)

    assert [a.id for a in inventory.accounts] == [3, 4, 1]
    assert [s.id for s in inventory.streams] == [812, 977, 1033, 2001]
    assert inventory.channels[0].stream_ids == (812, 977, 1033)
    assert viewers.profiles == {9: 1, 5: 1}


@pytest.mark.parametrize("applied", [False, True], ids=["dropped-before", "dropped-after"])
def test_a_channel_patch_is_not_sent_again_after_a_dropped_connection(
    seeded: FakeDispatcharr, make_client: MakeClient, applied: bool
) -> None:
    # Its list is a whole membership read before it: sent again later, it would
    # drop a stream the user added meanwhile. The writer reads afresh next time.
    seeded.drop_next("channel", method="PATCH", applied=applied)

    with pytest.raises(DispatcharrUnavailable):
        make_client().patch_channel(42, {"streams": [977, 812, 1033]})
    assert seeded.count("channel", "PATCH") == 1
