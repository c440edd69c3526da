"""Stopping the bus's background loops reliably."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from engine.errors import BusUnavailable

log = logging.getLogger("roundtable.bus")


async def stop_task(task: asyncio.Task[Any], *, grace_s: float = 3.0) -> None:
    """Cancel a loop and wait for it to end.

    A cancellation that lands while redis-py is inside its socket-read timeout can be swallowed (the
    timeout turns it into a retried read), so loops also check a closing flag and end within one
    blocking read; the wait here is bounded in case even that does not happen.
    """
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=grace_s)
    if not done:
        log.warning("roundtable.task_stop_slow task=%s", task.get_name())
        return
    if (
        not task.cancelled()
        and task.exception() is not None
        and not isinstance(task.exception(), BusUnavailable)
    ):
        log.warning("roundtable.task_failed task=%s error=%r", task.get_name(), task.exception())
