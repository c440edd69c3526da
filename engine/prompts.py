"""The prompts a persona answers, per phase.

Kept short on purpose: the embedded default model has a small context window, and every character here
is paid for on every turn.
"""

from __future__ import annotations

from engine.ports import ChatMessage
from engine.turns import TurnRequest
from personas import Persona

#: One ballot under every rule: the voter's whole preference, so any rule can count it.
_HOW_TO_VOTE = (
    "Rank the options, best first, each once, and rate each from 1 (poor) to 5 (excellent): "
    '{"ranking": ["<label>", ...], "ratings": {"<label>": 1-5, ...}, "reason": "..."}'
)


def system_prompt(persona: Persona) -> str:
    return (
        f"You are {persona.name} {persona.emoji}, {persona.role}.\n{persona.prompt.strip()}\n"
        "You are one member of a panel deliberating a question. Reply only with the JSON asked for."
    )


def build_messages(persona: Persona, request: TurnRequest) -> list[ChatMessage]:
    return [
        ChatMessage(role="system", content=system_prompt(persona)),
        ChatMessage(role="user", content=user_prompt(request)),
    ]


def user_prompt(request: TurnRequest) -> str:
    parts = [f"Question: {request.topic}"]
    if request.summary:
        lines = [f"- round {e.round}, {e.agent}: {e.content}" for e in request.summary]
        parts.append("Earlier positions:\n" + "\n".join(lines))
    if request.context:
        lines = [f"- {e.agent}: {e.content}" for e in request.context]
        parts.append(f"Round {request.context[0].round} of the discussion:\n" + "\n".join(lines))
    if request.phase == "discussion":
        last = " This is the last discussion round." if request.final_round else ""
        parts.append(
            f"Discussion round {request.round} of {request.rounds_planned}.{last} Give your view in a few "
            "sentences, answering the others by name where you agree or disagree. Then state your current "
            "position in one line, and whether you are ready to make a proposal.\n"
            'Reply as JSON: {"message": "...", "position": "...", "ready": true or false}'
        )
    elif request.phase == "proposal":
        parts.append(
            "The discussion is over. Make your proposal: a short title, a description, its benefits and "
            "the steps to carry it out.\n"
            'Reply as JSON: {"title": "...", "description": "...", "benefits": ["..."], "steps": ["..."]}'
        )
    else:
        options = "\n".join(f"Option {o.label}: {o.title}. {o.description}" for o in request.options)
        parts.append(f"Vote on these proposals. Judge each on its merits.\n{options}\n{_HOW_TO_VOTE}")
    return "\n\n".join(parts)


def repair_prompt(problem: str) -> str:
    return f"That reply was not valid: {problem}. Reply again with only the JSON object asked for."
