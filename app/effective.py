"""``config``: the effective configuration as TOML, secrets masked (as ``mopidy config``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import tomli_w

from domain.config import Config, redacted_dict

_MASK = "********"


def effective_config_toml(
    config: Config, path: Path | None, environ: Mapping[str, str] | None = None
) -> str:
    """``config`` as a TOML document that :func:`domain.config.parse_config` reads back.

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
    return "\n".join(lines) + "\n\n" + tomli_w.dumps(redacted_dict(config))
