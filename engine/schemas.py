"""The structured outputs agents return, as JSON schemas, and their validation.

The schemas are sent as `response_format`, so a provider that supports JSON schema (and the embedded
model, through a grammar) can only produce valid shapes. Validation still runs on every reply, since
not every provider enforces the schema.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from engine.errors import LLMOutputInvalid
from engine.rules import VotingRule
from engine.turns import DiscussionTurn, Proposal

DISCUSSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "maxLength": 1200},
        "position": {"type": "string", "maxLength": 200},
        "ready": {"type": "boolean"},
    },
    "required": ["message", "position", "ready"],
    "additionalProperties": False,
}

PROPOSAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 120},
        "description": {"type": "string", "maxLength": 1500},
        "benefits": {"type": "array", "items": {"type": "string", "maxLength": 200}, "maxItems": 5},
        "steps": {"type": "array", "items": {"type": "string", "maxLength": 200}, "maxItems": 8},
    },
    "required": ["title", "description", "benefits", "steps"],
    "additionalProperties": False,
}


def ballot_schema(rule: VotingRule, labels: list[str]) -> dict[str, Any]:
    """The ballot shape, with the voter's option labels as the only allowed values.

    Under every rule a ballot carries the voter's whole preference: a ranking of the options, best
    first, and a rating of each from 1 to 5. The engine derives the `choice` (the first of the ranking)
    and the approvals from them (`engine.ballots.complete_ballot`), so a stored session re-counts under
    any rule. The rule only puts its own field first, so that a small model writes it first.
    """
    label = {"type": "string", "enum": labels}
    fields: dict[str, dict[str, Any]] = {
        "ranking": {"type": "array", "items": label, "minItems": 1, "maxItems": len(labels)},
        "ratings": {
            "type": "object",
            "properties": {lab: {"type": "integer", "minimum": 1, "maximum": 5} for lab in labels},
            "required": labels,
            "additionalProperties": False,
        },
    }
    order = ["ratings", "ranking"] if rule == "rated" else ["ranking", "ratings"]
    return {
        "type": "object",
        "properties": {
            **{name: fields[name] for name in order},
            "reason": {"type": "string", "maxLength": 300},
        },
        "required": [*order, "reason"],
        "additionalProperties": False,
    }


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> dict[str, Any]:
    """The JSON object in a reply, tolerating code fences and chatter around it."""
    candidates = [text.strip(), *_FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            # strict=False admits raw newlines inside strings, which small models emit even under a grammar.
            value = json.loads(candidate, strict=False)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    snippet = text.strip().replace("\n", " ")[:80]
    raise LLMOutputInvalid(f"reply is not a JSON object: {snippet!r}", raw=text)


def parse_discussion(text: str) -> DiscussionTurn:
    data = extract_json(text)
    try:
        turn = DiscussionTurn.model_validate(data)
    except ValidationError as exc:
        raise LLMOutputInvalid(_first_error(exc), raw=text) from None
    if not turn.message.strip():
        raise LLMOutputInvalid("'message' is empty", raw=text)
    return turn


def parse_proposal(text: str) -> Proposal:
    data = extract_json(text)
    try:
        proposal = Proposal.model_validate(data)
    except ValidationError as exc:
        raise LLMOutputInvalid(_first_error(exc), raw=text) from None
    if not proposal.title.strip() or not proposal.description.strip():
        raise LLMOutputInvalid("'title' and 'description' must not be empty", raw=text)
    return proposal


def parse_ballot(text: str, rule: VotingRule, labels: list[str]) -> dict[str, Any]:
    """The ballot in labels. Raises `LLMOutputInvalid` (carrying the raw reply) when it is not valid."""
    data = extract_json(text)
    problem = ballot_problem(data, rule, labels)
    if problem:
        raise LLMOutputInvalid(problem, raw=text)
    return {key: data[key] for key in ("choice", "ratings", "ranking", "approve") if key in data}


def ballot_problem(data: dict[str, Any], rule: VotingRule, labels: list[str]) -> str | None:
    """Why a ballot in labels is invalid, or None when it is valid.

    A ballot carries the voter's whole preference, a `ranking` and `ratings`, whatever the rule; `rule`
    decides only which of the two is checked first.
    """
    order = (_ratings_problem, _ranking_problem) if rule == "rated" else (_ranking_problem, _ratings_problem)
    for check in order:
        problem = check(data, labels)
        if problem:
            return problem
    return None


def _ratings_problem(data: dict[str, Any], labels: list[str]) -> str | None:
    ratings = data.get("ratings")
    if not isinstance(ratings, dict) or not ratings:
        return "missing field 'ratings'"
    for key, value in ratings.items():
        if key not in labels:
            return f"unknown option {key!r}; choose from {', '.join(labels)}"
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 5:
            return f"rating {value!r} for {key!r} is outside 1-5"
    return None


def _ranking_problem(data: dict[str, Any], labels: list[str]) -> str | None:
    items = data.get("ranking")
    if not isinstance(items, list) or not items:
        return "missing field 'ranking'"
    seen: set[str] = set()
    for item in items:
        if item not in labels:
            return f"unknown option {item!r}; choose from {', '.join(labels)}"
        if item in seen:
            return f"option {item!r} is listed twice"
        seen.add(item)
    return None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "reply"
    return f"{where}: {err['msg']}"
