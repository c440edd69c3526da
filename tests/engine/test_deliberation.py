"""The deliberation at its ports: scripted agents, an in-memory event log, a manual clock.

No bus, database or model server: each scenario runs in milliseconds. Assertions read the event log
(`SessionLog` over the store's events) and the requests the agents were asked, not the report.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from engine.config import Limits, SessionConfig
from engine.deliberation import Deliberation
from engine.errors import AgentUnavailable, BusUnavailable, LLMError, StoreUnavailable
from engine.events import SessionCompleted, SessionEvent, TurnCompleted
from engine.history import SessionLog
from engine.outcome import retally
from engine.ports import LLMRequest, LLMResponse
from engine.report import SessionUsage
from engine.rules import VOTING_RULES, VotingRule
from engine.testing import (
    STALL,
    InMemoryStore,
    InProcessAgents,
    Malformed,
    ManualClock,
    Scripted,
    ScriptedAgents,
)
from engine.turns import DiscussionTurn, TurnRequest, Usage
from engine.voting import TallyInput, tally
from llms import FunctionLLM
from personas import load_personas

SESSION = "s-test"
TEAM = ["analyst", "skeptic", "pragmatist"]


def config(**fields: Any) -> SessionConfig:
    fields.setdefault("topic", "Should a small team adopt a four-day work week?")
    fields.setdefault("team", TEAM)
    fields.setdefault("rounds", 3)
    fields.setdefault("seed", 7)
    return SessionConfig(**fields)


async def deliberate(
    agents: ScriptedAgents | InProcessAgents,
    store: InMemoryStore | None = None,
    *,
    clock: ManualClock | None = None,
    **fields: Any,
) -> SessionLog:
    """Run a session to completion and return its event log."""
    store = store or InMemoryStore()
    await Deliberation(
        SESSION, config(**fields), agents=agents, store=store, clock=clock or time.monotonic
    ).run()
    return SessionLog(store.get_events(SESSION))


def result_tally(log: SessionLog) -> dict[str, Any]:
    """The tally the session reported, in its JSON form. The one place these tests read the report."""
    assert log.completed is not None
    assert log.completed.result.tally is not None
    return log.completed.result.tally.model_dump(mode="json")


def turn(log: SessionLog, step: str, agent: str) -> TurnCompleted:
    found = log.turn(step, agent)
    assert found is not None, f"no {step} turn of {agent} in the log"
    return found


def discussion_end(log: SessionLog) -> tuple[bool, str | None]:
    step = log.steps["discussion"]
    return step.stop, step.reason


def rounds_run(log: SessionLog) -> int:
    return len(log.discussion())


# -- a plain session -------------------------------------------------------------------------------


async def test_every_agent_is_asked_once_per_step_and_every_turn_is_logged_first() -> None:
    agents = ScriptedAgents()
    log = await deliberate(agents, rounds=2, early_stop=False)
    steps = ["round-1", "round-2", "proposals", "votes"]
    assert [r.step for r in agents.asked] == [s for s in steps for _ in TEAM]
    assert {(s, a) for s in steps for a in TEAM} == set(log.turns)
    assert not any(t.fallback for t in log.turns.values())
    kinds = [e.kind for e in log.events]
    assert kinds[0] == "session_started"
    assert kinds[-1] == "session_completed"
    # each step is closed only after all of its turns are in the log
    for step in steps:
        closed = next(i for i, e in enumerate(log.events) if e.kind == "step_completed" and e.step == step)
        assert all(
            i < closed for i, e in enumerate(log.events) if isinstance(e, TurnCompleted) and e.step == step
        )


async def test_later_rounds_see_the_previous_round_and_the_last_round_is_announced() -> None:
    agents = ScriptedAgents()
    await deliberate(agents, rounds=2, early_stop=False)
    second = [r for r in agents.asked if r.step == "round-2"]
    assert all(r.final_round for r in second)
    assert not any(r.final_round for r in agents.asked if r.step == "round-1")
    assert {(e.round, e.agent) for e in second[0].context} == {(1, a) for a in TEAM}


# -- early stop ------------------------------------------------------------------------------------


def ready_in_round_1(*agents: str) -> Callable[[TurnRequest], Scripted | None]:
    def script(request: TurnRequest) -> Scripted | None:
        if request.step == "round-1" and request.agent in agents:
            return DiscussionTurn(
                message="I have heard enough.", position=f"{request.agent} pilot", ready=True
            )
        return None

    return script


def same_position_from_round_1(*agents: str) -> Callable[[TurnRequest], Scripted | None]:
    def script(request: TurnRequest) -> Scripted | None:
        if request.phase == "discussion" and request.agent in agents:
            return DiscussionTurn(
                message=f"Round {request.round}.", position=f"{request.agent} wants a pilot"
            )
        return None

    return script


def agreeing_words_changing_positions(request: TurnRequest) -> Scripted | None:
    if request.phase == "discussion":
        return DiscussionTurn(
            message="I agree with everyone. Agreed, consensus!",
            position=f"{request.agent} view {request.round} of {request.rounds_planned}",
        )
    return None


def everyone_ready(request: TurnRequest) -> Scripted | None:
    if request.phase == "discussion":
        return DiscussionTurn(message="Ready.", position="same", ready=True)
    return None


def stable_but_skeptic_fails_in_round_2(request: TurnRequest) -> Scripted | None:
    if request.step == "round-2" and request.agent == "skeptic":
        return AgentUnavailable("skeptic crashed")
    return same_position_from_round_1("analyst", "skeptic")(request)


@pytest.mark.parametrize(
    ("script", "fields", "rounds", "stop", "reason"),
    [
        pytest.param(
            ready_in_round_1("analyst", "skeptic"),
            {"rounds": 4},
            1,
            True,
            "quorum ready: 2 of 3 agents were ready to propose",
            id="two-thirds-ready",
        ),
        pytest.param(
            ready_in_round_1("analyst"),
            {"rounds": 4},
            4,
            False,
            "completed all 4 planned rounds",
            id="one-ready",
        ),
        pytest.param(
            same_position_from_round_1("analyst", "skeptic"),
            {"rounds": 4},
            2,
            True,
            "positions stable: 2 of 3 agents kept their position from round 1 to 2",
            id="two-thirds-stable",
        ),
        pytest.param(
            stable_but_skeptic_fails_in_round_2,
            {"rounds": 3},
            3,
            False,
            "completed all 3 planned rounds",
            id="a-failed-agent-counts-against-the-quorum",
        ),
        pytest.param(
            agreeing_words_changing_positions,
            {"rounds": 3},
            3,
            False,
            "completed all 3 planned rounds",
            id="words",
        ),
        pytest.param(
            everyone_ready,
            {"rounds": 3, "early_stop": False},
            3,
            False,
            "completed all 3 planned rounds",
            id="off",
        ),
    ],
)
async def test_early_stop_reads_ready_and_position_only(
    script: Callable[[TurnRequest], Scripted | None],
    fields: dict[str, Any],
    rounds: int,
    stop: bool,
    reason: str,
) -> None:
    agents = ScriptedAgents(script)
    log = await deliberate(agents, **fields)
    assert rounds_run(log) == rounds
    assert discussion_end(log) == (stop, reason)
    assert agents.asked_for(f"round-{rounds + 1}") == []
    assert sorted(agents.asked_for("proposals")) == sorted(TEAM)


# -- repair and fallback ---------------------------------------------------------------------------


def valid_json(request: LLMRequest) -> str:
    """What a well-behaved model answers to a request, following the request's schema."""
    agent, step = request.metadata["agent"], request.metadata["step"]
    if request.schema_name == "discussion_turn":
        return json.dumps({"message": f"{agent} says hi", "position": f"{agent} at {step}", "ready": False})
    if request.schema_name == "proposal":
        return json.dumps({"title": f"{agent} plan", "description": "do it", "benefits": [], "steps": []})
    assert request.json_schema is not None
    labels = request.json_schema["properties"]["ranking"]["items"]["enum"]
    ratings = {label: max(1, 5 - i) for i, label in enumerate(labels)}
    return json.dumps({"ranking": labels, "ratings": ratings, "reason": "in order"})


