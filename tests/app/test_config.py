from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from app.config import (
    AccountOverride,
    Config,
    DispatcharrSection,
    InputError,
    ScheduleSection,
    StatusSection,
    load_config,
    parse_config,
    parse_duration,
)
from app.effective import effective_dict
from domain.models import Account, Profile

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(InputError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


# --- defaults and the shipped files ------------------------------------------------


def test_default_toml_parses_to_exactly_the_defaults():
    data = tomllib.loads((CONFIG_DIR / "default.toml").read_text(encoding="utf-8"))
    assert parse_config(data) == Config()


def test_default_toml_documents_every_key():
    data = tomllib.loads((CONFIG_DIR / "default.toml").read_text(encoding="utf-8"))
    expected = effective_dict(Config())
    del expected["accounts"]  # documented as a commented example: it has no default entries
    assert {name: set(section) for name, section in data.items()} == {
        name: set(section) for name, section in expected.items()
    }


@pytest.mark.parametrize(
    "url",
    [
        "http://admin:hunter2@dispatcharr:9191",
        "https://admin:hunter2@dispatcharr.example/",
        "http://hunter2@dispatcharr:9191",
        "http://admin:hunter2@:9191",
    ],
)
def test_dispatcharr_url_with_credentials_names_the_fix_not_the_secret(tmp_path, url):
    message = error_of(tmp_path, f'[dispatcharr]\nurl = "{url}"')

    assert "hunter2" not in message
    assert "[dispatcharr] url: must not contain credentials" in message
    assert "environment" in message
    assert "$DISPATCHARR_PASSWORD (password_env)" in message


def test_load_default_toml_resolves_paths_against_its_folder():
    config = load_config(CONFIG_DIR / "default.toml")
    assert config.source.path == CONFIG_DIR / "inventory.json"
    assert config.results.database == CONFIG_DIR / "results.sqlite"
    assert config.check == Config().check


def test_none_gives_the_defaults():
    assert load_config(None) == Config()


@pytest.mark.parametrize("name", ["example-file.toml", "example-dispatcharr.toml"])
def test_examples_are_valid(name):
    config = load_config(CONFIG_DIR / name)
    assert config.source.type in ("file", "dispatcharr")


def test_example_dispatcharr_values():
    config = load_config(CONFIG_DIR / "example-dispatcharr.toml")
    assert config.source.type == "dispatcharr"
    assert config.accounts[3] == AccountOverride(stagger_delay=5.0, reserve_for_viewers=1)
    assert config.schedule.cron == "0 4 * * *"


# --- values -------------------------------------------------------------------------


def test_values_are_read_and_ints_become_floats(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
            [concurrent_streams]
            enabled = false
            global_limit = 0
            stagger_delay = 0
            [check]
            duration = 5
            retries = 0
            [dispatcharr]
            exclude_groups = [3, 14]
            exclude_channels = [42, "Test"]
            user_agent = "checker/1"
            url = "https://d.example:9191/"
            write_concurrency = 1
            [log]
            level = "DEBUG"
            format = "json"
            """,
        )
    )
    assert config.concurrent_streams.enabled is False
    assert config.concurrent_streams.global_limit == 0
    assert isinstance(config.concurrent_streams.stagger_delay, float)
    assert config.check.duration == 5.0
    assert isinstance(config.check.duration, float)
    assert config.check.retries == 0
    assert config.dispatcharr.exclude_groups == (3, 14)
    assert config.dispatcharr.exclude_channels == (42, "Test")
    assert config.dispatcharr.user_agent == "checker/1"
    assert config.dispatcharr.url == "https://d.example:9191"
    assert config.dispatcharr.write_concurrency == 1
    assert Config().dispatcharr.write_concurrency == 4
    assert config.log.level == "debug"
    assert config.log.format == "json"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[check]\ntimeout = "abc"', '[check] timeout: must be a number > 0, got "abc"'),
        ("[check]\ntimeout = 0", "[check] timeout: must be a number > 0, got 0"),
        ("[check]\nduration = true", "[check] duration: must be a number > 0, got true"),
        ("[check]\nretries = 1.5", "[check] retries: must be an integer >= 0, got 1.5"),
        ("[check]\nretries = true", "[check] retries: must be an integer >= 0, got true"),
        ("[check]\nretry_delay = -1", "[check] retry_delay: must be a number >= 0, got -1"),
        ("[check]\nmax_requeues = -1", "[check] max_requeues: must be an integer >= 0, got -1"),
        ("[check]\nuser_agent = 5", "[check] user_agent: must be a string, got 5"),
        (
            "[concurrent_streams]\nenabled = 1",
            "[concurrent_streams] enabled: must be true or false, got 1",
        ),
        (
            "[concurrent_streams]\nglobal_limit = -2",
            "[concurrent_streams] global_limit: must be an integer >= 0, got -2",
        ),
        (
            '[source]\ntype = "ftp"',
            '[source] type: must be one of "file", "dispatcharr", got "ftp"',
        ),
        ('[source]\npath = ""', "[source] path: must not be empty"),
        (
            '[dispatcharr]\nurl = "localhost:9191"',
            '[dispatcharr] url: must be an "http://" or "https://" URL with a host',
        ),
        (
            '[dispatcharr]\nexclude_groups = [1, "x"]',
            '[dispatcharr] exclude_groups[1]: must be an integer, got "x"',
        ),
        (
            "[dispatcharr]\nwrite_concurrency = 0",
            "[dispatcharr] write_concurrency: must be from 1 to 16, got 0",
        ),
        (
            "[dispatcharr]\nwrite_concurrency = 17",
            "[dispatcharr] write_concurrency: must be from 1 to 16, got 17",
        ),
        (
            "[dispatcharr]\nexclude_channels = 5",
            "[dispatcharr] exclude_channels: must be a list of integers or strings, got 5",
        ),
        ("[viewers]\npoll_interval = 0", "[viewers] poll_interval: must be a number > 0, got 0"),
        ("[score]\nfps = -0.1", "[score] fps: must be a number >= 0, got -0.1"),
        (
            "[score]\nresolution = 0\nbitrate = 0\nfps = 0\ncodec = 0",
            "[score]: the weights must not all be zero",
        ),
        (
            '[schedule]\ninterval = "soon"',
            '[schedule] interval: must be a duration > 0 like "90s"',
        ),
        ('[schedule]\ninterval = "0s"', "[schedule] interval: must be a duration > 0"),
        ('[schedule]\ncron = "61 * * * *"', '[schedule] cron: not a valid cron expression: "61'),
        ('[status]\nlisten = "8787"', '[status] listen: must be "host:port"'),
        ('[status]\nlisten = "host:99999"', '[status] listen: must be "host:port"'),
        ('[status]\nlisten = "::1:80"', '[status] listen: must be "host:port"'),
        (
            "[results]\nhistory_days = -1",
            "[results] history_days: must be an integer >= 0, got -1",
        ),
        ("[results]\ndry_run = 0", "[results] dry_run: must be true or false, got 0"),
        ('[log]\nformat = "xml"', '[log] format: must be one of "console", "json", got "xml"'),
        ('[log]\nlevel = "loud"', "[log] level: must be one of"),
        ("check = 5", "[check]: must be a table, got 5"),
        (
            '[accounts."abc"]\nmax_streams = 1',
            '[accounts."abc"]: the key must be an account id (digits), got "abc"',
        ),
        (
            '[accounts."3"]\nmax_streams = -1',
            '[accounts."3"] max_streams: must be an integer >= 0, got -1',
        ),
        (
            '[accounts."3"]\nreserve_for_viewers = "1"',
            '[accounts."3"] reserve_for_viewers: must be an integer >= 0, got "1"',
        ),
    ],
)
def test_bad_value_names_the_key(tmp_path, text, expected):
    message = error_of(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'config.toml'}: ")
    assert expected in message


def test_unknown_key_suggests_the_close_one(tmp_path):
    message = error_of(tmp_path, "[check]\ndurration = 5")
    assert message.endswith('unknown key [check] durration (did you mean "duration"?)')


def test_unknown_section_and_top_level_key(tmp_path):
    message = error_of(tmp_path, 'interval = "1h"\n[chek]\nduration = 5')
    assert "unknown key interval" in message
    assert 'unknown section [chek] (did you mean "check"?)' in message


def test_unknown_key_without_a_close_match_has_no_hint(tmp_path):
    message = error_of(tmp_path, "[log]\nzzz = 1")
    assert message.endswith("unknown key [log] zzz")


def test_unknown_account_key(tmp_path):
    message = error_of(tmp_path, '[accounts."3"]\nstagger = 2.0')
    assert 'unknown key [accounts."3"] stagger (did you mean "stagger_delay"?)' in message


def test_all_problems_are_reported_on_one_line(tmp_path):
    with pytest.raises(InputError) as info:
        load_config(write(tmp_path, '[check]\ntimeout = "abc"\nretries = -1\n[log]\nlevl = "x"'))
    assert len(info.value.problems) == 3
    assert str(info.value).count("; ") == 2
    assert "\n" not in str(info.value)


def test_bad_toml_gives_line_and_column(tmp_path):
    message = error_of(tmp_path, "[check]\ntimeout = = 3\n")
    assert "invalid TOML" in message
    assert "line 2" in message
    assert "column" in message


def test_missing_and_unreadable_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(InputError, match="cannot read"):
        load_config(tmp_path / "dir.toml")


# --- paths --------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    sub = tmp_path / "etc"
    sub.mkdir()
    path = sub / "c.toml"
    path.write_text(
        """
        [source]
        path = "data/inv.json"
        viewers_path = "viewers.json"
        [results]
        database = "../var/r.sqlite"
        [check]
        ffmpeg = "bin/ffmpeg"
        """,
        encoding="utf-8",
    )
    config = load_config(path)
    base = sub.resolve()
    assert config.source.path == base / "data/inv.json"
    assert config.source.viewers_path == base / "viewers.json"
    assert config.results.database == base / "../var/r.sqlite"
    assert config.check.ffmpeg == str(base / "bin/ffmpeg")


def test_absolute_paths_and_bare_ffmpeg_name_are_kept(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
            [source]
            path = "/srv/inv.json"
            viewers_path = ""
            [check]
            ffmpeg = "ffmpeg6"
            """,
        )
    )
    assert config.source.path == Path("/srv/inv.json")
    assert config.source.viewers_path is None
    assert config.check.ffmpeg == "ffmpeg6"


