"""The file and Dispatcharr sources, and the write-back, against files and the fake Dispatcharr."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from adapters.dispatcharr import DispatcharrClient
from adapters.schema import InputError
from adapters.sources import (
    DispatcharrInventorySource,
    DispatcharrViewerSource,
    DispatcharrWriter,
    FileInventorySource,
    FileViewerSource,
    NullWriter,
)
from app.config import (
    AccountOverride,
    Config,
    DispatcharrSection,
    ResultsSection,
    SourceSection,
)
from app.sources import build_sources
from domain.models import CheckResult, Inventory, Profile, StreamInfo, ViewerSnapshot
from domain.ports import Reordered, SourceError
from tests.app.dashboard_setup import wait_for
from tests.fakes.dispatcharr import FakeDispatcharr
from tests.logcapture import capture_logs

FINISHED = "2026-08-20T10:00:00Z"

INVENTORY: dict[str, Any] = {
    "accounts": [
        {
            "id": 1,
            "name": "Account A",
            "max_streams": 1,
            "profiles": [
                {"id": 11, "name": "default", "is_default": True, "max_streams": 1},
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
        {"id": 1, "name": "A1", "m3u_account": 1, "url": "http://127.0.0.1:9/live/u/p/1.ts"},
        {"id": 2, "name": "B1", "m3u_account": 2, "url": "http://127.0.0.1:9/b/2.ts"},
    ],
    "channels": [{"id": 7, "name": "News", "streams": [1, 2]}],
}


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def result(stream_id: int, status: str, score: float = 0.5, **fields: Any) -> CheckResult:
    fields.setdefault("finished_at", FINISHED)
    return CheckResult(
        stream_id=stream_id,
        account_id=0,
        profile_id=None,
        status=status,  # type: ignore[arg-type]
        score=score,
        **fields,
    )


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def written(writer: DispatcharrWriter, *results: CheckResult) -> None:
    """Queue ``results`` and wait until the writer has written (or given up on) them."""
    for item in results:
        writer.write_result(item)
    assert writer.flush(timeout=30)


# --- file sources -----------------------------------------------------------------------


def test_file_source_applies_overrides(tmp_path: Path):
    path = write_json(tmp_path / "inventory.json", INVENTORY)
    overrides = {1: AccountOverride(max_streams=3, stagger_delay=0.5, reserve_for_viewers=1)}

    inventory = FileInventorySource(path, overrides).load()

    first, second = inventory.accounts
    assert (first.max_streams, first.stagger_delay, first.reserve_for_viewers) == (3, 0.5, 1)
    assert [(p.id, p.max_streams) for p in first.profiles] == [(11, 3), (12, 1)]
    assert second.max_streams == 2
    assert second.stagger_delay is None
    assert [s.id for s in inventory.streams] == [1, 2]
    assert inventory.channels[0].stream_ids == (1, 2)


def test_file_source_reads_the_file_afresh(tmp_path: Path):
    path = write_json(tmp_path / "inventory.json", INVENTORY)
    source = FileInventorySource(path, {})
    assert len(source.load().streams) == 2

    changed = {**INVENTORY, "streams": INVENTORY["streams"][:1], "channels": []}
    write_json(path, changed)

    assert len(source.load().streams) == 1


def test_bad_inventory_is_a_source_error_naming_the_field(tmp_path: Path):
    bad = json.loads(json.dumps(INVENTORY))
    bad["streams"][1]["m3u_account"] = 9
    path = write_json(tmp_path / "inventory.json", bad)

    with pytest.raises(SourceError, match=r"streams\[1\]\.m3u_account") as caught:
        FileInventorySource(path, {}).load()

    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, InputError)


def test_missing_inventory_is_a_source_error(tmp_path: Path):
    with pytest.raises(SourceError, match="no such file"):
        FileInventorySource(tmp_path / "absent.json", {}).load()


def test_file_viewer_source(tmp_path: Path):
    assert FileViewerSource(None).read() == ViewerSnapshot()

    path = write_json(tmp_path / "viewers.json", {"accounts": {"2": 1}, "profiles": {"11": 1}})
    assert FileViewerSource(path).read() == ViewerSnapshot(profiles={11: 1}, accounts={2: 1})

    write_json(path, {"profiles": {"11": -1}})
    with pytest.raises(SourceError, match=r"profiles"):
        FileViewerSource(path).read()

    with pytest.raises(SourceError, match="no such file"):
        FileViewerSource(tmp_path / "absent.json").read()


def test_null_writer_writes_nothing(tmp_path: Path):
    writer = NullWriter()
    writer.write_result(result(1, "ok"))
    inventory = FileInventorySource(write_json(tmp_path / "i.json", INVENTORY), {}).load()
    assert writer.reorder(inventory, (result(1, "dead"), result(2, "ok"))) == {}


# --- Dispatcharr: fixtures ----------------------------------------------------------------


@pytest.fixture
def fake(fake_dispatcharr: FakeDispatcharr) -> FakeDispatcharr:
    fake_dispatcharr.seed_sample()
    return fake_dispatcharr


@pytest.fixture
def client(fake: FakeDispatcharr) -> Iterator[DispatcharrClient]:
    with DispatcharrClient(
        fake.url,
        username=fake.username,
        password=fake.password,
        retries=1,
        backoff_factor=0.0,
        timeout=5.0,
    ) as made:
        yield made


@pytest.fixture
def source(client: DispatcharrClient) -> DispatcharrInventorySource:
    return DispatcharrInventorySource(client, DispatcharrSection(), {})


@pytest.fixture
def inventory(source: DispatcharrInventorySource) -> Inventory:
    return source.load()


# --- Dispatcharr: inventory ---------------------------------------------------------------


def test_dispatcharr_full_load(client: DispatcharrClient):
    overrides = {3: AccountOverride(max_streams=4, stagger_delay=0.25)}
    source = DispatcharrInventorySource(client, DispatcharrSection(), overrides)

    inventory = source.load()

    by_id = {a.id: a for a in inventory.accounts}
    assert sorted(by_id) == [1, 3, 4]
    provider_a = by_id[3]
    assert provider_a.account_type == "XC"
    assert (provider_a.username, provider_a.password) == ("u1", "pass1")
    assert provider_a.server_url == "http://127.0.0.1:9"
    assert (provider_a.max_streams, provider_a.stagger_delay) == (4, 0.25)
    assert provider_a.profiles == (
        Profile(
            id=5,
            name="ProviderA Default",
            max_streams=4,
            is_default=True,
            search_pattern="^(.*)$",
            replace_pattern="$1",
        ),
        Profile(
            id=9,
            name="Second login",
            max_streams=1,
            search_pattern="/u1/pass1/",
            replace_pattern="/u2/pass2/",
        ),
    )
    assert by_id[4].max_streams == 1
    assert by_id[1].max_streams == 0  # the custom account: unlimited
    assert by_id[1].account_type == "STD"

    streams = {s.id: s for s in inventory.streams}
    assert list(streams) == [812, 977, 1033, 2001]
    bbc = streams[812]
    assert (bbc.name, bbc.account_id, bbc.stream_id, bbc.channel_group) == (
        "BBC One HD",
        3,
        12345,
        14,
    )
    assert bbc.url == "http://127.0.0.1:9/live/u1/pass1/12345.ts"
    assert streams[1033].account_id == 4
    assert streams[1033].stream_id is None

    channels = {c.id: c for c in inventory.channels}
    assert channels[42].stream_ids == (812, 977, 1033)
    assert channels[42].uuid == "6f1c2a8e-3b5d-4c1e-9a7f-1d2e3f4a5b6c"
    assert channels[42].channel_group == 14
    assert channels[43].stream_ids == (2001,)

    loaded = source.last_loaded
    assert loaded is not None
    assert loaded.accounts == inventory.accounts
    assert dict(loaded.stream_accounts) == {812: 3, 977: 3, 1033: 4, 2001: 1}


def test_dispatcharr_load_honours_excludes(client: DispatcharrClient):
    section = DispatcharrSection(exclude_channels=("news",))
    inventory = DispatcharrInventorySource(client, section, {}).load()

    assert [c.id for c in inventory.channels] == [42]
    assert [s.id for s in inventory.streams] == [812, 977, 1033]


def test_dispatcharr_bad_answer_is_a_source_error_naming_the_endpoint(
    fake: FakeDispatcharr, source: DispatcharrInventorySource
):
    fake.malform_next("streams", "missing_results")

    with pytest.raises(SourceError, match=r"/api/channels/streams/.*results"):
        source.load()
    assert source.last_loaded is None


def test_dispatcharr_down_is_a_source_error(
    fake: FakeDispatcharr, client: DispatcharrClient, source: DispatcharrInventorySource
):
    inventory = source.load()
    fake.stop()

    with pytest.raises(SourceError, match=r"/api/m3u/accounts/.*unavailable"):
        source.load()
    with pytest.raises(SourceError, match=r"/proxy/stats/"):
        DispatcharrViewerSource(client, source).read()
    with capture_logs() as logs:
        written(DispatcharrWriter(client), result(812, "ok"))
    (failed,) = events(logs, "writeback_failed")
    assert "/api/channels/streams/812/" in failed["error"]
    assert "unavailable" in failed["error"]

    with capture_logs() as logs:
        counts = DispatcharrWriter(client).reorder(
            inventory, (result(812, "dead"), result(977, "ok"))
        )
    assert counts == {"changed": 0, "unchanged": 0, "skipped": 1, "failed": 0}
    assert events(logs, "reorder_aborted")


def test_closed_port_is_a_source_error():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with DispatcharrClient(
        f"http://127.0.0.1:{port}", api_key="k", retries=0, backoff_factor=0.0, timeout=2.0
    ) as closed:
        source = DispatcharrInventorySource(closed, DispatcharrSection(), {})
        with pytest.raises(SourceError, match=r"Dispatcharr inventory load failed") as caught:
            source.load()
    assert f"127.0.0.1:{port}" in str(caught.value)


# --- Dispatcharr: viewers -----------------------------------------------------------------


def test_viewers_before_any_load_read_the_accounts(
    fake: FakeDispatcharr, client: DispatcharrClient, source: DispatcharrInventorySource
):
    fake.add_live_channel(
        "6f1c2a8e-3b5d-4c1e-9a7f-1d2e3f4a5b6c", m3u_profile_id=9, stream_id=812, client_count=3
    )
    fake.add_vod_connection(400)

    snapshot = DispatcharrViewerSource(client, source).read()

    assert snapshot == ViewerSnapshot(profiles={9: 1, 400: 1}, accounts={})
    assert fake.count("accounts") == 1


def test_viewers_use_the_last_inventory_and_its_stream_map(
    fake: FakeDispatcharr, client: DispatcharrClient, source: DispatcharrInventorySource
):
    source.load()
    fake.add_live_channel("6f1c2a8e-3b5d-4c1e-9a7f-1d2e3f4a5b6c", m3u_profile_id=5)
    fake.add_live_channel(
        "6f1c2a8e-3b5d-4c1e-9a7f-000000000043", m3u_profile_id=None, stream_id=1033
    )
    fake.add_live_channel(
        "6f1c2a8e-3b5d-4c1e-9a7f-000000000044", m3u_profile_id=9, state="stopping"
    )

    snapshot = DispatcharrViewerSource(client, source).read()

    # The stream's account (4) holds its default login (400) for the viewer.
    assert snapshot == ViewerSnapshot(profiles={5: 1, 400: 1})
    assert fake.count("accounts") == 1  # only the inventory's own read


def test_viewers_fall_back_to_ts_status_on_old_dispatcharr():
    old = FakeDispatcharr(stats_available=False).start()
    try:
        old.seed_sample()
        old.add_live_channel("6f1c2a8e-3b5d-4c1e-9a7f-1d2e3f4a5b6c", m3u_profile_id=400)
        with DispatcharrClient(old.url, api_key=old.api_key, backoff_factor=0.0) as api:
            viewers = DispatcharrViewerSource(
                api, DispatcharrInventorySource(api, DispatcharrSection(), {})
            )
            assert viewers.read().profiles == {400: 1}
            assert viewers.read().profiles == {400: 1}
        assert old.count("proxy_stats") == 1
        assert old.count("proxy_status") == 2
    finally:
        old.stop()


# --- Dispatcharr: stats write-back ------------------------------------------------------


def test_write_result_merges_the_stats_the_ui_reads(
    fake: FakeDispatcharr, client: DispatcharrClient
):
    fake.streams[812]["stream_stats"]["custom_key"] = "keep me"
    info = StreamInfo(
        resolution="1280x720",
        width=1280,
        height=720,
        fps=50.0,
        video_codec="hevc",
        audio_codec="ac3",
        audio_channels="5.1",
        sample_rate=48000,
        bitrate_kbps=3200.0,
        stream_type="hls",
    )
    ok = result(812, "ok", 0.83, resolution="1280x720", fps=50.0, video_codec="hevc", info=info)

    written(DispatcharrWriter(client), ok)

    assert len(fake.stream_patches) == 1
    stream_id, body = fake.stream_patches[0]
    assert stream_id == 812
    assert body["stream_stats_updated_at"] == FINISHED
    stats = body["stream_stats"]
    assert stats["resolution"] == "1280x720"
    assert stats["source_fps"] == 50.0
    assert stats["video_codec"] == "hevc"
    assert stats["audio_codec"] == "ac3"
    assert stats["audio_channels"] == "5.1"
    assert stats["video_bitrate"] == 3200.0
    assert stats["ffmpeg_output_bitrate"] == 3200.0
    assert stats["stream_type"] == "hls"
    assert stats["checker_status"] == "ok"
    assert stats["checker_score"] == 0.83
    # Keys the check did not measure, and keys we do not know, survive the merge.
    assert stats["custom_key"] == "keep me"
    assert stats["audio_bitrate"] == 128.0
    assert stats["pixel_format"] == "yuv420p"
    assert fake.streams[812]["stream_stats"] == stats
    assert fake.streams[812]["stream_stats_updated_at"] == FINISHED


def test_write_result_of_a_dead_stream_keeps_the_old_media_stats(
    fake: FakeDispatcharr, client: DispatcharrClient
):
    written(DispatcharrWriter(client), result(812, "dead", 0.0, finished_at=None, error="http_404"))

    _, body = fake.stream_patches[0]
    stats = body["stream_stats"]
    assert (stats["checker_status"], stats["checker_error"]) == ("dead", "http_404")
    assert stats["resolution"] == "1920x1080"
    updated = body["stream_stats_updated_at"]
    assert updated.endswith("Z")
    assert updated == stats["checker_checked_at"]


def test_write_result_of_a_stream_without_stats(fake: FakeDispatcharr, client: DispatcharrClient):
    written(DispatcharrWriter(client), result(977, "ok", 0.4, resolution="720x576"))

    assert fake.streams[977]["stream_stats"]["resolution"] == "720x576"


def test_cancelled_results_are_not_written(fake: FakeDispatcharr, client: DispatcharrClient):
    written(DispatcharrWriter(client), result(812, "cancelled"))

    assert fake.count("stream") == 0


def test_a_failed_check_keeps_the_stats_and_only_notes_the_error(
    fake: FakeDispatcharr, client: DispatcharrClient
):
    before = dict(fake.streams[812]["stream_stats"])
    updated_at = fake.streams[812]["stream_stats_updated_at"]

    written(DispatcharrWriter(client), result(812, "error", 0.0, error="provider_busy"))

    stats = fake.streams[812]["stream_stats"]
    assert "checker_status" not in stats  # no "error" verdict over the last good stats
    assert {k: v for k, v in stats.items() if not k.startswith("checker_last_")} == before
    assert (stats["checker_last_error"], stats["checker_last_error_at"]) == (
        "provider_busy",
        FINISHED,
    )
    assert fake.streams[812]["stream_stats_updated_at"] == updated_at


def test_a_dropped_connection_loses_no_stats_write(
    fake: FakeDispatcharr, client: DispatcharrClient
):
    ids = list(range(5001, 5010))
    for stream_id in ids:
        fake.add_stream(stream_id, f"s{stream_id}", 4, f"http://127.0.0.1:9/s/{stream_id}.ts")
    fake.drop_next("stream", method="PATCH", skip=4)  # the fifth of nine PATCHes
    writer = DispatcharrWriter(client)

    written(writer, *(result(stream_id, "ok", 0.7, resolution="1280x720") for stream_id in ids))

    statuses = [(fake.streams[sid]["stream_stats"] or {}).get("checker_status") for sid in ids]
    assert statuses == ["ok"] * len(ids)


def test_write_result_dry_run_patches_nothing(fake: FakeDispatcharr, client: DispatcharrClient):
    with capture_logs() as logs:
        written(DispatcharrWriter(client, dry_run=True), result(812, "ok", 0.9))

    assert fake.stream_patches == []
    (entry,) = events(logs, "stats_dry_run")
    assert entry["stream_id"] == 812
    assert entry["body"]["stream_stats"]["checker_status"] == "ok"


def test_write_result_of_an_unknown_stream_is_logged_and_costs_only_that_write(
    fake: FakeDispatcharr, client: DispatcharrClient
):
    writer = DispatcharrWriter(client)
    with capture_logs() as logs:
        written(writer, result(999, "ok"))
        written(writer, result(999, "ok"), result(812, "ok"))  # one GET of both, then one PATCH

    failures = events(logs, "writeback_failed")
    assert [entry["stream_id"] for entry in failures] == [999, 999]
    assert "/api/channels/streams/999/: HTTP 404" in failures[0]["error"]
    assert fake.streams[812]["stream_stats"]["checker_status"] == "ok"
    assert writer.counts() == {"written": 1, "failed": 2}


def add_streams(fake: FakeDispatcharr, ids: range) -> None:
    for stream_id in ids:
        fake.add_stream(stream_id, f"s{stream_id}", 4, f"http://127.0.0.1:9/s/{stream_id}.ts")


def test_stats_are_written_concurrently_never_above_the_limit(
    fake: FakeDispatcharr, client: DispatcharrClient
):
    ids = range(6001, 6041)
    add_streams(fake, ids)
    writer = DispatcharrWriter(client, concurrency=4)
    fake.hold("stream", "PATCH")

    for stream_id in ids:
        writer.write_result(result(stream_id, "ok", 0.6))
    assert fake.wait_in_flight(4, timeout=10)  # four writes open at once ...
    assert fake.in_flight == 4  # ... and, held there, no fifth
    assert not writer.flush(timeout=0.05)  # still held: not all written
    fake.release()

    assert writer.flush(timeout=30)
    assert fake.max_in_flight == 4
    assert sorted(sid for sid, _ in fake.stream_patches) == list(ids)
    assert writer.counts() == {"written": 40, "failed": 0}
    # The backlog's stats were read in batches (?ids=...), not one GET per stream.
    assert fake.count("streams", "GET") >= 1
    assert fake.count("streams", "GET") + fake.count("stream", "GET") < 20


def test_one_write_at_a_time_with_concurrency_one(fake: FakeDispatcharr, client: DispatcharrClient):
    ids = range(6001, 6013)
    add_streams(fake, ids)

    written(DispatcharrWriter(client, concurrency=1), *(result(sid, "dead") for sid in ids))

    assert fake.max_in_flight == 1
    assert [sid for sid, _ in fake.stream_patches] == list(ids)  # in the order results came


def test_writes_of_one_stream_keep_their_order(fake: FakeDispatcharr, client: DispatcharrClient):
    ids = range(6001, 6031)
    add_streams(fake, ids)
    writer = DispatcharrWriter(client, concurrency=4)

    writer.write_result(result(6001, "ok", 0.9))
    for stream_id in ids[1:]:
        writer.write_result(result(stream_id, "ok", 0.5))
    writer.write_result(result(6001, "dead", 0.0, error="stalled"))
    writer.write_result(result(6001, "error", error="provider_busy"))
    assert writer.flush(timeout=30)

    bodies = [body["stream_stats"] for sid, body in fake.stream_patches if sid == 6001]
    assert [b.get("checker_status") for b in bodies] == ["ok", "dead", "dead"]
    assert bodies[-1]["checker_last_error"] == "provider_busy"
    assert fake.streams[6001]["stream_stats"] == bodies[-1]


def pairs_of_channels(
    fake: FakeDispatcharr, source: DispatcharrInventorySource, ids: range
) -> tuple[Inventory, tuple[CheckResult, ...]]:
    """A channel per two streams of ``ids``; the second of each scores better."""
    add_streams(fake, ids)
    for offset in range(0, len(ids), 2):
        fake.add_channel(700 + offset, f"c{offset}", [ids[offset], ids[offset + 1]])
    return source.load(), tuple(result(sid, "ok", sid / 10_000) for sid in ids)


def test_reorder_begins_after_every_stats_write_has_ended(
    fake: FakeDispatcharr, client: DispatcharrClient, source: DispatcharrInventorySource
):
    ids = range(6001, 6041)
    inventory, cycle = pairs_of_channels(fake, source, ids)
    writer = DispatcharrWriter(client, concurrency=4)
    for item in cycle:
        writer.write_result(item)

    counts = writer.reorder(inventory, cycle)

    assert counts == {"changed": 20, "unchanged": 0, "skipped": 0, "failed": 0}
    # Each channel's own outcome, and its order as read and as written.
    assert isinstance(counts, Reordered)
    assert set(counts.channels.values()) == {"changed"}
    assert counts.orders[700] == ([ids[0], ids[1]], [ids[1], ids[0]])
    routes = [call.route for call in fake.calls]
    last_stats = max(i for i, route in enumerate(routes) if route in ("stream", "streams"))
    assert last_stats < routes.index("channel")
    assert len(fake.stream_patches) == 40
    assert all(fake.channels[700 + o]["streams"] == [ids[o + 1], ids[o]] for o in range(0, 40, 2))


def test_channels_are_reordered_concurrently_never_above_the_limit(
    fake: FakeDispatcharr, client: DispatcharrClient, source: DispatcharrInventorySource
):
    ids = range(6001, 6041)
    inventory, cycle = pairs_of_channels(fake, source, ids)
    writer = DispatcharrWriter(client, concurrency=3)
    fake.hold("channel", "GET")

    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(writer.reorder, inventory, cycle)
        assert fake.wait_in_flight(3, timeout=10)
        assert fake.in_flight == 3
        fake.release()
        counts = running.result(timeout=30)

    assert counts == {"changed": 20, "unchanged": 0, "skipped": 0, "failed": 0}
    assert fake.max_in_flight == 3
    assert sorted(cid for cid, _ in fake.channel_patches) == list(range(700, 740, 2))


def test_reorder_threads_never_hold_up_a_stopping_process(
    fake: FakeDispatcharr, client: DispatcharrClient, source: DispatcharrInventorySource
):
    # A daemon stopped mid-reorder must exit within its budget: Python waits at
    # exit for every non-daemon thread, and a pool's threads would go on through
    # every queued channel (1,000 channels: about a minute after SIGTERM).
    inventory, cycle = pairs_of_channels(fake, source, range(6001, 6011))
    writer = DispatcharrWriter(client, concurrency=3)
    fake.hold("channel", "GET")
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(writer.reorder, inventory, cycle)
        assert fake.wait_in_flight(3, timeout=10)
        workers = [t for t in threading.enumerate() if t.name.startswith("reorder")]
        fake.release()
        running.result(timeout=30)
    assert len(workers) == 3
    assert all(t.daemon for t in workers)


# --- Dispatcharr: reorder -----------------------------------------------------------------

CYCLE = (result(812, "dead"), result(977, "ok", 0.9), result(1033, "ok", 0.5))


def test_reorder_puts_dead_last_and_keeps_every_stream(
    fake: FakeDispatcharr, client: DispatcharrClient, inventory: Inventory
):
    with capture_logs() as logs:
        counts = DispatcharrWriter(client).reorder(inventory, (*CYCLE, result(2001, "ok")))

    assert counts == {"changed": 1, "unchanged": 1, "skipped": 0, "failed": 0}
    assert fake.channel_patches == [(42, {"streams": [977, 1033, 812]})]
    assert fake.channels[42]["streams"] == [977, 1033, 812]
    (entry,) = events(logs, "channel_reordered")
    assert (entry["old"], entry["new"]) == ([812, 977, 1033], [977, 1033, 812])
    # The single-stream channel needs no read at all.
    assert fake.count("channel", "GET") == 1


def test_reorder_never_demotes_a_stream_whose_check_errored(
    fake: FakeDispatcharr, client: DispatcharrClient, inventory: Inventory
):
    cycle = (
        result(812, "error", 0.0, error="account_unauthorized"),
        result(977, "dead"),
        result(1033, "ok", 0.5),
    )

    counts = DispatcharrWriter(client).reorder(inventory, cycle)

    assert counts == {"changed": 1, "unchanged": 0, "skipped": 0, "failed": 0}
    # 812 keeps the first place; the two judged streams are sorted into theirs.
    assert fake.channels[42]["streams"] == [812, 1033, 977]


def test_reorder_leaves_channels_whose_checks_all_errored(
    fake: FakeDispatcharr, client: DispatcharrClient, inventory: Inventory
):
    cycle = (result(812, "error", error="provider_busy"), result(977, "cancelled"))

    counts = DispatcharrWriter(client).reorder(inventory, cycle)

    assert counts == {"changed": 0, "unchanged": 0, "skipped": 0, "failed": 0}
    assert fake.count("channel") == 0


def test_reorder_leaves_a_channel_already_in_order(
    fake: FakeDispatcharr, client: DispatcharrClient, inventory: Inventory
):
    cycle = (result(812, "ok", 0.9), result(977, "ok", 0.5), result(1033, "error"))

    counts = DispatcharrWriter(client).reorder(inventory, cycle)

    assert counts == {"changed": 0, "unchanged": 1, "skipped": 0, "failed": 0}
    assert fake.channel_patches == []


def test_reorder_ignores_channels_without_results(
    fake: FakeDispatcharr, client: DispatcharrClient, inventory: Inventory
):
    counts = DispatcharrWriter(client).reorder(inventory, (result(812, "cancelled"),))

    assert counts == {"changed": 0, "unchanged": 0, "skipped": 0, "failed": 0}
    assert fake.count("channel") == 0


def test_channel_edited_after_the_cycle_read_is_not_patched(
    fake: FakeDispatcharr, client: DispatcharrClient, source: DispatcharrInventorySource
):
    edited: list[int] = []

    def user_edits(f: FakeDispatcharr, channel_id: int) -> None:
        # The user drops stream 1033 right after the cycle read the channel list.
        if channel_id == 42 and not edited:
            edited.append(channel_id)
            f.set_channel_streams(42, [977, 812])

    fake.on_channel_read = user_edits
    inventory = source.load()
    assert inventory.channels[0].stream_ids == (812, 977, 1033)

    with capture_logs() as logs:
        counts = DispatcharrWriter(client).reorder(inventory, CYCLE)

    assert counts == {"changed": 0, "unchanged": 0, "skipped": 1, "failed": 0}
    assert fake.channel_patches == []
    assert fake.channels[42]["streams"] == [977, 812]
    (entry,) = events(logs, "reorder_skipped_changed")
    assert entry["current_streams"] == [977, 812]


def test_channel_with_a_stream_added_meanwhile_is_not_patched(
    fake: FakeDispatcharr, client: DispatcharrClient, inventory: Inventory
):
    fake.set_channel_streams(42, [812, 977, 1033, 2001])

    counts = DispatcharrWriter(client).reorder(inventory, CYCLE)

    assert counts["skipped"] == 1
    assert fake.channel_patches == []


def test_reorder_starts_from_the_fresh_order(
    fake: FakeDispatcharr, client: DispatcharrClient, inventory: Inventory
):
    fake.set_channel_streams(42, [1033, 812, 977])  # same streams, moved by the user

    counts = DispatcharrWriter(client).reorder(inventory, CYCLE)

    assert counts["changed"] == 1
    assert fake.channel_patches == [(42, {"streams": [977, 1033, 812]})]


def test_duplicate_or_malformed_channels_are_skipped(
    fake: FakeDispatcharr, client: DispatcharrClient, inventory: Inventory
):
    fake.set_channel_streams(42, [812, 977, 1033, 977])
    with capture_logs() as logs:
        counts = DispatcharrWriter(client).reorder(inventory, CYCLE)
    assert counts["skipped"] == 1
    assert events(logs, "reorder_skipped")[0]["reason"] == "duplicate_stream_ids"

    fake.set_channel_streams(42, [812, 977, 1033])
    fake.malform_next("channel", "wrong_shape")
    counts = DispatcharrWriter(client).reorder(inventory, CYCLE)
    assert counts["skipped"] == 1

    fake.malform_next("channel", "truncated")
    counts = DispatcharrWriter(client).reorder(inventory, CYCLE)
    assert counts["skipped"] == 1
    assert fake.channel_patches == []


def test_reorder_dry_run_patches_nothing(
    fake: FakeDispatcharr, client: DispatcharrClient, inventory: Inventory
):
    with capture_logs() as logs:
        counts = DispatcharrWriter(client, dry_run=True).reorder(inventory, CYCLE)

    assert counts == {"changed": 0, "unchanged": 0, "skipped": 0, "failed": 0, "planned": 1}
    assert fake.count("channel", "PATCH") == 0
    (entry,) = events(logs, "reorder_dry_run")
    assert (entry["channel_id"], entry["old"], entry["new"]) == (
        42,
        [812, 977, 1033],
        [977, 1033, 812],
    )


def test_reorder_disabled_patches_nothing(
    fake: FakeDispatcharr, client: DispatcharrClient, inventory: Inventory
):
    writer = DispatcharrWriter(client, reorder=False)
    with capture_logs() as logs:
        assert writer.reorder(inventory, CYCLE) == {"disabled": 1}
        assert writer.reorder(inventory, CYCLE) == {"disabled": 1}

    assert fake.count("channel") == 0
    assert len(events(logs, "reorder_disabled")) == 1


def test_a_500_on_one_channel_skips_only_that_one(
    fake: FakeDispatcharr, client: DispatcharrClient, source: DispatcharrInventorySource
):
    fake.add_channel(44, "BBC One backup", [1033, 977])
    inventory = source.load()
    fake.fail_next("channel", 2, status=500)  # the first read and the client's retry

    # One channel at a time, so "the first read" is channel 42's.
    counts = DispatcharrWriter(client, concurrency=1).reorder(inventory, CYCLE)

    assert counts == {"changed": 1, "unchanged": 0, "skipped": 1, "failed": 0}
    assert fake.channel_patches == [(44, {"streams": [977, 1033]})]
    assert fake.channels[42]["streams"] == [812, 977, 1033]


def test_a_refused_patch_fails_only_that_channel(
    fake: FakeDispatcharr, client: DispatcharrClient, source: DispatcharrInventorySource
):
    fake.add_channel(44, "BBC One backup", [1033, 977])
    inventory = source.load()
    fake.fail_next("channel", 1, status=400, skip=1)  # the read passes, the PATCH not

    counts = DispatcharrWriter(client, concurrency=1).reorder(inventory, CYCLE)

    assert counts == {"changed": 1, "unchanged": 0, "skipped": 0, "failed": 1}
    assert [channel_id for channel_id, _ in fake.channel_patches] == [44]


def test_token_expiry_mid_reorder_still_works(
    fake: FakeDispatcharr, client: DispatcharrClient, source: DispatcharrInventorySource
):
    fake.add_channel(44, "BBC One backup", [1033, 977])
    inventory = source.load()
    expired: list[int] = []

    def expire_once(f: FakeDispatcharr, channel_id: int) -> None:
        if not expired:
            expired.append(channel_id)
            f.expire_access_tokens()

    fake.on_channel_read = expire_once
    logins = fake.logins

    counts = DispatcharrWriter(client).reorder(inventory, CYCLE)

    assert counts == {"changed": 2, "unchanged": 0, "skipped": 0, "failed": 0}
    assert sorted(channel_id for channel_id, _ in fake.channel_patches) == [42, 44]
    assert fake.refreshes == 1
    assert fake.logins == logins


# --- wiring -----------------------------------------------------------------------------


def test_build_sources_for_a_file(tmp_path: Path):
    path = write_json(tmp_path / "inventory.json", INVENTORY)
    config = Config(
        source=SourceSection(type="file", path=path, viewers_path=None),
        accounts={2: AccountOverride(max_streams=5)},
    )

    sources = build_sources(config, environ={})

    assert isinstance(sources.inventory, FileInventorySource)
    assert isinstance(sources.viewers, FileViewerSource)
    assert isinstance(sources.writer, NullWriter)
    assert sources.client is None
    assert sources.inventory.load().accounts[1].max_streams == 5
    assert sources.viewers.read() == ViewerSnapshot()


def test_build_sources_for_dispatcharr_needs_credentials():
    config = Config(source=SourceSection(type="dispatcharr"))

    with pytest.raises(SourceError) as caught:
        build_sources(config, environ={})

    message = str(caught.value)
    assert "DISPATCHARR_API_KEY" in message
    assert "DISPATCHARR_PASSWORD" in message
    assert "'admin'" in message


def test_build_sources_for_dispatcharr(fake: FakeDispatcharr):
    config = Config(
        source=SourceSection(type="dispatcharr"),
        dispatcharr=DispatcharrSection(url=fake.url, password_env="TEST_DISPATCHARR_PW"),
        results=ResultsSection(reorder=False, dry_run=True),
        accounts={4: AccountOverride(max_streams=2)},
    )

    sources = build_sources(config, environ={"TEST_DISPATCHARR_PW": fake.password})
    try:
        assert isinstance(sources.inventory, DispatcharrInventorySource)
        assert isinstance(sources.viewers, DispatcharrViewerSource)
        assert isinstance(sources.writer, DispatcharrWriter)
        assert sources.client is not None
        inventory = sources.inventory.load()
        assert inventory.account(4) is not None
        assert inventory.account(4).max_streams == 2  # type: ignore[union-attr]
        assert sources.viewers.read() == ViewerSnapshot()
        assert sources.writer.reorder(inventory, CYCLE) == {"disabled": 1}
        assert fake.logins == 1
    finally:
        sources.client.close()  # type: ignore[union-attr]


def test_build_sources_prefers_an_api_key(fake: FakeDispatcharr):
    config = Config(
        source=SourceSection(type="dispatcharr"),
        dispatcharr=DispatcharrSection(url=fake.url),
    )

    sources = build_sources(config, environ={"DISPATCHARR_API_KEY": fake.api_key})
    try:
        assert len(sources.inventory.load().streams) == 4
        assert fake.logins == 0
    finally:
        sources.client.close()  # type: ignore[union-attr]


class UpdatedMeanwhile(DispatcharrClient):
    """A client under which Dispatcharr updates ``stream_id``'s stats itself (a viewer's
    playback measured it) while our PATCH of ``before_patch_of`` is on its way."""

    def __init__(self, fake: FakeDispatcharr, before_patch_of: int, stream_id: int) -> None:
        super().__init__(fake.url, api_key=fake.api_key, retries=1, backoff_factor=0.0)
        self._fake, self._before, self._stream = fake, before_patch_of, stream_id

    def patch_stream(self, stream_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        if stream_id == self._before:
            with self._fake._lock:
                stats = self._fake.streams[self._stream].setdefault("stream_stats", {}) or {}
                stats["source_fps"] = 50.0  # a key we never write
                self._fake.streams[self._stream]["stream_stats"] = stats
        return super().patch_stream(stream_id, body)


def test_a_stale_batch_read_is_read_again_so_dispatcharrs_own_update_stays(
    fake: FakeDispatcharr,
):
    # The batch's stats were read once and merged into PATCHes for as long as the
    # batch took: an update Dispatcharr made meanwhile was written over.
    add_streams(fake, range(7000, 7003))
    ticks = iter(range(0, 1000, 5))  # each look at the clock: 5 s later
    client = UpdatedMeanwhile(fake, before_patch_of=7001, stream_id=7002)
    with client:
        writer = DispatcharrWriter(client, concurrency=1, clock=lambda: float(next(ticks)))
        fake.hold("stream", "PATCH")
        writer.write_result(result(7000, "ok"))
        assert wait_for(lambda: fake.count("stream", "PATCH") == 1, timeout=10)
        writer.write_result(result(7001, "ok"))  # these two queue up as one batch
        writer.write_result(result(7002, "ok"))
        fake.release()
        assert writer.flush(timeout=30)
    assert fake.count("streams", "GET") == 2  # the batch, then its rest afresh
    stats = fake.streams[7002]["stream_stats"]
    assert stats["source_fps"] == 50.0
    assert stats["checker_status"] == "ok"


@pytest.mark.parametrize(
    "odd", ['{"audio_codec": "aac", "custom_note": "x"}', "", "null", ["aac"], 7]
)
def test_stats_that_are_no_object_are_never_written_over(
    fake: FakeDispatcharr, client: DispatcharrClient, odd: object
):
    # A stream_stats that is a string (JSON written as text by some tool), a list
    # or a number was taken as empty: the PATCH then replaced it with ours alone.
    add_streams(fake, range(7100, 7101))
    with fake._lock:
        fake.streams[7100]["stream_stats"] = odd
    writer = DispatcharrWriter(client, concurrency=1)
    with capture_logs() as logs:
        written(writer, result(7100, "ok"))
    if isinstance(odd, str):  # JSON text of an object: read as that object; "" is empty
        stats = fake.streams[7100]["stream_stats"]
        assert stats["checker_status"] == "ok"
        assert stats.get("custom_note") == ("x" if odd.startswith("{") else None)
        return
    assert fake.stream_patches == []  # left alone ...
    assert writer.counts() == {"written": 0, "failed": 1}
    failed = [e for e in logs if e["event"] == "writeback_failed"]
    assert len(failed) == 1  # ... and said why
    assert "stream_stats is" in failed[0]["error"]
