"""Turns the engine's burst of progress events into a few, never overlapping, message edits.

Chat platforms rate-limit edits (Discord allows about five per five seconds per channel), while the
engine emits an event per turn. The pump folds every event into the latest view at once, and edits
the message at most once per interval with whatever is newest, one edit at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bot.views import ProgressTracker, ProgressView
from engine.progress import Progress

log = logging.getLogger("roundtable.chat")

Show = Callable[[ProgressView], Awaitable[None]]


class ProgressPump:
    def __init__(self, tracker: ProgressTracker, show: Show, *, interval_s: float) -> None:
        self._tracker = tracker
        self._show = show
        self._interval_s = interval_s
        self._dirty = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._shown: ProgressView | None = None

    def push(self, event: Progress) -> None:
        """The engine's progress sink: cheap and synchronous."""
        self._tracker.update(event)
        self._dirty.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="roundtable-progress")

    async def close(self) -> None:
        """Let an edit in flight finish, then show the final view once (unless it is already shown).

        An edit is never cancelled halfway: a platform request cut off mid-way may or may not have
        landed, and the final edit must come after it.
        """
        self._closing.set()
        self._dirty.set()
        if self._task is not None:
            await self._task
            self._task = None
        view = self._tracker.view
        if view != self._shown:
            await self._edit(view)

    async def _loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self._closing.is_set():
                return
            await self._edit(self._tracker.view)
            if self._interval_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self._interval_s)

    async def _edit(self, view: ProgressView) -> None:
        try:
            await self._show(view)
            self._shown = view
        except asyncio.CancelledError:
            raise
        except Exception:
            # A failed edit must not stop the session; the next edit shows the newer view anyway.
            log.warning("roundtable.progress_edit_failed", exc_info=True)
