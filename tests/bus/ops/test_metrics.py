"""Prometheus metrics of the bus (bus/ops/metrics.py), scraped over HTTP after real traffic on Redis."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bus import AgentMessage, BusMetrics, DeliveryConfig, Mailbox, RedisBus
from bus.addressing import inbox_key
from bus.agents.requests import Requester, answer
from engine.errors import RequestTimedOut
from tests.helpers import delete_redis_prefix, metric, notification, scrape
from tests.servers import free_port


@pytest.fixture
def workspace() -> str:
    return f"metrics-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_bus(redis_url: str, workspace: str) -> AsyncIterator[RedisBus]:
    bus = RedisBus(redis_url)
    yield bus
    await bus.close()
    await delete_redis_prefix(redis_url, f"rt:{{{workspace}}}:")


@pytest.fixture
async def metrics() -> AsyncIterator[BusMetrics]:
    """Metrics watching this test's mailboxes, in a registry of their own."""
    with BusMetrics() as watching:
        yield watching


async def test_counters_tell_what_the_mailboxes_did(
    metrics: BusMetrics, redis_bus: RedisBus, workspace: str
) -> None:
    ws = workspace
    config = DeliveryConfig(max_deliveries=1, block_ms=50)
    analyst = Mailbox(redis_bus, ws, "analyst", config=config)
    engine = Mailbox(redis_bus, ws, "engine", config=config)
    await analyst.register()
    handled = [notification(ws, "analyst", n) for n in range(3)]
    failing = notification(ws, "analyst", 9, metadata={"fail": "yes"})
    await engine.send_many([*handled, failing])
    lane = inbox_key(ws, "analyst", 5)
    await redis_bus.publish(
        lane, notification(ws, "analyst", 5, timestamp=datetime.now(UTC) - timedelta(hours=1), ttl=1)
    )

    async def handle(message: AgentMessage) -> None:
        if message.metadata.get("fail"):
            raise RuntimeError("broken")

    assert await analyst.serve(handle, idle_stop_ms=100) == 3
    await redis_bus.publish(lane, handled[0])  # a duplicate of a message handled already
    assert await analyst.serve(handle, idle_stop_ms=100) == 0

    samples = await scrape(metrics)
    a = {"workspace": ws, "agent": "analyst"}
    assert metric(samples, "roundtable_bus_messages_sent_total", workspace=ws, agent="engine") == 4
    assert metric(samples, "roundtable_bus_messages_delivered_total", **a) == 6
    assert metric(samples, "roundtable_bus_messages_acknowledged_total", **a, outcome="handled") == 3
    assert metric(samples, "roundtable_bus_messages_acknowledged_total", **a, outcome="duplicate") == 1
    assert metric(samples, "roundtable_bus_messages_acknowledged_total", **a, outcome="dead_lettered") == 2
    assert metric(samples, "roundtable_bus_messages_dead_lettered_total", **a, reason="handler_failed") == 1
    assert metric(samples, "roundtable_bus_messages_dead_lettered_total", **a, reason="expired") == 1
    assert metric(samples, "roundtable_bus_messages_expired_total", **a) == 1
    assert metric(samples, "roundtable_bus_handler_failures_total", **a) == 1
    assert metric(samples, "roundtable_bus_messages_redelivered_total", **a) == 0
    assert metric(samples, "roundtable_bus_handling_seconds_count", **a, outcome="ok") == 3
    assert metric(samples, "roundtable_bus_handling_seconds_count", **a, outcome="failed") == 1
    assert metric(samples, "roundtable_bus_end_to_end_seconds_count", **a) == 3
    assert metric(samples, "roundtable_bus_handling_seconds_bucket", **a, outcome="ok", le="+Inf") == 3
    # The analyst's group read everything and settled it: no lag, nothing pending.
    group = {**a, "group": "inbox"}
    assert (
        samples[("roundtable_bus_consumer_lag", frozenset(group.items()))],
        metric(samples, "roundtable_bus_pending", **group),
    ) == (0, 0)


async def test_lag_and_pending_are_read_from_the_bus_at_scrape_time(
    metrics: BusMetrics, redis_bus: RedisBus, workspace: str
) -> None:
    skeptic = Mailbox(redis_bus, workspace, "skeptic")
    engine = Mailbox(redis_bus, workspace, "engine")
    await skeptic.register()
    await engine.send_many([notification(workspace, "skeptic", n) for n in range(3)])
    await engine.send(notification(workspace, "skeptic", 9, priority=9))
    await skeptic.receive(count=1, block_ms=0)  # the priority-9 one: read, not settled
    group = {"workspace": workspace, "agent": "skeptic", "group": "inbox"}

    samples = await scrape(metrics)
    assert metric(samples, "roundtable_bus_consumer_lag", **group) == 3
    assert metric(samples, "roundtable_bus_pending", **group) == 1

    await skeptic.complete(await skeptic.receive(block_ms=0))
    samples = await scrape(metrics)
    assert metric(samples, "roundtable_bus_consumer_lag", **group) == 0
    assert metric(samples, "roundtable_bus_pending", **group) == 1  # the first one is still unsettled


