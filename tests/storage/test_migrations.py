"""Migrations: run from code, to the head revision, matching the table definitions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from storage import create_engine, migrate
from storage.migrations import head_revision
from storage.models import metadata


def _schema(connection: Connection) -> tuple[set[str], str | None, list[object]]:
    tables = set(inspect(connection).get_table_names())
    context = MigrationContext.configure(connection)
    return tables, context.get_current_revision(), compare_metadata(context, metadata)


async def inspect_schema(url: str) -> tuple[set[str], str | None, list[object]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_schema)
    finally:
        await engine.dispose()


async def test_migrate_creates_the_tables_at_the_head_revision(store_url: str) -> None:
    await migrate(store_url)
    tables, revision, _ = await inspect_schema(store_url)
    assert {"sessions", "events", "alembic_version"} <= tables
    assert revision == head_revision() == "0001"


async def test_the_migrated_schema_matches_the_table_definitions(store_url: str) -> None:
    """A change to storage/models.py without a migration fails here."""
    await migrate(store_url)
    _, _, differences = await inspect_schema(store_url)
    assert differences == []


async def test_migrate_is_idempotent(store_url: str) -> None:
    await migrate(store_url)
    await migrate(store_url)
    _, revision, _ = await inspect_schema(store_url)
    assert revision == head_revision()


async def test_concurrent_migrations_both_succeed(store_url: str) -> None:
    """Two processes starting at once on a new database: the lock makes the second find it done."""
    await asyncio.gather(migrate(store_url), migrate(store_url))
    _, revision, _ = await inspect_schema(store_url)
    assert revision == head_revision()


async def test_migrate_needs_no_alembic_ini_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'roundtable.db'}"
    await migrate(url)
    _, revision, _ = await inspect_schema(url)
    assert revision == head_revision()
    assert not (tmp_path / "alembic.ini").exists()
