"""Database URLs, engines, and the one place where driver errors become `StoreUnavailable`.

Two databases are supported: a SQLite file (the default, in WAL mode so that readers never block the
writer) and PostgreSQL through asyncpg. Plain `postgresql://` and `sqlite://` URLs, as people copy them
from elsewhere, are rewritten to their async drivers.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from engine.errors import ConfigError, StoreUnavailable

DATABASE_FILE = "roundtable.db"
#: How long SQLite waits for another writer before giving up, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: How long to wait for a PostgreSQL connection before calling the store unavailable, in seconds.
POSTGRES_CONNECT_TIMEOUT_S = 10.0

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_EXAMPLES = "sqlite+aiosqlite:///path/to/roundtable.db or postgresql://user:password@host:5432/dbname"


def database_url(data_dir: Path, override: str | None) -> str:
    """The URL of the session store: `override` when given, else a SQLite file in `data_dir`."""
    if override:
        return override
    return f"sqlite+aiosqlite:///{(data_dir / DATABASE_FILE).as_posix()}"


def normalize_url(url: str) -> URL:
    """Parse a database URL and point it at the async driver RoundTable uses.

    Raises:
        ConfigError: the URL cannot be parsed, or names a database or driver we do not support.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        # The URL is not quoted back: it may hold a password.
        raise ConfigError(f"cannot parse the database URL; write it like {_EXAMPLES}") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            f"unsupported database URL scheme '{parsed.drivername}'; "
            f"choose one of sqlite, sqlite+aiosqlite, postgresql, postgresql+asyncpg"
        )
    parsed = parsed.set(drivername=driver)
    if driver == "postgresql+asyncpg" and "sslmode" in parsed.query:
        # libpq spells it sslmode; asyncpg takes the same values as `ssl`.
        query = dict(parsed.query)
        query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(query=query)
    return parsed


def describe(url: URL | str) -> str:
    """The URL as it may appear in a message or a log: the password masked."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except exc.ArgumentError:
            return "<unparsable database URL>"
    return url.render_as_string(hide_password=True)


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or (url.database or "").startswith("file::memory:")


def create_engine(url: str | URL) -> AsyncEngine:
    """An async engine for `url`, with the connection settings RoundTable relies on.

    On SQLite every new connection gets WAL journaling, `synchronous=NORMAL` (durable at each
    checkpoint, and safe with WAL), enforced foreign keys and a busy timeout, so that concurrent
    writers wait for each other instead of failing at once. The folder of the database file is created.

    Raises:
        ConfigError: the URL is not supported.
        StoreUnavailable: the folder of the database file cannot be created.
    """
    parsed = url if isinstance(url, URL) else normalize_url(url)
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if _is_memory(parsed):
            # One shared connection: every new connection to :memory: would be a new, empty database.
            options["poolclass"] = StaticPool
        elif not parsed.query.get("uri"):  # a file: URI is sqlite's to resolve
            with unavailable_as_error(parsed):
                Path(parsed.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
    elif "timeout" not in parsed.query:
        options["connect_args"] = {"timeout": POSTGRES_CONNECT_TIMEOUT_S}
    engine = create_async_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite", **options)
    if parsed.get_backend_name() == "sqlite":
        if not _is_memory(parsed):
            event.listen(engine.sync_engine, "do_connect", _sqlite_probe)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_probe(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
    """Open the database file once with sqlite3 before aiosqlite does, and report why it cannot.

    aiosqlite 0.22 does not wait for its worker thread after a failed connect; the thread then fails
    against a closed event loop and prints a stray traceback after our one-line error. Opening a file
    takes well under a millisecond, and happens only when the pool makes a new connection.
    """
    sqlite3.connect(*cargs, **cparams).close()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL itself needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
    except BaseException:
        # The pool does not close a connection whose connect hook failed; left open, aiosqlite's worker
        # thread outlives the event loop and fails in the background.
        dbapi_connection.close()
        raise


#: Errors that mean "the database cannot be reached or used right now", not "this statement is wrong".
#: (`TimeoutError`, which asyncpg raises on a slow connect, is an `OSError`.)
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
    OSError,
)


def _reason(error: BaseException) -> str:
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        error = error.orig
    text = " ".join(str(error).split()) or "no details"
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(error).__name__}: {text}"


# Lower-case: it reads like a function at the call site, `async with unavailable_as_error(url):`.
class unavailable_as_error:
    """Re-raise connection-level SQLAlchemy and driver errors as `StoreUnavailable`.

    This is the one place where library errors become ours. The message is one line, names the
    database with its password masked, and says why. Works with `with` and `async with`.
    """

    def __init__(self, url: URL | str) -> None:
        self._url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, _type: object, error: BaseException | None, _tb: object) -> None:
        if error is None:
            return
        unavailable = (
            isinstance(error, _UNAVAILABLE)
            or (isinstance(error, exc.DBAPIError) and error.connection_invalidated)
            # Exactly DatabaseError, not a subclass: SQLite's "file is not a database" and "database
            # disk image is malformed". Its subclasses (IntegrityError...) are the statement's fault.
            or type(error) is exc.DatabaseError
        )
        if unavailable:
            raise StoreUnavailable(
                f"the session store {describe(self._url)} is unavailable ({_reason(error)})"
            ) from error

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, _type: object, error: BaseException | None, _tb: object) -> None:
        self.__exit__(_type, error, _tb)
