"""Database URLs, SQLite connection settings, and connection failures as StoreUnavailable."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from engine.errors import ConfigError, StoreUnavailable
from storage import SqlStore, create_engine, database_url, migrate, normalize_url
from tests.servers import free_port


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (None, "sqlite+aiosqlite:////data/roundtable.db"),
        ("", "sqlite+aiosqlite:////data/roundtable.db"),
        ("postgresql://u:p@db/rt", "postgresql://u:p@db/rt"),
    ],
)
def test_database_url_defaults_to_sqlite_in_the_data_dir(override: str | None, expected: str) -> None:
    assert database_url(Path("/data"), override) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/rt", "postgresql+asyncpg://u:p@db:5432/rt"),
        ("postgres://u:p@db/rt", "postgresql+asyncpg://u:p@db/rt"),
        ("postgresql+asyncpg://u:p@db/rt", "postgresql+asyncpg://u:p@db/rt"),
        ("postgresql://u:p@db/rt?sslmode=require", "postgresql+asyncpg://u:p@db/rt?ssl=require"),
        ("sqlite:////var/rt.db", "sqlite+aiosqlite:////var/rt.db"),
        ("sqlite+aiosqlite:///rt.db", "sqlite+aiosqlite:///rt.db"),
    ],
)
def test_normalize_url_points_at_the_async_driver(url: str, expected: str) -> None:
    assert normalize_url(url).render_as_string(hide_password=False) == expected


def test_an_unsupported_database_is_a_config_error_listing_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"'mysql\+aiomysql'; choose one of sqlite, .*postgresql\+asyncpg"):
        normalize_url("mysql+aiomysql://u:p@db/rt")


def test_an_unparsable_url_is_a_config_error_that_does_not_echo_it() -> None:
    with pytest.raises(ConfigError, match="cannot parse the database URL") as caught:
        normalize_url("not a url with s3cret")
    assert "s3cret" not in str(caught.value)


async def test_sqlite_database_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "roundtable.db"
    async with await SqlStore.open(f"sqlite:///{path}"):
        pass
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sqlite_connections_enforce_foreign_keys_and_wait_for_writers(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'roundtable.db'}")
    try:
        async with engine.connect() as connection:

            async def pragma(name: str) -> object:
                return (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()

            assert await pragma("journal_mode") == "wal"
            assert await pragma("foreign_keys") == 1
            assert await pragma("synchronous") == 1  # NORMAL
            assert await pragma("busy_timeout") == 10_000
    finally:
        await engine.dispose()


async def test_the_sqlite_data_folder_is_created(tmp_path: Path) -> None:
    url = database_url(tmp_path / "new" / "folder", None)
    async with await SqlStore.open(url):
        pass
    assert (tmp_path / "new" / "folder" / "roundtable.db").is_file()


async def test_unreachable_postgres_raises_store_unavailable_naming_the_database() -> None:
    port = free_port()
    with pytest.raises(StoreUnavailable) as caught:
        await SqlStore.open(f"postgresql://roundtable:s3cret@127.0.0.1:{port}/roundtable_test")
    message = str(caught.value)
    assert f"127.0.0.1:{port}/roundtable_test" in message
    assert "s3cret" not in message
    assert "\n" not in message
    assert caught.value.__cause__ is not None  # the driver error is kept for debugging


async def test_migrate_on_unreachable_postgres_raises_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="is unavailable"):
        await migrate(f"postgresql://roundtable:s3cret@127.0.0.1:{free_port()}/roundtable_test")


async def test_store_methods_raise_store_unavailable_when_the_database_goes_away(tmp_path: Path) -> None:
    """Not only `open`: every call maps connection failures, here one to a server that is not there."""
    url = normalize_url(f"postgresql://roundtable:s3cret@127.0.0.1:{free_port()}/roundtable_test")
    store = SqlStore(create_engine(url), url)
    try:
        with pytest.raises(StoreUnavailable):
            await store.get_session("s1")
        with pytest.raises(StoreUnavailable):
            await store.load_events("s1")
    finally:
        await store.close()


@pytest.mark.parametrize("where", ["under-a-file", "a-directory"])
async def test_an_unusable_sqlite_path_raises_store_unavailable(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("not a folder")
    path = tmp_path / "file" / "roundtable.db" if where == "under-a-file" else tmp_path
    threads_before = set(threading.enumerate())
    with pytest.raises(StoreUnavailable, match="is unavailable"):
        await SqlStore.open(f"sqlite:///{path}")
    # No driver thread is left behind to fail later against a closed event loop.
    assert set(threading.enumerate()) <= threads_before
