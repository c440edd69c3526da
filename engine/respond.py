"""How a persona takes one turn: prompt, call the model, validate, repair once.

This runs wherever the agent runs (in-process worker or sandbox); the engine only sees the reply.
"""

from __future__ import annotations

import time
from typing import Any

from engine.errors import LLMError, LLMOutputInvalid
from engine.ports import LLM, ChatMessage, LLMRequest
from engine.prompts import build_messages, repair_prompt
from engine.schemas import (
    DISCUSSION_SCHEMA,
    PROPOSAL_SCHEMA,
    ballot_schema,
    extract_json,
    parse_ballot,
    parse_discussion,
    parse_proposal,
)
from engine.turns import TurnReply, TurnRequest, Usage
from personas import Persona

MAX_TOKENS = {"discussion": 320, "proposal": 480, "vote": 200}


def schema_for(request: TurnRequest) -> tuple[str, dict[str, Any]]:
    if request.phase == "discussion":
        return "discussion_turn", DISCUSSION_SCHEMA
    if request.phase == "proposal":
        return "proposal", PROPOSAL_SCHEMA
    labels = [o.label for o in request.options]
    return "ballot", ballot_schema(request.voting_rule or "majority", labels)


async def respond(persona: Persona, request: TurnRequest, llm: LLM) -> TurnReply:
    """Take one turn. Never raises for model trouble: the reply's `error` says what went wrong."""
    started = time.perf_counter()
    name, schema = schema_for(request)
    messages = build_messages(persona, request)
    usage = Usage()
    raws: list[str] = []
    model = ""
    reply = TurnReply(
        session_id=request.session_id, step=request.step, agent=request.agent, phase=request.phase
    )
    problem = ""
    for _attempt in range(2):  # the first try and one repair
        llm_request = LLMRequest(
            messages=messages,
            model=request.model or persona.model,
            temperature=persona.temperature,
            max_tokens=MAX_TOKENS[request.phase],
            json_schema=schema,
            schema_name=name,
            timeout_s=request.timeout_s,
            metadata={"session": request.session_id, "agent": request.agent, "step": request.step},
        )
        usage = usage + Usage(llm_calls=1)
        try:
            response = await llm.complete(llm_request)
        except LLMError as exc:
            usage = usage + _retried(exc.retries) + Usage(llm_calls_failed=1)
            problem = f"model error: {exc}"
            break
        model = response.model
        usage = (
            usage
            + _retried(response.retries)
            + Usage(
                prompt_tokens=response.prompt_tokens,
                completion_tokens=response.completion_tokens,
                cost_usd=response.cost_usd,
            )
        )
        raws.append(response.text)
        try:
            _fill(reply, request, response.text)
            problem = ""
            break
        except LLMOutputInvalid as exc:
            problem = f"invalid output: {exc}"
            messages = [
                *messages,
                ChatMessage(role="assistant", content=response.text[:2000]),
                ChatMessage(role="user", content=repair_prompt(str(exc))),
            ]
    if problem and request.phase == "vote" and raws:
        reply.ballot = _salvage_ballot(raws[-1])
    reply.error = problem or None
    reply.usage = usage
    reply.model = model
    reply.raw_outputs = raws
    reply.latency_ms = round((time.perf_counter() - started) * 1000, 1)
    return reply


def _retried(retries: int) -> Usage:
    """What the requests a provider failed and the model client tried again add to usage."""
    return Usage(llm_calls=retries, llm_calls_failed=retries, llm_retries=retries)


def _fill(reply: TurnReply, request: TurnRequest, text: str) -> None:
    if request.phase == "discussion":
        reply.discussion = parse_discussion(text)
    elif request.phase == "proposal":
        reply.proposal = parse_proposal(text)
    else:
        labels = [o.label for o in request.options]
        reply.ballot = parse_ballot(text, request.voting_rule or "majority", labels)


def _salvage_ballot(text: str) -> dict[str, Any] | None:
    """An invalid ballot as the voter wrote it, so the tally can list why it was rejected."""
    try:
        data = extract_json(text)
    except LLMOutputInvalid:
        return None
    return {k: data[k] for k in ("choice", "ratings", "ranking", "approve") if k in data} or None