async def test_redeliveries_are_counted(metrics: BusMetrics, redis_bus: RedisBus, workspace: str) -> None:
    config = DeliveryConfig(idle_timeout_s=0.05)
    dead = Mailbox(redis_bus, workspace, "pragmatist", consumer="dead", config=config)
    rescuer = Mailbox(redis_bus, workspace, "pragmatist", consumer="rescuer", config=config)
    await dead.register()
    await Mailbox(redis_bus, workspace, "engine").send(notification(workspace, "pragmatist", 1))
    [taken] = await dead.receive(block_ms=0)  # and never settled: its consumer "died"

    reclaimed: list[Any] = []
    while not reclaimed:  # until the idle timeout has passed
        reclaimed = await rescuer.reclaim()
    await rescuer.complete(reclaimed)

    samples = await scrape(metrics)
    labels = {"workspace": workspace, "agent": "pragmatist"}
    assert reclaimed[0].message.message_id == taken.message.message_id
    assert metric(samples, "roundtable_bus_messages_redelivered_total", **labels) == 1
    assert metric(samples, "roundtable_bus_messages_delivered_total", **labels) == 2
    assert metric(samples, "roundtable_bus_messages_acknowledged_total", **labels, outcome="handled") == 1


async def test_counts_outlive_the_mailboxes_that_made_them(
    metrics: BusMetrics, redis_bus: RedisBus, workspace: str
) -> None:
    """A counter never goes down: a session's mailbox ends, and what it sent is still counted."""
    await Mailbox(redis_bus, workspace, "ethicist").register()
    for n in range(3):
        sender = Mailbox(redis_bus, workspace, "engine")
        await sender.send(notification(workspace, "ethicist", n))
        del sender
        gc.collect()

    samples = await scrape(metrics)
    assert metric(samples, "roundtable_bus_messages_sent_total", workspace=workspace, agent="engine") == 3


async def test_mailboxes_made_before_install_or_after_uninstall_are_not_watched(
    redis_bus: RedisBus, workspace: str
) -> None:
    before = Mailbox(redis_bus, workspace, "early")
    with BusMetrics() as metrics:
        during = Mailbox(redis_bus, workspace, "engine")
    after = Mailbox(redis_bus, workspace, "late")
    assert set(metrics.totals()) == {(workspace, "engine")}
    assert before.agent
    assert during.agent
    assert after.agent


async def test_the_asgi_app_serves_the_page_for_a_later_mount(metrics: BusMetrics) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(event: Any) -> None:
        sent.append(event)

    await metrics.asgi_app()({"type": "http", "method": "GET", "path": "/metrics"}, receive, send)

    assert sent[0]["status"] == 200
    assert (b"content-type", b"text/plain; version=1.0.0; charset=utf-8") in sent[0]["headers"]
    assert b"# TYPE roundtable_bus_messages_sent_total counter" in sent[1]["body"]


async def test_a_port_in_use_is_an_os_error(metrics: BusMetrics) -> None:
    server = await metrics.serve(free_port())
    try:
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(OSError, match=r"(?i)address already in use"):
            await metrics.serve(port)
    finally:
        await server.close()


async def test_requests_are_counted_by_outcome(
    metrics: BusMetrics, redis_bus: RedisBus, workspace: str
) -> None:
    """Process-wide request counts: answered, timed out, and the late answer dropped."""
    config = DeliveryConfig(block_ms=50, members_cache_s=0)
    analyst = Mailbox(redis_bus, workspace, "analyst", config=config)
    await analyst.register()
    release = asyncio.Event()

    async def handle(message: AgentMessage) -> None:
        if message.content.get("slow"):
            await release.wait()
        await answer(analyst, message, {"ok": True})

    before = await scrape(metrics)
    serving = asyncio.create_task(analyst.serve(handle, concurrency=2))
    async with Requester(Mailbox(redis_bus, workspace, "engine", config=config), block_ms=50) as asker:
        await asker.request("analyst", {"q": 1}, timeout=10)
        with pytest.raises(RequestTimedOut):
            await asker.request("analyst", {"slow": True}, timeout=0.2)
        release.set()
        while asker.stats.late < 1:  # until the late answer came and was dropped
            await asyncio.sleep(0.01)
    analyst.stop()
    await serving
    after = await scrape(metrics)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("roundtable_bus_requests_sent_total") == 2
    assert delta("roundtable_bus_requests_completed_total", outcome="answered") == 1
    assert delta("roundtable_bus_requests_completed_total", outcome="timed_out") == 1
    assert delta("roundtable_bus_responses_dropped_total", reason="late") == 1
