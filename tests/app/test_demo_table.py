"""The demo's table: each cycle's table reaches the terminal whole."""

from __future__ import annotations

import io

from actors.messages import CycleFinished
from app.demo import TablePrinter
from domain.models import CheckResult


class _Writes(io.StringIO):
    """Remembers every write: the log lines of other threads can come between two."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_a_cycle_s_table_is_one_write_ending_its_line() -> None:
    """``print`` writes the text and its newline apart, so a log line from another
    thread could land between them: at the end of the table's last row."""
    out = _Writes()
    result = CheckResult(stream_id=7, account_id=1, profile_id=None, status="ok", score=0.5)
    printer = TablePrinter.start(out, {7: "News"})
    try:
        printer.ask(CycleFinished(1, (result,), "", "", 1.0), timeout=10)
    finally:
        printer.stop()
    table = [text for text in out.writes if "News" in text]
    assert len(table) == 1
    assert table[0].endswith("0.50\n")
    assert out.getvalue() == table[0]
