"""Finding a message by id across a workspace's streams, and where it stands in each consumer group."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from bus.addressing import audit_key, dlq_key
from bus.backend import Bus, parse_entry_id
from bus.events import events_key
from bus.inspection import Inspectable, entry_time, inspector
from bus.ops.scan import scan, workspace_prefix
from engine.errors import InvalidArgument

EntryKind = Literal["message", "dead_letter", "audit", "event", "record"]


class GroupState(BaseModel):
    """Where an entry stands in one consumer group."""

    group: str
    state: Literal["waiting", "pending", "acknowledged"]
    consumer: str | None = None
    deliveries: int | None = None


class FoundEntry(BaseModel):
    """A stream entry about a message id: the message itself, its dead letter, an audit record..."""

    stream: str
    entry_id: str
    at: datetime | None
    kind: EntryKind
    fields: dict[str, str]
    #: For a message in a stream with consumer groups, where it stands in each.
    groups: list[GroupState] = []


async def find_message(bus: Bus, workspace: str, message_id: str) -> list[FoundEntry]:
    """Every entry of the workspace about `message_id`: the message (in each inbox it reached), its dead
    letters, audit records and events. Messages say where they stand in each group.

    It reads every stream of the workspace: an operator's tool, not something to call per message.

    Raises:
        InvalidArgument: `message_id` is blank.
        ConfigError: the backend cannot be inspected.
    """
    if not message_id.strip():
        raise InvalidArgument("message_id", problem="is blank; give the id of a message, e.g. 3f2c...")
    inspect = inspector(bus, what="finding a message")
    found: list[FoundEntry] = []
    for stream in await inspect.list_streams(workspace_prefix(workspace)):
        async for entry_id, fields in scan(bus, stream):
            if fields.get("id") == message_id or fields.get("message_id") == message_id:
                kind = _kind(workspace, stream, fields)
                groups = await _states(inspect, stream, entry_id) if kind == "message" else []
                found.append(
                    FoundEntry(
                        stream=stream,
                        entry_id=entry_id,
                        at=entry_time(entry_id),
                        kind=kind,
                        fields=fields,
                        groups=groups,
                    )
                )
    return found


async def _states(inspect: Inspectable, stream: str, entry_id: str) -> list[GroupState]:
    info = await inspect.stream_info(stream)
    states: list[GroupState] = []
    for group in info.groups if info is not None else []:
        pending = await inspect.pending_entry(stream, group.name, entry_id)
        if pending is not None:
            state = GroupState(
                group=group.name, state="pending", consumer=pending.consumer, deliveries=pending.deliveries
            )
        elif parse_entry_id(entry_id) <= parse_entry_id(group.last_delivered_id):
            state = GroupState(group=group.name, state="acknowledged")
        else:
            state = GroupState(group=group.name, state="waiting")
        states.append(state)
    return states


def _kind(workspace: str, stream: str, fields: dict[str, str]) -> EntryKind:
    if stream == dlq_key(workspace):
        return "dead_letter"
    if stream == audit_key(workspace):
        return "audit"
    if stream == events_key(workspace):
        return "event"
    return "message" if "v" in fields and "msg" in fields else "record"