def is_repair(request: LLMRequest) -> bool:
    return len(request.messages) > 2


def calls_of(llm: FunctionLLM, agent: str, step: str) -> list[LLMRequest]:
    return [r for r in llm.requests if r.metadata["agent"] == agent and r.metadata["step"] == step]


def in_process(llm: FunctionLLM) -> InProcessAgents:
    return InProcessAgents(load_personas(), llm)


async def test_an_unparseable_reply_is_repaired_once_and_counts() -> None:
    llm = FunctionLLM(
        lambda r: (
            "Sure! No JSON today." if r.metadata["agent"] == "skeptic" and not is_repair(r) else valid_json(r)
        )
    )
    log = await deliberate(in_process(llm), rounds=1)
    for step in ("round-1", "proposals", "votes"):
        _, repair = calls_of(llm, "skeptic", step)
        assert repair.messages[-1].content.startswith("That reply was not valid: reply is not a JSON object")
        assert not turn(log, step, "skeptic").fallback
        assert turn(log, step, "skeptic").reply.usage.llm_calls == 2
    assert len(llm.requests) == 3 * 3 + 3  # every turn once, and skeptic's three repairs
    assert not any(t.fallback for t in log.turns.values())


async def test_a_reply_still_invalid_after_its_repair_is_a_marked_fallback_and_a_ballot_abstains() -> None:
    llm = FunctionLLM(lambda r: "not json at all" if r.metadata["agent"] == "skeptic" else valid_json(r))
    log = await deliberate(in_process(llm), rounds=1, voting_rule="majority")
    for step in ("round-1", "proposals", "votes"):
        skeptic = turn(log, step, "skeptic")
        assert len(calls_of(llm, "skeptic", step)) == 2  # the first try and one repair, never more
        assert skeptic.fallback
        assert skeptic.reason == "invalid output: reply is not a JSON object: 'not json at all'"
        assert skeptic.reply.raw_outputs == ["not json at all"] * 2
    assert [p.author for p in log.proposals()] == ["analyst", "pragmatist"]
    assert log.discussion()[1]["skeptic"] is None
    assert turn(log, "votes", "skeptic").ballot == {}
    counted = result_tally(log)
    assert counted["valid_ballots"] == 2
    assert counted["abstentions"] == 1
    assert counted["invalid"] == [{"voter": "skeptic", "reason": "missing field 'choice'"}]


