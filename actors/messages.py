"""Every message the actors exchange, as small frozen dataclasses.

pykka does not copy messages between threads, so each one is immutable. The
lease protocol, in short (the coordinator's side of it is
:class:`actors.dispatch.Dispatch`):

- both sides keep one count per account, its *room*: how many more
  ``RequestLease`` the coordinator may send it. A request takes one, a
  ``ReleaseLease`` gives one back; each side counts a message as it sends or
  receives it, so the two counts agree once the messages in flight arrive;
- the account answers every ``RequestLease`` at once with ``LeaseGranted`` or
  ``LeaseDenied``, never waiting; whenever its real room (limits, viewers, the
  stagger delay) differs from the count it sends ``RoomChanged`` with the
  difference, so the coordinator asks only where a grant is likely;
- when a check ends the coordinator sends ``ReleaseLease`` and may at once send
  the account's next ``RequestLease`` behind it: the account's mailbox keeps
  the order, so the freed slot goes straight to the next job;
- the coordinator asks only while the global budget has room, so no slot is
  held while a check waits in a queue;
- an account that sees viewers plus leases over a limit sends ``Preempt`` and
  the coordinator cancels those checks.

Viewer counts go from the viewer watcher straight to the accounts: each account
actor sends ``WatchViewers`` when it starts and gets ``ViewersSeen`` after every
good read and ``ViewersUnknown`` after every failed one (and the current state
at once when it subscribes). While counts are unknown an account fails closed
(see ``actors/slots.py``) and denies with ``viewer_count_unknown``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from domain.learned import LearnedLogin
from domain.models import (
    Account,
    CheckResult,
    Inventory,
    OutcomeKind,
    ProbeOutcome,
    Stream,
    ViewerSnapshot,
)

# --- the work -------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One probe to run: a URL of one account, standing for one or more streams.

    Streams with the same URL are checked once per cycle; the result counts for
    each id in ``stream_ids``.
    """

    job_id: int
    stream: Stream
    stream_ids: tuple[int, ...]
    attempt: int = 0
    """Retries used after errors or provider-busy refusals."""
    requeues: int = 0
    """Times the job was cancelled (preempted) and put back."""
    refusals: int = 0
    """Times the provider refused its connection as "full" and it was put back at once
    (learning on: once; a second refusal backs off as an error does)."""
    expected_s: float = 0.0
    """How long the check is expected to take (its last duration), for ordering."""
    marked: bool = False
    """One of its streams belongs to a channel of ``check.priority_channels``."""
    priority: tuple[int, int] = (1, 0)
    """Its place in its account's queue, smaller first (:mod:`domain.priority`):
    marked, never checked, failed, the rest; then the most cycles unchecked
    first. The dispatch sets it from the coordinator's ranking; unranked jobs
    all rank the same."""

    @property
    def account_id(self) -> int:
        """The account whose connection the check uses."""
        return self.stream.account_id

    def evolve(
        self, *, expected_s: float | None = None, priority: tuple[int, int] | None = None
    ) -> Job:
        """A copy with a new ``expected_s`` and/or ``priority``.

        What ``dataclasses.replace`` gives, four times faster (1 against 4 µs):
        the dispatch makes one each time a job leaves its queue (10,000 jobs:
        30 ms against 80 ms in all).
        """
        clone = object.__new__(Job)
        fields = clone.__dict__
        fields.update(self.__dict__)
        if expected_s is not None:
            fields["expected_s"] = expected_s
        if priority is not None:
            fields["priority"] = priority
        return clone


@dataclass(frozen=True)
class Lease:
    """The right to hold one connection on one profile while one check runs."""

    lease_id: int
    account_id: int
    profile_id: int
    url: str
    """The stream URL rewritten for this profile."""
    user_agent: str | None = None
    held: int = 0
    """Connections the profile held besides this one when it was granted: our
    other leases and its known viewers (what tells "full" from a dead stream)."""


