"""``AccountActor``: one per M3U account, the only owner of its slots and viewers."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pykka
import structlog

from actors.learning import LearningSettings, ProviderLearning
from actors.loop import LoopActor
from actors.messages import (
    AccountFailed,
    Batch,
    GetUsage,
    Lease,
    LeaseDenied,
    LeaseGranted,
    LimitsChanged,
    LoginsLearned,
    Preempt,
    ReleaseLease,
    RequestLease,
    RoomChanged,
    UnwatchViewers,
    ViewersSeen,
    ViewersUnknown,
    WatchViewers,
    bundle,
)
from actors.slots import (
    FAIL_CLOSED,
    TRUST_LAST_KNOWN,
    AccountSlots,
    Clock,
    Denial,
    Lesson,
    ViewerPolicy,
)
from actors.tell import tell_quietly
from actors.timers import PendingTick, Tick, Timers
from domain.learned import LearnedLogin
from domain.models import Account, Profile, Stream
from domain.urls import profile_url

logger = structlog.get_logger(__name__)

_lease_ids = itertools.count(1)
"""Lease ids are unique across all accounts (itertools.count is atomic under the GIL)."""


@dataclass(frozen=True)
class ViewerFeed:
    """Where account actors hear viewer counts, and what they assume when they can't."""

    watcher: pykka.ActorRef[Any]
    policy: ViewerPolicy = FAIL_CLOSED


@dataclass(frozen=True)
class LearningFeed:
    """How accounts learn their providers, what they learned before, and who keeps it."""

    settings: LearningSettings = field(default_factory=LearningSettings)
    restored: Mapping[int, Sequence[LearnedLogin]] = field(default_factory=dict)
    """What each account (by id) had learned when the daemon last stopped."""
    keeper: pykka.ActorRef[Any] | None = None
    """Told ``LoginsLearned`` whenever an account's learned state changes (the sink)."""

    def updated(self, account_id: int, logins: Sequence[LearnedLogin]) -> LearningFeed:
        """The same feed, with what ``account_id`` has learned since: what a fresh
        actor for that account (one that replaces a crashed one) starts from."""
        return replace(self, restored={**self.restored, account_id: tuple(logins)})


