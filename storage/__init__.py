"""Persistence: sessions as an append-only event log, in SQLite (default) or PostgreSQL.

    store = await SqlStore.open(database_url(data_dir, settings.database_url))
    await store.append(session_id, SessionStarted(config=config.model_dump(mode="json")))
    events = await store.load_events(session_id)

`SqlStore` implements `engine.ports.SessionStore`; the schema is migrated on open (`migrate`).
Connection failures surface as `engine.errors.StoreUnavailable`.
"""

from __future__ import annotations

from storage.analytics import AgentStats, Analytics, RuleStats, compute_analytics
from storage.db import create_engine, database_url, normalize_url
from storage.migrations import migrate
from storage.records import SESSION_STATUSES, SessionRecord, SessionStatus
from storage.store import SqlStore

__all__ = [
    "SESSION_STATUSES",
    "AgentStats",
    "Analytics",
    "RuleStats",
    "SessionRecord",
    "SessionStatus",
    "SqlStore",
    "compute_analytics",
    "create_engine",
    "database_url",
    "migrate",
    "normalize_url",
]
