"""Which process owns a running cycle, and whether that process still runs.

A cycle row that never got its end is either running in another process (a
daemon and a ``once`` share a database) or was cut off by a crash. The row
keeps its owner as ``"<boot id>:<pid>:<start ticks>"``: the boot id and the
process's start time (``/proc/<pid>/stat``) tell a live owner from a later
process that happens to reuse its pid. Where ``/proc`` is missing, the owner
is ``"<pid>"`` and only the pid is asked.
"""

from __future__ import annotations

import os
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def this_process() -> str:
    """The owner string of the calling process."""
    return owner_of(os.getpid()) or str(os.getpid())


def owner_of(pid: int) -> str | None:
    """The owner string of process ``pid``, or ``None`` when it is not running
    (or cannot be told on this system)."""
    boot = _read(_BOOT_ID)
    stat = _read(Path(f"/proc/{pid}/stat"))
    if boot is None or stat is None:
        return None
    # Field 22 (start time) counts after the command name, which may hold spaces.
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20:
        return None
    return f"{boot}:{pid}:{fields[19]}"


def is_running(owner: str | None, *, me: str | None = None) -> bool:
    """Whether the process ``owner`` names runs, other than ``me`` (by default
    the calling process: its own unfinished cycles are never another's)."""
    if not owner or owner == (me or this_process()):
        return False
    parts = owner.split(":")
    try:
        pid = int(parts[1] if len(parts) == 3 else parts[0])
    except ValueError:
        return False
    if len(parts) == 3:
        return owner_of(pid) == owner
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
