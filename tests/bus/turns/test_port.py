"""`BusAgentPort` (`bus.turns.port`): the engine's turns as requests on the bus, and the `AgentPort` contract.

Most tests run on every backend; the outage tests run a private redis-server of their own, which they
kill (SIGKILL) while a turn waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus import BusAgentPort, DeliveryConfig, Envelope, Mailbox, RedisBus
from bus.agents.requests import answer, request_totals
from bus.backend import Bus
from engine.errors import AgentUnavailable, BusUnavailable
from engine.ports import AgentPort
from engine.turns import DiscussionTurn, TurnReply, TurnRequest
from tests.helpers import eventually
from tests.servers import RedisProcess

FAST = DeliveryConfig(idle_timeout_s=0.5, block_ms=50, members_cache_s=0)


@pytest.fixture
async def analyst(bus: Bus, workspace: str) -> Mailbox:
    box = Mailbox(bus, workspace, "analyst", config=FAST)
    await box.register()
    return box


def turn(agent: str = "analyst", *, timeout_s: float = 20.0) -> TurnRequest:
    return TurnRequest(
        session_id="s1", step="round-1", agent=agent, phase="discussion", topic="Tea?", timeout_s=timeout_s
    )


def reply_for(request: TurnRequest, message: str = "Yes.") -> TurnReply:
    return TurnReply(
        session_id=request.session_id,
        step=request.step,
        agent=request.agent,
        phase=request.phase,
        discussion=DiscussionTurn(message=message, position="yes"),
    )


async def take_one(box: Mailbox) -> Envelope:
    """The next message in `box`, waiting for it."""
    for _ in range(100):
        envelopes = await box.receive(block_ms=200)
        if envelopes:
            [envelope] = envelopes
            return envelope
    pytest.fail("no request reached the agent")


async def test_a_turn_goes_out_as_a_request_with_its_ttl_session_and_reply_stream(
    bus: Bus, analyst: Mailbox, workspace: str
) -> None:
    before = request_totals()
    async with BusAgentPort(bus, "s1", workspace=workspace, config=FAST) as port:
        assert isinstance(port, AgentPort)
        request = turn(timeout_s=20)
        asking = asyncio.create_task(port.ask(request))
        message = (await take_one(analyst)).message
        await answer(analyst, message, reply_for(request).model_dump(mode="json"))
        reply = await asking
    assert reply == reply_for(request)
    assert message.from_agent == "engine"
    assert message.requires_response
    assert message.ttl == 25  # the turn's timeout and a margin
    assert message.metadata["session_id"] == "s1"
    assert message.metadata["step"] == "round-1"
    assert message.metadata["reply_to"] == port.reply_to
    assert port.reply_to.startswith(f"rt:{{{workspace}}}:reply:engine:")  # a requester's own stream
    assert port.stats.sent == 1
    assert port.stats.answered == 1
    assert request_totals().answered - before.answered == 1  # turns count in the process's metrics


async def test_a_reply_that_comes_after_the_engine_gave_up_reaches_on_late_and_is_counted(
    bus: Bus, analyst: Mailbox, workspace: str
) -> None:
    """The engine applies the turn timeout by cancelling `ask`; the reply's usage must not be lost."""
    late: list[TurnReply] = []

    async def on_late(reply: TurnReply) -> None:
        late.append(reply)

    before = request_totals()
    async with BusAgentPort(bus, "s1", workspace=workspace, on_late=on_late, config=FAST) as port:
        request = turn()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(port.ask(request), 0.3)
        message = (await take_one(analyst)).message
        await answer(analyst, message, reply_for(request, "Late, but paid for.").model_dump(mode="json"))

        async def reported() -> bool:
            return bool(late)

        await eventually(reported)
    assert late == [reply_for(request, "Late, but paid for.")]
    assert port.stats.abandoned == 1
    assert port.stats.late == 1
    assert port.stats.unmatched == 0
    totals = request_totals()
    assert (totals.abandoned - before.abandoned, totals.late - before.late) == (1, 1)


