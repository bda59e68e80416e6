"""``Outbox``: the order in which the coordinator carries out the dispatch's actions.

The dispatch returns its actions in the order it decided them. Carrying them
out in that order one by one would send an account several messages for one
event, and keep a freed slot's next request waiting behind results. So:

- what goes to one account (its releases and requests) goes as one letter,
  in the order decided, once nothing else is left to carry out;
- the accounts asked for a lease are written to first: on the loop thread
  their turns then come before those of accounts only given a slot back;
- an account is dropped only after its letter (its last releases) is out;
- the results (``Finish``) are recorded after everything else.

Carrying out an action may decide more (an account whose actor is gone):
those are added with :meth:`Outbox.add` and come after what is pending.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from actors import actions
from actors.messages import ReleaseLease, RequestLease


class Letter(NamedTuple):
    """What one account is told at once, in order (a tuple: one is made per account
    and event, and a frozen dataclass costs twice as much to make)."""

    account_id: int
    messages: tuple[RequestLease | ReleaseLease, ...]
    asks: bool
    """It asks for a lease (so a failure to deliver it loses the request)."""


Step = actions.Action | tuple[Letter, ...]
"""One action to carry out, or the letters to post, accounts asked for a lease first."""


class Outbox:
    """Hands out a batch of actions in the order they are to be carried out.

    Args:
        todo: the actions, in the order the dispatch decided them.
    """

    def __init__(self, todo: Iterable[actions.Action]) -> None:
        self._pending = deque(todo)
        self._mail: dict[int, list[actions.Request | actions.Release]] = {}
        self.finished: list[actions.Finish] = []
        """The results, in order: recorded once :meth:`next` returns None."""

    def add(self, more: Iterable[actions.Action]) -> None:
        """Actions decided while carrying out a step; they come after those pending."""
        self._pending.extend(more)

    def next(self) -> Step | None:
        """The next step, or None once only the results are left."""
        pending, mail = self._pending, self._mail
        while pending:
            action = pending.popleft()
            if isinstance(action, actions.Finish):
                self.finished.append(action)
            elif isinstance(action, actions.Request | actions.Release):
                mail.setdefault(action.account_id, []).append(action)
            elif isinstance(action, actions.DropAccount) and mail:
                pending.appendleft(action)  # after its last release is out
                return self._letters()
            else:
                return action
        return self._letters() if mail else None

    def _letters(self) -> tuple[Letter, ...]:
        asking: list[Letter] = []
        giving: list[Letter] = []
        for account_id, mail in self._mail.items():
            messages: list[RequestLease | ReleaseLease] = []
            asks = False
            for action in mail:
                if isinstance(action, actions.Request):
                    messages.append(action.request)
                    asks = True
                else:
                    messages.append(action.release)
            (asking if asks else giving).append(Letter(account_id, tuple(messages), asks))
        self._mail = {}
        return (*asking, *giving)  # in order within each kind
