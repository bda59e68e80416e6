"""The monitor's plain parts: cycle progress and its estimate, reorder plans, the writer."""

from __future__ import annotations

import pytest

from adapters.sources import NullWriter
from app.dashboard import display_url
from app.metrics import Metrics, reason_label
from app.monitor import CycleProgress, plan_orders
from app.observed import MeteredWriter
from domain.models import Account, Channel, CheckResult, Inventory, Stream
from domain.ports import SourceError


def result(stream_id: int, account_id: int, status: str = "ok", score: float = 0.5) -> CheckResult:
    return CheckResult(stream_id, account_id, None, status, score=score)  # type: ignore[arg-type]


def test_progress_estimates_each_account_and_the_slowest_ends_the_cycle():
    progress = CycleProgress(1, 6, "t0", {1: 4, 2: 2}, started=100.0)
    view = progress.view(now=100.0)
    assert (view["done"], view["eta_s"]) == (0, None)  # nothing to estimate from yet
    progress.add(result(1, 1))
    view = progress.view(now=110.0)
    assert view["accounts"][1]["eta_s"] == 30.0  # 10 s for 1 of 4: 30 s for the other 3
    assert view["accounts"][2]["eta_s"] is None
    assert view["eta_s"] is None  # account 2 has not finished one yet
    progress.add(result(2, 2, "dead"))
    progress.add(result(3, 2))
    view = progress.view(now=120.0)
    assert view["accounts"][2] == {
        "streams": 2,
        "done": 2,
        "alive": 1,
        "dead": 1,
        "errors": 0,
        "eta_s": 0.0,
    }
    assert view["eta_s"] == 60.0  # account 1: 20 s for 1 of 4
    assert (view["alive"], view["dead"], view["elapsed_s"]) == (2, 1, 20.0)


def test_plan_orders_puts_the_best_first_and_the_dead_last():
    inventory = Inventory(
        (Account(1, "a"),),
        tuple(Stream(sid, str(sid), 1, f"http://h/{sid}") for sid in (1, 2, 3, 4)),
        (Channel(7, "News", (1, 2, 3)), Channel(8, "Other", (4,)), Channel(9, "None", ())),
    )
    results = (result(1, 1, "dead"), result(2, 1, score=0.2), result(3, 1, score=0.9))
    orders = plan_orders(inventory, results)
    assert orders[7] == {"before": [1, 2, 3], "after": [3, 2, 1], "changed": True}
    assert 8 not in orders  # none of its streams was judged: the write-back leaves it alone


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@prov.example:8080/live/u1/p1/12.ts", "prov.example:8080/…/12.ts"),
        ("http://prov.example/u1/p1/12.ts?token=abc", "prov.example/…/12.ts"),
        ("http://prov.example/get.php?username=u&password=p", "prov.example/…/get.php"),
        ("http://prov.example", "prov.example"),
    ],
)
def test_display_url_shows_the_host_and_the_last_segment_only(url, shown):
    assert display_url(url) == shown


def test_reason_labels_are_kinds_not_messages():
    assert reason_label("checker_died: RuntimeError('x')") == "checker_died"
    assert reason_label(None) == ""


class FailingWriter:
    def write_result(self, result: CheckResult) -> None:
        raise SourceError("down")

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def reorder(self, inventory: Inventory, results: tuple[CheckResult, ...]) -> dict[str, int]:
        return {"changed": 2, "unchanged": 1, "skipped": 0, "failed": 0}


def test_metered_writer_counts_requests_by_result():
    metrics = Metrics()
    writer = MeteredWriter(FailingWriter(), metrics)
    with pytest.raises(SourceError):
        writer.write_result(result(1, 1))
    assert writer.reorder(Inventory((), ()), ())["changed"] == 2
    text = metrics.render().decode()
    assert 'iptv_checkd_writeback_requests_total{kind="stats",result="failed"} 1.0' in text
    assert 'iptv_checkd_writeback_requests_total{kind="reorder",result="changed"} 2.0' in text
    assert 'result="skipped"' not in text  # zero counts add no series
    quiet = Metrics()
    MeteredWriter(NullWriter(), quiet).write_result(result(1, 1))
    assert "iptv_checkd_writeback_requests_total{" not in quiet.render().decode()


