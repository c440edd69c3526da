"""A session runner over a real runtime (see `settings_for` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bot import Runtime, SessionRunner, Settings


@pytest.fixture
async def runner(settings_for: Callable[..., Settings]) -> AsyncIterator[SessionRunner]:
    runtime = await Runtime.open(settings_for())
    try:
        yield SessionRunner(runtime)
    finally:
        await runtime.close()
