"""Pure conversions of Dispatcharr's JSON: accounts, streams, channels, viewers, write-back."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.dispatcharr import DispatcharrBadResponse
from adapters.dispatcharr_source import (
    build_inventory,
    parse_accounts,
    parse_channels,
    parse_streams,
    plan_reorder,
    pool_shared_logins,
    stats_patch,
    viewers_from_status,
)
from adapters.schema import InputError
from domain.models import Account, Channel, CheckResult, Inventory, Profile, Stream, StreamInfo
from domain.priority import marked_streams

# Shapes copied from reference/dispatcharr-api.md (v0.29.0).
ACCOUNT_3: dict[str, Any] = {
    "id": 3,
    "name": "ProviderA",
    "account_type": "XC",
    "server_url": "http://prov.example:8080",
    "username": "u1",
    "password": "pass1",
    "max_streams": 2,
    "is_active": True,
    "server_group": None,
    "locked": False,
    "status": "success",
    "priority": 0,
    "user_agent": 1,
    "auto_enable_new_groups_live": True,
    "profiles": [
        {
            "id": 5,
            "name": "ProviderA Default",
            "max_streams": 2,
            "is_active": True,
            "is_default": True,
            "current_viewers": 0,
            "search_pattern": "^(.*)$",
            "replace_pattern": "$1",
            "custom_properties": {},
            "exp_date": None,
            "account": {
                "id": 3,
                "name": "ProviderA",
                "account_type": "XC",
                "is_xtream_codes": True,
            },
        },
        {
            "id": 9,
            "name": "Second login",
            "max_streams": 1,
            "is_active": True,
            "is_default": False,
            "current_viewers": 0,
            "search_pattern": "/u1/pass1/",
            "replace_pattern": "/u2/pass2/",
            "custom_properties": {},
            "exp_date": None,
            "account": {"id": 3, "name": "ProviderA"},
        },
    ],
}
STREAM_812: dict[str, Any] = {
    "id": 812,
    "name": "BBC One HD",
    "url": "http://prov.example:8080/live/u1/pass1/12345.ts",
    "m3u_account": 3,
    "channel_group": 14,
    "tvg_id": "bbc1.uk",
    "stream_id": 12345,
    "is_stale": False,
    "is_custom": False,
    "stream_hash": "9f2c",
    "current_viewers": 0,
    "stream_stats": {
        "resolution": "1920x1080",
        "source_fps": 25.0,
        "video_codec": "h264",
        "video_bitrate": 4800.0,
        "audio_codec": "aac",
        "audio_channels": "stereo",
        "sample_rate": 48000,
        "audio_bitrate": 128.0,
        "pixel_format": "yuv420p",
        "stream_type": "mpegts",
        "ffmpeg_output_bitrate": 5012.3,
    },
    "stream_stats_updated_at": "2026-08-19T20:11:05.123456Z",
    "last_seen": "2026-08-19T04:00:00Z",
}
CHANNEL_42: dict[str, Any] = {
    "id": 42,
    "uuid": "6f1c2a8e-3b5d-4c1e-9a7f-1d2e3f4a5b6c",
    "name": "BBC One",
    "channel_number": 101.0,
    "channel_group_id": 14,
    "streams": [812, 977, 1033],
    "stream_profile_id": None,
    "hidden_from_output": False,
    "auto_created": False,
    "effective_name": "BBC One",
}
LIVE_ENTRY: dict[str, Any] = {
    "channel_id": "6f1c2a8e-3b5d-4c1e-9a7f-1d2e3f4a5b6c",
    "state": "active",
    "url": "http://prov.example:8080/live/u2/pass2/12345.ts",
    "stream_profile": "1",
    "owner": "worker-host:1234",
    "buffer_index": 5120,
    "client_count": 2,
    "uptime": 812.4,
    "started_at": 1755700000.1,
    "channel_name": "BBC One",
    "logo_id": 7,
    "m3u_profile_id": 9,
    "stream_id": 812,
    "stream_name": "BBC One HD",
    "healthy": True,
    "clients": [{"client_id": "client_1755700001_4821", "user_agent": "VLC/3.0.20"}],
}


def account(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(ACCOUNT_3)
    data.update(changes)
    return data


def stream(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(STREAM_812)
    data.update(changes)
    return data


def live(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(LIVE_ENTRY)
    data.update(changes)
    return data


# --- accounts -------------------------------------------------------------------------


def test_parse_accounts_reads_the_reference_shape() -> None:
    (parsed,) = parse_accounts([account()])

    assert parsed == Account(
        id=3,
        name="ProviderA",
        max_streams=2,
        profiles=(
            Profile(5, "ProviderA Default", 2, is_default=True),
            Profile(9, "Second login", 1, False, True, "/u1/pass1/", "/u2/pass2/"),
        ),
        user_agent=None,  # an id of /api/core/useragents/, not a string
        account_type="XC",
        server_url="http://prov.example:8080",
        username="u1",
        password="pass1",
    )
    assert [p.id for p in parsed.usable_profiles()] == [5, 9]


def test_parse_accounts_skips_inactive_and_default_inactive_accounts() -> None:
    inactive = account(id=4, is_active=False)
    default_off = account(id=5)
    default_off["profiles"][0]["is_active"] = False
    second_off = account(id=6)
    second_off["profiles"][1]["is_active"] = False

    parsed = parse_accounts([inactive, default_off, second_off])

    assert [a.id for a in parsed] == [6]
    assert [p.is_active for p in parsed[0].profiles] == [True, False]
    assert [p.id for p in parsed[0].usable_profiles()] == [5]


def test_locked_custom_account_is_kept_as_a_plain_account() -> None:
    custom = {
        "id": 1,
        "name": "custom",
        "locked": True,
        "account_type": "XC",
        "server_url": None,
        "username": None,
        "max_streams": 0,
        "is_active": True,
        "user_agent": "Mozilla/5.0 custom",
        "profiles": [{"id": 100, "name": "custom Default", "max_streams": 0, "is_default": True}],
    }

    (parsed,) = parse_accounts([custom])

    assert parsed.account_type == "STD"
    assert parsed.server_url == ""
    assert parsed.user_agent == "Mozilla/5.0 custom"
    assert parsed.usable_profiles()[0].max_streams == 0


def test_a_second_profile_with_a_broken_pattern_is_disabled() -> None:
    data = account()
    data["profiles"][1]["search_pattern"] = "(unclosed"

    (parsed,) = parse_accounts([data])

    assert [p.id for p in parsed.usable_profiles()] == [5]


def test_viewers_on_a_profile_disabled_for_its_pattern_hold_the_default_login() -> None:
    # Dispatcharr cannot rewrite a URL with that pattern either, so it plays the
    # viewer through the original URL: the default login. Before, the viewer was
    # counted nowhere, and a check could take the slot he holds.
    data = account()
    data["profiles"][1]["search_pattern"] = "/u1/(pass1/"
    (parsed,) = parse_accounts([data])
    status = {"channels": [live(m3u_profile_id=9)]}

    snapshot = viewers_from_status(status, (parsed,))

    assert snapshot.for_account(parsed) == {5: 1}


def test_account_without_profiles_gets_a_default_one() -> None:
    (parsed,) = parse_accounts([{"id": 8, "name": "bare", "max_streams": 3, "profiles": []}])
    assert parsed.usable_profiles()[0].max_streams == 3


@pytest.mark.parametrize(
    ("data", "field", "detail"),
    [
        ({"count": 1}, "", "expected an array, got an object"),
        (["x"], "[0]", "expected an object, got a string"),
        ([{"name": "no id"}], "[0].id", "missing"),
        ([account(max_streams=None)], "[0].max_streams", "expected an integer, got null"),
        ([account(max_streams=-1)], "[0].max_streams", "at least 0"),
        ([account(is_active="yes")], "[0].is_active", "expected true or false"),
        ([account(profiles={"id": 5})], "[0].profiles", "expected an array"),
    ],
)
def test_parse_accounts_names_the_bad_field(data: object, field: str, detail: str) -> None:
    with pytest.raises(DispatcharrBadResponse) as caught:
        parse_accounts(data)
    assert caught.value.endpoint == "/api/m3u/accounts/"
    assert caught.value.field == field
    assert detail in caught.value.detail


def test_every_bad_field_of_an_answer_is_named_at_once() -> None:
    data = [account(max_streams=None), account(id=4, is_active="yes")]

    with pytest.raises(DispatcharrBadResponse) as caught:
        parse_accounts(data)

    assert isinstance(caught.value, InputError)
    assert [p.field for p in caught.value.problems] == ["[0].max_streams", "[1].is_active"]
    assert str(caught.value) == (
        "/api/m3u/accounts/: [0].max_streams: expected an integer, got null; "
        "[1].is_active: expected true or false, got a string"
    )


def test_bad_profile_field_names_the_nested_path() -> None:
    data = account()
    data["profiles"][1]["max_streams"] = "2"

    with pytest.raises(DispatcharrBadResponse, match=r"\[0\]\.profiles\[1\]\.max_streams"):
        parse_accounts([data])


# --- streams and channels -------------------------------------------------------------

ACCOUNTS = parse_accounts([account(), account(id=4, name="B", account_type="STD")])


def test_parse_streams_keeps_streams_of_known_accounts() -> None:
    data = [
        stream(),
        stream(id=813, m3u_account=99),
        stream(id=814, m3u_account=None),
        stream(id=815, m3u_account=4, stream_id=None, channel_group=None, url="http://x/1.m3u8"),
        stream(id=816, url=None),  # XC with a provider id: playable without a URL
        stream(id=817, m3u_account=4, url=""),
    ]

    parsed = parse_streams(data, ACCOUNTS)

    assert parsed == (
        Stream(812, "BBC One HD", 3, STREAM_812["url"], stream_id=12345, channel_group=14),
        Stream(815, "BBC One HD", 4, "http://x/1.m3u8"),
        Stream(816, "BBC One HD", 3, "", stream_id=12345, channel_group=14),
    )


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (stream(url=5), "[0].url"),
        (stream(id="812"), "[0].id"),
        (stream(stream_id=[1]), "[0].stream_id"),
        (stream(m3u_account=3.5), "[0].m3u_account"),
    ],
)
def test_parse_streams_names_the_bad_field(item: dict[str, Any], field: str) -> None:
    with pytest.raises(DispatcharrBadResponse) as caught:
        parse_streams([item], ACCOUNTS)
    assert caught.value.endpoint == "/api/channels/streams/"
    assert caught.value.field == field


def test_parse_channels_reads_ids_and_stream_objects() -> None:
    with_objects = copy.deepcopy(CHANNEL_42)
    with_objects["id"] = 43
    with_objects["streams"] = [stream(id=977), stream()]

    parsed = parse_channels([CHANNEL_42, with_objects])

    assert parsed[0] == Channel(42, "BBC One", (812, 977, 1033), CHANNEL_42["uuid"], 14)
    assert parsed[1].stream_ids == (977, 812)


@pytest.mark.parametrize(
    ("streams", "field"),
    [
        ([812, "977"], "[0].streams[1]"),
        ([812, {"name": "no id"}], "[0].streams[1].id"),
        ({"812": 1}, "[0].streams"),
    ],
)
def test_parse_channels_names_the_bad_field(streams: object, field: str) -> None:
    data = copy.deepcopy(CHANNEL_42)
    data["streams"] = streams
    with pytest.raises(DispatcharrBadResponse) as caught:
        parse_channels([data])
    assert caught.value.endpoint == "/api/channels/channels/"
    assert caught.value.field == field


def _inventory_parts() -> tuple[tuple[Account, ...], tuple[Stream, ...], tuple[Channel, ...]]:
    accounts = (Account(1, "A", 1), Account(2, "B", 1))
    streams = (
        Stream(10, "a", 1, "http://127.0.0.1:9/10", channel_group=5),
        Stream(11, "b", 2, "http://127.0.0.1:9/11", channel_group=5),
        Stream(12, "c", 1, "http://127.0.0.1:9/12", channel_group=6),
        Stream(13, "unassigned", 1, "http://127.0.0.1:9/13", channel_group=7),
        Stream(14, "excluded group", 2, "http://127.0.0.1:9/14", channel_group=8),
        Stream(15, "inactive account", 3, "http://127.0.0.1:9/15"),
    )
    channels = (
        Channel(1, "News", (11, 15, 10), channel_group=100),
        Channel(2, "Sports", (12,), channel_group=200),
        Channel(3, "Kids", (10,), channel_group=300),
    )
    return accounts, streams, channels


def test_build_inventory_checks_channel_streams_and_keeps_every_id() -> None:
    accounts, streams, channels = _inventory_parts()

    inventory = build_inventory(accounts, streams, channels)

    assert [s.id for s in inventory.streams] == [11, 10, 12]
    assert inventory.channels[0].stream_ids == (11, 15, 10)  # 15's account is inactive
    assert inventory.accounts == accounts


def test_build_inventory_excludes_channels_and_groups() -> None:
    accounts, streams, channels = _inventory_parts()

    inventory = build_inventory(
        accounts, streams, channels, exclude_channels=(2, "kids"), exclude_groups=(100,)
    )

    assert inventory.channels == ()
    assert inventory.streams == ()


def test_build_inventory_can_include_every_stream() -> None:
    accounts, streams, channels = _inventory_parts()

    inventory = build_inventory(
        accounts,
        streams,
        channels,
        include_all_streams=True,
        exclude_channels=("Sports",),
        exclude_groups=(8,),
    )

    assert [c.id for c in inventory.channels] == [1, 3]
    assert [s.id for s in inventory.streams] == [11, 10, 13]


# --- viewers --------------------------------------------------------------------------


def test_live_channels_count_one_connection_per_profile() -> None:
    status = {
        "count": 5,
        "channels": [
            live(),  # client_count 2 is still one upstream connection
            live(channel_id="b", m3u_profile_id=5, state="buffering"),
            live(channel_id="c", m3u_profile_id=5, state="stopping"),
            live(channel_id="d", m3u_profile_id=5, state="error"),
            live(channel_id="e", m3u_profile_id=777),  # profile of another account
        ],
    }

    snapshot = viewers_from_status(status, ACCOUNTS)

    assert snapshot.profiles == {9: 1, 5: 1}
    assert snapshot.accounts == {}


def test_channels_without_a_profile_map_through_their_stream() -> None:
    no_profile = live(channel_id="x", stream_id=812)
    del no_profile["m3u_profile_id"]
    unknown = live(channel_id="y", stream_id=5555)
    del unknown["m3u_profile_id"]
    status = {"count": 2, "channels": [no_profile, unknown]}

    snapshot = viewers_from_status(status, ACCOUNTS, stream_accounts={812: 3})

    # Held on the account's default login, where a pooled twin sees it too.
    assert snapshot.profiles == {5: 1}
    assert snapshot.accounts == {}
    assert snapshot.for_account(ACCOUNTS[0]) == {5: 1, 9: 0}


def test_proxy_stats_adds_vod_and_catchup_sessions() -> None:
    stats = {
        "live": {"count": 1, "channels": [live(m3u_profile_id="9")]},
        "vod": {"vod_connections": [{"m3u_profile_id": 5}, {"content_name": "no profile"}]},
        "catchup": {"timeshift_sessions": [{"m3u_profile_id": 9}]},
        "timestamp": 1755700812.4,
    }

    snapshot = viewers_from_status(stats, ACCOUNTS)

    assert snapshot.profiles == {9: 2, 5: 1}


def test_vod_connections_grouped_by_content_count_each_connection() -> None:
    # Dispatcharr's own VOD stats group the sessions by film or episode: each entry
    # has its connections inside, whose profile id comes from Redis as a string.
    # Before, the grouped entries had no profile of their own and counted nowhere.
    stats = {
        "live": {"count": 0, "channels": []},
        "vod": {
            "vod_connections": [
                {
                    "content_type": "movie",
                    "content_uuid": "m1",
                    "connection_count": 2,
                    "connections": [
                        {"client_id": "vod_1", "m3u_profile_id": "5"},
                        {"client_id": "vod_2", "m3u_profile": {"m3u_profile_id": 9}},
                    ],
                },
                {"content_type": "episode", "connection_count": 1, "connections": [{}]},
            ],
            "total_connections": 3,
        },
    }

    snapshot = viewers_from_status(stats, ACCOUNTS)

    assert snapshot.profiles == {5: 1, 9: 1}
    # A session Redis keeps with no profile ("") is unmapped, not a bad answer.
    vod = cast(dict[str, Any], stats["vod"])
    vod["vod_connections"][1]["connections"] = [{"m3u_profile_id": ""}]
    assert viewers_from_status(stats, ACCOUNTS).profiles == {5: 1, 9: 1}


def test_proxy_stats_without_vod_or_catchup() -> None:
    stats = {"live": {"count": 0, "channels": []}, "vod": None, "timestamp": 1.0}
    assert viewers_from_status(stats, ACCOUNTS).profiles == {}


@pytest.mark.parametrize(
    ("status", "endpoint", "field"),
    [
        ({"error": "boom"}, "/proxy/ts/status", "channels"),
        ({"channels": {"a": 1}}, "/proxy/ts/status", "channels"),
        ({"channels": ["x"]}, "/proxy/ts/status", "channels[0]"),
        (
            {"channels": [live(m3u_profile_id=[9])]},
            "/proxy/ts/status",
            "channels[0].m3u_profile_id",
        ),
        ({"live": []}, "/proxy/stats/", "live"),
        ({"live": {"channels": []}, "vod": []}, "/proxy/stats/", "vod"),
        (
            {"live": {"channels": []}, "catchup": {"timeshift_sessions": [3]}},
            "/proxy/stats/",
            "catchup.timeshift_sessions[0]",
        ),
    ],
)
def test_bad_status_names_endpoint_and_field(status: Any, endpoint: str, field: str) -> None:
    with pytest.raises(DispatcharrBadResponse) as caught:
        viewers_from_status(status, ACCOUNTS)
    assert caught.value.endpoint == endpoint
    assert caught.value.field == field


# --- stats_patch ----------------------------------------------------------------------

ALIVE = CheckResult(
    stream_id=812,
    account_id=3,
    profile_id=5,
    status="ok",
    resolution="1280x720",
    fps=50.0,
    video_codec="hevc",
    audio_codec="ac3",
    bitrate_kbps=3200.04,
    score=0.83219,
    info=StreamInfo(
        resolution="1280x720",
        width=1280,
        height=720,
        fps=50.0,
        video_codec="hevc",
        audio_codec="ac3",
        audio_channels="5.1",
        sample_rate=48000,
        pixel_format=None,
        bitrate_kbps=3200.04,
        stream_type="hls",
    ),
)


def test_stats_patch_merges_media_keys_and_our_keys() -> None:
    existing = {**STREAM_812["stream_stats"], "checker_error": "old", "custom": 1}

    body = stats_patch(existing, ALIVE, "2026-08-20T10:00:00Z")

    assert body["stream_stats_updated_at"] == "2026-08-20T10:00:00Z"
    stats = body["stream_stats"]
    assert stats == {
        "resolution": "1280x720",
        "source_fps": 50.0,
        "video_codec": "hevc",
        "video_bitrate": 3200.0,
        "audio_codec": "ac3",
        "audio_channels": "5.1",
        "sample_rate": 48000,
        "audio_bitrate": 128.0,  # not measured: the old value stays
        "pixel_format": "yuv420p",  # None is skipped
        "stream_type": "hls",
        "ffmpeg_output_bitrate": 3200.0,
        "custom": 1,
        "checker_status": "ok",
        "checker_score": 0.8322,
        "checker_checked_at": "2026-08-20T10:00:00Z",
    }
    assert existing["checker_error"] == "old"  # the caller's dict is not changed


def test_stats_patch_for_a_dead_stream_keeps_old_media_keys() -> None:
    dead = CheckResult(812, 3, 5, "dead", score=0.0, error="http_404")

    body = stats_patch(STREAM_812["stream_stats"], dead, "2026-08-20T10:00:00Z")

    stats = body["stream_stats"]
    assert {k: v for k, v in stats.items() if not k.startswith("checker_")} == (
        STREAM_812["stream_stats"]
    )
    assert stats["checker_status"] == "dead"
    assert stats["checker_error"] == "http_404"
    assert stats["checker_score"] == 0.0
    assert body["stream_stats_updated_at"] == "2026-08-20T10:00:00Z"


def test_stats_patch_of_an_unjudged_check_keeps_the_last_verdict_and_stats() -> None:
    judged = stats_patch(STREAM_812["stream_stats"], ALIVE, "2026-08-20T10:00:00Z")["stream_stats"]
    for reason in ("provider_busy", "account_unauthorized", "ffmpeg_start_failed"):
        failed = CheckResult(812, 3, 5, "error", score=0.0, error=reason)

        body = stats_patch(judged, failed, "2026-08-21T10:00:00Z")

        stats = body["stream_stats"]
        # The verdict, the score and the media stats of the last judged check stay ...
        assert {k: v for k, v in stats.items() if not k.startswith("checker_last_")} == judged
        assert stats["checker_status"] == "ok"
        # ... the failure is only recorded beside them ...
        assert stats["checker_last_error"] == reason
        assert stats["checker_last_error_at"] == "2026-08-21T10:00:00Z"
        # ... and Dispatcharr's own "stats updated" time does not move.
        assert "stream_stats_updated_at" not in body

    # The next judged check clears the note.
    noted = stats_patch(judged, CheckResult(812, 3, 5, "error", error="provider_busy"), "t1")
    again = stats_patch(noted["stream_stats"], ALIVE, "t2")["stream_stats"]
    assert "checker_last_error" not in again
    assert "checker_last_error_at" not in again
    assert again["checker_checked_at"] == "t2"


def test_stats_patch_starts_from_nothing_and_falls_back_to_result_fields() -> None:
    result = CheckResult(1, 3, 5, "ok", resolution="720x576", fps=25, bitrate_kbps=1500)

    stats = stats_patch(None, result, "t")["stream_stats"]

    assert stats["resolution"] == "720x576"
    assert stats["source_fps"] == 25.0
    assert isinstance(stats["source_fps"], float)
    assert stats["video_bitrate"] == 1500.0
    assert "video_codec" not in stats
    assert "checker_error" not in stats


# --- plan_reorder ---------------------------------------------------------------------


def test_alive_streams_sorted_by_score_dead_last() -> None:
    scores = {1: ("ok", 0.5), 2: ("dead", 0.0), 3: ("ok", 0.9), 4: ("error", 0.0)}
    assert plan_reorder([1, 2, 3, 4], scores) == [3, 1, 2, 4]


def test_unchecked_streams_keep_their_places() -> None:
    # 20 and 40 were not checked (40 cancelled): they stay in slots 1 and 3
    scores = {10: ("ok", 0.2), 30: ("ok", 0.9), 40: ("cancelled", 0.0), 50: ("ok", 0.5)}
    assert plan_reorder([10, 20, 30, 40, 50], scores) == [30, 20, 50, 40, 10]


def test_dead_streams_take_the_last_judged_places_around_unjudged_ones() -> None:
    # 2 was not checked: it keeps slot 1; 1 (dead) and 3 (alive) swap slots 0 and 2.
    scores = {1: ("dead", 0.0), 3: ("ok", 0.4)}
    assert plan_reorder([1, 2, 3], scores) == [3, 2, 1]


def test_a_stream_whose_check_errored_is_not_demoted() -> None:
    # provider_busy, account_unauthorized, our own failure: all "error", none judged.
    assert plan_reorder([1, 2], {1: ("error", 0.0), 2: ("ok", 0.9)}) is None
    assert plan_reorder([1, 2, 3], {1: ("error", 0.0), 2: ("ok", 0.1), 3: ("ok", 0.9)}) == [
        1,
        3,
        2,
    ]
    assert plan_reorder([1, 2, 3], {1: ("cancelled", 0.0), 2: ("dead", 0.0), 3: ("ok", 0.5)}) == [
        1,
        3,
        2,
    ]


def test_ties_keep_current_order_and_unchanged_is_none() -> None:
    scores = {1: ("ok", 0.5), 2: ("ok", 0.5), 3: ("ok", 0.5)}
    assert plan_reorder([2, 1, 3], scores) is None
    assert plan_reorder([1, 2], {}) is None
    assert plan_reorder([], {}) is None


def test_duplicates_are_never_reordered() -> None:
    assert plan_reorder([1, 2, 1], {1: ("dead", 0.0), 2: ("ok", 1.0)}) is None


def test_scores_of_other_streams_are_ignored() -> None:
    scores = {1: ("ok", 0.1), 3: ("ok", 0.9), 9: ("ok", 5.0)}
    assert plan_reorder([1, 2, 3], scores) == [3, 2, 1]
    assert plan_reorder([1, 2], {2: ("ok", 1.0), 9: ("ok", 5.0)}) is None  # 1 keeps its place


def test_nan_score_ranks_last_among_alive() -> None:
    scores = {1: ("ok", float("nan")), 2: ("ok", 0.1)}
    assert plan_reorder([1, 2], scores) == [2, 1]


statuses = st.sampled_from(["ok", "dead", "error", "cancelled"])
score_values = st.floats(min_value=0.0, max_value=1.0) | st.sampled_from([0.5, 0.25])


@st.composite
def channel_cases(draw: st.DrawFn) -> tuple[list[int], dict[int, tuple[str, float]]]:
    ids = draw(st.lists(st.integers(0, 10_000), unique=True, max_size=12))
    checked = draw(st.lists(st.sampled_from(ids), unique=True) if ids else st.just([]))
    scores = {sid: (draw(statuses), draw(score_values)) for sid in checked}
    return ids, scores


@given(channel_cases())
def test_plan_reorder_properties(case: tuple[list[int], dict[int, tuple[str, float]]]) -> None:
    current, scores = case
    planned = plan_reorder(list(current), scores)
    final = current if planned is None else planned

    assert planned != current  # None, never a no-op write
    assert Counter(final) == Counter(current)

    def status(sid: int) -> str | None:
        return scores[sid][0] if sid in scores else None

    for position, sid in enumerate(current):
        if status(sid) not in ("ok", "dead"):
            assert final[position] == sid  # not judged this cycle: exactly where it was
    judged = [s for s in final if status(s) in ("ok", "dead")]
    is_dead = [status(s) == "dead" for s in judged]
    assert is_dead == sorted(is_dead)  # among judged streams, dead ones come last
    dead = [s for s in current if status(s) == "dead"]
    assert [s for s in final if s in dead] == dead
    alive_scores = [scores[s][1] for s in final if status(s) == "ok"]
    assert alive_scores == sorted(alive_scores, reverse=True)
    assert plan_reorder(final, scores) is None  # applying the plan is a fixed point


@given(st.lists(st.integers(0, 5), min_size=2).filter(lambda xs: len(set(xs)) < len(xs)))
def test_plan_reorder_refuses_duplicates(current: list[int]) -> None:
    scores = {sid: ("ok", float(sid)) for sid in current}
    assert plan_reorder(current, scores) is None


def test_digit_string_ids_are_read_and_odd_digits_are_a_shape_error() -> None:
    # Some Dispatcharr versions send ids as strings, at times padded.
    (parsed,) = parse_streams([stream(m3u_account=" 3", stream_id="12345 ")], ACCOUNTS)
    assert (parsed.account_id, parsed.stream_id) == (3, 12345)
    with pytest.raises(DispatcharrBadResponse) as caught:  # "²" is a digit to str.isdigit
        parse_streams([stream(stream_id="²")], ACCOUNTS)
    assert caught.value.field == "[0].stream_id"


def pooled_accounts() -> tuple[Account, ...]:
    """Accounts 3 and 4 in server group 1, their default logins the same (u1/pass1)."""
    first = account(server_group=1)
    second = account(id=4, name="ProviderA mirror", server_group=1)
    second["profiles"] = [dict(first["profiles"][0], id=6, max_streams=2)]
    return parse_accounts([first, second])


def test_logins_that_a_server_group_pools_share_their_limit_and_their_viewers() -> None:
    # Since Dispatcharr 0.27, accounts of one server group whose profiles resolve
    # to the same provider login share one counter. Before, each account counted
    # the login apart: two accounts of limit 2 could open four connections on
    # one login of two, and a viewer on one account left the other's slot free.
    accounts = pooled_accounts()
    streams = (
        Stream(812, "a", 3, "http://prov.example:8080/live/u1/pass1/12345.ts", stream_id=12345),
        Stream(900, "b", 4, "http://prov.example:8080/live/u1/pass1/999.ts", stream_id=999),
    )
    inventory = pool_shared_logins(Inventory(accounts, streams))
    first, second = inventory.accounts
    limits = {p.id: p.max_streams for a in inventory.accounts for p in a.usable_profiles()}
    assert (limits[5], limits[6]) == (1, 1)  # the login's 2, split
    assert limits[9] == 1  # another login (u2/pass2): its own limit
    viewers = viewers_from_status({"channels": [live(m3u_profile_id=5)]}, inventory.accounts)
    assert viewers.for_account(second) == {6: 1}  # the viewer on account 3 holds it too
    assert viewers.for_account(first)[5] == 1


def test_a_pooled_login_of_one_slot_goes_to_one_account() -> None:
    first = account(server_group=1)
    first["profiles"] = [dict(first["profiles"][0], max_streams=1)]
    second = account(id=4, name="mirror", server_group=1)
    second["profiles"] = [dict(first["profiles"][0], id=6)]
    streams = (Stream(812, "a", 3, "http://h/1.ts"), Stream(900, "b", 4, "http://h/2.ts"))
    inventory = pool_shared_logins(Inventory(parse_accounts([first, second]), streams))
    usable = {a.id: [p.id for p in a.usable_profiles()] for a in inventory.accounts}
    assert usable == {3: [5]}  # the other has no slot left (never 0, unlimited)
    assert [s.id for s in inventory.streams] == [812]
    # A viewer through the account left out still holds the login.
    viewers = viewers_from_status({"channels": [live(m3u_profile_id=6)]}, inventory.accounts)
    assert viewers.for_account(inventory.accounts[0]) == {5: 1}


def test_accounts_without_a_server_group_keep_their_limits() -> None:
    accounts = parse_accounts([account(), account(id=4, name="B")])
    assert pool_shared_logins(Inventory(accounts, ())).accounts == accounts


def test_a_channel_answers_to_the_name_users_see_and_to_its_own() -> None:
    # Dispatcharr shows an override's name (effective_name); the config may use
    # either. Before, only the channel's own name matched, and was shown.
    data = [dict(CHANNEL_42, name="BBC 1", effective_name="BBC One HD")]
    (channel,) = parse_channels(data)
    assert (channel.name, channel.also_named) == ("BBC One HD", ("BBC 1",))
    accounts = parse_accounts([account()])
    streams = parse_streams([stream()], accounts)
    for name in ("bbc 1", " BBC One HD "):
        kept = build_inventory(accounts, streams, (channel,), exclude_channels=[name])
        assert kept.channels == ()
    inventory = build_inventory(accounts, streams, (channel,))
    assert marked_streams(inventory, ["bbc 1"]) == frozenset(channel.stream_ids)


def test_a_pooled_login_counts_the_viewers_its_account_sends_to_the_default_login() -> None:
    # Viewers on account 3's profile with a broken pattern play on its default
    # login, which account 4 shares: account 4 must see them too.
    first = account(server_group=1)
    first["profiles"][1]["search_pattern"] = "/u1/(pass1/"
    second = account(id=4, name="mirror", server_group=1)
    second["profiles"] = [dict(first["profiles"][0], id=6)]
    streams = (Stream(812, "a", 3, "http://h/1.ts"), Stream(900, "b", 4, "http://h/2.ts"))
    pooled = pool_shared_logins(Inventory(parse_accounts([first, second]), streams))
    status = {"channels": [live(m3u_profile_id=9), live(channel_id="z", m3u_profile_id=9)]}
    viewers = viewers_from_status(status, pooled.accounts)
    assert viewers.for_account(pooled.accounts[1]) == {6: 2}


def test_an_account_with_nothing_to_check_takes_no_share_of_a_pooled_login() -> None:
    first = account(server_group=1)
    first["profiles"] = [dict(first["profiles"][0], max_streams=1)]
    second = account(id=4, name="mirror", server_group=1)
    second["profiles"] = [dict(first["profiles"][0], id=6)]
    streams = (Stream(900, "b", 4, "http://h/2.ts"),)  # only account 4 has streams
    pooled = pool_shared_logins(Inventory(parse_accounts([first, second]), streams))
    limits = {p.id: p.max_streams for a in pooled.accounts for p in a.usable_profiles()}
    assert limits == {5: 1, 6: 1}  # account 3 checks nothing: its limit is not split
    assert [s.id for s in pooled.streams] == [900]


def test_an_xtream_codes_login_is_known_without_a_stream() -> None:
    # Dispatcharr rewrites an Xtream Codes account's own credentials: profile 9
    # of account 3 plays as u2, not as the account's u1, even with no stream read.
    first = account(server_group=1)
    second = account(id=4, name="mirror", server_group=1)
    second["profiles"] = [dict(first["profiles"][1], id=6, is_default=True, max_streams=1)]
    pooled = pool_shared_logins(Inventory(parse_accounts([first, second]), ()))
    twins = {p.id: p.shares_login_with for a in pooled.accounts for p in a.profiles}
    assert twins == {5: (), 9: (6,), 6: (9,)}  # u2 pooled, u1 alone