# --- coordinator -> account -----------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Several messages for one actor in one envelope, handled in order as if told one by one.

    The coordinator sends an account the ``ReleaseLease`` and ``RequestLease``
    one event gave rise to (a check ending frees a slot and asks for it again;
    a cycle's start asks for many) as one batch; the account answers a batch
    with one batch of ``LeaseGranted``/``LeaseDenied`` and the ``RoomChanged``
    after them, and announces its room once, after the whole batch (the room
    both sides count comes out the same as after the messages one by one).
    One envelope instead of several saves a mailbox hand-over, and a thread
    wake-up, per message on the path from a freed slot to the next check.
    """

    messages: tuple[Any, ...]


def bundle(messages: Sequence[Any]) -> Any:
    """One message as it is, several as a :class:`Batch`."""
    return messages[0] if len(messages) == 1 else Batch(tuple(messages))


@dataclass(frozen=True)
class RequestLease:
    """Ask an account for a lease to check ``stream``."""

    request_id: int
    job_id: int
    stream: Stream


@dataclass(frozen=True)
class ReleaseLease:
    """The check holding ``lease_id`` has ended; it gives one room back (see above).

    Releasing a lease that is not held frees nothing (it still counts as room
    given back, on both sides).
    """

    lease_id: int
    outcome: OutcomeKind | None = None
    """How the check ended, for what the account learns of its logins:
    ``busy`` (the provider refused the connection as full), any other kind (our
    connection closed), ``None`` (the lease was handed back unused)."""
    stream_id: int | None = None
    """The stream the check was for."""
    repeated: bool = False
    """``busy`` again for a stream refused before in the cycle, and judged the
    stream's own, not the login's (see ``Dispatch._refused_alone``)."""
    again: bool = False
    """``busy`` again for a stream refused before in the cycle, judged the login's
    (still full): the limit goes down to what the login held (see
    ``ProviderLearning.refused``)."""


@dataclass(frozen=True)
class LimitsChanged:
    """New account definition (limits, profiles, rewrites) read from the source."""

    account: Account
    stagger_delay: float


@dataclass(frozen=True)
class GetUsage:
    """Ask an account for (viewers, leases, limit in force) per profile id (tests).

    With ``detail`` the answer per profile id is a mapping with ``viewers``,
    ``leases``, ``limit`` (configured), ``learned_limit`` and ``release_lag_s``
    (the status page).
    """

    detail: bool = False


# --- account -> coordinator -----------------------------------------------------


@dataclass(frozen=True)
class LeaseGranted:
    """Answer to ``RequestLease``: the check may open its connection now."""

    request_id: int
    lease: Lease


@dataclass(frozen=True)
class LeaseDenied:
    """Answer to ``RequestLease``: no room now; ``RoomChanged`` follows when there is."""

    request_id: int
    account_id: int
    reason: str


@dataclass(frozen=True)
class RoomChanged:
    """The account's room differs from the count both sides keep: add ``change`` to it.

    Positive when slots freed (viewers left, a limit was raised, the stagger
    delay passed, the account actor started), negative when they went.
    ``short`` says why there is no room when it is not just that every slot
    is taken (``"stagger"``, ``"viewer_count_unknown"``,
    ``"no_usable_profile"``), else ``None``; it is told also when only it
    changed (the status page shows why checks wait).
    """

    account_id: int
    change: int
    short: str | None = None


@dataclass(frozen=True)
class LoginsLearned:
    """An account's learned login state changed (account -> result sink, which keeps it,
    and -> coordinator, which starts a fresh actor for the account from it)."""

    account_id: int
    logins: tuple[LearnedLogin, ...]
    """Every login that learned something; none: forget what was kept."""


@dataclass(frozen=True)
class AccountFailed:
    """An account actor crashed (a bug): its unanswered requests will never be answered."""

    account_id: int


@dataclass(frozen=True)
class Preempt:
    """Viewers need these leases back: cancel their checks now."""

    account_id: int
    lease_ids: tuple[int, ...]


# --- checks -> coordinator -------------------------------------------------------


@dataclass(frozen=True)
class CheckFinished:
    """How a check's probe ended (from the pool thread it ran on)."""

    lease_id: int
    job_id: int
    outcome: ProbeOutcome
    started_at: str
    finished_at: str


# --- outside world -> coordinator -----------------------------------------------


@dataclass(frozen=True)
class SetAccounts:
    """The accounts of the source, read afresh (each cycle): start, update or retire actors."""

    accounts: tuple[Account, ...]


