"""``bench.scheduler`` sets the viewer watcher up as the daemon's defaults do."""

from __future__ import annotations

from app.config import Config
from app.daemon import viewer_policy
from bench.scheduler import viewer_setup


def test_the_bench_reads_viewer_counts_often_enough_that_they_never_go_stale() -> None:
    """It read them once an hour: after a minute the accounts took the counts for
    stale and, keeping a slot for a viewer who might have come, the accounts of one
    slot got no check until ``max_wait``: a run of 60 cycles stalled at the 29th."""
    poll_s, policy = viewer_setup()

    assert poll_s == Config().viewers.poll_interval
    assert policy == viewer_policy(Config())
    assert 2 * poll_s < policy.stale_after
