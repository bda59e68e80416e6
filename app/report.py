"""The report of one cycle (``once --report PATH``), in the shape DESIGN.md fixes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from actors.messages import CycleFinished
from adapters.store import folder_problem
from domain.models import CheckResult

_RESULT_KEYS = (
    "stream_id",
    "account_id",
    "profile_id",
    "status",
    "resolution",
    "fps",
    "video_codec",
    "audio_codec",
    "bitrate_kbps",
    "score",
    "started_at",
    "finished_at",
    "error",
)


def result_dict(result: CheckResult) -> dict[str, Any]:
    """One result as the report writes it (bitrate as whole kb/s)."""
    row = {key: getattr(result, key) for key in _RESULT_KEYS}
    if row["bitrate_kbps"] is not None:
        row["bitrate_kbps"] = round(row["bitrate_kbps"])
    return row


def build_report(finished: CycleFinished) -> dict[str, Any]:
    """The cycle summary and every stream's one result, ordered by stream id."""
    results = sorted(finished.results, key=lambda r: r.stream_id)
    return {
        "cycle": {
            "streams": len(results),
            "checked": sum(1 for r in results if r.status in ("ok", "dead")),
            "alive": sum(1 for r in results if r.status == "ok"),
            "dead": sum(1 for r in results if r.status == "dead"),
            "started_at": finished.started_at,
            "finished_at": finished.finished_at,
            "duration_s": finished.duration_s,
        },
        "results": [result_dict(r) for r in results],
    }


class ReportError(Exception):
    """The report cannot be written where asked; the message names the path."""


def check_report_path(path: Path) -> None:
    """Make sure the report can be written at ``path``, before a cycle is spent on it.

    Creates the folder if needed (as writing would) and writes and removes a
    scratch file in it.

    Raises:
        ReportError: ``path`` is a folder, or its folder cannot be made or written.
    """
    if path.is_dir():
        message = f"{path}: cannot write the report: it is a folder"
        raise ReportError(message)
    problem = folder_problem(path.parent)
    if problem is None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".report-", dir=path.parent)
            os.close(fd)
            Path(tmp).unlink()
        except OSError as exc:
            problem = exc.strerror or str(exc)
    if problem is not None:
        message = f"{path}: cannot write the report: {problem}"
        raise ReportError(message)


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a report.

    Raises:
        ReportError: The file cannot be written (nothing is left behind).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".report-", dir=path.parent)
    except OSError as exc:
        message = f"{path}: cannot write the report: {exc.strerror or exc}"
        raise ReportError(message) from exc
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
        Path(tmp).replace(path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        message = f"{path}: cannot write the report: {exc.strerror or exc}"
        raise ReportError(message) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
