"""The configured bus opened for operating it (`roundtable bus ...`), as `Runtime` would connect it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.settings import Settings
from bus import connect_bus
from bus.ops.tooling import BusOps, DeadLetterRow, FoundEntry, StreamEntry

__all__ = ["BusOps", "DeadLetterRow", "FoundEntry", "StreamEntry", "open_bus_ops"]


@asynccontextmanager
async def open_bus_ops(settings: Settings) -> AsyncIterator[BusOps]:
    """The configured bus for operating, closed on exit."""
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    bus, description, private = await connect_bus(settings.bus_url, data_dir)
    try:
        yield BusOps(bus, settings.workspace, description=description)
    finally:
        await bus.close()
        if private is not None:
            await asyncio.to_thread(private.stop)
