"""Turning a cycle's streams into jobs: one probe per distinct URL of an account."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable

from actors.messages import Job
from domain.models import Stream

_job_ids = itertools.count(1)


def jobs_for(streams: Iterable[Stream], marked: Collection[int] = frozenset()) -> tuple[Job, ...]:
    """One job per (account, URL); a job's result counts for every stream sharing it.

    ``marked``: stream ids of the channels checked first (``check.priority_channels``).
    """
    by_key: dict[tuple[int, str], list[Stream]] = {}
    for stream in streams:
        by_key.setdefault((stream.account_id, stream.url), []).append(stream)
    return tuple(
        Job(
            job_id=next(_job_ids),
            stream=group[0],
            stream_ids=tuple(s.id for s in group),
            marked=any(s.id in marked for s in group),
        )
        for group in by_key.values()
    )
