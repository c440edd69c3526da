"""The loop behind `Mailbox.serve`: read, run handlers, heartbeat, reclaim, settle in groups.

Handlers run on `concurrency` worker coroutines that take messages from a queue in the order they
came (highest priority first). The reader fills the queue when it is empty and a worker is free,
with up to `DeliveryConfig.batch` messages; queued messages are heartbeated like running ones. A large
batch makes fast handlers cheap (one read and one settlement per batch); a batch no larger than
`concurrency` keeps a consumer of slow handlers from hoarding messages that an idle consumer, or a
higher-priority message arriving later, should get.

Outcomes are settled by a flusher in groups ("group commit"): while one settlement is on its way, the
outcomes of handlers that finish meanwhile gather for the next. At a low rate each message is settled
at once; at a high rate one round trip settles a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from bus.backoff import Backoff
from bus.loops import stop_task
from engine.errors import BusUnavailable

if TYPE_CHECKING:
    from bus.delivery import Envelope, Handler, Outcome
    from bus.mailbox import Mailbox

log = logging.getLogger("roundtable.bus")

_BACKOFF_S = 0.2
_MAX_BACKOFF_S = 5.0
#: How long a stopping serve waits for cancelled handlers to unwind.
_GRACE_S = 3.0


class Serving:
    """One run of `Mailbox.serve`."""

    def __init__(self, mailbox: Mailbox, handler: Handler, concurrency: int) -> None:
        self._box = mailbox
        self._handler = handler
        self._concurrency = concurrency
        self._queue: asyncio.Queue[Envelope] = asyncio.Queue()
        self._running = 0
        self._hungry = asyncio.Event()  # the queue ran empty while a worker was free
        self._outcomes: list[Outcome] = []
        self._outcome_ready = asyncio.Event()
        self._handled = 0
        self._ending = False
        # Dispatched and without an outcome yet: abandoned to reclaim if the serve ends first.
        self._open: dict[tuple[str, str], Envelope] = {}

    async def run(self, idle_stop_ms: int | None) -> int:
        box = self._box
        workers = [
            asyncio.create_task(self._work(), name=f"handle-{box.consumer}-{i}")
            for i in range(self._concurrency)
        ]
        flusher = asyncio.create_task(self._flush_loop(), name=f"settle-{box.consumer}")
        upkeep = asyncio.create_task(self._upkeep_loop(), name=f"upkeep-{box.consumer}")
        # Jittered, so that agents which lost the same server do not all come back at once.
        backoff = Backoff(base_s=_BACKOFF_S, cap_s=_MAX_BACKOFF_S)
        block_ms = box.config.block_ms if idle_stop_ms is None else idle_stop_ms
        try:
            while not box.stopping:
                if not self._queue.empty() or self._running >= self._concurrency:
                    self._hungry.clear()
                    await self._hungry.wait()
                    continue
                try:
                    envelopes = await box.receive(block_ms=block_ms)
                    backoff.reset()
                except BusUnavailable as exc:
                    log.warning("roundtable.bus_receive_failed agent=%s error=%s", box.agent, exc)
                    await backoff.wait()
                    continue
                if envelopes:
                    self.dispatch(envelopes)
                elif idle_stop_ms is not None and not self._running and self._queue.empty():
                    break
        finally:
            self._ending = True
            for task in workers:
                task.cancel()
            await asyncio.wait(workers, timeout=_GRACE_S)
            await stop_task(upkeep)
            await stop_task(flusher)
            with contextlib.suppress(BusUnavailable):
                await self._flush()  # what was handled is settled, even when the serve is cancelled
            box.abandon(list(self._open.values()))
        return self._handled

    def dispatch(self, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            self._open[envelope.key] = envelope
            self._queue.put_nowait(envelope)

    async def _work(self) -> None:
        while True:
            envelope = await self._queue.get()
            self._running += 1
            try:
                await self._handler(envelope.message)
            except Exception as exc:  # the handler's failure is the message's outcome, not the loop's
                self._outcomes.append((envelope, exc))
            else:
                self._outcomes.append((envelope, None))
            finally:
                self._running -= 1
            self._open.pop(envelope.key, None)
            self._outcome_ready.set()
            if self._queue.empty():
                self._hungry.set()

    async def _flush_loop(self) -> None:
        while not self._ending:
            await self._outcome_ready.wait()
            self._outcome_ready.clear()
            try:
                await self._flush()
            except BusUnavailable as exc:
                # Kept for the next try; meanwhile the messages stay pending (and claimed by us).
                log.warning("roundtable.bus_settle_failed agent=%s error=%s", self._box.agent, exc)
                await asyncio.sleep(_BACKOFF_S)
                self._outcome_ready.set()

    async def _flush(self) -> None:
        while self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            try:
                await self._box.settle(outcomes)
            except BaseException:
                self._outcomes[:0] = outcomes
                raise
            self._handled += sum(error is None for _, error in outcomes)

    async def _upkeep_loop(self) -> None:
        box = self._box
        while not self._ending:
            await asyncio.sleep(box.config.heartbeat_s)
            try:
                await box.heartbeat()
                if self._running < self._concurrency and self._queue.empty():
                    self.dispatch(await box.reclaim())
            except BusUnavailable as exc:
                log.warning("roundtable.bus_upkeep_failed agent=%s error=%s", box.agent, exc)
            except Exception:  # a bug here must not stop the heartbeat for good
                log.exception("roundtable.bus_upkeep_crashed agent=%s", box.agent)