async def test_a_ballot_naming_unknown_options_is_an_abstention_never_a_vote() -> None:
    agents = ScriptedAgents({("analyst", "votes"): {"ranking": ["Z", "Y"]}})
    log = await deliberate(agents, rounds=1, voting_rule="ranked")
    counted = result_tally(log)
    assert counted["invalid"] == [{"voter": "analyst", "reason": "unknown candidate 'Z'"}]
    assert counted["valid_ballots"] == 2
    others = [{"voter": a, **(turn(log, "votes", a).ballot or {})} for a in TEAM if a != "analyst"]
    assert recount(log, others).scores == counted["scores"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (AgentUnavailable("skeptic's worker is gone"), "skeptic's worker is gone"),
        (
            Malformed(error="invalid output: 'ready' is missing", raw="{}"),
            "invalid output: 'ready' is missing",
        ),
        (Malformed(), None),  # a reply with nothing in it: the reason names what is missing
    ],
    ids=["unavailable", "invalid-after-repair", "empty-reply"],
)
async def test_a_failed_agent_gets_a_marked_fallback_in_every_phase_and_the_session_completes(
    value: Scripted, reason: str | None
) -> None:
    agents = ScriptedAgents(lambda r: value if r.agent == "skeptic" else None)
    log = await deliberate(agents, rounds=1, voting_rule="approval")
    expected = {
        "round-1": reason or "invalid reply: no discussion turn in it",
        "proposals": reason or "invalid reply: no proposal in it",
        "votes": reason or "invalid reply: no ballot in it",
    }
    assert {step: turn(log, step, "skeptic").reason for step in expected} == expected
    assert all(turn(log, step, "skeptic").fallback for step in expected)
    assert turn(log, "votes", "skeptic").ballot == {}
    assert log.completed is not None
    assert result_tally(log)["valid_ballots"] == 2


async def test_a_stalled_agent_times_out_into_a_fallback_and_the_others_go_on() -> None:
    agents = ScriptedAgents({("skeptic", "round-1"): STALL})
    log = await deliberate(agents, rounds=2, early_stop=False, limits=Limits(turn_timeout_s=0.05))
    stalled = turn(log, "round-1", "skeptic")
    assert stalled.fallback
    assert stalled.reason == "timeout after 0s"
    assert stalled.reply.error == "timeout after 0s"
    assert not turn(log, "round-2", "skeptic").fallback
    assert [p.author for p in log.proposals()] == TEAM


