"""The delivery guarantees of `Mailbox`, once per backend (see the `bus` fixture).

Times are short (idle timeouts of a fraction of a second) so the suite stays fast; waits on outcomes
are bounded by `eventually`, and no assertion is about how long something took.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bus import (
    AgentMessage,
    Bus,
    CommandPolicy,
    DeadLetter,
    DeliveryConfig,
    Mailbox,
    MalformedMessage,
    Retention,
    fetch_audit,
    fetch_dead_letters,
    fetch_policy,
    store_policy,
)
from bus.addressing import inbox_key, inbox_lanes
from engine.errors import BadRequest, CommandRefused, MessageExpired, UnknownRecipient
from tests.helpers import eventually, need

FAST = DeliveryConfig(idle_timeout_s=0.15, block_ms=50, members_cache_s=0)


@pytest.fixture
def boxes(bus: Bus, workspace: str) -> Callable[..., Mailbox]:
    def make_box(agent: str, **options: Any) -> Mailbox:
        options.setdefault("config", FAST)
        return Mailbox(bus, workspace, agent, **options)

    return make_box


@pytest.fixture
async def engine(boxes: Callable[..., Mailbox]) -> Mailbox:
    return boxes("engine")


@pytest.fixture
async def analyst(boxes: Callable[..., Mailbox]) -> Mailbox:
    box = boxes("analyst")
    await box.register()
    return box


def note(sender: Mailbox, to: str = "analyst", **changes: Any) -> AgentMessage:
    fields: dict[str, Any] = {
        "from_agent": sender.agent,
        "to_agent": to,
        "message_type": "notification",
        "workspace_id": sender.workspace,
        "content": {"text": "hello"},
    }
    return AgentMessage(**(fields | changes))


class Recorder:
    """A handler that records what it handled, and can be told to fail or to hang."""

    def __init__(self, *, fail: Callable[[AgentMessage], bool] = lambda m: False) -> None:
        self.handled: list[AgentMessage] = []
        self.calls: list[str] = []
        self._fail = fail

    async def __call__(self, message: AgentMessage) -> None:
        self.calls.append(message.message_id)
        if self._fail(message):
            raise RuntimeError(f"cannot handle {message.content}")
        self.handled.append(message)


async def serving(box: Mailbox, handler: Recorder, **options: Any) -> asyncio.Task[int]:
    return asyncio.create_task(box.serve(handler, **options))


async def stop(box: Mailbox, task: asyncio.Task[int]) -> int:
    box.stop()
    return await asyncio.wait_for(task, timeout=10)


# --- sending -----------------------------------------------------------------------------------------


async def test_a_message_reaches_its_recipient_once(engine: Mailbox, analyst: Mailbox) -> None:
    sent = note(engine)
    assert await engine.send(sent) == ["analyst"]

    [envelope] = await analyst.receive(block_ms=0)
    assert envelope.message == sent
    assert envelope.deliveries == 1
    assert analyst.in_flight == 1
    await analyst.complete([envelope])

    assert analyst.in_flight == 0
    assert await analyst.receive(block_ms=0) == []
    assert (engine.stats.sent, analyst.stats.received, analyst.stats.handled) == (1, 1, 1)
    assert await engine.bus.pending_count(inbox_key(engine.workspace, "analyst", 5), "inbox") == 0


async def test_an_unknown_recipient_is_refused_at_send(engine: Mailbox, analyst: Mailbox) -> None:
    with pytest.raises(
        UnknownRecipient, match=r"no agent 'skeptic' is registered in workspace .*members: analyst"
    ):
        await engine.send(note(engine, to="skeptic"))
    with pytest.raises(UnknownRecipient, match="agent 'analyst' is in sandbox 'host', not 'sb-9'"):
        await engine.send(note(engine, to_sandbox="sb-9"))
    assert await analyst.receive(block_ms=0) == []


async def test_an_unregistered_agent_is_unknown_and_keeps_its_inbox(
    engine: Mailbox, analyst: Mailbox
) -> None:
    first = note(engine)
    await engine.send(first)
    await analyst.unregister()
    with pytest.raises(UnknownRecipient):
        await engine.send(note(engine))
    await analyst.register()
    assert [e.message for e in await analyst.receive(block_ms=0)] == [first]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"from_agent": "skeptic"}, "from_agent 'skeptic' is not this mailbox's agent 'engine'"),
        ({"workspace_id": "elsewhere"}, "workspace_id 'elsewhere' is not this mailbox's workspace"),
        ({"to_agent": "no spaces"}, "agent id 'no spaces' cannot be used on the bus"),
        ({"to_agent": "any", "topic": "a topic"}, "topic 'a topic' cannot be used on the bus"),
    ],
)
async def test_send_refuses_a_message_it_cannot_route(
    engine: Mailbox, analyst: Mailbox, changes: dict[str, Any], error: str
) -> None:
    with pytest.raises(BadRequest, match=error):
        await engine.send(note(engine, **changes))


async def test_an_expired_message_is_refused_at_send(engine: Mailbox, analyst: Mailbox) -> None:
    stale = note(engine, timestamp=datetime.now(UTC) - timedelta(minutes=1), ttl=5)
    with pytest.raises(MessageExpired, match=f"message {stale.message_id} expired at .* before it was sent"):
        await engine.send(stale)
    assert await analyst.receive(block_ms=0) == []


async def test_send_many_sends_nothing_when_one_is_refused(engine: Mailbox, analyst: Mailbox) -> None:
    with pytest.raises(UnknownRecipient):
        await engine.send_many([note(engine), note(engine, to="nobody")])
    assert await analyst.receive(block_ms=0) == []
    assert await engine.send_many([note(engine), note(engine)]) == [["analyst"], ["analyst"]]
    assert len(await analyst.receive(block_ms=0)) == 2


async def test_a_sender_sees_a_member_that_joined_after_its_last_look(
    boxes: Callable[..., Mailbox], analyst: Mailbox
) -> None:
    """A cached member list is read again on a miss, so a newcomer is not refused."""
    engine = boxes("engine", config=DeliveryConfig(members_cache_s=3600))
    await engine.send(note(engine))
    late = boxes("latecomer")
    await late.register()
    assert await engine.send(note(engine, to="latecomer")) == ["latecomer"]


# --- broadcast and topics ------------------------------------------------------------------------------


async def test_broadcast_reaches_every_member_registered_at_send_time(
    boxes: Callable[..., Mailbox], engine: Mailbox, analyst: Mailbox
) -> None:
    skeptic, sandboxed, latecomer = boxes("skeptic"), boxes("ethicist", sandbox="sb-1"), boxes("pragmatist")
    await skeptic.register()
    await sandboxed.register()
    await engine.register()  # a sender that is a member does not get its own broadcast

    shout = note(engine, to="any")
    assert await engine.send(shout) == ["analyst", "ethicist", "skeptic"]
    await latecomer.register()
    narrowed = note(engine, to="any", to_sandbox="sb-1")
    assert await engine.send(narrowed) == ["ethicist"]

    for box in (analyst, skeptic):
        assert [e.message for e in await box.receive(block_ms=0)] == [shout]
    assert [e.message for e in await sandboxed.receive(block_ms=0)] == [shout, narrowed]
    assert await latecomer.receive(block_ms=0) == []
    assert await engine.receive(block_ms=0) == []


async def test_topic_messages_reach_the_members_that_follow_the_topic(
    boxes: Callable[..., Mailbox], engine: Mailbox, analyst: Mailbox
) -> None:
    skeptic, gone = boxes("skeptic"), boxes("creative")
    await skeptic.register()
    await gone.register()
    await analyst.subscribe("budget", "risk")
    await skeptic.subscribe("risk")
    await gone.subscribe("budget")
    await gone.unregister()  # a follower that left is no member, so it is skipped

    on_budget = note(engine, to="any", topic="budget")
    on_risk = note(engine, to="any", topic="risk")
    assert await engine.send_many([on_budget, on_risk]) == [["analyst"], ["analyst", "skeptic"]]
    await analyst.unsubscribe("risk")
    assert await engine.send(note(engine, to="any", topic="risk")) == ["skeptic"]
    assert await engine.send(note(engine, to="any", topic="nobody-follows")) == []

    assert [e.message for e in await analyst.receive(block_ms=0)] == [on_budget, on_risk]
    assert len(await skeptic.receive(block_ms=0)) == 2


# --- receiving: what is not delivered -------------------------------------------------------------------


async def test_an_expired_message_is_dead_lettered_not_delivered(
    engine: Mailbox, analyst: Mailbox, workspace: str
) -> None:
    expired = note(engine, timestamp=datetime.now(UTC) - timedelta(minutes=1), ttl=5)
    fresh = note(engine)
    # It expired while waiting in the inbox (written directly: a sender refuses expired messages).
    await engine.bus.publish(inbox_key(workspace, "analyst", 5), expired)
    await engine.send(fresh)

    assert [e.message for e in await analyst.receive(block_ms=0)] == [fresh]
    [(_, letter)] = await fetch_dead_letters(engine.bus, workspace)
    assert (letter.reason, letter.message_id, letter.deliveries, letter.agent) == (
        "expired",
        expired.message_id,
        1,
        "analyst",
    )
    assert "ttl 5s from" in letter.detail
    assert letter.message() == expired
    assert analyst.stats.dead_lettered == {"expired": 1}


async def test_a_malformed_entry_is_dead_lettered_with_the_reason(
    engine: Mailbox, analyst: Mailbox, workspace: str
) -> None:
    lane = inbox_key(workspace, "analyst", 5)
    await engine.bus.append(lane, {"v": "1", "id": "m-1", "msg": "{not json"})
    await engine.bus.append(lane, {"hello": "world"})
    good = note(engine)
    await engine.send(good)

    [envelope] = await analyst.receive(block_ms=0)
    await analyst.complete([envelope])
    assert envelope.message == good
    letters = [letter for _, letter in await fetch_dead_letters(engine.bus, workspace)]
    assert [(d.reason, d.message_id) for d in letters] == [("malformed", "m-1"), ("malformed", "")]
    assert "not a valid AgentMessage" in letters[0].detail
    assert "no 'v' field" in letters[1].detail
    assert json.loads(letters[1].original) == {"hello": "world"}
    with pytest.raises(MalformedMessage):
        letters[1].message()
    assert await engine.bus.pending_count(lane, "inbox") == 0  # settled: the consumer goes on


async def test_a_command_from_a_role_without_the_right_is_refused_and_audited(
    engine: Mailbox, analyst: Mailbox, workspace: str
) -> None:
    order = note(engine, message_type="command", content={"do": "stop"})
    with pytest.raises(
        CommandRefused, match=r"'engine' has role 'agent', which may not send commands.*allowed: host"
    ):
        await engine.send(order)
    await store_policy(engine.bus, workspace, CommandPolicy(roles={"engine": "host"}))
    assert await engine.send(order) == ["analyst"]

    [(_, audit)] = await fetch_audit(engine.bus, workspace)
    assert (audit.where, audit.from_agent, audit.to_agent, audit.role, audit.message_id) == (
        "send",
        "engine",
        "analyst",
        "agent",
        order.message_id,
    )
    assert [e.message for e in await analyst.receive(block_ms=0)] == [order]


async def test_a_command_written_past_the_senders_check_is_refused_on_receipt(
    boxes: Callable[..., Mailbox], analyst: Mailbox, workspace: str
) -> None:
    """The recipient does not trust the sender to have checked."""
    await store_policy(analyst.bus, workspace, CommandPolicy(command_roles=frozenset({"admin"})))
    rogue = boxes("rogue")
    forged = note(rogue, message_type="command", content={"do": "leak"})
    await analyst.bus.publish(inbox_key(workspace, "analyst", forged.priority), forged)

    assert await analyst.receive(block_ms=0) == []
    [(_, audit)] = await fetch_audit(analyst.bus, workspace)
    assert (audit.where, audit.from_agent, audit.role) == ("receive", "rogue", "agent")
    assert analyst.stats.refused == 1
    assert await analyst.bus.pending_count(inbox_key(workspace, "analyst", 5), "inbox") == 0


async def test_a_stored_policy_round_trips(bus: Bus, workspace: str) -> None:
    assert await fetch_policy(bus, workspace) == CommandPolicy()
    policy = CommandPolicy(command_roles=frozenset({"host", "lead"}), roles={"engine": "host", "a": "lead"})
    await store_policy(bus, workspace, policy)
    assert await fetch_policy(bus, workspace) == policy
    await store_policy(bus, workspace, CommandPolicy(roles={"a": "host"}))
    assert await fetch_policy(bus, workspace) == CommandPolicy(roles={"a": "host"})


# --- priority --------------------------------------------------------------------------------------------


async def test_higher_priority_messages_are_handled_before_lower_ones_waiting(
    engine: Mailbox, analyst: Mailbox
) -> None:
    sent = [note(engine, priority=p, content={"p": p}) for p in (1, 5, 1, 9, 0, 5, 8)]
    await engine.send_many(sent)
    handler = Recorder()

    await analyst.serve(handler, idle_stop_ms=100)

    assert [m.priority for m in handler.handled] == [9, 8, 5, 5, 1, 1, 0]
    assert [m.message_id for m in handler.handled if m.priority == 1] == [
        sent[0].message_id,
        sent[2].message_id,
    ]


async def test_a_small_batch_takes_a_new_high_priority_message_first(
    engine: Mailbox, analyst: Mailbox
) -> None:
    await engine.send_many([note(engine, priority=2) for _ in range(3)])
    [first] = await analyst.receive(count=1, block_ms=0)
    urgent = note(engine, priority=9)
    await engine.send(urgent)
    [second] = await analyst.receive(count=1, block_ms=0)
    assert (first.message.priority, second.message) == (2, urgent)


# --- handled once, retried, dead-lettered ---------------------------------------------------------------


async def test_a_duplicate_message_id_is_handled_once(engine: Mailbox, analyst: Mailbox) -> None:
    sent = note(engine)
    await engine.send(sent)
    await engine.send(sent)  # a sender retrying after a lost reply: both copies come in one batch
    handler = Recorder()

    task = await serving(analyst, handler)
    # The second copy waits while the first is handled, then comes back and is skipped as done.
    await eventually(lambda: _true(analyst.stats.duplicates == 1))
    await engine.send(sent)  # later, after it was handled
    await eventually(lambda: _true(analyst.stats.duplicates == 2))
    await stop(analyst, task)

    assert handler.calls == [sent.message_id]
    assert await engine.bus.pending_count(inbox_key(engine.workspace, "analyst", 5), "inbox") == 0


async def test_a_message_left_by_a_dead_consumer_is_reclaimed_and_handled_once(
    boxes: Callable[..., Mailbox], engine: Mailbox, analyst: Mailbox
) -> None:
    sent = note(engine)
    await engine.send(sent)
    [taken] = await analyst.receive(block_ms=0)  # ... and this consumer dies without settling
    rescuer = boxes("analyst", consumer="rescuer")
    handler = Recorder()

    task = await serving(rescuer, handler)
    await eventually(lambda: _true(bool(handler.handled)))
    await stop(rescuer, task)

    assert [m.message_id for m in handler.handled] == [sent.message_id]
    assert taken.message == sent
    assert rescuer.stats.handled == 1  # by reclaim on Redis; NATS redelivers it after its ack wait
    assert await engine.bus.pending_count(taken.delivery.stream, "inbox") == 0


async def _true(value: bool) -> bool:
    return value


async def test_a_poison_message_is_dead_lettered_after_n_deliveries_and_the_consumer_goes_on(
    boxes: Callable[..., Mailbox], engine: Mailbox, workspace: str
) -> None:
    box = boxes("analyst", config=FAST.model_copy(update={"max_deliveries": 3}))
    await box.register()
    poison = note(engine, content={"poison": True})
    await engine.send(poison)
    handler = Recorder(fail=lambda m: bool(m.content.get("poison")))

    task = await serving(box, handler)
    await eventually(lambda: _true(box.stats.dead_lettered["handler_failed"] == 1))
    after = note(engine, content={"poison": False})
    await engine.send(after)
    await eventually(lambda: _true(len(handler.handled) == 1))
    await stop(box, task)

    assert handler.calls == [poison.message_id] * 3 + [after.message_id]
    [(_, letter)] = await fetch_dead_letters(engine.bus, workspace)
    assert (letter.reason, letter.deliveries, letter.message_id) == ("handler_failed", 3, poison.message_id)
    assert letter.detail == "RuntimeError: cannot handle {'poison': True}"
    assert box.stats.failed == 3


async def test_a_message_handed_out_too_often_is_dead_lettered_unrun(
    boxes: Callable[..., Mailbox], engine: Mailbox, workspace: str
) -> None:
    """A message that kills every consumer it reaches must stop being handed out."""
    need(engine.bus, "reclaim")
    config = FAST.model_copy(update={"max_deliveries": 2, "idle_timeout_s": 0.01})
    first, second, third = (boxes("analyst", consumer=f"c{i}", config=config) for i in range(3))
    await first.register()
    await engine.send(note(engine))
    assert len(await first.receive(block_ms=0)) == 1  # dies
    await asyncio.sleep(0.05)
    assert len(await second.reclaim()) == 1  # dies too
    await asyncio.sleep(0.05)

    assert await third.reclaim() == []

    [(_, letter)] = await fetch_dead_letters(engine.bus, workspace)
    assert (letter.reason, letter.deliveries) == ("max_deliveries", 2)


async def test_a_slow_handler_keeps_its_message_by_heartbeat(
    boxes: Callable[..., Mailbox], engine: Mailbox, analyst: Mailbox
) -> None:
    """A handler running for many idle timeouts is not mistaken for a dead one."""
    sent = note(engine)
    await engine.send(sent)
    slow_calls: list[str] = []

    async def slow(message: AgentMessage) -> None:
        slow_calls.append(message.message_id)
        await asyncio.sleep(1.0)  # ~7 idle timeouts

    other = boxes("analyst", consumer="other")
    other_handler = Recorder()
    slow_task = await serving(analyst, slow)  # type: ignore[arg-type]
    await eventually(lambda: _true(bool(slow_calls)))
    other_task = await serving(other, other_handler)
    await eventually(lambda: _true(analyst.stats.handled == 1))
    await stop(other, other_task)
    await stop(analyst, slow_task)

    assert slow_calls == [sent.message_id]
    assert other_handler.calls == []


async def test_concurrent_handlers_each_take_a_message(engine: Mailbox, analyst: Mailbox) -> None:
    await engine.send_many([note(engine, content={"i": i}) for i in range(20)])
    running, peak = 0, 0

    async def handler(message: AgentMessage) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    assert await analyst.serve(handler, concurrency=4, idle_stop_ms=100) == 20
    assert 1 < peak <= 4


# --- retention ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [10_000])
async def test_a_stopped_consumer_catches_up_on_everything_with_the_default_retention(
    engine: Mailbox, analyst: Mailbox, sent: int
) -> None:
    for start in range(0, sent, 1000):
        await engine.send_many([note(engine, content={"i": i}) for i in range(start, start + 1000)])
    handler = Recorder()

    assert await analyst.serve(handler, idle_stop_ms=100) == sent
    assert [m.content["i"] for m in handler.handled] == list(range(sent))
    assert analyst.stats.trimmed == 0


async def test_a_short_retention_bounds_the_inbox_and_counts_what_it_trimmed(
    boxes: Callable[..., Mailbox], engine: Mailbox, workspace: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = FAST.model_copy(update={"retention": Retention(maxlen=1000)})
    sender, box = boxes("engine", config=config), boxes("analyst", config=config)
    await box.register()
    for start in range(0, 10_000, 1000):
        await sender.send_many([note(sender, content={"i": i}) for i in range(start, start + 1000)])
    lane = inbox_key(workspace, "analyst", 5)
    kept = await engine.bus.length(lane)
    handler = Recorder()

    handled = await box.serve(handler, idle_stop_ms=100)

    assert 1000 <= kept < 1200  # Redis trims whole nodes of 100 entries
    assert handled == kept
    assert box.stats.trimmed == 10_000 - kept
    assert [m.content["i"] for m in handler.handled] == list(range(10_000 - kept, 10_000))
    assert (
        f"roundtable.bus_trimmed_before_delivery agent=analyst stream={lane} count={10_000 - kept}"
        in caplog.text
    )


async def test_a_mailbox_registers_one_lane_per_priority(bus: Bus, analyst: Mailbox, workspace: str) -> None:
    assert analyst.lanes == inbox_lanes(workspace, "analyst")
    assert analyst.lanes[0].endswith(":inbox:analyst:p9")
    assert analyst.lanes[-1].endswith(":p0")
    assert await bus.map_get(f"rt:{{{workspace}}}:members") == {"analyst": "host"}


def test_dead_letter_fields_round_trip() -> None:
    letter = DeadLetter(
        reason="expired",
        detail="d",
        deliveries=2,
        at=datetime(2025, 1, 1, tzinfo=UTC),
        agent="a",
        group="inbox",
        stream="s",
        entry_id="1-0",
        message_id="m",
        original="{}",
    )
    record = letter.record("w", None)
    assert record.stream == "rt:{w}:dlq"
    assert DeadLetter.from_fields(dict(record.fields)) == letter
    with pytest.raises(BadRequest, match="not a dead letter: reason"):
        DeadLetter.from_fields({**record.fields, "reason": "bored"})
