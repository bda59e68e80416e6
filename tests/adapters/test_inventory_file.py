from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from adapters.inventory_file import load_inventory, load_viewers
from adapters.schema import InputError
from domain.models import Profile, ViewerSnapshot

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

# The design's inventory example, with all five streams of the seed.
DESIGN_EXAMPLE: dict[str, Any] = {
    "accounts": [
        {
            "id": 1,
            "name": "Account A",
            "max_streams": 1,
            "profiles": [
                {
                    "id": 11,
                    "name": "default",
                    "is_default": True,
                    "max_streams": 1,
                    "search_pattern": "^(.*)$",
                    "replace_pattern": "$1",
                },
                {
                    "id": 12,
                    "name": "second login",
                    "max_streams": 1,
                    "search_pattern": "/live/u/p/",
                    "replace_pattern": "/live/u2/p2/",
                },
            ],
        },
        {"id": 2, "name": "Account B", "max_streams": 2},
    ],
    "streams": [
        {"id": 1, "name": "A1", "m3u_account": 1, "url": "http://provider/live/u/p/1.ts"},
        {"id": 2, "name": "A2", "m3u_account": 1, "url": "http://provider/live/u/p/2.ts"},
        {"id": 3, "name": "B1", "m3u_account": 2, "url": "http://provider/live/b/b/3.ts"},
        {"id": 4, "name": "B2", "m3u_account": 2, "url": "http://provider/live/b/b/4.ts"},
        {"id": 5, "name": "B3", "m3u_account": 2, "url": "http://provider/live/b/b/5.ts"},
    ],
    "channels": [{"id": 7, "name": "News", "streams": [1, 3]}],
}


def write_json(tmp_path: Path, data: Any, name: str = "inventory.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def error_of(tmp_path: Path, data: Any) -> str:
    with pytest.raises(InputError) as info:
        load_inventory(write_json(tmp_path, data))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'inventory.json'}: ")
    return message


def test_design_example_loads(tmp_path):
    inventory = load_inventory(write_json(tmp_path, DESIGN_EXAMPLE))
    a, b = inventory.accounts
    assert (a.id, a.name, a.max_streams) == (1, "Account A", 1)
    assert a.profiles == (
        Profile(id=11, name="default", max_streams=1, is_default=True),
        Profile(
            id=12,
            name="second login",
            max_streams=1,
            search_pattern="/live/u/p/",
            replace_pattern="/live/u2/p2/",
        ),
    )
    assert (b.id, b.max_streams, b.profiles) == (2, 2, ())
    assert [s.name for s in inventory.streams] == ["A1", "A2", "B1", "B2", "B3"]
    assert [s.account_id for s in inventory.streams] == [1, 1, 2, 2, 2]
    assert inventory.channels[0].stream_ids == (1, 3)
    assert inventory.account(2) is b


def test_shipped_example_inventory_loads():
    inventory = load_inventory(CONFIG_DIR / "example-inventory.json")
    assert [(a.id, a.max_streams) for a in inventory.accounts] == [(1, 1), (2, 2)]
    assert [s.name for s in inventory.streams] == ["A1", "A2", "B1", "B2", "B3"]
    assert all(s.url.startswith("http://127.0.0.1:8001/live/") for s in inventory.streams)
    assert inventory.channels


def test_optional_parts_may_be_absent(tmp_path):
    inventory = load_inventory(
        write_json(
            tmp_path,
            {
                "accounts": [{"id": 4}],
                "streams": [{"id": 9, "m3u_account": 4, "url": "udp://239.0.0.1:1234"}],
            },
        )
    )
    assert inventory.channels == ()
    assert inventory.accounts[0].max_streams == 0
    assert inventory.accounts[0].name == "account 4"
    assert inventory.streams[0].name == "stream 9"


def test_default_profile_takes_the_account_limit_when_it_omits_one(tmp_path):
    data = copy.deepcopy(DESIGN_EXAMPLE)
    del data["accounts"][0]["profiles"][0]["max_streams"]
    data["accounts"][0]["max_streams"] = 3
    inventory = load_inventory(write_json(tmp_path, data))
    assert inventory.accounts[0].profiles[0].max_streams == 3


def test_account_takes_the_default_profile_limit_when_it_omits_one(tmp_path):
    data = copy.deepcopy(DESIGN_EXAMPLE)
    del data["accounts"][0]["max_streams"]
    inventory = load_inventory(write_json(tmp_path, data))
    assert inventory.accounts[0].max_streams == 1


def test_unknown_fields_are_ignored(tmp_path):
    data = copy.deepcopy(DESIGN_EXAMPLE)
    data["accounts"][0]["status"] = "success"
    data["version"] = 3
    assert load_inventory(write_json(tmp_path, data)).accounts[0].id == 1


