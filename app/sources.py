"""The ports the daemon runs with, picked from the config.

- ``source.type = "file"``: the inventory and viewer files, nothing written back.
- ``source.type = "dispatcharr"``: one :class:`~adapters.dispatcharr.DispatcharrClient`
  shared by the inventory, viewer and writer adapters (one JWT login for all).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from adapters.dispatcharr import DEFAULT_MAX_CONNECTIONS, DispatcharrClient, DispatcharrError
from adapters.sources import (
    DispatcharrInventorySource,
    DispatcharrViewerSource,
    DispatcharrWriter,
    FileInventorySource,
    FileViewerSource,
    NullWriter,
)
from app.config import Config, DispatcharrSection
from domain.ports import InventorySource, ResultWriter, SourceError, ViewerSource
from domain.urls import redact_url


@dataclass(frozen=True)
class Sources:
    """The ports the daemon runs with, and the Dispatcharr client to close at the end."""

    inventory: InventorySource
    viewers: ViewerSource
    writer: ResultWriter
    client: DispatcharrClient | None = None


def build_sources(config: Config, environ: Mapping[str, str] | None = None) -> Sources:
    """The sources ``config.source.type`` asks for.

    Args:
        config: The validated config.
        environ: Where the password and API key variables are looked up;
            ``None`` is the process environment.

    Raises:
        SourceError: ``type = "dispatcharr"`` without credentials; the message
            names the environment variables to set.
    """
    if config.source.type == "file":
        return Sources(
            inventory=FileInventorySource(config.source.path, config.accounts),
            viewers=FileViewerSource(config.source.viewers_path),
            writer=NullWriter(),
        )
    section = config.dispatcharr
    password = section.password(environ)
    api_key = section.api_key(environ)
    if not api_key and not (section.username and password):
        raise SourceError(_credentials_message(section))
    try:
        client = DispatcharrClient(
            section.url,
            username=section.username,
            password=password or "",
            api_key=api_key,
            timeout=section.timeout,
            user_agent=section.user_agent,
            # The writer's threads, plus the scheduler and the viewer watcher.
            max_connections=max(DEFAULT_MAX_CONNECTIONS, section.write_concurrency + 2),
        )
    except DispatcharrError as exc:  # pragma: no cover - credentials checked above
        raise SourceError(str(exc)) from exc
    inventory = DispatcharrInventorySource(client, section, config.accounts)
    return Sources(
        inventory=inventory,
        viewers=DispatcharrViewerSource(client, inventory),
        writer=DispatcharrWriter(
            client,
            reorder=config.results.reorder,
            dry_run=config.results.dry_run,
            concurrency=section.write_concurrency,
        ),
        client=client,
    )


def _credentials_message(section: DispatcharrSection) -> str:
    ways: list[str] = []
    if section.api_key_env:
        ways.append(f"set {section.api_key_env} to an API key")
    if section.password_env and section.username:
        ways.append(f"set {section.password_env} to the password of user {section.username!r}")
    elif section.password_env:
        ways.append(f"set [dispatcharr] username and {section.password_env} to its password")
    if not ways:
        ways.append("set [dispatcharr] api_key_env or password_env to an environment variable")
    return f"[dispatcharr] {redact_url(section.url)}: no credentials: " + ", or ".join(ways)
