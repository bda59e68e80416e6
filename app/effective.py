"""``config``: the effective configuration as TOML, secrets masked (as ``mopidy config``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, cast

import tomli_w

from app.config import Config

_MASK = "********"
_SECRET_KEYS: frozenset[tuple[str, str]] = frozenset({("alerts", "webhook_url")})
"""``(section, key)`` pairs masked: a webhook URL is often its own secret (Slack's, Discord's)."""


def effective_config_toml(
    config: Config, path: Path | None, environ: Mapping[str, str] | None = None
) -> str:
    """``config`` as a TOML document that :func:`app.config.parse_config` reads back.

    Every key is shown with its value in force (relative paths resolved);
    secret keys of the file (the alert webhook's URL) are masked. The other
    secrets live in the environment: their variables are named in a comment
    with whether they are set, their values never shown.

    Args:
        config: The validated config.
        path: The file it was read from; ``None`` for the defaults.
        environ: Where the secrets are looked up; ``None`` is the process environment.
    """
    env = os.environ if environ is None else environ
    source = str(path) if path is not None else "no config file: the defaults"
    lines = [f"# iptv-checkd: the effective config ({source})"]
    section = config.dispatcharr
    secrets = (
        ("Dispatcharr password", section.password_env),
        ("Dispatcharr API key", section.api_key_env),
        ("status page token", config.status.token_env),
    )
    for what, variable in secrets:
        if variable:
            state = f"set ({_MASK})" if env.get(variable) else "not set"
            lines.append(f"# {what} from ${variable}: {state}")
    return "\n".join(lines) + "\n\n" + tomli_w.dumps(effective_dict(config))


def effective_dict(config: Config) -> dict[str, Any]:
    """The effective config as TOML-shaped plain data, secrets masked.

    Paths become strings, ``None`` becomes ``""`` and tuples become lists, so
    the result can be printed as TOML or JSON. No secret lives in the config
    but a webhook URL (passwords and tokens come from the environment); keys
    listed in ``_SECRET_KEYS`` are masked.
    """
    out: dict[str, Any] = {}
    for item in fields(config):
        value = getattr(config, item.name)
        if item.name == "accounts":
            out["accounts"] = {
                str(account_id): {k: v for k, v in _plain(o).items() if v != ""}
                for account_id, o in sorted(value.items())
            }
            continue
        section = _plain(value)
        for key in section:
            if (item.name, key) in _SECRET_KEYS and section[key]:
                section[key] = _MASK
        out[item.name] = section
    return out


def _plain(section: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in fields(cast("Any", section)):
        value = getattr(section, item.name)
        if value is None:
            value = ""
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[item.name] = value
    return out
