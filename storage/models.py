"""The tables: one row per session, and its append-only event log.

Core tables rather than ORM classes: the store issues a handful of explicit statements (an idempotent
insert, a row lock, a projection for analytics), and plain tables keep them readable. The JSON columns
use the generic `JSON` type, which is `json` on PostgreSQL (it keeps key order, unlike `jsonb`, so a
stored result reads back as it was written) and text with the JSON1 functions on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

#: Stable constraint names, so that later migrations can refer to them on both dialects.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite has no timezone type and would silently drop the offset of an aware datetime; converting to
    UTC on the way in and marking UTC on the way out makes both dialects read back the same instant.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


sessions = Table(
    "sessions",
    metadata,
    Column("id", String, primary_key=True),
    Column("status", String, nullable=False),
    Column("topic", Text, nullable=False),
    Column("voting_rule", String, nullable=False),
    Column("team", JSON, nullable=False),
    Column("config", JSON, nullable=False),
    # "metadata" is the column name; the key avoids clashing with Table.metadata-style attributes.
    Column("metadata", JSON, nullable=False, key="meta"),
    Column("result", JSON(none_as_null=True), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime, nullable=True),
    Index(None, "status", "created_at"),
    Index(None, "created_at"),
)

events = Table(
    "events",
    metadata,
    # 64-bit on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the rowid (and it is 64-bit anyway).
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("session_id", String, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String, nullable=False),
    Column("step", String, nullable=False),
    Column("agent", String, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # The event key: the store keeps one event per key and session, which makes `append` idempotent.
    UniqueConstraint("session_id", "kind", "step", "agent"),
    # Append order; also the index behind the foreign key.
    Index(None, "session_id", "seq", unique=True),
)