async def test_a_failed_turn_is_agent_unavailable_with_the_agents_own_error(
    bus: Bus, analyst: Mailbox, workspace: str
) -> None:
    async with BusAgentPort(bus, "s1", workspace=workspace, config=FAST) as port:
        request = turn()
        asking = asyncio.create_task(port.ask(request))
        message = (await take_one(analyst)).message
        failed = reply_for(request).model_copy(update={"discussion": None, "error": "analyst crashed: boom"})
        await answer(analyst, message, failed.model_dump(mode="json"), status="failed")
        with pytest.raises(AgentUnavailable) as caught:
            await asking
    assert str(caught.value) == "analyst crashed: boom"  # it becomes the turn's fallback reason as is
    assert port.stats.failed == 1


async def test_an_answer_that_is_not_a_turn_reply_is_agent_unavailable(
    bus: Bus, analyst: Mailbox, workspace: str
) -> None:
    async with BusAgentPort(bus, "s1", workspace=workspace, config=FAST) as port:
        asking = asyncio.create_task(port.ask(turn()))
        message = (await take_one(analyst)).message
        await answer(analyst, message, {"hello": "world"})
        with pytest.raises(AgentUnavailable, match="not a turn reply"):
            await asking


async def test_an_agent_nobody_serves_is_agent_unavailable(bus: Bus, workspace: str) -> None:
    async with BusAgentPort(bus, "s1", workspace=workspace, config=FAST) as port:
        with pytest.raises(AgentUnavailable, match="nobody is not serving"):
            await port.ask(turn("nobody"))


async def test_asking_a_port_that_is_not_started_is_bus_unavailable(bus: Bus, workspace: str) -> None:
    port = BusAgentPort(bus, "s1", workspace=workspace, config=FAST)
    with pytest.raises(BusUnavailable, match="not running"):
        await port.ask(turn())


# --- a lost bus -------------------------------------------------------------------------------------


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    """A private redis-server with AOF, so a restart brings back the streams and groups."""
    server = RedisProcess(tmp_path / "redis", aof=True).start()
    yield server
    server.stop()


@pytest.mark.server  # starts its own redis-server
async def test_a_turn_waiting_while_redis_restarts_is_answered_afterwards(
    own_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """The reply reader backs off while Redis is away; the waiting turn neither fails nor is lost."""
    engine_bus, agent_bus = RedisBus(own_redis.url), RedisBus(own_redis.url)
    analyst = Mailbox(agent_bus, "restart", "analyst", config=FAST)
    await analyst.register()
    port = BusAgentPort(engine_bus, "s1", workspace="restart", config=FAST, outage_s=60)
    try:
        await port.start()
        request = turn()
        asking = asyncio.create_task(port.ask(request))
        message = (await take_one(analyst)).message
        with caplog.at_level(logging.WARNING, logger="roundtable.bus"):
            await asyncio.to_thread(own_redis.stop)

            async def reader_saw_it_gone() -> bool:
                return "roundtable.replies_unreadable" in caplog.text

            await eventually(reader_saw_it_gone)
            await asyncio.sleep(2)  # away for a couple of seconds
            assert not asking.done()
            await asyncio.to_thread(own_redis.start)
        await agent_bus.close()  # its connections died with the server: answer on fresh ones
        agent_bus = RedisBus(own_redis.url)
        await answer(
            Mailbox(agent_bus, "restart", "analyst", config=FAST), message, reply_for(request).model_dump()
        )
        reply = await asyncio.wait_for(asking, 30)
    finally:
        await port.close()
        await engine_bus.close()
        await agent_bus.close()
    assert reply == reply_for(request)
    assert port.stats.answered == 1
    assert port.stats.abandoned == 0


@pytest.mark.server  # starts its own redis-server
async def test_a_bus_gone_for_good_fails_a_waiting_turn_with_bus_unavailable(own_redis: RedisProcess) -> None:
    """Not `AgentUnavailable`: the engine must stop (resumable), not record the turn as a fallback."""
    engine_bus, agent_bus = RedisBus(own_redis.url), RedisBus(own_redis.url)
    analyst = Mailbox(agent_bus, "gone", "analyst", config=FAST)
    await analyst.register()
    port = BusAgentPort(engine_bus, "s1", workspace="gone", config=FAST, outage_s=0.5)
    try:
        await port.start()
        asking = asyncio.create_task(port.ask(turn(timeout_s=60)))
        await take_one(analyst)
        await asyncio.to_thread(own_redis.stop)
        with pytest.raises(BusUnavailable, match=r"unreachable for 0\.5s"):
            await asyncio.wait_for(asking, 30)
    finally:
        await port.close()
        await engine_bus.close()
        await agent_bus.close()
    assert port.stats.abandoned == 1