# -- usage: every request sent is counted ----------------------------------------------------------


def session_usage(log: SessionLog) -> SessionUsage:
    assert log.completed is not None
    return log.completed.result.usage


async def test_a_turn_that_timed_out_counts_its_request_as_a_failed_call() -> None:
    agents = ScriptedAgents({("skeptic", "round-1"): STALL})
    log = await deliberate(agents, rounds=1, limits=Limits(turn_timeout_s=0.05))
    usage = session_usage(log)
    assert (usage.llm_calls, usage.llm_calls_failed) == (9, 1)  # 8 answered turns and the stalled one
    assert (usage.by_agent["skeptic"].llm_calls, usage.by_agent["skeptic"].llm_calls_failed) == (3, 1)
    assert (usage.by_phase["discussion"].llm_calls, usage.by_phase["discussion"].llm_calls_failed) == (3, 1)
    assert usage.by_phase["vote"].llm_calls_failed == 0


async def test_requests_the_model_client_retried_are_counted_as_failed_calls_and_retries() -> None:
    llm = FunctionLLM(lambda r: LLMResponse(text=valid_json(r), model="m", retries=1))
    log = await deliberate(in_process(llm), rounds=1)
    usage = session_usage(log)
    turns = 3 * len(TEAM)
    assert (usage.llm_calls, usage.llm_calls_failed, usage.llm_retries) == (2 * turns, turns, turns)
    assert usage.by_phase["vote"].llm_retries == len(TEAM)


async def test_a_provider_error_is_counted_as_a_failed_call() -> None:
    def fail_for_the_skeptic(request: LLMRequest) -> str:
        if request.metadata["agent"] == "skeptic":
            raise LLMError("HTTP 500 from the provider")
        return valid_json(request)

    log = await deliberate(in_process(FunctionLLM(fail_for_the_skeptic)), rounds=1)
    assert turn(log, "round-1", "skeptic").reason == "model error: HTTP 500 from the provider"
    skeptic = session_usage(log).by_agent["skeptic"]
    assert (skeptic.llm_calls, skeptic.llm_calls_failed) == (3, 3)
    assert session_usage(log).by_agent["analyst"].llm_calls_failed == 0


# -- ballots carry the whole preference ------------------------------------------------------------


@pytest.mark.parametrize("rule", VOTING_RULES)
async def test_a_session_re_counts_under_any_rule_from_its_stored_ballots(rule: VotingRule) -> None:
    log = await deliberate(in_process(FunctionLLM(valid_json)), rounds=1, voting_rule="rated")
    stored = [t.ballot for t in log.turns.values() if t.step == "votes"]
    assert all(b is not None and {"choice", "ratings", "ranking", "approve"} <= b.keys() for b in stored)
    recount = retally(log, rule)
    assert recount is not None
    assert recount.rule == rule
    assert recount.valid_ballots == len(TEAM)
    assert recount.invalid == []
    assert retally(SessionLog(log.events), rule) == recount  # offline, and the same every time


# -- budget ----------------------------------------------------------------------------------------


def round_1_costs(tokens: dict[str, int]) -> Callable[[TurnRequest], Usage]:
    """Usage per turn: round 1 as given per agent, every later turn 10 tokens."""

    def usage(request: TurnRequest) -> Usage:
        spent = tokens[request.agent] if request.step == "round-1" else 10
        return Usage(llm_calls=1, prompt_tokens=spent)

    return usage


async def test_at_80_percent_of_the_budget_the_next_round_is_announced_as_the_last() -> None:
    agents = ScriptedAgents(usage=round_1_costs({"analyst": 400, "skeptic": 200, "pragmatist": 200}))
    log = await deliberate(agents, rounds=4, early_stop=False, limits=Limits(budget_tokens=1000))
    announced = "budget: 80% spent, round 2 announced as the last"
    assert log.steps["round-1"].last_round_announced
    assert log.steps["round-1"].reason == announced
    assert all(r.final_round for r in agents.asked if r.step == "round-2")
    assert agents.asked_for("round-3") == []
    assert discussion_end(log) == (True, announced)
    # the budget ends the discussion, not the session: proposals and votes still run once
    assert sorted(agents.asked_for("votes")) == sorted(TEAM)


