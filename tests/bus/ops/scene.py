"""A small workspace on the in-memory bus for the operator tools' tests: one message whose handler
failed (dead-lettered), one handled, one waiting."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from bus import AgentMessage, DeliveryConfig, InMemoryBus, Mailbox
from bus.addressing import inbox_key


@dataclass
class Scene:
    bus: InMemoryBus
    workspace: str
    failed: AgentMessage
    handled: AgentMessage
    waiting: AgentMessage
    #: The lane all three went to.
    lane: str


def note(workspace: str, n: int, **options: Any) -> AgentMessage:
    return AgentMessage(
        from_agent="engine",
        to_agent="analyst",
        message_type="notification",
        workspace_id=workspace,
        content={"n": n},
        **options,
    )


async def build_scene() -> Scene:
    bus = InMemoryBus()
    workspace = f"ops-{uuid.uuid4().hex[:8]}"
    config = DeliveryConfig(max_deliveries=1, block_ms=10)
    analyst = Mailbox(bus, workspace, "analyst", config=config)
    engine = Mailbox(bus, workspace, "engine", config=config)
    await analyst.register()
    failed, handled = note(workspace, 0, metadata={"fail": "yes"}), note(workspace, 1)
    await engine.send_many([failed, handled])

    async def handle(message: AgentMessage) -> None:
        if message.metadata.get("fail"):
            raise RuntimeError("the handler broke")

    await analyst.serve(handle, idle_stop_ms=50)
    waiting = note(workspace, 2)
    await engine.send(waiting)
    return Scene(bus, workspace, failed, handled, waiting, inbox_key(workspace, "analyst", 5))
