"""Request/response (`bus.agents.requests`) on every backend: correlation, timeouts, late and strays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bus import AgentMessage, Bus, DeliveryConfig, Mailbox
from bus.agents.requests import Requester, answer, request_totals, response_to
from engine.errors import BadRequest, RequestFailed, RequestTimedOut, UnknownRecipient

FAST = DeliveryConfig(idle_timeout_s=0.5, block_ms=50, members_cache_s=0)

Responder = Callable[[AgentMessage], Awaitable[None]]


@pytest.fixture
async def asker(bus: Bus, workspace: str) -> AsyncIterator[Requester]:
    requester = Requester(Mailbox(bus, workspace, "engine", config=FAST), block_ms=50)
    await requester.start()
    yield requester
    await requester.close()


@pytest.fixture
async def analyst(bus: Bus, workspace: str) -> Mailbox:
    box = Mailbox(bus, workspace, "analyst", config=FAST)
    await box.register()
    return box


async def serving(box: Mailbox, handler: Responder, *, concurrency: int = 4) -> asyncio.Task[int]:
    return asyncio.create_task(box.serve(handler, concurrency=concurrency))


async def stop(box: Mailbox, task: asyncio.Task[int]) -> None:
    box.stop()
    await asyncio.wait_for(task, timeout=10)


def echo(box: Mailbox) -> Responder:
    async def handle(message: AgentMessage) -> None:
        await answer(box, message, {"echo": message.content})

    return handle


async def test_a_request_gets_the_response_correlated_to_it(asker: Requester, analyst: Mailbox) -> None:
    task = await serving(analyst, echo(analyst))
    try:
        response = await asker.request("analyst", {"q": "why?"}, timeout=10)
    finally:
        await stop(analyst, task)
    assert response.message_type == "response"
    assert response.from_agent == "analyst"
    assert response.content == {"echo": {"q": "why?"}}
    assert response.metadata["status"] == "ok"
    assert asker.stats.sent == 1
    assert asker.stats.answered == 1


async def test_a_request_sends_requires_response_a_ttl_and_its_reply_stream(
    asker: Requester, analyst: Mailbox, workspace: str
) -> None:
    waiting = asyncio.create_task(asker.request("analyst", {"q": 1}, timeout=5))
    [envelope] = await analyst.receive(block_ms=5000)
    request = envelope.message
    assert request.message_type == "request"
    assert request.requires_response
    assert request.ttl == 5
    assert request.metadata["reply_to"] == asker.reply_to
    assert asker.reply_to.startswith(f"rt:{{{workspace}}}:reply:engine:")
    await answer(analyst, request, {"a": 1})
    response = await waiting
    assert response.correlation_id == request.message_id


async def test_no_response_within_the_timeout_raises_request_timed_out(
    asker: Requester, analyst: Mailbox
) -> None:
    with pytest.raises(RequestTimedOut, match=r"no response from 'analyst' within 0\.2s"):
        await asker.request("analyst", {"q": "anyone?"}, timeout=0.2)
    assert asker.stats.timed_out == 1
    assert asker.stats.answered == 0


async def test_a_late_response_is_dropped_and_counted_and_the_next_request_gets_its_own(
    asker: Requester, analyst: Mailbox
) -> None:
    release_first = asyncio.Event()
    late_sent = asyncio.Event()

    async def handle(message: AgentMessage) -> None:
        if message.content["n"] == 1:
            await release_first.wait()
            await answer(analyst, message, {"n": 1})
            late_sent.set()
        else:
            await late_sent.wait()  # so the late response is on the reply stream before this one
            await answer(analyst, message, {"n": 2})

    task = await serving(analyst, handle)
    before = request_totals()
    try:
        with pytest.raises(RequestTimedOut):
            await asker.request("analyst", {"n": 1}, timeout=0.3)
        second = asyncio.create_task(asker.request("analyst", {"n": 2}, timeout=10))
        release_first.set()
        response = await second
    finally:
        await stop(analyst, task)
    assert response.content == {"n": 2}
    assert asker.stats.late == 1
    assert asker.stats.answered == 1
    assert asker.stats.timed_out == 1
    assert asker.stats.unmatched == 0
    assert request_totals().late - before.late == 1  # the process-wide count, for metrics


async def test_concurrent_requests_each_get_their_own_response(asker: Requester, analyst: Mailbox) -> None:
    async def handle(message: AgentMessage) -> None:
        n = message.content["n"]
        await asyncio.sleep((20 - n) * 0.002)  # answer in another order than asked
        await answer(analyst, message, {"n": n})

    task = await serving(analyst, handle, concurrency=20)
    try:
        responses = await asyncio.gather(*(asker.request("analyst", {"n": n}, timeout=10) for n in range(20)))
    finally:
        await stop(analyst, task)
    assert [r.content["n"] for r in responses] == list(range(20))
    assert asker.stats.answered == 20
    assert asker.stats.unmatched == 0


async def test_a_response_from_another_agent_never_reaches_the_waiter(
    bus: Bus, asker: Requester, analyst: Mailbox
) -> None:
    waiting = asyncio.create_task(asker.request("analyst", {"q": 1}, timeout=10))
    [envelope] = await analyst.receive(block_ms=5000)
    request = envelope.message
    forged = response_to(request, from_agent="mallory", content={"forged": True})
    await bus.publish(asker.reply_to, forged)
    await answer(analyst, request, {"real": True})
    response = await waiting
    assert response.content == {"real": True}
    assert asker.stats.unmatched == 1


async def test_a_failed_response_raises_request_failed_with_the_responders_error(
    asker: Requester, analyst: Mailbox
) -> None:
    async def handle(message: AgentMessage) -> None:
        await answer(analyst, message, {"error": "no data for 2031"}, status="failed")

    task = await serving(analyst, handle)
    try:
        with pytest.raises(RequestFailed, match="no data for 2031"):
            await asker.request("analyst", {"year": 2031}, timeout=10)
    finally:
        await stop(analyst, task)
    assert asker.stats.failed == 1


async def test_a_request_to_an_unregistered_agent_is_refused_at_send(asker: Requester) -> None:
    with pytest.raises(UnknownRecipient, match="nobody"):
        await asker.request("nobody", {}, timeout=1)
    assert asker.stats.sent == 0


@pytest.mark.parametrize("seconds", [0, -1])
async def test_a_request_needs_a_positive_timeout(asker: Requester, analyst: Mailbox, seconds: float) -> None:
    with pytest.raises(BadRequest, match="timeout must be more than 0"):
        await asker.request("analyst", {}, timeout=seconds)


async def test_a_response_to_a_stream_outside_the_workspace_is_not_sent(
    bus: Bus, analyst: Mailbox, workspace: str
) -> None:
    request = AgentMessage(
        from_agent="engine",
        to_agent="analyst",
        message_type="request",
        requires_response=True,
        workspace_id=workspace,
        metadata={"reply_to": "rt:{elsewhere}:inbox:victim:p5"},
    )
    assert await answer(analyst, request, {"x": 1}) is False
    assert await bus.length("rt:{elsewhere}:inbox:victim:p5") == 0


async def test_closing_deletes_the_reply_stream(bus: Bus, workspace: str) -> None:
    requester = Requester(Mailbox(bus, workspace, "engine", config=FAST), block_ms=50)
    await requester.start()
    await bus.publish(
        requester.reply_to,
        AgentMessage(from_agent="x", message_type="response", workspace_id=workspace, correlation_id="n"),
    )
    await requester.close()
    assert await bus.length(requester.reply_to) == 0


async def test_a_cancelled_request_counts_its_response_as_late_and_hands_it_to_on_late(
    bus: Bus, analyst: Mailbox, workspace: str
) -> None:
    """A caller that stops waiting (as the engine does at its turn timeout) gives the request up."""
    late: list[AgentMessage] = []

    async def on_late(message: AgentMessage) -> None:
        late.append(message)

    requester = Requester(Mailbox(bus, workspace, "engine", config=FAST), block_ms=50, on_late=on_late)
    await requester.start()
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(requester.request("analyst", {"q": 1}, timeout=30), 0.3)
        [envelope] = await analyst.receive(block_ms=5000)
        await answer(analyst, envelope.message, {"a": "late"})
        for _ in range(500):
            if late:
                break
            await asyncio.sleep(0.01)
    finally:
        await requester.close()
    assert [m.content for m in late] == [{"a": "late"}]
    assert late[0].correlation_id == envelope.message.message_id
    assert requester.stats.abandoned == 1
    assert requester.stats.late == 1
    assert requester.stats.unmatched == 0


async def test_a_late_response_from_another_agent_is_unmatched_and_not_handed_on(
    bus: Bus, analyst: Mailbox, workspace: str
) -> None:
    late: list[AgentMessage] = []

    async def on_late(message: AgentMessage) -> None:
        late.append(message)

    requester = Requester(Mailbox(bus, workspace, "engine", config=FAST), block_ms=50, on_late=on_late)
    await requester.start()
    try:
        waiting = asyncio.create_task(requester.request("analyst", {"q": 1}, timeout=0.5))
        [envelope] = await analyst.receive(block_ms=5000)
        with pytest.raises(RequestTimedOut):
            await waiting
        forged = response_to(envelope.message, from_agent="mallory", content={"forged": True})
        await bus.publish(requester.reply_to, forged)
        await answer(analyst, envelope.message, {"real": True})
        for _ in range(500):
            if requester.stats.late + requester.stats.unmatched == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await requester.close()
    assert [m.content for m in late] == [{"real": True}]
    assert requester.stats.late == 1
    assert requester.stats.unmatched == 1


@pytest.mark.parametrize("seconds", [0, -1])
def test_the_outage_allowance_must_be_positive(bus: Bus, workspace: str, seconds: float) -> None:
    with pytest.raises(BadRequest, match="outage_s must be more than 0"):
        Requester(Mailbox(bus, workspace, "engine"), outage_s=seconds)
