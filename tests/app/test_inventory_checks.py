"""What validate and every cycle say about the inventory: unknown overrides, nothing to check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from actors.cycles import MANY_AT_ONCE
from adapters.sources import FileInventorySource
from app.config import AccountOverride
from app.daemon import WarnUnknownOverrides
from tests.app.test_cli import good_inventory
from tests.logcapture import capture_logs

ROOT = Path(__file__).resolve().parents[2]


def main_py(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def setup(folder: Path, inventory: dict, extra: str = "") -> Path:
    (folder / "inventory.json").write_text(json.dumps(inventory))
    config = folder / "config.toml"
    config.write_text(
        '[source]\npath = "inventory.json"\n[status]\nlisten = ""\n'
        "[check]\nduration = 1\ntimeout = 1\nretries = 0\nmax_wait = 5\n" + extra
    )
    return config


def test_validate_warns_about_an_override_for_an_unknown_account(tmp_path: Path):
    config = setup(tmp_path, good_inventory(), '[accounts."42"]\nmax_streams = 2\n')
    result = main_py("validate", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok:" in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("warning: ")
    assert '[accounts."42"]' in lines[0]


def test_validate_with_known_overrides_says_nothing_more(tmp_path: Path):
    config = setup(tmp_path, good_inventory(), '[accounts."1"]\nmax_streams = 2\n')
    result = main_py("validate", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def _unlimited(streams: int) -> dict:
    return {
        "accounts": [{"id": 1, "name": "A", "max_streams": 0}],
        "streams": [
            {"id": n, "name": f"S{n}", "m3u_account": 1, "url": f"http://127.0.0.1:9/live/{n}.ts"}
            for n in range(1, streams + 1)
        ],
        "channels": [{"id": 7, "name": "All", "streams": list(range(1, streams + 1))}],
    }


def test_validate_warns_when_no_global_limit_leaves_many_checks_at_once(tmp_path: Path):
    extra = "[concurrent_streams]\nglobal_limit = 0\n"
    config = setup(tmp_path, _unlimited(MANY_AT_ONCE + 1), extra)
    result = main_py("validate", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("warning: concurrent_streams.global_limit = 0: ")
    assert f"{MANY_AT_ONCE + 1} checks at once" in lines[0]
    assert "account 1" in lines[0]


@pytest.mark.parametrize(
    ("extra", "streams"),
    [
        ("", MANY_AT_ONCE + 1),  # the default global limit
        ("[concurrent_streams]\nglobal_limit = 0\n", MANY_AT_ONCE),  # few enough
        ('[concurrent_streams]\nglobal_limit = 0\n[accounts."1"]\nmax_streams = 5\n', 80),
    ],
)
def test_validate_says_nothing_of_checks_a_limit_bounds(tmp_path: Path, extra: str, streams: int):
    config = setup(tmp_path, _unlimited(streams), extra)
    result = main_py("validate", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_validate_refuses_an_empty_inventory(tmp_path: Path):
    config = setup(tmp_path, {"accounts": [], "streams": [], "channels": []})
    result = main_py("validate", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "inventory.json" in lines[0]
    assert "no streams" in lines[0]


def test_validate_refuses_accounts_without_streams(tmp_path: Path):
    inventory = {**good_inventory(), "streams": [], "channels": []}
    result = main_py("validate", "--config", str(setup(tmp_path, inventory)), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "no streams" in result.stderr


def test_every_load_logs_the_unknown_override(tmp_path: Path):
    (tmp_path / "inventory.json").write_text(json.dumps(good_inventory()))
    overrides = {1: AccountOverride(max_streams=2), 42: AccountOverride(max_streams=1)}
    source = WarnUnknownOverrides(
        FileInventorySource(tmp_path / "inventory.json", overrides), overrides
    )
    with capture_logs() as logs:
        source.load()
        source.load()
    events = [e for e in logs if e["event"] == "account_override_unknown"]
    assert len(events) == 2
    assert all(e["account_ids"] == [42] and e["log_level"] == "warning" for e in events)


def test_once_logs_the_unknown_override(tmp_path: Path):
    config = setup(tmp_path, good_inventory(), '[accounts."42"]\nmax_streams = 2\n')
    result = main_py("once", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "account_override_unknown" in result.stderr
    assert "42" in result.stderr