# --- schedule -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("6h", 21600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        (" 2H ", 7200.0),
        ("3600", 3600.0),
        (45, 45.0),
        (0.5, 0.5),
    ],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "h", "6x", "6h junk", "-5s", "0", 0, -1, True, "1h-1m"])
def test_parse_duration_rejects(value):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_schedule_interval_s_from_file(tmp_path):
    config = load_config(write(tmp_path, "[schedule]\ninterval = 120"))
    assert config.schedule.interval_s == 120.0
    assert ScheduleSection().interval_s == 6 * 3600.0


def test_cron_is_validated_and_kept(tmp_path):
    config = load_config(write(tmp_path, '[schedule]\ncron = "0 3 * * *"'))
    assert config.schedule.cron == "0 3 * * *"
    message = error_of(tmp_path, '[schedule]\ncron = "every day"')
    assert '[schedule] cron: not a valid cron expression: "every day"' in message
    # Well-formed, but no such day: it would never fire (and croniter raises at the first run).
    message = error_of(tmp_path, '[schedule]\ncron = "0 0 31 2 *"')
    assert '[schedule] cron: "0 0 31 2 *" never fires' in message


# --- status, accounts, dispatcharr ------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("127.0.0.1:8787", "127.0.0.1", 8787), ("[::1]:80", "::1", 80), ("0.0.0.0:0", "0.0.0.0", 0)],
)
def test_status_listen(listen, host, port):
    status = StatusSection(listen=listen)
    assert (status.enabled, status.host, status.port) == (True, host, port)


