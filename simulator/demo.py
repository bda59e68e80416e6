"""The demo provider: three accounts, twelve streams, four channels.

:func:`demo_provider` gives the simulator's logins and streams and
:func:`demo_setup` the matching inventory (the DESIGN's inventory JSON), so
``python main.py demo`` and tests check a provider whose answers are known:

- account 1 (limit 1): a 1080p stream, a low-res one and a dead one;
- account 2 (limit 2): 720p, HEVC, no-audio, a stalled stream, an HLS one
  whose master playlist lists its low-res variant before its 720p one, and a
  DASH one whose manifest does the same;
- account 3: two profiles (logins) of limit 1 each, the second rewriting the
  credentials of the first; 720p, low-res and a slow-starting stream.
"""

from __future__ import annotations

from typing import Any

from simulator.server import SimAccount, SimStream, url_extension

_LOGINS = {
    1: ("demo1", "pass1"),
    2: ("demo2", "pass2"),
    3: ("demo3", "pass3"),
}
_SECOND_LOGIN = ("demo3b", "pass3b")

# stream id: (name, account id, simulator behaviour)
_STREAMS: dict[int, tuple[str, int, SimStream]] = {
    101: ("News FHD", 1, SimStream("ok", "fhd")),
    102: ("News SD", 1, SimStream("lowres")),
    103: ("Movies Old", 1, SimStream("dead")),
    104: ("News HD", 2, SimStream("ok", "hd")),
    105: ("Sports HEVC", 2, SimStream("hevc")),
    106: ("Movies Silent", 2, SimStream("noaudio")),
    107: ("Sports Frozen", 2, SimStream("stall")),
    108: ("Sports HD", 3, SimStream("ok", "hd")),
    109: ("Movies SD", 3, SimStream("lowres")),
    110: ("Kids HD", 3, SimStream("slow_start", "hd", start_delay_s=1.0)),
    111: ("News HLS", 2, SimStream("hls", hls_variants=("lowres", "hd"))),
    112: ("Sports DASH", 2, SimStream("dash", dash_variants=("lowres", "hd"))),
}

_CHANNELS: list[tuple[int, str, list[int]]] = [
    (1, "News", [102, 104, 101, 111]),
    (2, "Sports", [107, 108, 105, 112]),
    (3, "Movies", [103, 109, 106]),
    (4, "Kids", [110, 102]),
]


def demo_provider() -> tuple[list[SimAccount], dict[int, SimStream]]:
    """The simulator's logins (with their caps) and streams for the demo."""
    accounts = [
        SimAccount(*_LOGINS[1], max_connections=1),
        SimAccount(*_LOGINS[2], max_connections=2),
        SimAccount(*_LOGINS[3], max_connections=1),
        SimAccount(*_SECOND_LOGIN, max_connections=1),
    ]
    streams = {stream_id: spec for stream_id, (_, _, spec) in _STREAMS.items()}
    return accounts, streams


def demo_setup(base_url: str) -> dict[str, Any]:
    """The demo inventory, with stream URLs pointing at the simulator at ``base_url``.

    Args:
        base_url: What :meth:`ProviderSimulator.start` returned.

    Returns:
        A dict in the DESIGN's inventory JSON format.
    """
    base = base_url.rstrip("/")
    user3, pass3 = _LOGINS[3]
    user3b, pass3b = _SECOND_LOGIN
    accounts: list[dict[str, Any]] = [
        {"id": 1, "name": "Demo One", "max_streams": 1},
        {"id": 2, "name": "Demo Two", "max_streams": 2},
        {
            "id": 3,
            "name": "Demo Three",
            "max_streams": 1,
            "profiles": [
                {
                    "id": 31,
                    "name": "default",
                    "is_default": True,
                    "max_streams": 1,
                    "search_pattern": "^(.*)$",
                    "replace_pattern": "$1",
                },
                {
                    "id": 32,
                    "name": "second login",
                    "max_streams": 1,
                    "search_pattern": f"/live/{user3}/{pass3}/",
                    "replace_pattern": f"/live/{user3b}/{pass3b}/",
                },
            ],
        },
    ]
    streams = []
    for stream_id, (name, account_id, spec) in _STREAMS.items():
        user, password = _LOGINS[account_id]
        url = f"{base}/live/{user}/{password}/{stream_id}.{url_extension(spec)}"
        streams.append({"id": stream_id, "name": name, "m3u_account": account_id, "url": url})
    channels = [
        {"id": channel_id, "name": name, "streams": list(stream_ids)}
        for channel_id, name, stream_ids in _CHANNELS
    ]
    return {"accounts": accounts, "streams": streams, "channels": channels}
