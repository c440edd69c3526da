"""What the store hands back about a session: a plain pydantic record, not a database row."""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args

from pydantic import BaseModel, Field

from engine.errors import BadRequest
from engine.report import SessionReport, SessionStatus

__all__ = ["SESSION_STATUSES", "SessionRecord", "SessionStatus", "check_status"]

SESSION_STATUSES: tuple[SessionStatus, ...] = get_args(SessionStatus)


class SessionRecord(BaseModel):
    """One stored session: its configuration, where it came from, and its result once completed."""

    id: str
    status: SessionStatus
    topic: str
    voting_rule: str
    team: list[str]
    config: dict[str, Any]
    #: Where the session came from, e.g. {"platform": "slack", "channel": "C123"}.
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: The session's report, the `ask --json` document (docs/cli.md); None until the session completes.
    result: SessionReport | None = None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None


def check_status(status: str) -> SessionStatus:
    """`status` as a `SessionStatus`.

    Raises:
        BadRequest: `status` is not one of the known statuses.
    """
    for known in SESSION_STATUSES:
        if status == known:
            return known
    raise BadRequest(f"unknown session status '{status}'; choose one of {', '.join(SESSION_STATUSES)}")