async def test_below_80_percent_of_the_budget_nothing_is_announced() -> None:
    agents = ScriptedAgents(usage=round_1_costs({"analyst": 399, "skeptic": 200, "pragmatist": 200}))
    log = await deliberate(agents, rounds=3, early_stop=False, limits=Limits(budget_tokens=1000))
    assert not any(step.last_round_announced for step in log.steps.values())
    assert discussion_end(log) == (False, "completed all 3 planned rounds")


@pytest.mark.parametrize(
    "limits",
    [Limits(budget_tokens=1000), Limits(budget_tokens=None, budget_usd=0.5)],
    ids=["tokens", "dollars"],
)
async def test_at_100_percent_of_the_budget_the_discussion_stops_and_the_session_still_decides(
    limits: Limits,
) -> None:
    def usage(request: TurnRequest) -> Usage:
        if request.step == "round-1":
            return Usage(llm_calls=1, prompt_tokens=500 if request.agent == "analyst" else 250, cost_usd=0.25)
        return Usage(llm_calls=1, prompt_tokens=10)

    agents = ScriptedAgents(usage=usage)
    log = await deliberate(agents, rounds=4, early_stop=False, limits=limits)
    spent = "budget exhausted: 150% spent" if limits.budget_usd else "budget exhausted: 100% spent"
    assert log.steps["round-1"].stop
    assert log.steps["round-1"].reason == spent
    assert agents.asked_for("round-2") == []
    assert discussion_end(log) == (True, spent)
    assert sorted(agents.asked_for("votes")) == sorted(TEAM)
    assert result_tally(log)["winner"] is not None


# -- the session deadline --------------------------------------------------------------------------


def each_round_takes(clock: ManualClock, seconds: float) -> Callable[[TurnRequest], Scripted | None]:
    """A script under which every discussion round takes `seconds` on the clock (the turns run at once)."""

    def script(request: TurnRequest) -> Scripted | None:
        if request.phase == "discussion" and request.agent == TEAM[0]:
            clock.advance(seconds)
        return None

    return script


async def test_no_round_starts_after_the_discussion_share_of_the_deadline() -> None:
    clock = ManualClock()
    agents = ScriptedAgents(each_round_takes(clock, 35))
    limits = Limits(session_deadline_s=100, discussion_share=0.6)
    log = await deliberate(agents, clock=clock, rounds=5, early_stop=False, limits=limits)
    assert rounds_run(log) == 2  # round 3 would start at 70 s, past 60% of 100 s
    assert discussion_end(log) == (True, "time: 70s of the session deadline used")
    assert sorted(agents.asked_for("proposals")) == sorted(TEAM)
    assert not any(t.fallback for t in log.turns.values())


async def test_a_passed_deadline_ends_the_discussion_and_no_agent_is_asked_again() -> None:
    clock = ManualClock()
    agents = ScriptedAgents(each_round_takes(clock, 120))
    log = await deliberate(agents, clock=clock, rounds=3, limits=Limits(session_deadline_s=100))
    assert discussion_end(log) == (True, "time: the session deadline passed")
    assert [r.step for r in agents.asked] == ["round-1"] * 3
    for agent in TEAM:
        late = turn(log, "proposals", agent)
        assert late.fallback
        assert late.reason == "session deadline passed"
    assert log.proposals() == []
    assert log.completed is not None


async def test_a_turn_gets_no_more_time_than_the_deadline_leaves() -> None:
    """Proposals leave 0.05 s of the deadline: a stalled vote is cut off then, not after 60 s."""
    clock = ManualClock()

    def script(request: TurnRequest) -> Scripted | None:
        if request.step == "proposals" and request.agent == "analyst":
            clock.advance(99.95)
        return STALL if request.step == "votes" and request.agent == "analyst" else None

    limits = Limits(session_deadline_s=100, turn_timeout_s=60)
    log = await deliberate(ScriptedAgents(script), clock=clock, rounds=1, limits=limits)
    stalled = turn(log, "votes", "analyst")
    assert stalled.fallback
    assert stalled.reason == "timeout after 0s"  # not "after 60s"
    assert result_tally(log)["valid_ballots"] == 2