def test_status_can_be_disabled(tmp_path):
    config = load_config(write(tmp_path, '[status]\nlisten = ""'))
    assert not config.status.enabled


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:8787", True),
        ("127.1.2.3:80", True),
        ("localhost:80", True),
        ("[::1]:80", True),
        ("0.0.0.0:8787", False),
        ("[::]:80", False),
        ("192.0.2.7:80", False),
        ("myhost:80", False),
    ],
)
def test_status_loopback(listen, loopback):
    assert StatusSection(listen=listen).loopback is loopback


def test_status_token_comes_from_the_named_variable(tmp_path):
    config = load_config(write(tmp_path, '[status]\ntoken_env = "MY_TOKEN"\nhistory = 5'))
    assert config.status.history == 5
    assert config.status.token({"MY_TOKEN": "s3cret"}) == "s3cret"
    assert config.status.token({"MY_TOKEN": ""}) is None
    assert config.status.token({}) is None


def test_alerts_section(tmp_path):
    config = load_config(
        write(tmp_path, '[alerts]\nwebhook_url = "http://127.0.0.1:9/hook"\nretries = 1')
    )
    assert config.alerts.enabled
    assert config.alerts.retries == 1
    assert effective_dict(config)["alerts"]["webhook_url"] == "********"
    assert not Config().alerts.enabled


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[alerts]\nwebhook_url = "ftp://x/y"', "[alerts] webhook_url: must be"),
        ("[alerts]\ntimeout = 0", "[alerts] timeout: must be a number > 0"),
        ("[status]\nhistory = 0", "[status] history: must be an integer >= 1"),
        ("[status]\ntoken = 1", "unknown key [status] token"),
    ],
)
def test_bad_alerts_and_status_keys(tmp_path, text, message):
    with pytest.raises(InputError) as caught:
        load_config(write(tmp_path, text))
    assert message in str(caught.value)


