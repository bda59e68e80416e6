"""What the daemon learned about provider logins, kept in the results database.

One small table, ``learned_logins``, in the same SQLite file as the results
(``results.database``), one row per login that learned something: its
effective limit, its release grace and how long ago its last refusal was.
Ages are stored with the wall-clock time they were taken, so a restart (with
a new monotonic clock) resumes the quiet period where it was.

The table is created with ``CREATE TABLE IF NOT EXISTS`` by this module, not
by the results store's numbered migrations (``adapters/store.py``), which were
being reworked when it was written; it can move into them as a new step with
the same statement. It does not touch ``PRAGMA user_version``.

Each call opens its own short connection, so whichever thread owns the
writing (the result sink) can use it; a failure is a :class:`StoreError`
naming the file.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from adapters.store import StoreError
from domain.learned import LearnedLogin

_CREATE = """
CREATE TABLE IF NOT EXISTS learned_logins (
    account_id INTEGER NOT NULL,
    profile_id INTEGER NOT NULL,
    learned_limit INTEGER CHECK (learned_limit IS NULL OR learned_limit >= 1),
    release_lag_s REAL NOT NULL DEFAULT 0 CHECK (release_lag_s >= 0),
    since_refusal_s REAL,
    saved_at REAL NOT NULL,
    PRIMARY KEY (account_id, profile_id)
)
"""


class LearnedStore:
    """Learned login state per account in ``path`` (the results database).

    Args:
        path: the SQLite file; created with its folder if missing.
        wall_clock: seconds since the epoch (``time.time`` unless a test gives another).
    """

    def __init__(self, path: Path, wall_clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._wall_clock = wall_clock

    @contextlib.contextmanager
    def _connect(self, action: str) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: {action}: {exc}") from exc
        try:
            db.execute(_CREATE)
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: {action}: {exc}") from exc
        finally:
            db.close()

    def save(self, account_id: int, logins: Iterable[LearnedLogin]) -> None:
        """Replace what is stored for ``account_id`` by ``logins`` (none: forget it)."""
        now = self._wall_clock()
        rows = [
            (account_id, item.profile_id, item.limit, item.release_lag_s, item.since_refusal_s, now)
            for item in logins
        ]
        with self._connect(f"cannot save what account {account_id} learned") as db:
            db.execute("DELETE FROM learned_logins WHERE account_id = ?", (account_id,))
            db.executemany(
                "INSERT INTO learned_logins (account_id, profile_id, learned_limit, "
                "release_lag_s, since_refusal_s, saved_at) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def load(self) -> dict[int, list[LearnedLogin]]:
        """Everything stored, per account id, ages brought up to now."""
        if not self.path.exists():
            return {}
        now = self._wall_clock()
        with self._connect("cannot read what the accounts learned") as db:
            rows = db.execute(
                "SELECT account_id, profile_id, learned_limit, release_lag_s, since_refusal_s, "
                "saved_at FROM learned_logins ORDER BY account_id, profile_id"
            ).fetchall()
        learned: dict[int, list[LearnedLogin]] = {}
        for account_id, profile_id, limit, lag, since, saved_at in rows:
            age = None if since is None else since + max(0.0, now - saved_at)
            learned.setdefault(account_id, []).append(
                LearnedLogin(profile_id, limit=limit, release_lag_s=lag, since_refusal_s=age)
            )
        return learned