async def test_a_stalling_first_round_leaves_the_reserve_for_proposals_and_votes() -> None:
    """Every round-1 turn stalls with a turn timeout longer than the deadline; the session still decides.

    The discussion's turns end at 60% of the deadline, proposals by 80%, and the votes keep the rest.
    The clock is the real one: the deadline is half a second.
    """
    agents = ScriptedAgents({(agent, "round-1"): STALL for agent in TEAM})
    limits = Limits(session_deadline_s=0.5, turn_timeout_s=60)
    log = await deliberate(agents, rounds=3, early_stop=False, limits=limits)
    assert all(turn(log, "round-1", agent).reason == "timeout after 0s" for agent in TEAM)
    assert agents.asked_for("round-2") == []
    assert [p.author for p in log.proposals()] == TEAM
    assert result_tally(log)["valid_ballots"] == len(TEAM)
    assert result_tally(log)["winner"] is not None


@pytest.mark.parametrize(
    ("advance", "reason"),
    [(65, "the time for proposals passed"), (100, "session deadline passed")],
)
async def test_a_step_whose_time_passed_falls_back_at_once_with_a_clear_reason(
    advance: float, reason: str
) -> None:
    """Proposals past their end are not asked; the report says why there is no decision."""
    clock = ManualClock()

    def script(request: TurnRequest) -> Scripted | None:
        if request.step == "round-1" and request.agent == "analyst":
            clock.advance(advance)
        return None

    # The discussion's 30 s leave a 70 s reserve: proposals end by 65 s, votes by 100 s.
    limits = Limits(session_deadline_s=100, discussion_share=0.3)
    agents = ScriptedAgents(script)
    log = await deliberate(agents, clock=clock, rounds=1, limits=limits)
    assert agents.asked_for("proposals") == []
    assert {turn(log, "proposals", agent).reason for agent in TEAM} == {reason}
    assert log.completed is not None
    degraded = log.completed.result.degraded
    assert degraded[-1].reason == "no agent produced a valid proposal"


# -- resume after a crash --------------------------------------------------------------------------

ROUNDS = 2
ALL_TURNS = {(step, agent) for step in ("round-1", "round-2", "proposals", "votes") for agent in TEAM}


def turns_in(events: list[SessionEvent]) -> set[tuple[str, str]]:
    return {(e.step, e.agent) for e in events if isinstance(e, TurnCompleted)}


async def crash_then_resume(first: ScriptedAgents, store: InMemoryStore, error: type[Exception]) -> None:
    """Run until the crash, resume on a healthy port, and check that only missing turns were asked."""
    cfg = config(rounds=ROUNDS, early_stop=False)
    with pytest.raises(error):
        await Deliberation(SESSION, cfg, agents=first, store=store).run()
    before = store.get_events(SESSION)
    done = turns_in(before)

    again = ScriptedAgents()
    await Deliberation(SESSION, cfg, agents=again, store=store).run()
    after = store.get_events(SESSION)
    asked = [(r.step, r.agent) for r in again.asked]
    assert not set(asked) & done, "a completed turn was asked for again"
    assert sorted(asked) == sorted(ALL_TURNS - done), "each missing turn is asked for exactly once"
    assert turns_in(after) == ALL_TURNS
    assert after[: len(before)] == before  # the log only grows
    assert sum(isinstance(e, SessionCompleted) for e in after) == 1


@pytest.mark.parametrize(
    "key",
    [
        ("session_started", "", ""),
        ("turn_completed", "round-1", "skeptic"),
        ("step_completed", "round-1", ""),
        ("turn_completed", "round-2", "analyst"),
        ("step_completed", "round-2", ""),
        ("step_completed", "discussion", ""),
        ("turn_completed", "proposals", "pragmatist"),
        ("step_completed", "proposals", ""),
        ("turn_completed", "votes", "skeptic"),
        ("step_completed", "votes", ""),
        ("session_completed", "", ""),
    ],
    ids=lambda key: "-".join(part for part in key if part),
)
async def test_a_session_whose_store_fails_mid_step_resumes_without_asking_a_completed_turn_again(
    key: tuple[str, str, str],
) -> None:
    store = InMemoryStore()
    store.fail_on(lambda event: event.key == key)
    await crash_then_resume(ScriptedAgents(), store, StoreUnavailable)


@pytest.mark.parametrize(
    "at", [("skeptic", "round-1"), ("analyst", "round-2"), ("pragmatist", "proposals"), ("skeptic", "votes")]
)
async def test_a_session_whose_bus_fails_mid_step_resumes_without_asking_a_completed_turn_again(
    at: tuple[str, str],
) -> None:
    first = ScriptedAgents({at: BusUnavailable("the bus went away")})
    await crash_then_resume(first, InMemoryStore(), BusUnavailable)


