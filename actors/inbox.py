"""``QuickActor``: a pykka ``ThreadingActor`` whose mailbox is a ``queue.SimpleQueue``.

pykka's threading actors get a ``queue.Queue``: its ``put`` and ``get`` run a
``threading.Condition`` in Python, which costs about twice what the C
``SimpleQueue`` does for the same hand-over (measured: 24 against 13 µs per
round trip between two threads). The actors on the path of every check (the
coordinator and the account actors) exchange several messages per check, and
all their threads share one GIL, so the cheaper mailbox shortens every
hand-over from a freed slot to the next check. A ``SimpleQueue`` has all that
pykka asks of an inbox (``put``, ``get``, ``empty``) and keeps FIFO order.
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Any

import pykka

if TYPE_CHECKING:
    from pykka._envelope import Envelope


class QuickActor(pykka.ThreadingActor):
    """A threading actor with a ``SimpleQueue`` mailbox (same behaviour, cheaper)."""

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Envelope[Any]]:
        return queue.SimpleQueue()
