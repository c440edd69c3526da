"""Delivery guarantees that need a real Redis and real processes: a consumer killed with kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from redis.asyncio import Redis

from bus import AgentMessage, DeliveryConfig, Mailbox, RedisBus
from bus.addressing import inbox_key
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[3]
IDLE_S = 0.3


async def test_a_consumer_killed_mid_handling_leaves_its_message_to_another_which_handles_it_once(
    redis_url: str, prefix: str, workspace: str
) -> None:
    marker = prefix + "started"
    markers = Redis.from_url(redis_url, decode_responses=True)
    bus = RedisBus(redis_url)
    config = DeliveryConfig(idle_timeout_s=IDLE_S, block_ms=100)
    victim = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.bus.redis.consumer_proc"),
        *(redis_url, workspace, "analyst", "victim", marker, str(IDLE_S)),
        cwd=ROOT,
    )
    try:
        engine = Mailbox(bus, workspace, "engine", config=config)

        async def victim_registered() -> bool:
            return "analyst" in await engine.fetch_members()

        await eventually(victim_registered)
        sent = AgentMessage(
            from_agent="engine", to_agent="analyst", message_type="request", workspace_id=workspace
        )
        await engine.send(sent)

        async def victim_started() -> bool:
            return bool(await markers.lrange(marker, 0, -1))

        await eventually(victim_started)
        # Mid-handling, and alive long enough to have heartbeated its message several times.
        await asyncio.sleep(IDLE_S * 2)
        os.kill(victim.pid, signal.SIGKILL)
        await asyncio.wait_for(victim.wait(), timeout=10)

        rescuer = Mailbox(bus, workspace, "analyst", consumer="rescuer", config=config)
        handled: list[str] = []

        async def handle(message: AgentMessage) -> None:
            handled.append(message.message_id)

        serving = asyncio.create_task(rescuer.serve(handle))

        async def rescued() -> bool:
            return bool(handled)

        await eventually(rescued)
        await asyncio.sleep(IDLE_S * 3)  # time enough for any wrongful second delivery
        rescuer.stop()
        await asyncio.wait_for(serving, timeout=10)

        assert await markers.lrange(marker, 0, -1) == [sent.message_id]
        assert handled == [sent.message_id]
        assert rescuer.stats.reclaimed == 1
        assert rescuer.stats.handled == 1
        assert await bus.pending_count(inbox_key(workspace, "analyst", sent.priority), "inbox") == 0
    finally:
        if victim.returncode is None:
            victim.kill()
            await asyncio.wait_for(victim.wait(), timeout=10)
        await bus.close()
        await markers.aclose()
