"""The PostgreSQL test database: where it is, and a fresh, private copy of it for one test.

`scripts/postgres.sh` installs and starts a local server with the default database below. Tests that
need PostgreSQL fail (not skip) when it is unreachable, so that a missing server is never mistaken for
a passing suite; set ROUNDTABLE_SKIP_POSTGRES=1 to skip them on purpose.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text

from engine.errors import StoreUnavailable
from storage.db import create_engine, describe, normalize_url, unavailable_as_error

DEFAULT_URL = "postgresql+asyncpg://roundtable:roundtable@127.0.0.1:5432/roundtable_test"
#: Names the advisory lock that gives one test at a time, across processes, the test database.
_TEST_DATABASE_LOCK = 0x52_54_54_45_53_54


def postgres_url() -> str:
    return os.environ.get("ROUNDTABLE_TEST_POSTGRES_URL") or DEFAULT_URL


@asynccontextmanager
async def fresh_postgres(url: str | None = None) -> AsyncIterator[str]:
    """Empty the test database (its whole `public` schema) and hold it for the caller alone.

    An advisory lock, held until the block ends, keeps concurrent test runs from emptying the database
    under each other. Yields the URL to connect to. Never point this at a database you care about.
    """
    url = url or postgres_url()
    engine = create_engine(normalize_url(url)).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with unavailable_as_error(url):
            connection = await engine.connect()
    except StoreUnavailable as error:
        unreachable = str(error)
    else:
        unreachable = ""
    if unreachable:
        # Outside the except block, so the report is our one message, not a chain of driver errors.
        await engine.dispose()
        if os.environ.get("ROUNDTABLE_SKIP_POSTGRES") == "1":
            pytest.skip(f"PostgreSQL unreachable and ROUNDTABLE_SKIP_POSTGRES=1 ({describe(url)})")
        pytest.fail(
            f"PostgreSQL is unreachable: {unreachable}\n"
            "Run `sudo scripts/postgres.sh` to install and start it with the test database "
            "(or set ROUNDTABLE_TEST_POSTGRES_URL), or set ROUNDTABLE_SKIP_POSTGRES=1 to skip these tests.",
            pytrace=False,
        )
    try:
        await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _TEST_DATABASE_LOCK})
        await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
        yield url
    finally:
        await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _TEST_DATABASE_LOCK})
        await connection.close()
        await engine.dispose()
