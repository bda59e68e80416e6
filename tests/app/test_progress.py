"""The terminal progress of ``once``: drawn on a terminal, silent otherwise."""

from __future__ import annotations

import io

from actors.messages import CycleFinished, CycleInventory, CycleStarted, ResultReady
from app.progress import progress_listeners
from domain.models import Account, CheckResult, Inventory, Stream


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def result(stream_id: int, account_id: int, status: str) -> CheckResult:
    return CheckResult(stream_id, account_id, None, status)  # type: ignore[arg-type]


def test_no_listener_when_the_output_is_not_a_terminal():
    assert progress_listeners(io.StringIO()) == ()


def test_the_bar_counts_checks_per_account_and_alive_dead():
    out = FakeTerminal()
    (ref,) = progress_listeners(out)
    inventory = Inventory(
        (Account(1, "Provider A"), Account(2, "Provider B")),
        tuple(
            Stream(sid, f"s{sid}", acc, f"http://h/{sid}.ts")
            for sid, acc in [(1, 1), (2, 1), (3, 2)]
        ),
    )
    ref.tell(CycleInventory(1, inventory))
    ref.tell(CycleStarted(1, 3, "2026-01-01T00:00:00Z"))
    ref.tell(ResultReady(1, result(1, 1, "ok")))
    ref.tell(ResultReady(1, result(3, 2, "dead")))
    postfix = ref.proxy().postfix().get(timeout=5)
    assert postfix == "alive 1, dead 1 | Provider A 1/2, Provider B 1/1"
    ref.tell(ResultReady(1, result(2, 1, "ok")))
    ref.tell(CycleFinished(1, (), "", "", 1.0))
    ref.stop()
    text = out.getvalue()
    assert "3/3" in text
    assert "alive 2, dead 1" in text
