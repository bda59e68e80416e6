"""``Dispatch``: the coordinator's decisions, as a plain class (no threads, no pykka).

It owns the waiting jobs per account, the global budget, the lease requests in
flight, the running checks and the timers (retry delays, each check's
deadline, the cycle's ``max_wait``), all as data. Each event (a cycle's jobs, a
grant, a denial, room changing, a check ending, a preemption, timers due) goes
in through one method, which returns the actions to carry out in order:
:class:`Request` a lease, :class:`Release` one, :class:`StartCheck`,
:class:`CancelCheck`, :class:`AbandonCheck`, :class:`Finish` a job,
:class:`WakeAt` (call :meth:`Dispatch.tick` then), :class:`DropAccount`. The
clock is injected, so a test or a simulation drives it with a fake one.

How slots are handed out: a job waits on its account until the account has
room (see the lease protocol in :mod:`actors.messages`) and the global budget
has room; requests in flight count against the budget like running checks, so
the budget is never overdrawn. Within an account the job of highest priority
goes first (``Job.priority``, ranked by the coordinator: channels marked in the
config, then streams never checked, then those whose last check failed, then
the rest, the most cycles unchecked first); among equals the account's
shortest expected checks (up to :func:`tail_threshold`) go last, longest first,
so that its slots end close together, and the longer ones before them in an
order spread over their lengths (see :func:`spread`). While the budget can
serve every ready account in full, each gets all it can take at once; when the
budget binds, each free unit goes to the account on the critical path, the one
that would finish last: by its remaining work (waiting, asked for and still
running) per slot it would then hold and per slot it can use, and the check it
would start next (see ``_Account.urgency``).

Why the longer checks are not simply longest first: sorted by length, the
checks one after another on a slot take nearly as long as those on the slot
beside it, so slots that started together keep ending together, and each
burst of ends waits on the one loop thread, hand-over after hand-over.
``python -m bench.handoff`` measures that alone (threads and a queue, no
actor): ``large_2000``'s 2,000 checks of 10-50 ms on 30 threads took
1.029-1.036 x their bound longest first and 1.012-1.013 in this order, where a
list schedule with no hand-over time takes 1.0017 and 1.0023.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import structlog

from actors.actions import (
    AbandonCheck,
    Action,
    CancelCheck,
    DropAccount,
    Finish,
    Release,
    Request,
    StartCheck,
    WakeAt,
)
from actors.messages import Job, Lease, ReleaseLease, RequestLease
from actors.observer import Attempt, CheckObserver
from actors.slots import UNLIMITED
from domain.models import OutcomeKind, ProbeOutcome

logger = structlog.get_logger(__name__)

TAIL_SHARE = 0.3
"""The share of an account's queued checks, its shortest expected ones, that go last
and longest first (among equal priorities)..."""
TAIL_PER_SLOT = 4
"""... and at least this many of them per slot the account can use, so that its
slots, however the longer checks left them, still end close together."""

REFUSALS_REQUEUED = 2
"""A job refused as full goes back to its queue at most this many times in a cycle
(the second only next to another of our checks on its account; see ``_refused_alone``)."""

_SPREAD = 1000.0 + 0.6180339887498949
"""A golden-ratio step per second and per millisecond of a check's length (see :func:`spread`)."""

ACCOUNT_UNAUTHORIZED = "account_unauthorized"
"""The probe's reason for an HTTP 401: the account's login is refused, not the stream."""

Clock = Callable[[], float]
"""Monotonic seconds."""


@dataclass(frozen=True)
class CoordinatorSettings:
    """How checks run; built from the config's ``[concurrent_streams]`` and ``[check]``."""

    global_limit: int = 0
    """Checks running at once over all accounts; 0 = unlimited."""
    stagger_delay: float = 0.0
    """Default seconds between two openings on one account (accounts may override)."""
    check_duration: float = 10.0
    check_timeout: float = 30.0
    retries: int = 2
    retry_delay: float = 5.0
    busy_backoff: float = 10.0
    max_requeues: int = 10
    user_agent: str | None = None
    max_wait: float = 600.0
    """Seconds a cycle may go without a check starting or ending while jobs wait
    (viewers may hold every slot); then the waiting jobs end as ``cancelled``:
    ``viewers_held_account`` where none of our checks runs on the account
    (``viewer_count_unknown`` while its viewers cannot be read), else
    ``no_free_slot``. ``check.max_wait`` in the config."""
    unresponsive_grace: float = 15.0
    """Seconds a check cancelled at its deadline gets to report before its lease is given up."""
    learn_providers: bool = False
    """Accounts learn from "full" refusals (``[learning]``, given to the
    coordinator as its ``learning``): a job refused for the first time waits in
    the queue, holding no slot, until its account has room again, instead of a
    ``busy_backoff`` delay. Refused again with none of our other checks on its
    account (or a third time), it is the stream the provider refuses (the account
    undoes what the stream's refusals taught): it backs off as before."""
    stable_every: int = 1
    """``check.stable_every``: a stream healthy and unchanged for its last checks
    is checked every that many cycles (1 = every cycle; see :mod:`domain.priority`)."""

    @property
    def deadline(self) -> float:
        """A check's one time limit, from its start: ``check.duration + check.timeout``.

        The probe stops itself there; the coordinator cancels a check still
        running then, as a timeout.
        """
        return self.check_duration + self.check_timeout


