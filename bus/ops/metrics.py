"""Prometheus metrics of the bus, as this process's mailboxes see it.

`BusMetrics.install()` makes every mailbox of the process visible to it (`bus/observe.py`). The
counters are read from the mailboxes' own `DeliveryStats` when scraped, so counting costs nothing on
the hot path; a mailbox that goes away leaves its counts behind, so counters never go down. Handler
time is observed around each handler call. Backlog gauges (lag, pending) are read from the bus when
scraped, through `render()` (or the ASGI app), which awaits them before it writes the page.

Every metric carries the labels `workspace` and `agent` (the mailbox's own agent):

| metric | more labels | what |
| --- | --- | --- |
| `roundtable_bus_messages_sent_total` | | entries sent (one per recipient) |
| `roundtable_bus_messages_delivered_total` | | entries handed to a mailbox, redeliveries included |
| `roundtable_bus_messages_acknowledged_total` | outcome | handled, duplicate, dead_lettered, refused |
| `roundtable_bus_messages_redelivered_total` | | taken over from a silent consumer |
| `roundtable_bus_messages_dead_lettered_total` | reason | why: malformed, expired, handler_failed... |
| `roundtable_bus_messages_expired_total` | | dead-lettered because their ttl passed |
| `roundtable_bus_messages_trimmed_total` | | trimmed by retention before they were delivered |
| `roundtable_bus_handler_failures_total` | | handler calls that raised |
| `roundtable_bus_handling_seconds` | outcome | histogram: handler run time (ok, failed) |
| `roundtable_bus_end_to_end_seconds` | | histogram: message timestamp to handler return |
| `roundtable_bus_consumer_lag` | group | entries not yet read by the agent's group (all lanes) |
| `roundtable_bus_pending` | group | entries read and not acknowledged yet |

and, for the whole process (`bus/agents/requests.py`'s `request_totals`), without labels but the outcome:
`roundtable_bus_requests_sent_total`, `roundtable_bus_requests_completed_total` (outcome: answered,
failed, timed_out, abandoned) and `roundtable_bus_responses_dropped_total` (reason: late, unmatched).
The engine's turns are requests too; a turn the engine stopped waiting for is `abandoned`.

`roundtable worker --metrics-port P` (or `ROUNDTABLE_METRICS_PORT`) serves them at `/metrics`; a
web app mounts `asgi_app()` instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from bus import observe
from bus.agents.requests import request_totals
from bus.delivery import DeliveryStats
from bus.inspection import Inspectable
from bus.message import AgentMessage
from engine.errors import BusUnavailable

if TYPE_CHECKING:
    from bus.backend import Bus
    from bus.delivery import Handler
    from bus.mailbox import Mailbox

log = logging.getLogger("roundtable.bus")

#: From a sub-millisecond bus handler to a minute-long LLM turn.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
#: Longest a scrape waits for the bus to tell the backlog; past it the last values are shown.
REFRESH_TIMEOUT_S = 2.0

Labels = tuple[str, str]  # workspace, agent
GroupLabels = tuple[str, str, str]  # workspace, agent, group
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BusMetrics:
    """The bus's Prometheus metrics, in a registry of their own.

    Args:
        registry: where to register; a new one by default (the process's CPU and memory included).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
        self.registry = registry
        self._lock = threading.Lock()
        #: Live mailboxes by id: their labels and stats (read at each scrape).
        self._live: dict[int, tuple[Labels, DeliveryStats]] = {}
        self._boxes: weakref.WeakValueDictionary[int, Mailbox] = weakref.WeakValueDictionary()
        #: Ids of mailboxes that went away. The garbage collector may report one at any allocation,
        #: even while this thread holds the lock, so it only appends here (atomic, no lock).
        self._gone: deque[int] = deque()
        #: What mailboxes that went away had counted, by labels.
        self._retired: dict[Labels, DeliveryStats] = {}
        self._backlog: dict[GroupLabels, tuple[int | None, int]] = {}
        self.handling = Histogram(
            "roundtable_bus_handling_seconds",
            "Handler run time per message (outcome: ok, failed).",
            ["workspace", "agent", "outcome"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.end_to_end = Histogram(
            "roundtable_bus_end_to_end_seconds",
            "From a message's timestamp (its sender's clock) to its handler's return.",
            ["workspace", "agent"],
            buckets=BUCKETS,
            registry=registry,
        )
        registry.register(_StatsCollector(self))

    # --- seeing mailboxes -------------------------------------------------------------------------

    def install(self) -> BusMetrics:
        """Watch every mailbox this process makes from now on."""
        observe.add_observer(self)
        return self

    def uninstall(self) -> None:
        observe.remove_observer(self)

    def __enter__(self) -> BusMetrics:
        return self.install()

    def __exit__(self, *_: object) -> None:
        self.uninstall()

    def opened(self, mailbox: Mailbox) -> None:
        key = id(mailbox)
        with self._lock:
            self._fold_gone()  # before the id may be taken again by this new mailbox
            self._live[key] = ((mailbox.workspace, mailbox.agent), mailbox.stats)
            self._boxes[key] = mailbox
        weakref.finalize(mailbox, self._gone.append, key)

    def _fold_gone(self) -> None:
        """Move the counts of mailboxes that went away to the retired totals (lock held)."""
        while self._gone:
            found = self._live.pop(self._gone.popleft(), None)
            if found is not None:
                labels, stats = found
                _add(self._retired.setdefault(labels, DeliveryStats()), stats)

    def wrap(self, mailbox: Mailbox, handler: Handler) -> Handler:
        ok = self.handling.labels(mailbox.workspace, mailbox.agent, "ok")
        failed = self.handling.labels(mailbox.workspace, mailbox.agent, "failed")
        end_to_end = self.end_to_end.labels(mailbox.workspace, mailbox.agent)

        async def timed(message: AgentMessage) -> None:
            started = time.perf_counter()
            try:
                await handler(message)
            except BaseException:
                failed.observe(time.perf_counter() - started)
                raise
            ok.observe(time.perf_counter() - started)
            end_to_end.observe(max(0.0, (datetime.now(UTC) - message.timestamp).total_seconds()))

        return timed

    def totals(self) -> dict[Labels, DeliveryStats]:
        """Counts so far by (workspace, agent): live mailboxes and those gone, added up."""
        with self._lock:
            self._fold_gone()
            totals = {labels: _add(DeliveryStats(), stats) for labels, stats in self._retired.items()}
            for labels, stats in self._live.values():
                _add(totals.setdefault(labels, DeliveryStats()), stats)
        return totals

    # --- backlog, read from the bus at scrape time ------------------------------------------------

    async def refresh(self) -> None:
        """Read each watched agent's backlog (lag and pending, summed over its lanes) from the bus."""
        with self._lock:
            boxes = list(self._boxes.values())
        seen: dict[GroupLabels, tuple[Bus, list[str]]] = {}
        for box in boxes:
            seen.setdefault((box.workspace, box.agent, box.group), (box.bus, box.lanes))
        try:
            found = await asyncio.wait_for(
                asyncio.gather(*(_backlog(bus, lanes, key[2]) for key, (bus, lanes) in seen.items())),
                REFRESH_TIMEOUT_S,
            )
        except (BusUnavailable, TimeoutError) as exc:
            log.warning("roundtable.metrics_backlog_failed error=%s", exc or "timeout")
            return
        backlog = {key: value for key, value in zip(seen, found, strict=True) if value is not None}
        with self._lock:
            self._backlog = backlog

    def backlog(self) -> dict[GroupLabels, tuple[int | None, int]]:
        """The last backlog read: (workspace, agent, group) -> (lag or None when unknown, pending)."""
        with self._lock:
            return dict(self._backlog)

    # --- exposition -------------------------------------------------------------------------------

    async def render(self) -> bytes:
        """The metrics page, its backlog read just now."""
        await self.refresh()
        return generate_latest(self.registry)

    def asgi_app(self) -> ASGIApp:
        """An ASGI app answering every GET with the metrics page, for mounting at /metrics."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            if scope.get("method", "GET") not in ("GET", "HEAD"):
                await send({"type": "http.response.start", "status": 405, "headers": [(b"allow", b"GET")]})
                await send({"type": "http.response.body", "body": b""})
                return
            body = await self.render()
            headers = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body if scope.get("method") != "HEAD" else b""})

        return app

    async def serve(self, port: int, *, host: str = "127.0.0.1") -> MetricsServer:
        """Serve the page at http://host:port/metrics until the server is closed.

        Raises:
            OSError: the port cannot be bound (in use, or not ours to take).
        """
        from aiohttp import web  # only a process that serves metrics pays for importing the server

        async def page(_: web.Request) -> web.Response:
            return web.Response(body=await self.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        return MetricsServer(runner, f"http://{host}:{port}/metrics")


class MetricsServer:
    """A running metrics endpoint; `close` stops it."""

    def __init__(self, runner: Any, url: str) -> None:
        self._runner = runner
        self.url = url

    async def close(self) -> None:
        await self._runner.cleanup()


async def _backlog(bus: Bus, lanes: list[str], group: str) -> tuple[int | None, int] | None:
    """(lag, pending) of a group summed over lanes; None when none of the lanes exists."""
    if not isinstance(bus, Inspectable):  # a backend without inspection: pending is known, lag is not
        pending = await asyncio.gather(*(bus.pending_count(lane, group) for lane in lanes))
        return None, sum(pending)
    infos = await asyncio.gather(*(bus.stream_info(lane) for lane in lanes))
    groups = [g for info in infos if info is not None for g in info.groups if g.name == group]
    if not groups:
        return None
    lags = [g.lag for g in groups]
    lag = None if any(value is None for value in lags) else sum(value or 0 for value in lags)
    return lag, sum(g.pending for g in groups)


class _StatsCollector:
    """Reads the counters from the mailboxes' stats, and the backlog from the last refresh."""

    def __init__(self, metrics: BusMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        totals = sorted(self._metrics.totals().items())
        yield from _delivery_families(totals)
        yield from _settlement_families(totals)
        yield from _backlog_families(sorted(self._metrics.backlog().items()))
        yield from _request_families()


_LABELS = ["workspace", "agent"]
_Totals = list[tuple[Labels, DeliveryStats]]


def _counter(totals: _Totals, name: str, doc: str, value: Callable[[DeliveryStats], int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=_LABELS)
    for key, stats in totals:
        family.add_metric(list(key), value(stats))
    return family


def _delivery_families(totals: _Totals) -> Iterable[Metric]:
    yield _counter(
        totals, "roundtable_bus_messages_sent", "Entries sent, one per recipient.", lambda s: s.sent
    )
    yield _counter(
        totals,
        "roundtable_bus_messages_delivered",
        "Entries handed to a mailbox, redeliveries included.",
        lambda s: s.received,
    )
    yield _counter(
        totals,
        "roundtable_bus_messages_redelivered",
        "Entries taken over from a silent consumer.",
        lambda s: s.reclaimed,
    )
    yield _counter(
        totals,
        "roundtable_bus_messages_expired",
        "Entries dead-lettered because their ttl passed.",
        lambda s: s.dead_lettered["expired"],
    )
    yield _counter(
        totals,
        "roundtable_bus_messages_trimmed",
        "Entries trimmed away by retention before they were delivered.",
        lambda s: s.trimmed,
    )
    yield _counter(
        totals, "roundtable_bus_handler_failures", "Handler calls that raised.", lambda s: s.failed
    )


def _settlement_families(totals: _Totals) -> Iterable[Metric]:
    acknowledged = CounterMetricFamily(
        "roundtable_bus_messages_acknowledged",
        "Entries settled and acknowledged, by outcome.",
        labels=[*_LABELS, "outcome"],
    )
    dead = CounterMetricFamily(
        "roundtable_bus_messages_dead_lettered",
        "Dead letters written, by reason.",
        labels=[*_LABELS, "reason"],
    )
    for key, stats in totals:
        outcomes = {
            "handled": stats.handled,
            "duplicate": stats.duplicates,
            "dead_lettered": sum(stats.dead_lettered.values()),
            "refused": stats.refused,
        }
        for outcome, value in outcomes.items():
            acknowledged.add_metric([*key, outcome], value)
        for reason, value in sorted(stats.dead_lettered.items()):
            dead.add_metric([*key, reason], value)
    yield acknowledged
    yield dead


def _backlog_families(backlog: list[tuple[GroupLabels, tuple[int | None, int]]]) -> Iterable[Metric]:
    lag = GaugeMetricFamily(
        "roundtable_bus_consumer_lag",
        "Entries not yet read by the agent's consumer group, over its lanes.",
        labels=[*_LABELS, "group"],
    )
    pending = GaugeMetricFamily(
        "roundtable_bus_pending",
        "Entries read by the agent's consumer group and not acknowledged yet.",
        labels=[*_LABELS, "group"],
    )
    for group_key, (lag_value, pending_value) in backlog:
        if lag_value is not None:
            lag.add_metric(list(group_key), lag_value)
        pending.add_metric(list(group_key), pending_value)
    yield lag
    yield pending


def _request_families() -> Iterable[Metric]:
    totals = request_totals()
    sent = CounterMetricFamily("roundtable_bus_requests_sent", "Requests sent by this process's requesters.")
    sent.add_metric([], totals.sent)
    completed = CounterMetricFamily(
        "roundtable_bus_requests_completed",
        "Requests by outcome: answered, failed (answered with a failure), timed_out, abandoned "
        "(cancelled by the caller, the bus lost, or the requester closed).",
        labels=["outcome"],
    )
    for outcome, value in (
        ("answered", totals.answered),
        ("failed", totals.failed),
        ("timed_out", totals.timed_out),
        ("abandoned", totals.abandoned),
    ):
        completed.add_metric([outcome], value)
    dropped = CounterMetricFamily(
        "roundtable_bus_responses_dropped",
        "Responses dropped: late (their request had been given up) or unmatched (no waiter asked for them).",
        labels=["reason"],
    )
    dropped.add_metric(["late"], totals.late)
    dropped.add_metric(["unmatched"], totals.unmatched)
    return [sent, completed, dropped]


def _add(into: DeliveryStats, stats: DeliveryStats) -> DeliveryStats:
    """Add `stats` into `into`, counter by counter; returns `into`."""
    for spec in dataclasses.fields(DeliveryStats):
        value = getattr(stats, spec.name)
        if isinstance(value, Counter):
            getattr(into, spec.name).update(value)
        else:
            setattr(into, spec.name, getattr(into, spec.name) + value)
    return into