def test_account_overrides(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
            [accounts."3"]
            max_streams = 2
            reserve_for_viewers = 1
            [accounts."4"]
            stagger_delay = 0
            """,
        )
    )
    assert config.accounts == {
        3: AccountOverride(max_streams=2, reserve_for_viewers=1),
        4: AccountOverride(stagger_delay=0.0),
    }
    assert config.account_override(99) == AccountOverride()


def test_account_override_apply_sets_the_default_profile_limit():
    account = Account(
        id=3,
        name="a",
        max_streams=1,
        profiles=(
            Profile(id=31, max_streams=1, is_default=True),
            Profile(id=32, max_streams=1),
        ),
    )
    changed = AccountOverride(max_streams=4, stagger_delay=2.0, reserve_for_viewers=1).apply(
        account
    )
    assert changed.max_streams == 4
    assert [p.max_streams for p in changed.profiles] == [4, 1]
    assert changed.stagger_delay == 2.0
    assert changed.reserve_for_viewers == 1
    assert AccountOverride().apply(account) == account


def test_dispatcharr_secrets_come_from_the_environment():
    section = DispatcharrSection(password_env="PW", api_key_env="KEY")
    assert section.password({"PW": "s3cret"}) == "s3cret"
    assert section.api_key({"PW": "s3cret"}) is None
    assert section.api_key({"KEY": "k"}) == "k"
    assert section.api_key({"KEY": ""}) is None


# --- printing -----------------------------------------------------------------------


def test_effective_dict_is_plain_data_that_parses_back(tmp_path):
    config = load_config(
        write(tmp_path, '[accounts."7"]\nmax_streams = 3\n[source]\nviewers_path = "v.json"')
    )
    data = effective_dict(config)
    json.dumps(data)  # plain data only
    assert data["accounts"] == {"7": {"max_streams": 3}}
    assert data["source"]["viewers_path"] == str(tmp_path.resolve() / "v.json")
    assert data["dispatcharr"]["user_agent"] == ""
    assert parse_config(data) == config


def test_check_max_wait(tmp_path):
    assert Config().check.max_wait == 600.0
    config = load_config(write(tmp_path, "[check]\nmax_wait = 120"))
    assert config.check.max_wait == 120.0
    assert "[check] max_wait: must be a number > 0" in error_of(tmp_path, "[check]\nmax_wait = 0")
    message = error_of(tmp_path, "[check]\nduration = 10\ntimeout = 30\nmax_wait = 30")
    assert "[check] max_wait: must be at least check.duration + check.timeout (40 s)" in message


def test_check_max_wait_reaches_the_coordinator(tmp_path):
    from app.daemon import coordinator_settings

    config = load_config(write(tmp_path, "[check]\nmax_wait = 90"))
    assert coordinator_settings(config).max_wait == 90.0


def test_the_default_config_gives_the_actors_their_own_defaults():
    from actors.dispatch import CoordinatorSettings
    from actors.learning import LearningSettings
    from actors.slots import FAIL_CLOSED
    from app.daemon import coordinator_settings, learning_settings, viewer_policy

    # Only what the config sets on purpose differs from the coordinator's defaults.
    assert coordinator_settings(Config()) == CoordinatorSettings(
        global_limit=10,
        stagger_delay=1.0,
        user_agent="VLC/3.0.20 LibVLC/3.0.20",
        learn_providers=True,
    )
    assert learning_settings(Config()) == LearningSettings()
    assert viewer_policy(Config()).when_unknown == FAIL_CLOSED.when_unknown


def test_learning_section_sets_the_accounts_learning(tmp_path):
    from app.daemon import learning_settings

    config = load_config(
        write(
            tmp_path,
            "[learning]\nprobe_up_after = 60\nrelease_grace = 2\nmax_release_grace = 8",
        )
    )
    settings = learning_settings(config)
    assert (settings.quiet_period_s, settings.first_grace_s, settings.max_grace_s) == (60, 2, 8)
