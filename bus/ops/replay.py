"""Reading a stream back for audit, from an entry id or a time. Nothing is consumed or acknowledged.

Not to be confused with replaying a dead letter (`deadletters.py`), which sends a message again.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from bus.backend import Bus
from bus.inspection import Inspectable, entry_id_before, entry_time, id_before_time, inspector
from bus.message import AgentMessage, MalformedMessage
from bus.ops.scan import scan, workspace_prefix
from engine.errors import BadRequest, InvalidArgument

_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Streams named when the one asked for does not exist.
_SHOWN = 12


class StreamEntry(BaseModel):
    """An entry read back from a stream, with its message when it holds one."""

    entry_id: str
    at: datetime | None
    fields: dict[str, str]
    message: dict[str, Any] | None = None


async def read_stream(
    bus: Bus,
    workspace: str,
    stream: str,
    *,
    start: str | None = None,
    since: str | None = None,
    limit: int = 100,
) -> list[StreamEntry]:
    """A stream's first `limit` entries from entry id `start` (included) or from a time (`since`: ISO 8601,
    or an age such as 90s, 10m, 2h, 1d); from its start when neither is given.

    `stream` is named in full (`rt:{ws}:...`) or within the workspace (`inbox:analyst:p5`).

    Raises:
        InvalidArgument: both `start` and `since`, a `since` that is not a time, or `limit` below 1.
        BadRequest: `start` is not an entry id, or the workspace has no such stream.
    """
    if start is not None and since is not None:
        raise InvalidArgument("start", "since", problem="cannot be given together; give one or the other")
    if limit < 1:
        raise InvalidArgument("limit", problem=f"must be 1 or more, got {limit}")
    key = await _stream_key(bus, workspace, stream)
    after: str | None = None
    if start is not None:
        after = entry_id_before(start)
    elif since is not None:
        at = parse_since(since)
        after = await id_before_time(inspector(bus, what="reading a stream from a time"), key, at)
    rows: list[StreamEntry] = []
    async for entry_id, fields in scan(bus, key, after=after):
        rows.append(_stream_entry(entry_id, fields))
        if len(rows) >= limit:
            break
    return rows


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """A point in time: ISO 8601 (UTC when it names no zone), or an age back from now (30s, 10m, 2h, 1d).

    Raises:
        InvalidArgument: neither (the parameter is `since`).
    """
    current = now or datetime.now(UTC)
    age = _AGE.fullmatch(text.strip())
    if age is not None:
        return current - timedelta(seconds=float(age.group(1)) * _AGE_UNITS[age.group(2)])
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(
            "since",
            problem=f"{text!r} is not a time; use an ISO time such as 2025-01-31T12:00:00Z "
            "or an age such as 90s, 10m, 2h, 1d",
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


async def _stream_key(bus: Bus, workspace: str, name: str) -> str:
    """The key of a stream named in full or within the workspace, checked to exist when the bus can tell."""
    prefix = workspace_prefix(workspace)
    if name.startswith("rt:") and not name.startswith(prefix):
        raise BadRequest(f"stream {name!r} is not in workspace {workspace!r}, whose keys start {prefix}")
    key = name if name.startswith(prefix) else prefix + name
    if isinstance(bus, Inspectable):
        streams = await bus.list_streams(prefix)
        if key not in streams:
            shown = [s.removeprefix(prefix) for s in streams[:_SHOWN]]
            more = f" and {len(streams) - _SHOWN} more" if len(streams) > _SHOWN else ""
            raise BadRequest(
                f"no stream {name!r} in workspace {workspace!r}; streams: {', '.join(shown) or 'none'}{more}"
            )
    return key


def _stream_entry(entry_id: str, fields: dict[str, str]) -> StreamEntry:
    message: dict[str, Any] | None = None
    if "v" in fields and "msg" in fields:
        try:
            message = AgentMessage.from_fields(fields).model_dump(mode="json")
        except MalformedMessage:
            message = None
    return StreamEntry(entry_id=entry_id, at=entry_time(entry_id), fields=fields, message=message)
