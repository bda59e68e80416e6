"""A results database or report path that cannot be used is bad input: exit 2, one line.

Every test runs ``main.py`` as a real process and reads its exit code and stderr.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.app.test_cli import good_inventory

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("validate", "once", "run")


def main_py(
    *args: str, cwd: Path, preexec_fn: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    # `run` with a usable database would run for ever: the timeout makes such a
    # regression fail instead of hang.
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        check=False,
        preexec_fn=preexec_fn,
    )


def setup(folder: Path, database: Path | str) -> Path:
    (folder / "inventory.json").write_text(json.dumps(good_inventory()))
    config = folder / "config.toml"
    config.write_text(
        f'[source]\npath = "inventory.json"\n[results]\ndatabase = {json.dumps(str(database))}\n'
        '[status]\nlisten = ""\n[check]\nduration = 1\ntimeout = 2\nretries = 0\n'
    )
    return config


def assert_one_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_garbage_database_file_is_bad_input(tmp_path: Path, command: str):
    database = tmp_path / "results.sqlite"
    database.write_bytes(b"not a database at all; " * 300)
    config = setup(tmp_path, database)
    assert_one_line(main_py(command, "--config", str(config), cwd=tmp_path), str(database))


@pytest.mark.parametrize("command", COMMANDS)
def test_database_path_that_is_a_folder_is_bad_input(tmp_path: Path, command: str):
    database = tmp_path / "results.sqlite"
    database.mkdir()
    config = setup(tmp_path, database)
    assert_one_line(main_py(command, "--config", str(config), cwd=tmp_path), str(database))


@pytest.mark.parametrize("command", COMMANDS)
def test_database_folder_that_cannot_be_made_is_bad_input(tmp_path: Path, command: str):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the folder should be\n")
    database = blocker / "results.sqlite"
    config = setup(tmp_path, database)
    assert_one_line(main_py(command, "--config", str(config), cwd=tmp_path), str(database))
    assert blocker.is_file()


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may create files in (chmod; for root, the immutable flag)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip("running as root on a file system without chattr +i: cannot make it read-only")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("command", COMMANDS)
def test_database_in_a_read_only_folder_is_bad_input(read_only_folder: Path, command: str):
    database = read_only_folder / "results.sqlite"
    config = setup(read_only_folder.parent, database)
    assert_one_line(
        main_py(command, "--config", str(config), cwd=read_only_folder.parent), str(database)
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_existing_database_in_a_read_only_folder_is_bad_input(tmp_path: Path, command: str):
    # A database made earlier, whose folder became read-only: WAL needs its side files.
    folder = tmp_path / "ro"
    folder.mkdir()
    database = folder / "results.sqlite"
    raw = sqlite3.connect(database)
    raw.execute("CREATE TABLE t (a)")
    raw.close()
    config = setup(tmp_path, database)
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(folder)], check=False).returncode != 0:
        pytest.skip("running as root on a file system without chattr +i")
    try:
        result = main_py(command, "--config", str(config), cwd=tmp_path)
    finally:
        if os.geteuid() != 0:
            folder.chmod(0o755)
        else:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert_one_line(result, str(database))


def _tiny_file_limit() -> None:
    # No file this process writes may grow past 1 kB: the first page of a new
    # SQLite file (4 kB) fails as it would on a full disk. Python ignores
    # SIGXFSZ, so the write fails with EFBIG instead of killing the process.
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


@pytest.mark.parametrize("command", ["once", "run"])
def test_disk_full_at_creation_is_bad_input(tmp_path: Path, command: str):
    database = tmp_path / "results.sqlite"
    config = setup(tmp_path, database)
    result = main_py(command, "--config", str(config), cwd=tmp_path, preexec_fn=_tiny_file_limit)
    assert_one_line(result, str(database))


@pytest.mark.parametrize(
    "report",
    ["blocker/report.json", "a-folder"],
    ids=["folder-cannot-be-made", "report-is-a-folder"],
)
def test_unwritable_report_path_exits_2_before_the_cycle(tmp_path: Path, report: str):
    (tmp_path / "blocker").write_text("a file where the folder should be\n")
    (tmp_path / "a-folder").mkdir()
    database = tmp_path / "results.sqlite"
    config = setup(tmp_path, database)
    result = main_py(
        "once", "--config", str(config), "--report", str(tmp_path / report), cwd=tmp_path
    )
    assert_one_line(result, str(tmp_path / report))
    assert not database.exists()  # refused before anything was opened or checked
