"""docs/bus-protocol.md is enough to join: an agent of plain Redis commands (`tests/bus/raw_agent.py`,
which imports nothing of ours) and RoundTable's own code understand each other, in both directions.

The raw side uses only the document; the other side is our code (registry, `Requester`,
`ContainerAgent`, `Mailbox`, dead-letter reader), so a drift between the document and the code fails
here.
"""

from __future__ import annotations

import ast
import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bus import (
    AgentMessage,
    Bus,
    ContainerAgent,
    DeliveryConfig,
    Mailbox,
    Registry,
    fetch_dead_letters,
    fetch_events,
)
from bus.addressing import inbox_key
from tests.bus.raw_agent import RawAgent, entry_of, new_message
from tests.helpers import eventually

#: The document describes Redis, so these tests run there.
redis_only = pytest.mark.parametrize("bus", ["redis"], indirect=True)

FAST = DeliveryConfig(idle_timeout_s=0.5, block_ms=50, members_cache_s=0)
RAW_AGENT = Path(__file__).with_name("raw_agent.py")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def raw(redis: Redis, workspace: str) -> RawAgent:
    agent = RawAgent(redis, workspace, "raw", consumer="raw-1")
    await agent.register(name="Raw", capabilities=["shout"])
    return agent


@pytest.fixture
async def sdk_agents(bus: Bus, workspace: str) -> AsyncIterator[Callable[..., ContainerAgent]]:
    made: list[ContainerAgent] = []

    def make(agent_id: str, **options: Any) -> ContainerAgent:
        options.setdefault("config", FAST)
        agent = ContainerAgent(bus, agent_id, workspace=workspace, **options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.stop()


async def shout(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "shouted": str(message["content"].get("text", "")).upper(),
        "kind": message["metadata"].get("kind"),
    }


def test_the_raw_agent_imports_nothing_of_roundtable() -> None:
    tree = ast.parse(RAW_AGENT.read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "json", "time", "uuid", "datetime", "typing", "redis"}


# --- the document matches what our code writes -----------------------------------------------------


@redis_only
async def test_an_entry_we_write_has_exactly_the_documented_fields(bus: Bus, workspace: str) -> None:
    sender = Mailbox(bus, workspace, "sender", config=FAST)
    target = Mailbox(bus, workspace, "target", config=FAST)
    await target.register()
    message = AgentMessage(
        from_agent="sender",
        to_agent="target",
        message_type="notification",
        workspace_id=workspace,
        priority=7,
    )
    await sender.send(message)
    [(_, fields)] = await bus.entries(inbox_key(workspace, "target", 7))
    assert set(fields) == {"v", "id", "type", "msg"}
    assert (fields["v"], fields["id"], fields["type"]) == ("1", message.message_id, "notification")
    assert set(json.loads(fields["msg"])) == {
        *("message_id", "from_sandbox", "to_sandbox", "from_agent", "to_agent", "message_type", "content"),
        *("timestamp", "priority", "requires_response", "correlation_id", "ttl", "metadata"),
        *("workspace_id", "topic", "version"),
    }


# --- registration and heartbeats ------------------------------------------------------------------


@redis_only
async def test_a_raw_agent_is_registered_discovered_and_swept_offline_when_it_stops_beating(
    bus: Bus, workspace: str, raw: RawAgent
) -> None:
    registry = Registry(bus, workspace, offline_after_s=0.3)
    card = await registry.get("raw")
    assert card is not None
    assert (card.name, card.type, card.capabilities, card.meta) == (
        "Raw",
        "agent",
        ["shout"],
        {"language": "raw redis"},
    )
    assert card.status == "online"
    assert card.instances == ["raw-1"]
    assert [c.agent for c in await registry.discover(capability="shout")] == ["raw"]

    await asyncio.sleep(0.4)  # no heartbeat for longer than offline_after_s
    assert await registry.sweep() == ["raw"]
    await raw.heartbeat()
    card = await registry.get("raw")
    assert card is not None
    assert card.status == "online"
    kinds = [(e.kind, e.agent, e.status) for _, e in await fetch_events(bus, workspace)]
    assert kinds[:2] == [("joined", "raw", "online"), ("status", "raw", "offline")]


# --- our side asks, the raw agent answers ---------------------------------------------------------


@redis_only
async def test_our_request_and_task_are_answered_by_a_raw_agent(
    raw: RawAgent, sdk_agents: Callable[..., ContainerAgent]
) -> None:
    asker = sdk_agents("asker")
    asking = asyncio.create_task(asker.request("raw", {"text": "hello"}, timeout=10))
    while not asking.done() and not await raw.serve_once(shout, block_ms=200):
        pass
    response = await asking
    assert response.content == {"shouted": "HELLO", "kind": None}
    assert response.from_agent == "raw"
    assert response.metadata["status"] == "ok"

    tasking = asyncio.create_task(asker.collaborate_with("raw", {"text": "task"}, timeout=10))
    while not tasking.done() and not await raw.serve_once(shout, block_ms=200):
        pass
    assert await tasking == {"shouted": "TASK", "kind": "task"}
    assert len(raw.handled) == 2


# --- the raw agent sends and asks, our side answers -----------------------------------------------


@redis_only
async def test_a_raw_sender_reaches_a_container_agent_highest_lane_first(
    raw: RawAgent, workspace: str, sdk_agents: Callable[..., ContainerAgent]
) -> None:
    agent = sdk_agents("sdk", concurrency=1)
    got: list[tuple[str, str, dict[str, Any]]] = []

    @agent.on_message
    async def record(message: AgentMessage) -> None:
        got.append((message.from_agent, message.message_type, message.content))

    await agent.start()
    await agent.stop()  # registered, not reading: what the raw agent sends waits in its lanes
    await raw.send(new_message("raw", "sdk", "notification", {"n": "low"}, workspace, priority=1))
    await raw.send(new_message("raw", "sdk", "notification", {"n": "high"}, workspace, priority=9))
    assert await agent.run_burst(idle_ms=200) == 2
    assert got == [("raw", "notification", {"n": "high"}), ("raw", "notification", {"n": "low"})]


@redis_only
async def test_a_raw_requester_gets_its_task_done_by_a_container_agent(
    raw: RawAgent, sdk_agents: Callable[..., ContainerAgent]
) -> None:
    agent = sdk_agents("sdk")

    @agent.on_task_assigned
    async def add(task: dict[str, Any], message: AgentMessage) -> dict[str, Any]:
        return {"sum": sum(task["numbers"]), "asked_by": message.from_agent}

    await agent.start()
    response = await raw.request("sdk", {"numbers": [2, 3]}, timeout_s=10, kind="task")
    assert response["content"] == {"sum": 5, "asked_by": "raw"}
    assert response["metadata"]["status"] == "ok"
    assert response["message_type"] == "response"


# --- idempotency across both sides ----------------------------------------------------------------


@redis_only
async def test_a_message_handled_by_one_side_is_skipped_by_the_other_consumer_of_the_same_agent(
    bus: Bus, redis: Redis, workspace: str
) -> None:
    """The claim keys are shared: a resent message id is not handled again, whichever consumer gets it."""
    raw = RawAgent(redis, workspace, "duo", consumer="raw-duo")
    await raw.register(name="Duo", capabilities=[])
    ours = Mailbox(bus, workspace, "duo", consumer="ours", config=FAST)
    sender = Mailbox(bus, workspace, "sender", config=FAST)
    first = AgentMessage(
        from_agent="sender", to_agent="duo", message_type="notification", workspace_id=workspace
    )

    await sender.send(first)
    assert await raw.serve_once(shout) == 1
    assert raw.handled == [first.message_id]
    await sender.send(first)  # resent: the raw agent marked it done, so our consumer skips it
    [] = await ours.receive(block_ms=1000)
    assert ours.stats.duplicates == 1
    assert ours.stats.handled == 0

    second = AgentMessage(
        from_agent="sender", to_agent="duo", message_type="notification", workspace_id=workspace
    )
    await sender.send(second)
    [envelope] = await ours.receive(block_ms=1000)
    await ours.complete([envelope])
    await sender.send(second)  # resent: our consumer marked it done, so the raw agent skips it
    assert await raw.serve_once(shout) == 1
    assert raw.handled == [first.message_id]
    assert await bus.pending_count(inbox_key(workspace, "duo", 5), "inbox") == 0


# --- dead letters ---------------------------------------------------------------------------------


@redis_only
async def test_a_raw_dead_letter_reads_as_ours_and_ours_has_the_documented_fields(
    bus: Bus, redis: Redis, raw: RawAgent, workspace: str, sdk_agents: Callable[..., ContainerAgent]
) -> None:
    bad = entry_of(new_message("x", "raw", "notification", {}, workspace)) | {"v": "9"}
    await redis.xadd(raw.key("inbox", "raw", "p5"), bad)  # type: ignore[arg-type]
    assert await raw.serve_once(shout) == 1
    assert raw.handled == []
    [(_, letter)] = await fetch_dead_letters(bus, workspace)
    assert (letter.reason, letter.agent, letter.group, letter.message_id) == (
        "malformed",
        "raw",
        "inbox",
        bad["id"],
    )
    assert json.loads(letter.original) == bad

    agent = sdk_agents("sdk")
    await agent.start()
    await redis.xadd(raw.key("inbox", "sdk", "p5"), bad)  # type: ignore[arg-type]

    async def letters() -> list[Any]:
        rows: Any = await redis.xrange(raw.key("dlq"))
        return list(rows)

    async def two_letters() -> bool:
        return len(await letters()) == 2

    await eventually(two_letters)
    _, fields = (await letters())[1]
    assert set(fields) == {
        *("reason", "detail", "deliveries", "at", "agent", "group", "stream", "entry_id", "message_id"),
        "original",
    }
    assert (fields["reason"], fields["agent"], fields["stream"]) == (
        "malformed",
        "sdk",
        raw.key("inbox", "sdk", "p5"),
    )
    assert json.loads(fields["original"]) == bad
