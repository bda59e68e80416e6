"""``Outbox``: the order the coordinator carries out the dispatch's actions in (no threads)."""

from __future__ import annotations

from actors import actions
from actors.messages import Job, Lease, ReleaseLease, RequestLease
from actors.outbox import Letter, Outbox, Step
from domain.models import ProbeOutcome
from tests.actors.fakes import stream


def request(account_id: int, request_id: int) -> actions.Request:
    return actions.Request(account_id, RequestLease(request_id, request_id, stream(1, account_id)))


def release(account_id: int, lease_id: int) -> actions.Release:
    return actions.Release(account_id, ReleaseLease(lease_id))


def finish(stream_id: int) -> actions.Finish:
    job = Job(stream_id, stream(stream_id, 1), (stream_id,))
    return actions.Finish(job, ProbeOutcome(kind="ok"))


def steps(outbox: Outbox) -> list[Step]:
    out = []
    while (step := outbox.next()) is not None:
        out.append(step)
    return out


def letter(account_id: int, *mail: actions.Request | actions.Release) -> Letter:
    messages = tuple(a.request if isinstance(a, actions.Request) else a.release for a in mail)
    return Letter(account_id, messages, any(isinstance(a, actions.Request) for a in mail))


def test_each_account_gets_one_letter_in_the_order_decided_after_the_other_actions() -> None:
    start = actions.StartCheck(finish(1).job, Lease(5, 1, 1, "http://127.0.0.1/1"), 0)
    todo: list[actions.Action] = [
        release(1, 10),
        request(2, 20),
        start,
        request(1, 11),
        release(2, 21),
    ]

    assert steps(Outbox(todo)) == [
        start,
        (letter(1, release(1, 10), request(1, 11)), letter(2, request(2, 20), release(2, 21))),
    ]


def test_accounts_asked_for_a_lease_are_written_to_before_those_only_given_slots_back() -> None:
    todo: list[actions.Action] = [release(1, 10), release(2, 20), request(3, 30), release(4, 40)]
    (letters,) = steps(Outbox(todo))

    assert letters == (
        letter(3, request(3, 30)),
        letter(1, release(1, 10)),
        letter(2, release(2, 20)),
        letter(4, release(4, 40)),
    )


def test_an_account_is_dropped_after_its_last_release_is_out() -> None:
    drop = actions.DropAccount(1)
    wake = actions.WakeAt(5.0)

    assert steps(Outbox([release(1, 10), drop, wake])) == [(letter(1, release(1, 10)),), drop, wake]
    assert steps(Outbox([drop, release(1, 10)])) == [drop, (letter(1, release(1, 10)),)]


def test_results_are_left_for_last_and_what_a_step_decides_comes_after_what_waits() -> None:
    wake = actions.WakeAt(5.0)
    outbox = Outbox([finish(1), request(1, 10), wake, finish(2)])

    assert outbox.next() == wake
    assert outbox.next() == (letter(1, request(1, 10)),)
    # account 1's actor was gone: what the dispatch decided on that
    lost: list[actions.Action] = [finish(3), request(2, 20)]
    outbox.add(lost)
    assert outbox.next() == (letter(2, request(2, 20)),)
    assert outbox.next() is None
    assert outbox.finished == [finish(1), finish(2), finish(3)]


def test_nothing_to_do_is_no_step() -> None:
    outbox = Outbox([])

    assert outbox.next() is None
    assert outbox.finished == []
