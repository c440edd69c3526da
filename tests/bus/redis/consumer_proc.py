"""A consumer process for the kill -9 test: serves one agent's mailbox, and hangs in its handler.

    python -m tests.bus.redis.consumer_proc <redis url> <workspace> <agent> <consumer> <marker list> <idle s>

Each message it takes is recorded (RPUSH of its id to the marker list) before the handler hangs, so
the test knows the process is mid-handling when it kills it.
"""

from __future__ import annotations

import asyncio
import sys

from redis.asyncio import Redis

from bus import AgentMessage, DeliveryConfig, Mailbox, RedisBus


async def main(url: str, workspace: str, agent: str, consumer: str, marker: str, idle_s: float) -> None:
    bus = RedisBus(url)
    markers = Redis.from_url(url, decode_responses=True)
    box = Mailbox(bus, workspace, agent, consumer=consumer, config=DeliveryConfig(idle_timeout_s=idle_s))

    async def hang(message: AgentMessage) -> None:
        await markers.rpush(marker, message.message_id)
        await asyncio.Event().wait()

    await box.serve(hang)


if __name__ == "__main__":
    url, workspace, agent, consumer, marker, idle = sys.argv[1:]
    asyncio.run(main(url, workspace, agent, consumer, marker, float(idle)))
