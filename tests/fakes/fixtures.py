"""Pytest fixtures for the fakes; registered as a plugin in ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.dispatcharr import FakeDispatcharr


@pytest.fixture
def fake_dispatcharr() -> Iterator[FakeDispatcharr]:
    """A started, empty :class:`FakeDispatcharr` on loopback; stopped after the test.

    Call ``fake_dispatcharr.seed_sample()`` for the reference's example data.
    """
    fake = FakeDispatcharr().start()
    try:
        yield fake
    finally:
        fake.stop()
