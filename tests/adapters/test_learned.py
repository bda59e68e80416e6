"""The learned-login table: a real SQLite file, shared with the results store."""

from __future__ import annotations

import sqlite3

import pytest

from adapters.learned import LearnedStore
from adapters.store import ResultStore, StoreError
from domain.learned import LearnedLogin


class Wall:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_save_and_load_bring_ages_up_to_date(tmp_path):
    wall = Wall()
    store = LearnedStore(tmp_path / "results.sqlite", wall)
    assert store.load() == {}
    store.save(1, [LearnedLogin(11, limit=1, since_refusal_s=20.0), LearnedLogin(12, None, 3.0)])
    store.save(2, [LearnedLogin(21, limit=2, release_lag_s=1.5, since_refusal_s=0.0)])
    wall.now += 100
    assert LearnedStore(tmp_path / "results.sqlite", wall).load() == {
        1: [LearnedLogin(11, limit=1, since_refusal_s=120.0), LearnedLogin(12, None, 3.0)],
        2: [LearnedLogin(21, limit=2, release_lag_s=1.5, since_refusal_s=100.0)],
    }


def test_saving_replaces_an_accounts_rows_and_nothing_forgets_it(tmp_path):
    store = LearnedStore(tmp_path / "db.sqlite", Wall())
    store.save(1, [LearnedLogin(11, limit=1), LearnedLogin(12, limit=2)])
    store.save(1, [LearnedLogin(12, limit=1)])
    assert store.load() == {1: [LearnedLogin(12, limit=1)]}
    store.save(1, [])
    assert store.load() == {}


def test_lives_beside_the_results_in_one_file(tmp_path):
    path = tmp_path / "results.sqlite"
    LearnedStore(path).save(1, [LearnedLogin(11, limit=1)])
    results = ResultStore(path)  # migrates a file that already has the learned table
    assert results.cycles() == []
    results.close()
    assert LearnedStore(path).load() == {1: [LearnedLogin(11, limit=1)]}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 1


def test_a_bad_file_is_a_store_error_naming_it(tmp_path):
    path = tmp_path / "not.sqlite"
    path.write_bytes(b"this is not a database at all, just some bytes" * 20)
    with pytest.raises(StoreError, match=r"not\.sqlite"):
        LearnedStore(path).load()
    with pytest.raises(StoreError, match="cannot save what account 3 learned"):
        LearnedStore(path).save(3, [LearnedLogin(1, limit=1)])
