"""Telling an actor from a foreign thread (a timer, a probe thread)."""

from __future__ import annotations

from typing import Any

import pykka


def tell_quietly(ref: pykka.ActorRef[Any], message: object) -> bool:
    """Tell ``ref``; a stopped actor simply no longer cares. True if delivered."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True
