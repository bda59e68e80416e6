"""The installed command: ``iptv-checkd`` (console entry point) and ``iptv-checkd config``."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from app.cli import console_main
from app.config import parse_config
from tests.app.test_cli import good_inventory

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("actors", "adapters", "app", "domain", "simulator")


def setup(folder: Path, extra: str = "") -> Path:
    (folder / "inventory.json").write_text(json.dumps(good_inventory()))
    config = folder / "config.toml"
    config.write_text('[source]\npath = "inventory.json"\n' + extra)
    return config


def test_console_entry_point_runs_the_commands(tmp_path: Path, monkeypatch, capsys):
    config = setup(tmp_path)
    monkeypatch.setattr(sys, "argv", ["iptv-checkd", "validate", "--config", str(config)])
    assert console_main() == 0
    assert "ok:" in capsys.readouterr().out


def test_console_entry_point_names_itself_in_its_help(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["iptv-checkd", "--help"])
    with pytest.raises(SystemExit) as info:
        console_main()
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: iptv-checkd")
    for command in ("run", "once", "validate", "demo", "config"):
        assert command in out


def test_config_prints_the_effective_config_that_parses_back(tmp_path: Path, monkeypatch, capsys):
    config = setup(
        tmp_path,
        '[check]\nduration = 4\n[accounts."3"]\nreserve_for_viewers = 1\n'
        '[dispatcharr]\napi_key_env = "MY_KEY"\n',
    )
    monkeypatch.setenv("MY_KEY", "s3cr3t-api-key")
    monkeypatch.setenv("DISPATCHARR_PASSWORD", "hunter2-password")
    monkeypatch.setattr(sys, "argv", ["iptv-checkd", "config", "--config", str(config)])
    assert console_main() == 0
    out = capsys.readouterr().out
    assert "s3cr3t-api-key" not in out
    assert "hunter2-password" not in out
    assert "MY_KEY" in out
    assert "set" in out
    effective = parse_config(tomllib.loads(out))
    assert effective.check.duration == 4.0
    assert effective.check.timeout == 30.0  # the defaults are shown too
    assert effective.accounts[3].reserve_for_viewers == 1
    assert effective.source.path == tmp_path / "inventory.json"  # as resolved


def test_config_masks_the_webhook_url_and_the_status_token(tmp_path: Path, monkeypatch, capsys):
    config = setup(tmp_path, '[alerts]\nwebhook_url = "https://hooks.example/T0/s3cr3t-hook"\n')
    monkeypatch.setenv("IPTV_CHECKD_TOKEN", "s3cr3t-token")
    monkeypatch.setattr(sys, "argv", ["iptv-checkd", "config", "--config", str(config)])
    assert console_main() == 0
    out = capsys.readouterr().out
    assert "s3cr3t-hook" not in out
    assert "s3cr3t-token" not in out
    assert tomllib.loads(out)["alerts"]["webhook_url"] == "********"
    assert "status page token from $IPTV_CHECKD_TOKEN: set" in out


def test_config_without_a_file_shows_the_defaults(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["iptv-checkd", "config"])
    assert console_main() == 0
    out = capsys.readouterr().out
    assert "no config file" in out
    assert parse_config(tomllib.loads(out)) == parse_config({})


def test_config_with_a_bad_file_is_one_line_and_exit_2(tmp_path: Path, monkeypatch, capsys):
    config = setup(tmp_path, "[check]\ntimeout = -1\n")
    monkeypatch.setattr(sys, "argv", ["iptv-checkd", "config", "--config", str(config)])
    assert console_main() == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "timeout" in err


@pytest.mark.skipif(
    importlib.util.find_spec("setuptools") is None or importlib.util.find_spec("wheel") is None,
    reason="building needs setuptools and wheel (requirements-dev.txt)",
)
def test_pip_install_gives_a_working_iptv_checkd_command(tmp_path: Path):
    # A copy of the sources, since an in-tree build leaves build/ and egg-info behind.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "main.py"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # The throwaway venv borrows this one's installed dependencies (offline,
    # --no-deps), but not the project: that must come from the install.
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    purelib.mkdir(parents=True, exist_ok=True)
    (purelib / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    subprocess.run(
        [*pip, "--no-deps", "--no-build-isolation", "--no-index", str(source)],
        check=True,
        timeout=300,
    )
    work = tmp_path / "work"
    work.mkdir()
    page = subprocess.run(
        [str(python), "-c", "from app.status import page_html; print(len(page_html()))"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    assert page.returncode == 0, page.stderr  # the dashboard page is in the package
    assert int(page.stdout) > 1000
    where = subprocess.run(
        [str(python), "-c", "import app; print(app.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv)
    config = setup(work)
    result = subprocess.run(
        [str(venv / "bin" / "iptv-checkd"), "validate", "--config", str(config)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 accounts, 1 streams" in result.stdout
