"""The configured bus opened for operating it (`roundtable bus ...`), as `Runtime` would connect it.

It also hands the command line the view models it renders, since adapters never import `bus`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.datadir import prepare_data_dir, secure_data_dir
from bot.settings import Settings
from bus import connect_bus
from bus.ops import BusOps, DeadLetterRow, FoundEntry, StreamEntry, StreamStats

__all__ = [
    "BusOps",
    "DeadLetterRow",
    "FoundEntry",
    "StreamEntry",
    "StreamStats",
    "open_bus_ops",
]


@asynccontextmanager
async def open_bus_ops(settings: Settings) -> AsyncIterator[BusOps]:
    """The configured bus for operating, closed on exit."""
    data_dir = Path(settings.data_dir)
    prepare_data_dir(data_dir)
    bus, description, private = await connect_bus(settings.bus_url, data_dir)
    secure_data_dir(data_dir)
    try:
        yield BusOps(bus, settings.workspace, description=description)
    finally:
        await bus.close()
        if private is not None:
            await asyncio.to_thread(private.stop)
