"""Schema migrations (Alembic), run from code.

Users never see an `alembic.ini`: `migrate(url)` configures Alembic in memory, pointing it at this
folder, and upgrades the database to the newest revision. It is safe to call at every start, and from
several processes at once: the upgrade runs under a lock (an advisory lock on PostgreSQL, the write
lock on SQLite), so the second process finds the work done.

Developers write a new revision with the `storage/alembic.ini` shipped for that purpose (its header
shows the commands); revision ids count up: 0001, 0002, ...
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import create_engine, normalize_url, unavailable_as_error

MIGRATIONS_DIR = Path(__file__).resolve().parent
#: Any fixed 64-bit number; it names the lock that serializes migrations on PostgreSQL.
_PG_MIGRATION_LOCK = 0x52_54_4D_49_47  # "RTMIG"


def alembic_config() -> Config:
    """An Alembic configuration for this package's migrations, built without a file."""
    config = Config()
    # ConfigParser interpolation: a '%' in the install path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision this version of RoundTable knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration revisions found in {MIGRATIONS_DIR}")
    return head


async def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest schema.

    Raises:
        ConfigError: the URL is not supported.
        StoreUnavailable: the database cannot be reached.
    """
    parsed = normalize_url(url)
    async with unavailable_as_error(parsed):
        engine = create_engine(parsed)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()


async def upgrade(engine: AsyncEngine) -> None:
    """Upgrade the database behind `engine` to the newest schema, in one locked transaction."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    elif connection.dialect.name == "sqlite":
        # Take the write lock before reading the current revision; a concurrent migrator waits here
        # (busy_timeout) instead of failing halfway with "table already exists".
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    if _current_revision(connection) == head_revision():
        return
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
