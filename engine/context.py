"""What earlier discussion an agent sees: bounded, so input tokens per turn stop growing.

The previous round is shown in full (each message clipped); older rounds shrink to each agent's
latest position, one short line per agent; and the whole is capped at `context_chars`, dropping the
oldest lines first. From round 3 on, the context no longer grows with the number of rounds.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.turns import ContextEntry, DiscussionTurn

POSITION_CHARS = 160


def clip(text: str, limit: int) -> str:
    """Shorten text to at most `limit` characters at a word boundary, marking the cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(1, limit - 1)]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:") + "…"


def build_context(
    rounds: Mapping[int, Mapping[str, DiscussionTurn | None]],
    *,
    before_round: int,
    context_chars: int,
    message_chars: int,
) -> tuple[list[ContextEntry], list[ContextEntry]]:
    """The (context, summary) shown to an agent in round `before_round`.

    `rounds` maps a round to each agent's turn in it (None for a fallback).
    """
    previous = before_round - 1
    context = [
        ContextEntry(round=previous, agent=agent, content=clip(turn.message, message_chars))
        for agent, turn in rounds.get(previous, {}).items()
        if turn is not None
    ]
    # Older rounds shrink to each agent's latest position: earlier ones are superseded anyway.
    latest: dict[str, ContextEntry] = {}
    for r in sorted(rounds):
        if r >= previous:
            break
        for agent, turn in rounds[r].items():
            if turn is not None:
                latest[agent] = ContextEntry(
                    round=r, agent=agent, content=clip(turn.position or turn.message, POSITION_CHARS)
                )
    summary = sorted(latest.values(), key=lambda e: e.round)

    # Cap the total: drop the oldest summary lines, then clip the full messages evenly.
    def size() -> int:
        return sum(len(e.content) for e in context) + sum(len(e.content) for e in summary)

    while summary and size() > context_chars:
        summary.pop(0)
    if size() > context_chars and context:
        share = max(40, context_chars // len(context))
        context = [e.model_copy(update={"content": clip(e.content, share)}) for e in context]
    return context, summary