async def test_a_session_cancelled_mid_step_resumes_without_asking_a_completed_turn_again() -> None:
    """A cancelled task is what a stopped process leaves: some turns of the step logged, one in flight."""
    store = InMemoryStore()
    first = ScriptedAgents({("skeptic", "round-2"): STALL})
    cfg = config(rounds=ROUNDS, early_stop=False)
    task = asyncio.create_task(Deliberation(SESSION, cfg, agents=first, store=store).run())
    while len(turns_in(store.get_events(SESSION))) < 5:  # round 1, and round 2 but for skeptic
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert turns_in(store.get_events(SESSION)) == ALL_TURNS - {
        ("round-2", "skeptic"),
        *{(s, a) for s in ("proposals", "votes") for a in TEAM},
    }
    again = ScriptedAgents()
    await Deliberation(SESSION, cfg, agents=again, store=store).run()
    assert (again.asked[0].step, again.asked[0].agent) == ("round-2", "skeptic")
    assert len(again.asked) == 1 + 2 * len(TEAM)


async def test_a_request_in_flight_when_the_process_stopped_is_counted_as_a_failed_call() -> None:
    store = InMemoryStore()
    cfg = config(rounds=ROUNDS, early_stop=False)
    first = ScriptedAgents({("skeptic", "round-2"): STALL})
    task = asyncio.create_task(Deliberation(SESSION, cfg, agents=first, store=store).run())
    while len(turns_in(store.get_events(SESSION))) < 5:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await Deliberation(SESSION, cfg, agents=ScriptedAgents(), store=store).run()
    usage = session_usage(SessionLog(store.get_events(SESSION)))
    assert (usage.llm_calls, usage.llm_calls_failed) == (len(ALL_TURNS) + 1, 1)
    assert (usage.by_agent["skeptic"].llm_calls, usage.by_agent["skeptic"].llm_calls_failed) == (
        ROUNDS + 3,
        1,
    )


async def test_a_completed_session_is_not_run_again() -> None:
    store = InMemoryStore()
    await deliberate(ScriptedAgents(), store, rounds=1)
    again = ScriptedAgents()
    await Deliberation(SESSION, config(rounds=1), agents=again, store=store).run()
    assert again.asked == []


async def test_a_resume_runs_with_the_configuration_the_session_started_with() -> None:
    store = InMemoryStore()
    store.fail_on(lambda event: event.key == ("step_completed", "round-1", ""))
    with pytest.raises(StoreUnavailable):
        await Deliberation(SESSION, config(rounds=2), agents=ScriptedAgents(), store=store).run()
    again = ScriptedAgents()
    await Deliberation(SESSION, config(rounds=5, topic="Another question?"), agents=again, store=store).run()
    assert {r.topic for r in again.asked} == {config().topic}
    assert {r.rounds_planned for r in again.asked} == {2}


# -- recusal and the tie chain ---------------------------------------------------------------------

TEAM4 = ["analyst", "creative", "skeptic", "pragmatist"]


def authors_seen(request: TurnRequest) -> set[str]:
    return {o.title.removesuffix(" plan") for o in request.options}


@pytest.mark.parametrize("recusal", [True, False])
async def test_a_voter_never_sees_its_own_proposal_under_recusal(recusal: bool) -> None:
    agents = ScriptedAgents()
    log = await deliberate(agents, rounds=1, team=TEAM4, recusal=recusal, voting_rule="approval")
    votes = [r for r in agents.asked if r.step == "votes"]
    assert len(votes) == len(TEAM4)
    for request in votes:
        others = set(TEAM4) - {request.agent}
        assert authors_seen(request) == (others if recusal else set(TEAM4))
    if recusal:
        authors = {p.id: p.author for p in log.proposals()}
        for agent in TEAM4:
            approved = (turn(log, "votes", agent).ballot or {})["approve"]
            assert agent not in {authors[pid] for pid in approved}


