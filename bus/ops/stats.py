"""Per-stream statistics of a workspace: length, and each consumer group's consumers, pending and lag."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from bus.backend import Bus
from bus.inspection import GroupInfo, inspector
from bus.ops.scan import workspace_prefix

#: Streams described at once: one round trip each, and a workspace has ten lanes per agent.
_FAN_OUT = 32


class StreamStats(BaseModel):
    """One stream of the workspace: its length and its consumer groups."""

    stream: str
    length: int
    groups: list[GroupInfo]

    @property
    def pending(self) -> int:
        return sum(g.pending for g in self.groups)


async def stream_stats(bus: Bus, workspace: str, *, include_empty: bool = False) -> list[StreamStats]:
    """Every stream of the workspace with its length and groups (pending, lag, consumers), sorted.

    Streams with no entries and nothing pending are left out unless `include_empty`: each agent
    has ten priority lanes, and most of them are usually empty.

    Raises:
        ConfigError: the backend cannot be inspected.
    """
    inspect = inspector(bus, what="stream statistics")
    streams = await inspect.list_streams(workspace_prefix(workspace))
    infos = []
    for start in range(0, len(streams), _FAN_OUT):
        chunk = streams[start : start + _FAN_OUT]
        infos += await asyncio.gather(*(inspect.stream_info(s) for s in chunk))
    rows = [StreamStats(stream=i.stream, length=i.length, groups=i.groups) for i in infos if i is not None]
    return [r for r in rows if include_empty or r.length or r.pending]
