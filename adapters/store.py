"""The results store: every check and every cycle, in one SQLite file.

The file is in WAL mode with ``synchronous=NORMAL``, and each row is committed
on its own as soon as it is recorded, so a killed daemon loses at most the row
being written and leaves a readable database. The schema version lives in
``PRAGMA user_version``; :data:`_MIGRATIONS` lists the steps from one version
to the next. The steps that are due run in ONE ``BEGIN IMMEDIATE`` transaction
that reads the version again under the write lock, so openers racing on a
fresh file (threads or processes) migrate it exactly once.

Threads: a :class:`ResultStore` belongs to ONE thread (in the daemon, the
``ResultSink`` actor's). Its connection is opened lazily by the first method
call, in the calling thread, and every later call must come from that same
thread. The constructor only opens the file briefly to check and migrate it,
so a bad path or a corrupt file fails at once in the caller's thread.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from adapters import owner
from domain.learned import LearnedLogin
from domain.models import CheckResult, Status

_LOCKED_RETRY_S = 5.0
"""Seconds an opener keeps retrying when SQLite refuses a lock at once (as the busy timeout)."""
_LOCKED_RETRY_PAUSE_S = 0.01


class StoreError(Exception):
    """The results database cannot be opened, read or written; names the file.

    ``transient``: the same call may work later (the file locked by another
    process, the disk full, an I/O error, the file or folder not there); not
    so for a constraint broken or a damaged file.
    """

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


_LASTING_ERRORS = frozenset(
    {
        sqlite3.SQLITE_CONSTRAINT,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_MISMATCH,
        sqlite3.SQLITE_TOOBIG,
        sqlite3.SQLITE_RANGE,
        sqlite3.SQLITE_FORMAT,
    }
)
"""SQLite's primary result codes that no later try changes."""


@dataclass(frozen=True)
class CycleRecord:
    """One row of the ``cycles`` table."""

    id: int
    started_at: str
    finished_at: str | None
    """``None`` while the cycle runs, or when the daemon died during it."""
    streams: int
    checked: int | None
    alive: int | None
    dead: int | None
    aborted: bool = False
    """Stopped before every stream had its result (a shutdown, or a crash found
    at the next start by :meth:`ResultStore.abort_unfinished`)."""


# Written out (not formatted in) so every statement is a plain literal.
_SELECT_LATEST = (
    "SELECT id, cycle_id, stream_id, account_id, profile_id, status, resolution, fps, "
    "video_codec, audio_codec, bitrate_kbps, score, started_at, finished_at, error "
    "FROM latest_checks"
)
_SELECT_HISTORY = (
    "SELECT id, cycle_id, stream_id, account_id, profile_id, status, resolution, fps, "
    "video_codec, audio_codec, bitrate_kbps, score, started_at, finished_at, error "
    "FROM checks WHERE stream_id = ? ORDER BY finished_at DESC, id DESC LIMIT ?"
)


