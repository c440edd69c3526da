"""The agent registry, on every backend (see the `bus` fixture): registration, heartbeats, sweeps,
discovery, leaving, and the events stream.

`offline_after_s` is a fraction of a second so the suite stays fast; tests wait for silence with a
bounded `eventually`, and assert what the registry says, never how long it took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from bus import AgentMessage, Bus, DeliveryConfig, Mailbox, PersonaWorker
from bus.addressing import members_key
from bus.agents.registry import AgentCard, Registry, presence_key
from bus.events import BusEvent, events_key, fetch_events
from engine.errors import BadRequest, UnknownRecipient
from llms.provider import resolve_model
from personas import load_personas
from tests.fakes.fake_llm import FakeLLM
from tests.helpers import eventually, need

OFFLINE_S = 0.3


@pytest.fixture
def registries(bus: Bus, workspace: str) -> Callable[..., Registry]:
    def make(instance: str, **options: Any) -> Registry:
        options.setdefault("offline_after_s", OFFLINE_S)
        return Registry(bus, workspace, instance=instance, **options)

    return make


def card(agent: str, *capabilities: str, **fields: Any) -> AgentCard:
    return AgentCard(agent=agent, name=agent.title(), capabilities=list(capabilities), **fields)


async def events(bus: Bus, workspace: str) -> list[BusEvent]:
    return [event for _, event in await fetch_events(bus, workspace, count=1000)]


async def silent_for(registry: Registry, agent: str) -> None:
    """Wait until the registry reads the agent as offline (its heartbeats have stopped)."""

    async def offline() -> bool:
        found = await registry.get(agent)
        return found is not None and found.status == "offline"

    await eventually(offline)


async def test_a_registered_agent_is_an_online_member_with_its_card_and_a_joined_event(
    bus: Bus, workspace: str, registries: Callable[..., Registry]
) -> None:
    registry = registries("w1")
    await registry.register(
        card("analyst", "persona:analyst", "deliberate", type="persona", meta={"emoji": "A"})
    )

    found = await registry.get("analyst")
    assert found is not None
    assert (found.agent, found.name, found.type, found.sandbox) == ("analyst", "Analyst", "persona", "host")
    assert found.capabilities == ["persona:analyst", "deliberate"]
    assert (found.workspace, found.status, found.instances, found.meta) == (
        workspace,
        "online",
        ["w1"],
        {"emoji": "A"},
    )
    assert found.last_seen is not None
    assert await bus.map_get(members_key(workspace)) == {"analyst": "host"}
    [joined] = await events(bus, workspace)
    assert (joined.kind, joined.agent, joined.status, joined.instance) == (
        "joined",
        "analyst",
        "online",
        "w1",
    )
    assert "persona:analyst" in joined.detail
    assert await registry.get("nobody") is None


async def test_discover_finds_online_agents_by_capability_and_type(
    registries: Callable[..., Registry],
) -> None:
    registry = registries("w1")
    await registry.register(card("skeptic", "persona:skeptic", "deliberate", type="persona"))
    await registry.register(card("analyst", "persona:analyst", "deliberate", type="persona"))
    await registry.register(card("indexer", "search"))

    assert [c.agent for c in await registry.discover()] == ["analyst", "indexer", "skeptic"]
    assert [c.agent for c in await registry.discover(capability="deliberate")] == ["analyst", "skeptic"]
    assert [c.agent for c in await registry.discover(capability="persona:skeptic")] == ["skeptic"]
    assert [c.agent for c in await registry.discover(type="agent")] == ["indexer"]
    assert await registry.discover(capability="fly") == []


async def test_discovery_is_per_workspace(bus: Bus, workspace: str) -> None:
    here = Registry(bus, workspace, instance="w1")
    elsewhere = Registry(bus, workspace + "-b", instance="w1")
    try:
        await here.register(card("analyst", "deliberate"))
        await elsewhere.register(card("skeptic", "deliberate"))
        assert [c.agent for c in await here.discover(capability="deliberate")] == ["analyst"]
        assert [c.agent for c in await elsewhere.discover(capability="deliberate")] == ["skeptic"]
    finally:
        await elsewhere.leave("skeptic")


async def test_an_agent_without_heartbeats_goes_offline_and_a_sweep_reports_it_once(
    bus: Bus, workspace: str, registries: Callable[..., Registry]
) -> None:
    registry = registries("w1")
    await registry.register(card("analyst", "deliberate"))
    await registry.register(card("skeptic", "deliberate"))

    async def only_analyst_beats() -> bool:
        await registry.heartbeat("analyst")
        found = await registry.get("skeptic")
        return found is not None and found.status == "offline"

    await eventually(only_analyst_beats)
    assert [c.agent for c in await registry.discover()] == ["analyst"]
    assert [c.agent for c in await registry.discover(online_only=False)] == ["analyst", "skeptic"]
    assert await registry.sweep() == ["skeptic"]
    assert await registry.sweep() == []  # reported once
    status = [e for e in await events(bus, workspace) if e.kind == "status"]
    assert [(e.agent, e.status, e.instance) for e in status] == [("skeptic", "offline", "w1")]
    assert "0 message(s) wait" in status[0].detail

    offline = await registry.get("skeptic")
    assert offline is not None
    assert offline.instances == []
    assert offline.last_seen is not None
    assert await bus.map_get(members_key(workspace)) == {"analyst": "host", "skeptic": "host"}, (
        "an offline agent stays a member, so messages sent to it wait for it"
    )


async def test_an_agent_heard_from_again_is_online_with_a_status_event(
    bus: Bus, workspace: str, registries: Callable[..., Registry]
) -> None:
    registry = registries("w1")
    await registry.register(card("analyst", "deliberate"))
    await silent_for(registry, "analyst")
    assert await registry.sweep() == ["analyst"]

    await registry.heartbeat("analyst")
    found = await registry.get("analyst")
    assert found is not None
    assert found.status == "online"
    assert found.instances == ["w1"]
    assert await registry.sweep() == []
    status = [(e.status, e.detail) for e in await events(bus, workspace) if e.kind == "status"]
    assert [s for s, _ in status] == ["offline", "online"]
    assert status[1][1] == "heard from again"


async def test_the_offline_event_counts_the_messages_left_pending(
    bus: Bus, workspace: str, registries: Callable[..., Registry]
) -> None:
    registry = registries("w1")
    await registry.register(card("analyst", "deliberate"))
    box = Mailbox(bus, workspace, "analyst", consumer="w1", config=DeliveryConfig(block_ms=50))
    await box.register()
    sender = Mailbox(bus, workspace, "engine")
    for n in range(3):
        await sender.send(
            AgentMessage(
                from_agent="engine",
                to_agent="analyst",
                message_type="request",
                workspace_id=workspace,
                content={"n": n},
            )
        )
    taken = await box.receive()
    assert len(taken) == 3  # taken, never settled: the consumer "died"
    await silent_for(registry, "analyst")
    assert await registry.sweep() == ["analyst"]
    [offline] = [e for e in await events(bus, workspace) if e.kind == "status"]
    assert "3 message(s) wait for its next consumer" in offline.detail


async def test_a_silent_instance_leaves_its_messages_to_another_instance_of_the_agent(
    bus: Bus, workspace: str, registries: Callable[..., Registry]
) -> None:
    """Two workers serve one agent; one stops heartbeating mid-message. The agent stays online, the sweep
    names the silent instance and forgets it, and the other worker handles its message, once."""
    need(bus, "reclaim")
    config = DeliveryConfig(idle_timeout_s=0.3, block_ms=50)
    dead, alive = registries("dead"), registries("alive")
    await dead.register(card("analyst", "deliberate"))
    await alive.register(card("analyst", "deliberate"))
    victim = Mailbox(bus, workspace, "analyst", consumer="dead", config=config)
    await victim.register()
    sender = Mailbox(bus, workspace, "engine")
    await sender.send(
        AgentMessage(from_agent="engine", to_agent="analyst", message_type="request", workspace_id=workspace)
    )
    [taken] = await victim.receive()  # and then the process dies: no settle, no heartbeat

    handled: list[str] = []

    async def handle(message: AgentMessage) -> None:
        handled.append(message.message_id)

    rescuer = Mailbox(bus, workspace, "analyst", consumer="alive", config=config)
    serving = asyncio.create_task(rescuer.serve(handle))
    try:

        async def alive_beats_dead_does_not() -> bool:
            await alive.heartbeat("analyst")
            found = await alive.get("analyst")
            return found is not None and found.instances == ["alive"]

        await eventually(alive_beats_dead_does_not)
        assert await alive.sweep() == [], "another instance still serves it: it stays online"
        [silent] = [e for e in await events(bus, workspace) if e.kind == "status"]
        assert (silent.agent, silent.status, silent.instance) == ("analyst", "online", "dead")
        assert set(await bus.map_get(presence_key(workspace))) == {"analyst/alive"}, (
            "the silent one is forgotten"
        )

        async def rescued() -> bool:
            return bool(handled)

        await eventually(rescued)
        assert handled == [taken.message.message_id]
    finally:
        rescuer.stop()
        await asyncio.wait_for(serving, timeout=10)


async def test_one_of_two_instances_leaving_keeps_the_agent_and_the_last_one_removes_it(
    bus: Bus, workspace: str, registries: Callable[..., Registry]
) -> None:
    first, second = registries("w1"), registries("w2")
    await first.register(card("analyst", "deliberate"))
    await second.register(card("analyst", "deliberate"))

    await first.leave("analyst")
    still = await second.get("analyst")
    assert still is not None
    assert still.status == "online"
    assert still.instances == ["w2"]
    assert await bus.map_get(members_key(workspace)) == {"analyst": "host"}

    await second.leave("analyst")
    assert await second.get("analyst") is None
    assert await bus.map_get(members_key(workspace)) == {}
    left = [(e.status, e.instance) for e in await events(bus, workspace) if e.kind == "left"]
    assert left == [("online", "w1"), ("offline", "w2")]
    sender = Mailbox(bus, workspace, "engine", config=DeliveryConfig(members_cache_s=0))
    with pytest.raises(UnknownRecipient, match="no agent 'analyst' is registered"):
        await sender.send(
            AgentMessage(
                from_agent="engine", to_agent="analyst", message_type="request", workspace_id=workspace
            )
        )


async def test_the_last_live_instance_leaving_removes_the_agent_even_with_silent_ones_left(
    bus: Bus, workspace: str, registries: Callable[..., Registry]
) -> None:
    killed, stopping = registries("killed"), registries("stopping")
    await killed.register(card("analyst"))
    await stopping.register(card("analyst"))

    async def killed_is_silent() -> bool:
        await stopping.heartbeat("analyst")
        found = await stopping.get("analyst")
        return found is not None and found.instances == ["stopping"]

    await eventually(killed_is_silent)
    await stopping.leave("analyst")
    assert await stopping.get("analyst") is None
    assert await bus.map_get(presence_key(workspace)) == {}


async def test_wait_for_returns_the_agents_still_missing_and_ends_once_they_come(
    registries: Callable[..., Registry],
) -> None:
    registry, worker = registries("engine", offline_after_s=60), registries("w1", offline_after_s=60)
    await worker.register(card("analyst"))
    assert await registry.wait_for(["analyst", "skeptic", "ethicist"], timeout_s=0.2) == [
        "skeptic",
        "ethicist",
    ]

    async def late_join() -> None:
        await asyncio.sleep(0.2)
        await worker.register(card("skeptic"))

    joining = asyncio.create_task(late_join())
    assert await registry.wait_for(["analyst", "skeptic"], timeout_s=20) == []
    await joining


async def test_a_dead_letter_is_published_on_the_events_stream(bus: Bus, workspace: str) -> None:
    box = Mailbox(bus, workspace, "analyst", config=DeliveryConfig(max_deliveries=1, block_ms=50))
    await box.register()
    sender = Mailbox(bus, workspace, "engine")
    [reached] = await sender.send_many(
        [
            AgentMessage(
                from_agent="engine", to_agent="analyst", message_type="request", workspace_id=workspace
            )
        ]
    )
    assert reached == ["analyst"]

    async def fail(message: AgentMessage) -> None:
        raise RuntimeError("no")

    await box.serve(fail, idle_stop_ms=100)
    [event] = [e for e in await events(bus, workspace) if e.kind == "dead_letter"]
    assert (event.agent, event.status) == ("analyst", "handler_failed")
    assert event.message_id
    assert "RuntimeError: no" in event.detail
    assert await bus.length(events_key(workspace)) == 1


async def test_bad_registrations_are_refused_in_one_line(bus: Bus, workspace: str) -> None:
    registry = Registry(bus, workspace, instance="w1")
    with pytest.raises(BadRequest, match="is for workspace 'other'"):
        await registry.register(card("analyst", workspace="other"))
    with pytest.raises(BadRequest, match="instance name 'a/b'"):
        Registry(bus, workspace, instance="a/b")
    with pytest.raises(BadRequest, match="offline_after_s must be more than 0"):
        Registry(bus, workspace, offline_after_s=0)
    with pytest.raises(ValueError, match="agent id 'any'"):
        card("any")
    with pytest.raises(ValueError, match="capability ' x'"):
        card("analyst", " x")


async def test_a_persona_worker_registers_its_personas_heartbeats_and_leaves_on_stop(
    bus: Bus, workspace: str, fake_llm: FakeLLM
) -> None:
    personas = load_personas()
    llm = resolve_model("openai/fake", fake_llm.base_url, "sk-fake")
    worker = PersonaWorker(
        bus, [personas["analyst"], personas["skeptic"]], llm, workspace=workspace, offline_after_s=OFFLINE_S
    )
    registry = Registry(bus, workspace)
    async with worker:
        found = await registry.discover(capability="deliberate")
        assert [(c.agent, c.type, c.instances) for c in found] == [
            ("analyst", "persona", [worker.name]),
            ("skeptic", "persona", [worker.name]),
        ]
        assert found[0].capabilities == ["persona:analyst", "deliberate"]
        await asyncio.sleep(OFFLINE_S * 3)  # longer than the registry waits for a heartbeat
        assert [c.agent for c in await registry.discover(capability="deliberate")] == ["analyst", "skeptic"]
    assert await registry.discover(online_only=False) == []
    assert await bus.map_get(members_key(workspace)) == {}
    assert fake_llm.request_count == 0
