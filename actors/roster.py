"""``Roster``: the coordinator's account actors and what each stands for, as a plain class.

It keeps each account's definition next to the handle of the actor that
stands for it, decides what a fresh ``SetAccounts`` means (start an actor,
tell a running one its new limits, restart a dead one once nothing of it runs,
retire the accounts that went) and sums the accounts up for the status page.
It calls nothing on the handles but ``is_alive``: the coordinator starts,
tells and stops the actors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import structlog

from actors.slots import UNLIMITED, capacity
from domain.models import Account

logger = structlog.get_logger(__name__)


class Handle(Protocol):
    """What the roster asks of an account actor's handle (a pykka ``ActorRef``)."""

    def is_alive(self) -> bool:
        """False once the actor has stopped or crashed."""
        ...


H = TypeVar("H", bound=Handle)


@dataclass(frozen=True)
class Change(Generic[H]):
    """One account of a ``SetAccounts``: start its actor, or tell the running one."""

    account: Account
    stagger: float
    """Seconds between two openings on the account (its own, or the default)."""
    actor: H | None
    """The running actor to tell ``LimitsChanged``; ``None``: start one, then ``Roster.add``."""


@dataclass(frozen=True)
class Plan(Generic[H]):
    """What a ``SetAccounts`` means, in the order to carry it out."""

    changes: tuple[Change[H], ...]
    retired: tuple[int, ...]
    """Accounts no longer in the source: the dispatch retires them, then drops their actor."""


@dataclass
class _Entry(Generic[H]):
    actor: H
    account: Account


def shown_limit(limit: int) -> int:
    """Limits as users write them: 0 means unlimited."""
    return 0 if limit >= UNLIMITED else limit


class Roster(Generic[H]):
    """The account actors by account id.

    Args:
        default_stagger: seconds between two openings for accounts that set none.
    """

    def __init__(self, default_stagger: float) -> None:
        self._default_stagger = default_stagger
        self._entries: dict[int, _Entry[H]] = {}

    def plan(self, accounts: Iterable[Account], can_restart: Callable[[int], bool]) -> Plan[H]:
        """What the source's accounts, read afresh, mean for the actors.

        Args:
            accounts: every account of the source now.
            can_restart: whether a dead actor's account may have a new actor
                (nothing of it runs or is asked for); if not, it keeps its dead
                one until a later ``SetAccounts``.
        """
        seen: set[int] = set()
        changes: list[Change[H]] = []
        for account in accounts:
            seen.add(account.id)
            entry = self._entries.get(account.id)
            if entry is not None and not entry.actor.is_alive():
                if not can_restart(account.id):
                    continue  # its checks still run; the next cycle's accounts restart it
                logger.warning("account_actor_restarted", account_id=account.id)
                entry = None
            if entry is not None:
                entry.account = account
            actor = None if entry is None else entry.actor
            changes.append(Change(account, self.stagger(account), actor))
        retired = tuple(account_id for account_id in self._entries if account_id not in seen)
        return Plan(tuple(changes), retired)

    def add(self, account: Account, actor: H) -> None:
        """The actor started for ``account`` (replacing a dead one)."""
        self._entries[account.id] = _Entry(actor, account)

    def get(self, account_id: int) -> H | None:
        """The account's actor, if it has one."""
        entry = self._entries.get(account_id)
        return None if entry is None else entry.actor

    def drop(self, account_id: int) -> H | None:
        """Forget a retired account; its actor (to stop), if it had one."""
        entry = self._entries.pop(account_id, None)
        return None if entry is None else entry.actor

    def actors(self) -> list[H]:
        """Every account actor, to stop them all."""
        return [entry.actor for entry in self._entries.values()]

    def stagger(self, account: Account) -> float:
        """Seconds between two openings on ``account``: its own, else the default."""
        if account.stagger_delay is not None:
            return account.stagger_delay
        return self._default_stagger

    def limits(self) -> dict[int, int]:
        """Each account's connection limit in all, as users write it (0 = unlimited)."""
        return {a: shown_limit(capacity(e.account)) for a, e in self._entries.items()}

    def status(self, queue: Callable[[int], Mapping[str, object]]) -> dict[int, dict[str, object]]:
        """The accounts for the status page; ``queue`` gives one account's checks
        (``Dispatch.account_status``)."""
        accounts: dict[int, dict[str, object]] = {}
        for account_id, entry in self._entries.items():
            account = entry.account
            accounts[account_id] = {
                "name": account.name,
                "limit": shown_limit(capacity(account)),
                **queue(account_id),
                # For the dashboard's per-login bars: the configured logins,
                # and the account actor to ask for its usage (GetUsage).
                "stagger_delay": self.stagger(account),
                "reserve_for_viewers": account.reserve_for_viewers,
                "profiles": [
                    {
                        "id": p.id,
                        "name": p.name,
                        "is_default": p.is_default,
                        "max_streams": p.max_streams,
                        "shares_login_with": list(p.shares_login_with),
                    }
                    for p in account.usable_profiles()
                ],
                "actor": entry.actor,
            }
        return accounts