def test_xc_fields_are_read(tmp_path):
    data = copy.deepcopy(DESIGN_EXAMPLE)
    data["accounts"][1].update(
        account_type="XC", server_url="http://p:8080", username="u", password="p", user_agent="UA"
    )
    data["streams"][2]["stream_id"] = 1234
    inventory = load_inventory(write_json(tmp_path, data))
    account = inventory.accounts[1]
    assert (account.account_type, account.server_url, account.user_agent) == (
        "XC",
        "http://p:8080",
        "UA",
    )
    assert inventory.streams[2].stream_id == 1234


def mutated(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(DESIGN_EXAMPLE)
    change(data)
    return data


def _set(path: list[Any], value: Any) -> Any:
    def change(data: Any) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _delete(path: list[Any]) -> Any:
    def change(data: Any) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_delete(["accounts"]), "accounts: missing"),
        (_delete(["streams"]), "streams: missing"),
        (_set(["accounts"], {}), "accounts: must be a list, got an object"),
        (_set(["streams", 3], 5), "streams[3]: must be an object, got a number"),
        (_set(["accounts", 1, "id"], "2"), 'accounts[1].id: must be an integer id > 0, got "2"'),
        (_set(["accounts", 1, "id"], True), "accounts[1].id: must be an integer id > 0, got true"),
        (_delete(["accounts", 1, "id"]), "accounts[1].id: missing"),
        (
            _set(["accounts", 1, "id"], 1),
            "accounts[1].id: duplicate account id 1 (also accounts[0])",
        ),
        (
            _set(["accounts", 1, "max_streams"], -1),
            "accounts[1].max_streams: must be an integer >= 0, got -1",
        ),
        (
            _set(["accounts", 1, "max_streams"], 1.5),
            "accounts[1].max_streams: must be an integer >= 0, got 1.5",
        ),
        (_set(["accounts", 1, "name"], 7), "accounts[1].name: must be a string, got 7"),
        (
            _set(["accounts", 1, "is_active"], "yes"),
            'accounts[1].is_active: must be true or false, got "yes"',
        ),
        (
            _set(["accounts", 1, "account_type"], "M3U"),
            'accounts[1].account_type: must be "STD" or "XC", got "M3U"',
        ),
        (
            _set(["accounts", 0, "profiles", 1, "id"], 11),
            "accounts[0].profiles[1].id: duplicate profile id 11 (also accounts[0].profiles[0])",
        ),
        (
            _set(["accounts", 1, "profiles"], [{"id": 11, "is_default": True}]),
            "accounts[1].profiles[0].id: duplicate profile id 11 (also accounts[0].profiles[0])",
        ),
        (
            _set(["accounts", 0, "profiles", 1, "is_default"], True),
            "accounts[0].profiles[1].is_default: a second default profile "
            "(the first is accounts[0].profiles[0])",
        ),
        (
            _set(["accounts", 0, "profiles", 0, "is_default"], False),
            'accounts[0].profiles: no default profile (set "is_default": true on one of them)',
        ),
        (
            _set(["accounts", 0, "profiles", 0, "max_streams"], 2),
            "accounts[0].profiles[0].max_streams: 2 differs from the account's max_streams 1",
        ),
        (
            _set(["accounts", 0, "profiles", 1, "max_streams"], -3),
            "accounts[0].profiles[1].max_streams: must be an integer >= 0, got -3",
        ),
        (
            _set(["accounts", 0, "profiles", 1, "search_pattern"], "/live/(u/"),
            "accounts[0].profiles[1].search_pattern: not a valid regular expression",
        ),
        (
            _set(["accounts", 0, "profiles"], {"id": 11}),
            "accounts[0].profiles: must be a list, got an object",
        ),
        (_set(["streams", 3, "id"], 3), "streams[3].id: duplicate stream id 3 (also streams[2])"),
        (_set(["streams", 3, "m3u_account"], 9), "streams[3].m3u_account: unknown account id 9"),
        (
            _set(["streams", 3, "m3u_account"], "2"),
            'streams[3].m3u_account: must be an account id, got "2"',
        ),
        (_delete(["streams", 3, "m3u_account"]), "streams[3].m3u_account: missing"),
        (_delete(["streams", 3, "url"]), "streams[3].url: missing or empty"),
        (_set(["streams", 3, "url"], "  "), "streams[3].url: missing or empty"),
        (_set(["streams", 3, "url"], 5), "streams[3].url: must be a string, got 5"),
        (
            _set(["streams", 3, "url"], "file:///etc/passwd"),
            'streams[3].url: unsupported scheme "file"',
        ),
        (
            _set(["streams", 3, "url"], "provider/live/1.ts"),
            'streams[3].url: unsupported scheme ""',
        ),
        (_set(["streams", 3, "url"], "http:///1.ts"), "streams[3].url: no host in the URL"),
        (
            _set(["streams", 3, "stream_id"], "x"),
            'streams[3].stream_id: must be an integer, got "x"',
        ),
        (_set(["channels"], {}), "channels: must be a list, got an object"),
        (
            _set(["channels", 0, "streams"], "1"),
            "channels[0].streams: must be a list, got a string",
        ),
        (_delete(["channels", 0, "id"]), "channels[0].id: missing"),
        (_set(["channels", 0, "streams", 1], 42), "channels[0].streams[1]: unknown stream id 42"),
        (
            _set(["channels", 0, "streams", 1], "3"),
            'channels[0].streams[1]: must be a stream id, got "3"',
        ),
        (
            _set(["channels", 0, "streams", 1], 1),
            "channels[0].streams[1]: stream id 1 listed twice",
        ),
        (
            _set(["channels"], [{"id": 7, "streams": [1]}, {"id": 7, "streams": []}]),
            "channels[1].id: duplicate channel id 7 (also channels[0])",
        ),
    ],
)
def test_bad_field_names_its_path(tmp_path, change, expected):
    assert expected in error_of(tmp_path, mutated(change))


