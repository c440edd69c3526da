"""Store fixtures: every store test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import SqlStore
from tests.storage.postgres import fresh_postgres

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database: a SQLite file in tmp_path, or the emptied PostgreSQL test database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'roundtable.db'}"
    else:
        async with fresh_postgres() as url:
            yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()