@dataclass(frozen=True)
class CheckCycle:
    """Check these jobs; ``done`` gets the ``CycleFinished``.

    While another cycle runs, this one is refused: ``done`` fails with
    ``CycleBusyError`` and ``requester`` (if any) is told ``CycleRefused``.
    """

    cycle_id: int
    jobs: tuple[Job, ...]
    done: pykka.Future[CycleFinished] | None = None
    requester: pykka.ActorRef[Any] | None = None


@dataclass(frozen=True)
class AbortCycle:
    """Stop the running cycle: cancel running checks, report the rest as cancelled.

    ``done`` (a pykka future, optional) is set once no cycle runs any more.
    With ``error`` (an actor the cycle needs has died) the open jobs end as
    ``error`` with ``reason`` instead of ``cancelled``, and so does every job
    of a cycle asked for afterwards: the daemon is going down.
    """

    reason: str = "shutdown"
    done: pykka.Future[CycleFinished | None] | None = None
    error: bool = False


@dataclass(frozen=True)
class Subscribe:
    """Add a listener for ``CycleStarted``, ``ResultReady`` and ``CycleFinished``."""

    listener: pykka.ActorRef[Any]


# --- viewer watcher <-> accounts --------------------------------------------------


@dataclass(frozen=True)
class WatchViewers:
    """Send ``subscriber`` every viewer read from now on, and the current state at once."""

    subscriber: pykka.ActorRef[Any]


@dataclass(frozen=True)
class UnwatchViewers:
    """Stop sending ``subscriber`` viewer reads."""

    subscriber: pykka.ActorRef[Any]


@dataclass(frozen=True)
class ViewersSeen:
    """A good viewer read: the snapshot for all accounts (each takes its own part)."""

    snapshot: ViewerSnapshot
    read_at: float | None = None
    """``time.monotonic()`` when it was read (``None``: now), so that old counts go stale."""


@dataclass(frozen=True)
class ViewersUnknown:
    """A failed viewer read: the counts are unknown now.

    ``assumed`` is the worst of the recent good reads (``None`` before any).
    """

    error: str
    assumed: ViewerSnapshot | None = None


@dataclass(frozen=True)
class GetStatus:
    """Ask for a snapshot of queues, leases and the running cycle (for tests and /api/status)."""


# --- coordinator -> listeners ---------------------------------------------------


@dataclass(frozen=True)
class CycleStarted:
    """A cycle began."""

    cycle_id: int
    streams: int
    started_at: str


@dataclass(frozen=True)
class ResultReady:
    """The final result for one stream."""

    cycle_id: int
    result: CheckResult


@dataclass(frozen=True)
class CycleFinished:
    """Every stream of the cycle has its one result."""

    cycle_id: int
    results: tuple[CheckResult, ...]
    started_at: str
    finished_at: str
    duration_s: float
    aborted: bool = False


@dataclass(frozen=True)
class CycleRefused:
    """To a ``CheckCycle``'s requester: another cycle was running, this one did not start."""

    cycle_id: int
    reason: str


# --- scheduler / sink -----------------------------------------------------------


@dataclass(frozen=True)
class RunNow:
    """Start a cycle now (unless one is running: then it is skipped and logged)."""


@dataclass(frozen=True)
class TakeCycleId:
    """Asked of the scheduler: the next cycle id, for a cycle it does not start itself
    (a dashboard channel check). One counter, seeded from the database, names every
    cycle of the daemon, so no id is handed out twice, also across restarts."""


@dataclass(frozen=True)
class CycleInventory:
    """The inventory a cycle was built from (the sink orders channels with it)."""

    cycle_id: int
    inventory: Inventory


# --- supervision -----------------------------------------------------------------


@dataclass(frozen=True)
class ActorFailed:
    """A long-lived actor crashed (told by its ``on_failure``, or its ``on_start``)."""

    actor: str
    """``"coordinator"``, ``"result_sink"``, ``"viewer_watcher"`` or ``"scheduler"``."""
    error: str


@dataclass(frozen=True)
class Supervise:
    """The supervisor's coordinator: the running cycle is failed through it."""

    coordinator: pykka.ActorRef[Any]


@dataclass(frozen=True)
class Flush:
    """Ask the sink to answer once everything before this message is written."""