def test_every_bad_field_is_named_at_once(tmp_path):
    data = copy.deepcopy(DESIGN_EXAMPLE)
    data["accounts"][1]["max_streams"] = -1
    data["streams"][0]["url"] = ""
    data["streams"][2]["m3u_account"] = 9
    data["channels"][0]["streams"] = [1, "x"]

    message = error_of(tmp_path, data)

    assert message == (
        f"{tmp_path / 'inventory.json'}: accounts[1].max_streams: must be an integer >= 0, "
        "got -1; streams[0].url: missing or empty; streams[2].m3u_account: unknown account "
        'id 9; channels[0].streams[1]: must be a stream id, got "x"'
    )


def test_an_account_with_a_bad_field_is_still_known_to_its_streams(tmp_path):
    data = copy.deepcopy(DESIGN_EXAMPLE)
    data["accounts"][0]["name"] = 5

    message = error_of(tmp_path, data)

    assert message.endswith("accounts[0].name: must be a string, got 5")


def test_an_item_with_a_bad_id_has_its_other_fields_named_too(tmp_path):
    data = copy.deepcopy(DESIGN_EXAMPLE)
    data["accounts"][1].update(id=0, max_streams=-1)
    data["streams"] = data["streams"][:2]  # none refers to the broken account
    data["channels"][0]["streams"] = [1]

    message = error_of(tmp_path, data)

    assert message.endswith(
        "accounts[1].id: must be an integer id > 0, got 0; "
        "accounts[1].max_streams: must be an integer >= 0, got -1"
    )


def test_url_with_credentials_is_not_echoed(tmp_path):
    data = mutated(_set(["streams", 0, "url"], "ftp://user:secret@host/x"))
    assert "secret" not in error_of(tmp_path, data)


def test_not_json_gives_line_and_column(tmp_path):
    path = tmp_path / "inventory.json"
    path.write_text('{\n  "accounts": [\n    {"id": 1,}\n  ]\n}', encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert "invalid JSON" in str(info.value)
    assert "(line 3, column" in str(info.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"[1, 2]", "must be a JSON object, got a list"),
        (b"\xff\xfe{}", "not UTF-8 text"),
    ],
)
def test_bad_file_content(tmp_path, content, expected):
    path = tmp_path / "inventory.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=expected):
        load_inventory(path)


def test_missing_inventory(tmp_path):
    with pytest.raises(InputError, match="no such file") as info:
        load_inventory(tmp_path / "inventory.json")
    assert info.value.missing


# --- viewers ------------------------------------------------------------------------


def test_viewers_file(tmp_path):
    path = write_json(tmp_path, {"accounts": {"1": 1}, "profiles": {"11": 2}}, "viewers.json")
    assert load_viewers(path) == ViewerSnapshot(accounts={1: 1}, profiles={11: 2})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, ViewerSnapshot()),
        ({"accounts": {"2": 0}}, ViewerSnapshot(accounts={2: 0})),
        ({"profiles": {"12": 1}}, ViewerSnapshot(profiles={12: 1})),
    ],
)
def test_viewers_parts_are_optional(tmp_path, data, expected):
    assert load_viewers(write_json(tmp_path, data, "viewers.json")) == expected


def test_missing_viewers_file_is_distinct_from_an_empty_one(tmp_path):
    with pytest.raises(InputError) as info:
        load_viewers(tmp_path / "viewers.json")
    assert info.value.missing
    assert load_viewers(write_json(tmp_path, {}, "viewers.json")) == ViewerSnapshot()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"accounts": {"x": 1}}, 'accounts."x": the key must be an account id (digits)'),
        ({"profiles": {"11": -1}}, 'profiles."11": must be an integer >= 0, got -1'),
        ({"profiles": {"11": True}}, 'profiles."11": must be an integer >= 0, got true'),
        ({"accounts": [1]}, "accounts: must be an object, got a list"),
    ],
)
def test_bad_viewers_file(tmp_path, data, expected):
    with pytest.raises(InputError) as info:
        load_viewers(write_json(tmp_path, data, "viewers.json"))
    assert not info.value.missing
    assert str(info.value) == f"{tmp_path / 'viewers.json'}: {expected}"


def test_truncated_viewers_file_is_an_error(tmp_path):
    path = tmp_path / "viewers.json"
    path.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="empty file") as info:
        load_viewers(path)
    assert not info.value.missing
