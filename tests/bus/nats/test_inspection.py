"""Inspection on a NATS JetStream bus as operators meet it: `roundtable bus stats|find|replay --since`,
and the lag and pending gauges of the metrics page."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bus import AgentMessage, BusMetrics, Mailbox, NatsBus
from tests.helpers import delete_nats_prefix, metric, notification, roundtable, scrape


async def test_bus_stats_find_and_replay_since_on_nats(
    nats_url: str, new_stream: Callable[..., str], prefix: str, workspace: str, tmp_path: Path
) -> None:
    lane = new_stream("inbox:skeptic:p5")
    messages = [
        AgentMessage(from_agent="a", to_agent="skeptic", message_type="notification", content={"n": n})
        for n in range(4)
    ]
    bus = NatsBus(nats_url)
    try:
        ids = [await bus.publish(lane, messages[0])]
        await asyncio.sleep(0.02)  # so that a time falls between the first entry and the others
        between = datetime.now(UTC)
        await asyncio.sleep(0.02)
        ids += [await bus.publish(lane, m) for m in messages[1:]]
        await bus.ensure_group(lane, "inbox")
        await bus.consume(lane, "inbox", "c1", count=2, block_ms=0)
        await bus.ack(lane, "inbox", [ids[0]])
        env = {
            **os.environ,
            "ROUNDTABLE_BUS_URL": nats_url,
            "ROUNDTABLE_DATA_DIR": str(tmp_path / "data"),
            "ROUNDTABLE_WORKSPACE": workspace,
        }

        stats, acked, found, waiting, since = await asyncio.gather(
            *(
                asyncio.to_thread(roundtable, "bus", *args, env=env)
                for args in (
                    ("stats", "--json"),
                    ("find", messages[0].message_id, "--json"),
                    ("find", messages[1].message_id, "--json"),
                    ("find", messages[3].message_id, "--json"),
                    ("replay", "inbox:skeptic:p5", "--since", between.isoformat(), "--json"),
                )
            )
        )

        assert stats.returncode == 0, stats.stderr
        [row] = json.loads(stats.stdout)
        assert (row["stream"], row["length"]) == (lane, 4)
        [group] = row["groups"]
        assert (group["name"], group["pending"], group["lag"], group["last_delivered_id"]) == (
            "inbox",
            1,
            2,
            ids[1],
        )
        assert found.returncode == 0, found.stderr
        [hit] = json.loads(found.stdout)
        assert (hit["entry_id"], hit["groups"]) == (
            ids[1],
            [{"group": "inbox", "state": "pending", "consumer": None, "deliveries": None}],
        )
        assert [g["state"] for g in json.loads(acked.stdout)[0]["groups"]] == ["acknowledged"]
        assert [g["state"] for g in json.loads(waiting.stdout)[0]["groups"]] == ["waiting"]
        assert since.returncode == 0, since.stderr
        assert [e["entry_id"] for e in json.loads(since.stdout)] == ids[1:]
    finally:
        await bus.close()
        await delete_nats_prefix(nats_url, prefix)


async def test_lag_and_pending_gauges_on_nats(nats_url: str, prefix: str, workspace: str) -> None:
    bus = NatsBus(nats_url)
    try:
        with BusMetrics() as metrics:
            skeptic = Mailbox(bus, workspace, "skeptic")
            engine = Mailbox(bus, workspace, "engine")
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
            assert metric(samples, "roundtable_bus_pending", **group) == 1
    finally:
        await bus.close()
        await delete_nats_prefix(nats_url, prefix)
