"""The ports of :mod:`domain.ports`, for an inventory file and for Dispatcharr.

:func:`app.sources.build_sources` picks the implementations from the config:

- ``source.type = "file"``: :class:`FileInventorySource`,
  :class:`FileViewerSource` and :class:`NullWriter` (nothing to write back to).
- ``source.type = "dispatcharr"``: one :class:`~adapters.dispatcharr.DispatcharrClient`
  shared by :class:`DispatcharrInventorySource`, :class:`DispatcharrViewerSource`
  and :class:`DispatcharrWriter`. One client, not one per actor, because a JWT
  login costs one of Dispatcharr's three logins a minute; the client serialises
  token renewal, so sharing it between the scheduler, the viewer watcher and
  the result sink is safe.

Every failure leaves these classes as a :class:`~domain.ports.SourceError`
with a one-line message naming the file and field, or the Dispatcharr endpoint;
the original exception is kept as ``__cause__``.

The write-back follows the safety rules of the design: a channel's stream list
is only ever permuted. The channel is read afresh right before each write; when
its membership changed since the cycle read it, or anything about the answer is
unsure, the channel is left alone. Dispatcharr has no conditional PATCH, so a
user edit landing between that fresh read and the PATCH (milliseconds) cannot
be detected; the window is kept as short as one request.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol

import structlog

from adapters.dispatcharr import (
    ACCOUNTS_PATH,
    CHANNELS_PATH,
    DEFAULT_WRITE_CONCURRENCY,
    PROXY_STATS_PATH,
    STREAMS_PATH,
    DispatcharrClient,
    DispatcharrError,
    DispatcharrUnavailable,
    JsonObject,
)
from adapters.dispatcharr_source import (
    JUDGED_STATUSES,
    build_inventory,
    parse_accounts,
    parse_channels,
    parse_streams,
    plan_reorder,
    pool_shared_logins,
    stats_patch,
    viewers_from_status,
)
from adapters.inventory_file import load_inventory, load_viewers
from adapters.schema import InputError
from adapters.write_queue import WriteQueue, map_on_daemon_threads
from domain.models import Account, Channel, CheckResult, Inventory, ViewerSnapshot
from domain.ports import ChannelOrder, Reordered, SourceError
from domain.urls import redact_url

log = structlog.get_logger(__name__)

REORDER_KEYS: Final = ("changed", "unchanged", "skipped", "failed")
"""Counts :meth:`DispatcharrWriter.reorder` always returns."""
STATS_FRESH_S: Final = 1.0
"""Seconds a batch's stats read may be merged into PATCHes; after, the rest is read
again (Dispatcharr updates a stream's stats itself when someone plays it)."""


class AccountOverride(Protocol):
    """What the config says about one account (``[accounts."<id>"]``)."""

    def apply(self, account: Account) -> Account:
        """``account`` as the config changes it."""
        ...


class StreamSelection(Protocol):
    """Which of Dispatcharr's streams and channels to check (``[dispatcharr]``)."""

    @property
    def include_all_streams(self) -> bool: ...
    @property
    def exclude_groups(self) -> Collection[int]: ...
    @property
    def exclude_channels(self) -> Collection[int | str]: ...


def apply_overrides(inventory: Inventory, overrides: Mapping[int, AccountOverride]) -> Inventory:
    """``inventory`` with each account passed through its ``[accounts."<id>"]`` override."""
    if not overrides:
        return inventory
    accounts = tuple(
        override.apply(account) if (override := overrides.get(account.id)) else account
        for account in inventory.accounts
    )
    return replace(inventory, accounts=accounts)


# --- file -------------------------------------------------------------------------------


class FileInventorySource:
    """The inventory file of ``source.type = "file"``, read afresh on every load.

    Args:
        path: The inventory JSON file.
        overrides: Per-account overrides by account id (``config.accounts``).
    """

    def __init__(self, path: Path, overrides: Mapping[int, AccountOverride] | None = None) -> None:
        self.path = path
        self._overrides: Mapping[int, AccountOverride] = dict(overrides or {})

    def load(self) -> Inventory:
        """Read and validate the file, overrides applied.

        Raises:
            SourceError: The file is missing, not JSON or has a bad field; the
                message names the file and the field.
        """
        try:
            inventory = load_inventory(self.path)
        except InputError as exc:
            raise SourceError(str(exc)) from exc
        return apply_overrides(inventory, self._overrides)


class FileViewerSource:
    """The optional viewer file (``source.viewers_path``), read on every poll.

    Args:
        path: The viewer JSON file; ``None`` means nobody ever watches.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def read(self) -> ViewerSnapshot:
        """The viewer counts in the file; empty without a file configured.

        Raises:
            SourceError: The file is missing, unreadable or has a bad count.
        """
        if self.path is None:
            return ViewerSnapshot()
        try:
            return load_viewers(self.path)
        except InputError as exc:
            raise SourceError(str(exc)) from exc


class NullWriter:
    """The write-back of ``source.type = "file"``: there is nothing to write to."""

    def write_result(self, result: CheckResult) -> None:
        """Do nothing; the results store keeps the result."""

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing is ever queued."""
        return True

    def reorder(self, inventory: Inventory, results: tuple[CheckResult, ...]) -> dict[str, int]:
        """Do nothing; no counts."""
        return {}


# --- Dispatcharr ------------------------------------------------------------------------


def _source_error(action: str, endpoint: str, exc: DispatcharrError) -> SourceError:
    """A one-line :class:`SourceError` for ``exc``, naming ``endpoint``; raise it ``from exc``."""
    text = str(exc)
    if not text.startswith("/"):  # the client's errors mostly start with their endpoint
        text = f"{endpoint}: {text}"
    message = f"Dispatcharr {action} failed: {text}"
    return SourceError(message)


@dataclass(frozen=True)
class LoadedAccounts:
    """What :class:`DispatcharrInventorySource` read last, for the viewer source.

    Attributes:
        accounts: The usable accounts, overrides applied.
        stream_accounts: Stream id to account id, for every stream read (not
            only those the cycle checks), so a live channel without a profile
            id still maps to its account.
    """

    accounts: tuple[Account, ...]
    stream_accounts: Mapping[int, int]


class DispatcharrInventorySource:
    """Accounts, streams and channels from Dispatcharr's REST API.

    Args:
        client: The shared client.
        section: Which streams and channels to check (``[dispatcharr]``).
        overrides: Per-account overrides by account id (``config.accounts``).
    """

    def __init__(
        self,
        client: DispatcharrClient,
        section: StreamSelection,
        overrides: Mapping[int, AccountOverride] | None = None,
    ) -> None:
        self._client = client
        self._section = section
        self._overrides: Mapping[int, AccountOverride] = dict(overrides or {})
        self._lock = threading.Lock()
        self._last: LoadedAccounts | None = None

    @property
    def last_loaded(self) -> LoadedAccounts | None:
        """The accounts and stream map of the last good :meth:`load`, if any."""
        with self._lock:
            return self._last

    def load(self) -> Inventory:
        """Read accounts (with profiles), then streams, then channels, and build the inventory.

        Raises:
            SourceError: Dispatcharr is unreachable, refuses the credentials or
                answers with a wrong shape; the message names the endpoint.
        """
        endpoint = ACCOUNTS_PATH
        try:
            accounts = parse_accounts(self._client.accounts())
            endpoint = STREAMS_PATH
            streams = parse_streams(self._client.streams(), accounts)
            endpoint = CHANNELS_PATH
            channels = parse_channels(self._client.channels())
        except DispatcharrError as exc:
            raise _source_error("inventory load", endpoint, exc) from exc
        section = self._section
        inventory = build_inventory(
            accounts,
            streams,
            channels,
            include_all_streams=section.include_all_streams,
            exclude_groups=section.exclude_groups,
            exclude_channels=section.exclude_channels,
        )
        inventory = apply_overrides(inventory, self._overrides)
        # After the overrides: a pool's limit is the limits as the daemon applies them.
        inventory = pool_shared_logins(inventory)
        loaded = LoadedAccounts(
            accounts=inventory.accounts,
            stream_accounts=MappingProxyType({s.id: s.account_id for s in streams}),
        )
        with self._lock:
            self._last = loaded
        log.info(
            "inventory_loaded",
            source=redact_url(self._client.base_url),
            accounts=len(inventory.accounts),
            streams=len(inventory.streams),
            channels=len(inventory.channels),
        )
        return inventory


class DispatcharrViewerSource:
    """Viewers from Dispatcharr's proxy status (``/proxy/stats/``, else ``/proxy/ts/status``).

    Args:
        client: The shared client.
        inventory_source: Supplies the accounts and the stream map it loaded
            last; before its first load the accounts are read on each poll.
    """

    def __init__(
        self, client: DispatcharrClient, inventory_source: DispatcharrInventorySource
    ) -> None:
        self._client = client
        self._inventory_source = inventory_source

    def read(self) -> ViewerSnapshot:
        """Connections held by viewers per profile (and per account).

        Raises:
            SourceError: Dispatcharr is unreachable or answers with a wrong shape.
        """
        loaded = self._inventory_source.last_loaded
        endpoint = ACCOUNTS_PATH
        try:
            if loaded is None:
                # No inventory yet: without the profiles no viewer could be
                # placed, so read them now (again next poll, until a load).
                loaded = LoadedAccounts(parse_accounts(self._client.accounts()), {})
            endpoint = PROXY_STATS_PATH
            status = self._client.proxy_stats()
            return viewers_from_status(status, loaded.accounts, loaded.stream_accounts)
        except DispatcharrError as exc:
            raise _source_error("viewer read", endpoint, exc) from exc


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class DispatcharrWriter:
    """Writes stats into each stream and orders each channel's streams best first.

    Writes go out on at most ``concurrency`` connections at once
    (``dispatcharr.write_concurrency``), with these order rules:

    - :meth:`write_result` queues the write and returns; the stats of the
      queued results are read in batches (``GET /api/channels/streams/?ids=``)
      and each stream is PATCHed on its own. Writes of one stream never run at
      once and land in the order their results came.
    - :meth:`reorder` first waits for every stats write queued before it, so
      a channel is reordered only after its streams' stats are in; channels
      are independent of each other and are reordered concurrently.
    - :meth:`flush` waits for every queued stats write.

    A failed write is logged (``writeback_failed``) and costs that write only.

    Args:
        client: The shared client.
        reorder: Reorder channels at the end of a cycle (``results.reorder``).
        dry_run: Log what would be written instead of writing (``results.dry_run``).
        concurrency: Requests to Dispatcharr at most at once (at least 1).
        clock: Monotonic seconds, for how fresh a batch's stats read is.
    """

    def __init__(
        self,
        client: DispatcharrClient,
        *,
        reorder: bool = True,
        dry_run: bool = False,
        concurrency: int = DEFAULT_WRITE_CONCURRENCY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._clock = clock
        self._reorder_enabled = reorder
        self._dry_run = dry_run
        self._concurrency = concurrency
        self._disabled_logged = False
        self._queue: WriteQueue[CheckResult] = WriteQueue(
            self._write_batch,
            key=lambda result: result.stream_id,
            concurrency=concurrency,
            name="stats-write",
        )
        self._counts_lock = threading.Lock()
        self._counts = Counter({"written": 0, "failed": 0})
        self._observer: Callable[[bool], None] | None = None

    def set_observer(self, observer: Callable[[bool], None] | None) -> None:
        """Call ``observer(True)`` after each stats write, ``observer(False)`` after each failure.

        The writes end on the writer's own threads, after :meth:`write_result`
        returned, so this is how a wrapper (the dashboard's metrics) learns
        how they went.
        """
        self._observer = observer

    # --- stats ----------------------------------------------------------------------

    def write_result(self, result: CheckResult) -> None:
        """Queue ``result`` to be merged into the stream's ``stream_stats`` and PATCHed.

        Cancelled results are skipped: the check learned nothing. An ``error``
        result keeps the last verdict and stats and only notes the error
        (see :func:`~adapters.dispatcharr_source.stats_patch`). Never raises:
        a write that fails is logged as ``writeback_failed``.
        """
        if result.status == "cancelled":
            log.debug("stats_skipped", stream_id=result.stream_id, reason="cancelled")
            return
        self._queue.put(result)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued stats write is done; ``False`` if ``timeout`` ran out."""
        return self._queue.join(timeout)

    def counts(self) -> dict[str, int]:
        """Stats writes ``written`` and ``failed`` so far (a dry run counts as written)."""
        with self._counts_lock:
            return dict(self._counts)

    def _write_batch(self, results: Sequence[CheckResult]) -> None:
        """Read the batch's current stats in one call, then PATCH each stream.

        What was read is merged into a PATCH only while it is fresh
        (:data:`STATS_FRESH_S`): past that the rest of the batch is read again,
        so a stats update Dispatcharr made meanwhile is not written over.
        """
        existing = self._read_batch(results)
        if existing is None:
            return
        read_at = self._clock()
        for index, result in enumerate(results):
            if existing and self._clock() - read_at > STATS_FRESH_S:
                existing = self._read_batch(results[index:])
                if existing is None:
                    return
                read_at = self._clock()
            try:
                self._write_one(result, existing.get(result.stream_id))
            except SourceError as exc:
                self._failed(result, exc)
                cause = exc.__cause__
                if isinstance(cause, DispatcharrUnavailable) and cause.status is None:
                    for rest in results[index + 1 :]:
                        self._failed(rest, exc)  # not even an answer: do not wait again
                    return

    def _read_batch(self, results: Sequence[CheckResult]) -> dict[int, JsonObject] | None:
        """The current stream objects of ``results`` in one call (none for one stream:
        it is read on its own); ``None`` when Dispatcharr did not answer at all (every
        write of the batch then failed, and was logged)."""
        if len(results) < 2:
            return {}
        ids = ",".join(str(r.stream_id) for r in results)
        try:
            return {s["id"]: s for s in self._client.streams({"ids": ids}) if "id" in s}
        except DispatcharrError as exc:
            if isinstance(exc, DispatcharrUnavailable) and exc.status is None:
                # No answer at all: every stream of the batch would wait too.
                for result in results:
                    self._failed(result, _source_error("stats write", STREAMS_PATH, exc))
                return None
            # Read them one by one, so each failure names its stream.
            log.info("stats_batch_read_failed", streams=len(results), error=str(exc))
        return {}

    def _write_one(self, result: CheckResult, stream: JsonObject | None) -> None:
        """Merge and PATCH one result; ``stream`` is its current object, when read already.

        Raises:
            SourceError: The stream could not be read or written.
        """
        endpoint = f"{STREAMS_PATH}{result.stream_id}/"
        try:
            if stream is None:
                stream = self._client.stream(result.stream_id)
            body = stats_patch(
                _current_stats(stream.get("stream_stats"), endpoint),
                result,
                checked_at=result.finished_at or _utc_now(),
            )
            if self._dry_run:
                log.info("stats_dry_run", stream_id=result.stream_id, body=body)
            else:
                self._client.patch_stream(result.stream_id, body)
        except DispatcharrError as exc:
            raise _source_error("stats write", endpoint, exc) from exc
        with self._counts_lock:
            self._counts["written"] += 1
        log.debug("stats_written", stream_id=result.stream_id, status=result.status)
        self._observe(True)

    def _failed(self, result: CheckResult, exc: SourceError) -> None:
        with self._counts_lock:
            self._counts["failed"] += 1
        log.error("writeback_failed", stream_id=result.stream_id, error=str(exc))
        self._observe(False)

    def _observe(self, written: bool) -> None:
        observer = self._observer
        if observer is not None:
            try:
                observer(written)
            except Exception:  # an observer's bug must not cost the write-back
                log.exception("writeback_observer_failed")

    # --- reorder --------------------------------------------------------------------

    def reorder(self, inventory: Inventory, results: tuple[CheckResult, ...]) -> dict[str, int]:
        """Order the streams judged this cycle best first, dead last, in every channel.

        Waits for the queued stats writes first (also with reordering
        disabled, so the end of a cycle is the end of its writes). Only
        streams judged this cycle (``ok`` or ``dead``) move, into the places
        they held; every other stream keeps its place (see
        :func:`~adapters.dispatcharr_source.plan_reorder`). Only channels with
        at least one judged stream are touched, up to ``concurrency`` at once.
        Each is read afresh right before its write and left alone when its
        membership changed since ``inventory`` was read, or when anything
        about it is unsure. One failing channel never stops the others; only
        an unreachable Dispatcharr ends the pass (channels not begun yet count
        as skipped).

        Returns:
            ``changed``, ``unchanged``, ``skipped`` and ``failed`` channel
            counts; in a dry run also ``planned`` (would have changed). With
            reordering disabled, ``{"disabled": 1}``. Each channel's own
            outcome is in its ``channels`` (a :class:`~domain.ports.Reordered`).
        """
        self.flush()
        if not self._reorder_enabled:
            if not self._disabled_logged:
                self._disabled_logged = True
                log.info("reorder_disabled")
            return {"disabled": 1}
        scores = {r.stream_id: (r.status, r.score) for r in results if r.status in JUDGED_STATUSES}
        counts = dict.fromkeys(REORDER_KEYS, 0)
        if self._dry_run:
            counts["planned"] = 0
        channels = [c for c in inventory.channels if any(s in scores for s in c.stream_ids)]
        unreachable: list[tuple[int, DispatcharrUnavailable]] = []

        def one(channel: Channel) -> tuple[str, ChannelOrder | None]:
            if unreachable:
                return "aborted", None
            if len(set(channel.stream_ids)) < 2:
                return "unchanged", None  # one stream has one order: no need to ask
            try:
                return self._reorder_channel(channel.id, channel.stream_ids, scores)
            except DispatcharrUnavailable as exc:
                # Not even an answer, after the client's retries: every other
                # channel would wait through the same retries, so stop here.
                unreachable.append((channel.id, exc))
                return "aborted", None
            except Exception:  # a bug on one channel must not cost the others
                log.exception("reorder_failed", channel_id=channel.id)
                return "failed", None

        if self._concurrency == 1 or len(channels) < 2:
            done = [one(channel) for channel in channels]
        else:
            # Daemon threads: a daemon stopped mid-reorder is not held up by them.
            done = map_on_daemon_threads(one, channels, self._concurrency, "reorder")
        outcomes = [outcome for outcome, _ in done]
        aborted = outcomes.count("aborted")
        for outcome in outcomes:
            if outcome != "aborted":
                counts[outcome] += 1
        counts["skipped"] += aborted
        if unreachable:
            channel_id, exc = unreachable[0]
            log.error("reorder_aborted", channel_id=channel_id, remaining=aborted, error=str(exc))
        each = {
            channel.id: "skipped" if outcome == "aborted" else outcome
            for channel, outcome in zip(channels, outcomes, strict=True)
        }
        orders = {
            channel.id: order
            for channel, (_, order) in zip(channels, done, strict=True)
            if order is not None
        }
        return Reordered(counts, each, orders)

    def _reorder_channel(
        self,
        channel_id: int,
        cycle_ids: tuple[int, ...],
        scores: Mapping[int, tuple[str, float]],
    ) -> tuple[str, ChannelOrder | None]:
        """Reorder one channel; returns the key of the counts to bump, and the
        channel's order as read and as Dispatcharr has it after (when known).

        Raises:
            DispatcharrUnavailable: Only when Dispatcharr did not answer at all
                (``status`` is ``None``); an answered 5xx skips the channel.
        """
        current = self._read_current(channel_id, cycle_ids)
        if current is None:
            return "skipped", None
        new_order = plan_reorder(current, scores)
        if new_order is None:
            return "unchanged", (current, current)
        outcome = self._write_order(channel_id, current, new_order)
        return outcome, (current, new_order if outcome == "changed" else current)

    def _read_current(self, channel_id: int, cycle_ids: tuple[int, ...]) -> list[int] | None:
        """The channel's stream ids as Dispatcharr has them now, or ``None`` to leave it alone.

        Raises:
            DispatcharrUnavailable: Dispatcharr did not answer at all.
        """
        try:
            fresh = self._client.channel(channel_id)
        except DispatcharrUnavailable as exc:
            if exc.status is None:
                raise
            log.warning(
                "reorder_skipped", channel_id=channel_id, reason="read_failed", error=str(exc)
            )
            return None
        except DispatcharrError as exc:
            log.warning(
                "reorder_skipped", channel_id=channel_id, reason="read_failed", error=str(exc)
            )
            return None
        current = _stream_ids(fresh, channel_id)
        if current is None:
            log.warning("reorder_skipped", channel_id=channel_id, reason="bad_shape")
        elif len(set(current)) != len(current):
            log.warning("reorder_skipped", channel_id=channel_id, reason="duplicate_stream_ids")
            current = None
        elif set(current) != set(cycle_ids):
            log.info(
                "reorder_skipped_changed",
                channel_id=channel_id,
                cycle_streams=list(cycle_ids),
                current_streams=current,
            )
            current = None
        return current

    def _write_order(self, channel_id: int, current: list[int], new_order: list[int]) -> str:
        """PATCH ``new_order`` (a permutation of ``current``); returns the count key."""
        if Counter(new_order) != Counter(current):
            # Never send a list that adds or drops a stream: Dispatcharr would
            # take it as the channel's new membership.
            log.error("reorder_refused", channel_id=channel_id, reason="not_a_permutation")
            return "skipped"
        if self._dry_run:
            log.info("reorder_dry_run", channel_id=channel_id, old=current, new=new_order)
            return "planned"
        try:
            answer = self._client.patch_channel(channel_id, {"streams": new_order})
        except DispatcharrError as exc:
            log.error("reorder_failed", channel_id=channel_id, error=str(exc))
            return "failed"
        log.info("channel_reordered", channel_id=channel_id, old=current, new=new_order)
        written = answer.get("streams")
        if isinstance(written, list) and written != new_order:
            log.warning(
                "reorder_unconfirmed", channel_id=channel_id, expected=new_order, got=written
            )
        return "changed"


def _current_stats(value: object, endpoint: str) -> Mapping[str, Any] | None:
    """A stream's ``stream_stats`` as read, to merge ours into; JSON text of an object
    counts as that object.

    Raises:
        SourceError: It is something else (a list, a number, other text): a PATCH
            would replace it with our keys alone, so the stream is left as it is.
    """
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value.strip() in ("", "null"):
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = json.loads(value)
            if isinstance(parsed, Mapping):
                return parsed
    kind = type(value).__name__
    message = f"{endpoint}: stream_stats is {kind}, not an object: left as it is, not written"
    raise SourceError(message)


def _stream_ids(channel: Mapping[str, Any], channel_id: int) -> list[int] | None:
    """The channel's stream ids in order, or ``None`` when the answer is not as expected."""
    if channel.get("id") != channel_id:
        return None
    streams = channel.get("streams")
    if not isinstance(streams, list):
        return None
    ids: list[int] = []
    for entry in streams:
        if isinstance(entry, bool) or not isinstance(entry, int):
            return None
        ids.append(entry)
    return ids
