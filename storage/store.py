"""`SqlStore`: the session event log in SQLite or PostgreSQL.

Each append is one short transaction: usually a single INSERT, since the store remembers each
session's next `seq`. Appends from one process are queued on an asyncio lock (SQLite has one writer
at a time, and queueing is much cheaper than colliding in its busy handler). Writers in other processes
stay correct through the constraints: a stale `seq` fails UNIQUE(session_id, seq) and is re-read, and
an append to a session that does not exist fails its foreign key and becomes `SessionNotFound`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from pydantic import TypeAdapter
from sqlalchemy import RowMapping, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.config import SessionConfig
from engine.errors import BadRequest, SessionNotFound
from engine.events import SessionCompleted, SessionEvent, SessionFailed, SessionStarted
from storage.analytics import Analytics, compute_analytics
from storage.db import create_engine, describe, normalize_url, unavailable_as_error
from storage.migrations import upgrade
from storage.models import UTCDateTime, events, sessions
from storage.records import SessionRecord, SessionStatus, check_status

_EVENTS: TypeAdapter[list[SessionEvent]] = TypeAdapter(list[SessionEvent])
_DEFAULT_RULE: str = SessionConfig.model_fields["voting_rule"].default
_TERMINAL: frozenset[str] = frozenset({"completed", "failed"})


def _now() -> datetime:
    return datetime.now(UTC)


def _not_found(session_id: str) -> SessionNotFound:
    return SessionNotFound(f"no session '{session_id}'; `roundtable sessions` lists them")


def _record(row: RowMapping) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        status=row["status"],
        topic=row["topic"],
        voting_rule=row["voting_rule"],
        team=row["team"],
        config=row["config"],
        metadata=row["meta"],
        result=row["result"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        completed_at=row["completed_at"],
    )


class SqlStore:
    """The append-only event log of sessions, and the session rows derived from it.

    Implements `engine.ports.SessionStore`. Open it with `await SqlStore.open(url)`, which brings the
    schema up to date, and close it with `await store.close()` (or use it with `async with`).
    Every method raises `StoreUnavailable` when the database cannot be reached.
    """

    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self._engine = engine
        self._url = url
        #: The next `seq` per session, so an append needs no read; a stale value fails the unique
        #: (session_id, seq) constraint and is re-read, so several writers stay correct.
        self._next_seq: dict[str, int] = {}
        # 5 appends at once on SQLite: ~38 ms colliding in the busy handler, ~16 ms queued here.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> SqlStore:
        """Connect to `url` and migrate its schema to the newest revision.

        Raises:
            ConfigError: the URL names a database or driver we do not support.
            StoreUnavailable: the database cannot be reached.
        """
        parsed = normalize_url(url)
        async with unavailable_as_error(parsed):
            engine = create_engine(parsed)
            try:
                await upgrade(engine)
            except BaseException:
                await engine.dispose()
                raise
        return cls(engine, parsed)

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _error: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"SqlStore({describe(self._url)!r})"

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._engine.dialect.name

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        async with unavailable_as_error(self._url), self._engine.begin() as connection:
            yield connection

    def _insert(self, table: Any) -> postgresql.Insert | sqlite.Insert:
        # ON CONFLICT DO NOTHING is spelled the same on both, but lives in each dialect's insert().
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # -- the event log (engine.ports.SessionStore) --------------------------------------------------

    async def append(self, session_id: str, event: SessionEvent) -> bool:
        """Append `event` to the session's log; False, changing nothing, if its key is already stored.

        `SessionStarted` creates the session (status running); `SessionCompleted` and `SessionFailed`
        close it, in the same transaction as the event.

        Raises:
            SessionNotFound: the event is not a `SessionStarted` and the session does not exist.
            StoreUnavailable: the database cannot be reached.
        """
        kind, step, agent = event.key
        async with self._write_lock, unavailable_as_error(self._url), self._engine.connect() as connection:
            for attempt in range(2):
                transaction = await connection.begin()
                try:
                    seq = await self._append_in(connection, session_id, event, kind, step, agent)
                except IntegrityError:
                    # Another writer took our seq (the cache was stale), or the session does not exist.
                    await transaction.rollback()
                    self._next_seq.pop(session_id, None)
                    exists = await connection.scalar(select(sessions.c.id).where(sessions.c.id == session_id))
                    await connection.rollback()
                    if exists is None:
                        raise SessionNotFound(
                            f"no session '{session_id}' to append {kind} to; append its session_started first"
                        ) from None
                    if attempt:
                        raise
                    continue
                if seq is None:
                    await transaction.rollback()
                    return False
                await transaction.commit()
                self._next_seq[session_id] = seq + 1
                return True
        return False  # pragma: no cover - the loop returns or raises

    async def _append_in(
        self,
        connection: AsyncConnection,
        session_id: str,
        event: SessionEvent,
        kind: str,
        step: str,
        agent: str,
    ) -> int | None:
        """The statements of one append, inside its transaction: the seq used, or None for a duplicate."""
        now = _now()
        if isinstance(event, SessionStarted):
            await connection.execute(self._session_row(session_id, event, now))
        seq = self._next_seq.get(session_id)
        if seq is None:
            seq = int(
                await connection.scalar(
                    select(func.coalesce(func.max(events.c.seq), 0) + 1).where(
                        events.c.session_id == session_id
                    )
                )
                or 1
            )
        inserted = await connection.execute(
            self._insert(events)
            .values(
                session_id=session_id,
                seq=seq,
                kind=kind,
                step=step,
                agent=agent,
                payload=event.model_dump(mode="json"),
                created_at=event.at,
            )
            .on_conflict_do_nothing(index_elements=["session_id", "kind", "step", "agent"])
            .returning(events.c.id)
        )
        if inserted.first() is None:
            return None
        if isinstance(event, SessionCompleted | SessionFailed):
            status = "completed" if isinstance(event, SessionCompleted) else "failed"
            values: dict[str, Any] = {"status": status, "completed_at": event.at, "updated_at": now}
            if isinstance(event, SessionCompleted):
                values["result"] = event.result.model_dump(mode="json")
            await connection.execute(update(sessions).where(sessions.c.id == session_id).values(**values))
        return seq

    def _session_row(
        self, session_id: str, event: SessionStarted, now: datetime
    ) -> postgresql.Insert | sqlite.Insert:
        config = event.config
        team = config.get("team") or []
        return (
            self._insert(sessions)
            .values(
                id=session_id,
                status="running",
                topic=str(config.get("topic", "")),
                voting_rule=str(config.get("voting_rule") or _DEFAULT_RULE),
                team=[str(agent) for agent in team],
                config=config,
                meta=event.metadata,
                created_at=event.at,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["id"])
        )

    async def load_events(self, session_id: str) -> list[SessionEvent]:
        """The session's events in append order; empty for a session that was never started."""
        async with self._begin() as connection:
            rows = await connection.execute(
                select(events.c.payload).where(events.c.session_id == session_id).order_by(events.c.seq)
            )
            payloads = [payload for (payload,) in rows]
        return _EVENTS.validate_python(payloads)

    # -- sessions -----------------------------------------------------------------------------------

    async def get_session(self, session_id: str) -> SessionRecord:
        """The stored session `session_id`.

        Raises:
            SessionNotFound: no session has that id.
        """
        async with self._begin() as connection:
            found = await connection.execute(select(sessions).where(sessions.c.id == session_id))
            row = found.mappings().first()
        if row is None:
            raise _not_found(session_id)
        return _record(row)

    async def list_sessions(self, *, status: str | None = None, limit: int = 50) -> list[SessionRecord]:
        """Stored sessions, newest first, optionally only those with `status`.

        Raises:
            BadRequest: `status` is not a known status, or `limit` is not positive.
        """
        if limit < 1:
            raise BadRequest(f"limit must be at least 1, got {limit}")
        query = select(sessions).order_by(sessions.c.created_at.desc(), sessions.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(sessions.c.status == check_status(status))
        async with self._begin() as connection:
            rows = await connection.execute(query)
            return [_record(row) for row in rows.mappings()]

    async def running_sessions(self) -> list[SessionRecord]:
        """Every session still marked running, oldest first: the ones to resume at start."""
        query = (
            select(sessions)
            .where(sessions.c.status == "running")
            .order_by(sessions.c.created_at, sessions.c.id)
        )
        async with self._begin() as connection:
            rows = await connection.execute(query)
            return [_record(row) for row in rows.mappings()]

    async def set_status(self, session_id: str, status: str) -> None:
        """Mark the session `status`, e.g. failed after a crash that left no event, or running to resume.

        Raises:
            BadRequest: `status` is not a known status.
            SessionNotFound: no session has that id.
        """
        checked: SessionStatus = check_status(status)
        now = _now()
        completed_at: Any = None
        if checked in _TERMINAL:
            completed_at = func.coalesce(sessions.c.completed_at, literal(now, UTCDateTime()))
        async with self._begin() as connection:
            changed = await connection.execute(
                update(sessions)
                .where(sessions.c.id == session_id)
                .values(status=checked, updated_at=now, completed_at=completed_at)
                .returning(sessions.c.id)
            )
            if changed.first() is None:
                raise _not_found(session_id)

    # -- analytics ----------------------------------------------------------------------------------

    async def stats(self) -> Analytics:
        """Agent win rates and voting-rule statistics over every completed session."""
        result = sessions.c.result
        query = select(
            func.coalesce(result["voting_rule"].as_string(), sessions.c.voting_rule),
            result["team"].as_json(),
            result[("winner", "author")].as_string(),
            result[("tally", "consensus")].as_float(),
            result["rounds_run"].as_float(),
            result["stopped_early"].as_boolean(),
            result[("usage", "cost_usd")].as_float(),
            result["duration_s"].as_float(),
        ).where(sessions.c.status == "completed", result.is_not(None))
        async with self._begin() as connection:
            rows = (await connection.execute(query)).all()
        # Only the fields analytics reads travel from the database, in the result's own shape.
        return compute_analytics(
            {
                "voting_rule": rule,
                "team": team,
                "winner": {"author": author} if author is not None else None,
                "tally": {"consensus": consensus},
                "rounds_run": rounds,
                "stopped_early": stopped,
                "usage": {"cost_usd": cost},
                "duration_s": duration,
            }
            for rule, team, author, consensus, rounds, stopped, cost, duration in rows
        )
