"""`ContainerAgent` (`bus.agents`): registration, handlers, sending and asking, and riding out a lost Redis.

Most tests run on Redis and in memory; the restart tests run a private redis-server of their own, which
they kill (SIGKILL) and start again mid-stream.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bus import (
    AgentMessage,
    Bus,
    ContainerAgent,
    DeliveryConfig,
    Mailbox,
    RedisBus,
    Reply,
    fetch_dead_letters,
)
from bus.addressing import inbox_key, members_key
from bus.agents.requests import response_to
from engine.errors import BadRequest, BusUnavailable, RequestFailed, UnknownRecipient
from tests.helpers import eventually
from tests.servers import RedisProcess, free_port

#: The backends the SDK tests run on (NATS has its own suite; the SDK only uses the `Bus` interface).
both = pytest.mark.parametrize("bus", ["memory", "redis"], indirect=True)

FAST = DeliveryConfig(idle_timeout_s=0.3, block_ms=50, members_cache_s=0, max_deliveries=2)
#: Heartbeats every 0.1 s.
OFFLINE_AFTER_S = 0.3


@pytest.fixture
async def agents(bus: Bus, workspace: str) -> AsyncIterator[Callable[..., ContainerAgent]]:
    """Makes agents on the test's bus and workspace; stops the ones still running at the end."""
    made: list[ContainerAgent] = []

    def make(agent_id: str, **options: Any) -> ContainerAgent:
        options.setdefault("config", FAST)
        options.setdefault("offline_after_s", OFFLINE_AFTER_S)
        agent = ContainerAgent(bus, agent_id, workspace=workspace, **options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.stop()


# --- registration ---------------------------------------------------------------------------------


@both
async def test_start_registers_the_agent_card_and_membership(
    bus: Bus, workspace: str, agents: Callable[..., ContainerAgent]
) -> None:
    agent = agents("echo", name="Echo", capabilities=["echo", "repeat"], sandbox="sb-1", meta={"v": "1"})
    await agent.start()
    card = await agent.registry.get("echo")
    assert card is not None
    assert (card.name, card.type, card.capabilities, card.sandbox) == (
        "Echo",
        "agent",
        ["echo", "repeat"],
        "sb-1",
    )
    assert card.status == "online"
    assert card.meta == {"v": "1"}
    assert (await bus.map_get(members_key(workspace)))["echo"] == "sb-1"
    assert [c.agent for c in await agent.registry.discover(capability="repeat")] == ["echo"]


@pytest.mark.parametrize("bus", ["redis"], indirect=True)
async def test_the_heartbeat_keeps_a_running_agent_online(agents: Callable[..., ContainerAgent]) -> None:
    agent = agents("echo", offline_after_s=0.6)  # a beat every 0.2 s: three chances per window
    await agent.start()
    await asyncio.sleep(1.5)  # more than two offline windows without registering again
    assert agent.reconnects == 0
    assert await agent.registry.sweep() == []
    card = await agent.registry.get("echo")
    assert card is not None
    assert card.status == "online"


@both
async def test_stop_keeps_the_registration_and_stop_leave_leaves(
    bus: Bus, workspace: str, agents: Callable[..., ContainerAgent]
) -> None:
    sender, echo = agents("sender"), agents("echo")
    await echo.start()
    await echo.stop()
    await sender.send_message("echo", {"while": "stopped"})  # waits in its inbox
    await echo.start()
    await echo.stop(leave=True)
    assert "echo" not in await bus.map_get(members_key(workspace))
    with pytest.raises(UnknownRecipient):
        await sender.send_message("echo", {"after": "leaving"})


# --- receiving ------------------------------------------------------------------------------------


@both
async def test_a_message_sent_while_the_agent_was_down_is_handled_after_it_starts(
    agents: Callable[..., ContainerAgent],
) -> None:
    sender, echo = agents("sender"), agents("echo")
    got: list[dict[str, Any]] = []

    @echo.on_message
    async def record(message: AgentMessage) -> None:
        got.append(message.content)

    await echo.start()
    await echo.stop()
    await sender.send_message("echo", {"n": 1})
    await echo.start()

    async def handled() -> bool:
        return got == [{"n": 1}]

    await eventually(handled)


@both
async def test_on_message_filters_by_type_and_topic_and_a_topic_filter_subscribes(
    agents: Callable[..., ContainerAgent],
) -> None:
    sender, listener = agents("sender"), agents("listener")
    seen: dict[str, list[str]] = {"all": [], "commands": [], "news": []}

    @listener.on_message
    async def every(message: AgentMessage) -> None:
        seen["all"].append(message.content["tag"])

    @listener.on_message(message_type="notification", topic="news")
    async def news(message: AgentMessage) -> None:
        seen["news"].append(message.content["tag"])

    @listener.on_message(message_type="command")
    async def commands(message: AgentMessage) -> None:
        seen["commands"].append(message.content["tag"])

    await listener.start()
    assert await sender.broadcast({"tag": "b1"}, topic="news") == ["listener"]
    assert await sender.broadcast({"tag": "b2"}) == ["listener"]
    await sender.send_message("listener", {"tag": "d1"})

    async def all_seen() -> bool:
        return sorted(seen["all"]) == ["b1", "b2", "d1"]

    await eventually(all_seen)
    assert seen["news"] == ["b1"]
    assert seen["commands"] == []


@both
async def test_a_broadcast_reaches_every_other_member_and_a_topic_only_its_followers(
    agents: Callable[..., ContainerAgent],
) -> None:
    sender, a, b = agents("sender"), agents("a"), agents("b")
    await sender.start()
    await a.start()
    await b.start()
    await b.subscribe("votes")
    assert await sender.broadcast({"x": 1}) == ["a", "b"]
    assert await sender.broadcast({"x": 2}, topic="votes") == ["b"]


@both
def test_on_message_refuses_an_unknown_message_type(bus: Bus) -> None:
    agent = ContainerAgent(bus, "echo")
    with pytest.raises(BadRequest, match="unknown message type 'note'; choose one of request, response"):
        agent.on_message(message_type="note")  # type: ignore[call-overload]


@both
def test_an_agent_takes_one_task_handler(bus: Bus) -> None:
    agent = ContainerAgent(bus, "echo")

    @agent.on_task_assigned
    async def first(task: dict[str, Any], message: AgentMessage) -> None:
        return None

    with pytest.raises(BadRequest, match="has a task handler already"):
        agent.on_task_assigned(first)


@both
async def test_a_failing_notification_handler_is_retried_then_dead_lettered(
    bus: Bus, workspace: str, agents: Callable[..., ContainerAgent]
) -> None:
    sender, flaky = agents("sender"), agents("flaky")
    calls: list[str] = []

    @flaky.on_message
    async def fail(message: AgentMessage) -> None:
        calls.append(message.message_id)
        raise RuntimeError("cannot")

    await flaky.start()
    sent = await sender.send_message("flaky", {"n": 1})

    async def dead() -> bool:
        return bool(await fetch_dead_letters(bus, workspace))

    await eventually(dead)
    [(_, letter)] = await fetch_dead_letters(bus, workspace)
    assert letter.reason == "handler_failed"
    assert letter.message_id == sent.message_id
    assert calls == [sent.message_id] * FAST.max_deliveries


@both
async def test_run_burst_handles_what_waits_and_returns_the_count(
    agents: Callable[..., ContainerAgent],
) -> None:
    sender, echo = agents("sender"), agents("echo")
    got: list[int] = []

    @echo.on_message
    async def record(message: AgentMessage) -> None:
        got.append(message.content["n"])

    await echo.start()
    await echo.stop()
    for n in range(5):
        await sender.send_message("echo", {"n": n})
    assert await echo.run_burst(idle_ms=200) == 5
    assert sorted(got) == [0, 1, 2, 3, 4]


# --- asking ---------------------------------------------------------------------------------------


@both
async def test_collaborate_with_returns_what_the_targets_task_handler_returned(
    agents: Callable[..., ContainerAgent],
) -> None:
    boss, worker = agents("boss"), agents("worker")

    @worker.on_task_assigned
    async def work(task: dict[str, Any], message: AgentMessage) -> dict[str, Any]:
        return {"sum": sum(task["numbers"]), "asked_by": message.from_agent}

    await worker.start()
    assert await boss.collaborate_with("worker", {"numbers": [1, 2, 3]}, timeout=10) == {
        "sum": 6,
        "asked_by": "boss",
    }
    assert boss.request_stats.answered == 1


@both
async def test_a_task_for_an_agent_without_a_task_handler_fails_at_once(
    agents: Callable[..., ContainerAgent],
) -> None:
    boss, idle = agents("boss"), agents("idle")
    await idle.start()
    with pytest.raises(RequestFailed, match="takes no tasks"):
        await boss.collaborate_with("idle", {"x": 1}, timeout=10)


@both
async def test_a_task_handler_that_raises_is_answered_as_failed_and_not_retried(
    agents: Callable[..., ContainerAgent],
) -> None:
    boss, worker = agents("boss"), agents("worker")

    @worker.on_task_assigned
    async def work(task: dict[str, Any], message: AgentMessage) -> dict[str, Any]:
        raise ValueError("numbers missing")

    await worker.start()
    with pytest.raises(RequestFailed, match="ValueError: numbers missing"):
        await boss.collaborate_with("worker", {}, timeout=10)

    async def settled() -> bool:
        return worker.stats.handled == 1

    await eventually(settled)
    assert worker.stats.failed == 0


@both
async def test_a_request_is_answered_by_the_first_value_an_on_message_handler_returns(
    agents: Callable[..., ContainerAgent],
) -> None:
    asker, answerer = agents("asker"), agents("answerer")

    @answerer.on_message(message_type="notification")
    async def not_this(message: AgentMessage) -> dict[str, Any]:
        return {"wrong": True}

    @answerer.on_message(message_type="request")
    async def this(message: AgentMessage) -> dict[str, Any] | Reply:
        if message.content.get("fail"):
            return Reply({"error": "told to fail"}, status="failed")
        return {"answer": 42}

    await answerer.start()
    response = await asker.request("answerer", {"q": "?"}, timeout=10)
    assert response.content == {"answer": 42}
    with pytest.raises(RequestFailed, match="told to fail"):
        await asker.request("answerer", {"fail": True}, timeout=10)


@both
async def test_a_response_that_comes_to_the_inbox_reaches_its_waiter(
    bus: Bus, workspace: str, agents: Callable[..., ContainerAgent]
) -> None:
    """A responder without reply streams answers in the asker's inbox; the waiter still gets it."""
    asker = agents("asker")
    await asker.start()
    plain = Mailbox(bus, workspace, "plain", config=FAST)
    await plain.register()
    waiting = asyncio.create_task(asker.request("plain", {"q": 1}, timeout=10))
    [envelope] = await plain.receive(block_ms=5000)
    await plain.send(response_to(envelope.message, from_agent="plain", content={"a": 1}))
    assert (await waiting).content == {"a": 1}


# --- a lost bus -----------------------------------------------------------------------------------


async def test_start_gives_up_on_a_bus_that_never_answers() -> None:
    agent = ContainerAgent(f"redis://127.0.0.1:{free_port()}/0", "echo")
    with pytest.raises(BusUnavailable, match=r"could not register within 0\.5s"):
        await agent.start(connect_timeout_s=0.5)
    await agent.stop()


@pytest.mark.server  # starts its own redis-server
async def test_redis_restarted_mid_stream_loses_nothing_and_the_agent_reconnects_by_itself(
    tmp_path: Path,
) -> None:
    """A private redis-server with AOF is killed and started again while a producer sends and an agent
    consumes: every message whose XADD was acknowledged is handled, each exactly once."""
    server = RedisProcess(tmp_path / "redis", aof=True).start()
    total = 300
    config = DeliveryConfig(idle_timeout_s=1.0, block_ms=100)
    agent = ContainerAgent(server.url, "consumer", workspace="restart", config=config, offline_after_s=0.3)
    handled: Counter[str] = Counter()

    @agent.on_message
    async def record(message: AgentMessage) -> None:
        handled[message.message_id] += 1

    producer_bus = RedisBus(server.url)
    producer = Mailbox(producer_bus, "restart", "producer", config=DeliveryConfig(members_cache_s=0))
    sent: list[str] = []
    refused: list[str] = []

    async def produce() -> None:
        for n in range(total):
            message = AgentMessage(
                from_agent="producer",
                to_agent="consumer",
                message_type="notification",
                content={"n": n},
                workspace_id="restart",
            )
            while True:  # only a send that returned counts as sent; a retry has the same message id
                try:
                    await producer.send(message)
                    break
                except BusUnavailable:
                    refused.append(message.message_id)
                    await asyncio.sleep(0.05)
            sent.append(message.message_id)
            await asyncio.sleep(0.003)

    try:
        await agent.start()
        producing = asyncio.create_task(produce())

        async def a_third_sent() -> bool:
            return len(sent) >= total // 3

        await eventually(a_third_sent)
        await asyncio.to_thread(server.stop)  # SIGKILL, mid-stream
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(producing, timeout=60)

        async def all_handled() -> bool:
            return set(handled) >= set(sent)

        await eventually(all_handled, within_s=60)

        async def all_settled() -> bool:
            return await producer_bus.pending_count(inbox_key("restart", "consumer", 5), "inbox") == 0

        await eventually(all_settled)
        assert len(sent) == total
        assert refused  # the server was away while the producer sent
        assert set(handled) == set(sent)
        assert set(handled.values()) == {1}
        assert agent.reconnects >= 1
        card = await agent.registry.get("consumer")
        assert card is not None
        assert card.status == "online"
    finally:
        await agent.stop()
        await producer_bus.close()
        server.stop()


@pytest.mark.server  # starts its own redis-server
async def test_after_a_restart_that_lost_everything_the_agent_registers_again_and_serves(
    tmp_path: Path,
) -> None:
    server = RedisProcess(tmp_path / "redis").start()  # no persistence: the restart forgets all
    agent = ContainerAgent(server.url, "echo", workspace="amnesia", config=FAST, offline_after_s=0.3)

    @agent.on_task_assigned
    async def echo(task: dict[str, Any], message: AgentMessage) -> dict[str, Any]:
        return task

    asker = ContainerAgent(server.url, "asker", workspace="amnesia", config=FAST)
    try:
        await agent.start()
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)

        async def registered_again() -> bool:
            try:
                return await asker.registry.get("echo") is not None
            except BusUnavailable:
                return False

        await eventually(registered_again)
        assert await asker.collaborate_with("echo", {"back": True}, timeout=10) == {"back": True}
        assert agent.reconnects >= 1
    finally:
        await agent.stop()
        await asker.stop()
        server.stop()
