"""``AccountActor``: one per M3U account, the only owner of its slots and viewers."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pykka
import structlog

from actors.messages import (
    AccountFailed,
    GetUsage,
    Lease,
    LeaseDenied,
    LeaseGranted,
    LimitsChanged,
    Preempt,
    ReleaseLease,
    RequestLease,
    SlotsFreed,
    ViewersChanged,
)
from actors.slots import UNLIMITED, AccountSlots
from actors.tell import tell_quietly
from actors.timers import PendingTick, Tick, Timers
from domain.models import Account
from domain.urls import stream_url_for

logger = structlog.get_logger(__name__)

_lease_ids = itertools.count(1)
"""Lease ids are unique across all accounts (itertools.count is atomic under the GIL)."""


class AccountActor(pykka.ThreadingActor):
    """Grants, denies and takes back leases for one account.

    It answers every request at once (no waiting inside the actor). When room
    appears after a denial it tells the coordinator ``SlotsFreed``; when viewers
    need connections held by checks it asks for those checks to be preempted.

    Args:
        account: the account, its profiles and limits.
        coordinator: where answers and ``SlotsFreed`` go.
        timers: the shared timer thread, for the stagger delay.
        stagger_delay: minimum seconds between two connection openings (0 = off).
    """

    use_daemon_thread = True

    def __init__(
        self,
        account: Account,
        coordinator: pykka.ActorRef[Any],
        timers: Timers,
        stagger_delay: float = 0.0,
    ) -> None:
        super().__init__()
        self._slots = AccountSlots(account)
        self._account_id = account.id
        self._coordinator = coordinator
        self._stagger_delay = stagger_delay
        self._last_open = -float("inf")
        self._stagger = PendingTick(timers)
        """Tick: the stagger delay since the last connection opening is over."""
        self._preempting: set[int] = set()
        self._reported_free = UNLIMITED
        """The room the coordinator last heard of; it starts out assuming plenty."""
        self._log = logger.bind(account_id=account.id)

    @property
    def _account(self) -> Account:
        return self._slots.account

    def on_stop(self) -> None:
        """Drop the pending stagger tick."""
        self._stagger.cancel()

    def on_failure(self, *_exc_info: object) -> None:
        """Crashed: drop the tick and tell the coordinator, whose requests are now lost."""
        self._stagger.cancel()
        tell_quietly(self._coordinator, AccountFailed(self._account_id))

    def on_receive(self, message: Any) -> Any:
        """Dispatch one message; every branch returns at once."""
        match message:
            case RequestLease():
                self._on_request(message)
            case ReleaseLease():
                self._on_release(message)
            case ViewersChanged(viewers=viewers):
                self._on_viewers(viewers)
            case LimitsChanged(account=account, stagger_delay=stagger):
                self._on_limits(account, stagger)
            case Tick():
                if self._stagger.fired(message):
                    self._announce_free()
            case GetUsage():
                return self._slots.usage()
            case _:
                return super().on_receive(message)
        return None

    # --- handlers -----------------------------------------------------------------

    def _on_request(self, request: RequestLease) -> None:
        wait = self._stagger_wait()
        if wait > 0:
            self._deny(request, "stagger")
            self._schedule_stagger(wait)
            return
        lease_id = next(_lease_ids)
        profile = self._slots.grant(lease_id)
        if profile is None:
            self._deny(request, "full")
            return
        self._last_open = time.monotonic()
        lease = Lease(
            lease_id=lease_id,
            account_id=self._account.id,
            profile_id=profile.id,
            url=stream_url_for(self._account, profile, request.stream),
            user_agent=self._account.user_agent,
        )
        tell_quietly(
            self._coordinator,
            LeaseGranted(
                request_id=request.request_id, lease=lease, free_after=self._report_free()
            ),
        )

    def _on_release(self, message: ReleaseLease) -> None:
        self._preempting.discard(message.lease_id)
        released = self._slots.release(message.lease_id)
        if message.then is not None:
            self._on_request(message.then)
        if released:
            self._announce_free()

    def _on_viewers(self, viewers: dict[int, int]) -> None:
        before = self._slots.free()
        self._slots.set_viewers(viewers)
        self._log.debug("account_viewers", viewers=viewers, usage=self._slots.usage())
        self._preempt_if_needed()
        if self._slots.free() > before:
            self._announce_free()

    def _on_limits(self, account: Account, stagger_delay: float) -> None:
        before = self._slots.free()
        self._slots.set_account(account)
        self._stagger_delay = stagger_delay
        self._log = logger.bind(account_id=account.id)
        self._log.debug("account_limits", usage=self._slots.usage())
        self._preempt_if_needed()
        if self._slots.free() > before:
            self._announce_free()

    # --- helpers ------------------------------------------------------------------

    def _deny(self, request: RequestLease, reason: str) -> None:
        self._reported_free = 0
        tell_quietly(
            self._coordinator,
            LeaseDenied(request_id=request.request_id, account_id=self._account.id, reason=reason),
        )

    def _report_free(self) -> int:
        """Free slots as told to the coordinator (0 while the stagger delay holds openings back)."""
        self._reported_free = 0 if self._stagger_wait() > 0 else self._slots.free()
        return self._reported_free

    def _announce_free(self) -> None:
        """Tell the coordinator about room, if it may be waiting for it.

        The coordinator only waits on an account whose last answer said it had
        no room (a denial, or a grant that took the last slot); otherwise its
        own count of the room left still lets it ask.
        """
        if self._reported_free > 0:
            return
        wait = self._stagger_wait()
        if wait > 0:
            self._schedule_stagger(wait)
            return
        free = self._slots.free()
        if free > 0:
            self._reported_free = free
            tell_quietly(self._coordinator, SlotsFreed(account_id=self._account.id, free=free))

    def _stagger_wait(self) -> float:
        if self._stagger_delay <= 0:
            return 0.0
        return self._last_open + self._stagger_delay - time.monotonic()

    def _schedule_stagger(self, wait: float) -> None:
        if not self._stagger.pending:
            self._stagger.set(wait, self.actor_ref)

    def _preempt_if_needed(self) -> None:
        lease_ids = self._slots.leases_to_preempt(self._preempting)
        if not lease_ids:
            return
        self._preempting.update(lease_ids)
        self._log.info("account_preempt", lease_ids=lease_ids, usage=self._slots.usage())
        tell_quietly(
            self._coordinator, Preempt(account_id=self._account.id, lease_ids=tuple(lease_ids))
        )