async def test_a_voter_left_with_only_its_own_proposal_abstains_without_being_asked() -> None:
    agents = ScriptedAgents(lambda r: Malformed() if r.phase == "proposal" and r.agent != "analyst" else None)
    log = await deliberate(agents, rounds=1, voting_rule="majority")
    assert [p.author for p in log.proposals()] == ["analyst"]
    assert sorted(agents.asked_for("votes")) == ["pragmatist", "skeptic"]
    assert turn(log, "votes", "analyst").ballot == {"abstain": True}
    counted = result_tally(log)
    assert counted["winner"] == "P1"
    assert counted["valid_ballots"] == 2
    assert counted["abstentions"] == 1


def ballots_by_author(ballots: dict[str, dict[str, Any]]) -> Callable[[TurnRequest], Scripted | None]:
    """Votes written with proposal authors (a proposal's title is '<author> plan'), cast in labels."""

    def script(request: TurnRequest) -> Scripted | None:
        if request.phase != "vote":
            return None
        label = {o.title.removesuffix(" plan"): o.label for o in request.options}
        ballot = ballots[request.agent]
        if "choice" in ballot:
            return {"choice": label[ballot["choice"]]}
        if "ratings" in ballot:
            return {"ratings": {label[a]: v for a, v in ballot["ratings"].items()}}
        return {"ranking": [label[a] for a in ballot["ranking"]]}

    return script


# P1 is analyst's proposal, P2 creative's, P3 skeptic's, P4 pragmatist's.
SPLIT = {
    "analyst": {"choice": "creative"},
    "creative": {"choice": "analyst"},
    "skeptic": {"choice": "analyst"},
    "pragmatist": {"choice": "creative"},
}
HEAD_TO_HEAD = {  # P2 and P3 both score 7; three ballots of four put P2 above P3
    "analyst": {"ranking": ["creative", "skeptic", "pragmatist"]},
    "pragmatist": {"ranking": ["creative", "skeptic", "analyst"]},
    "creative": {"ranking": ["skeptic", "analyst", "pragmatist"]},
    "skeptic": {"ranking": ["analyst", "pragmatist", "creative"]},
}
FIRST_PLACES = {  # P2 and P3 both score 8 and split 2-2 head to head; P2 is top on two ballots, P3 on one
    "analyst": {"ratings": {"creative": 5, "skeptic": 4, "pragmatist": 1}},
    "pragmatist": {"ratings": {"skeptic": 3, "creative": 2, "analyst": 1}},
    "creative": {"ratings": {"pragmatist": 5, "skeptic": 1, "analyst": 1}},
    "skeptic": {"ratings": {"creative": 1, "analyst": 1, "pragmatist": 1}},
}


@pytest.mark.parametrize(
    ("rule", "ballots", "seed", "tied", "tiebreak", "winner"),
    [
        ("ranked", HEAD_TO_HEAD, 7, ["P2", "P3"], "head_to_head", "P2"),
        ("rated", FIRST_PLACES, 7, ["P2", "P3"], "first_places", "P2"),
        ("majority", SPLIT, 0, ["P1", "P2"], "seeded_draw", "P1"),
        ("majority", SPLIT, 1, ["P1", "P2"], "seeded_draw", "P2"),
    ],
)
async def test_a_tie_follows_the_documented_chain_with_the_session_seed(
    rule: str, ballots: dict[str, dict[str, Any]], seed: int, tied: list[str], tiebreak: str, winner: str
) -> None:
    log = await deliberate(
        ScriptedAgents(ballots_by_author(ballots)), rounds=1, team=TEAM4, voting_rule=rule, seed=seed
    )
    counted = result_tally(log)
    assert (counted["tied"], counted["tiebreak"], counted["winner"]) == (tied, tiebreak, winner)


async def test_the_session_tally_is_a_recount_of_the_ballots_in_the_log() -> None:
    log = await deliberate(
        ScriptedAgents(ballots_by_author(HEAD_TO_HEAD)), rounds=1, team=TEAM4, voting_rule="ranked"
    )
    ballots = [{"voter": a, **(turn(log, "votes", a).ballot or {})} for a in TEAM4]
    assert recount(log, ballots).model_dump(mode="json") == result_tally(log)


def recount(log: SessionLog, ballots: list[dict[str, Any]]) -> Any:
    """The log's proposals counted again, independently of the engine, over the given ballots."""
    proposals = log.proposals()
    return tally(
        TallyInput(
            rule=log.config.voting_rule,
            candidates=[p.id for p in proposals],
            authors={p.id: p.author for p in proposals},
            recusal=log.config.recusal,
            seed=log.config.seed,
            ballots=ballots,
        )
    )
