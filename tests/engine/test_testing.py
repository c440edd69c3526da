"""The engine's test doubles keep the contracts of the ports they stand in for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.errors import AgentUnavailable, SessionNotFound, StoreUnavailable
from engine.events import SessionEvent, SessionStarted, StepCompleted, TurnCompleted
from engine.ports import AgentPort, SessionStore
from engine.testing import (
    STALL,
    InMemoryStore,
    InProcessAgents,
    Malformed,
    ManualClock,
    Scripted,
    ScriptedAgents,
    default_turn,
    valid_ballot,
)
from engine.turns import BallotOption, DiscussionTurn, Proposal, TurnReply, TurnRequest, Usage
from engine.voting import TallyInput, tally
from llms import FunctionLLM
from personas import load_personas
from storage import SqlStore

STARTED = SessionStarted(config={"topic": "Which database?", "team": ["analyst"], "voting_rule": "rated"})


def turn_event(step: str, agent: str, message: str = "hello") -> TurnCompleted:
    reply = TurnReply(
        session_id="s1",
        step=step,
        agent=agent,
        phase="discussion",
        discussion=DiscussionTurn(message=message, position="p"),
    )
    return TurnCompleted(step=step, agent=agent, reply=reply)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    """The in-memory store, and the real SQL store on SQLite as the reference it must match."""
    if request.param == "memory":
        yield InMemoryStore()
        return
    sql = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'roundtable.db'}")
    try:
        yield sql
    finally:
        await sql.close()


# -- SessionStore: the contract, on both stores ------------------------------------------------------


async def test_a_store_is_a_session_store(store: SessionStore) -> None:
    assert isinstance(store, SessionStore)


async def test_append_is_idempotent_per_event_key(store: SessionStore) -> None:
    assert await store.append("s1", STARTED) is True
    assert await store.append("s1", turn_event("round-1", "analyst", "first")) is True
    assert await store.append("s1", turn_event("round-1", "analyst", "second")) is False
    assert await store.append("s1", STARTED) is False
    events = await store.load_events("s1")
    assert [e.kind for e in events] == ["session_started", "turn_completed"]
    assert isinstance(events[1], TurnCompleted)
    assert events[1].reply.discussion is not None
    assert events[1].reply.discussion.message == "first"


async def test_events_come_back_equal_and_in_append_order(store: SessionStore) -> None:
    appended: list[SessionEvent] = [
        STARTED,
        turn_event("round-1", "b"),
        turn_event("round-1", "a"),
        StepCompleted(step="round-1"),
    ]
    for event in appended:
        await store.append("s1", event)
    assert await store.load_events("s1") == appended


async def test_only_a_session_started_event_opens_a_session(store: SessionStore) -> None:
    with pytest.raises(SessionNotFound, match="no session 's2'"):
        await store.append("s2", turn_event("round-1", "analyst"))
    assert await store.load_events("s2") == []


async def test_sessions_are_kept_apart(store: SessionStore) -> None:
    await store.append("s1", STARTED)
    await store.append("s2", STARTED)
    await store.append("s1", turn_event("round-1", "analyst"))
    assert await store.append("s2", turn_event("round-1", "analyst")) is True
    assert len(await store.load_events("s1")) == len(await store.load_events("s2")) == 2


# -- InMemoryStore: failures on demand ---------------------------------------------------------------


async def test_fail_on_fails_the_matching_appends_then_works_again() -> None:
    store = InMemoryStore()
    await store.append("s1", STARTED)
    store.fail_on(lambda e: e.key == ("turn_completed", "round-1", "analyst"), times=2)
    await store.append("s1", turn_event("round-1", "skeptic"))  # another key is unaffected
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            await store.append("s1", turn_event("round-1", "analyst"))
    assert await store.append("s1", turn_event("round-1", "analyst")) is True
    assert [e.key[2] for e in store.get_events("s1")] == ["", "skeptic", "analyst"]


async def test_fail_on_raises_the_error_given() -> None:
    store = InMemoryStore()
    store.fail_on(lambda e: True, error=RuntimeError("disk full"))
    with pytest.raises(RuntimeError, match="disk full"):
        await store.append("s1", STARTED)
    assert store.get_events("s1") == []


# -- ScriptedAgents ----------------------------------------------------------------------------------


def request(agent: str = "analyst", step: str = "round-1", **fields: object) -> TurnRequest:
    fields.setdefault("phase", "discussion")
    return TurnRequest.model_validate(
        {"session_id": "s1", "step": step, "agent": agent, "topic": "Which database?", "round": 1, **fields}
    )


async def test_scripted_agents_are_an_agent_port_answering_from_a_table_by_agent_and_step() -> None:
    table = {("analyst", "round-1"): DiscussionTurn(message="scripted", position="p", ready=True)}
    agents = ScriptedAgents(table, usage=Usage(llm_calls=1, prompt_tokens=7))
    assert isinstance(agents, AgentPort)
    reply = await agents.ask(request())
    assert reply.discussion == table[("analyst", "round-1")]
    assert (reply.session_id, reply.step, reply.agent, reply.phase) == (
        "s1",
        "round-1",
        "analyst",
        "discussion",
    )
    assert reply.usage.tokens == 7
    assert reply.error is None
    other = await agents.ask(request("skeptic"))
    assert other.discussion == default_turn(request("skeptic"))
    assert agents.asked_for("round-1") == ["analyst", "skeptic"]


async def test_scripted_agents_answer_from_a_sync_or_async_function() -> None:
    async def later(r: TurnRequest) -> Proposal:
        await asyncio.sleep(0)
        return Proposal(title=f"{r.agent} async", description="d")

    sync = ScriptedAgents(lambda r: Proposal(title=f"{r.agent} sync", description="d"))
    asynchronous = ScriptedAgents(later)
    proposal = request(step="proposals", phase="proposal")
    assert (await sync.ask(proposal)).proposal == Proposal(title="analyst sync", description="d")
    assert (await asynchronous.ask(proposal)).proposal == Proposal(title="analyst async", description="d")


async def test_scripted_agents_raise_stall_and_send_malformed_replies() -> None:
    script: dict[tuple[str, str], Scripted] = {
        ("analyst", "round-1"): AgentUnavailable("analyst is down"),
        ("skeptic", "round-1"): STALL,
        ("pragmatist", "round-1"): Malformed(error="invalid output: no JSON", raw="hm"),
        ("ethicist", "round-1"): Malformed(),
    }
    agents = ScriptedAgents(script)
    with pytest.raises(AgentUnavailable, match="analyst is down"):
        await agents.ask(request("analyst"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(agents.ask(request("skeptic")), 0.01)
    malformed = await agents.ask(request("pragmatist"))
    assert (malformed.error, malformed.raw_outputs, malformed.discussion) == (
        "invalid output: no JSON",
        ["hm"],
        None,
    )
    empty = await agents.ask(request("ethicist"))
    assert (empty.error, empty.discussion, empty.proposal, empty.ballot) == (None, None, None, None)


@pytest.mark.parametrize("rule", ["majority", "unanimity", "rated", "ranked", "condorcet", "approval"])
def test_the_default_ballot_is_valid_under_every_rule(rule: str) -> None:
    options = [BallotOption(label=label, title=f"t{label}", description="d") for label in "ABC"]
    ballot = default_turn(request(step="votes", phase="vote", voting_rule=rule, options=options))
    assert isinstance(ballot, dict)
    ids = {"A": "P1", "B": "P2", "C": "P3"}
    doc = TallyInput.model_validate(
        {"rule": rule, "candidates": list(ids.values()), "ballots": [{"voter": "v", **_in_ids(ballot, ids)}]}
    )
    result = tally(doc)
    assert result.valid_ballots == 1
    assert result.winner == "P1"


def _in_ids(ballot: dict[str, object], ids: dict[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in ballot.items():
        if isinstance(value, str):
            out[key] = ids[value]
        elif isinstance(value, list):
            out[key] = [ids[v] for v in value]
        elif isinstance(value, dict):
            out[key] = {ids[k]: v for k, v in value.items()}
    return out


def test_a_ballot_needs_an_option() -> None:
    with pytest.raises(ValueError, match="at least one option"):
        valid_ballot("majority", [])


# -- InProcessAgents and ManualClock -----------------------------------------------------------------


async def test_in_process_agents_take_the_turn_with_the_persona_and_the_llm() -> None:
    llm = FunctionLLM(lambda r: '{"message": "hi", "position": "p", "ready": true}')
    agents = InProcessAgents(load_personas(), llm)
    assert isinstance(agents, AgentPort)
    reply = await agents.ask(request("skeptic"))
    assert reply.discussion == DiscussionTurn(message="hi", position="p", ready=True)
    assert reply.usage.llm_calls == 1
    assert llm.requests[0].messages[0].content.startswith("You are Skeptic")


async def test_in_process_agents_are_unavailable_for_an_agent_they_do_not_serve() -> None:
    agents = InProcessAgents([load_personas()["analyst"]], FunctionLLM(lambda r: "{}"))
    with pytest.raises(AgentUnavailable, match="no agent 'skeptic' here; serving analyst"):
        await agents.ask(request("skeptic"))


def test_a_manual_clock_moves_only_forward_and_only_when_told() -> None:
    clock = ManualClock(start=5.0)
    assert clock() == clock() == 5.0
    clock.advance(2.5)
    assert clock() == 7.5
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)