# --- state ------------------------------------------------------------------------


_Waiting = tuple[int, int, float, float, int, Job]
"""A waiting job's heap entry: priority rank and age, its place (:func:`spread`; 1.0 in
the tail, -1.0 back in the queue), its expected seconds negated, its id."""

_TAIL = 1.0
_BACK = -1.0
"""A job back in the queue (denied, retried, requeued): first among its equals."""


def spread(expected_s: float) -> float:
    """A check's place among the longer checks of its account, in [0, 1): spread over
    their lengths, so that checks of near lengths do not follow one another; equal
    lengths get equal places (and keep the order of their jobs)."""
    return (expected_s * _SPREAD) % 1.0


def tail_threshold(lengths: Sequence[float], slots: int) -> float | None:
    """The longest check of an account's tail: its checks as long or shorter are in
    it (:data:`TAIL_SHARE`, at least :data:`TAIL_PER_SLOT` per one of its ``slots``);
    None when all of them are."""
    tail = max(math.ceil(len(lengths) * TAIL_SHARE), TAIL_PER_SLOT * slots)
    if tail >= len(lengths):
        return None
    return sorted(lengths)[tail - 1]


def place(entries: list[_Waiting], slots: int) -> list[_Waiting]:
    """An account's queue at a cycle's start, each entry given its place: its shortest
    checks in the tail (all of them where every check is as long), the others spread."""
    threshold = tail_threshold([-entry[3] for entry in entries], slots)
    if threshold is None:
        return entries
    return [
        (rank, age, _TAIL if -negated_s <= threshold else spread(-negated_s), negated_s, jid, job)
        for rank, age, _, negated_s, jid, job in entries
    ]


@dataclass
class _Account:
    account_id: int
    capacity: int
    """Slots the account's profiles allow in all (UNLIMITED if one is unlimited)."""
    room: int = 0
    """Requests the account has room for, as both sides count it (see ``RoomChanged``)."""
    waiting: list[_Waiting] = field(default_factory=list)
    """A heap: the job's priority first (``Job.priority``: marked channels, never
    checked, failed, the rest, the most cycles unchecked first), then its place
    (a job back in the queue, the longer checks spread, the tail), then the
    longest expected check, then the oldest job. The entry's keys are the job's:
    a job queued at a cycle's start gets them copied in when it leaves the queue."""
    waiting_work: float = 0.0
    in_flight: int = 0
    in_flight_work: float = 0.0
    running: int = 0
    running_work: float = 0.0
    """Expected seconds of the running checks, in all."""
    retired: bool = False
    lost: str | None = None
    """Why the account's actor is gone, while it is."""
    unauthorized: bool = False
    """The provider refused the login (401) this cycle: its jobs end without a connection."""
    waiting_for: str | None = None
    """Why its jobs wait: what the account last said of its room (``RoomChanged``), or
    the reason of its last denial; cleared by a grant."""
    key: tuple[float, float, float, int] | None = None
    """``urgency`` as last computed; ``Dispatch._mark`` drops it whenever the account
    changes (see ``Dispatch._most_urgent``)."""

    @property
    def ready(self) -> bool:
        return (
            bool(self.waiting)
            and self.room > 0
            and not self.retired
            and self.lost is None
            and not self.unauthorized
        )

    @property
    def busy(self) -> bool:
        return self.running > 0 or self.in_flight > 0

    def urgency(self, global_limit: int) -> tuple[float, float, float, int]:
        """How late the account would finish: the one that would finish last goes first.

        Its work left is what waits, what is asked for and what runs (counted
        whole: the simulation found no better schedule from counting only what
        is left of the running checks, and this way the key changes only when
        the account does). It cannot finish sooner than that work per slot it
        would hold with one more, nor than that work over all the slots it can
        use (as far as its room tells, at most the budget), nor than the
        check it would start next. Ties go to the most work per usable slot,
        then to the longest next check.
        """
        held = self.running + self.in_flight
        usable = min(self.capacity, held + max(0, self.room))
        if 0 < global_limit < usable:
            usable = global_limit
        work = self.waiting_work + self.in_flight_work + self.running_work
        longest = -self.waiting[0][3]  # the next check
        per_usable_slot = work / max(1, usable)
        finish = max(work / (held + 1), per_usable_slot, longest)
        return (finish, per_usable_slot, longest, -self.account_id)


