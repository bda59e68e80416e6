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

    Every key is shown with its value in force (relative paths resolved).
    The secrets live in the environment, never in the file: their variables
    are named in a comment with whether they are set, their values masked.

    Args:
        config: The validated config.
        path: The file it was read from; ``None`` for the defaults.
        environ: Where the secrets are looked up; ``None`` is the process environment.
    """
    env = os.environ if environ is None else environ
    source = str(path) if path is not None else "no config file: the defaults"
    lines = [f"# iptv-checkd: the effective config ({source})"]
    section = config.dispatcharr
    for what, variable in (("password", section.password_env), ("API key", section.api_key_env)):
        if variable:
            state = f"set ({_MASK})" if env.get(variable) else "not set"
            lines.append(f"# Dispatcharr {what} from ${variable}: {state}")
    return "\n".join(lines) + "\n\n" + tomli_w.dumps(redacted_dict(config))
