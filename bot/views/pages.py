"""Paginated views behind the "Discussion" and "Proposals" buttons.

Each platform caps a message's length differently, so the caller passes `page_chars`; the pages are
cut at paragraph, line, sentence and word boundaries by `split_text`, and nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from bot.views.agents import agent_ref
from bot.views.text import pack_blocks
from engine.report import ProposalRecord, SessionReport, TranscriptEntry
from personas import Persona

#: Marks a transcript entry that is a stand-in for a turn that failed.
FALLBACK_MARK = "⚠ fallback"


class Page(BaseModel):
    """One page of a paginated view; `index` counts from 0, `total` is the number of pages."""

    model_config = ConfigDict(frozen=True)

    title: str
    body: str
    index: int
    total: int

    @property
    def label(self) -> str:
        """ "Discussion (2/3)"."""
        return f"{self.title} ({self.index + 1}/{self.total})"


def discussion_pages(
    report: SessionReport, personas: Mapping[str, Persona], *, page_chars: int
) -> list[Page]:
    """The transcript, one block per entry: round, emoji and name, fallback mark, then the words."""
    blocks = [transcript_block(entry, personas) for entry in report.transcript]
    return _pages("Discussion", blocks, page_chars, empty="No discussion took place.")


def proposal_pages(report: SessionReport, personas: Mapping[str, Persona], *, page_chars: int) -> list[Page]:
    """Every proposal in full, in the tally's ranking order, the winner marked."""
    tally = report.tally
    ranking = tally.ranking if tally is not None else []
    position = {pid: i for i, pid in enumerate(ranking)}
    proposals = sorted(report.proposals, key=lambda p: position.get(p.id, len(ranking)))
    scores = tally.scores if tally is not None else {}
    winner = tally.winner if tally is not None else None
    blocks = [proposal_block(p, personas, winner=p.id == winner, score=scores.get(p.id)) for p in proposals]
    return _pages("Proposals", blocks, page_chars, empty="No proposal was made.")


def transcript_block(entry: TranscriptEntry, personas: Mapping[str, Persona]) -> str:
    """ "Round 1 · 📊 Analyst" (plus the fallback mark), then the entry's content."""
    head = f"Round {entry.round} · {agent_ref(entry.agent, personas).label}"
    if entry.fallback:
        head += f" ({FALLBACK_MARK})"
    return f"{head}\n{entry.content.strip()}"


def proposal_block(
    proposal: ProposalRecord,
    personas: Mapping[str, Persona],
    *,
    winner: bool = False,
    score: float | None = None,
) -> str:
    """A proposal in full: id, title, author, score, description, benefits and steps."""
    head = f"{'🏆 ' if winner else ''}{proposal.id} · {proposal.title}"
    byline = f"by {agent_ref(proposal.author, personas).label}"
    if score is not None:
        byline += f" · score {_number(score)}"
    parts = [f"{head}\n{byline}", proposal.description.strip()]
    if proposal.benefits:
        parts.append("Benefits:\n" + "\n".join(f"• {b}" for b in proposal.benefits))
    if proposal.steps:
        parts.append("Steps:\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(proposal.steps, 1)))
    return "\n\n".join(part for part in parts if part)


def _pages(title: str, blocks: list[str], page_chars: int, *, empty: str) -> list[Page]:
    bodies = pack_blocks(blocks, page_chars) or pack_blocks([empty], page_chars)
    return [Page(title=title, body=body, index=i, total=len(bodies)) for i, body in enumerate(bodies)]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