def _schema_v1(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE cycles (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            streams INTEGER NOT NULL,
            checked INTEGER,
            alive INTEGER,
            dead INTEGER
        )
        """
    )
    db.execute(
        """
        CREATE TABLE checks (
            id INTEGER PRIMARY KEY,
            cycle_id INTEGER NOT NULL REFERENCES cycles(id),
            stream_id INTEGER NOT NULL,
            account_id INTEGER NOT NULL,
            profile_id INTEGER,
            status TEXT NOT NULL CHECK (status IN ('ok', 'dead', 'error', 'cancelled')),
            resolution TEXT,
            fps REAL,
            video_codec TEXT,
            audio_codec TEXT,
            bitrate_kbps REAL,
            score REAL NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            error TEXT
        )
        """
    )
    db.execute("CREATE INDEX checks_stream_finished ON checks (stream_id, finished_at)")
    db.execute("CREATE INDEX checks_cycle ON checks (cycle_id)")
    db.execute(
        """
        CREATE VIEW latest_checks AS
        SELECT id, cycle_id, stream_id, account_id, profile_id, status, resolution, fps,
               video_codec, audio_codec, bitrate_kbps, score, started_at, finished_at, error
        FROM (
            SELECT *, ROW_NUMBER() OVER (
                PARTITION BY stream_id ORDER BY finished_at DESC, id DESC
            ) AS position
            FROM checks
        )
        WHERE position = 1
        """
    )


_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_schema_v1,)
"""Step ``i`` takes the schema from version ``i`` to ``i + 1``; append, never edit."""

SCHEMA_VERSION = len(_MIGRATIONS)


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (made if missing), or ``None``.

    Looks at the nearest folder that exists: it must be a folder, and writable.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def check_database(path: Path) -> None:
    """Check that ``path`` can be the results database, creating and changing nothing.

    For ``validate``: an existing file must be a SQLite database of a schema
    this program knows, writable, in a writable folder (WAL mode creates files
    next to it); a missing one must be creatable. A full disk only shows when
    the file is written, so ``once`` and ``run`` open the store for real.

    Raises:
        StoreError: What is wrong, naming the file.
    """

    def fail(problem: str) -> StoreError:
        return StoreError(f"{path}: {problem}")

    if path.is_dir():
        raise fail("is a folder, not a database file")
    if not path.exists():
        problem = folder_problem(path.parent)
        if problem:
            raise fail(f"cannot create the results database: {problem}")
        return
    if not os.access(path, os.R_OK | os.W_OK):
        raise fail("the results database is not readable and writable")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        problem = f"its folder {path.parent} is not writable (SQLite keeps its WAL files there)"
        raise fail(problem)
    try:
        # immutable: no lock, no -wal/-shm files; enough to read the header and schema.
        db = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise fail(f"not a usable results database: {exc}") from exc
    if version > SCHEMA_VERSION:
        message = (
            f"schema version {version} is newer than this program's ({SCHEMA_VERSION}); "
            "upgrade the daemon or use another database file"
        )
        raise fail(message)


class ResultStore:
    """Check results and cycles in a SQLite file; used from one thread only.

    Args:
        path: The database file; created (with its folder) if missing.
        busy_timeout: seconds a write waits for another process's lock on the file.

    Raises:
        StoreError: The file cannot be opened, is not a SQLite database, or
            was written by a newer schema version.
    """

    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._owner: int | None = None
        self._closed = False
        # Fail fast in the caller's thread; the working connection opens lazily.
        self._open().close()

    # --- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; later calls raise :class:`StoreError`. Idempotent."""
        if self._db is not None:
            self._check_thread()
        self._closed = True
        if self._db is not None:
            db, self._db = self._db, None
            try:
                db.close()
            except sqlite3.Error as exc:
                raise self._error("cannot close", exc) from exc

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- writing ----------------------------------------------------------------------

    def start_cycle(self, started_at: str, streams: int, cycle_id: int | None = None) -> int:
        """Record the start of a cycle over ``streams`` streams; return its id.

        Args:
            started_at: ISO 8601 start time.
            streams: How many streams the cycle checks.
            cycle_id: The id the daemon gave the cycle (from :meth:`next_cycle_id`);
                when another process took it meanwhile, the next free id is
                used and returned instead. ``None``: the next free id.
        """
        with self._write("cannot start a cycle") as db:
            taken = cycle_id is not None and (
                db.execute("SELECT 1 FROM cycles WHERE id = ?", (cycle_id,)).fetchone() is not None
            )
            cursor = db.execute(
                "INSERT INTO cycles (id, started_at, streams, owner) VALUES (?, ?, ?, ?)",
                (None if taken else cycle_id, started_at, streams, owner.this_process()),
            )
        return cast("int", cursor.lastrowid)

    def record(self, cycle_id: int, result: CheckResult) -> None:
        """Store one check result of cycle ``cycle_id``, committed at once."""
        row = (
            cycle_id,
            result.stream_id,
            result.account_id,
            result.profile_id,
            result.status,
            result.resolution,
            result.fps,
            result.video_codec,
            result.audio_codec,
            result.bitrate_kbps,
            result.score,
            result.started_at,
            result.finished_at,
            result.error,
        )
        with self._write(f"cannot record the check of stream {result.stream_id}") as db:
            db.execute(
                "INSERT INTO checks (cycle_id, stream_id, account_id, profile_id, status, "
                "resolution, fps, video_codec, audio_codec, bitrate_kbps, score, "
                "started_at, finished_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def finish_cycle(
        self,
        cycle_id: int,
        finished_at: str,
        checked: int,
        alive: int,
        dead: int,
        *,
        aborted: bool = False,
    ) -> None:
        """Record the end of cycle ``cycle_id`` and its counts."""
        with self._write(f"cannot finish cycle {cycle_id}") as db:
            db.execute(
                "UPDATE cycles SET finished_at = ?, checked = ?, alive = ?, dead = ?, aborted = ? "
                "WHERE id = ?",
                (finished_at, checked, alive, dead, int(aborted), cycle_id),
            )

    def abort_unfinished(self) -> list[int]:
        """Mark the cycles that started but never finished (the daemon died) as aborted.

        Such a cycle ends when its last stored check did (or when it started,
        without any), with the counts of the checks it stored. A cycle whose
        owner process still runs (a daemon next to a ``once`` on the same file)
        is left alone. Run at start, before the process's first cycle.

        Returns:
            The ids of the cycles marked, oldest first.
        """
        me = owner.this_process()
        with self._write("cannot mark unfinished cycles") as db:
            ids = [
                int(row[0])
                for row in db.execute(
                    "SELECT id, owner FROM cycles WHERE finished_at IS NULL ORDER BY id"
                )
                if not owner.is_running(row[1], me=me)
            ]
            db.executemany(
                """
                UPDATE cycles SET
                    aborted = 1,
                    finished_at = COALESCE(
                        (SELECT MAX(finished_at) FROM checks WHERE cycle_id = cycles.id),
                        started_at
                    ),
                    checked = (SELECT COUNT(*) FROM checks
                               WHERE cycle_id = cycles.id AND status IN ('ok', 'dead')),
                    alive = (SELECT COUNT(*) FROM checks
                             WHERE cycle_id = cycles.id AND status = 'ok'),
                    dead = (SELECT COUNT(*) FROM checks
                            WHERE cycle_id = cycles.id AND status = 'dead')
                WHERE id = ?
                """,
                [(cycle_id,) for cycle_id in ids],
            )
        return ids

    def prune(self, older_than_days: int) -> int:
        """Delete checks (and then empty cycles) older than ``older_than_days`` days.

        A check's age is that of its ``finished_at`` (else ``started_at``), read
        as ISO 8601 (``Z`` or an offset, else UTC). ``0`` keeps everything, as
        ``results.history_days = 0`` does.

        Returns:
            The number of checks deleted.

        Raises:
            ValueError: ``older_than_days`` is negative.
        """
        if older_than_days < 0:
            message = f"older_than_days must be >= 0, got {older_than_days}"
            raise ValueError(message)
        if older_than_days == 0:
            return 0
        cutoff = f"-{older_than_days} days"
        with self._write("cannot prune") as db:
            deleted = db.execute(
                "DELETE FROM checks "
                "WHERE julianday(COALESCE(finished_at, started_at)) < julianday('now', ?)",
                (cutoff,),
            ).rowcount
            db.execute(
                "DELETE FROM cycles "
                "WHERE julianday(COALESCE(finished_at, started_at)) < julianday('now', ?) "
                "AND NOT EXISTS (SELECT 1 FROM checks WHERE checks.cycle_id = cycles.id)",
                (cutoff,),
            )
        return deleted

    # --- reading ----------------------------------------------------------------------

    def latest(self) -> dict[int, CheckResult]:
        """Each stream's latest result (whatever its status), by stream id."""
        rows = self._read("cannot read the latest checks", _SELECT_LATEST)
        return {row["stream_id"]: _result(row) for row in rows}

    def history(self, stream_id: int, limit: int = 20) -> list[CheckResult]:
        """The latest ``limit`` results of ``stream_id``, newest first."""
        rows = self._read(
            f"cannot read the history of stream {stream_id}",
            _SELECT_HISTORY,
            (stream_id, limit),
        )
        return [_result(row) for row in rows]

    def cycles(self, limit: int = 10) -> list[CycleRecord]:
        """The latest ``limit`` cycles, newest first."""
        rows = self._read(
            "cannot read the cycles",
            "SELECT id, started_at, finished_at, streams, checked, alive, dead, aborted "
            "FROM cycles ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [CycleRecord(**{**dict(row), "aborted": bool(row["aborted"])}) for row in rows]

    def next_cycle_id(self) -> int:
        """The id the next cycle gets: one more than the newest stored one."""
        (row,) = self._read("cannot read the cycles", "SELECT COALESCE(MAX(id), 0) + 1 FROM cycles")
        return int(row[0])

    # --- internals --------------------------------------------------------------------

    def _error(self, action: str, exc: BaseException) -> StoreError:
        code = getattr(exc, "sqlite_errorcode", None)
        lasting = code is not None and code & 0xFF in _LASTING_ERRORS
        return StoreError(f"{self.path}: {action}: {exc}", transient=not lasting)

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a write waits for another process's lock from now on."""
        self._busy_timeout = seconds
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):  # the next write reports what is wrong
                self._db.execute(f"PRAGMA busy_timeout = {max(0, int(seconds * 1000))}")

    def _open(self) -> sqlite3.Connection:
        """A new connection with the pragmas set and the schema migrated."""
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a folder, not a database file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = folder_problem(self.path.parent) or exc.strerror or str(exc)
            message = f"{self.path}: cannot create the results database: {problem}"
            raise StoreError(message) from exc
        try:
            db = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error("cannot open the results database", exc) from exc
        try:
            db.row_factory = sqlite3.Row
            self._retry_locked(lambda: self._prepare(db))
        except sqlite3.Error as exc:
            db.close()
            raise self._error("not a usable results database", exc) from exc
        except StoreError:
            db.close()
            raise
        return db

    def _prepare(self, db: sqlite3.Connection) -> None:
        """WAL mode, the pragmas and the migrations; safe to run again after a lock error."""
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            message = f"cannot switch to WAL mode (journal_mode is {mode})"
            raise StoreError(f"{self.path}: {message}")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        self._migrate(db)

    @staticmethod
    def _retry_locked(action: Callable[[], None]) -> None:
        """Run ``action``, again while SQLite says the file is locked, for a while.

        The busy timeout does not cover every lock: openers racing on a fresh
        file (switching it to WAL, or to its first schema) can be refused at
        once with "database is locked", SQLite's way out of a lock upgrade
        that would deadlock. Everything ``action`` does is idempotent or one
        transaction, so running it again is safe.
        """
        deadline = time.monotonic() + _LOCKED_RETRY_S
        while True:
            try:
                action()
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
                if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
                if time.monotonic() >= deadline:
                    raise
                time.sleep(_LOCKED_RETRY_PAUSE_S)
            else:
                return

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION`, once, whoever else opens the file.

        Two openers of a fresh file (the start-up history read and the sink, or
        two processes) must not both run the migrations: the version is read
        again inside the write lock (``BEGIN IMMEDIATE``), and every step and
        the new version commit together.
        """
        if self._check_version(db) == SCHEMA_VERSION:
            return  # the usual case: nothing to do, no write lock taken
        db.execute("BEGIN IMMEDIATE")
        try:
            version = self._check_version(db)
            for step in range(version, SCHEMA_VERSION):
                _MIGRATIONS[step](db)
            # PRAGMA takes no parameters; the value is our own int.
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        except BaseException:
            self._rollback(db)
            raise
        db.execute("COMMIT")

    def _check_version(self, db: sqlite3.Connection) -> int:
        """The file's schema version; :class:`StoreError` when it is newer than ours."""
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            message = (
                f"{self.path}: schema version {version} is newer than this program's "
                f"({SCHEMA_VERSION}); upgrade the daemon or use another database file"
            )
            raise StoreError(message)
        return version

    def _check_thread(self) -> None:
        if self._owner is not None and threading.get_ident() != self._owner:
            message = (
                f"{self.path}: ResultStore used from a second thread; "
                "it belongs to the thread that first used it"
            )
            raise RuntimeError(message)

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.path}: the results store is closed")
        self._check_thread()
        if self._db is None:
            self._db = self._open()
            self._owner = threading.get_ident()
        return self._db

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One committed transaction; a SQLite error becomes a :class:`StoreError`."""
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(action, exc) from exc
        try:
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(db)
            raise self._error(action, exc) from exc
        except BaseException:
            self._rollback(db)
            raise

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        if db.in_transaction:
            # The original error is the one worth reporting.
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")

    def _read(self, action: str, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        db = self._connection()
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(action, exc) from exc


def _result(row: sqlite3.Row) -> CheckResult:
    return CheckResult(
        stream_id=row["stream_id"],
        account_id=row["account_id"],
        profile_id=row["profile_id"],
        status=cast("Status", row["status"]),
        resolution=row["resolution"],
        fps=row["fps"],
        video_codec=row["video_codec"],
        audio_codec=row["audio_codec"],
        bitrate_kbps=row["bitrate_kbps"],
        score=row["score"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
    )


# --- read-only queries (the dashboard) ---------------------------------------------
#
# The functions below open their own short-lived connection in read-only mode
# (``mode=ro``), so any thread may call them while the sink's ResultStore
# writes: WAL lets readers and the one writer work side by side. They never
# create, migrate or write the file; a missing file reads as empty.

_SELECT_RECENT = (
    "SELECT stream_id, account_id, profile_id, status, resolution, fps, video_codec, "
    "audio_codec, bitrate_kbps, score, started_at, finished_at, error FROM checks "
    "WHERE status != 'cancelled' AND cycle_id >= ("
    "  SELECT COALESCE(MIN(id), 0) FROM (SELECT id FROM cycles ORDER BY id DESC LIMIT ?)"
    ") ORDER BY id DESC"
)
"""The checks of the latest cycles, newest first (rows are inserted as checks end).

One pass in the ``id`` order, grouped per stream in Python: a window function
per stream took three to ten times longer on 10,000 streams."""


@dataclass(frozen=True)
class StreamHistory:
    """One stream's latest result and the statuses and bitrates of its recent checks."""

    latest: CheckResult
    points: tuple[tuple[Status, float | None], ...]
    """``(status, bitrate_kbps)`` per check, newest first (``latest`` included)."""


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection to ``path``, or ``None`` when the file does not exist."""
    if not path.exists():
        yield None
        return
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the results database to read: {exc}") from exc
    try:
        yield db
    finally:
        db.close()


def _recent_rows(path: Path, cycles: int) -> list[tuple[Any, ...]]:
    with _read_only(path) as db:
        if db is None:
            return []
        try:
            return db.execute(_SELECT_RECENT, (cycles,)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot read the recent checks: {exc}") from exc


def _result_of(row: tuple[Any, ...]) -> CheckResult:
    return CheckResult(
        stream_id=row[0],
        account_id=row[1],
        profile_id=row[2],
        status=cast("Status", row[3]),
        resolution=row[4],
        fps=row[5],
        video_codec=row[6],
        audio_codec=row[7],
        bitrate_kbps=row[8],
        score=row[9],
        started_at=row[10],
        finished_at=row[11],
        error=row[12],
    )


def read_recent_checks(
    path: Path, per_stream: int = 20, cycles: int = 60
) -> dict[int, list[CheckResult]]:
    """Each stream's latest ``per_stream`` results that say something, newest first.

    Cancelled checks are left out (they learned nothing). Only the checks of
    the latest ``cycles`` cycles are read, which keeps the query's cost to
    those cycles however long the history kept in the file is.

    Raises:
        StoreError: the file is not a readable results database.
    """
    recent: dict[int, list[CheckResult]] = {}
    for row in _recent_rows(path, cycles):
        kept = recent.setdefault(row[0], [])
        if len(kept) < per_stream:
            kept.append(_result_of(row))
    return recent


def read_histories(path: Path, per_stream: int = 20, cycles: int = 25) -> dict[int, StreamHistory]:
    """Each stream's latest result and up to ``per_stream`` recent (status, bitrate) points.

    As :func:`read_recent_checks`, but only the latest result is built in
    full: on 10,000 streams this is what keeps the dashboard's stream view
    well under a second.

    Raises:
        StoreError: the file is not a readable results database.
    """
    latest: dict[int, CheckResult] = {}
    points: dict[int, list[tuple[Status, float | None]]] = {}
    for row in _recent_rows(path, cycles):
        stream_points = points.get(row[0])
        if stream_points is None:
            latest[row[0]] = _result_of(row)
            points[row[0]] = [(row[3], row[8])]
        elif len(stream_points) < per_stream:
            stream_points.append((row[3], row[8]))
    return {sid: StreamHistory(latest[sid], tuple(points[sid])) for sid in latest}


def read_cycles(path: Path, limit: int = 10) -> list[CycleRecord]:
    """The latest ``limit`` cycles, newest first (empty when the file does not exist).

    Raises:
        StoreError: the file is not a readable results database.
    """
    with _read_only(path) as db:
        if db is None:
            return []
        try:
            rows = db.execute(
                "SELECT id, started_at, finished_at, streams, checked, alive, dead "
                "FROM cycles ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot read the cycles: {exc}") from exc
    return [CycleRecord(*row) for row in rows]


# --- learned provider logins ----------------------------------------------------------
# What the accounts learned about their provider logins (actors/learning.py): the
# effective limit, the release grace and how long ago the last refusal was, one row
# per login that learned something. Its own migration step, appended here so the
# results code above stays as it is. Ages are stored with the wall-clock time they
# were taken, so a restart (with a new monotonic clock) resumes a quiet period.


def _schema_learned_logins(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE learned_logins (
            account_id INTEGER NOT NULL,
            profile_id INTEGER NOT NULL,
            learned_limit INTEGER CHECK (learned_limit IS NULL OR learned_limit >= 1),
            release_lag_s REAL NOT NULL DEFAULT 0 CHECK (release_lag_s >= 0),
            since_refusal_s REAL,
            saved_at REAL NOT NULL,
            PRIMARY KEY (account_id, profile_id)
        )
        """
    )


_MIGRATIONS = (*_MIGRATIONS, _schema_learned_logins)
SCHEMA_VERSION = len(_MIGRATIONS)


def _schema_cycles_aborted(db: sqlite3.Connection) -> None:
    # A cycle stopped before every stream had its result (a shutdown, or a crash
    # found at the next start by ResultStore.abort_unfinished).
    db.execute("ALTER TABLE cycles ADD COLUMN aborted INTEGER NOT NULL DEFAULT 0")


_MIGRATIONS = (*_MIGRATIONS, _schema_cycles_aborted)


def _schema_cycles_owner(db: sqlite3.Connection) -> None:
    # The process running a cycle (adapters/owner.py): an unfinished cycle whose
    # owner still runs is not a crash. NULL for cycles from before this step.
    db.execute("ALTER TABLE cycles ADD COLUMN owner TEXT")


_MIGRATIONS = (*_MIGRATIONS, _schema_cycles_owner)
SCHEMA_VERSION = len(_MIGRATIONS)


def save_learned(
    store: ResultStore,
    account_id: int,
    logins: Iterable[LearnedLogin],
    now: float | None = None,
) -> None:
    """Replace what ``store`` keeps for ``account_id`` by ``logins`` (none: forget it).

    Args:
        store: the results store (from its owning thread).
        account_id: the account the logins belong to.
        logins: what it learned (:meth:`actors.learning.ProviderLearning.snapshot`).
        now: wall-clock seconds since the epoch; ``time.time()`` if ``None``.
    """
    saved_at = time.time() if now is None else now
    rows = [
        (
            account_id,
            item.profile_id,
            item.limit,
            item.release_lag_s,
            item.since_refusal_s,
            saved_at,
        )
        for item in logins
    ]
    with store._write(f"cannot save what account {account_id} learned") as db:
        db.execute("DELETE FROM learned_logins WHERE account_id = ?", (account_id,))
        db.executemany(
            "INSERT INTO learned_logins (account_id, profile_id, learned_limit, "
            "release_lag_s, since_refusal_s, saved_at) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


def load_learned(store: ResultStore, now: float | None = None) -> dict[int, list[LearnedLogin]]:
    """Everything ``store`` keeps, per account id, with ages brought up to ``now``."""
    read_at = time.time() if now is None else now
    rows = store._read(
        "cannot read what the accounts learned",
        "SELECT account_id, profile_id, learned_limit, release_lag_s, since_refusal_s, "
        "saved_at FROM learned_logins ORDER BY account_id, profile_id",
    )
    learned: dict[int, list[LearnedLogin]] = {}
    for row in rows:
        since = row["since_refusal_s"]
        age = None if since is None else since + max(0.0, read_at - row["saved_at"])
        learned.setdefault(row["account_id"], []).append(
            LearnedLogin(
                row["profile_id"],
                limit=row["learned_limit"],
                release_lag_s=row["release_lag_s"],
                since_refusal_s=age,
            )
        )
    return learned