class AccountActor(LoopActor):
    """Grants, denies and takes back leases for one account.

    It answers every request at once (no waiting inside the actor). After every
    message it tells the coordinator ``RoomChanged`` if its real room differs
    from the count both keep (see :mod:`actors.messages`); when viewers need
    connections held by checks it asks for those checks to be preempted.
    It subscribes to the viewer watcher when it starts and fails closed while
    viewer counts are unknown (``viewers.policy``).

    Args:
        account: the account, its profiles and limits.
        coordinator: where answers and ``RoomChanged`` go.
        timers: the shared timer thread, for the stagger delay.
        stagger_delay: minimum seconds between two connection openings (0 = off).
        viewers: the viewer watcher and the policy; ``None``: no viewer source,
            nobody watches unless told (``ViewersSeen`` sent by hand, in tests).
        clock: monotonic seconds, for the stagger and the age of viewer counts.
        learning: learn each login's real cap and release lag from refusals;
            ``None``: trust the configured limits.
    """

    use_daemon_thread = True

    def __init__(
        self,
        account: Account,
        coordinator: pykka.ActorRef[Any],
        timers: Timers,
        stagger_delay: float = 0.0,
        viewers: ViewerFeed | None = None,
        clock: Clock = time.monotonic,
        learning: LearningFeed | None = None,
    ) -> None:
        super().__init__()
        self._feed = viewers
        policy = viewers.policy if viewers is not None else TRUST_LAST_KNOWN
        self._learning = learning
        learner = None
        if learning is not None:
            restored = learning.restored.get(account.id, ())
            learner = ProviderLearning(clock, learning.settings, restored)
        self._clock = clock
        self._slots = AccountSlots(account, stagger_delay, clock, policy, learner)
        self._waiting_logged = False
        """A ``checks_wait_for_viewers`` was logged and no good read came since."""
        self._account_id = account.id
        self._coordinator = coordinator
        self._stagger = PendingTick(timers)
        """Tick: the stagger delay since the last connection opening is over, or a
        slot in its release grace (or a held login) is free again."""
        self._wake_at: float | None = None
        """Clock time the pending tick is for."""
        self._preempting: set[int] = set()
        self._unusable_logged: dict[int, tuple[str, str]] = {}
        """Profiles logged as not changing a stream's URL, with the patterns then."""
        self._short: str | None = None
        """Why there was no room, as last told to the coordinator."""
        self._log = logger.bind(account_id=account.id)
        self._outbox: list[Any] | None = None
        """While a :class:`Batch` is handled: what goes to the coordinator, sent as one."""

    @property
    def _account(self) -> Account:
        return self._slots.account

    def on_start(self) -> None:
        """Tell the coordinator the room we start with; ask the watcher for viewer counts."""
        if self._slots.learning is not None and self._slots.learning.snapshot():
            self._log.info("login_learned_restored", logins=self._slots.usage_detail())
        self._announce()
        if self._feed is not None:
            tell_quietly(self._feed.watcher, WatchViewers(self.actor_ref))

    def on_stop(self) -> None:
        """Drop the pending stagger tick and the viewer subscription."""
        self._stagger.cancel()
        self._unwatch()

    def on_failure(self, *_exc_info: object) -> None:
        """Crashed: clean up and tell the coordinator, whose requests are now lost."""
        self._stagger.cancel()
        self._unwatch()
        tell_quietly(self._coordinator, AccountFailed(self._account_id))

    def _unwatch(self) -> None:
        if self._feed is not None:
            tell_quietly(self._feed.watcher, UnwatchViewers(self.actor_ref))

    def on_receive(self, message: Any) -> Any:
        """Dispatch one message; every branch returns at once."""
        match message:
            case RequestLease():
                self._on_request(message)
            case ReleaseLease():
                self._on_release(message)
            case Batch(messages=messages):
                self._on_batch(messages)
            case ViewersSeen():
                self._on_viewers_seen(message)
            case ViewersUnknown():
                self._on_viewers_unknown(message)
            case LimitsChanged(account=account, stagger_delay=stagger):
                self._on_limits(account, stagger)
            case Tick():
                if self._stagger.fired(message):
                    self._wake_at = None
                    self._announce()
            case GetUsage(detail=detail):
                return self._slots.usage_detail() if detail else self._slots.usage()
            case _:
                return super().on_receive(message)
        return None

    # --- handlers -----------------------------------------------------------------

    def _on_request(self, request: RequestLease) -> None:
        self._answer(request)
        self._announce()

    def _on_batch(self, messages: tuple[Any, ...]) -> None:
        """Releases and requests in order, one announce after them all, the answers as one."""
        outbox: list[Any] = []
        self._outbox = outbox
        try:
            for message in messages:
                match message:
                    case RequestLease():
                        self._answer(message)
                    case ReleaseLease():
                        self._release(message)
                    case _:
                        self.on_receive(message)
            self._announce()
        finally:
            # A crash mid-batch sends nothing: the coordinator fails the
            # batch's requests when it hears the actor failed (no connection
            # was opened for a grant it never saw).
            self._outbox = None
        if outbox:
            tell_quietly(self._coordinator, bundle(outbox))

    def _to_coordinator(self, message: object) -> None:
        if self._outbox is not None:
            self._outbox.append(message)
        else:
            tell_quietly(self._coordinator, message)

    def _answer(self, request: RequestLease) -> None:
        lease_id = next(_lease_ids)
        answer = self._slots.request(lease_id, lambda profile: self._url(profile, request.stream))
        if isinstance(answer, Denial):
            if answer.reason == "viewer_count_unknown":
                self._log_waiting()
            self._to_coordinator(
                LeaseDenied(
                    request_id=request.request_id,
                    account_id=self._account.id,
                    reason=answer.reason,
                )
            )
            return
        profile = answer.profile
        lease = Lease(
            lease_id=lease_id,
            account_id=self._account.id,
            profile_id=profile.id,
            url=answer.url or request.stream.url,
            user_agent=self._account.user_agent,
            held=answer.held,
        )
        self._to_coordinator(LeaseGranted(request_id=request.request_id, lease=lease))

    def _on_release(self, message: ReleaseLease) -> None:
        self._release(message)
        self._announce()

    def _release(self, message: ReleaseLease) -> None:
        self._preempting.discard(message.lease_id)
        self._slots.release(
            message.lease_id,
            message.outcome,
            message.stream_id,
            repeated=message.repeated,
            again=message.again,
        )

    def _on_viewers_seen(self, message: ViewersSeen) -> None:
        viewers = message.snapshot.for_account(self._account)
        self._slots.set_viewers(viewers, message.read_at)
        self._log.debug("account_viewers", viewers=viewers, usage=self._slots.usage())
        if self._waiting_logged and self._slots.viewer_state() == "known":
            self._waiting_logged = False
            self._log.info("checks_resume_viewer_count_known", usage=self._slots.usage())
        self._preempt_if_needed()
        self._announce()

    def _on_viewers_unknown(self, message: ViewersUnknown) -> None:
        assumed = message.assumed
        self._slots.viewers_unknown(None if assumed is None else assumed.for_account(self._account))
        self._preempt_if_needed()
        self._announce()

    def _log_waiting(self) -> None:
        """Say once per outage why this account's checks wait."""
        if self._waiting_logged:
            return
        self._waiting_logged = True
        state = self._slots.viewer_state()
        log = self._log.info if state == "never_read" else self._log.warning
        log(
            "checks_wait_for_viewer_count",
            viewer_state=state,
            usage=self._slots.usage(),
            hint="no new check on this account until the viewer count is read again, "
            "unless the last count leaves room (viewers.when_unknown)",
        )

    def _on_limits(self, account: Account, stagger_delay: float) -> None:
        self._slots.set_account(account, stagger_delay)
        self._log = logger.bind(account_id=account.id)
        self._log.debug("account_limits", usage=self._slots.usage())
        self._preempt_if_needed()
        self._announce()

    # --- helpers ------------------------------------------------------------------

    def _url(self, profile: Profile, stream: Stream) -> str | None:
        """The profile's URL for the stream; a profile that can't serve it is logged once."""
        url = profile_url(self._account, profile, stream)
        patterns = (profile.search_pattern, profile.replace_pattern)
        if url is None and self._unusable_logged.get(profile.id) != patterns:
            self._unusable_logged[profile.id] = patterns
            self._log.warning(
                "profile_url_unchanged",
                profile_id=profile.id,
                profile=profile.name,
                stream_id=stream.id,
                hint="its search_pattern does not change this stream's URL; not used for it",
            )
        return url

    def _announce(self) -> None:
        """Tell the coordinator how the room changed; look again when room comes back.

        Room comes back by itself when the stagger delay is over, when a slot's
        release grace ends and when a held login is let go.
        """
        announce = self._slots.announce()
        self._report_lessons()
        if announce.short == "viewer_count_unknown":
            self._log_waiting()
        if announce.change or announce.short != self._short:
            self._short = announce.short
            change = RoomChanged(self._account.id, announce.change, announce.short)
            self._to_coordinator(change)
        now = self._clock()
        wakes = [self._slots.next_learning_change()]
        if announce.wake_in is not None:
            wakes.append(now + announce.wake_in)
        due = min((t for t in wakes if t is not None), default=None)
        if due is not None and (self._wake_at is None or due < self._wake_at):
            self._wake_at = due
            self._stagger.set(max(0.0, due - now), self.actor_ref)

    def _report_lessons(self) -> None:
        """Log what the learning changed and hand the new state to its keeper."""
        lessons, self._slots.lessons = self._slots.lessons, []
        if not lessons:
            return
        for lesson in lessons:
            self._log_lesson(lesson)
        learning = self._slots.learning
        keeper = self._learning.keeper if self._learning is not None else None
        if learning is not None:
            snapshot = LoginsLearned(self._account.id, tuple(learning.snapshot()))
            self._to_coordinator(snapshot)  # a fresh actor after a crash starts from it
            if keeper is not None:
                tell_quietly(keeper, snapshot)

    def _log_lesson(self, lesson: Lesson) -> None:
        fields: dict[str, Any] = {
            "profile_id": lesson.profile_id,
            "learned_limit": lesson.limit,
            "configured_limit": lesson.configured,
            "release_lag_s": round(lesson.release_lag_s, 2),
        }
        match lesson.kind:
            case "lowered":
                self._log.warning(
                    "login_limit_learned",
                    **fields,
                    hint="the provider refused a connection below the configured limit",
                )
            case "release_lag" | "longer_lag":
                self._log.warning(
                    "login_release_lag_learned",
                    **fields,
                    hint="the provider still counted a connection just closed; "
                    "freed slots now wait this long",
                )
            case "held":
                self._log.warning(
                    "login_held",
                    **fields,
                    held_s=round((lesson.hold_until or 0.0) - self._clock(), 1),
                    hint="refused with nothing of ours on the login: it is used elsewhere",
                )
            case "probed_up":
                self._log.info("login_limit_probed_up", **fields)
            case "grace_relaxed":
                self._log.info(
                    "login_release_lag_relaxed",
                    **fields,
                    hint="no refusal for a quiet period: freed slots wait less",
                )
            case "forgiven":
                self._log.info(
                    "login_lesson_undone",
                    **fields,
                    hint="the same stream was refused again with room on the login: "
                    "the provider refuses that stream, not the login",
                )
            case _:
                self._log.debug("login_refusal_expected", **fields)

    def _preempt_if_needed(self) -> None:
        lease_ids = self._slots.leases_to_preempt(self._preempting)
        if not lease_ids:
            return
        self._preempting.update(lease_ids)
        self._log.info("account_preempt", lease_ids=lease_ids, usage=self._slots.usage())
        self._to_coordinator(Preempt(account_id=self._account.id, lease_ids=tuple(lease_ids)))
