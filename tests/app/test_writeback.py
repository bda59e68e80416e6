"""The result sink with the concurrent Dispatcharr writer: a flush means written."""

from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest

from actors.messages import Flush, ResultReady
from actors.sink import ResultSink
from adapters.dispatcharr import DispatcharrClient
from adapters.sources import DispatcharrWriter
from app.metrics import Metrics
from app.observed import MeteredWriter
from domain.models import CheckResult
from tests.fakes.dispatcharr import FakeDispatcharr

IDS = range(7001, 7041)


@pytest.fixture
def fake(fake_dispatcharr: FakeDispatcharr) -> FakeDispatcharr:
    fake_dispatcharr.add_account(1, "A", max_streams=1)
    for stream_id in IDS:
        fake_dispatcharr.add_stream(
            stream_id, f"s{stream_id}", 1, f"http://127.0.0.1:9/{stream_id}"
        )
    return fake_dispatcharr


@pytest.fixture
def sink(fake: FakeDispatcharr) -> Iterator[pykka.ActorRef[ResultSink]]:
    client = DispatcharrClient(fake.url, api_key=fake.api_key, backoff_factor=0.0)
    ref = ResultSink.start(lambda: None, DispatcharrWriter(client, concurrency=4))
    try:
        yield ref
    finally:
        ref.stop()
        client.close()


def test_a_flush_answers_once_every_queued_write_is_in_dispatcharr(
    fake: FakeDispatcharr, sink: pykka.ActorRef[ResultSink]
) -> None:
    # An aborted cycle (shutdown) never reaches the reorder, so only the flush
    # stands between the queued writes and the end of the process.
    fake.hold("stream", "PATCH")
    for stream_id in IDS:
        sink.tell(ResultReady(1, CheckResult(stream_id, 1, None, "ok", score=0.5)))
    assert fake.wait_in_flight(4, timeout=10)

    with pytest.raises(pykka.Timeout):
        sink.ask(Flush(), timeout=0.2)  # the writes are held: no answer yet
    fake.release()

    assert sink.ask(Flush(), timeout=30) == len(IDS)
    assert sorted(sid for sid, _ in fake.stream_patches) == list(IDS)
    assert fake.max_in_flight == 4


def test_the_dashboards_metrics_count_how_each_queued_write_ended(
    fake: FakeDispatcharr,
) -> None:
    metrics = Metrics()
    with DispatcharrClient(fake.url, api_key=fake.api_key, backoff_factor=0.0) as client:
        writer = MeteredWriter(DispatcharrWriter(client, concurrency=4), metrics)
        for stream_id in (*IDS[:10], 999):  # 999 does not exist: that write fails
            writer.write_result(CheckResult(stream_id, 1, None, "ok", score=0.5))
        writer.write_result(CheckResult(IDS[10], 1, None, "cancelled"))  # nothing to send
        assert writer.flush(timeout=30)

    text = metrics.render().decode()
    assert 'iptv_checkd_writeback_requests_total{kind="stats",result="ok"} 10.0' in text
    assert 'iptv_checkd_writeback_requests_total{kind="stats",result="failed"} 1.0' in text
