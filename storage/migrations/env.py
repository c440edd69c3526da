"""Alembic environment: runs on a connection handed over by `storage.migrations.migrate`.

Run from the `alembic` command line instead (with `storage/alembic.ini`), it connects to the URL given
as `-x url=...` or `sqlalchemy.url`, with the async driver, or emits SQL in offline mode.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from storage.db import create_engine, normalize_url
from storage.models import metadata

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL: pass -x url=... (e.g. -x url=sqlite+aiosqlite:///dev.db)")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run() -> None:
    if context.is_offline_mode():
        context.configure(
            url=normalize_url(_url()),
            target_metadata=metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(_run_async())
    else:
        _run(connection)


run()