@dataclass
class _Run:
    job: Job
    lease: Lease
    started: float
    cancelling: bool = False
    timed_out: bool = False


class _Timers:
    """Deadlines by key, soonest first; re-setting or cancelling a key drops its old one."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._current: dict[Hashable, int] = {}
        self._seq = itertools.count()

    def set(self, key: Hashable, due: float) -> None:
        seq = next(self._seq)
        self._current[key] = seq
        heapq.heappush(self._heap, (due, seq, key))

    def cancel(self, key: Hashable) -> None:
        self._current.pop(key, None)

    def next_due(self) -> float | None:
        heap = self._heap
        while heap and self._current.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> Hashable | None:
        due = self.next_due()
        if due is None or due > now:
            return None
        _, _, key = heapq.heappop(self._heap)
        del self._current[key]
        return key


_MAX_WAIT = ("max_wait",)
_UNAUTHORIZED = ProbeOutcome(kind="error", reason=ACCOUNT_UNAUTHORIZED)


class Dispatch:
    """The queue, the global budget, retries and running checks of the coordinator.

    Args:
        settings: limits and check timings.
        clock: monotonic seconds (``time.monotonic`` in the daemon).
        history: seconds each stream's last check took, so that the first
            cycle after a restart already starts the long checks first.
        observer: told of every attempt's end and of preemptions (the metrics).
    """

    def __init__(
        self,
        settings: CoordinatorSettings,
        clock: Clock,
        history: Mapping[int, float] | None = None,
        observer: CheckObserver | None = None,
    ) -> None:
        self._settings = settings
        self._observer: CheckObserver = observer or CheckObserver()
        self._clock = clock
        self._history: dict[int, float] = dict(history or {})
        self._accounts: dict[int, _Account] = {}
        self._ready: set[int] = set()
        """Accounts with waiting jobs and room, that only the global budget holds back."""
        self._urgent: list[tuple[float, float, float, int]] = []
        """The ready accounts, most urgent first (see ``_most_urgent``)."""
        self._changed: set[int] = set()
        """Accounts whose urgency was dropped since the last pick."""
        self._requests: dict[int, Job] = {}
        self._running: dict[int, _Run] = {}
        self._delayed: dict[int, Job] = {}
        self._timers = _Timers()
        self._armed: float | None = None
        self._request_ids = itertools.count(1)
        self._open = 0
        self._draining: ProbeOutcome | None = None
        """How the jobs of a cycle ending early end (cancelled, or error when an actor died)."""
        self._last_progress = 0.0
        """When a check last started or ended: ``max_wait`` counts from here."""
        self._wait_expired = False

    # --- reading --------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """True when no job of the cycle is left anywhere (waiting, asked for, running, delayed)."""
        return self._open == 0

    @property
    def draining(self) -> str | None:
        """Why the cycle is ending early (abort, ``max_wait``), or None: nothing starts then."""
        return None if self._draining is None else self._draining.reason

    @property
    def wait_expired(self) -> bool:
        """The cycle ends early only because ``max_wait`` passed: not an abort."""
        return self._wait_expired

    @property
    def history(self) -> dict[int, float]:
        """Seconds each stream's last ok/dead check took."""
        return dict(self._history)

    def checks(self) -> list[dict[str, int]]:
        """The running checks for the status page: lease, stream, account and login."""
        return [
            {
                "lease_id": lease_id,
                "stream_id": run.job.stream.id,
                "account_id": run.lease.account_id,
                "profile_id": run.lease.profile_id,
            }
            for lease_id, run in self._running.items()
        ]

    def account_counts(self, account_id: int) -> tuple[int, int]:
        """(waiting, running) checks of one account."""
        account = self._accounts.get(account_id)
        if account is None:
            return (0, 0)
        return (len(account.waiting), account.running)

    def account_status(self, account_id: int) -> dict[str, object]:
        """One account's queue for the status page: waiting, running, and why it waits."""
        account = self._accounts.get(account_id)
        if account is None:
            return {"waiting": 0, "running": 0, "unauthorized": False, "waiting_for": None}
        return {
            "waiting": len(account.waiting),
            "running": account.running,
            "unauthorized": account.unauthorized,
            # e.g. "viewer_count_unknown": why its waiting checks wait
            "waiting_for": account.waiting_for if account.waiting else None,
        }

    def room(self, account_id: int) -> int:
        """The account's room as the coordinator counts it (see ``RoomChanged``)."""
        account = self._accounts.get(account_id)
        return 0 if account is None else account.room

    def counts(self) -> dict[str, int]:
        """Running checks, requests in flight and delayed retries, over all accounts."""
        return {
            "running": len(self._running),
            "requests_in_flight": len(self._requests),
            "delayed": len(self._delayed),
        }

    def can_restart(self, account_id: int) -> bool:
        """True if the account's actor may be replaced: nothing of it runs or is asked for."""
        account = self._accounts.get(account_id)
        return account is None or not account.busy

    # --- accounts -------------------------------------------------------------------

    def set_account(self, account_id: int, capacity: int, *, fresh: bool = False) -> list[Action]:
        """An account is there (new, or with new limits); ``fresh``: its actor was (re)started.

        A fresh actor has given no room yet: it tells its room when it starts.
        """
        account = self._accounts.get(account_id)
        if account is None or fresh:
            account = _Account(account_id, capacity)
            self._accounts[account_id] = account
        account.capacity = capacity
        account.retired = False
        self._mark(account)
        return self._done(self._pump([]))

    def retire_account(self, account_id: int) -> list[Action]:
        """The account left the source: its waiting jobs end; its actor stops once idle."""
        out: list[Action] = []
        account = self._accounts.get(account_id)
        if account is None:
            return out
        account.retired = True
        self._fail_waiting(account, ProbeOutcome(kind="error", reason="account_removed"), out)
        self._drop_if_done(account, out)
        return self._done(out)

    def account_lost(self, account_id: int, reason: str) -> list[Action]:
        """The account's actor is gone: its requests will never be answered; end its jobs."""
        out: list[Action] = []
        account = self._accounts.get(account_id)
        if account is None:
            return out
        lost = [rid for rid, job in self._requests.items() if job.account_id == account_id]
        logger.error("account_actor_lost", account_id=account_id, requests=len(lost))
        failed = ProbeOutcome(kind="error", reason=reason)
        for request_id in lost:
            job = self._requests.pop(request_id)
            account.in_flight -= 1
            account.in_flight_work -= job.expected_s
            self._finish(job, failed, out)
        account.lost = reason
        self._mark(account)
        self._fail_waiting(account, failed, out)
        return self._done(self._pump(out))  # the budget its requests held goes on at once

    def room_changed(self, account_id: int, change: int, short: str | None = None) -> list[Action]:
        """``RoomChanged`` from an account (``short``: why it has no room)."""
        out: list[Action] = []
        account = self._accounts.get(account_id)
        if account is not None:
            account.room += change
            account.waiting_for = short
            self._mark(account)
            self._pump(out)
        return self._done(out)

    # --- cycles ---------------------------------------------------------------------

    def start(
        self, jobs: Iterable[Job], rank: Callable[[Job], tuple[int, int]] | None = None
    ) -> list[Action]:
        """A cycle's jobs, ordered by priority, then by what each took last time (unknown:
        a full check).

        Args:
            jobs: the cycle's jobs.
            rank: each job's priority (``Job.priority``); the jobs' own if None.
        """
        out: list[Action] = []
        self._draining = None
        self._wait_expired = False
        self._last_progress = self._clock()
        for each in self._accounts.values():
            each.unauthorized = False  # the next cycle tries a refused login again
            self._mark(each)
        jobs = list(jobs)
        if len(self._history) > 2 * len(jobs):  # forget streams gone from the inventory
            known = {job.stream.id for job in jobs}
            self._history = {sid: s for sid, s in self._history.items() if sid in known}
        default = self._settings.check_duration
        self._open += len(jobs)
        history, accounts = self._history, self._accounts
        # The cycle's start waits on this loop: a job goes into its account's queue
        # as its heap entry, and is copied with its keys only when it is asked for.
        queued: dict[int, list[_Waiting]] = {}
        for job in jobs:
            expected = history.get(job.stream.id, default)
            order, age = job.priority if rank is None else rank(job)
            account = accounts.get(job.stream.account_id)
            if account is not None and not account.retired and account.lost is None:
                entry = (order, age, _TAIL, -expected, job.job_id, job)
                queued.setdefault(account.account_id, []).append(entry)
                continue
            keyed = job.evolve(expected_s=expected, priority=(order, age))
            if account is None or account.retired:
                self._finish(keyed, ProbeOutcome(kind="error", reason="unknown_account"), out)
            else:
                self._enqueue(keyed, out)  # it ends at once, as _enqueue says why
        limit = self._settings.global_limit
        for account_id, entries in queued.items():
            account = accounts[account_id]
            slots = min(account.capacity, limit) if limit > 0 else account.capacity
            self._push_all(account, place(entries, slots))
        if self._open:
            self._timers.set(_MAX_WAIT, self._clock() + self._settings.max_wait)
        self._pump(out)
        return self._done(out)

    def abort(self, reason: str, *, error: bool = False) -> list[Action]:
        """End the cycle now: waiting jobs end cancelled, running checks are cancelled.

        With ``error`` (an actor the cycle needs has died) the jobs end as
        ``error`` with ``reason`` instead, also those a cancel-abort before had
        already begun to end.
        """
        out: list[Action] = []
        if self._open == 0:
            return out
        ended = ProbeOutcome(kind="error" if error else "cancelled", reason=reason)
        if self._draining is None or error:
            self._draining = ended
        self._fail_queued(ended, out)
        for lease_id, run in self._running.items():
            run.cancelling = True
            out.append(CancelCheck(lease_id, reason))
        return self._done(out)

    # --- the lease protocol ---------------------------------------------------------

    def granted(self, request_id: int, lease: Lease) -> list[Action]:
        """``LeaseGranted``: start the check (or hand the lease back if it is not wanted)."""
        out: list[Action] = []
        job = self._requests.pop(request_id, None)
        account = self._accounts.get(lease.account_id)
        if job is None or account is None:  # its request was given up: hand it back
            self._release(lease, out)
            return self._done(out)
        account.in_flight -= 1
        account.in_flight_work -= job.expected_s
        account.waiting_for = None
        if self._draining is not None or account.unauthorized:
            self._release(lease, out)
            self._finish(job, self._draining or _UNAUTHORIZED, out)
            return self._done(out)
        now = self._clock()
        self._last_progress = now
        out.append(StartCheck(job, lease, lease.held))
        self._running[lease.lease_id] = _Run(job, lease, now)
        account.running += 1
        account.running_work += job.expected_s
        self._mark(account)
        self._timers.set(("deadline", lease.lease_id), now + self._settings.deadline)
        logger.debug(
            "check_started",
            stream_id=job.stream.id,
            account_id=lease.account_id,
            profile_id=lease.profile_id,
            lease_id=lease.lease_id,
        )
        self._pump(out)
        return self._done(out)

    def denied(self, request_id: int, reason: str = "full") -> list[Action]:
        """``LeaseDenied``: the job waits again; its account tells when it has room."""
        out: list[Action] = []
        job = self._requests.pop(request_id, None)
        if job is None:  # its request was given up already
            return out
        account = self._accounts.get(job.account_id)
        if account is not None:
            account.in_flight -= 1
            account.in_flight_work -= job.expected_s
            account.waiting_for = reason
            self._mark(account)
        if self._draining is not None:
            self._finish(job, self._draining, out)
        else:
            self._enqueue(job, out)
        self._pump(out)
        return self._done(out)

    # --- checks ending --------------------------------------------------------------

    def check_finished(
        self,
        lease_id: int,
        outcome: ProbeOutcome,
        started_at: str | None = None,
        finished_at: str | None = None,
    ) -> list[Action]:
        """A check reported how its probe ended."""
        return self._done(self._end_run(lease_id, outcome, started_at, finished_at, []))

    def preempt(self, lease_ids: Iterable[int]) -> list[Action]:
        """Viewers need these leases back: cancel their checks (the jobs go back to the queue)."""
        out: list[Action] = []
        for lease_id in lease_ids:
            run = self._running.get(lease_id)
            if run is None or run.cancelling:
                continue
            run.cancelling = True
            self._observer.check_preempted(run.lease.account_id, run.lease.profile_id)
            logger.info(
                "check_preempted",
                lease_id=lease_id,
                stream_id=run.job.stream.id,
                account_id=run.lease.account_id,
            )
            out.append(CancelCheck(lease_id, "preempted"))
        return out

    def tick(self) -> list[Action]:
        """Timers due by now: retries become waiting jobs, deadlines cancel checks."""
        out: list[Action] = []
        self._armed = None
        now = self._clock()
        while (key := self._timers.pop_due(now)) is not None:
            match key:
                case ("retry", int(job_id)):
                    job = self._delayed.pop(job_id)
                    self._enqueue(job, out)
                case ("deadline", int(lease_id)):
                    self._on_deadline(lease_id, now, out)
                case ("max_wait",):
                    self._on_max_wait(out)
        self._pump(out)
        return self._done(out)

    # --- internals: queues ----------------------------------------------------------

    def _push(self, account: _Account, job: Job) -> None:
        # Back in the queue (a denial, a retry): first among its equals, its turn had come.
        rank, age = job.priority
        heapq.heappush(account.waiting, (rank, age, _BACK, -job.expected_s, job.job_id, job))
        account.waiting_work += job.expected_s
        self._mark(account)

    def _push_all(self, account: _Account, entries: list[_Waiting]) -> None:
        """``_push`` of many heap entries at once (a cycle's start): one heapify, one mark."""
        waiting = account.waiting
        waiting.extend(entries)
        heapq.heapify(waiting)
        account.waiting_work -= sum(entry[3] for entry in entries)
        self._mark(account)

    def _pop(self, account: _Account) -> Job:
        """The account's next job, with the priority and expected duration it waited by."""
        rank, age, _, negated_s, _, job = heapq.heappop(account.waiting)
        account.waiting_work = max(0.0, account.waiting_work + negated_s)
        self._mark(account)
        return job.evolve(expected_s=-negated_s, priority=(rank, age))

    def _mark(self, account: _Account) -> None:
        """The account changed: refresh whether it is ready, forget its urgency."""
        account.key = None
        self._changed.add(account.account_id)
        if account.ready:
            self._ready.add(account.account_id)
        else:
            self._ready.discard(account.account_id)

    def _enqueue(self, job: Job, out: list[Action]) -> None:
        account = self._accounts.get(job.account_id)
        if account is None or account.retired:
            self._finish(job, ProbeOutcome(kind="error", reason="account_removed"), out)
        elif account.lost is not None:
            self._finish(job, ProbeOutcome(kind="error", reason=account.lost), out)
        elif account.unauthorized:
            self._finish(job, _UNAUTHORIZED, out)
        else:
            self._push(account, job)

    def _fail_waiting(self, account: _Account, outcome: ProbeOutcome, out: list[Action]) -> None:
        while account.waiting:
            self._finish(self._pop(account), outcome, out)

    def _fail_queued(self, outcome: ProbeOutcome, out: list[Action]) -> int:
        """End every waiting and delayed job with ``outcome``; how many there were."""
        ended = len(self._delayed)
        for account in self._accounts.values():
            ended += len(account.waiting)
            self._fail_waiting(account, outcome, out)
        for job_id, job in list(self._delayed.items()):
            self._timers.cancel(("retry", job_id))
            self._finish(job, outcome, out)
        self._delayed.clear()
        return ended

    # --- internals: granting --------------------------------------------------------

    def _budget_left(self) -> int:
        limit = self._settings.global_limit
        if limit <= 0:
            return UNLIMITED
        return limit - len(self._requests) - len(self._running)

    def _pump(self, out: list[Action]) -> list[Action]:
        """Ask for leases while the budget has room; see the module's docstring for the order."""
        if self._draining is not None or not self._ready:
            return out
        budget = self._budget_left()
        if budget <= 0:
            return out
        accounts = self._accounts
        # Each ready account can take one at least: more of them than the
        # budget means the budget binds, without summing what they could take.
        if len(self._ready) <= budget:
            ready = [accounts[account_id] for account_id in self._ready]
            if sum(min(a.room, len(a.waiting)) for a in ready) <= budget:
                for account in ready:
                    while account.ready:
                        self._request(account, out)
                return out
        while budget > 0 and self._ready:
            self._request(self._most_urgent(), out)
            budget -= 1
        return out

    def _most_urgent(self) -> _Account:
        """The ready account on the critical path (the largest ``urgency``; one must be ready).

        The heap holds an entry per ready account with its key as last computed
        (``_mark`` drops the key of an account that changed, and notes it in
        ``_changed``); an entry whose key is no longer its account's is stale and
        skipped. So a pick costs a few heap operations for the accounts that
        changed, not a comparison of every ready account (up to 200 of them, at
        every hand-over of a global slot).
        """
        accounts, ready, heap = self._accounts, self._ready, self._urgent
        if len(heap) > 2 * len(accounts) + 64:  # too many stale entries: start afresh
            self._changed.update(ready)
            heap.clear()
        limit = self._settings.global_limit
        for account_id in self._changed:
            if account_id in ready:
                account = accounts[account_id]
                finish, per_slot, longest, negated_id = account.key = account.urgency(limit)
                heapq.heappush(heap, (-finish, -per_slot, -longest, -negated_id))
        self._changed.clear()
        while True:
            finish, per_slot, longest, account_id = heap[0]
            if account_id in ready:  # a ready account is in the accounts
                key = accounts[account_id].key
                if key is not None and key[:3] == (-finish, -per_slot, -longest):
                    return accounts[account_id]
            heapq.heappop(heap)

    def _request(self, account: _Account, out: list[Action]) -> None:
        job = self._pop(account)
        request_id = next(self._request_ids)
        self._requests[request_id] = job
        account.in_flight += 1
        account.in_flight_work += job.expected_s
        account.room -= 1
        self._mark(account)
        request = RequestLease(request_id=request_id, job_id=job.job_id, stream=job.stream)
        out.append(Request(account.account_id, request))

    def _release(
        self,
        lease: Lease,
        out: list[Action],
        outcome: OutcomeKind | None = None,
        job: Job | None = None,
    ) -> None:
        account = self._accounts.get(lease.account_id)
        if account is not None:
            account.room += 1  # the account counts the release as room given back too
            self._mark(account)
        stream_id = job.stream.id if job is not None else None
        repeated = again = False
        if job is not None and outcome == "busy" and job.refusals > 0:  # refused before
            repeated = self._refused_alone(job)  # the stream's own refusal ...
            again = not repeated  # ... or the login still full
        release = ReleaseLease(lease.lease_id, outcome, stream_id, repeated, again)
        out.append(Release(lease.account_id, release))

    # --- internals: ending ----------------------------------------------------------

    def _refused_alone(self, job: Job) -> bool:
        """Whether a ``busy`` for ``job`` means the provider refuses the stream, not the login.

        The first refusal is the login's: the account learns from it and the job
        waits for room again. Refused again with none of our other checks on its
        account, it is the stream. Refused again next to another of our checks,
        the login may still be full (a limit learned while some of the first
        connections were still on their way): once more it goes back, and a
        third refusal is the stream's whatever else runs.
        """
        if job.refusals == 0:
            return False
        account = self._accounts.get(job.account_id)
        others = account.running if account is not None else 0
        return job.refusals >= REFUSALS_REQUEUED or others == 0

    def _end_run(
        self,
        lease_id: int,
        outcome: ProbeOutcome,
        started_at: str | None,
        finished_at: str | None,
        out: list[Action],
    ) -> list[Action]:
        """Release the lease (exactly once: the run is popped) and settle the job."""
        run = self._running.pop(lease_id, None)
        if run is None:
            return out
        self._timers.cancel(("deadline", lease_id))
        self._last_progress = self._clock()
        held = self._last_progress - run.started
        lease = run.lease
        attempt = Attempt(lease.account_id, lease.profile_id, outcome.kind, outcome.reason, held)
        self._observer.attempt_ended(attempt)
        if outcome.kind in ("ok", "dead"):
            self._history[run.job.stream.id] = held
        account = self._accounts.get(run.lease.account_id)
        if account is not None:
            account.running -= 1
            account.running_work -= run.job.expected_s
        self._release(run.lease, out, outcome.kind, run.job)
        self._settle(run, outcome, started_at, finished_at, out)
        if account is not None:
            self._drop_if_done(account, out)
        return self._pump(out)

    def _settle(
        self,
        run: _Run,
        outcome: ProbeOutcome,
        started_at: str | None,
        finished_at: str | None,
        out: list[Action],
    ) -> None:
        """Final result, or back to the queue (now, or after a delay)."""
        job = run.job
        settings = self._settings
        account = self._accounts.get(job.account_id)
        refused = outcome.reason == ACCOUNT_UNAUTHORIZED  # by reason, whatever the kind
        if account is not None and (refused or outcome.kind not in ("ok", "dead")):
            if refused and not account.unauthorized:
                self._account_unauthorized(account, out)
            if account.unauthorized:
                outcome = replace(_UNAUTHORIZED, info=outcome.info)
                self._finish(job, outcome, out, run.lease.profile_id, started_at, finished_at)
                return
        going_on = self._draining is None
        if outcome.kind == "cancelled" and going_on and job.requeues < settings.max_requeues:
            self._enqueue(replace(job, requeues=job.requeues + 1), out)
            return
        learns = outcome.kind == "busy" and settings.learn_providers
        if learns and going_on and not self._refused_alone(job):
            # The account learned from the refusal (a lower limit, a release
            # grace, a hold) and offers room again when it has some: the job
            # waits in its queue meanwhile, holding no slot.
            logger.info(
                "check_refused_requeued",
                stream_id=job.stream.id,
                account_id=job.account_id,
                profile_id=run.lease.profile_id,
                reason=outcome.reason,
                refusals=job.refusals + 1,
            )
            self._enqueue(replace(job, refusals=job.refusals + 1), out)
            return
        if outcome.kind in ("error", "busy") and going_on and job.attempt < settings.retries:
            if outcome.kind == "busy":
                delay = settings.busy_backoff * (2**job.attempt)
            else:
                delay = settings.retry_delay
            logger.info(
                "check_retry",
                stream_id=job.stream.id,
                kind=outcome.kind,
                reason=outcome.reason,
                delay_s=delay,
                attempt=job.attempt + 1,
            )
            again = replace(job, attempt=job.attempt + 1)
            self._delayed[job.job_id] = again
            self._timers.set(("retry", job.job_id), self._clock() + delay)
            return
        if outcome.kind == "busy":
            outcome = ProbeOutcome(kind="error", info=outcome.info, reason="provider_busy")
        if self._draining is not None and outcome.kind == "cancelled":
            outcome = replace(self._draining, info=outcome.info)
        self._finish(job, outcome, out, run.lease.profile_id, started_at, finished_at)

    def _account_unauthorized(self, account: _Account, out: list[Action]) -> None:
        """The provider refused the account's login: end its jobs now, open nothing more.

        Checks already running on it end on their own (a stream judged ``ok`` or
        ``dead`` keeps its verdict); the next cycle tries the account again.
        """
        account.unauthorized = True
        self._mark(account)
        ended = len(account.waiting)
        self._fail_waiting(account, _UNAUTHORIZED, out)
        for job_id, job in list(self._delayed.items()):
            if job.account_id == account.account_id:
                self._timers.cancel(("retry", job_id))
                del self._delayed[job_id]
                self._finish(job, _UNAUTHORIZED, out)
                ended += 1
        logger.error(
            "account_unauthorized",
            account_id=account.account_id,
            jobs_ended=ended,
            hint="the provider refused the login (HTTP 401): check the account's password",
        )

    def _finish(
        self,
        job: Job,
        outcome: ProbeOutcome,
        out: list[Action],
        profile_id: int | None = None,
        started_at: str | None = None,
        finished_at: str | None = None,
    ) -> None:
        self._open -= 1
        out.append(Finish(job, outcome, profile_id, started_at, finished_at))
        if self._open == 0:
            self._timers.cancel(_MAX_WAIT)

    def _drop_if_done(self, account: _Account, out: list[Action]) -> None:
        if account.retired and not account.busy:
            del self._accounts[account.account_id]
            self._ready.discard(account.account_id)
            out.append(DropAccount(account.account_id))

    # --- internals: timers ----------------------------------------------------------

    def _on_deadline(self, lease_id: int, now: float, out: list[Action]) -> None:
        run = self._running.get(lease_id)
        if run is None:
            return
        if not run.timed_out:
            run.timed_out = run.cancelling = True
            out.append(CancelCheck(lease_id, "timeout"))
            self._timers.set(("deadline", lease_id), now + self._settings.unresponsive_grace)
            return
        logger.error("check_unresponsive", lease_id=lease_id, stream_id=run.job.stream.id)
        out.append(AbandonCheck(lease_id))
        unresponsive = ProbeOutcome(kind="error", reason="probe_unresponsive")
        self._end_run(lease_id, unresponsive, None, None, out)

    def _on_max_wait(self, out: list[Action]) -> None:
        if self._open == 0 or self._draining is not None:
            return
        due = self._last_progress + self._settings.max_wait
        if self._clock() < due:  # checks went on meanwhile: wait the rest
            self._timers.set(_MAX_WAIT, due)
            return
        expired = ProbeOutcome(kind="cancelled", reason="no_free_slot")
        self._draining = expired  # what still runs finishes; nothing is re-queued
        self._wait_expired = True
        left = 0
        for account in self._accounts.values():
            # Nothing of ours runs there and it grants nothing: viewers hold it,
            # or (fail closed) their count could not be read.
            if account.busy:
                outcome = expired
            elif account.waiting_for == "viewer_count_unknown":
                outcome = ProbeOutcome(kind="cancelled", reason="viewer_count_unknown")
            else:
                outcome = ProbeOutcome(kind="cancelled", reason="viewers_held_account")
            left += len(account.waiting)
            self._fail_waiting(account, outcome, out)
        left += self._fail_queued(expired, out)
        logger.warning("cycle_wait_expired", jobs=left)

    def _done(self, out: list[Action]) -> list[Action]:
        """Ask for a wake-up if a timer is now due sooner than the one asked for."""
        due = self._timers.next_due()
        if due is not None and (self._armed is None or due < self._armed):
            self._armed = due
            out.append(WakeAt(due))
        return out
