"""The learned-login table of the results store: a real SQLite file."""

from __future__ import annotations

import sqlite3

from adapters.store import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    ResultStore,
    _schema_learned_logins,
    load_learned,
    save_learned,
)
from domain.learned import LearnedLogin

T0 = 1_700_000_000.0


def test_save_and_load_bring_ages_up_to_date(tmp_path):
    path = tmp_path / "results.sqlite"
    with ResultStore(path) as store:
        assert load_learned(store, T0) == {}
        save_learned(
            store,
            1,
            [LearnedLogin(11, limit=1, since_refusal_s=20.0), LearnedLogin(12, None, 3.0)],
            T0,
        )
        save_learned(store, 2, [LearnedLogin(21, 2, 1.5, since_refusal_s=0.0)], T0)
    with ResultStore(path) as again:  # a restart: a new store on the same file
        assert load_learned(again, T0 + 100) == {
            1: [LearnedLogin(11, limit=1, since_refusal_s=120.0), LearnedLogin(12, None, 3.0)],
            2: [LearnedLogin(21, 2, 1.5, since_refusal_s=100.0)],
        }


def test_saving_replaces_an_accounts_rows_and_nothing_forgets_it(tmp_path):
    with ResultStore(tmp_path / "db.sqlite") as store:
        save_learned(store, 1, [LearnedLogin(11, limit=1), LearnedLogin(12, limit=2)], T0)
        save_learned(store, 3, [LearnedLogin(31, limit=1)], T0)
        save_learned(store, 1, [LearnedLogin(12, limit=1)], T0)
        assert load_learned(store, T0) == {
            1: [LearnedLogin(12, limit=1)],
            3: [LearnedLogin(31, limit=1)],
        }
        save_learned(store, 1, [], T0)
        assert load_learned(store, T0) == {3: [LearnedLogin(31, limit=1)]}


def test_an_older_results_file_gets_the_table_by_migration(tmp_path):
    path = tmp_path / "old.sqlite"
    with ResultStore(path) as store:
        store.start_cycle("2026-01-01T00:00:00Z", 1)
    with sqlite3.connect(path) as raw:  # as a daemon before the table existed left it
        raw.execute("DROP TABLE learned_logins")
        raw.execute("ALTER TABLE cycles DROP COLUMN owner")  # the later steps'
        raw.execute("ALTER TABLE cycles DROP COLUMN aborted")
        raw.execute(f"PRAGMA user_version = {_MIGRATIONS.index(_schema_learned_logins)}")
    with ResultStore(path) as store:
        save_learned(store, 1, [LearnedLogin(11, limit=1)], T0)
        assert load_learned(store, T0) == {1: [LearnedLogin(11, limit=1)]}
        assert len(store.cycles()) == 1  # the results are still there
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
