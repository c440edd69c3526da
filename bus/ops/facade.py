"""`BusOps`: one workspace on a bus as its operator sees it, one object for a front end to hold.

Each job lives in its own module (`deadletters`, `find`, `replay`, `stats`); this binds them to a bus
and a workspace, so that the command line opens one thing and calls it.
"""

from __future__ import annotations

from bus.backend import Bus
from bus.delivery import DeliveryConfig
from bus.ops.deadletters import DeadLetters
from bus.ops.find import FoundEntry, find_message
from bus.ops.replay import StreamEntry, read_stream
from bus.ops.stats import StreamStats, stream_stats


class BusOps:
    """The operator's view of one workspace on a bus: its dead letters, finding, replaying, statistics."""

    def __init__(
        self, bus: Bus, workspace: str, *, description: str = "", config: DeliveryConfig | None = None
    ) -> None:
        self.bus = bus
        self.workspace = workspace
        #: What the bus is, for a title: "redis at ...", "nats at ...".
        self.description = description or bus.name
        self.dead_letters = DeadLetters(bus, workspace, config=config)

    async def find(self, message_id: str) -> list[FoundEntry]:
        """Every entry of the workspace about `message_id` (see `find_message`)."""
        return await find_message(self.bus, self.workspace, message_id)

    async def replay(
        self, stream: str, *, start: str | None = None, since: str | None = None, limit: int = 100
    ) -> list[StreamEntry]:
        """A stream's entries read back from an id or a time, consuming nothing (see `read_stream`)."""
        return await read_stream(self.bus, self.workspace, stream, start=start, since=since, limit=limit)

    async def stats(self, *, include_empty: bool = False) -> list[StreamStats]:
        """Every stream of the workspace with its length and groups (see `stream_stats`)."""
        return await stream_stats(self.bus, self.workspace, include_empty=include_empty)