def test_logins_show_a_learned_limit_when_the_account_reports_one():
    from app.dashboard import _logins

    account = {
        "profiles": [
            {"id": 11, "name": "main", "is_default": True, "max_streams": 3},
            {"id": 12, "name": "second", "is_default": False, "max_streams": 2},
            {"id": 13, "name": "open", "is_default": False, "max_streams": 0},
        ]
    }
    usage = {
        11: (1, 0, 2),  # the account applies 2 where 3 are configured: learned
        12: {"viewers": 0, "leases": 1, "limit": 2, "learned_limit": 1},
        13: (0, 4, 0),
        14: (0, 1, 1),  # a login removed from the source, still holding a lease
    }
    account["profiles"][1]["shares_login_with"] = [21]  # a server group pools login 12
    logins = {login["id"]: login for login in _logins(account, usage, {})}
    assert logins[12]["shared_with"] == [21]
    assert "shared_with" not in logins[11]
    assert logins[11]["learned_limit"] == 2
    assert (logins[11]["limit"], logins[11]["effective_limit"], logins[11]["free"]) == (3, 2, 1)
    assert (logins[12]["learned_limit"], logins[12]["checks"], logins[12]["free"]) == (1, 1, 0)
    assert "learned_limit" not in logins[13]
    assert logins[13]["free"] is None  # unlimited
    assert logins[14]["name"] == "(removed)"
    unknown = _logins(account, None, {12: 1})  # the account actor did not answer
    assert [(x["viewers"], x["checks"]) for x in unknown] == [(None, 0), (None, 1), (None, 0)]


def test_the_last_reorder_says_what_the_write_back_did_with_each_channel():
    # Before, the planned order was shown as the channel's order (and "moved")
    # also when nothing was written: a dry run, a read-only source, a channel
    # the write-back skipped because it had changed in Dispatcharr meanwhile.
    from actors.messages import CycleFinished, CycleInventory
    from app.monitor import GetView, Monitor, MonitorView, ReorderCounts

    streams = tuple(Stream(sid, str(sid), 1, f"http://h/{sid}") for sid in (1, 2, 3, 4))
    channels = (Channel(7, "News", (1, 2)), Channel(8, "Film", (3, 4)))
    inventory = Inventory((Account(1, "a"),), streams, channels)
    results = (result(1, 1, "dead"), result(2, 1), result(3, 1, "dead"), result(4, 1))
    monitor = Monitor.start(Metrics())
    try:
        monitor.tell(CycleInventory(3, inventory))
        monitor.tell(CycleFinished(3, results, "t0", "t1", 1.0))
        pending = monitor.ask(GetView(), timeout=5)
        assert isinstance(pending, MonitorView)
        outcomes = {c: r["outcome"] for c, r in pending.reorders.items()}
        assert outcomes == {7: "pending", 8: "pending"}
        counts = {"changed": 1, "skipped": 1}
        outcomes = {7: "changed", 8: "skipped"}
        monitor.tell(ReorderCounts(inventory, counts, outcomes, {7: ([1, 2], [2, 1])}))
        view = monitor.ask(GetView(), timeout=5)
        # A channel check of News later: its small inventory, and a write skipped.
        small = Inventory(inventory.accounts, streams[:2], (Channel(7, "News", (2, 1)),))
        monitor.tell(CycleInventory(4, small))
        monitor.tell(CycleFinished(4, (result(1, 1), result(2, 1, "dead")), "t2", "t3", 1.0))
        monitor.tell(ReorderCounts(small, {"skipped": 1}, {7: "skipped"}))
        later = monitor.ask(GetView(), timeout=5)
        # The whole reorder raised: not "being written" for ever.
        monitor.tell(CycleInventory(5, small))
        monitor.tell(CycleFinished(5, (result(1, 1, "dead"), result(2, 1)), "t4", "t5", 1.0))
        monitor.tell(ReorderCounts(small, {"error": 1}))
        failed = monitor.ask(GetView(), timeout=5)
    finally:
        monitor.stop()
    assert isinstance(view, MonitorView)
    news, film = view.reorders[7], view.reorders[8]
    assert (news["after"], news["outcome"], news["written"]) == ([2, 1], "changed", True)
    assert (film["after"], film["outcome"], film["written"]) == ([4, 3], "skipped", False)
    assert view.orders == {7: [2, 1], 8: [3, 4]}  # as Dispatcharr has them now
    assert isinstance(later, MonitorView)
    assert (later.reorders[7]["outcome"], later.reorders[7]["written"]) == ("skipped", False)
    assert later.orders[7] == [2, 1]  # what the full cycle wrote still stands
    assert isinstance(failed, MonitorView)
    assert failed.reorders[7]["outcome"] == "failed"


def test_a_channel_whose_checks_all_failed_gets_no_planned_order():
    # The write-back moves only ok and dead streams: errors say nothing.
    inventory = Inventory(
        (Account(1, "a"),),
        tuple(Stream(sid, str(sid), 1, f"http://h/{sid}") for sid in (1, 2)),
        (Channel(7, "News", (1, 2)),),
    )
    assert plan_orders(inventory, (result(1, 1, "error"), result(2, 1, "error"))) == {}
